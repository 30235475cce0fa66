//! What the cache knows about its own progress, kept in the cache's database
//! beside the data it describes and written in the same transactions, so a
//! crash at any moment leaves data and progress consistent.
//!
//! - `__sync_state`: key/value pairs: the event watermark, the ids seen
//!   missing, the last scan (where it started by the site's clock, and when
//!   it ended by this machine's), the last poll, the last step's error, the
//!   site's schema.
//! - `__sync_types`: per cached type, its config digest, status and import progress.
//! - `__sync_reimports`: per type being imported again into shadow tables
//!   (see [`crate::reimport`]), the config digest it imports and its progress.
//! - `__sync_guard`: per record, the newest event its cached copy is known
//!   to reflect (a row applied, or the watermark of the poll or scan that
//!   read it whole), so an older event arriving late never overwrites a
//!   newer value: a row at or below it makes the sync read the record whole.

use std::collections::BTreeMap;

use serde_json::Value;

use sg_engine::frag::Fragment;
use sg_engine::sql::SqlValue;
use sg_engine::{Connection, EngineError};

/// Creates the state tables if missing.
pub fn create_tables(conn: &mut dyn Connection) -> Result<(), EngineError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS \"__sync_state\" (\"key\" TEXT PRIMARY KEY, \"value\" TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS \"__sync_types\" (\"entity_type\" TEXT PRIMARY KEY, \"digest\" TEXT NOT NULL,
             \"status\" TEXT NOT NULL, \"phase\" TEXT NOT NULL, \"last_id\" BIGINT NOT NULL,
             \"imported\" BIGINT NOT NULL, \"imported_at\" TEXT);
         CREATE TABLE IF NOT EXISTS \"__sync_reimports\" (\"entity_type\" TEXT PRIMARY KEY, \"digest\" TEXT NOT NULL,
             \"phase\" TEXT NOT NULL, \"last_id\" BIGINT NOT NULL, \"imported\" BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS \"__sync_guard\" (\"entity_type\" TEXT NOT NULL, \"id\" BIGINT NOT NULL,
             \"event_id\" BIGINT NOT NULL, PRIMARY KEY (\"entity_type\", \"id\"));",
    )
}

fn run(conn: &mut dyn Connection, f: Fragment) -> Result<Vec<Vec<SqlValue>>, EngineError> {
    let (sql, params) = f.finish(conn.dialect());
    conn.query(&sql, &params)
}

fn exec(conn: &mut dyn Connection, f: Fragment) -> Result<usize, EngineError> {
    let (sql, params) = f.finish(conn.dialect());
    conn.execute(&sql, &params)
}

pub fn get(conn: &mut dyn Connection, key: &str) -> Result<Option<String>, EngineError> {
    let mut f = Fragment::text("SELECT \"value\" FROM \"__sync_state\" WHERE \"key\" = ");
    f.bind(SqlValue::Text(key.into()));
    Ok(run(conn, f)?
        .first()
        .and_then(|r| r[0].as_str().map(str::to_string)))
}

pub fn set(conn: &mut dyn Connection, key: &str, value: &str) -> Result<(), EngineError> {
    let mut f = Fragment::text("INSERT INTO \"__sync_state\" (\"key\", \"value\") VALUES (");
    f.bind(SqlValue::Text(key.into()))
        .push(", ")
        .bind(SqlValue::Text(value.into()));
    f.push(") ON CONFLICT (\"key\") DO UPDATE SET \"value\" = excluded.\"value\"");
    exec(conn, f).map(|_| ())
}

/// Notes that a poll of the event log was stored now (what `/readyz` and
/// `status` judge the sync's health by, in any process sharing the store).
pub fn set_poll_done(conn: &mut dyn Connection) -> Result<(), EngineError> {
    set(
        conn,
        "last_poll_at",
        &chrono::Utc::now().timestamp().to_string(),
    )
}

/// When the last reconcile scan ended (seconds since the epoch, this
/// machine's clock): a restarted `run` scans when one is due by it.
pub fn last_scan_ended(conn: &mut dyn Connection) -> Result<Option<i64>, EngineError> {
    Ok(get(conn, "last_scan_ended")?.and_then(|s| s.parse().ok()))
}

pub fn set_last_scan_ended(conn: &mut dyn Connection, at: i64) -> Result<(), EngineError> {
    set(conn, "last_scan_ended", &at.to_string())
}

/// The event position: everything up to `watermark` is applied except the
/// `missing` ids, each with the site time (epoch seconds) it was first missed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPosition {
    pub watermark: i64,
    pub missing: BTreeMap<i64, i64>,
}

pub fn position(conn: &mut dyn Connection) -> Result<Option<EventPosition>, EngineError> {
    let Some(watermark) = get(conn, "watermark")?.and_then(|w| w.parse().ok()) else {
        return Ok(None);
    };
    let missing = get(conn, "missing")?
        .and_then(|m| serde_json::from_str::<BTreeMap<i64, i64>>(&m).ok())
        .unwrap_or_default();
    Ok(Some(EventPosition { watermark, missing }))
}

pub fn set_position(
    conn: &mut dyn Connection,
    position: &EventPosition,
) -> Result<(), EngineError> {
    set(conn, "watermark", &position.watermark.to_string())?;
    let missing =
        serde_json::to_string(&position.missing).map_err(|e| EngineError::Store(e.to_string()))?;
    set(conn, "missing", &missing)
}

/// A cached type's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeState {
    pub entity_type: String,
    pub digest: String,
    /// `importing` or `ready`.
    pub status: String,
    /// `active` then `retired` while importing.
    pub phase: String,
    pub last_id: i64,
    pub imported: i64,
    pub imported_at: Option<String>,
}

pub fn types(conn: &mut dyn Connection) -> Result<BTreeMap<String, TypeState>, EngineError> {
    let rows = run(
        conn,
        Fragment::text(
            "SELECT \"entity_type\", \"digest\", \"status\", \"phase\", \"last_id\", \"imported\", \"imported_at\" FROM \"__sync_types\"",
        ),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let state = TypeState {
                entity_type: r[0].as_str()?.to_string(),
                digest: r[1].as_str()?.to_string(),
                status: r[2].as_str()?.to_string(),
                phase: r[3].as_str()?.to_string(),
                last_id: r[4].as_i64()?,
                imported: r[5].as_i64()?,
                imported_at: r[6].as_str().map(str::to_string),
            };
            Some((state.entity_type.clone(), state))
        })
        .collect())
}

pub fn set_type(conn: &mut dyn Connection, s: &TypeState) -> Result<(), EngineError> {
    let mut f = Fragment::text(
        "INSERT INTO \"__sync_types\" (\"entity_type\", \"digest\", \"status\", \"phase\", \"last_id\", \"imported\", \"imported_at\") VALUES (",
    );
    f.bind(SqlValue::Text(s.entity_type.clone())).push(", ");
    f.bind(SqlValue::Text(s.digest.clone())).push(", ");
    f.bind(SqlValue::Text(s.status.clone())).push(", ");
    f.bind(SqlValue::Text(s.phase.clone())).push(", ");
    f.bind(SqlValue::Int(s.last_id)).push(", ");
    f.bind(SqlValue::Int(s.imported)).push(", ");
    f.bind(
        s.imported_at
            .clone()
            .map(SqlValue::Text)
            .unwrap_or(SqlValue::Null),
    );
    f.push(
        ") ON CONFLICT (\"entity_type\") DO UPDATE SET \"digest\" = excluded.\"digest\", \"status\" = excluded.\"status\", \
         \"phase\" = excluded.\"phase\", \"last_id\" = excluded.\"last_id\", \"imported\" = excluded.\"imported\", \
         \"imported_at\" = excluded.\"imported_at\"",
    );
    exec(conn, f).map(|_| ())
}

pub fn remove_type(conn: &mut dyn Connection, entity_type: &str) -> Result<(), EngineError> {
    remove_reimport(conn, entity_type)?;
    let mut f = Fragment::text("DELETE FROM \"__sync_types\" WHERE \"entity_type\" = ");
    f.bind(SqlValue::Text(entity_type.into()));
    exec(conn, f)?;
    let mut f = Fragment::text("DELETE FROM \"__sync_guard\" WHERE \"entity_type\" = ");
    f.bind(SqlValue::Text(entity_type.into()));
    exec(conn, f).map(|_| ())
}

/// The guard of each of these records: the newest event its copy reflects
/// (0 when none).
pub fn guards(
    conn: &mut dyn Connection,
    entity_type: &str,
    ids: &[i64],
) -> Result<BTreeMap<i64, i64>, EngineError> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(sg_engine::frag::IN_LIST_MAX) {
        let mut f = Fragment::text(
            "SELECT \"id\", \"event_id\" FROM \"__sync_guard\" WHERE \"entity_type\" = ",
        );
        f.bind(SqlValue::Text(entity_type.into()))
            .push(" AND \"id\" IN ")
            .in_ids(chunk);
        for r in run(conn, f)? {
            if let (Some(id), Some(event)) = (r[0].as_i64(), r[1].as_i64()) {
                out.insert(id, event);
            }
        }
    }
    Ok(out)
}

/// Records that a record's copy reflects event `event_id` (an older one
/// never replaces a newer one).
pub fn set_guard(
    conn: &mut dyn Connection,
    entity_type: &str,
    id: i64,
    event_id: i64,
) -> Result<(), EngineError> {
    let mut f = Fragment::text(
        "INSERT INTO \"__sync_guard\" (\"entity_type\", \"id\", \"event_id\") VALUES (",
    );
    f.bind(SqlValue::Text(entity_type.into()))
        .push(", ")
        .bind(SqlValue::Int(id))
        .push(", ");
    f.bind(SqlValue::Int(event_id));
    f.push(") ON CONFLICT (\"entity_type\", \"id\") DO UPDATE SET \"event_id\" = excluded.\"event_id\" WHERE excluded.\"event_id\" > \"__sync_guard\".\"event_id\"");
    exec(conn, f).map(|_| ())
}

/// Records, for many records at once, the newest event applied to each
/// (`(type, id)` → event id); an older one never replaces a newer one.
pub fn set_guards(
    conn: &mut dyn Connection,
    guards: &BTreeMap<(String, i64), i64>,
) -> Result<(), EngineError> {
    let rows: Vec<(&(String, i64), &i64)> = guards.iter().collect();
    for chunk in rows.chunks(1000) {
        let mut f = Fragment::text(
            "INSERT INTO \"__sync_guard\" (\"entity_type\", \"id\", \"event_id\") VALUES ",
        );
        for (i, ((entity_type, id), event_id)) in chunk.iter().enumerate() {
            f.push(if i > 0 { ", (" } else { "(" });
            f.bind(SqlValue::Text(entity_type.clone()))
                .push(", ")
                .bind(SqlValue::Int(*id))
                .push(", ")
                .bind(SqlValue::Int(**event_id))
                .push(")");
        }
        f.push(" ON CONFLICT (\"entity_type\", \"id\") DO UPDATE SET \"event_id\" = excluded.\"event_id\" WHERE excluded.\"event_id\" > \"__sync_guard\".\"event_id\"");
        exec(conn, f)?;
    }
    Ok(())
}

/// The site's schema as last read, kept so a restart can start without the site.
pub fn site_schema(conn: &mut dyn Connection) -> Result<Option<Value>, EngineError> {
    Ok(get(conn, "site_schema")?.and_then(|s| serde_json::from_str(&s).ok()))
}

/// Keeps the site's schema (its JSON text) with its digest; returns the digest.
pub fn set_site_schema(conn: &mut dyn Connection, text: &str) -> Result<String, EngineError> {
    let digest = schema_digest(text);
    set(conn, "site_schema", text)?;
    set(conn, "site_schema_digest", &digest)?;
    Ok(digest)
}

/// The digest of the kept schema: a process sharing the database reads it
/// every `fetch_interval` to learn, cheaply, that the syncing process has
/// read a changed schema. `None` where an older version kept the schema.
pub fn site_schema_digest(conn: &mut dyn Connection) -> Result<Option<String>, EngineError> {
    get(conn, "site_schema_digest")
}

/// The digest of a schema's JSON text.
pub fn schema_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Marks types to be imported again (by the running sync, at its next step).
pub fn request_rebuild(
    conn: &mut dyn Connection,
    entity_types: &[String],
) -> Result<usize, EngineError> {
    let mut changed = 0;
    for t in entity_types {
        let mut f = Fragment::text(
            "UPDATE \"__sync_types\" SET \"digest\" = 'rebuild' WHERE \"entity_type\" = ",
        );
        f.bind(SqlValue::Text(t.clone()));
        changed += exec(conn, f)?;
        // A reimport under way started before the request: it starts over.
        remove_reimport(conn, t)?;
    }
    Ok(changed)
}

/// The types being imported again into shadow tables, with their progress
/// (`status` is always `reimporting`).
pub fn reimports(conn: &mut dyn Connection) -> Result<BTreeMap<String, TypeState>, EngineError> {
    let rows = run(
        conn,
        Fragment::text(
            "SELECT \"entity_type\", \"digest\", \"phase\", \"last_id\", \"imported\" FROM \"__sync_reimports\"",
        ),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let state = TypeState {
                entity_type: r[0].as_str()?.to_string(),
                digest: r[1].as_str()?.to_string(),
                status: "reimporting".into(),
                phase: r[2].as_str()?.to_string(),
                last_id: r[3].as_i64()?,
                imported: r[4].as_i64()?,
                imported_at: None,
            };
            Some((state.entity_type.clone(), state))
        })
        .collect())
}

/// The reimport of one type, if one is under way.
pub fn reimport(
    conn: &mut dyn Connection,
    entity_type: &str,
) -> Result<Option<TypeState>, EngineError> {
    Ok(reimports(conn)?.remove(entity_type))
}

pub fn set_reimport(conn: &mut dyn Connection, s: &TypeState) -> Result<(), EngineError> {
    let mut f = Fragment::text(
        "INSERT INTO \"__sync_reimports\" (\"entity_type\", \"digest\", \"phase\", \"last_id\", \"imported\") VALUES (",
    );
    f.bind(SqlValue::Text(s.entity_type.clone())).push(", ");
    f.bind(SqlValue::Text(s.digest.clone())).push(", ");
    f.bind(SqlValue::Text(s.phase.clone())).push(", ");
    f.bind(SqlValue::Int(s.last_id)).push(", ");
    f.bind(SqlValue::Int(s.imported));
    f.push(
        ") ON CONFLICT (\"entity_type\") DO UPDATE SET \"digest\" = excluded.\"digest\", \
         \"phase\" = excluded.\"phase\", \"last_id\" = excluded.\"last_id\", \"imported\" = excluded.\"imported\"",
    );
    exec(conn, f).map(|_| ())
}

pub fn remove_reimport(conn: &mut dyn Connection, entity_type: &str) -> Result<(), EngineError> {
    let mut f = Fragment::text("DELETE FROM \"__sync_reimports\" WHERE \"entity_type\" = ");
    f.bind(SqlValue::Text(entity_type.into()));
    exec(conn, f).map(|_| ())
}
