//! A batch of writes the store refused whole, written again record by
//! record (each in a savepoint of one transaction): the records the store
//! can hold are written, the others are marked (see [`crate::marks`]) and
//! the sync goes on past them.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use sg_engine::{Connection, EngineError, Layout};

use crate::apply::{Applied, Guards, RowApplier};
use crate::cache::store_fetched;
use crate::event::{EventAction, EventRow};
use crate::marks::{isolated, MarkedRecord, RecordKey};
use crate::stamps::Stamps;

/// What a careful write did: the records it could not store, and those it stored whole.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub refused: Vec<MarkedRecord>,
    pub stored: Vec<RecordKey>,
}

impl Outcome {
    fn refuse(&mut self, (entity_type, id): RecordKey, event_id: i64, e: &EngineError) {
        if self
            .refused
            .iter()
            .any(|m| m.entity_type == entity_type && m.id == id)
        {
            return;
        }
        self.refused.push(MarkedRecord {
            entity_type,
            id,
            event_id,
            reason: e.to_string(),
        });
    }

    fn is_refused(&self, key: &RecordKey) -> bool {
        self.refused
            .iter()
            .any(|m| m.entity_type == key.0 && m.id == key.1)
    }
}

/// The record a row changes (for rows that change one).
pub(crate) fn row_record(row: &EventRow) -> Option<RecordKey> {
    match &row.action {
        EventAction::Set {
            entity_type, id, ..
        }
        | EventAction::Links {
            entity_type, id, ..
        }
        | EventAction::Retire { entity_type, id }
        | EventAction::Fetch { entity_type, id }
        | EventAction::Refresh { entity_type, id } => Some((entity_type.clone(), *id)),
        _ => None,
    }
}

fn key_of((t, record): &(String, Map<String, Value>)) -> Option<RecordKey> {
    Some((t.clone(), record.get("id")?.as_i64()?))
}

/// Stores copies read from the site one at a time into `layouts`.
/// `event_of` names the event a record was read for (0 for none).
pub(crate) fn store_copies(
    conn: &mut dyn Connection,
    layouts: &[&Layout],
    copies: &[(String, Map<String, Value>)],
    hidden: &BTreeSet<(String, i64)>,
    event_of: &dyn Fn(&RecordKey) -> i64,
    outcome: &mut Outcome,
) -> Result<(), EngineError> {
    for copy in copies {
        let Some(key) = key_of(copy) else { continue };
        let one = std::slice::from_ref(copy);
        match isolated(conn, |c| store_fetched(c, layouts, one, hidden))? {
            Ok(()) => outcome.stored.push(key),
            Err(e) => outcome.refuse(key.clone(), event_of(&key), &e),
        }
    }
    Ok(())
}

/// A poll's writes, record by record: the copies read whole, then each
/// row on its own (the rows of a refused record are left out), then each
/// record's stamps. Returns the newest row applied to each record, for the
/// guards.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_poll(
    conn: &mut dyn Connection,
    live: &Layout,
    shadow: &Layout,
    fetched: &[(String, Map<String, Value>)],
    hidden: &BTreeSet<(String, i64)>,
    rows: &[EventRow],
    to_apply: &dyn Fn(&EventRow) -> Option<Cow<'_, EventRow>>,
    guards: &Guards,
    stamps: &Stamps,
    outcome: &mut Outcome,
) -> Result<Applied, EngineError> {
    let mut first_row: BTreeMap<RecordKey, i64> = BTreeMap::new();
    for row in rows {
        if let Some(key) = row_record(row) {
            first_row.entry(key).or_insert(row.id);
        }
    }
    let event_of = |key: &RecordKey| first_row.get(key).copied().unwrap_or(0);
    store_copies(conn, &[live, shadow], fetched, hidden, &event_of, outcome)?;
    let mut applied = Applied::new();
    for row in rows.iter().filter_map(to_apply) {
        let row = &*row;
        let key = row_record(row);
        if key.as_ref().is_some_and(|k| outcome.is_refused(k)) {
            continue;
        }
        let result = isolated(conn, |c| {
            let mut noted = Applied::new();
            let (mut on_live, mut on_shadow) = (RowApplier::default(), RowApplier::default());
            on_live.apply(c, live, row, guards, &mut noted)?;
            on_shadow.apply(c, shadow, row, guards, &mut noted)?;
            on_live.flush(c, live, &Stamps::new(), &mut noted)?;
            on_shadow.flush(c, shadow, &Stamps::new(), &mut noted)?;
            Ok(noted)
        })?;
        match (result, key) {
            (Ok(noted), _) => {
                for (k, event) in noted {
                    let newest = applied.entry(k).or_insert(0);
                    *newest = (*newest).max(event);
                }
            }
            (Err(e), Some(key)) => outcome.refuse(key, row.id, &e),
            (Err(e), None) => return Err(e),
        }
    }
    for (key, values) in stamps {
        if outcome.is_refused(key) {
            continue;
        }
        let one: Stamps = [(key.clone(), values.clone())].into_iter().collect();
        let result = isolated(conn, |c| {
            let mut noted = Applied::new();
            RowApplier::default().flush(c, live, &one, &mut noted)?;
            RowApplier::default().flush(c, shadow, &one, &mut noted)
        })?;
        if let Err(e) = result {
            outcome.refuse(key.clone(), event_of(key), &e);
        }
    }
    Ok(applied)
}
