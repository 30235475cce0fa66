//! Records the store could not hold (a text with a NUL byte on PostgreSQL, a
//! full disk): each is marked, so that reads of its type go to the site, and
//! read again by later events and scans until a store of it succeeds.
//!
//! The marks live in `__sync_marks` beside the data when the store can write
//! them, and always in memory, where the proxy asks about them on every read
//! without a database round trip.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use sg_engine::frag::Fragment;
use sg_engine::sql::SqlValue;
use sg_engine::{Connection, EngineError};

/// One marked record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkedRecord {
    pub entity_type: String,
    pub id: i64,
    /// The event whose poll could not store it (0 outside event following).
    pub event_id: i64,
    /// What the store said (never credentials: only the store's message).
    pub reason: String,
}

/// A record's identity: its type and id.
pub type RecordKey = (String, i64);

/// The marks this process knows, and the set of types holding any, kept
/// ready for the proxy's per-read question.
#[derive(Default)]
pub struct Marks {
    records: Mutex<BTreeMap<RecordKey, MarkedRecord>>,
    /// The marks this process could not keep in the store (a full disk).
    unkept: Mutex<BTreeSet<RecordKey>>,
    types: RwLock<Arc<BTreeSet<String>>>,
}

impl Marks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RecordKey, MarkedRecord>> {
        match self.records.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn publish(&self, records: &BTreeMap<RecordKey, MarkedRecord>) {
        let types: BTreeSet<String> = records.keys().map(|(t, _)| t.clone()).collect();
        let mut held = match self.types.write() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if **held != types {
            *held = Arc::new(types);
        }
    }

    /// The types with a marked record: their reads go to the site.
    pub fn types(&self) -> Arc<BTreeSet<String>> {
        match self.types.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether a record of `entity_type` is marked.
    pub fn has(&self, entity_type: &str) -> bool {
        match self.types.read() {
            Ok(t) => t.contains(entity_type),
            Err(poisoned) => poisoned.into_inner().contains(entity_type),
        }
    }

    /// Every marked record.
    pub fn all(&self) -> Vec<MarkedRecord> {
        self.lock().values().cloned().collect()
    }

    /// Whether this record is marked.
    pub fn contains(&self, key: &RecordKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Marks records; returns those that were not marked before (to be
    /// logged once, not at every attempt).
    pub fn add(&self, marks: Vec<MarkedRecord>) -> Vec<MarkedRecord> {
        let mut records = self.lock();
        let mut new = Vec::new();
        for mark in marks {
            let key = (mark.entity_type.clone(), mark.id);
            if !records.contains_key(&key) {
                new.push(mark.clone());
            }
            records.insert(key, mark);
        }
        self.publish(&records);
        new
    }

    /// Marks records that could not be kept in the store: they stay marked
    /// here until stored, whatever the store's marks say.
    pub fn add_unkept(&self, marks: Vec<MarkedRecord>) -> Vec<MarkedRecord> {
        if let Ok(mut unkept) = self.unkept.lock() {
            unkept.extend(marks.iter().map(|m| (m.entity_type.clone(), m.id)));
        }
        self.add(marks)
    }

    /// Clears the marks of records now stored; returns how many were marked.
    pub fn clear<'a>(&self, stored: impl IntoIterator<Item = &'a RecordKey>) -> usize {
        let mut records = self.lock();
        let mut unkept = match self.unkept.lock() {
            Ok(u) => u,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = records.len();
        for key in stored {
            records.remove(key);
            unkept.remove(key);
        }
        let cleared = before - records.len();
        if cleared > 0 {
            self.publish(&records);
        }
        cleared
    }

    /// Takes the marks kept in the store (the syncing process makes them),
    /// with those this process could not keep there.
    pub fn replace(&self, kept: Vec<MarkedRecord>) {
        let mut records = self.lock();
        let mut next: BTreeMap<RecordKey, MarkedRecord> = kept
            .into_iter()
            .map(|m| ((m.entity_type.clone(), m.id), m))
            .collect();
        if let Ok(unkept) = self.unkept.lock() {
            for key in unkept.iter() {
                if let Some(mark) = records.get(key) {
                    next.entry(key.clone()).or_insert_with(|| mark.clone());
                }
            }
        }
        if *records != next {
            *records = next;
            self.publish(&records);
        }
    }

    /// The marked records by type.
    pub fn by_type(&self) -> BTreeMap<String, BTreeSet<i64>> {
        let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for (t, id) in self.lock().keys() {
            out.entry(t.clone()).or_default().insert(*id);
        }
        out
    }
}

/// Creates `__sync_marks` if missing.
pub fn create_table(conn: &mut dyn Connection) -> Result<(), EngineError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS \"__sync_marks\" (\"entity_type\" TEXT NOT NULL, \"id\" BIGINT NOT NULL,
             \"event_id\" BIGINT NOT NULL, \"reason\" TEXT NOT NULL, PRIMARY KEY (\"entity_type\", \"id\"))",
    )
}

/// The marks kept in the store.
pub fn kept(conn: &mut dyn Connection) -> Result<Vec<MarkedRecord>, EngineError> {
    let (sql, params) = Fragment::text(
        "SELECT \"entity_type\", \"id\", \"event_id\", \"reason\" FROM \"__sync_marks\"",
    )
    .finish(conn.dialect());
    Ok(conn
        .query(&sql, &params)?
        .into_iter()
        .filter_map(|r| {
            Some(MarkedRecord {
                entity_type: r[0].as_str()?.to_string(),
                id: r[1].as_i64()?,
                event_id: r[2].as_i64()?,
                reason: r[3].as_str()?.to_string(),
            })
        })
        .collect())
}

/// Keeps marks in the store.
pub fn keep(conn: &mut dyn Connection, marks: &[MarkedRecord]) -> Result<(), EngineError> {
    for mark in marks {
        let mut f = Fragment::text(
            "INSERT INTO \"__sync_marks\" (\"entity_type\", \"id\", \"event_id\", \"reason\") VALUES (",
        );
        f.bind(SqlValue::Text(mark.entity_type.clone()))
            .push(", ")
            .bind(SqlValue::Int(mark.id))
            .push(", ")
            .bind(SqlValue::Int(mark.event_id))
            .push(", ")
            .bind(SqlValue::Text(printable(&mark.reason)));
        f.push(") ON CONFLICT (\"entity_type\", \"id\") DO UPDATE SET \"event_id\" = excluded.\"event_id\", \"reason\" = excluded.\"reason\"");
        let (sql, params) = f.finish(conn.dialect());
        conn.execute(&sql, &params)?;
    }
    Ok(())
}

/// Removes the kept marks of records now stored.
pub fn unkeep(conn: &mut dyn Connection, stored: &[RecordKey]) -> Result<(), EngineError> {
    for (t, id) in stored {
        let mut f = Fragment::text("DELETE FROM \"__sync_marks\" WHERE \"entity_type\" = ");
        f.bind(SqlValue::Text(t.clone()))
            .push(" AND \"id\" = ")
            .bind(SqlValue::Int(*id));
        let (sql, params) = f.finish(conn.dialect());
        conn.execute(&sql, &params)?;
    }
    Ok(())
}

/// A store's message as text any store holds (it may quote the bad value).
fn printable(message: &str) -> String {
    message.chars().filter(|c| *c != '\0').take(500).collect()
}

/// Runs `work` inside a savepoint of the current transaction: on failure the
/// transaction is taken back to where it was and goes on, and the error is
/// returned.
pub(crate) fn isolated<T>(
    conn: &mut dyn Connection,
    work: impl FnOnce(&mut dyn Connection) -> Result<T, EngineError>,
) -> Result<Result<T, EngineError>, EngineError> {
    conn.execute_batch("SAVEPOINT \"sync_record\"")?;
    match work(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE SAVEPOINT \"sync_record\"")?;
            Ok(Ok(value))
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO SAVEPOINT \"sync_record\"")?;
            conn.execute_batch("RELEASE SAVEPOINT \"sync_record\"")?;
            Ok(Err(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(t: &str, id: i64) -> MarkedRecord {
        MarkedRecord {
            entity_type: t.into(),
            id,
            event_id: 1,
            reason: "x".into(),
        }
    }

    #[test]
    fn types_follow_the_marks() {
        let marks = Marks::default();
        assert!(!marks.has("Shot"));
        assert_eq!(marks.add(vec![mark("Shot", 1), mark("Shot", 2)]).len(), 2);
        assert!(marks.add(vec![mark("Shot", 1)]).is_empty(), "logged once");
        assert!(marks.has("Shot") && !marks.has("Asset"));
        marks.clear(&[("Shot".to_string(), 1)]);
        assert!(marks.has("Shot"));
        marks.clear(&[("Shot".to_string(), 2)]);
        assert!(!marks.has("Shot") && marks.types().is_empty());
    }

    #[test]
    fn the_stores_marks_replace_all_but_those_it_could_not_keep() {
        let marks = Marks::default();
        marks.add(vec![mark("Shot", 1)]);
        marks.add_unkept(vec![mark("Asset", 2)]);
        marks.replace(vec![mark("Task", 3)]);
        let held: Vec<(String, i64)> = marks
            .all()
            .into_iter()
            .map(|m| (m.entity_type, m.id))
            .collect();
        assert_eq!(held, vec![("Asset".into(), 2), ("Task".into(), 3)]);
        marks.clear(&[("Asset".to_string(), 2)]);
        marks.replace(vec![]);
        assert!(marks.all().is_empty());
    }
}
