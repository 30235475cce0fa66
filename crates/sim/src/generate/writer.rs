//! The record writer: batches go to the engine in chunks of [`CHUNK`]
//! records, one transaction each, with progress reported per type.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use sg_engine::{Engine, EngineError, SqliteStore};

use super::batch::Batch;

/// Records per `upsert_records` call (one transaction each).
const CHUNK: usize = 5_000;

/// Writes batches in chunks and reports progress.
pub(super) struct Writer<'e, 'p> {
    engine: &'e Engine<SqliteStore>,
    counts: BTreeMap<&'static str, usize>,
    total: usize,
    progress: &'p mut dyn FnMut(&str, usize),
}

impl<'e, 'p> Writer<'e, 'p> {
    pub(super) fn new(
        engine: &'e Engine<SqliteStore>,
        progress: &'p mut dyn FnMut(&str, usize),
    ) -> Writer<'e, 'p> {
        Writer {
            engine,
            counts: BTreeMap::new(),
            total: 0,
            progress,
        }
    }

    /// How many records it has written (patches not counted).
    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// Writes every record of `batch`, the types in `order` first.
    pub(super) fn write(
        &mut self,
        batch: &Batch,
        order: &[&'static str],
    ) -> Result<(), EngineError> {
        let rest = batch.types.keys().filter(|t| !order.contains(t)).copied();
        for t in order.iter().copied().chain(rest.collect::<Vec<_>>()) {
            let Some(rows) = batch.types.get(t) else {
                continue;
            };
            for chunk in rows.rows.chunks(CHUNK) {
                self.engine.upsert_records(t, chunk)?;
                let count = self.counts.entry(t).or_default();
                *count += chunk.len();
                self.total += chunk.len();
                (self.progress)(t, *count);
            }
        }
        Ok(())
    }

    /// Rewrites the given fields of records already written.
    pub(super) fn patch(
        &mut self,
        batch: &Batch,
        fields: &BTreeSet<(String, i64, String)>,
    ) -> Result<(), EngineError> {
        let mut by_type: BTreeMap<&str, Vec<Map<String, Value>>> = BTreeMap::new();
        for (t, id, field) in fields {
            let Some(record) = batch.get(t, *id) else {
                continue;
            };
            let rows = by_type.entry(t.as_str()).or_default();
            if rows.last().and_then(|r| r["id"].as_i64()) != Some(*id) {
                let mut patch = Map::new();
                patch.insert("id".into(), json!(id));
                rows.push(patch);
            }
            if let (Some(patch), Some(value)) = (rows.last_mut(), record.get(field)) {
                patch.insert(field.clone(), value.clone());
            }
        }
        for (t, rows) in by_type {
            for chunk in rows.chunks(CHUNK) {
                self.engine.upsert_records(t, chunk)?;
            }
        }
        Ok(())
    }
}
