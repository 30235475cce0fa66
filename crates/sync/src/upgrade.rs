//! Brings a store made by an earlier version to this version's stored
//! forms, as a cache opens.
//!
//! Earlier versions kept a tag_list field as a link table `<Type>__<field>`
//! (the `dst_type` and `dst_id` of Tag records); it holds tag names now, in
//! a column of the type's table. A type stored the old way is imported
//! again, as after a change of its config (into new tables, swapped in when
//! done), and its tag_list fields are not served meanwhile: reads that name
//! them go to the site.

use std::collections::{BTreeMap, BTreeSet};

use sg_engine::frag::Fragment;
use sg_engine::sql::{Dialect, SqlValue};
use sg_engine::{Connection, EngineError, Selection};
use sg_protocol::{DataType, Schema};

use crate::state;

/// Per type, its tag_list fields in `schema`.
pub(crate) fn tag_list_fields(schema: &Schema) -> BTreeMap<String, BTreeSet<String>> {
    schema
        .entities
        .iter()
        .map(|(t, entity)| {
            let fields = entity
                .fields
                .iter()
                .filter(|(_, f)| f.data_type == DataType::TagList)
                .map(|(name, _)| name.clone())
                .collect::<BTreeSet<String>>();
            (t.clone(), fields)
        })
        .filter(|(_, fields)| !fields.is_empty())
        .collect()
}

/// Finds the chosen tag_list fields (`tag_lists`, from
/// [`tag_list_fields`]) still stored as link tables, asks for their types to
/// be imported again, and leaves those fields out of `selection` (the
/// tables the engine is about to bring to it then drop the link tables).
/// Returns the types asked for.
pub(crate) fn retire_tag_link_tables(
    conn: &mut dyn Connection,
    tag_lists: &BTreeMap<String, BTreeSet<String>>,
    selection: &mut Selection,
    dialect: Dialect,
) -> Result<Vec<String>, EngineError> {
    let mut stale_types = Vec::new();
    for (t, chosen) in selection.iter_mut() {
        let Some(tag_fields) = tag_lists.get(t) else {
            continue;
        };
        let mut stale = Vec::new();
        for field in tag_fields.iter().filter(|f| chosen.contains(*f)) {
            if holds_links(conn, &format!("{t}__{field}"), dialect)? {
                stale.push(field.clone());
            }
        }
        if stale.is_empty() {
            continue;
        }
        for field in &stale {
            chosen.remove(field);
        }
        tracing::info!(
            entity_type = t.as_str(),
            "its tag_list fields are stored as links by an earlier version: the type is imported again, \
             and reads naming them go to the site until then"
        );
        stale_types.push(t.clone());
    }
    state::request_rebuild(conn, &stale_types)?;
    Ok(stale_types)
}

/// Whether `table` exists as a link table (with a `dst_type` column).
fn holds_links(
    conn: &mut dyn Connection,
    table: &str,
    dialect: Dialect,
) -> Result<bool, EngineError> {
    let (sql, _) = Fragment::text(dialect.column_exists_sql()).finish(dialect);
    let params = [
        SqlValue::Text(table.to_string()),
        SqlValue::Text("dst_type".to_string()),
    ];
    Ok(!conn.query(&sql, &params)?.is_empty())
}
