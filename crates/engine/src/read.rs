//! The `read` method: plans the SQL for a request, runs it, and renders the
//! rows as the site renders them, with link names resolved at read time.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use sg_protocol::value::EntityLink;
use sg_protocol::{FilterNode, ReadParams, ReturnOnly, SortDirection};

use crate::codec::decode_scalar;
use crate::error::{bad_request, EngineError};
use crate::filter::FilterCompiler;
use crate::frag::Fragment;
use crate::layout::{FieldLayout, Layout, Storage, TableLayout};
use crate::path::{resolve, Hop, ResolvedPath};
use crate::sql::SqlValue;
use crate::store::Connection;

/// IN lists longer than this are split, to stay under bound-parameter limits.
const IN_CHUNK: usize = 500;

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
    joins: Fragment,
    /// Join alias of each entity-hop prefix, e.g. `sg_sequence.Sequence`.
    join_aliases: HashMap<String, String>,
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

    /// Joins the entity hops of a path (all of them must be entity hops) and
    /// returns the alias of the last table.
    fn join_hops(&mut self, path: &str, hops: &[Hop<'a>]) -> String {
        let parts: Vec<&str> = path.split('.').collect();
        let mut alias = "t0".to_string();
        for (i, hop) in hops.iter().enumerate() {
            let prefix = parts[..(i + 1) * 2].join(".");
            if let Some(existing) = self.join_aliases.get(&prefix) {
                alias = existing.clone();
                continue;
            }
            let next = self.compiler.alias();
            self.joins.push(&format!(
                " LEFT JOIN {} {next} ON {alias}.{} = ",
                hop.to.table(),
                hop.field.type_column()
            ));
            self.joins.bind(SqlValue::Text(hop.to.entity_type.clone()));
            self.joins.push(&format!(
                " AND {next}.\"id\" = {alias}.{} AND {next}.\"__retired\" = 0",
                hop.field.column()
            ));
            self.join_aliases.insert(prefix, next.clone());
            alias = next;
        }
        alias
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
            let alias = self.join_hops(path, &resolved.hops[..at]);
            let source_column = self.column(format!("{alias}.\"id\""));
            let hop = resolved.hops[at].clone();
            return Ok(Getter::ThroughLinks {
                source_column,
                hop,
                leaf: resolved.field,
            });
        }
        let alias = self.join_hops(path, &resolved.hops);
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
        let alias = self.join_hops(path, &resolved.hops);
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

/// Runs a `read` and returns its `results` value.
pub fn read(
    conn: &mut dyn Connection,
    layout: &Layout,
    params: &ReadParams,
) -> Result<Value, EngineError> {
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
    let mut plan = Plan {
        compiler: FilterCompiler::new(layout, conn.dialect(), "read"),
        columns: vec!["t0.\"id\"".to_string()],
        joins: Fragment::new(),
        join_aliases: HashMap::new(),
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
        // Nulls last going up and first going down, as PostgreSQL-backed sites order them.
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
    sql.append(plan.joins.clone());
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

    let mut records: Vec<Map<String, Value>> = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut record = Map::with_capacity(2 + getters.len());
        record.insert("type".into(), Value::String(root.entity_type.clone()));
        record.insert("id".into(), decode_scalar(Storage::Id, &row[0]));
        records.push(record);
    }
    for (key, getter) in &getters {
        fill(conn, key, getter, &rows, &mut records)?;
    }
    resolve_link_names(conn, layout, &mut records)?;

    let mut paging_info = Map::new();
    if params.return_paging_info && !params.return_paging_info_without_counts {
        let mut count = Fragment::text(format!("SELECT COUNT(*) FROM {} t0 WHERE ", root.table()));
        count.append(where_clause);
        let (text, values) = count.finish(conn.dialect());
        let total = conn
            .query(&text, &values)?
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
        paging_info.insert("entity_count".into(), json!(total));
        paging_info.insert("current_page".into(), json!(params.paging.current_page));
        paging_info.insert("entities_per_page".into(), json!(per_page));
        paging_info.insert(
            "page_count".into(),
            json!((total as u64).div_ceil(per_page.max(1))),
        );
    }
    paging_info.insert("has_next_page".into(), json!(has_next_page));
    let mut out = Map::with_capacity(2);
    out.insert(
        "entities".into(),
        Value::Array(records.into_iter().map(Value::Object).collect()),
    );
    out.insert("paging_info".into(), Value::Object(paging_info));
    Ok(Value::Object(out))
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

fn link_value(entity_type: &SqlValue, id: &SqlValue) -> Value {
    match (entity_type.as_str(), id.as_i64()) {
        (Some(t), Some(i)) => {
            let mut m = Map::with_capacity(3);
            m.insert("type".into(), Value::String(t.to_string()));
            m.insert("id".into(), Value::from(i));
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

/// Fills one returned field into every record.
fn fill(
    conn: &mut dyn Connection,
    key: &str,
    getter: &Getter,
    rows: &[Vec<SqlValue>],
    records: &mut [Map<String, Value>],
) -> Result<(), EngineError> {
    match getter {
        Getter::Scalar {
            column,
            storage,
            record_column,
        } => {
            for (row, record) in rows.iter().zip(records.iter_mut()) {
                let absent = record_column.is_some_and(|c| row[c].is_null());
                let value = if absent {
                    Value::Null
                } else {
                    decode_scalar(*storage, &row[*column])
                };
                record.insert(key.to_string(), value);
            }
        }
        Getter::Entity {
            type_column,
            id_column,
        } => {
            for (row, record) in rows.iter().zip(records.iter_mut()) {
                record.insert(
                    key.to_string(),
                    link_value(&row[*type_column], &row[*id_column]),
                );
            }
        }
        Getter::Links {
            source_column,
            table,
            field,
        } => {
            let by_source =
                fetch_links(conn, &table.link_table(&field.name), rows, *source_column)?;
            for (row, record) in rows.iter().zip(records.iter_mut()) {
                let value = match row[*source_column].as_i64() {
                    Some(id) => Value::Array(by_source.get(&id).cloned().unwrap_or_default()),
                    // The record the list hangs off (through an entity link) is absent.
                    None => Value::Null,
                };
                record.insert(key.to_string(), value);
            }
        }
        Getter::ThroughLinks {
            source_column,
            hop,
            leaf,
        } => {
            let by_source = fetch_through_links(conn, hop, leaf, rows, *source_column)?;
            for (row, record) in rows.iter().zip(records.iter_mut()) {
                let value = match row[*source_column].as_i64() {
                    Some(id) => Value::Array(by_source.get(&id).cloned().unwrap_or_default()),
                    None => Value::Null,
                };
                record.insert(key.to_string(), value);
            }
        }
    }
    Ok(())
}

fn source_ids(rows: &[Vec<SqlValue>], column: usize) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r[column].as_i64()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn in_list(f: &mut Fragment, ids: &[i64]) {
    f.push("(");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            f.push(", ");
        }
        f.bind(SqlValue::Int(*id));
    }
    f.push(")");
}

/// The links of a multi_entity field for each source record, in their order.
fn fetch_links(
    conn: &mut dyn Connection,
    link_table: &str,
    rows: &[Vec<SqlValue>],
    column: usize,
) -> Result<HashMap<i64, Vec<Value>>, EngineError> {
    let mut out: HashMap<i64, Vec<Value>> = HashMap::new();
    for chunk in source_ids(rows, column).chunks(IN_CHUNK) {
        let mut f = Fragment::text(format!(
            "SELECT \"src_id\", \"dst_type\", \"dst_id\" FROM {link_table} WHERE \"src_id\" IN "
        ));
        in_list(&mut f, chunk);
        f.push(" ORDER BY \"src_id\", \"pos\"");
        let (text, values) = f.finish(conn.dialect());
        for r in conn.query(&text, &values)? {
            if let Some(src) = r[0].as_i64() {
                out.entry(src).or_default().push(link_value(&r[1], &r[2]));
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
) -> Result<HashMap<i64, Vec<Value>>, EngineError> {
    let mut out: HashMap<i64, Vec<Value>> = HashMap::new();
    let leaf_columns = match leaf.storage {
        Storage::Entity => format!("x.{}, x.{}", leaf.type_column(), leaf.column()),
        _ => format!("x.{}", leaf.column()),
    };
    for chunk in source_ids(rows, column).chunks(IN_CHUNK) {
        let mut f = Fragment::text(format!(
            "SELECT l.\"src_id\", {leaf_columns} FROM {} l JOIN {} x ON x.\"id\" = l.\"dst_id\" \
             AND x.\"__retired\" = 0 WHERE l.\"dst_type\" = ",
            hop.from.link_table(&hop.field.name),
            hop.to.table()
        ));
        f.bind(SqlValue::Text(hop.to.entity_type.clone()));
        f.push(" AND l.\"src_id\" IN ");
        in_list(&mut f, chunk);
        f.push(" ORDER BY l.\"src_id\", l.\"pos\"");
        let (text, values) = f.finish(conn.dialect());
        for r in conn.query(&text, &values)? {
            let Some(src) = r[0].as_i64() else { continue };
            let value = match leaf.storage {
                Storage::Entity => link_value(&r[1], &r[2]),
                storage => decode_scalar(storage, &r[1]),
            };
            out.entry(src).or_default().push(value);
        }
    }
    Ok(out)
}

fn is_link(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.len() == 2 && o.contains_key("type") && o.contains_key("id"))
}

/// Gives every link in the records its display name, and hides links to
/// retired or missing records: a single link becomes null, a list drops it.
pub(crate) fn resolve_link_names(
    conn: &mut dyn Connection,
    layout: &Layout,
    records: &mut [Map<String, Value>],
) -> Result<(), EngineError> {
    let mut wanted: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut note = |v: &Value| {
        if let Some(link) = EntityLink::from_json(v) {
            wanted.entry(link.entity_type).or_default().push(link.id);
        }
    };
    for record in records.iter() {
        for (key, value) in record {
            if key == "type" || key == "id" {
                continue;
            }
            match value {
                Value::Array(items) => items.iter().filter(|v| is_link(v)).for_each(&mut note),
                v if is_link(v) => note(v),
                _ => {}
            }
        }
    }
    // None: the type is not cached, so the link is kept with no name.
    let mut names: HashMap<String, HashMap<i64, Value>> = HashMap::new();
    let mut uncached: std::collections::HashSet<String> = Default::default();
    for (entity_type, mut ids) in wanted {
        let Some(table) = layout.table(&entity_type) else {
            uncached.insert(entity_type);
            continue;
        };
        ids.sort_unstable();
        ids.dedup();
        let display = table
            .display_field
            .as_ref()
            .map(|d| format!("\"{d}\""))
            .unwrap_or_else(|| "NULL".into());
        let by_id = names.entry(entity_type.clone()).or_default();
        for chunk in ids.chunks(IN_CHUNK) {
            let mut f = Fragment::text(format!(
                "SELECT \"id\", {display} FROM {} WHERE \"__retired\" = 0 AND \"id\" IN ",
                table.table()
            ));
            in_list(&mut f, chunk);
            let (text, values) = f.finish(conn.dialect());
            for r in conn.query(&text, &values)? {
                if let Some(id) = r[0].as_i64() {
                    by_id.insert(id, decode_scalar(Storage::Text, &r[1]));
                }
            }
        }
    }
    // Adds the name to a link in place; false if the link must go.
    let name = |v: &mut Value| -> bool {
        let Value::Object(m) = v else { return true };
        let (Some(Value::String(t)), Some(id)) =
            (m.get("type"), m.get("id").and_then(Value::as_i64))
        else {
            return true;
        };
        let name = if uncached.contains(t.as_str()) {
            Value::Null
        } else {
            match names.get(t.as_str()).and_then(|n| n.get(&id)) {
                Some(n) => n.clone(),
                None => return false,
            }
        };
        m.insert("name".into(), name);
        true
    };
    for record in records.iter_mut() {
        for (key, value) in record.iter_mut() {
            if key == "type" || key == "id" {
                continue;
            }
            match value {
                Value::Array(items) if items.iter().any(is_link) => {
                    items.retain_mut(|v| !is_link(v) || name(v));
                }
                v if is_link(v) => {
                    let keep = name(v);
                    if !keep {
                        *v = Value::Null;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Each link with its display name, as a result would show it; links to
/// retired or missing records are dropped.
pub fn named_links(
    conn: &mut dyn Connection,
    layout: &Layout,
    links: &[EntityLink],
) -> Result<Vec<Value>, EngineError> {
    let list: Vec<Value> = links
        .iter()
        .map(|l| json!({"type": l.entity_type, "id": l.id}))
        .collect();
    let mut records = vec![Map::from_iter([("links".to_string(), Value::Array(list))])];
    resolve_link_names(conn, layout, &mut records)?;
    Ok(records[0]
        .remove("links")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default())
}
