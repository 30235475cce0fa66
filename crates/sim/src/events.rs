//! The site's event log: EventLogEntry rows in the shapes real sites write
//! (see the project's reference notes on the event log), ids from one
//! sequence, and the faults of a real log: rows that become visible late and
//! ids that never appear.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Map, Value};

use sg_engine::{Catalog, Connection, EngineError};
use sg_protocol::value::{format_date_time, EntityLink};

/// How the log misbehaves, as real ones do.
#[derive(Debug, Clone, Default)]
pub struct EventFaults {
    /// Rows of some transactions become visible up to this late.
    pub late_commit: Duration,
    /// This fraction of ids is used but never becomes visible.
    pub lost_rate: f64,
    /// Every this many logged transactions, also log rows a consumer must
    /// skip: a `Toolkit_*` row, and `Shotgun_Reading_Change` when a Note was
    /// written. 0 turns this off.
    pub noise_every: u64,
}

/// One row about to be logged.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub event_type: String,
    pub attribute_name: Option<String>,
    pub entity: Option<EntityLink>,
    pub meta: Value,
    pub project: Option<Value>,
    pub description: String,
}

/// Who did it and when, shared by the rows of one call.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub user: EntityLink,
    pub session_uuid: Option<String>,
    pub created_at: i64,
}

impl EventRow {
    fn to_record(&self, ctx: &EventContext) -> Map<String, Value> {
        let link = |l: &EntityLink| json!({"type": l.entity_type, "id": l.id});
        let mut record = Map::new();
        record.insert("id".into(), json!(self.id));
        record.insert("event_type".into(), json!(self.event_type));
        record.insert("attribute_name".into(), json!(self.attribute_name));
        record.insert(
            "entity".into(),
            self.entity.as_ref().map(link).unwrap_or(Value::Null),
        );
        record.insert("meta".into(), self.meta.clone());
        record.insert(
            "project".into(),
            self.project.clone().unwrap_or(Value::Null),
        );
        record.insert("user".into(), link(&ctx.user));
        record.insert("created_at".into(), json!(format_date_time(ctx.created_at)));
        record.insert("session_uuid".into(), json!(ctx.session_uuid));
        record.insert("description".into(), json!(self.description));
        record
    }
}

/// A batch of rows whose commit is late.
struct LateRows {
    due: Instant,
    records: Vec<Map<String, Value>>,
}

/// Gives out event ids and writes rows.
pub struct EventLog {
    next_id: AtomicI64,
    transactions: std::sync::atomic::AtomicU64,
    faults: EventFaults,
    late: Mutex<Vec<LateRows>>,
}

/// The fraction of transactions whose rows commit late when late commits are on.
const LATE_TRANSACTION_RATE: f64 = 0.2;

impl EventLog {
    /// A log whose next id follows `last_id`.
    pub fn new(last_id: i64, faults: EventFaults) -> EventLog {
        EventLog {
            next_id: AtomicI64::new(last_id + 1),
            transactions: std::sync::atomic::AtomicU64::new(0),
            faults,
            late: Mutex::new(Vec::new()),
        }
    }

    /// Takes the next id. Ids of rows never written (a rolled-back call, a lost
    /// row) are simply never seen, as on a real site.
    pub fn allocate(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Writes the rows of one transaction, inside it. Some transactions' rows
    /// are held back to appear later, and some rows are lost, when those faults are on.
    pub fn write(
        &self,
        conn: &mut dyn Connection,
        catalog: &Catalog,
        ctx: &EventContext,
        rows: &[EventRow],
    ) -> Result<(), EngineError> {
        let Some(table) = catalog.layout.table("EventLogEntry") else {
            return Ok(());
        };
        let mut rng = rand::thread_rng();
        let records: Vec<Map<String, Value>> = rows
            .iter()
            .filter(|_| {
                !(self.faults.lost_rate > 0.0 && rng.gen_bool(self.faults.lost_rate.min(1.0)))
            })
            .map(|r| r.to_record(ctx))
            .collect();
        let late = !self.faults.late_commit.is_zero() && rng.gen_bool(LATE_TRANSACTION_RATE);
        if late {
            let delay = rng.gen_range(0..=self.faults.late_commit.as_millis() as u64);
            if let Ok(mut pending) = self.late.lock() {
                pending.push(LateRows {
                    due: Instant::now() + Duration::from_millis(delay),
                    records,
                });
            }
            return Ok(());
        }
        for record in &records {
            sg_engine::write::upsert_record(conn, table, record)?;
        }
        Ok(())
    }

    /// The noise rows to log after `rows`, when this transaction's turn has come.
    pub fn noise(&self, rows: &[EventRow]) -> Vec<EventRow> {
        let n = self.faults.noise_every;
        if n == 0 || !(self.transactions.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(n) {
            return Vec::new();
        }
        let mut noise = Vec::new();
        if let Some(note) = rows
            .iter()
            .filter_map(|r| r.entity.clone())
            .find(|e| e.entity_type == "Note")
        {
            noise.push(EventRow {
                id: self.allocate(),
                event_type: "Shotgun_Reading_Change".into(),
                attribute_name: Some("read_by_current_user".into()),
                entity: Some(note),
                meta: json!({"type": "attribute_change", "attribute_name": "read_by_current_user", "new_value": "read"}),
                project: None,
                description: "Note marked as read".into(),
            });
        }
        noise.push(EventRow {
            id: self.allocate(),
            event_type: "Toolkit_App_Startup".into(),
            attribute_name: None,
            entity: None,
            meta: json!({"core": "v0.20.0", "app": "tk-multi-launchapp", "engine": "tk-shell"}),
            project: None,
            description: "Toolkit app started".into(),
        });
        noise
    }

    /// Takes the held-back rows that are due.
    pub fn take_due(&self) -> Vec<Map<String, Value>> {
        let Ok(mut pending) = self.late.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = pending.drain(..).partition(|l| l.due <= now);
        *pending = waiting;
        due.into_iter().flat_map(|l| l.records).collect()
    }
}

/// `"YYYY-MM-DD HH:MM:SS UTC"`, the form of retirement stamps in the log.
pub fn retirement_stamp(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_one_sequence() {
        let log = EventLog::new(41, EventFaults::default());
        assert_eq!(log.allocate(), 42);
        assert_eq!(log.allocate(), 43);
    }

    #[test]
    fn retirement_stamps_are_not_iso() {
        assert_eq!(retirement_stamp(0), "1970-01-01 00:00:00 UTC");
    }
}
