//! The generator's records in memory: a batch of records by type, and the
//! next id of every type.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use sg_engine::{Engine, EngineError, SqliteStore, Store};

use super::shape::Shape;
use super::{GLOBAL_ORDER, PROJECT_ORDER};

/// Records of several types, each type's ids contiguous from its first.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) types: BTreeMap<&'static str, Rows>,
}

pub(super) struct Rows {
    first: i64,
    pub(super) rows: Vec<Map<String, Value>>,
}

impl Batch {
    pub(super) fn push(&mut self, t: &'static str, id: i64, record: Map<String, Value>) {
        let rows = self.types.entry(t).or_insert(Rows {
            first: id,
            rows: Vec::new(),
        });
        debug_assert_eq!(
            rows.first + rows.rows.len() as i64,
            id,
            "{t} ids are contiguous"
        );
        rows.rows.push(record);
    }

    pub(super) fn get(&self, t: &str, id: i64) -> Option<&Map<String, Value>> {
        let rows = self.types.get(t)?;
        rows.rows.get(usize::try_from(id - rows.first).ok()?)
    }

    pub(super) fn get_mut(&mut self, t: &str, id: i64) -> Option<&mut Map<String, Value>> {
        let rows = self.types.get_mut(t)?;
        rows.rows.get_mut(usize::try_from(id - rows.first).ok()?)
    }
}

/// The next id of every type.
pub(super) struct Ids(HashMap<&'static str, i64>);

impl Ids {
    /// Ids follow those the store already holds, for every type the generator makes.
    pub(super) fn start(engine: &Engine<SqliteStore>, shape: &Shape) -> Result<Ids, EngineError> {
        let mut next = HashMap::new();
        for t in GLOBAL_ORDER.iter().chain(PROJECT_ORDER) {
            if let Some(table) = shape.cat.layout.table(t) {
                let id = engine
                    .store()
                    .with_reader(&mut |conn| sg_engine::write::next_id(conn, table))?;
                next.insert(*t, id);
            }
        }
        Ok(Ids(next))
    }

    pub(super) fn next(&mut self, t: &'static str) -> Option<i64> {
        let id = self.0.get_mut(t)?;
        *id += 1;
        Some(*id - 1)
    }
}
