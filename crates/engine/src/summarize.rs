//! The `summarize` method: totals, and summaries per group, of the records a
//! filter matches, aggregated in SQL.
//!
//! # How a request runs
//!
//! Everything is resolved and checked before any SQL exists: unknown types and
//! fields give the same faults as `read`, and a summary or grouping type that
//! does not apply to the field's data type gives fault 103.
//!
//! Then **one** `GROUP BY` query groups the matching records by every grouping
//! level at once and computes each summary in a combinable form: counts, sums,
//! minima and maxima, and sum plus count for averages. The group tree and the
//! totals of every level (and of the whole query) are built in Rust by folding
//! those finest groups upwards, so a request costs one scan however deep its
//! grouping is. `status_list` summaries (a count per status) add one more
//! `GROUP BY` query each, whose counts fold the same way.
//!
//! SQL groups by a raw or coarsened key (a date's day, a number's bucket, a
//! link's type and id) and Rust finishes the key: it upper-cases first letters,
//! turns days into weeks, months into quarters, and gives entity groups their
//! names. Links to retired or missing records read as null, as in `read`, so
//! their records fold into the null group.
//!
//! # Choices where the site's behaviour is not documented
//!
//! - **Empty summaries.** `record_count`, `count`, `checked`, `unchecked` and
//!   `sum` of no values are `0`; `average`, `maximum`, `minimum`, `earliest`
//!   and `latest` of no values are `null`; percentages of no records are `0`.
//! - **Types of values.** `sum`, `maximum` and `minimum` keep the field's type
//!   (integer for number fields, float for float and currency); `average` is
//!   always a float. `earliest`/`latest` (and `maximum`/`minimum`, which also
//!   accept dates) give dates as `YYYY-MM-DD` and date-times as
//!   `YYYY-MM-DDTHH:MM:SSZ`.
//! - **`count`** counts records whose field is not empty: not null, not `""`
//!   for text, a link to a live record for entity fields, at least one live
//!   link for multi-entity fields. A checkbox is never empty (unset reads as
//!   false), so its count is the record count; `count` of `id` is too.
//! - **`percentage`** is the share of the group's records that are checked
//!   (checkbox fields) or not empty (any other field), as a whole number from
//!   0 to 100, rounded half away from zero.
//! - **`status_percentage`** (status_list fields) is the share of the group's
//!   records whose status is a "done" status: `fin`, `cmpt` or `apr`
//!   ([`DONE_STATUSES`]), as a whole number from 0 to 100.
//! - **`status_list`** (status_list and list fields) is a dictionary of how
//!   many of the group's records have each value, e.g. `{"fin": 2, "ip": 5}`;
//!   records without a value are left out.
//! - **`count_distinct`** is not in the protocol crate's `SummaryType`, so a
//!   request naming it is refused when it is parsed, before it gets here.
//! - **Group names.** For entity groups, `group_name` is the linked record's
//!   display name and `group_value` is `{type, id, name, valid: "valid"}`.
//!   For every other grouping `group_name` equals `group_value`. The group of
//!   records with no value has `group_name` `""` and `group_value` `null`.
//! - **Group values.** `exact`: the value in wire form (`true`/`false` for
//!   checkboxes). `firstletter`: the first character, upper-cased, on text
//!   fields and on entity fields (the linked record's name). Dates and
//!   date-times, in UTC: `day` and `oneday` `"2024-01-02"`; `week` the Monday
//!   that starts it, `"2024-01-01"`; `fivedays` the first day of a five-day
//!   span counted from 1970-01-01, `"2024-01-01"`; `month` `"2024-01"`;
//!   `quarter` `"2024-Q1"`; `year` `"2024"`. Numbers: `tens` ... `millions`
//!   give the bucket's lower bound as an integer (`tens` of 37 is 30, of -3 is
//!   -10). `entitytype`: the link's type, e.g. `"Shot"`. `clustered_date`
//!   (relative buckets such as "Today") is refused with fault 103.
//! - **Text groups are case-insensitive**, like the site's filters: `IP` and
//!   `ip` are one group, shown with the spelling of one of its records (the
//!   first in byte order of those the store's rows show: SQLite already
//!   groups ASCII case variants in SQL, PostgreSQL leaves that to Rust, so
//!   when one value is stored in several spellings the two stores may show
//!   different ones). `status_list` counts and `count_distinct` fold case
//!   the same way.
//! - **Order.** Groups sort by `group_value` in the grouping's direction;
//!   entity groups sort by name (then type and id), text case-insensitively.
//!   The null group sorts last going up and first going down, as `read` sorts
//!   nulls.
//! - **Deep fields** (`sg_sequence.Sequence.code`) may be summarized and
//!   grouped through entity links; paths through multi-entity links, grouping
//!   by a multi-entity field, and values that are JSON (url, image,
//!   serializable) are refused with fault 103.
//! - **One summary per field**: if a field is summarized twice, the last
//!   summary named wins (the answer is keyed by field).

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Days, NaiveDate};
use serde_json::{json, Map, Value};

use sg_protocol::value::parse_date;
use sg_protocol::{
    DataType, GroupingSpec, GroupingType, ReturnOnly, SortDirection, SummarizeParams, SummarySpec,
    SummaryType,
};

use crate::codec::decode_scalar;
use crate::error::{bad_request, EngineError};
use crate::filter::FilterCompiler;
use crate::frag::Fragment;
use crate::joins::HopJoins;
use crate::layout::{FieldLayout, Layout, Storage, TableLayout};
use crate::limits::QueryLimits;
use crate::path::{resolve, ResolvedPath};
use crate::read::{where_clause, Names};
use crate::sql::{Dialect, SqlValue};
use crate::store::Connection;

const METHOD: &str = "summarize";

/// The statuses `status_percentage` counts as done.
pub const DONE_STATUSES: &[&str] = &["fin", "cmpt", "apr"];

/// Runs a `summarize` and returns its `results` value, `{summaries, groups}`.
pub fn summarize(
    conn: &mut dyn Connection,
    layout: &Layout,
    params: &SummarizeParams,
) -> Result<Value, EngineError> {
    summarize_within(conn, layout, params, &QueryLimits::UNLIMITED)
}

/// Runs a `summarize` as [`summarize`] does, within `limits`.
pub fn summarize_within(
    conn: &mut dyn Connection,
    layout: &Layout,
    params: &SummarizeParams,
    limits: &QueryLimits,
) -> Result<Value, EngineError> {
    if params.grouping.len() > limits.max_groupings {
        return Err(EngineError::OverLimit(format!(
            "summarize() groups by {} levels, more than the {} allowed",
            params.grouping.len(),
            limits.max_groupings
        )));
    }
    let root = layout.table(&params.entity_type).ok_or_else(|| {
        bad_request(format!(
            "API summarize() entity type {} doesn't exist",
            params.entity_type
        ))
    })?;
    let dialect = conn.dialect();
    let mut compiler = FilterCompiler::new(layout, dialect, METHOD);
    compiler.max_conditions = limits.max_conditions;
    let mut plan = Plan {
        compiler: &compiler,
        root,
        dialect,
        joins: HopJoins::default(),
        key_columns: Vec::new(),
        aggregates: vec![Fragment::text("COUNT(*)")],
        distributions: Vec::new(),
    };
    let levels = params
        .grouping
        .iter()
        .map(|spec| plan.level(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let measures = params
        .summaries
        .iter()
        .map(|spec| Ok((spec.field.clone(), plan.measure(spec)?)))
        .collect::<Result<Vec<_>, EngineError>>()?;
    let filter = where_clause(
        &compiler,
        root,
        &params.filters,
        ReturnOnly::Active,
        params.include_archived_projects,
    )?;

    // The finest groups, with every combinable summary.
    let keys = plan.key_columns.len();
    let mut select = plan.key_columns.clone();
    select.extend(plan.aggregates.iter().cloned());
    let main_rows = plan.run(conn, select, &filter, keys, limits)?;
    // Per-value counts, one query per status_list summary.
    let mut distribution_rows = Vec::with_capacity(plan.distributions.len());
    for value in &plan.distributions {
        let mut select = plan.key_columns.clone();
        select.push(value.clone());
        select.push(Fragment::text("COUNT(*)"));
        distribution_rows.push(plan.run(conn, select, &filter, keys + 1, limits)?);
    }

    let mut wanted: Vec<(String, i64)> = Vec::new();
    for level in levels.iter().filter(|l| matches!(l.kind, KeyKind::Link(_))) {
        for row in main_rows.iter().chain(distribution_rows.iter().flatten()) {
            if let (Some(t), Some(id)) = (
                row.get(level.column).and_then(SqlValue::as_str),
                row.get(level.column + 1).and_then(SqlValue::as_i64),
            ) {
                wanted.push((t.to_string(), id));
            }
        }
    }
    let mut by_type: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (t, id) in wanted {
        by_type.entry(t).or_default().push(id);
    }
    let names = Names::fetch(conn, layout, by_type)?;

    let mut tree = Node::new(GroupKey::Null, Value::Null, Value::Null, &measures);
    let mut groups = GroupCount {
        made: 0,
        max: limits.max_groups,
    };
    for row in &main_rows {
        let Some((key_values, aggregates)) = row.split_at_checked(keys) else {
            continue;
        };
        let accs: Vec<Acc> = measures.iter().map(|(_, m)| m.read(aggregates)).collect();
        let mut node = &mut tree;
        node.add(&accs);
        for level in &levels {
            node = node.child(level.group(key_values, &names), &measures, &mut groups)?;
            node.add(&accs);
        }
    }
    for (index, rows) in distribution_rows.iter().enumerate() {
        let Some(slot) = measures.iter().position(
            |(_, m)| matches!(m, Measure::Distribution(i) | Measure::Distinct(i) if *i == index),
        ) else {
            continue;
        };
        for row in rows {
            let Some((key_values, rest)) = row.split_at_checked(keys) else {
                continue;
            };
            let (Some(value), Some(count)) = (
                rest.first().and_then(value_text),
                rest.get(1).and_then(SqlValue::as_i64),
            ) else {
                continue;
            };
            let acc = Acc::Distribution(BTreeMap::from([(value.to_lowercase(), (value, count))]));
            let mut node = &mut tree;
            node.merge_one(slot, &acc);
            for level in &levels {
                node = node.child(level.group(key_values, &names), &measures, &mut groups)?;
                node.merge_one(slot, &acc);
            }
        }
    }

    Ok(json!({
        "summaries": render_summaries(&tree, &measures),
        "groups": render_groups(tree.children, &levels, &measures),
    }))
}

/// The pieces of the SQL, built while the request is resolved.
struct Plan<'c, 'a> {
    compiler: &'c FilterCompiler<'a>,
    root: &'a TableLayout,
    dialect: Dialect,
    joins: HopJoins,
    /// The GROUP BY expressions, all levels in order.
    key_columns: Vec<Fragment>,
    /// The aggregate expressions of the main query; the first is `COUNT(*)`.
    aggregates: Vec<Fragment>,
    /// The value expression of each `status_list` summary.
    distributions: Vec<Fragment>,
}

/// A field path resolved and joined: its leaf field and the alias it is read from.
struct Target<'a> {
    resolved: ResolvedPath<'a>,
    alias: String,
}

impl Target<'_> {
    fn field(&self) -> &FieldLayout {
        self.resolved.field
    }
    fn column(&self) -> String {
        format!("{}.{}", self.alias, self.field().column())
    }
    fn type_column(&self) -> String {
        format!("{}.{}", self.alias, self.field().type_column())
    }
    /// `Shot.code`, for messages.
    fn describe(&self) -> String {
        format!(
            "{}.{}",
            self.resolved.table.entity_type, self.resolved.field.name
        )
    }
}

impl<'c, 'a> Plan<'c, 'a> {
    /// Resolves `path` and joins the entity links it goes through.
    fn target(&mut self, path: &str, what: &str) -> Result<Target<'a>, EngineError> {
        let resolved = resolve(self.compiler.layout, self.root, path, METHOD)?;
        if resolved.has_multi_hop() {
            return Err(bad_request(format!(
                "API summarize() {}.{path} goes through a multi-entity field, so it can't be {what}",
                self.root.entity_type
            )));
        }
        let alias = self.joins.join(self.compiler, path, &resolved.hops);
        Ok(Target { resolved, alias })
    }

    fn aggregate(&mut self, expr: Fragment) -> usize {
        self.aggregates.push(expr);
        self.aggregates.len() - 1
    }

    /// 1 when the link `(type, id)` points at a live record (or at a type the
    /// cache does not hold, whose links `read` keeps), else 0.
    fn live_link(&self, valid_types: &[String], type_col: &str, id_col: &str) -> Fragment {
        let layout = self.compiler.layout;
        let candidates: Vec<&TableLayout> = if valid_types.is_empty() {
            layout.tables.values().collect()
        } else {
            valid_types.iter().filter_map(|t| layout.table(t)).collect()
        };
        let mut f = Fragment::text(format!(
            "(CASE WHEN {type_col} IS NULL OR {id_col} IS NULL THEN 0"
        ));
        for table in candidates {
            let n = self.compiler.alias();
            f.push(&format!(" WHEN {type_col} = "))
                .bind(SqlValue::Text(table.entity_type.clone()));
            f.push(&format!(
                " THEN (CASE WHEN EXISTS (SELECT 1 FROM {} {n} WHERE {n}.\"id\" = {id_col} \
                 AND {n}.\"__retired\" = 0) THEN 1 ELSE 0 END)",
                table.table()
            ));
        }
        f.push(" ELSE 1 END)");
        f
    }

    /// The count of records whose `target` is not empty.
    fn non_empty_count(&self, target: &Target) -> Fragment {
        let col = target.column();
        let field = target.field();
        match field.storage {
            Storage::Text => Fragment::text(format!("COUNT(CASE WHEN {col} <> '' THEN 1 END)")),
            // Unset reads as false, so a checkbox is empty only when the
            // record it hangs off (through a link) is absent.
            Storage::Bool => Fragment::text(format!("COUNT({}.\"id\")", target.alias)),
            Storage::Entity => {
                let mut f = Fragment::text("COUNT(CASE WHEN ");
                f.append(self.live_link(&field.valid_types, &target.type_column(), &col))
                    .push(" = 1 THEN 1 END)");
                f
            }
            Storage::Links => {
                let l = self.compiler.alias();
                let mut f = Fragment::text(format!(
                    "COUNT(CASE WHEN EXISTS (SELECT 1 FROM {} {l} WHERE {l}.\"src_id\" = {}.\"id\" AND ",
                    target.resolved.table.link_table(&field.name),
                    target.alias
                ));
                f.append(self.live_link(
                    &field.valid_types,
                    &format!("{l}.\"dst_type\""),
                    &format!("{l}.\"dst_id\""),
                ))
                .push(" = 1) THEN 1 END)");
                f
            }
            _ => Fragment::text(format!("COUNT({col})")),
        }
    }

    /// Plans one summary: checks it applies and adds its aggregates.
    fn measure(&mut self, spec: &SummarySpec) -> Result<Measure, EngineError> {
        use SummaryType::*;
        if spec.summary_type == RecordCount {
            // The field only has to exist; every record counts.
            resolve(self.compiler.layout, self.root, &spec.field, METHOD)?;
            return Ok(Measure::Count(0));
        }
        let target = self.target(&spec.field, "summarized")?;
        let field = target.field();
        let storage = field.storage;
        let number = matches!(storage, Storage::Id | Storage::Integer | Storage::Real);
        let date = matches!(storage, Storage::Date | Storage::DateTime);
        let applies = match spec.summary_type {
            RecordCount | Count | Percentage => true,
            Sum | Average => number,
            Maximum | Minimum => number || date,
            Earliest | Latest => date,
            Checked | Unchecked => storage == Storage::Bool,
            StatusPercentage => field.data_type == DataType::StatusList,
            StatusList => matches!(field.data_type, DataType::StatusList | DataType::List),
            CountDistinct => !matches!(storage, Storage::Links | Storage::Json | Storage::Tags),
        };
        if !applies {
            return Err(bad_request(format!(
                "API summarize() {} is a {} field, which can't be summarized with '{}'",
                target.describe(),
                data_type_name(field),
                spec.summary_type.name()
            )));
        }
        let col = target.column();
        let checked = || Fragment::text(format!("COUNT(CASE WHEN {col} = 1 THEN 1 END)"));
        Ok(match spec.summary_type {
            RecordCount => Measure::Count(0),
            // Every record has an id: its count is the record count, no extra column.
            Count if storage == Storage::Id && target.resolved.hops.is_empty() => Measure::Count(0),
            Count => Measure::Count(self.aggregate(self.non_empty_count(&target))),
            Sum => Measure::Sum {
                column: self.aggregate(Fragment::text(format!("SUM({col})"))),
                real: storage == Storage::Real,
            },
            Average => Measure::Average {
                sum: self.aggregate(Fragment::text(format!("SUM({col})"))),
                count: self.aggregate(Fragment::text(format!("COUNT({col})"))),
            },
            Maximum | Latest => Measure::Extreme {
                column: self.aggregate(Fragment::text(format!("MAX({col})"))),
                max: true,
                storage,
            },
            Minimum | Earliest => Measure::Extreme {
                column: self.aggregate(Fragment::text(format!("MIN({col})"))),
                max: false,
                storage,
            },
            Checked => Measure::Count(self.aggregate(checked())),
            Unchecked => Measure::Count(self.aggregate(Fragment::text(format!(
                "COUNT(CASE WHEN {}.\"id\" IS NOT NULL AND COALESCE({col}, 0) = 0 THEN 1 END)",
                target.alias
            )))),
            Percentage => {
                let numerator = if storage == Storage::Bool {
                    checked()
                } else {
                    self.non_empty_count(&target)
                };
                Measure::Ratio(self.aggregate(numerator))
            }
            StatusPercentage => {
                let mut f = Fragment::text(format!("COUNT(CASE WHEN {col} IS NOT NULL AND ("));
                for (i, status) in DONE_STATUSES.iter().enumerate() {
                    if i > 0 {
                        f.push(" OR ");
                    }
                    f.push(&self.dialect.text_equals(&col, "?", status));
                    f.params.push(SqlValue::Text(status.to_string()));
                }
                f.push(") THEN 1 END)");
                Measure::Ratio(self.aggregate(f))
            }
            StatusList => {
                self.distributions.push(Fragment::text(col));
                Measure::Distribution(self.distributions.len() - 1)
            }
            CountDistinct => {
                // A link to a retired record counts as no link, as every
                // other read shows it (`count` of the same field agrees).
                let value = if storage == Storage::Entity {
                    let type_col = target.type_column();
                    let mut f = Fragment::text("(CASE WHEN ");
                    f.append(self.live_link(&field.valid_types, &type_col, &col))
                        .push(&format!(" = 1 THEN ({type_col} || ':' || {col}) END)"));
                    f
                } else {
                    Fragment::text(col)
                };
                self.distributions.push(value);
                Measure::Distinct(self.distributions.len() - 1)
            }
        })
    }

    /// Plans one grouping level: checks it applies and adds its key columns.
    fn level(&mut self, spec: &GroupingSpec) -> Result<Level, EngineError> {
        use GroupingType::*;
        let target = self.target(&spec.field, "grouped")?;
        let field = target.field();
        let storage = field.storage;
        let col = target.column();
        let refuse = || {
            bad_request(format!(
                "API summarize() {} is a {} field, which can't be grouped by '{}'",
                target.describe(),
                data_type_name(field),
                spec.grouping_type.name()
            ))
        };
        let bucket = |b: Bucket| match storage {
            Storage::Date => {
                let width = match b {
                    Bucket::Month | Bucket::Quarter => 7,
                    Bucket::Year => 4,
                    _ => 10,
                };
                Ok((KeyKind::Date(b), vec![format!("substr({col}, 1, {width})")]))
            }
            // Whole days since the epoch, rounded down also before 1970.
            Storage::DateTime => Ok((
                KeyKind::EpochDay(b),
                vec![format!(
                    "(({col} - ((({col} % 86400) + 86400) % 86400)) / 86400)"
                )],
            )),
            _ => Err(refuse()),
        };
        let width = |w: i64| {
            match storage {
            // Rounded down, also below zero.
            Storage::Id | Storage::Integer => Ok((
                KeyKind::Number,
                vec![format!("({col} - ((({col} % {w}) + {w}) % {w}))")],
            )),
            Storage::Real => Ok((
                KeyKind::Number,
                vec![match self.dialect {
                    Dialect::Sqlite => format!(
                        "((CAST({col} / {w} AS INTEGER) - (CASE WHEN {col} < CAST({col} / {w} AS INTEGER) * {w} \
                         THEN 1 ELSE 0 END)) * {w})"
                    ),
                    Dialect::Postgres => format!("CAST(floor({col} / {w}) * {w} AS BIGINT)"),
                }],
            )),
            _ => Err(refuse()),
        }
        };
        let link = |what: LinkKey| (KeyKind::Link(what), vec![target.type_column(), col.clone()]);
        let (kind, columns) = match spec.grouping_type {
            Exact => match storage {
                Storage::Entity => link(LinkKey::Exact),
                Storage::Bool => (
                    KeyKind::Bool,
                    vec![format!(
                        "(CASE WHEN {}.\"id\" IS NULL THEN NULL ELSE COALESCE({col}, 0) END)",
                        target.alias
                    )],
                ),
                Storage::Json | Storage::Links | Storage::Tags => return Err(refuse()),
                storage => (KeyKind::Exact(storage), vec![col.clone()]),
            },
            FirstLetter => match storage {
                Storage::Text => (KeyKind::FirstLetter, vec![format!("substr({col}, 1, 1)")]),
                Storage::Entity => link(LinkKey::FirstLetter),
                _ => return Err(refuse()),
            },
            EntityType => match storage {
                Storage::Entity => link(LinkKey::Type),
                _ => return Err(refuse()),
            },
            Day | OneDay => bucket(Bucket::Day)?,
            Week => bucket(Bucket::Week)?,
            FiveDays => bucket(Bucket::FiveDays)?,
            Month => bucket(Bucket::Month)?,
            Quarter => bucket(Bucket::Quarter)?,
            Year => bucket(Bucket::Year)?,
            Tens => width(10)?,
            Hundreds => width(100)?,
            Thousands => width(1_000)?,
            TensOfThousands => width(10_000)?,
            HundredsOfThousands => width(100_000)?,
            Millions => width(1_000_000)?,
            ClusteredDate => {
                return Err(bad_request(format!(
                    "API summarize() grouping {} by 'clustered_date' is not supported",
                    target.describe()
                )))
            }
        };
        let column = self.key_columns.len();
        self.key_columns
            .extend(columns.into_iter().map(Fragment::text));
        Ok(Level {
            kind,
            column,
            direction: spec.direction,
        })
    }

    /// Runs `SELECT select FROM root JOIN ... WHERE filter GROUP BY 1..group_by`,
    /// fetching no more than one group past `limits.max_groups`.
    fn run(
        &self,
        conn: &mut dyn Connection,
        select: Vec<Fragment>,
        filter: &Fragment,
        group_by: usize,
        limits: &QueryLimits,
    ) -> Result<Vec<Vec<SqlValue>>, EngineError> {
        let mut sql = Fragment::text("SELECT ");
        sql.append(Fragment::join(select, ", "));
        sql.push(&format!(" FROM {} t0", self.root.table()));
        sql.append(self.joins.sql.clone());
        sql.push(" WHERE ").append(filter.clone());
        if group_by > 0 {
            let ordinals: Vec<String> = (1..=group_by).map(|i| i.to_string()).collect();
            sql.push(&format!(" GROUP BY {}", ordinals.join(", ")));
            if let Some(over) = limits.max_groups.checked_add(1) {
                sql.push(&format!(" LIMIT {over}"));
            }
        }
        let (text, values) = sql.finish(self.dialect);
        let rows = conn.query(&text, &values)?;
        if rows.len() > limits.max_groups {
            return Err(too_many_groups(limits.max_groups));
        }
        Ok(rows)
    }
}

fn data_type_name(field: &FieldLayout) -> String {
    field.data_type.to_string()
}

/// How one summary is computed from the aggregate columns, and rendered.
enum Measure {
    /// A count column (`COUNT(*)` is column 0).
    Count(usize),
    Sum {
        column: usize,
        real: bool,
    },
    Extreme {
        column: usize,
        max: bool,
        storage: Storage,
    },
    Average {
        sum: usize,
        count: usize,
    },
    /// A count column over the record count, as a percentage.
    Ratio(usize),
    /// Counts per value, from the distribution query with this index.
    Distribution(usize),
    /// The number of distinct values, from the distribution query with this
    /// index (per-value counts merge exactly across groups; distinct counts don't).
    Distinct(usize),
}

/// A summary's partial value for some set of records; partials of disjoint
/// sets merge into the partial of their union.
#[derive(Debug, Clone)]
enum Acc {
    Count(i64),
    SumInt(i64),
    SumReal(f64),
    Extreme {
        max: bool,
        value: Option<SqlValue>,
    },
    Average {
        sum: f64,
        count: i64,
    },
    Ratio {
        part: i64,
        whole: i64,
    },
    /// Counts per value, keyed by the value case-folded (text values are
    /// one value whatever their case, as text groups are), with the
    /// spelling shown: the first in byte order of those seen, so that it does
    /// not hang on the order rows come back in.
    Distribution(BTreeMap<String, (String, i64)>),
}

fn real_of(value: &SqlValue) -> Option<f64> {
    match value {
        SqlValue::Int(i) => Some(*i as f64),
        SqlValue::Real(f) => Some(*f),
        _ => None,
    }
}

fn value_text(value: &SqlValue) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Text(t) => Some(t.clone()),
        SqlValue::Int(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(f.to_string()),
    }
}

/// Orders two non-null values of one column (numbers, or date text).
fn compare_values(a: &SqlValue, b: &SqlValue) -> Ordering {
    match (a, b) {
        (SqlValue::Int(x), SqlValue::Int(y)) => x.cmp(y),
        (SqlValue::Text(x), SqlValue::Text(y)) => x.cmp(y),
        _ => match (real_of(a), real_of(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => Ordering::Equal,
        },
    }
}

impl Measure {
    fn empty(&self) -> Acc {
        match self {
            Measure::Count(_) => Acc::Count(0),
            Measure::Sum { real: false, .. } => Acc::SumInt(0),
            Measure::Sum { real: true, .. } => Acc::SumReal(0.0),
            Measure::Extreme { max, .. } => Acc::Extreme {
                max: *max,
                value: None,
            },
            Measure::Average { .. } => Acc::Average { sum: 0.0, count: 0 },
            Measure::Ratio(_) => Acc::Ratio { part: 0, whole: 0 },
            Measure::Distribution(_) | Measure::Distinct(_) => Acc::Distribution(BTreeMap::new()),
        }
    }

    /// The partial of one row's aggregates (`aggregates[0]` is `COUNT(*)`).
    fn read(&self, aggregates: &[SqlValue]) -> Acc {
        let int = |i: usize| aggregates.get(i).and_then(SqlValue::as_i64).unwrap_or(0);
        let real = |i: usize| aggregates.get(i).and_then(real_of).unwrap_or(0.0);
        match self {
            Measure::Count(c) => Acc::Count(int(*c)),
            Measure::Sum {
                column,
                real: false,
            } => Acc::SumInt(int(*column)),
            Measure::Sum { column, real: true } => Acc::SumReal(real(*column)),
            Measure::Extreme { column, max, .. } => Acc::Extreme {
                max: *max,
                value: aggregates.get(*column).filter(|v| !v.is_null()).cloned(),
            },
            Measure::Average { sum, count } => Acc::Average {
                sum: real(*sum),
                count: int(*count),
            },
            Measure::Ratio(part) => Acc::Ratio {
                part: int(*part),
                whole: int(0),
            },
            Measure::Distribution(_) | Measure::Distinct(_) => Acc::Distribution(BTreeMap::new()),
        }
    }

    fn render(&self, acc: &Acc) -> Value {
        match (self, acc) {
            (_, Acc::Count(n)) | (_, Acc::SumInt(n)) => json!(n),
            (_, Acc::SumReal(f)) => json!(f),
            (Measure::Extreme { storage, .. }, Acc::Extreme { value, .. }) => value
                .as_ref()
                .map(|v| decode_scalar(*storage, v))
                .unwrap_or(Value::Null),
            (_, Acc::Average { count: 0, .. }) => Value::Null,
            (_, Acc::Average { sum, count }) => json!(sum / *count as f64),
            (_, Acc::Ratio { whole: 0, .. }) => json!(0),
            (_, Acc::Ratio { part, whole }) => {
                json!(((*part as f64) * 100.0 / (*whole as f64)).round() as i64)
            }
            (Measure::Distinct(_), Acc::Distribution(counts)) => json!(counts.len()),
            (_, Acc::Distribution(counts)) => Value::Object(
                counts
                    .values()
                    .map(|(spelling, n)| (spelling.clone(), json!(n)))
                    .collect(),
            ),
            (_, Acc::Extreme { .. }) => Value::Null,
        }
    }
}

impl Acc {
    fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) | (Acc::SumInt(a), Acc::SumInt(b)) => {
                *a = a.saturating_add(*b)
            }
            (Acc::SumReal(a), Acc::SumReal(b)) => *a += b,
            (
                Acc::Extreme { max, value },
                Acc::Extreme {
                    value: Some(other), ..
                },
            ) => {
                let better = match value {
                    None => true,
                    Some(v) => {
                        let wanted = if *max {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        };
                        compare_values(other, v) == wanted
                    }
                };
                if better {
                    *value = Some(other.clone());
                }
            }
            (Acc::Average { sum, count }, Acc::Average { sum: s, count: c }) => {
                *sum += s;
                *count = count.saturating_add(*c);
            }
            (Acc::Ratio { part, whole }, Acc::Ratio { part: p, whole: w }) => {
                *part = part.saturating_add(*p);
                *whole = whole.saturating_add(*w);
            }
            (Acc::Distribution(a), Acc::Distribution(b)) => {
                for (key, (spelling, n)) in b {
                    let slot = a
                        .entry(key.clone())
                        .or_insert_with(|| (spelling.clone(), 0));
                    if spelling < &slot.0 {
                        slot.0 = spelling.clone();
                    }
                    slot.1 = slot.1.saturating_add(*n);
                }
            }
            _ => {}
        }
    }
}

/// A date bucket, for date and date_time groupings.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    Day,
    Week,
    FiveDays,
    Month,
    Quarter,
    Year,
}

/// What a link-keyed level groups by.
#[derive(Debug, Clone, Copy)]
enum LinkKey {
    Exact,
    Type,
    FirstLetter,
}

/// How Rust finishes a level's key from its SQL key columns.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    /// The value itself, in the field's storage.
    Exact(Storage),
    Bool,
    /// The first character of a text, upper-cased here.
    FirstLetter,
    /// A date's text (`YYYY-MM-DD`, `YYYY-MM` or `YYYY`) to bucket.
    Date(Bucket),
    /// Days since the epoch of a date_time, to bucket.
    EpochDay(Bucket),
    /// A number bucket's lower bound.
    Number,
    /// A link's `(type, id)`: two columns.
    Link(LinkKey),
}

struct Level {
    kind: KeyKind,
    /// The first of its key columns.
    column: usize,
    direction: SortDirection,
}

/// A group's identity within its level. Text is case-folded, so groups that
/// differ only in case are one group on every backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    Null,
    Bool(bool),
    Int(i64),
    /// An f64's bits (`-0.0` folded into `0.0`).
    Real(u64),
    Text(String),
    Link(String, i64),
}

/// A finished group: its key, `group_value` and `group_name`.
struct Group {
    key: GroupKey,
    value: Value,
    name: Value,
}

impl Group {
    fn null() -> Group {
        Group {
            key: GroupKey::Null,
            value: Value::Null,
            name: json!(""),
        }
    }

    /// A group whose name is its value.
    fn plain(key: GroupKey, value: Value) -> Group {
        Group {
            key,
            name: value.clone(),
            value,
        }
    }

    fn text(text: &str) -> Group {
        Group::plain(GroupKey::Text(text.to_lowercase()), json!(text))
    }

    fn first_letter(text: &str) -> Group {
        match text.chars().next() {
            Some(c) => {
                let upper: String = c.to_uppercase().collect();
                Group::plain(GroupKey::Text(upper.to_lowercase()), json!(upper))
            }
            None => Group::null(),
        }
    }
}

fn epoch_day(days: i64) -> Option<NaiveDate> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    if days >= 0 {
        epoch.checked_add_days(Days::new(days as u64))
    } else {
        epoch.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

/// The group of `date` in `bucket`: keyed by the bucket's first day.
fn date_group(date: NaiveDate, bucket: Bucket) -> Option<Group> {
    let (start, label) = match bucket {
        Bucket::Day => (date, date.format("%Y-%m-%d").to_string()),
        Bucket::Week => {
            let monday =
                date.checked_sub_days(Days::new(date.weekday().num_days_from_monday() as u64))?;
            (monday, monday.format("%Y-%m-%d").to_string())
        }
        Bucket::FiveDays => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
            let days = date.signed_duration_since(epoch).num_days();
            let start = epoch_day(days - days.rem_euclid(5))?;
            (start, start.format("%Y-%m-%d").to_string())
        }
        Bucket::Month => (date.with_day(1)?, date.format("%Y-%m").to_string()),
        Bucket::Quarter => {
            let quarter = date.month0() / 3;
            let start = NaiveDate::from_ymd_opt(date.year(), quarter * 3 + 1, 1)?;
            (start, format!("{:04}-Q{}", date.year(), quarter + 1))
        }
        Bucket::Year => (
            NaiveDate::from_ymd_opt(date.year(), 1, 1)?,
            format!("{:04}", date.year()),
        ),
    };
    Some(Group::plain(
        GroupKey::Int(start.num_days_from_ce() as i64),
        json!(label),
    ))
}

/// A date from `YYYY-MM-DD`, `YYYY-MM` or `YYYY` (the first day of the period).
fn date_of_text(text: &str) -> Option<NaiveDate> {
    match text.len() {
        10 => parse_date(text),
        7 => parse_date(&format!("{text}-01")),
        4 => parse_date(&format!("{text}-01-01")),
        _ => None,
    }
}

impl Level {
    /// The finished group of a row, from its key columns.
    fn group(&self, keys: &[SqlValue], names: &Names) -> Group {
        self.try_group(keys, names).unwrap_or_else(Group::null)
    }

    fn try_group(&self, keys: &[SqlValue], names: &Names) -> Option<Group> {
        let value = keys.get(self.column)?;
        if value.is_null() {
            return None;
        }
        Some(match self.kind {
            KeyKind::Exact(storage) => match storage {
                Storage::Id | Storage::Integer => {
                    let i = value.as_i64()?;
                    Group::plain(GroupKey::Int(i), json!(i))
                }
                Storage::Real => {
                    let f = real_of(value)?;
                    let f = if f == 0.0 { 0.0 } else { f };
                    Group::plain(GroupKey::Real(f.to_bits()), json!(f))
                }
                Storage::DateTime => {
                    let t = value.as_i64()?;
                    Group::plain(GroupKey::Int(t), decode_scalar(storage, value))
                }
                _ => Group::text(value.as_str()?),
            },
            KeyKind::Bool => {
                let b = value.as_i64()? != 0;
                Group::plain(GroupKey::Bool(b), json!(b))
            }
            KeyKind::FirstLetter => Group::first_letter(value.as_str()?),
            KeyKind::Date(bucket) => date_group(date_of_text(value.as_str()?)?, bucket)?,
            KeyKind::EpochDay(bucket) => date_group(epoch_day(value.as_i64()?)?, bucket)?,
            KeyKind::Number => {
                let i = value.as_i64()?;
                Group::plain(GroupKey::Int(i), json!(i))
            }
            KeyKind::Link(what) => {
                let entity_type = value.as_str()?;
                let id = keys.get(self.column + 1)?.as_i64()?;
                // Links to retired or missing records read as null.
                let name = names
                    .lookup(entity_type, id)?
                    .map_or(Value::Null, |v| decode_scalar(Storage::Text, v));
                match what {
                    LinkKey::Exact => Group {
                        key: GroupKey::Link(entity_type.to_string(), id),
                        value: json!({"type": entity_type, "id": id, "name": name, "valid": "valid"}),
                        name: if name.is_null() { json!("") } else { name },
                    },
                    LinkKey::Type => Group::text(entity_type),
                    LinkKey::FirstLetter => Group::first_letter(name.as_str()?),
                }
            }
        })
    }
}

/// One group (or the whole query, at the root) and its summaries' partials.
struct Node {
    key: GroupKey,
    value: Value,
    name: Value,
    accs: Vec<Acc>,
    children: HashMap<GroupKey, Node>,
}

impl Node {
    fn new(key: GroupKey, value: Value, name: Value, measures: &[(String, Measure)]) -> Node {
        Node {
            key,
            value,
            name,
            accs: measures.iter().map(|(_, m)| m.empty()).collect(),
            children: HashMap::new(),
        }
    }

    fn add(&mut self, accs: &[Acc]) {
        for (mine, theirs) in self.accs.iter_mut().zip(accs) {
            mine.merge(theirs);
        }
    }

    fn merge_one(&mut self, slot: usize, acc: &Acc) {
        if let Some(mine) = self.accs.get_mut(slot) {
            mine.merge(acc);
        }
    }

    /// The child for `group`, made if new (and counted in `groups`). A text
    /// group keeps the first spelling in byte order of those its rows show
    /// (`IP` before `ip`), so the spelling does not hang on the order rows
    /// come back in.
    fn child(
        &mut self,
        group: Group,
        measures: &[(String, Measure)],
        groups: &mut GroupCount,
    ) -> Result<&mut Node, EngineError> {
        Ok(match self.children.entry(group.key.clone()) {
            Entry::Vacant(slot) => {
                groups.made += 1;
                if groups.made > groups.max {
                    return Err(too_many_groups(groups.max));
                }
                slot.insert(Node::new(group.key, group.value, group.name, measures))
            }
            Entry::Occupied(slot) => {
                let node = slot.into_mut();
                if let (GroupKey::Text(_), Some(new), Some(old)) =
                    (&group.key, group.value.as_str(), node.value.as_str())
                {
                    if new < old {
                        node.value = group.value;
                        node.name = group.name;
                    }
                }
                node
            }
        })
    }
}

/// Groups made so far in one answer's tree, against the most allowed.
struct GroupCount {
    made: usize,
    max: usize,
}

fn too_many_groups(max: usize) -> EngineError {
    EngineError::OverLimit(format!(
        "summarize() makes more than the {max} groups allowed"
    ))
}

/// Going up: null last; links by name, then type and id; text case-folded.
fn compare_nodes(a: &Node, b: &Node) -> Ordering {
    use GroupKey::*;
    match (&a.key, &b.key) {
        (Null, Null) => Ordering::Equal,
        (Null, _) => Ordering::Greater,
        (_, Null) => Ordering::Less,
        (Bool(x), Bool(y)) => x.cmp(y),
        (Int(x), Int(y)) => x.cmp(y),
        (Real(x), Real(y)) => f64::from_bits(*x).total_cmp(&f64::from_bits(*y)),
        (Text(x), Text(y)) => x
            .cmp(y)
            .then_with(|| a.value.as_str().cmp(&b.value.as_str())),
        (Link(t1, i1), Link(t2, i2)) => {
            let name = |n: &Node| n.name.as_str().unwrap_or("").to_lowercase();
            name(a)
                .cmp(&name(b))
                .then_with(|| t1.cmp(t2))
                .then_with(|| i1.cmp(i2))
        }
        _ => Ordering::Equal,
    }
}

fn render_summaries(node: &Node, measures: &[(String, Measure)]) -> Value {
    let mut out = Map::new();
    for ((field, measure), acc) in measures.iter().zip(&node.accs) {
        out.insert(field.clone(), measure.render(acc));
    }
    Value::Object(out)
}

fn render_groups(
    children: HashMap<GroupKey, Node>,
    levels: &[Level],
    measures: &[(String, Measure)],
) -> Value {
    let Some((level, deeper)) = levels.split_first() else {
        return json!([]);
    };
    let mut nodes: Vec<Node> = children.into_values().collect();
    nodes.sort_by(|a, b| match level.direction {
        SortDirection::Asc => compare_nodes(a, b),
        SortDirection::Desc => compare_nodes(b, a),
    });
    Value::Array(
        nodes
            .into_iter()
            .map(|node| {
                let mut group = Map::new();
                group.insert("group_name".into(), node.name.clone());
                group.insert("group_value".into(), node.value.clone());
                group.insert("summaries".into(), render_summaries(&node, measures));
                if !deeper.is_empty() {
                    group.insert(
                        "groups".into(),
                        render_groups(node.children, deeper, measures),
                    );
                }
                Value::Object(group)
            })
            .collect(),
    )
}
