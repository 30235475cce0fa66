//! The embedded SQLite store: one writer connection and a small pool of
//! reader connections over one database file in WAL mode, so reads never wait
//! for a write to finish. Each reader's statements share one read transaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::{Value as RValue, ValueRef};
use rusqlite::OpenFlags;

use crate::error::EngineError;
use crate::sql::{Dialect, SqlValue};
use crate::store::{Connection, Rows, Store};

/// Readers kept open; more are opened on demand and closed when the pool is full.
const READER_POOL_SIZE: usize = 8;

pub struct SqliteStore {
    path: PathBuf,
    /// Boxed: a connection with its hook slots is large, and the store sits
    /// unboxed in `AnyStore` beside a boxed PostgreSQL one.
    writer: Box<Mutex<rusqlite::Connection>>,
    readers: Mutex<Vec<rusqlite::Connection>>,
    /// Removed when the store is dropped (a throwaway database).
    delete_on_drop: bool,
}

/// How long a connection waits for another's lock before it gives up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Creates the database file readable by its owner only, if it is not there:
/// SQLite gives its `-wal` and `-shm` files the database file's mode, and
/// the cache holds the site's data. An existing file keeps its mode.
fn create_private(path: &Path) -> Result<(), EngineError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(EngineError::Store(format!(
            "can't create {}: {e}",
            path.display()
        ))),
    }
}

fn open_connection(path: &Path) -> Result<rusqlite::Connection, EngineError> {
    create_private(path)?;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Another process opening the same new file at the same moment (a
    // `status` beside a starting `run`) can hold the lock that switching to
    // WAL needs, and SQLite answers that with "database is locked" at once
    // instead of waiting: wait here.
    let started = std::time::Instant::now();
    loop {
        match conn.execute_batch("PRAGMA journal_mode = WAL;") {
            Ok(()) => break,
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 1073741824;",
    )?;
    conn.set_prepared_statement_cache_capacity(256);
    // Case-insensitive matching of non-ASCII text (NOCASE folds ASCII only).
    conn.create_scalar_function(
        "sg_casefold",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase())),
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, EngineError> {
        let writer = open_connection(path)?;
        // The writer touches every page of the file (an import reads each
        // B-tree it grows): through its own bounded page cache rather than
        // the map, so the whole file does not stay mapped into the process
        // (but see `set_bulk_load`).
        writer.execute_batch("PRAGMA mmap_size = 0;")?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Box::new(Mutex::new(writer)),
            readers: Mutex::new(Vec::new()),
            delete_on_drop: false,
        })
    }

    /// A database in a fresh file under the system's temporary folder, removed on drop.
    pub fn open_temporary() -> Result<SqliteStore, EngineError> {
        use std::sync::atomic::AtomicU64;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "shotgun-cache-{}-{}-{}.sqlite",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let mut store = SqliteStore::open(&std::env::temp_dir().join(name))?;
        store.delete_on_drop = true;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled reader connection (opening one when none is free)
    /// and gives the connection back to the pool afterwards.
    fn with_pooled_reader<T>(
        &self,
        f: &mut dyn FnMut(&mut rusqlite::Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let pooled = self.readers.lock().map_err(|_| poisoned())?.pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let result = f(&mut conn);
        let mut readers = self.readers.lock().map_err(|_| poisoned())?;
        // A connection left inside a transaction (its end failed) is not reused.
        if readers.len() < READER_POOL_SIZE && conn.is_autocommit() {
            readers.push(conn);
        }
        result
    }

    /// Runs `f` as [`Store::with_reader`] does, but stops its SQL once it has
    /// run for `budget`, and then gives `None`: for a caller that runs short
    /// reads where it is (an async thread, saving two thread hand-offs per
    /// request) and must not be held up by a long one, which it then runs
    /// again elsewhere. Reads change nothing, so running one again is safe.
    pub fn with_reader_within<T>(
        &self,
        budget: Duration,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<Option<T>, EngineError> {
        match self.with_reader_budgeted(budget, f) {
            Ok(value) => Ok(Some(value)),
            Err(EngineError::OverBudget(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Virtual machine steps between two looks at the clock of a bounded read.
const PROGRESS_STEPS: std::os::raw::c_int = 2000;

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if self.delete_on_drop {
            if let Ok(readers) = self.readers.get_mut() {
                readers.clear();
            }
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// A value bound as it is, text without a copy (an import binds every
/// column of every record: an owned copy was an allocation per text).
struct Bind<'a>(&'a SqlValue);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match self.0 {
            SqlValue::Null => ToSqlOutput::Owned(RValue::Null),
            SqlValue::Int(i) => ToSqlOutput::Owned(RValue::Integer(*i)),
            SqlValue::Real(f) => ToSqlOutput::Owned(RValue::Real(*f)),
            SqlValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn from_sql(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Int(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        // Stored text is written from Rust strings, so nearly always valid:
        // the plain check is much quicker than the lossy conversion's.
        ValueRef::Text(t) => SqlValue::Text(match std::str::from_utf8(t) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(t).into_owned(),
        }),
        ValueRef::Blob(b) => SqlValue::Text(String::from_utf8_lossy(b).into_owned()),
    }
}

impl Connection for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Rows, EngineError> {
        let mut stmt = self.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(Bind)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(from_sql(row.get_ref(i)?));
            }
            out.push(values);
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<usize, EngineError> {
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter().map(Bind)))?)
    }

    /// One statement looked up once for all the rows: the cache's lookup
    /// hashes and compares the whole text, which for an upsert of many
    /// columns cost more than binding a row.
    fn execute_each(
        &mut self,
        sql: &str,
        rows: &mut dyn Iterator<Item = &[SqlValue]>,
    ) -> Result<usize, EngineError> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut changed = 0;
        for params in rows {
            changed += stmt.execute(rusqlite::params_from_iter(params.iter().map(Bind)))?;
        }
        Ok(changed)
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), EngineError> {
        Ok(rusqlite::Connection::execute_batch(self, sql)?)
    }
}

impl Store for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn with_reader<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.with_pooled_reader(&mut |conn| read_in_one_transaction(conn, f))
    }

    /// Runs `f` as [`Store::with_reader`] does, but stops its SQL once it has
    /// run for `budget` and then fails with [`EngineError::OverBudget`]. The
    /// reader's transaction is rolled back and its clock removed, so the
    /// pooled connection serves the next read as before.
    fn with_reader_budgeted<T>(
        &self,
        budget: Duration,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let deadline = Instant::now().checked_add(budget);
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        self.with_pooled_reader(&mut |conn| {
            let flag = flag.clone();
            // Called every few thousand VM steps: cheap beside the steps themselves.
            conn.progress_handler(
                PROGRESS_STEPS,
                Some(move || {
                    let over = deadline.is_some_and(|d| Instant::now() >= d);
                    if over {
                        flag.store(true, Ordering::Relaxed);
                    }
                    over
                }),
            );
            let result = read_in_one_transaction(conn, f);
            conn.progress_handler(0, None::<fn() -> bool>);
            result
        })
        .map_err(|e| {
            if stopped.load(Ordering::Relaxed) {
                EngineError::OverBudget(budget)
            } else {
                e
            }
        })
    }

    fn with_transaction<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut conn = self.writer.lock().map_err(|_| poisoned())?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(&mut *conn) {
            Ok(value) => {
                conn.execute_batch("COMMIT")?;
                Ok(value)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// While loading, the writer maps the file as the readers do: a first
    /// import's index builds scan whole tables, and through the map they skip
    /// copying every page out of the OS cache (a fifth of the CPU of
    /// building the large site's PublishedFile indexes, by perf). Its commits checkpoint the log
    /// every 10,000 pages rather than SQLite's 1,000: a checkpoint syncs the
    /// log and the file, and it holds the one writer meanwhile.
    ///
    /// Afterwards the writer reads through its own bounded cache again, so
    /// the file does not stay mapped into a process that serves, and the log
    /// is checkpointed whole and emptied: readers find a page that is still
    /// in the log by reading the log, not through their map of the file.
    fn set_bulk_load(&self, loading: bool) -> Result<(), EngineError> {
        let conn = self.writer.lock().map_err(|_| poisoned())?;
        if loading {
            conn.execute_batch("PRAGMA mmap_size = 1073741824; PRAGMA wal_autocheckpoint = 10000")?;
        } else {
            conn.execute_batch("PRAGMA mmap_size = 0; PRAGMA wal_autocheckpoint = 1000")?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }
}

/// Runs a reader's statements in one read transaction: they all see one
/// snapshot (a read and the names of its links agree even while the sync
/// writes), and the database's shared lock is taken and released once, not
/// once per statement.
fn read_in_one_transaction<T>(
    conn: &mut rusqlite::Connection,
    f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = f(conn);
    // A read-only transaction ends alike either way; ROLLBACK also undoes
    // anything a failed reader might have left.
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.prepare_cached(end).and_then(|mut s| s.execute([]));
    match (result, ended) {
        (Ok(value), Ok(_)) => Ok(value),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

fn poisoned() -> EngineError {
    EngineError::Store("a database connection lock was poisoned".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts to a million: far more VM steps than the progress handler's period.
    const LONG: &str =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
                        SELECT COUNT(*) FROM n";

    #[test]
    fn a_bounded_read_over_its_budget_is_stopped_and_the_reader_still_works() {
        let store = SqliteStore::open_temporary().unwrap();
        let stopped = store
            .with_reader_within(Duration::ZERO, &mut |c| c.query(LONG, &[]))
            .unwrap();
        assert!(stopped.is_none());
        // The same pooled connection, its handler gone: an unbounded read runs to the end.
        let counted = store.with_reader(&mut |c| c.query(LONG, &[])).unwrap();
        assert_eq!(counted[0][0], SqlValue::Int(1_000_000));
        let within = store
            .with_reader_within(Duration::from_secs(3600), &mut |c| c.query("SELECT 7", &[]))
            .unwrap();
        assert_eq!(within, Some(vec![vec![SqlValue::Int(7)]]));
    }

    #[test]
    fn a_bounded_read_keeps_its_own_errors() {
        let store = SqliteStore::open_temporary().unwrap();
        let failed = store.with_reader_within(Duration::from_secs(3600), &mut |c| {
            c.query("SELECT nope", &[])
        });
        assert!(failed.is_err());
    }
}
