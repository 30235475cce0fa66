//! Compiles a filter tree into a strict boolean SQL condition.
//!
//! Every condition compiles to SQL that is exactly TRUE or FALSE, never NULL,
//! so negation is plain `NOT`: each negative relation (`is_not`, `not_in`,
//! `not_contains`, ...) is the `NOT` of its positive twin, and a null value
//! matches a negative relation unless it matches the positive one.
//!
//! A deep path through an entity link compiles to `link IN (SELECT id FROM
//! linked WHERE ...)`, which lets the index on the link serve the query; the
//! value of the path is null when the link is null, of another type, or points
//! at a retired record. Through a multi_entity link, a condition matches when
//! any linked record of the named type matches.

use chrono::{DateTime, Datelike, Days, Duration, Months, NaiveDate, TimeZone, Utc};
use serde_json::Value;

use sg_protocol::value::{parse_date, parse_date_time, EntityLink};
use sg_protocol::{Condition, DataType, FilterNode, LogicalOperator, Relation};

use crate::error::{bad_request, EngineError};
use crate::frag::Fragment;
use crate::layout::{FieldLayout, Layout, Storage, TableLayout};
use crate::path::{resolve, Hop};
use crate::sql::{escape_like, Dialect, ItemKind, SqlValue};

/// Values of an `in` list (or links of one) beyond which the list is bound
/// as one JSON parameter rather than a placeholder each; see
/// [`Dialect::json_items`]. Below it the SQL stays a plain list, which each
/// store plans as it always has.
const LONG_LIST: usize = 200;

/// Conditions of an `or` group beyond which its `is` conditions on one path
/// are tested as one `in` list (see [`merge_is_conditions`]).
const MERGE_OR_MIN: usize = 32;

/// Compiles the filters of one request. Holds the clock, so that every
/// relative date in one request is judged against the same instant.
pub struct FilterCompiler<'a> {
    pub layout: &'a Layout,
    pub dialect: Dialect,
    pub method: &'static str,
    pub now: DateTime<Utc>,
    /// Conditions the filters may test in all (see
    /// [`crate::QueryLimits::max_conditions`]); unlimited unless set.
    pub max_conditions: usize,
    conditions: std::cell::Cell<usize>,
    next_alias: std::cell::Cell<usize>,
}

/// A compiled condition and whether it matches a null value.
struct Compiled {
    sql: Fragment,
    matches_null: bool,
}

impl Compiled {
    /// Matches where any of `parts` does (nowhere when there are none).
    fn any_of(parts: Vec<Fragment>, matches_null: bool) -> Compiled {
        if parts.is_empty() {
            return Compiled {
                sql: Fragment::text("1 = 0"),
                matches_null: false,
            };
        }
        Compiled {
            sql: parenthesize(Fragment::join_balanced(parts, " OR ")),
            matches_null,
        }
    }
}

impl<'a> FilterCompiler<'a> {
    pub fn new(layout: &'a Layout, dialect: Dialect, method: &'static str) -> FilterCompiler<'a> {
        FilterCompiler {
            layout,
            dialect,
            method,
            now: Utc::now(),
            max_conditions: usize::MAX,
            conditions: std::cell::Cell::new(0),
            next_alias: std::cell::Cell::new(1),
        }
    }

    /// A fresh table alias for subqueries and joins.
    pub fn alias(&self) -> String {
        let n = self.next_alias.get();
        self.next_alias.set(n + 1);
        format!("t{n}")
    }

    /// The condition for `node` on the records of `table` aliased `alias`.
    pub fn compile(
        &self,
        table: &TableLayout,
        alias: &str,
        node: &FilterNode,
    ) -> Result<Fragment, EngineError> {
        match node {
            FilterNode::Group {
                operator,
                conditions,
            } => {
                if conditions.is_empty() {
                    return Ok(Fragment::text("1 = 1"));
                }
                let merged;
                let conditions =
                    if *operator == LogicalOperator::Or && conditions.len() >= MERGE_OR_MIN {
                        merged = self.merge_is_conditions(table, conditions);
                        &merged
                    } else {
                        conditions
                    };
                let parts = conditions
                    .iter()
                    .map(|c| self.compile(table, alias, c).map(parenthesize))
                    .collect::<Result<Vec<_>, _>>()?;
                let sep = match operator {
                    LogicalOperator::And => " AND ",
                    LogicalOperator::Or => " OR ",
                };
                Ok(Fragment::join_balanced(parts, sep))
            }
            FilterNode::Condition(c) => self.condition(table, alias, c),
        }
    }

    /// The conditions of a long `or` group with its `is` conditions on one
    /// path (two or more) turned into one `in` on that path, whose values
    /// are theirs: a path has one value per record (or, through a
    /// multi-entity link, one per linked record, any of which may match), so
    /// "is a or is b" and "in [a, b]" match the same records, and the `in`
    /// is one list lookup instead of a test per condition. Only fields on
    /// which `is` and `in` compile alike are merged (not checkboxes or JSON
    /// values); conditions whose path does not resolve are left as they are,
    /// to fail as they would have.
    fn merge_is_conditions(
        &self,
        table: &TableLayout,
        conditions: &[FilterNode],
    ) -> Vec<FilterNode> {
        let mut lists: Vec<Condition> = Vec::new();
        let mut by_path: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut rest = Vec::new();
        for node in conditions {
            let mergeable = match node {
                FilterNode::Condition(c) if c.relation == Relation::Is && c.values.len() == 1 => {
                    resolve(self.layout, table, &c.path, self.method)
                        .ok()
                        .filter(|p| {
                            !matches!(p.field.storage, Storage::Bool | Storage::Json)
                                && field_supports(p.field, Relation::Is)
                                && field_supports(p.field, Relation::In)
                        })
                        .map(|_| c)
                }
                _ => None,
            };
            match mergeable {
                Some(c) => match by_path.get(c.path.as_str()) {
                    Some(&i) => lists[i].values.extend(c.values.iter().cloned()),
                    None => {
                        by_path.insert(&c.path, lists.len());
                        lists.push(c.clone());
                    }
                },
                None => rest.push(node.clone()),
            }
        }
        for mut list in lists {
            if list.values.len() > 1 {
                list.relation = Relation::In;
            }
            rest.push(FilterNode::Condition(list));
        }
        rest
    }

    fn condition(
        &self,
        root: &TableLayout,
        alias: &str,
        cond: &Condition,
    ) -> Result<Fragment, EngineError> {
        let count = self.conditions.get() + 1;
        self.conditions.set(count);
        if count > self.max_conditions {
            return Err(EngineError::OverLimit(format!(
                "{}() filters test more than the {} conditions allowed",
                self.method, self.max_conditions
            )));
        }
        let path = resolve(self.layout, root, &cond.path, self.method)?;
        let field = path.field;
        if !field_supports(field, cond.relation) {
            return Err(bad_request(format!(
                "API {}() {}.{} is a {} field, which doesn't support the '{}' relation",
                self.method, path.table.entity_type, field.name, field.data_type, cond.relation
            )));
        }
        let mut aliases = vec![alias.to_string()];
        for _ in &path.hops {
            aliases.push(self.alias());
        }
        let leaf_alias = aliases.last().cloned().unwrap_or_default();
        let mut compiled = self.leaf(path.table, &leaf_alias, field, cond)?;
        for (i, hop) in path.hops.iter().enumerate().rev() {
            compiled = self.wrap_hop(hop, &aliases[i], &aliases[i + 1], compiled);
        }
        Ok(compiled.sql)
    }

    fn wrap_hop(&self, hop: &Hop, from: &str, to: &str, inner: Compiled) -> Compiled {
        let target = hop.to;
        let mut sub = Fragment::new();
        sub.push(&format!(
            "SELECT {to}.\"id\" FROM {} {to} WHERE {to}.\"__retired\" = 0 AND ",
            target.table()
        ));
        if hop.is_multi() {
            sub.append(parenthesize(inner.sql));
            let l = self.alias();
            let mut out = Fragment::new();
            out.push(&format!(
                "EXISTS (SELECT 1 FROM {} {l} WHERE {l}.\"src_id\" = {from}.\"id\" AND {l}.\"dst_type\" = ",
                hop.from.link_table(&hop.field.name)
            ));
            out.bind(SqlValue::Text(target.entity_type.clone()));
            out.push(&format!(" AND {l}.\"dst_id\" IN ("))
                .append(sub)
                .push("))");
            return Compiled {
                sql: out,
                matches_null: false,
            };
        }
        // Through an entity link the value is null unless the link resolves, so
        // when the inner condition matches null, test the complement instead.
        let negate = inner.matches_null;
        if negate {
            sub.push("NOT ");
        }
        sub.append(parenthesize(inner.sql));
        let (type_col, id_col) = (
            format!("{from}.{}", hop.field.type_column()),
            format!("{from}.{}", hop.field.column()),
        );
        let mut out = Fragment::new();
        if negate {
            out.push("NOT ");
        }
        out.push(&format!(
            "({type_col} IS NOT NULL AND {id_col} IS NOT NULL AND {type_col} = "
        ));
        out.bind(SqlValue::Text(target.entity_type.clone()));
        out.push(&format!(" AND {id_col} IN ("))
            .append(sub)
            .push("))");
        Compiled {
            sql: out,
            matches_null: negate,
        }
    }

    /// Whether one given record exists and is not retired: a constant the
    /// database evaluates once. Records of types not stored count as live.
    pub fn record_is_live(&self, link: &EntityLink) -> Fragment {
        match self.layout.table(&link.entity_type) {
            None => Fragment::text("1 = 1"),
            Some(t) => {
                let mut f = Fragment::text(format!(
                    "EXISTS (SELECT 1 FROM {} WHERE \"id\" = ",
                    t.table()
                ));
                f.bind(SqlValue::Int(link.id))
                    .push(" AND \"__retired\" = 0)");
                f
            }
        }
    }

    /// A subquery of the ids among `ids` of live records of `entity_type`
    /// (all of them if the type is not stored: such links count as live),
    /// the ids bound as one JSON list: the many-links form of
    /// [`FilterCompiler::record_is_live`].
    fn live_ids(&self, entity_type: &str, ids: &[i64]) -> Fragment {
        let list = serde_json::Value::from(ids.to_vec()).to_string();
        let items = self.dialect.json_items(ItemKind::Int, str::to_string);
        let mut f = match self.layout.table(entity_type) {
            None => Fragment::text(items),
            Some(t) => {
                let a = self.alias();
                let mut f = Fragment::text(format!(
                    "SELECT {a}.\"id\" FROM {} {a} WHERE {a}.\"__retired\" = 0 AND {a}.\"id\" IN (",
                    t.table()
                ));
                f.push(&items);
                f.params.push(SqlValue::Text(list.clone()));
                f.push(")");
                return f;
            }
        };
        f.params.push(SqlValue::Text(list));
        f
    }

    /// Whether the (non-null) link in `type_col`/`id_col` points at a live
    /// record; links to types not stored count as live.
    pub fn link_is_live(&self, valid_types: &[String], type_col: &str, id_col: &str) -> Fragment {
        let candidates: Vec<&TableLayout> = if valid_types.is_empty() {
            self.layout.tables.values().collect()
        } else {
            valid_types
                .iter()
                .filter_map(|t| self.layout.table(t))
                .collect()
        };
        if candidates.is_empty() {
            return Fragment::text("1 = 1");
        }
        let mut f = Fragment::text("(CASE");
        for t in candidates {
            f.push(&format!(" WHEN {type_col} = "))
                .bind(SqlValue::Text(t.entity_type.clone()));
            f.push(&format!(
                " THEN {id_col} IN (SELECT \"id\" FROM {} WHERE \"__retired\" = 0)",
                t.table()
            ));
        }
        f.push(" ELSE 1 = 1 END)");
        f
    }

    /// The display name of the record a `(type, id)` pair points at, as SQL;
    /// `valid_types` narrows the types to look in (all cached types when empty).
    pub fn name_expr(&self, valid_types: &[String], type_col: &str, id_col: &str) -> Fragment {
        let layout = self.layout;
        let candidates: Vec<&TableLayout> = if valid_types.is_empty() {
            layout.tables.values().collect()
        } else {
            valid_types.iter().filter_map(|t| layout.table(t)).collect()
        };
        let mut f = Fragment::text("(CASE");
        let mut any = false;
        for t in candidates {
            let Some(display) = &t.display_field else {
                continue;
            };
            let n = self.alias();
            f.push(&format!(" WHEN {type_col} = "))
                .bind(SqlValue::Text(t.entity_type.clone()));
            f.push(&format!(
                " THEN (SELECT {n}.\"{display}\" FROM {} {n} WHERE {n}.\"id\" = {id_col} AND {n}.\"__retired\" = 0)",
                t.table()
            ));
            any = true;
        }
        if !any {
            return Fragment::text("NULL");
        }
        f.push(" END)");
        f
    }

    /// A condition on a field of the record aliased `alias`.
    fn leaf(
        &self,
        table: &TableLayout,
        alias: &str,
        field: &FieldLayout,
        cond: &Condition,
    ) -> Result<Compiled, EngineError> {
        let (positive, negated) = split_negation(cond.relation);
        let values = normalize_values(&cond.values, positive);
        let ctx = LeafContext {
            compiler: self,
            table,
            alias,
            field,
            cond,
            values: &values,
        };
        let compiled = match field.storage {
            Storage::Entity => ctx.entity(positive)?,
            Storage::Links => ctx.links(positive)?,
            Storage::Tags => ctx.tags(positive)?,
            _ => ctx.scalar(positive)?,
        };
        Ok(if negated {
            let mut sql = Fragment::text("NOT ");
            sql.append(parenthesize(compiled.sql));
            Compiled {
                sql,
                matches_null: !compiled.matches_null,
            }
        } else {
            compiled
        })
    }
}

/// The elements of a tag_list column as a table aliased `alias`, one row per
/// name in its `value` column (none for a null column).
fn tag_elements(dialect: Dialect, column: &str, alias: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("json_each({column}) {alias}"),
        Dialect::Postgres => {
            format!("json_array_elements_text({column}::json) AS {alias}(\"value\")")
        }
    }
}

/// A tag name `element` equal to `other` (a placeholder for `value`, or a
/// column), whatever the letters' case: as [`Dialect::text_equals`] compares
/// text, but with the collation written out, since an array's elements have
/// none of their own.
fn tag_equals(dialect: Dialect, element: &str, other: &str, value: &str) -> String {
    match dialect {
        Dialect::Sqlite if value.is_ascii() && other == "?" => {
            format!("{element} = {other} COLLATE NOCASE")
        }
        Dialect::Sqlite => format!("sg_casefold({element}) = sg_casefold({other})"),
        Dialect::Postgres => format!("lower({element}) = lower({other})"),
    }
}

/// Links grouped by type, each type's ids in the order given.
fn by_type(links: Vec<EntityLink>) -> std::collections::BTreeMap<String, Vec<i64>> {
    let mut grouped: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for link in links {
        grouped.entry(link.entity_type).or_default().push(link.id);
    }
    grouped
}

fn parenthesize(inner: Fragment) -> Fragment {
    let mut out = Fragment::text("(");
    out.append(inner).push(")");
    out
}

/// Whether the site accepts `relation` on this field; `id` takes the number set.
fn field_supports(field: &FieldLayout, relation: Relation) -> bool {
    if field.storage == Storage::Id {
        return DataType::Number.supports(relation);
    }
    field.data_type.supports(relation)
}

/// The positive twin of a relation and whether the relation is its negation.
fn split_negation(relation: Relation) -> (Relation, bool) {
    use Relation::*;
    match relation {
        IsNot => (Is, true),
        NotIn => (In, true),
        NotContains => (Contains, true),
        NotBetween => (Between, true),
        NotInLast => (InLast, true),
        NotInNext => (InNext, true),
        TypeIsNot => (TypeIs, true),
        NameNotContains => (NameContains, true),
        other => (other, false),
    }
}

/// `in` takes its values either spread out or as one list.
fn normalize_values(values: &[Value], relation: Relation) -> Vec<Value> {
    if relation == Relation::In && values.len() == 1 {
        if let Value::Array(items) = &values[0] {
            return items.clone();
        }
    }
    values.to_vec()
}

struct LeafContext<'c, 'a> {
    compiler: &'c FilterCompiler<'a>,
    table: &'c TableLayout,
    alias: &'c str,
    field: &'c FieldLayout,
    cond: &'c Condition,
    values: &'c [Value],
}

impl LeafContext<'_, '_> {
    fn fail(&self, why: &str) -> EngineError {
        bad_request(format!(
            "API {}() filter {}.{} {} {}: {}",
            self.compiler.method,
            self.table.entity_type,
            self.field.name,
            self.cond.relation,
            Value::Array(self.cond.values.clone()),
            why
        ))
    }

    fn one(&self) -> Result<&Value, EngineError> {
        match self.values {
            [v] => Ok(v),
            _ => Err(self.fail("expects exactly one value")),
        }
    }

    fn column(&self) -> String {
        format!("{}.{}", self.alias, self.field.column())
    }

    /// Converts a filter value to the stored form of this field.
    fn stored(&self, value: &Value) -> Result<SqlValue, EngineError> {
        let bad = || {
            self.fail(&format!(
                "{value} is not a valid {} value",
                self.field.data_type
            ))
        };
        Ok(match self.field.storage {
            Storage::Id | Storage::Integer | Storage::Real => match value {
                Value::Number(n) => match n.as_i64() {
                    Some(i) => SqlValue::Int(i),
                    None => SqlValue::Real(n.as_f64().ok_or_else(bad)?),
                },
                _ => return Err(bad()),
            },
            Storage::Bool => SqlValue::Int(value.as_bool().ok_or_else(bad)? as i64),
            Storage::Text => SqlValue::Text(value.as_str().ok_or_else(bad)?.to_string()),
            Storage::Date => {
                let s = value
                    .as_str()
                    .filter(|s| parse_date(s).is_some())
                    .ok_or_else(bad)?;
                SqlValue::Text(s.to_string())
            }
            Storage::DateTime => {
                SqlValue::Int(value.as_str().and_then(parse_date_time).ok_or_else(bad)?)
            }
            Storage::Json | Storage::Entity | Storage::Links | Storage::Tags => return Err(bad()),
        })
    }

    /// `(col IS NOT NULL AND col <op> ?)`: strict, false on null.
    fn compare(&self, op: &str, value: SqlValue) -> Fragment {
        let col = self.column();
        let mut f = Fragment::text(format!("({col} IS NOT NULL AND "));
        if op == "=" && self.field.storage == Storage::Text {
            let text = value.as_str().unwrap_or_default().to_string();
            f.push(&self.compiler.dialect.text_equals(&col, "?", &text));
            f.params.push(value);
        } else {
            f.push(&format!("{col} {op} ")).bind(value);
        }
        f.push(")");
        f
    }

    fn range(&self, low: SqlValue, high: SqlValue, high_inclusive: bool) -> Fragment {
        let col = self.column();
        let mut f = Fragment::text(format!("({col} IS NOT NULL AND {col} >= "));
        f.bind(low)
            .push(&format!(
                " AND {col} {} ",
                if high_inclusive { "<=" } else { "<" }
            ))
            .bind(high)
            .push(")");
        f
    }

    fn scalar(&self, relation: Relation) -> Result<Compiled, EngineError> {
        use Relation::*;
        let col = self.column();
        let storage = self.field.storage;
        if storage == Storage::Bool {
            // A checkbox is never null on a site (unset reads as false), and
            // filtering one with None is an API error there.
            let b = self
                .one()?
                .as_bool()
                .ok_or_else(|| self.fail("a checkbox compares with true or false, not None"))?;
            let mut f = Fragment::text(format!("COALESCE({col}, 0) = "));
            f.bind(SqlValue::Int(b as i64));
            // Through a null link there is no checkbox at all: `is` matches nothing there.
            return Ok(Compiled {
                sql: f,
                matches_null: false,
            });
        }
        match relation {
            Is => {
                let v = self.one()?;
                if v.is_null() {
                    return Ok(Compiled {
                        sql: Fragment::text(format!("{col} IS NULL")),
                        matches_null: true,
                    });
                }
                if storage == Storage::Json {
                    return Err(self.fail("only None can be compared with this field"));
                }
                Ok(Compiled {
                    sql: self.compare("=", self.stored(v)?),
                    matches_null: false,
                })
            }
            In => {
                let mut with_null = false;
                let mut items = Vec::new();
                for v in self.values {
                    if v.is_null() {
                        with_null = true;
                    } else {
                        items.push(self.stored(v)?);
                    }
                }
                let mut f = Fragment::text("(");
                if with_null {
                    f.push(&format!("{col} IS NULL OR "));
                }
                if items.is_empty() {
                    f.push("1 = 0");
                } else {
                    // Text compares case-insensitively; see Dialect::text_equals.
                    let dialect = self.compiler.dialect;
                    let fold = storage == Storage::Text
                        && (dialect == Dialect::Postgres
                            || items
                                .iter()
                                .any(|v| v.as_str().is_some_and(|t| !t.is_ascii())));
                    let target = if fold {
                        dialect.fold(&col)
                    } else {
                        col.clone()
                    };
                    f.push(&format!("({col} IS NOT NULL AND {target} IN ("));
                    match ItemKind::json_list(&items).filter(|_| items.len() > LONG_LIST) {
                        Some((kind, list)) => {
                            f.push(&dialect.json_items(kind, |value| {
                                if fold {
                                    dialect.fold(value)
                                } else {
                                    value.to_string()
                                }
                            }));
                            f.params.push(SqlValue::Text(list));
                        }
                        None => {
                            for (i, item) in items.into_iter().enumerate() {
                                if i > 0 {
                                    f.push(", ");
                                }
                                if fold {
                                    f.push(&dialect.fold("?"));
                                    f.params.push(item);
                                } else {
                                    f.bind(item);
                                }
                            }
                        }
                    }
                    f.push("))");
                }
                f.push(")");
                Ok(Compiled {
                    sql: f,
                    matches_null: with_null,
                })
            }
            LessThan | GreaterThan => {
                let v = self.one()?;
                if v.is_null() {
                    return Err(self.fail("needs a value, not None"));
                }
                let op = if relation == LessThan { "<" } else { ">" };
                Ok(Compiled {
                    sql: self.compare(op, self.stored(v)?),
                    matches_null: false,
                })
            }
            Between => {
                let [low, high] = self.values else {
                    return Err(self.fail("expects two values"));
                };
                if low.is_null() || high.is_null() {
                    return Err(self.fail("needs two values, not None"));
                }
                Ok(Compiled {
                    sql: self.range(self.stored(low)?, self.stored(high)?, true),
                    matches_null: false,
                })
            }
            Contains | StartsWith | EndsWith => {
                let v = self.one()?;
                let text = match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    _ => return Err(self.fail("expects a string")),
                };
                let escaped = escape_like(&text);
                let pattern = match relation {
                    Contains => format!("%{escaped}%"),
                    StartsWith => format!("{escaped}%"),
                    _ => format!("%{escaped}"),
                };
                // A null text reads as "" here, as it does on the site's client mock.
                let matches_null = text.is_empty();
                let mut f = Fragment::text(format!(
                    "({col} {} ",
                    if matches_null {
                        "IS NULL OR"
                    } else {
                        "IS NOT NULL AND"
                    }
                ));
                f.push(&self.compiler.dialect.text_like(&col, "?", &pattern));
                f.params.push(SqlValue::Text(pattern));
                f.push(")");
                Ok(Compiled {
                    sql: f,
                    matches_null,
                })
            }
            InLast | InNext => {
                let (n, unit) = match self.values {
                    [Value::Number(n), Value::String(unit)] => (n.as_i64(), unit.as_str()),
                    _ => {
                        return Err(self
                            .fail("expects a number and a unit (HOUR, DAY, WEEK, MONTH or YEAR)"))
                    }
                };
                let n = n.ok_or_else(|| self.fail("expects a whole number"))?;
                let now = self.compiler.now;
                let signed = if relation == InLast {
                    n.checked_neg()
                } else {
                    Some(n)
                };
                let shifted = signed
                    .and_then(|n| shift(now, n, unit))
                    .ok_or_else(|| self.fail("expects a unit of HOUR, DAY, WEEK, MONTH or YEAR"))?;
                let (start, end) = if relation == InLast {
                    (shifted, now)
                } else {
                    (now, shifted)
                };
                Ok(Compiled {
                    sql: self.time_range(start, end, true)?,
                    matches_null: false,
                })
            }
            InCalendarDay | InCalendarWeek | InCalendarMonth | InCalendarYear => {
                let offset = match self.values {
                    [Value::Number(n)] => n
                        .as_i64()
                        .ok_or_else(|| self.fail("expects a whole number"))?,
                    _ => {
                        return Err(self.fail("expects one whole number (0 is the current period)"))
                    }
                };
                let (start, end) =
                    calendar_period(self.compiler.now.date_naive(), relation, offset)
                        .ok_or_else(|| self.fail("the period is out of range"))?;
                let to_time = |d: NaiveDate| {
                    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                };
                Ok(Compiled {
                    sql: self.time_range(to_time(start), to_time(end), false)?,
                    matches_null: false,
                })
            }
            _ => Err(self.fail("is not supported on this field")),
        }
    }

    /// `[start, end]` (or `[start, end)`) on a date or date_time field.
    fn time_range(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        inclusive: bool,
    ) -> Result<Fragment, EngineError> {
        Ok(match self.field.storage {
            Storage::DateTime => self.range(
                SqlValue::Int(start.timestamp()),
                SqlValue::Int(end.timestamp()),
                inclusive,
            ),
            Storage::Date => {
                let fmt = |t: DateTime<Utc>| SqlValue::Text(t.format("%Y-%m-%d").to_string());
                self.range(fmt(start), fmt(end), inclusive)
            }
            _ => return Err(self.fail("needs a date or date_time field")),
        })
    }

    /// The values of `is` (its one value) or of `in`.
    fn listed(&self, relation: Relation) -> Result<Vec<&Value>, EngineError> {
        if relation == Relation::Is {
            Ok(vec![self.one()?])
        } else {
            Ok(self.values.iter().collect())
        }
    }

    /// The link in `type_col`/`id_col` is `link`, to a live record.
    /// `guard` (conditions ending in `AND `, or nothing) comes first.
    fn is_live_link(
        &self,
        guard: &str,
        type_col: &str,
        id_col: &str,
        link: EntityLink,
    ) -> Fragment {
        let live = self.compiler.record_is_live(&link);
        let mut f = Fragment::text(format!("({guard}{id_col} = "));
        f.bind(SqlValue::Int(link.id))
            .push(&format!(" AND {type_col} = "))
            .bind(SqlValue::Text(link.entity_type))
            .push(" AND ")
            .append(live)
            .push(")");
        f
    }

    /// [`Self::is_live_link`] for a long list of links: one condition per
    /// type, the link being to a live one of that type's listed records.
    fn among_live_links(
        &self,
        guard: &str,
        type_col: &str,
        id_col: &str,
        links: Vec<EntityLink>,
    ) -> Vec<Fragment> {
        by_type(links)
            .into_iter()
            .map(|(entity_type, ids)| {
                let mut f = Fragment::text(format!("({guard}{type_col} = "));
                f.bind(SqlValue::Text(entity_type.clone()))
                    .push(&format!(" AND {id_col} IN ("))
                    .append(self.compiler.live_ids(&entity_type, &ids))
                    .push("))");
                f
            })
            .collect()
    }

    fn link(&self, v: &Value) -> Result<EntityLink, EngineError> {
        EntityLink::from_json(v).ok_or_else(|| {
            self.fail(&format!(
                "{v} is not an entity dictionary with 'type' and 'id'"
            ))
        })
    }

    fn name_pattern(&self, relation: Relation) -> Result<String, EngineError> {
        let text = self
            .one()?
            .as_str()
            .ok_or_else(|| self.fail("expects a string"))?;
        let escaped = escape_like(text);
        Ok(match relation {
            Relation::NameIs => escaped,
            Relation::NameStartsWith => format!("{escaped}%"),
            Relation::NameEndsWith => format!("%{escaped}"),
            _ => format!("%{escaped}%"),
        })
    }

    fn name_match(
        &self,
        type_col: &str,
        id_col: &str,
        relation: Relation,
    ) -> Result<Fragment, EngineError> {
        let pattern = self.name_pattern(relation)?;
        // Strict: a link with no name (null) does not match. `IS TRUE` reads
        // a null match as false on both stores (a PostgreSQL match is a
        // boolean, a SQLite one an integer, so no COALESCE(.., 0) fits both).
        let mut f = Fragment::text("(");
        let name = self
            .compiler
            .name_expr(&self.field.valid_types, type_col, id_col);
        let like = self.compiler.dialect.text_like("§", "?", &pattern);
        let (before, after) = like.split_once('§').unwrap_or(("", ""));
        f.push(before).append(name).push(after);
        f.params.push(SqlValue::Text(pattern));
        f.push(") IS TRUE");
        Ok(f)
    }

    fn entity(&self, relation: Relation) -> Result<Compiled, EngineError> {
        use Relation::*;
        let type_col = format!("{}.{}", self.alias, self.field.type_column());
        let id_col = self.column();
        // A null link makes the condition false, not unknown, so that its
        // negation (`is_not`, `not_in`) matches it.
        let not_null = format!("{id_col} IS NOT NULL AND {type_col} IS NOT NULL AND ");
        match relation {
            Is | In => {
                let values = self.listed(relation)?;
                let mut parts = Vec::new();
                let mut with_null = false;
                let long = values.len() > LONG_LIST;
                let mut links = Vec::new();
                for v in values {
                    if v.is_null() {
                        if with_null {
                            continue;
                        }
                        // A link to a retired record reads as null, so it matches None too.
                        with_null = true;
                        let mut f = Fragment::text(format!("({id_col} IS NULL OR NOT "));
                        f.append(self.compiler.link_is_live(
                            &self.field.valid_types,
                            &type_col,
                            &id_col,
                        ))
                        .push(")");
                        parts.push(f);
                    } else if long {
                        links.push(self.link(v)?);
                    } else {
                        parts.push(self.is_live_link(&not_null, &type_col, &id_col, self.link(v)?));
                    }
                }
                parts.extend(self.among_live_links(&not_null, &type_col, &id_col, links));
                Ok(Compiled::any_of(parts, with_null))
            }
            TypeIs => {
                let v = self.one()?;
                if v.is_null() {
                    return Ok(Compiled {
                        sql: Fragment::text(format!("{type_col} IS NULL")),
                        matches_null: true,
                    });
                }
                let t = v
                    .as_str()
                    .ok_or_else(|| self.fail("expects an entity type name"))?;
                let mut f = Fragment::text(format!("({type_col} IS NOT NULL AND {type_col} = "));
                f.bind(SqlValue::Text(t.to_string())).push(" AND ").append(
                    self.compiler
                        .link_is_live(&self.field.valid_types, &type_col, &id_col),
                );
                f.push(")");
                Ok(Compiled {
                    sql: f,
                    matches_null: false,
                })
            }
            NameIs | NameContains | NameStartsWith | NameEndsWith => Ok(Compiled {
                sql: self.name_match(&type_col, &id_col, relation)?,
                matches_null: false,
            }),
            _ => Err(self.fail("is not supported on this field")),
        }
    }

    /// A condition on a tag_list field (see `crate::layout`): `is` a name
    /// (the record has that tag; `is None`, it has none), `name_contains`
    /// text (one of its tags' names contains it), `name_id` an id (it has
    /// the tag whose Tag record has that id); names compare as text does,
    /// whatever the letters' case. `is_not` and `name_not_contains` are
    /// their negations, so a record without tags matches them.
    fn tags(&self, relation: Relation) -> Result<Compiled, EngineError> {
        use Relation::*;
        let dialect = self.compiler.dialect;
        let column = self.column();
        let e = self.compiler.alias();
        let has_tag = |condition: Fragment| {
            let mut f = Fragment::text(format!(
                "EXISTS (SELECT 1 FROM {} WHERE ",
                tag_elements(dialect, &column, &e)
            ));
            f.append(condition).push(")");
            f
        };
        let element = format!("{e}.\"value\"");
        match relation {
            Is => match self.one()? {
                Value::Null => Ok(Compiled {
                    sql: Fragment::text(format!("{column} IS NULL")),
                    matches_null: true,
                }),
                Value::String(name) => {
                    let mut f = Fragment::text(tag_equals(dialect, &element, "?", name));
                    f.params.push(SqlValue::Text(name.clone()));
                    Ok(Compiled {
                        sql: has_tag(f),
                        matches_null: false,
                    })
                }
                _ => Err(self.fail("expects a tag name")),
            },
            NameContains => {
                let pattern = self.name_pattern(relation)?;
                let mut f = Fragment::text(dialect.text_like(&element, "?", &pattern));
                f.params.push(SqlValue::Text(pattern));
                Ok(Compiled {
                    sql: has_tag(f),
                    matches_null: false,
                })
            }
            NameId => {
                let id = self
                    .one()?
                    .as_i64()
                    .ok_or_else(|| self.fail("expects the id of a Tag"))?;
                // Names are all the cache holds: the id is looked up among
                // the Tag records, and with none stored no record has it.
                let Some(tag_names) = self
                    .compiler
                    .layout
                    .table("Tag")
                    .filter(|t| t.field("name").is_some_and(|f| f.storage == Storage::Text))
                else {
                    return Ok(Compiled {
                        sql: Fragment::text("1 = 0"),
                        matches_null: false,
                    });
                };
                let g = self.compiler.alias();
                let mut f = Fragment::text(format!(
                    "EXISTS (SELECT 1 FROM {} {g} WHERE {g}.\"id\" = ",
                    tag_names.table()
                ));
                f.bind(SqlValue::Int(id));
                f.push(&format!(" AND {g}.\"__retired\" = 0 AND "));
                f.append(has_tag(Fragment::text(tag_equals(
                    dialect,
                    &element,
                    &format!("{g}.\"name\""),
                    "",
                ))));
                f.push(")");
                Ok(Compiled {
                    sql: f,
                    matches_null: false,
                })
            }
            _ => Err(self.fail("is not supported on this field")),
        }
    }

    fn links(&self, relation: Relation) -> Result<Compiled, EngineError> {
        use Relation::*;
        let l = self.compiler.alias();
        let link_table = self.table.link_table(&self.field.name);
        let exists = |cond: Fragment| {
            let mut f = Fragment::text(format!(
                "EXISTS (SELECT 1 FROM {link_table} {l} WHERE {l}.\"src_id\" = {}.\"id\"",
                self.alias
            ));
            if !cond.sql.is_empty() {
                f.push(" AND ").append(cond);
            }
            f.push(")");
            f
        };
        let (type_col, id_col) = (format!("{l}.\"dst_type\""), format!("{l}.\"dst_id\""));
        match relation {
            Is | In => {
                let values = self.listed(relation)?;
                let mut with_null = false;
                let mut pairs = Vec::new();
                let long = values.len() > LONG_LIST;
                let mut links = Vec::new();
                for v in values {
                    if v.is_null() {
                        with_null = true;
                        continue;
                    }
                    let link = self.link(v)?;
                    if long {
                        links.push(link);
                        continue;
                    }
                    pairs.push(self.is_live_link("", &type_col, &id_col, link));
                }
                pairs.extend(self.among_live_links("", &type_col, &id_col, links));
                let mut parts = Vec::new();
                if with_null {
                    // `is None` on a list of links means it shows no link:
                    // links to retired records are hidden.
                    let mut none = Fragment::text("NOT ");
                    none.append(exists(self.compiler.link_is_live(
                        &self.field.valid_types,
                        &type_col,
                        &id_col,
                    )));
                    parts.push(none);
                }
                if !pairs.is_empty() {
                    parts.push(exists(parenthesize(Fragment::join_balanced(pairs, " OR "))));
                }
                Ok(Compiled::any_of(parts, with_null))
            }
            TypeIs => {
                let t = self
                    .one()?
                    .as_str()
                    .ok_or_else(|| self.fail("expects an entity type name"))?;
                let mut f = Fragment::text(format!("{type_col} = "));
                f.bind(SqlValue::Text(t.to_string())).push(" AND ").append(
                    self.compiler
                        .link_is_live(&self.field.valid_types, &type_col, &id_col),
                );
                Ok(Compiled {
                    sql: exists(f),
                    matches_null: false,
                })
            }
            NameIs | NameContains | NameStartsWith | NameEndsWith | Contains => {
                let rel = if relation == Contains {
                    NameContains
                } else {
                    relation
                };
                Ok(Compiled {
                    sql: exists(self.name_match(&type_col, &id_col, rel)?),
                    matches_null: false,
                })
            }
            NameId => {
                let id = self
                    .one()?
                    .as_i64()
                    .ok_or_else(|| self.fail("expects an id"))?;
                let mut f = Fragment::text(format!("{id_col} = "));
                f.bind(SqlValue::Int(id));
                Ok(Compiled {
                    sql: exists(f),
                    matches_null: false,
                })
            }
            _ => Err(self.fail("is not supported on this field")),
        }
    }
}

/// `now` moved by `n` units.
fn shift(now: DateTime<Utc>, n: i64, unit: &str) -> Option<DateTime<Utc>> {
    let months = |m: i64| -> Option<DateTime<Utc>> {
        let abs = Months::new(u32::try_from(m.unsigned_abs()).ok()?);
        if m >= 0 {
            now.checked_add_months(abs)
        } else {
            now.checked_sub_months(abs)
        }
    };
    match unit.to_ascii_uppercase().as_str() {
        "HOUR" => now.checked_add_signed(Duration::try_hours(n)?),
        "DAY" => now.checked_add_signed(Duration::try_days(n)?),
        "WEEK" => now.checked_add_signed(Duration::try_weeks(n)?),
        "MONTH" => months(n),
        "YEAR" => months(n.checked_mul(12)?),
        _ => None,
    }
}

/// The `[start, end)` dates of the calendar period `offset` periods from today's.
/// Weeks start on Monday.
fn calendar_period(
    today: NaiveDate,
    relation: Relation,
    offset: i64,
) -> Option<(NaiveDate, NaiveDate)> {
    let add_days = |d: NaiveDate, n: i64| -> Option<NaiveDate> {
        if n >= 0 {
            d.checked_add_days(Days::new(n as u64))
        } else {
            d.checked_sub_days(Days::new(n.unsigned_abs()))
        }
    };
    let add_months = |d: NaiveDate, n: i64| -> Option<NaiveDate> {
        let m = Months::new(u32::try_from(n.unsigned_abs()).ok()?);
        if n >= 0 {
            d.checked_add_months(m)
        } else {
            d.checked_sub_months(m)
        }
    };
    match relation {
        Relation::InCalendarDay => {
            let start = add_days(today, offset)?;
            Some((start, add_days(start, 1)?))
        }
        Relation::InCalendarWeek => {
            let monday = add_days(today, -(today.weekday().num_days_from_monday() as i64))?;
            let start = add_days(monday, offset.checked_mul(7)?)?;
            Some((start, add_days(start, 7)?))
        }
        Relation::InCalendarMonth => {
            let first = today.with_day(1)?;
            let start = add_months(first, offset)?;
            Some((start, add_months(start, 1)?))
        }
        Relation::InCalendarYear => {
            let first = NaiveDate::from_ymd_opt(today.year(), 1, 1)?;
            let start = add_months(first, offset.checked_mul(12)?)?;
            Some((start, add_months(start, 12)?))
        }
        _ => None,
    }
}
