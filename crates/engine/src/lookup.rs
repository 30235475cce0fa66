//! Lookups of stored records by id or by link, for the callers that keep
//! the tables (the cache's sync, the simulated site's writes, the proxy):
//! which ids a table holds, what a record's links are, who links to whom.
//! Like [`crate::write`], the one place such SQL about the entity tables is
//! written, from the layout's table and column names.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use sg_protocol::value::EntityLink;
use sg_protocol::DataType;

use crate::error::EngineError;
use crate::frag::{Fragment, IN_LIST_MAX};
use crate::layout::{
    FieldLayout, Layout, Storage, TableLayout, ID_COLUMN, LINK_POSITION_COLUMN, LINK_SOURCE_COLUMN,
    LINK_TARGET_ID_COLUMN, LINK_TARGET_TYPE_COLUMN, RETIRED_COLUMN,
};
use crate::sql::SqlValue;
use crate::store::Connection;

/// A record in wire form and whether it is retired.
pub type FetchedRecord = (Map<String, Value>, bool);

/// One record as stored, with every field of its table in wire form and link
/// names resolved, and whether it is retired. `None` if there is no such id.
pub fn fetch_record(
    conn: &mut dyn Connection,
    layout: &Layout,
    table: &TableLayout,
    id: i64,
) -> Result<Option<FetchedRecord>, EngineError> {
    let fields: Vec<String> = table.fields.keys().cloned().collect();
    for (return_only, retired) in [
        (sg_protocol::ReturnOnly::Active, false),
        (sg_protocol::ReturnOnly::Retired, true),
    ] {
        let mut params = sg_protocol::ReadParams::new(&table.entity_type, &[]);
        params.return_fields = fields.clone();
        params.return_only = return_only;
        params.filters = sg_protocol::FilterNode::Condition(sg_protocol::Condition {
            path: "id".into(),
            relation: sg_protocol::Relation::Is,
            values: vec![Value::from(id)],
        });
        let result = crate::read::read(conn, layout, &params)?;
        if let Some(Value::Object(record)) = result["entities"]
            .as_array()
            .and_then(|e| e.first())
            .cloned()
        {
            return Ok(Some((record, retired)));
        }
    }
    Ok(None)
}

/// Ids of the records of `table` whose entity field `field` points at
/// `target`, active or retired as asked, whatever the target's own state.
/// (Filters hide links to retired records; cascades must still find them.)
pub fn ids_linking_to(
    conn: &mut dyn Connection,
    table: &TableLayout,
    field: &str,
    target: &EntityLink,
    retired: bool,
) -> Result<Vec<i64>, EngineError> {
    let Some(link) = table.field(field).filter(|f| f.storage == Storage::Entity) else {
        return Ok(Vec::new());
    };
    let mut sql = Fragment::text(format!(
        "SELECT {ID_COLUMN} FROM {} WHERE {} = ",
        table.table(),
        link.type_column_name()
    ));
    sql.bind(SqlValue::Text(target.entity_type.clone()));
    sql.push(&format!(" AND {} = ", link.column_name()))
        .bind(SqlValue::Int(target.id));
    sql.push(&format!(" AND {RETIRED_COLUMN} = "))
        .bind(SqlValue::Int(retired as i64));
    sql.push(&format!(" ORDER BY {ID_COLUMN}"));
    let (text, params) = sql.finish(conn.dialect());
    Ok(conn
        .query(&text, &params)?
        .iter()
        .filter_map(|r| r[0].as_i64())
        .collect())
}

/// Which of `ids` the table holds (active or retired).
pub fn existing_ids(
    conn: &mut dyn Connection,
    table: &TableLayout,
    ids: &[i64],
) -> Result<BTreeSet<i64>, EngineError> {
    ids_where(conn, table, ids, "")
}

/// Which of `ids` the table holds as retired.
pub fn retired_ids(
    conn: &mut dyn Connection,
    table: &TableLayout,
    ids: &[i64],
) -> Result<BTreeSet<i64>, EngineError> {
    ids_where(conn, table, ids, &format!("{RETIRED_COLUMN} = 1 AND "))
}

/// Which of `ids` the table holds, of the rows `condition` (SQL text of the
/// table's columns, ending in `AND `, or empty) lets through.
fn ids_where(
    conn: &mut dyn Connection,
    table: &TableLayout,
    ids: &[i64],
    condition: &str,
) -> Result<BTreeSet<i64>, EngineError> {
    let mut out = BTreeSet::new();
    for chunk in ids.chunks(IN_LIST_MAX) {
        let mut f = Fragment::text(format!(
            "SELECT {ID_COLUMN} FROM {} WHERE {condition}{ID_COLUMN} IN ",
            table.table()
        ));
        f.in_ids(chunk);
        let (sql, params) = f.finish(conn.dialect());
        out.extend(
            conn.query(&sql, &params)?
                .iter()
                .filter_map(|r| r[0].as_i64()),
        );
    }
    Ok(out)
}

/// The stored link of one entity field (`None` for none, or no such record).
pub fn current_link(
    conn: &mut dyn Connection,
    table: &TableLayout,
    field: &FieldLayout,
    id: i64,
) -> Result<Option<EntityLink>, EngineError> {
    let mut f = Fragment::text(format!(
        "SELECT {}, {} FROM {} WHERE {ID_COLUMN} = ",
        field.type_column_name(),
        field.column_name(),
        table.table()
    ));
    f.bind(SqlValue::Int(id));
    let (sql, params) = f.finish(conn.dialect());
    Ok(conn
        .query(&sql, &params)?
        .first()
        .and_then(|r| link_of(&r[0], &r[1])))
}

/// The stored links of one multi-entity field, in order (retired targets included).
pub fn current_links(
    conn: &mut dyn Connection,
    table: &TableLayout,
    field: &str,
    id: i64,
) -> Result<Vec<EntityLink>, EngineError> {
    let mut f = Fragment::text(format!(
        "SELECT {LINK_TARGET_TYPE_COLUMN}, {LINK_TARGET_ID_COLUMN} FROM {} WHERE {LINK_SOURCE_COLUMN} = ",
        table.link_table(field)
    ));
    f.bind(SqlValue::Int(id))
        .push(&format!(" ORDER BY {LINK_POSITION_COLUMN}"));
    let (sql, params) = f.finish(conn.dialect());
    Ok(conn
        .query(&sql, &params)?
        .iter()
        .filter_map(|r| link_of(&r[0], &r[1]))
        .collect())
}

/// The link in a type and an id column, unless either is null.
fn link_of(entity_type: &SqlValue, id: &SqlValue) -> Option<EntityLink> {
    Some(EntityLink {
        entity_type: entity_type.as_str()?.to_string(),
        id: id.as_i64()?,
    })
}

/// The records holding a link (in an entity or multi-entity field) to one of
/// `targets` (`(type, id)`), by type, whatever the state of either end.
pub fn records_holding_links(
    conn: &mut dyn Connection,
    layout: &Layout,
    targets: &BTreeSet<(String, i64)>,
) -> Result<BTreeMap<String, BTreeSet<i64>>, EngineError> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut by_type: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (t, id) in targets {
        by_type.entry(t.as_str()).or_default().push(*id);
    }
    for (holder, table) in &layout.tables {
        for field in table.fields.values() {
            for (target, ids) in &by_type {
                if !field.valid_types.is_empty() && !field.valid_types.iter().any(|v| v == target) {
                    continue;
                }
                let (select, type_col, id_col) = match (field.data_type, field.storage) {
                    (DataType::Entity, Storage::Entity) => (
                        format!("SELECT {ID_COLUMN} FROM {}", table.table()),
                        field.type_column_name(),
                        field.column_name(),
                    ),
                    (DataType::MultiEntity, Storage::Links) => (
                        format!(
                            "SELECT {LINK_SOURCE_COLUMN} FROM {}",
                            table.link_table(&field.name)
                        ),
                        LINK_TARGET_TYPE_COLUMN,
                        LINK_TARGET_ID_COLUMN,
                    ),
                    _ => continue,
                };
                for chunk in ids.chunks(IN_LIST_MAX) {
                    let mut f = Fragment::text(format!("{select} WHERE {type_col} = "));
                    f.bind(SqlValue::Text(target.to_string()));
                    f.push(&format!(" AND {id_col} IN ")).in_ids(chunk);
                    let (sql, params) = f.finish(conn.dialect());
                    out.entry(holder.clone()).or_default().extend(
                        conn.query(&sql, &params)?
                            .iter()
                            .filter_map(|r| r[0].as_i64()),
                    );
                }
            }
        }
    }
    out.retain(|_, ids| !ids.is_empty());
    Ok(out)
}
