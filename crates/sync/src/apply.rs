//! Applying a poll's event rows to the cached tables, inside the poll's
//! transaction: each row in order for its record, none at or below the
//! record's guard (see [`crate::state::guards`]), and the record's audit
//! stamps as the site has them (see [`crate::stamps`]), never a row's.
//!
//! Field changes are gathered per record and written together, before the
//! next row of another kind about the same record or at the end of the poll,
//! as one multi-row upsert per type and set of fields: a poll of 500 rows
//! then costs a few statements instead of one a row (on PostgreSQL each is a
//! round trip to the server). Link lists changed by the poll's rows are read
//! once each, changed in memory, and written at the end of the poll, a few
//! statements per type and field.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use sg_engine::layout::{Storage, TableLayout};
use sg_engine::lookup::current_links;
use sg_engine::{Connection, EngineError, Layout};
use sg_protocol::value::EntityLink;

use crate::event::{EventAction, EventRow};
use crate::stamps::Stamps;

/// Per type and record, its guard before this poll: the newest row its
/// copy is known to reflect.
pub(crate) type Guards = BTreeMap<String, BTreeMap<i64, i64>>;

/// Per type and record, the newest row applied in this poll.
pub(crate) type Applied = BTreeMap<(String, i64), i64>;

/// One field change as a record to upsert (`id` and the value), with the
/// row it comes from (0 for the audit stamps read from the site).
type Change = (i64, Map<String, Value>);

/// The row id under which a record's stamps are held: no row.
const STAMPS: i64 = 0;

/// Applies rows of one layout (the served tables, or a reimport's shadow
/// tables) and holds their field changes until [`RowApplier::flush`].
#[derive(Default)]
pub(crate) struct RowApplier {
    pending: BTreeMap<String, BTreeMap<i64, Vec<Change>>>,
    /// Per type and multi-entity field, the lists of the records the
    /// poll's rows changed, as they stand after those rows.
    links: BTreeMap<(String, String), BTreeMap<i64, Vec<EntityLink>>>,
}

impl RowApplier {
    /// Applies one row, unless its record's guard (`guards`) is at or past
    /// it (the poll reads such a record whole instead); notes in `applied`
    /// the newest row applied to each record.
    pub(crate) fn apply(
        &mut self,
        conn: &mut dyn Connection,
        layout: &Layout,
        row: &EventRow,
        guards: &Guards,
        applied: &mut Applied,
    ) -> Result<(), EngineError> {
        let covered = |t: &str, id: i64| {
            guards
                .get(t)
                .and_then(|g| g.get(&id))
                .is_some_and(|g| *g >= row.id)
        };
        let (entity_type, id) = match &row.action {
            EventAction::Set {
                entity_type, id, ..
            }
            | EventAction::Links {
                entity_type, id, ..
            }
            | EventAction::Retire { entity_type, id } => (entity_type, *id),
            _ => return Ok(()),
        };
        if covered(entity_type, id) {
            return Ok(());
        }
        let Some(table) = layout.table(entity_type) else {
            return Ok(());
        };
        match &row.action {
            EventAction::Set { field, value, .. } => {
                let Some(layout_field) = table.field(field) else {
                    return Ok(());
                };
                // A value the row can't give in a storable shape is repaired by the scan.
                if layout_field.storage == Storage::Links {
                    return Ok(());
                }
                let mut record = Map::new();
                record.insert("id".into(), json!(id));
                record.insert(field.clone(), value.clone());
                self.hold(entity_type, id, row.id, record);
                // Noted in `applied` once written (see `write_changes`).
                return Ok(());
            }
            EventAction::Retire { .. } => {
                self.flush_record(conn, table, id, applied)?;
                sg_engine::write::set_retired(conn, table, id, true)?;
            }
            EventAction::Links {
                field,
                added,
                removed,
                ..
            } => {
                if table.field(field).map(|f| f.storage) != Some(Storage::Links) {
                    return Ok(());
                }
                // The list is independent of the record's other fields, so
                // the changes held for them need not be written first.
                let lists = self
                    .links
                    .entry((entity_type.clone(), field.clone()))
                    .or_default();
                let list = match lists.entry(id) {
                    std::collections::btree_map::Entry::Occupied(held) => held.into_mut(),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(current_links(conn, table, field, id)?)
                    }
                };
                list.retain(|l| !removed.contains(l));
                for link in added {
                    if !list.contains(link) {
                        list.push(link.clone());
                    }
                }
            }
            _ => return Ok(()),
        }
        note(applied, entity_type, id, row.id);
        Ok(())
    }

    /// Holds a change of record `id` (from row `row_id`) until it is written.
    fn hold(&mut self, entity_type: &str, id: i64, row_id: i64, record: Map<String, Value>) {
        self.pending
            .entry(entity_type.to_string())
            .or_default()
            .entry(id)
            .or_default()
            .push((row_id, record));
    }

    /// Writes the changes still held, per type: records that set the same
    /// fields in one statement; with them, the `stamps` of the records of
    /// this layout (they win over any value a row gave those fields).
    pub(crate) fn flush(
        &mut self,
        conn: &mut dyn Connection,
        layout: &Layout,
        stamps: &Stamps,
        applied: &mut Applied,
    ) -> Result<(), EngineError> {
        for ((entity_type, id), values) in stamps {
            let Some(table) = layout.table(entity_type) else {
                continue;
            };
            let mut record: Map<String, Value> = values
                .iter()
                .filter(|(k, _)| table.field(k).is_some())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !record.is_empty() {
                record.insert("id".into(), json!(id));
                self.hold(entity_type, *id, STAMPS, record);
            }
        }
        for ((entity_type, field), lists) in std::mem::take(&mut self.links) {
            let Some(table) = layout.table(&entity_type) else {
                continue;
            };
            let lists: Vec<(i64, &Vec<EntityLink>)> =
                lists.iter().map(|(id, list)| (*id, list)).collect();
            sg_engine::write::replace_links(conn, table, &field, &lists)?;
        }
        for (entity_type, records) in std::mem::take(&mut self.pending) {
            let Some(table) = layout.table(&entity_type) else {
                continue;
            };
            let changes: Vec<(i64, &[Change])> = records
                .iter()
                .map(|(id, changes)| (*id, changes.as_slice()))
                .collect();
            write_changes(conn, table, &changes, applied)?;
        }
        Ok(())
    }

    /// Writes the changes held for one record (before another kind of row
    /// about it, so that each record sees its rows in order).
    fn flush_record(
        &mut self,
        conn: &mut dyn Connection,
        table: &TableLayout,
        id: i64,
        applied: &mut Applied,
    ) -> Result<(), EngineError> {
        let held = self
            .pending
            .get_mut(&table.entity_type)
            .and_then(|records| records.remove(&id));
        match held {
            Some(changes) => write_changes(conn, table, &[(id, changes.as_slice())], applied),
            None => Ok(()),
        }
    }
}

/// Writes each record's changes merged in row order (a later row's value
/// wins), sorted so that records setting the same fields share a statement.
/// Values are checked before any SQL runs; if one is refused, the changes
/// are written row by row instead and the refused ones skipped, as if each
/// had been written alone. The rows written are noted in `applied`.
fn write_changes(
    conn: &mut dyn Connection,
    table: &TableLayout,
    records: &[(i64, &[Change])],
    applied: &mut Applied,
) -> Result<(), EngineError> {
    let t = &table.entity_type;
    let mut merged: Vec<Map<String, Value>> = records
        .iter()
        .map(|(_, changes)| {
            let fields: BTreeMap<&String, &Value> = changes
                .iter()
                .flat_map(|(_, record)| record.iter())
                .collect();
            fields
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect();
    merged.sort_by(|a, b| a.keys().cmp(b.keys()));
    if let Ok(encoded) = sg_engine::write::encode_records(table, &merged) {
        sg_engine::write::write_encoded(conn, table, &encoded)?;
        for (id, changes) in records {
            for (row_id, _) in changes.iter().filter(|(r, _)| *r != STAMPS) {
                note(applied, t, *id, *row_id);
            }
        }
        return Ok(());
    }
    for (id, changes) in records {
        for (row_id, record) in changes.iter() {
            match sg_engine::write::upsert_record(conn, table, record) {
                Ok(()) if *row_id == STAMPS => {}
                Ok(()) => note(applied, t, *id, *row_id),
                Err(e) => tracing::warn!(
                    event = row_id,
                    "skipping a change the cache can't store: {e}"
                ),
            }
        }
    }
    Ok(())
}

/// Notes that row `row_id` was applied to record `id` of `entity_type`.
fn note(applied: &mut Applied, entity_type: &str, id: i64, row_id: i64) {
    let newest = applied.entry((entity_type.to_string(), id)).or_insert(0);
    *newest = (*newest).max(row_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sg_engine::{Engine, SqliteStore, Store};
    use sg_protocol::Schema;

    fn engine() -> Engine<SqliteStore> {
        let f = |t: &str| json!({"data_type": {"value": t, "editable": true}, "properties": {}});
        let schema = Schema::from_json(
            &json!({
                "Shot": {"id": f("number"), "code": f("text"), "sg_cut_in": f("number"),
                         "updated_at": f("date_time"),
                         "assets": {"data_type": {"value": "multi_entity", "editable": true},
                                    "properties": {"valid_types": {"value": ["Asset"], "editable": true}}}},
                "Asset": {"id": f("number"), "code": f("text")}
            }),
            None,
        )
        .expect("schema");
        let engine =
            Engine::new(SqliteStore::open_temporary().expect("db"), schema).expect("engine");
        engine
            .upsert_records(
                "Shot",
                &(1..=3)
                    .map(|i| {
                        json!({"id": i, "code": "old", "sg_cut_in": 1})
                            .as_object()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>(),
            )
            .expect("shots");
        engine
            .upsert_records(
                "Asset",
                &[json!({"id": 5, "code": "rock"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()],
            )
            .expect("asset");
        engine
    }

    fn row(id: i64, action: EventAction) -> EventRow {
        EventRow {
            id,
            created_at: Some(1_700_000_000 + id),
            user: None,
            mentioned: Vec::new(),
            revival: false,
            action,
        }
    }

    fn set(id: i64, shot: i64, field: &str, value: Value) -> EventRow {
        row(
            id,
            EventAction::Set {
                entity_type: "Shot".into(),
                id: shot,
                field: field.into(),
                value,
            },
        )
    }

    fn shot(engine: &Engine<SqliteStore>, id: i64, retired: bool) -> Value {
        let params = sg_protocol::ReadParams::from_json(
            json!({"type": "Shot", "return_fields": ["code", "sg_cut_in", "updated_at", "assets"],
                   "filters": {"logical_operator": "and", "conditions": [
                       {"path": "id", "relation": "is", "values": [id]}]},
                   "return_only": if retired { "retired" } else { "active" }})
            .as_object()
            .expect("object"),
        )
        .expect("params");
        engine.read(&params).expect("read")["entities"][0].clone()
    }

    /// Changes held back and merged give what applying each row at once
    /// gives: later values win, other rows about the record keep their
    /// place, a refused value is skipped alone, covered rows are left out.
    #[test]
    fn batched_rows_end_as_rows_applied_one_by_one() {
        let engine = engine();
        let catalog = engine.catalog();
        let rows = vec![
            set(10, 1, "code", json!("a")),
            set(11, 1, "sg_cut_in", json!("not a number")),
            set(12, 2, "code", json!("b")),
            row(
                13,
                EventAction::Links {
                    entity_type: "Shot".into(),
                    id: 1,
                    field: "assets".into(),
                    added: vec![EntityLink {
                        entity_type: "Asset".into(),
                        id: 5,
                    }],
                    removed: Vec::new(),
                },
            ),
            set(14, 1, "code", json!("a2")),
            set(15, 1, "sg_cut_in", json!(24)),
            set(18, 1, "sg_cut_in", json!("not a number either")),
            row(
                16,
                EventAction::Retire {
                    entity_type: "Shot".into(),
                    id: 2,
                },
            ),
            set(17, 3, "code", json!("covered")),
        ];
        let guards: Guards = [("Shot".to_string(), [(3, 20)].into_iter().collect())]
            .into_iter()
            .collect();
        // The site's stamps, not the rows' times: for a record with rows
        // (1), one whose rows were all refused or retired (2), and none for
        // a record whose rows are covered (3: the poll reads it whole).
        let stamp = |at: i64| {
            json!({"updated_at": sg_protocol::value::format_date_time(at)})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        let stamps: Stamps = [
            (("Shot".to_string(), 1), stamp(1_700_000_100)),
            (("Shot".to_string(), 2), stamp(1_700_000_101)),
        ]
        .into_iter()
        .collect();
        let mut applied = Applied::new();
        engine
            .store()
            .with_transaction(&mut |c| {
                let mut applier = RowApplier::default();
                for r in &rows {
                    applier.apply(c, &catalog.layout, r, &guards, &mut applied)?;
                }
                applier.flush(c, &catalog.layout, &stamps, &mut applied)
            })
            .expect("applied");
        let one = shot(&engine, 1, false);
        assert_eq!(one["code"], json!("a2"));
        assert_eq!(one["sg_cut_in"], json!(24));
        assert_eq!(
            one["updated_at"],
            json!(sg_protocol::value::format_date_time(1_700_000_100))
        );
        assert_eq!(
            one["assets"],
            json!([{"type": "Asset", "id": 5, "name": "rock"}])
        );
        let two = shot(&engine, 2, true);
        assert_eq!(two["code"], json!("b"), "changed, then retired");
        assert_eq!(
            two["updated_at"],
            json!(sg_protocol::value::format_date_time(1_700_000_101))
        );
        let three = shot(&engine, 3, false);
        assert_eq!(three["code"], json!("old"), "covered");
        assert_eq!(three["updated_at"], Value::Null, "no stamps given");
        assert_eq!(applied.get(&("Shot".to_string(), 1)), Some(&15));
        assert_eq!(applied.get(&("Shot".to_string(), 2)), Some(&16));
        assert_eq!(applied.get(&("Shot".to_string(), 3)), None);
    }

    fn links(id: i64, shot: i64, added: &[i64], removed: &[i64]) -> EventRow {
        let assets = |ids: &[i64]| {
            ids.iter()
                .map(|id| EntityLink {
                    entity_type: "Asset".into(),
                    id: *id,
                })
                .collect()
        };
        row(
            id,
            EventAction::Links {
                entity_type: "Shot".into(),
                id: shot,
                field: "assets".into(),
                added: assets(added),
                removed: assets(removed),
            },
        )
    }

    /// A poll's link rows about one list, held in memory and written at the
    /// flush, add up as if each had been written at once, from the list the
    /// record held before the poll.
    #[test]
    fn link_rows_of_a_poll_add_up() {
        let engine = engine();
        let catalog = engine.catalog();
        let held = |c: &mut dyn Connection, shot: i64| -> Result<Vec<i64>, EngineError> {
            let table = catalog.layout.table("Shot").expect("Shot");
            Ok(current_links(c, table, "assets", shot)?
                .into_iter()
                .map(|l| l.id)
                .collect())
        };
        engine
            .store()
            .with_transaction(&mut |c| {
                let table = catalog.layout.table("Shot").expect("Shot");
                let before = [5, 6].map(|id| EntityLink {
                    entity_type: "Asset".into(),
                    id,
                });
                sg_engine::write::replace_links(c, table, "assets", &[(2, &before.to_vec())])
            })
            .expect("links before the poll");
        let rows = vec![
            links(20, 1, &[5], &[]),
            set(21, 1, "code", json!("between")),
            links(22, 1, &[6, 7], &[]),
            links(23, 2, &[8], &[5]),
            links(24, 1, &[], &[5]),
            links(25, 2, &[6], &[]),
        ];
        let mut applied = Applied::new();
        let lists = engine
            .store()
            .with_transaction(&mut |c| {
                let mut applier = RowApplier::default();
                for r in &rows {
                    applier.apply(c, &catalog.layout, r, &Guards::new(), &mut applied)?;
                }
                applier.flush(c, &catalog.layout, &Stamps::new(), &mut applied)?;
                Ok((held(c, 1)?, held(c, 2)?))
            })
            .expect("applied");
        assert_eq!(lists.0, vec![6, 7]);
        assert_eq!(lists.1, vec![6, 8], "6 was held already");
        let one = shot(&engine, 1, false);
        assert_eq!(one["code"], json!("between"));
        assert_eq!(
            one["updated_at"],
            Value::Null,
            "rows never stamp: the stamps are read from the site"
        );
        assert_eq!(applied.get(&("Shot".to_string(), 1)), Some(&24));
        assert_eq!(applied.get(&("Shot".to_string(), 2)), Some(&25));
    }
}
