//! The `read` method: plans the SQL for a request, runs it, and renders the
//! rows as the site renders them, with link names resolved at read time.

use crate::limits::QueryLimits;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use sg_protocol::value::EntityLink;
use sg_protocol::{FilterNode, ReadParams, ReturnOnly, SortDirection};

use crate::error::{bad_request, EngineError};
use crate::filter::FilterCompiler;
use crate::frag::{Fragment, IN_LIST_MAX};
use crate::joins::HopJoins;
use crate::layout::{FieldLayout, Layout, Storage, TableLayout};
use crate::path::{resolve, Hop, ResolvedPath};
use crate::render::{JsonBytes, Sink, ValueTree};
use crate::sql::SqlValue;
use crate::store::{Connection, Rows};

/// How one returned field gets its value from the row and the follow-up queries.
enum Getter<'a> {
    Scalar {
        column: usize,
        storage: Storage,
        /// For a deep path, the linked record's id: when it is null there is
        /// no record, and the value is null whatever its type (even a checkbox).
        record_column: Option<usize>,
    },
    Entity {
        type_column: usize,
        id_column: usize,
    },
    /// A list of links of the record whose id is in `source_column`.
    Links {
        source_column: usize,
        table: &'a TableLayout,
        field: &'a FieldLayout,
    },
    /// Values of `leaf` on every record linked through a multi_entity `hop`.
    ThroughLinks {
        source_column: usize,
        hop: Hop<'a>,
        leaf: &'a FieldLayout,
    },
}

/// The pieces of the main SELECT.
struct Plan<'a> {
    compiler: FilterCompiler<'a>,
    columns: Vec<String>,
    joins: HopJoins,
    root: &'a TableLayout,
}

impl<'a> Plan<'a> {
    fn column(&mut self, expr: String) -> usize {
        if let Some(i) = self.columns.iter().position(|c| *c == expr) {
            return i;
        }
        self.columns.push(expr);
        self.columns.len() - 1
    }

    fn getter(&mut self, path: &str) -> Result<Getter<'a>, EngineError> {
        let resolved: ResolvedPath<'a> = resolve(self.compiler.layout, self.root, path, "read")?;
        let multi_at = resolved.hops.iter().position(Hop::is_multi);
        if let Some(at) = multi_at {
            if at + 1 != resolved.hops.len() || resolved.field.storage == Storage::Links {
                return Err(bad_request(format!(
                    "API read() {}.{path}: a deep field can only end one step past a multi-entity field",
                    self.root.entity_type
                )));
            }
            let alias = self.joins.join(&self.compiler, path, &resolved.hops[..at]);
            let source_column = self.column(format!("{alias}.\"id\""));
            let hop = resolved.hops[at].clone();
            return Ok(Getter::ThroughLinks {
                source_column,
                hop,
                leaf: resolved.field,
            });
        }
        let alias = self.joins.join(&self.compiler, path, &resolved.hops);
        let field = resolved.field;
        Ok(match field.storage {
            Storage::Entity => Getter::Entity {
                type_column: self.column(format!("{alias}.{}", field.type_column())),
                id_column: self.column(format!("{alias}.{}", field.column())),
            },
            Storage::Links => Getter::Links {
                source_column: self.column(format!("{alias}.\"id\"")),
                table: resolved.table,
                field,
            },
            storage => Getter::Scalar {
                column: self.column(format!("{alias}.{}", field.column())),
                storage,
                record_column: if resolved.hops.is_empty() {
                    None
                } else {
                    Some(self.column(format!("{alias}.\"id\"")))
                },
            },
        })
    }

    /// The ORDER BY expression of a sort key.
    fn sort_expr(&mut self, path: &str) -> Result<Fragment, EngineError> {
        let resolved = resolve(self.compiler.layout, self.root, path, "read")?;
        if resolved.has_multi_hop() || resolved.field.storage == Storage::Links {
            return Err(bad_request(format!(
                "API read() can't sort {} by {path}, a multi-entity field",
                self.root.entity_type
            )));
        }
        if resolved.field.storage == Storage::Tags {
            return Err(bad_request(format!(
                "API read() can't sort {} by {path}, a tag_list field",
                self.root.entity_type
            )));
        }
        let alias = self.joins.join(&self.compiler, path, &resolved.hops);
        let field = resolved.field;
        let dialect = self.compiler.dialect;
        let column = format!("{alias}.{}", field.column());
        Ok(match field.storage {
            // Links sort by name, and text case-insensitively.
            Storage::Entity => {
                let name = self.compiler.name_expr(
                    &field.valid_types,
                    &format!("{alias}.{}", field.type_column()),
                    &column,
                );
                Fragment {
                    sql: dialect.sort_text(&name.sql),
                    params: name.params,
                }
            }
            Storage::Text => Fragment::text(dialect.sort_text(&column)),
            Storage::Date | Storage::Json => Fragment::text(dialect.sort_bytes(&column)),
            _ => Fragment::text(column),
        })
    }
}

/// Runs a `read`: plans and runs its queries and returns what they found,
/// ready to render.
pub fn query(
    conn: &mut dyn Connection,
    layout: &Layout,
    params: &ReadParams,
) -> Result<ReadRows, EngineError> {
    query_within(conn, layout, params, &QueryLimits::UNLIMITED)
}

/// Runs a `read` as [`query`] does, its filter within `limits`.
pub fn query_within(
    conn: &mut dyn Connection,
    layout: &Layout,
    params: &ReadParams,
    limits: &QueryLimits,
) -> Result<ReadRows, EngineError> {
    let root = layout.table(&params.entity_type).ok_or_else(|| {
        bad_request(format!(
            "API read() entity type {} doesn't exist",
            params.entity_type
        ))
    })?;
    if params
        .additional_filter_presets
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(bad_request(
            "API read() additional_filter_presets are not supported here",
        ));
    }
    let mut compiler = FilterCompiler::new(layout, conn.dialect(), "read");
    compiler.max_conditions = limits.max_conditions;
    let mut plan = Plan {
        compiler,
        columns: vec!["t0.\"id\"".to_string()],
        joins: HopJoins::default(),
        root,
    };

    let where_clause = where_clause(
        &plan.compiler,
        root,
        &params.filters,
        params.return_only,
        params.include_archived_projects,
    )?;

    let mut getters: Vec<(String, Getter)> = Vec::new();
    for field in &params.return_fields {
        if field == "type" || field == "id" || getters.iter().any(|(k, _)| k == field) {
            continue;
        }
        let getter = plan.getter(field)?;
        getters.push((field.clone(), getter));
    }

    let mut order = Vec::new();
    let mut sorted_by_id = false;
    for sort in &params.sorts {
        let expr = plan.sort_expr(&sort.field_name)?;
        sorted_by_id |= sort.field_name == "id";
        let dir = match sort.direction {
            SortDirection::Asc => "ASC",
            SortDirection::Desc => "DESC",
        };
        // Nulls last going up and first going down, as PostgreSQL-backed sites
        // order them. A record's own id is never null, and ordering by the bare
        // column lets both stores walk the primary key instead of sorting every
        // matching row for one page (that made paging a large type quadratic).
        if sort.field_name == "id" {
            let mut f = expr;
            f.push(&format!(" {dir}"));
            order.push(f);
            continue;
        }
        let mut f = Fragment::text("(");
        f.append(expr.clone()).push(&format!(" IS NULL) {dir}, "));
        f.append(expr).push(&format!(" {dir}"));
        order.push(f);
    }
    if !sorted_by_id {
        order.push(Fragment::text("t0.\"id\" ASC"));
    }

    let per_page = params.paging.entities_per_page;
    let offset = (params.paging.current_page.saturating_sub(1)).saturating_mul(per_page);
    let mut sql = Fragment::text(format!(
        "SELECT {} FROM {} t0",
        plan.columns.join(", "),
        root.table()
    ));
    sql.append(plan.joins.sql.clone());
    sql.push(" WHERE ").append(where_clause.clone());
    sql.push(" ORDER BY ").append(Fragment::join(order, ", "));
    sql.push(" LIMIT ").bind(SqlValue::Int(
        per_page.saturating_add(1).min(i64::MAX as u64) as i64,
    ));
    sql.push(" OFFSET ")
        .bind(SqlValue::Int(offset.min(i64::MAX as u64) as i64));
    let (text, values) = sql.finish(conn.dialect());
    let mut rows = conn.query(&text, &values)?;
    let has_next_page = rows.len() as u64 > per_page;
    rows.truncate(per_page as usize);

    let mut fields = Vec::with_capacity(getters.len());
    for (key, getter) in getters {
        let shape = shape_of(conn, getter, &rows)?;
        fields.push((key, shape));
    }
    let names = Names::fetch(conn, layout, wanted_links(&fields, &rows))?;

    let counts = if params.return_paging_info && !params.return_paging_info_without_counts {
        let mut count = Fragment::text(format!("SELECT COUNT(*) FROM {} t0 WHERE ", root.table()));
        count.append(where_clause);
        let (text, values) = count.finish(conn.dialect());
        let total = conn
            .query(&text, &values)?
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
        Some(Counts {
            entity_count: total,
            current_page: params.paging.current_page,
            entities_per_page: per_page,
            page_count: (total as u64).div_ceil(per_page.max(1)),
        })
    } else {
        None
    };
    Ok(ReadRows {
        entity_type: root.entity_type.clone(),
        rows,
        fields,
        names,
        counts,
        has_next_page,
    })
}

/// Runs a `read` and returns its `results` value.
pub fn read(
    conn: &mut dyn Connection,
    layout: &Layout,
    params: &ReadParams,
) -> Result<Value, EngineError> {
    Ok(query(conn, layout, params)?.to_value())
}

/// One value of a list field, before links get their names.
enum Item {
    Null,
    Link(String, i64),
    Scalar(Storage, SqlValue),
}

/// How a returned field's value is found in a row (and what was fetched for it).
enum Shape {
    Scalar {
        column: usize,
        storage: Storage,
        /// For a deep path, the linked record's id: when it is null there is
        /// no record, and the value is null whatever its type (even a checkbox).
        record_column: Option<usize>,
    },
    Link {
        type_column: usize,
        id_column: usize,
    },
    /// The list of the record whose id is in `source_column`; a record with
    /// no entry has an empty list, a null source a null value.
    List {
        source_column: usize,
        by_source: HashMap<i64, Vec<Item>>,
    },
}

/// The paging counts, when asked for.
struct Counts {
    entity_count: i64,
    current_page: u64,
    entities_per_page: u64,
    page_count: u64,
}

/// What a `read` found, not yet rendered: the rows, what the follow-up
/// queries fetched and the links' names. It renders as a `Value`
/// ([`ReadRows::to_value`]) or straight to JSON text ([`ReadRows::write_json`]),
/// both from one walk ([`ReadRows::render`]), so the two are the same JSON.
pub struct ReadRows {
    entity_type: String,
    rows: Rows,
    fields: Vec<(String, Shape)>,
    names: Names,
    counts: Option<Counts>,
    has_next_page: bool,
}

impl ReadRows {
    /// The `results` value, `{entities, paging_info}`.
    pub fn to_value(&self) -> Value {
        let mut tree = ValueTree::default();
        self.render(&mut tree);
        tree.finish()
    }

    /// Appends the `results` value as compact JSON text to `out`.
    pub fn write_json(&self, mut out: Vec<u8>) -> Vec<u8> {
        // Roughly what a record takes, so a page is written without the
        // buffer being copied over and over as it grows.
        out.reserve(64 + self.rows.len() * (32 + 40 * self.fields.len()));
        let mut bytes = JsonBytes::new(out);
        self.render(&mut bytes);
        bytes.out
    }

    /// Emits the `results` value: records with `type` and `id` first and the
    /// fields in the order asked, then the paging info.
    pub fn render(&self, sink: &mut dyn Sink) {
        sink.begin_object();
        sink.key("entities");
        sink.begin_array();
        for row in &self.rows {
            sink.begin_object();
            sink.key("type");
            sink.str(&self.entity_type);
            sink.key("id");
            sink.scalar(Storage::Id, &row[0]);
            for (key, shape) in &self.fields {
                sink.key(key);
                self.render_field(sink, shape, row);
            }
            sink.end_object();
        }
        sink.end_array();
        sink.key("paging_info");
        sink.begin_object();
        if let Some(c) = &self.counts {
            sink.key("entity_count");
            sink.int(c.entity_count);
            sink.key("current_page");
            sink.uint(c.current_page);
            sink.key("entities_per_page");
            sink.uint(c.entities_per_page);
            sink.key("page_count");
            sink.uint(c.page_count);
        }
        sink.key("has_next_page");
        sink.bool(self.has_next_page);
        sink.end_object();
        sink.end_object();
    }

    fn render_field(&self, sink: &mut dyn Sink, shape: &Shape, row: &[SqlValue]) {
        match shape {
            Shape::Scalar {
                column,
                storage,
                record_column,
            } => {
                if record_column.is_some_and(|c| row[c].is_null()) {
                    sink.null();
                } else {
                    sink.scalar(*storage, &row[*column]);
                }
            }
            Shape::Link {
                type_column,
                id_column,
            } => match (row[*type_column].as_str(), row[*id_column].as_i64()) {
                (Some(t), Some(id)) => {
                    if !self.names.render_link(sink, t, id) {
                        sink.null();
                    }
                }
                _ => sink.null(),
            },
            Shape::List {
                source_column,
                by_source,
            } => {
                let Some(source) = row[*source_column].as_i64() else {
                    // The record the list hangs off (through an entity link) is absent.
                    sink.null();
                    return;
                };
                sink.begin_array();
                for item in by_source.get(&source).map(Vec::as_slice).unwrap_or(&[]) {
                    match item {
                        Item::Null => sink.null(),
                        Item::Scalar(storage, value) => sink.scalar(*storage, value),
                        // A link to a retired or missing record is left out.
                        Item::Link(t, id) => {
                            self.names.render_link(sink, t, *id);
                        }
                    }
                }
                sink.end_array();
            }
        }
    }
}

/// The WHERE condition: active or retired, archived projects, then the filters.
pub(crate) fn where_clause(
    compiler: &FilterCompiler,
    root: &TableLayout,
    filters: &FilterNode,
    return_only: ReturnOnly,
    include_archived_projects: Option<bool>,
) -> Result<Fragment, EngineError> {
    let retired = match return_only {
        ReturnOnly::Active => 0,
        ReturnOnly::Retired => 1,
    };
    let mut clause = Fragment::text(format!("t0.\"__retired\" = {retired}"));
    if include_archived_projects == Some(false) {
        clause.append(archived_project_clause(compiler.layout, root));
    }
    clause
        .push(" AND (")
        .append(compiler.compile(root, "t0", filters)?)
        .push(")");
    Ok(clause)
}

/// Leaves out records of archived projects, when both are cached.
pub(crate) fn archived_project_clause(layout: &Layout, root: &TableLayout) -> Fragment {
    let project_link = root
        .field("project")
        .filter(|f| f.storage == Storage::Entity);
    let archived = layout
        .table("Project")
        .and_then(|p| p.field("archived"))
        .filter(|f| f.storage == Storage::Bool);
    match (project_link, archived) {
        (Some(link), Some(_)) => Fragment::text(format!(
            " AND NOT (t0.{} IS NOT NULL AND t0.{} = 'Project' AND t0.{} IN \
             (SELECT p.\"id\" FROM \"Project\" p WHERE COALESCE(p.\"archived\", 0) = 1))",
            link.column(),
            link.type_column(),
            link.column()
        )),
        _ => Fragment::new(),
    }
}

fn link_item(entity_type: &SqlValue, id: &SqlValue) -> Item {
    match (entity_type.as_str(), id.as_i64()) {
        (Some(t), Some(i)) => Item::Link(t.to_string(), i),
        _ => Item::Null,
    }
}

/// Where one returned field's values come from, running the follow-up
/// query of a list field.
fn shape_of(conn: &mut dyn Connection, getter: Getter, rows: &Rows) -> Result<Shape, EngineError> {
    Ok(match getter {
        Getter::Scalar {
            column,
            storage,
            record_column,
        } => Shape::Scalar {
            column,
            storage,
            record_column,
        },
        Getter::Entity {
            type_column,
            id_column,
        } => Shape::Link {
            type_column,
            id_column,
        },
        Getter::Links {
            source_column,
            table,
            field,
        } => Shape::List {
            source_column,
            by_source: fetch_links(conn, &table.link_table(&field.name), rows, source_column)?,
        },
        Getter::ThroughLinks {
            source_column,
            hop,
            leaf,
        } => Shape::List {
            source_column,
            by_source: fetch_through_links(conn, &hop, leaf, rows, source_column)?,
        },
    })
}

fn source_ids(rows: &[Vec<SqlValue>], column: usize) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r[column].as_i64()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The links of a multi_entity field for each source record, in their order.
fn fetch_links(
    conn: &mut dyn Connection,
    link_table: &str,
    rows: &[Vec<SqlValue>],
    column: usize,
) -> Result<HashMap<i64, Vec<Item>>, EngineError> {
    let mut out: HashMap<i64, Vec<Item>> = HashMap::new();
    for chunk in source_ids(rows, column).chunks(IN_LIST_MAX) {
        let mut f = Fragment::text(format!(
            "SELECT \"src_id\", \"dst_type\", \"dst_id\" FROM {link_table} WHERE \"src_id\" IN "
        ));
        f.in_ids(chunk);
        f.push(" ORDER BY \"src_id\", \"pos\"");
        let (text, values) = f.finish(conn.dialect());
        for r in conn.query(&text, &values)? {
            if let Some(src) = r[0].as_i64() {
                out.entry(src).or_default().push(link_item(&r[1], &r[2]));
            }
        }
    }
    Ok(out)
}

/// The values of `leaf` on the records linked through `hop`, per source record.
fn fetch_through_links(
    conn: &mut dyn Connection,
    hop: &Hop,
    leaf: &FieldLayout,
    rows: &[Vec<SqlValue>],
    column: usize,
) -> Result<HashMap<i64, Vec<Item>>, EngineError> {
    let mut out: HashMap<i64, Vec<Item>> = HashMap::new();
    let leaf_columns = match leaf.storage {
        Storage::Entity => format!("x.{}, x.{}", leaf.type_column(), leaf.column()),
        _ => format!("x.{}", leaf.column()),
    };
    for chunk in source_ids(rows, column).chunks(IN_LIST_MAX) {
        let mut f = Fragment::text(format!(
            "SELECT l.\"src_id\", {leaf_columns} FROM {} l JOIN {} x ON x.\"id\" = l.\"dst_id\" \
             AND x.\"__retired\" = 0 WHERE l.\"dst_type\" = ",
            hop.from.link_table(&hop.field.name),
            hop.to.table()
        ));
        f.bind(SqlValue::Text(hop.to.entity_type.clone()));
        f.push(" AND l.\"src_id\" IN ");
        f.in_ids(chunk);
        f.push(" ORDER BY l.\"src_id\", l.\"pos\"");
        let (text, values) = f.finish(conn.dialect());
        for mut r in conn.query(&text, &values)? {
            let Some(src) = r[0].as_i64() else { continue };
            let item = match leaf.storage {
                Storage::Entity => link_item(&r[1], &r[2]),
                storage => Item::Scalar(storage, std::mem::replace(&mut r[1], SqlValue::Null)),
            };
            out.entry(src).or_default().push(item);
        }
    }
    Ok(out)
}

/// The ids of every record the rendered links point at, by type.
fn wanted_links(fields: &[(String, Shape)], rows: &Rows) -> BTreeMap<String, Vec<i64>> {
    let mut wanted: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut note = |t: &str, id: i64| match wanted.get_mut(t) {
        Some(ids) => ids.push(id),
        None => {
            wanted.insert(t.to_string(), vec![id]);
        }
    };
    for (_, shape) in fields {
        match shape {
            Shape::Scalar { .. } => {}
            Shape::Link {
                type_column,
                id_column,
            } => {
                for row in rows {
                    if let (Some(t), Some(id)) =
                        (row[*type_column].as_str(), row[*id_column].as_i64())
                    {
                        note(t, id);
                    }
                }
            }
            Shape::List { by_source, .. } => {
                for item in by_source.values().flatten() {
                    if let Item::Link(t, id) = item {
                        note(t, *id);
                    }
                }
            }
        }
    }
    wanted
}

/// The display names of linked records, read when the result is read, so
/// a renamed record's new name shows at once.
///
/// Looked up once per rendered link, so kept as a few types, each with its
/// records sorted by id for a binary search: no hashing of the type's name
/// and the id for every link of every row.
#[derive(Default)]
pub(crate) struct Names {
    /// The display value of each active record, by type and id; a record
    /// not in here is retired or missing, and links to it are hidden.
    by_type: Vec<(String, Vec<(i64, SqlValue)>)>,
    /// Types the cache does not hold: their links are kept with a null name.
    uncached: Vec<String>,
}

impl Names {
    /// Reads the display names of the `wanted` records (ids per type, in
    /// any order, repeats allowed).
    pub(crate) fn fetch(
        conn: &mut dyn Connection,
        layout: &Layout,
        wanted: BTreeMap<String, Vec<i64>>,
    ) -> Result<Names, EngineError> {
        let mut names = Names::default();
        for (entity_type, mut ids) in wanted {
            let Some(table) = layout.table(&entity_type) else {
                names.uncached.push(entity_type);
                continue;
            };
            ids.sort_unstable();
            ids.dedup();
            let display = table
                .display_field
                .as_ref()
                .map(|d| format!("\"{d}\""))
                .unwrap_or_else(|| "NULL".into());
            let mut by_id = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(IN_LIST_MAX) {
                let mut f = Fragment::text(format!(
                    "SELECT \"id\", {display} FROM {} WHERE \"__retired\" = 0 AND \"id\" IN ",
                    table.table()
                ));
                f.in_ids(chunk);
                let (text, values) = f.finish(conn.dialect());
                for mut r in conn.query(&text, &values)? {
                    if let Some(id) = r[0].as_i64() {
                        by_id.push((id, std::mem::replace(&mut r[1], SqlValue::Null)));
                    }
                }
            }
            // Ids are unique (the primary key) but come in the store's order.
            by_id.sort_unstable_by_key(|(id, _)| *id);
            names.by_type.push((entity_type, by_id));
        }
        Ok(names)
    }

    /// Emits `{"type", "id", "name"}` for a link, or nothing (false) when
    /// the link must be hidden.
    /// The display value of a linked record: `Some(None)` for a link to a
    /// type the cache does not hold (kept, with no name), `None` when the
    /// link must be hidden (its record is retired or missing).
    pub(crate) fn lookup(&self, entity_type: &str, id: i64) -> Option<Option<&SqlValue>> {
        if self.uncached.iter().any(|t| t == entity_type) {
            return Some(None);
        }
        self.by_type
            .iter()
            .find(|(t, _)| t == entity_type)
            .and_then(|(_, by_id)| {
                by_id
                    .binary_search_by_key(&id, |(i, _)| *i)
                    .ok()
                    .map(|at| Some(&by_id[at].1))
            })
    }

    fn render_link(&self, sink: &mut dyn Sink, entity_type: &str, id: i64) -> bool {
        let Some(name) = self.lookup(entity_type, id) else {
            return false;
        };
        sink.begin_object();
        sink.key("type");
        sink.str(entity_type);
        sink.key("id");
        sink.int(id);
        sink.key("name");
        match name {
            Some(name) => sink.scalar(Storage::Text, name),
            None => sink.null(),
        }
        sink.end_object();
        true
    }
}

/// Each link with its display name, as a result would show it; links to
/// retired or missing records are dropped.
pub fn named_links(
    conn: &mut dyn Connection,
    layout: &Layout,
    links: &[EntityLink],
) -> Result<Vec<Value>, EngineError> {
    let mut wanted: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for link in links {
        wanted
            .entry(link.entity_type.clone())
            .or_default()
            .push(link.id);
    }
    let names = Names::fetch(conn, layout, wanted)?;
    let mut out = Vec::with_capacity(links.len());
    for link in links {
        let mut tree = ValueTree::default();
        if names.render_link(&mut tree, &link.entity_type, link.id) {
            out.push(tree.finish());
        }
    }
    Ok(out)
}
