//! The PostgreSQL store: the engine's tables in one schema of a PostgreSQL
//! database, reached through the synchronous [`postgres`] client.
//!
//! # Connections
//!
//! One writer connection runs every write transaction, one at a time, as the
//! SQLite store's single writer does; a small pool of reader connections
//! serves reads, which run in autocommit mode (as SQLite's readers do) and so
//! never wait for a write. Readers beyond the pool are opened on demand and
//! closed after use. A connection found closed (the server restarted, say) is
//! replaced the next time one is needed.
//!
//! Write transactions are also serialized across processes that share a
//! schema, with a transaction-scoped advisory lock keyed by the schema name:
//! the engine's writers read before they write (the next free id, say), and
//! that is only safe when no other writer runs in between.
//!
//! [`Store::hold_session_lock`] holds a session-level advisory lock on a
//! connection of its own, one per lock name, kept open while the lock is
//! wanted: the server releases the lock when that connection closes.
//!
//! # Schema
//!
//! [`PostgresStore::connect`] takes an optional schema: it is created if
//! missing and every connection sets `search_path` to it alone, so stores in
//! different schemas of one database never see each other's tables. Without
//! one, the server's default `search_path` applies. [`PostgresStore::open_temporary`]
//! makes a fresh schema, dropped with everything in it when the store is dropped.
//!
//! The database should use a UTF-8 `LC_CTYPE` (`C.UTF-8`, `en_US.UTF-8`, ...)
//! so that `lower` folds every letter; under plain `C` only ASCII letters
//! compare case-insensitively (see [`Dialect::text_equals`]). Connections
//! are made without TLS.
//!
//! # Threads
//!
//! The [`postgres`] client runs its own small tokio runtime inside each
//! connection and blocks on it. It must therefore **not** be used from a
//! thread that is running async code of a tokio runtime: connecting, querying
//! or dropping the store there panics ("Cannot start a runtime from within a
//! runtime"). Call the engine from plain threads, or from async code through
//! `tokio::task::spawn_blocking` (as the simulated site does), and drop the
//! store outside async code too.
//!
//! # Values
//!
//! Bound [`SqlValue`]s are encoded for the type PostgreSQL gives each
//! placeholder (see [`crate::frag::Fragment::finish`], which casts each to its
//! value's type): integers as `INT8` (or `INT4`, `INT2`, `FLOAT8`, `BOOL`
//! where a placeholder has that type), reals as `FLOAT8`, text as `TEXT`, and
//! null as a null of whatever type the placeholder has. Columns read back as
//! [`SqlValue`]s: `INT2`/`INT4`/`INT8` as integers, `FLOAT4`/`FLOAT8` as
//! reals, `NUMERIC` (what `SUM` of a `BIGINT` column is) as an integer when it
//! is whole and fits, else a real, `BOOL` (what `EXISTS` and comparisons are)
//! as 0 or 1, and text types as text.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ::postgres::error::SqlState;
use ::postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use ::postgres::{Client, Config, NoTls, Statement};
use bytes::BytesMut;

use crate::error::EngineError;
use crate::sql::{is_plain_ident, quote_ident, Dialect, SqlArray, SqlValue};
use crate::store::{Connection, Rows, Store};

/// Readers kept open; more are opened on demand and closed when the pool is full.
const READER_POOL_SIZE: usize = 4;

/// Prepared statements kept per connection; the cache is emptied when full.
const STATEMENT_CACHE_SIZE: usize = 256;

/// The connection string [`PostgresStore::open_temporary`] callers (the
/// tests) use when none is given: the local server, user `postgres`,
/// database `test`.
pub const DEFAULT_TEST_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

/// How long a connection may take when the connection string sets no `connect_timeout`.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type BoxError = Box<dyn StdError + Sync + Send>;

/// Where a connection string points, for messages: user, hosts, ports and
/// database, never the password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            ::postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            ::postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "user {}, host {}, port {}, database {}",
        config.get_user().unwrap_or("(default)"),
        if hosts.is_empty() {
            "(default)".to_string()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or("(default)")
    )
}

/// One open connection, with its prepared statements.
struct PgConnection {
    client: Client,
    statements: HashMap<String, Statement>,
    /// The end of a budgeted read (and the budget, to report), while one runs.
    budget: Option<(Instant, Duration)>,
    /// Whether the session's `statement_timeout` is one a budgeted read set:
    /// reset before the connection's next statement outside such a read
    /// (not after each budgeted read, whose next user is most often another).
    timeout_set: bool,
}

/// Tables in one schema of a PostgreSQL database.
pub struct PostgresStore {
    config: Config,
    schema: Option<String>,
    /// The advisory lock that serializes write transactions on this schema.
    lock_key: i64,
    writer: Mutex<Option<PgConnection>>,
    readers: Mutex<Vec<PgConnection>>,
    /// The connections of the session locks taken (see
    /// [`Store::hold_session_lock`]), by lock name.
    session_locks: Mutex<HashMap<String, SessionLock>>,
    /// Drop the schema when the store is dropped (a throwaway store).
    drop_schema: bool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgresql://user@host:port/db`,
    /// or `host=... user=... dbname=...`) and keeps the tables in `schema`,
    /// created if missing (or in the server's default `search_path` if `None`).
    pub fn connect(url: &str, schema: Option<&str>) -> Result<PostgresStore, EngineError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| EngineError::Store(format!("bad PostgreSQL connection string: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // `CREATE ... IF NOT EXISTS` on every open would otherwise log a
        // NOTICE per table that already exists.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c client_min_messages=warning"),
            None => "-c client_min_messages=warning".to_string(),
        };
        config.options(&options);
        if let Some(name) = schema {
            if !is_plain_ident(name) {
                return Err(EngineError::BadIdentifier(name.to_string()));
            }
        }
        let schema = schema.map(str::to_string);
        let mut client = config.connect(NoTls).map_err(|e| {
            EngineError::Store(format!(
                "cannot connect to PostgreSQL ({}): {}",
                describe(&config),
                match pg_error(e) {
                    EngineError::Store(message) => message,
                    other => other.to_string(),
                }
            ))
        })?;
        if let Some(name) = &schema {
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote_ident(name)?
                ))
                .map_err(pg_error)?;
        }
        let store = PostgresStore {
            lock_key: lock_key(&format!(
                "sg-engine writer:{}",
                schema.as_deref().unwrap_or("")
            )),
            config,
            schema,
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            session_locks: Mutex::new(HashMap::new()),
            drop_schema: false,
        };
        let writer = store.prepare_client(client)?;
        *store.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(writer);
        Ok(store)
    }

    /// A store in a fresh schema (`sgc_test_<pid>_<n>_<time>`) of the database
    /// at `url`, dropped with all its tables when the store is dropped. Tests
    /// running side by side each get their own.
    pub fn open_temporary(url: &str) -> Result<PostgresStore, EngineError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "sgc_test_{}_{}_{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos as u64
        );
        let mut store = PostgresStore::connect(url, Some(&name))?;
        store.drop_schema = true;
        Ok(store)
    }

    /// The idle readers. A panic cannot leave the list itself half-changed,
    /// so a poisoned lock is taken as it is.
    fn readers(&self) -> MutexGuard<'_, Vec<PgConnection>> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema the tables are in, if one was named.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    fn open(&self) -> Result<PgConnection, EngineError> {
        let client = self.config.connect(NoTls).map_err(pg_error)?;
        self.prepare_client(client)
    }

    fn prepare_client(&self, mut client: Client) -> Result<PgConnection, EngineError> {
        if let Some(name) = &self.schema {
            client
                .batch_execute(&format!("SET search_path TO {}", quote_ident(name)?))
                .map_err(pg_error)?;
        }
        Ok(PgConnection {
            client,
            statements: HashMap::new(),
            budget: None,
            timeout_set: false,
        })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.readers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // Taken even from a poisoned lock: a writer left mid-transaction by a
        // panic holds locks that dropping the schema would wait for.
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if !self.drop_schema {
            return;
        }
        let Some(Ok(schema)) = self.schema.as_deref().map(quote_ident) else {
            return;
        };
        let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        // On the writer if it still works (it may be mid-transaction after a
        // panic, or closed by the server), else on a new connection.
        let dropped = writer.is_some_and(|mut c| {
            !c.client.is_closed()
                && c.client.batch_execute("ROLLBACK").is_ok()
                && c.client.batch_execute(&sql).is_ok()
        });
        if !dropped {
            if let Ok(mut conn) = self.open() {
                let _ = conn.client.batch_execute(&sql);
            }
        }
    }
}

/// The stable 64-bit key (FNV-1a, the same in every build) of the advisory
/// lock named `name`: processes of different builds sharing a database must
/// agree on it.
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// A session-level advisory lock wanted by this store, and the connection
/// that holds it (or is to take it).
struct SessionLock {
    client: Client,
    held: bool,
}

/// Tries to take the session-level advisory lock `key` on `client`.
fn try_advisory_lock(client: &mut Client, key: i64) -> Result<bool, EngineError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .map_err(pg_error)?;
    row.try_get(0).map_err(pg_error)
}

fn no_writer() -> EngineError {
    EngineError::Store("the PostgreSQL writer connection is missing".to_string())
}

/// A store error with the server's own words, when it sent any.
fn pg_error(e: ::postgres::Error) -> EngineError {
    match e.as_db_error() {
        Some(db) => {
            let mut message = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            EngineError::Store(message)
        }
        None => {
            // The client's own message is terse ("error connecting to
            // server"); the reason is in its sources.
            let mut message = e.to_string();
            let mut source = StdError::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            EngineError::Store(message)
        }
    }
}

impl From<::postgres::Error> for EngineError {
    fn from(e: ::postgres::Error) -> Self {
        pg_error(e)
    }
}

/// A bound value, encoded for the type PostgreSQL gave its placeholder.
#[derive(Debug)]
struct Param<'a>(&'a SqlValue);

fn cannot_bind(value: &SqlValue, ty: &Type) -> BoxError {
    format!("cannot bind {value:?} to a parameter of type {ty}").into()
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let value = self.0;
        match value {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ if <&str as ToSql>::accepts(ty) => i.to_string().as_str().to_sql(ty, out),
                _ => Err(cannot_bind(value, ty)),
            },
            SqlValue::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                // Only a whole number fits an integer placeholder.
                Type::INT8 | Type::INT4 | Type::INT2
                    if f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64 =>
                {
                    Param(&SqlValue::Int(*f as i64)).to_sql(ty, out)
                }
                _ if <&str as ToSql>::accepts(ty) => f.to_string().as_str().to_sql(ty, out),
                _ => Err(cannot_bind(value, ty)),
            },
            SqlValue::Text(s) => {
                if <&str as ToSql>::accepts(ty) {
                    s.as_str().to_sql(ty, out)
                } else {
                    Err(cannot_bind(value, ty))
                }
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column value read back.
#[derive(Debug)]
struct Cell(SqlValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, BoxError> {
        Ok(Cell(match *ty {
            Type::INT8 => SqlValue::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => SqlValue::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => SqlValue::Int(i16::from_sql(ty, raw)?.into()),
            Type::OID => SqlValue::Int(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => SqlValue::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => SqlValue::Real(f32::from_sql(ty, raw)?.into()),
            Type::BOOL => SqlValue::Int(bool::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric_value(raw)?,
            _ if <&str as FromSql>::accepts(ty) => {
                SqlValue::Text(<&str as FromSql>::from_sql(ty, raw)?.to_string())
            }
            _ => return Err(format!("columns of type {ty} are not supported").into()),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Cell, BoxError> {
        Ok(Cell(SqlValue::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A `NUMERIC` in PostgreSQL's binary form: an integer when it is whole and
/// fits in 64 bits, else the nearest real.
///
/// The form is four 16-bit fields, the count of digits, the weight of the
/// first digit, the sign and the display scale, then the digits, each from 0
/// to 9999: the value is the sum of `digit[i] * 10000^(weight - i)`.
fn numeric_value(raw: &[u8]) -> Result<SqlValue, BoxError> {
    let field = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a NUMERIC value is cut short".into())
    };
    let ndigits = usize::from(field(0)?);
    let weight = i64::from(field(1)? as i16);
    let sign = field(2)?;
    let digits = (0..ndigits)
        .map(|i| field(4 + i).map(i64::from))
        .collect::<Result<Vec<i64>, _>>()?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok(SqlValue::Real(f64::NAN)),
        0xD000 => return Ok(SqlValue::Real(f64::INFINITY)),
        0xF000 => return Ok(SqlValue::Real(f64::NEG_INFINITY)),
        _ => return Err(format!("a NUMERIC value has an unknown sign {sign:#x}").into()),
    }
    let negative = sign == 0x4000;
    // The digit whose place is 10000^power.
    let digit = |power: i64| -> i64 {
        usize::try_from(weight - power)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let lowest = weight - ndigits as i64 + 1;
    let whole = lowest >= 0 || (lowest..0).all(|p| digit(p) == 0);
    if whole {
        let mut value: i128 = 0;
        let mut fits = true;
        for power in (0..=weight).rev() {
            value = value * 10_000 + i128::from(digit(power));
            if value > i128::from(i64::MAX) + 1 {
                fits = false;
                break;
            }
        }
        if negative {
            value = -value;
        }
        if fits {
            if let Ok(i) = i64::try_from(value) {
                return Ok(SqlValue::Int(i));
            }
        }
    }
    // Through decimal text, so the real is the nearest to the exact value.
    let mut text = String::from(if negative { "-" } else { "" });
    if weight < 0 {
        text.push('0');
    }
    for power in (0..=weight).rev() {
        if power == weight {
            text.push_str(&digit(power).to_string());
        } else {
            text.push_str(&format!("{:04}", digit(power)));
        }
    }
    if lowest < 0 {
        text.push('.');
        for power in (lowest..0).rev() {
            text.push_str(&format!("{:04}", digit(power)));
        }
    }
    Ok(SqlValue::Real(text.parse::<f64>()?))
}

impl PgConnection {
    /// The prepared statement for `sql`, prepared on first use.
    fn statement(&mut self, sql: &str) -> Result<Statement, EngineError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        // Preparing runs on the server's clock apart from executing: the
        // timeout must cover it too (planning a long filter takes a while).
        self.arm_timeout()?;
        let statement = self.client.prepare(sql).map_err(|e| self.failure(e))?;
        if self.statements.len() >= STATEMENT_CACHE_SIZE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Before each statement of a budgeted read: what is left of the budget
    /// becomes the server's `statement_timeout`, so the read as a whole (not
    /// each of its statements) stops at the budget. Before any other
    /// statement, a timeout left by one is reset.
    fn arm_timeout(&mut self) -> Result<(), EngineError> {
        let Some((deadline, budget)) = self.budget else {
            if self.timeout_set {
                self.client
                    .batch_execute("RESET statement_timeout")
                    .map_err(pg_error)?;
                self.timeout_set = false;
            }
            return Ok(());
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        // 0 would mean no timeout at all.
        if left == 0 {
            return Err(EngineError::OverBudget(budget));
        }
        self.timeout_set = true;
        self.client
            .batch_execute(&format!("SET statement_timeout = {left}"))
            .map_err(pg_error)
    }

    /// The engine's error for a failed statement: a budgeted read stopped
    /// by its timeout is over budget, not a broken store.
    fn failure(&self, e: ::postgres::Error) -> EngineError {
        match self.budget {
            Some((_, budget)) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                EngineError::OverBudget(budget)
            }
            _ => pg_error(e),
        }
    }

    fn run<T>(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        call: impl FnOnce(
            &mut Client,
            &Statement,
            &[&(dyn ToSql + Sync)],
        ) -> Result<T, ::postgres::Error>,
    ) -> Result<T, EngineError> {
        let statement = self.statement(sql)?;
        self.arm_timeout()?;
        let params: Vec<Param> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        call(&mut self.client, &statement, &refs).map_err(|e| {
            // A statement that failed may have gone stale (a table changed
            // under it): prepare it afresh next time.
            self.statements.remove(sql);
            self.failure(e)
        })
    }
}

impl Connection for PgConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Rows, EngineError> {
        let rows = self.run(sql, params, |client, statement, params| {
            client.query(statement, params)
        })?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<_, Cell>(i).map(|c| c.0).map_err(pg_error))
                    .collect()
            })
            .collect()
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<usize, EngineError> {
        let changed = self.run(sql, params, |client, statement, params| {
            client.execute(statement, params)
        })?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), EngineError> {
        self.arm_timeout()?;
        self.client.batch_execute(sql).map_err(|e| self.failure(e))
    }

    fn execute_arrays(&mut self, sql: &str, arrays: &[SqlArray]) -> Result<usize, EngineError> {
        let statement = self.statement(sql)?;
        self.arm_timeout()?;
        let refs: Vec<&(dyn ToSql + Sync)> = arrays
            .iter()
            .map(|a| match a {
                SqlArray::Int(v) => v as &(dyn ToSql + Sync),
                SqlArray::Real(v) => v as &(dyn ToSql + Sync),
                SqlArray::Text(v) => v as &(dyn ToSql + Sync),
            })
            .collect();
        match self.client.execute(&statement, &refs) {
            Ok(changed) => Ok(usize::try_from(changed).unwrap_or(usize::MAX)),
            Err(e) => {
                self.statements.remove(sql);
                Err(pg_error(e))
            }
        }
    }
}

impl PostgresStore {
    /// Begins a write transaction on the writer, holding the schema's writer
    /// lock; (re)connects first if the writer is missing or closed.
    fn begin(&self, writer: &mut Option<PgConnection>) -> Result<(), EngineError> {
        let begin = format!("BEGIN; SELECT pg_advisory_xact_lock({})", self.lock_key);
        for attempt in 1..=2 {
            if writer.as_ref().is_none_or(|c| c.client.is_closed()) {
                *writer = None;
                *writer = Some(self.open()?);
            }
            let Some(conn) = writer.as_mut() else {
                return Err(no_writer());
            };
            match conn.client.batch_execute(&begin) {
                Ok(()) => return Ok(()),
                // The connection was closed under it (the server restarted):
                // nothing has run yet, so begin again on a new one.
                Err(_) if conn.client.is_closed() && attempt == 1 => continue,
                Err(e) => {
                    // Leave no half-open transaction behind.
                    let _ = conn.client.batch_execute("ROLLBACK");
                    return Err(pg_error(e));
                }
            }
        }
        Err(EngineError::Store(
            "could not begin a transaction on PostgreSQL".to_string(),
        ))
    }
}

impl PostgresStore {
    /// Runs `f` on a pooled reader. A reader whose connection turns out to
    /// have been closed under it (the server restarted) is dropped and `f`
    /// runs once more on a new connection: reads change nothing, so running
    /// one again is safe.
    fn with_pooled_reader<T>(
        &self,
        f: &mut dyn FnMut(&mut PgConnection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut retried = false;
        loop {
            let pooled = loop {
                let next = self.readers().pop();
                match next {
                    Some(c) if c.client.is_closed() => continue,
                    other => break other,
                }
            };
            let was_pooled = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => self.open()?,
            };
            let result = f(&mut conn);
            if conn.client.is_closed() {
                if result.is_err() && was_pooled && !retried {
                    retried = true;
                    continue;
                }
                return result;
            }
            let mut readers = self.readers();
            if readers.len() < READER_POOL_SIZE {
                readers.push(conn);
            }
            return result;
        }
    }
}

impl Store for PostgresStore {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    /// Runs `f` on a pooled reader (see `with_pooled_reader`).
    fn with_reader<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.with_pooled_reader(&mut |conn| f(conn))
    }

    /// Runs `f` as [`Store::with_reader`] does, but each of its statements
    /// runs with the server's `statement_timeout` set to what is left of
    /// `budget`, and a statement stopped by it fails with
    /// [`EngineError::OverBudget`]. The timeout is reset before the
    /// connection's next statement outside a budgeted read, so it serves
    /// other reads as before.
    fn with_reader_budgeted<T>(
        &self,
        budget: Duration,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let Some(deadline) = Instant::now().checked_add(budget) else {
            return self.with_reader(f);
        };
        self.with_pooled_reader(&mut |conn| {
            conn.budget = Some((deadline, budget));
            let result = f(conn);
            conn.budget = None;
            result
        })
    }

    fn with_transaction<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut writer = match self.writer.lock() {
            Ok(writer) => writer,
            Err(poisoned) => {
                // A transaction panicked: its connection may still be inside
                // it, so close it (the server rolls back) and go on.
                let mut writer = poisoned.into_inner();
                *writer = None;
                self.writer.clear_poison();
                writer
            }
        };
        self.begin(&mut writer)?;
        let Some(conn) = writer.as_mut() else {
            return Err(no_writer());
        };
        match f(conn) {
            Ok(value) => match conn.client.batch_execute("COMMIT") {
                Ok(()) => Ok(value),
                Err(e) => {
                    let _ = conn.client.batch_execute("ROLLBACK");
                    Err(pg_error(e))
                }
            },
            Err(e) => {
                if conn.client.batch_execute("ROLLBACK").is_err() {
                    *writer = None;
                }
                Err(e)
            }
        }
    }

    fn hold_session_lock(&self, name: &str) -> Result<bool, EngineError> {
        let key = lock_key(name);
        let mut locks = self
            .session_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = locks.get_mut(name) {
            let checked = if lock.held {
                // Still connected means still holding it.
                lock.client
                    .simple_query("SELECT 1")
                    .map(|_| true)
                    .map_err(pg_error)
            } else {
                try_advisory_lock(&mut lock.client, key)
            };
            match checked {
                Ok(held) => {
                    lock.held = held;
                    return Ok(held);
                }
                // The connection is gone, and the lock with it if it was
                // held: on to a new connection.
                Err(_) => {
                    locks.remove(name);
                }
            }
        }
        let mut client = self.config.connect(NoTls).map_err(pg_error)?;
        let held = try_advisory_lock(&mut client, key)?;
        locks.insert(name.to_string(), SessionLock { client, held });
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &SqlValue, ty: &Type) -> Result<Option<Vec<u8>>, BoxError> {
        let mut out = BytesMut::new();
        match Param(value).to_sql(ty, &mut out)? {
            IsNull::Yes => Ok(None),
            IsNull::No => Ok(Some(out.to_vec())),
        }
    }

    fn decode(ty: &Type, raw: Option<&[u8]>) -> SqlValue {
        match raw {
            Some(raw) => Cell::from_sql(ty, raw).expect("decodes").0,
            None => Cell::from_sql_null(ty).expect("null decodes").0,
        }
    }

    /// The binary form of a NUMERIC: digits in base 10000.
    fn numeric(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for field in [digits.len() as u16, weight as u16, sign, scale]
            .into_iter()
            .chain(digits.iter().copied())
        {
            raw.extend_from_slice(&field.to_be_bytes());
        }
        raw
    }

    #[test]
    fn values_bind_as_the_placeholder_type() {
        assert_eq!(
            encode(&SqlValue::Int(-2), &Type::INT8).unwrap(),
            Some((-2i64).to_be_bytes().to_vec())
        );
        assert_eq!(
            encode(&SqlValue::Int(7), &Type::INT4).unwrap(),
            Some(7i32.to_be_bytes().to_vec())
        );
        assert!(encode(&SqlValue::Int(i64::MAX), &Type::INT4).is_err());
        assert_eq!(
            encode(&SqlValue::Int(3), &Type::FLOAT8).unwrap(),
            Some(3.0f64.to_be_bytes().to_vec())
        );
        assert_eq!(
            encode(&SqlValue::Int(1), &Type::BOOL).unwrap(),
            Some(vec![1])
        );
        assert_eq!(
            encode(&SqlValue::Real(1.5), &Type::FLOAT8).unwrap(),
            Some(1.5f64.to_be_bytes().to_vec())
        );
        assert_eq!(
            encode(&SqlValue::Real(4.0), &Type::INT8).unwrap(),
            Some(4i64.to_be_bytes().to_vec())
        );
        assert!(encode(&SqlValue::Real(1.5), &Type::INT8).is_err());
        assert_eq!(
            encode(&SqlValue::Text("héllo".into()), &Type::TEXT).unwrap(),
            Some("héllo".as_bytes().to_vec())
        );
        assert_eq!(
            encode(&SqlValue::Text("x".into()), &Type::VARCHAR).unwrap(),
            Some(b"x".to_vec())
        );
        assert!(encode(&SqlValue::Text("12".into()), &Type::INT8).is_err());
        for ty in [
            Type::INT8,
            Type::FLOAT8,
            Type::TEXT,
            Type::BOOL,
            Type::NUMERIC,
        ] {
            assert_eq!(encode(&SqlValue::Null, &ty).unwrap(), None, "{ty}");
        }
    }

    #[test]
    fn columns_read_back_as_sql_values() {
        let int8 = 5i64.to_be_bytes();
        assert_eq!(decode(&Type::INT8, Some(&int8)), SqlValue::Int(5));
        assert_eq!(
            decode(&Type::INT4, Some(&(-3i32).to_be_bytes())),
            SqlValue::Int(-3)
        );
        assert_eq!(
            decode(&Type::INT2, Some(&9i16.to_be_bytes())),
            SqlValue::Int(9)
        );
        assert_eq!(
            decode(&Type::FLOAT8, Some(&2.5f64.to_be_bytes())),
            SqlValue::Real(2.5)
        );
        assert_eq!(
            decode(&Type::FLOAT4, Some(&0.5f32.to_be_bytes())),
            SqlValue::Real(0.5)
        );
        assert_eq!(decode(&Type::BOOL, Some(&[1])), SqlValue::Int(1));
        assert_eq!(decode(&Type::BOOL, Some(&[0])), SqlValue::Int(0));
        assert_eq!(
            decode(&Type::TEXT, Some("ünï".as_bytes())),
            SqlValue::Text("ünï".into())
        );
        assert_eq!(
            decode(&Type::VARCHAR, Some(b"ip")),
            SqlValue::Text("ip".into())
        );
        for ty in [Type::INT8, Type::NUMERIC, Type::TEXT, Type::BOOL] {
            assert_eq!(decode(&ty, None), SqlValue::Null, "{ty}");
        }
        assert!(Cell::from_sql(&Type::BYTEA, b"x").is_err());
    }

    #[test]
    fn numerics_are_integers_when_whole() {
        let cases = [
            // 0
            (numeric(0, 0, 0, &[]), SqlValue::Int(0)),
            // 1234
            (numeric(0, 0, 0, &[1234]), SqlValue::Int(1234)),
            // 12345678 = 1234 * 10000 + 5678
            (numeric(1, 0, 0, &[1234, 5678]), SqlValue::Int(12_345_678)),
            // 20000: trailing zero digits are left out
            (numeric(1, 0, 0, &[2]), SqlValue::Int(20_000)),
            // -1015
            (numeric(0, 0x4000, 0, &[1015]), SqlValue::Int(-1015)),
            // 3.00 (scale 2, whole)
            (numeric(0, 0, 2, &[3]), SqlValue::Int(3)),
            // 1.5
            (numeric(0, 0, 1, &[1, 5000]), SqlValue::Real(1.5)),
            // -0.25
            (numeric(-1, 0x4000, 2, &[2500]), SqlValue::Real(-0.25)),
            // 0.000001 = 100 * 10000^-2
            (numeric(-2, 0, 8, &[100]), SqlValue::Real(0.000_001)),
            // 9223372036854775807 = i64::MAX
            (
                numeric(4, 0, 0, &[922, 3372, 368, 5477, 5807]),
                SqlValue::Int(i64::MAX),
            ),
            // -9223372036854775808 = i64::MIN
            (
                numeric(4, 0x4000, 0, &[922, 3372, 368, 5477, 5808]),
                SqlValue::Int(i64::MIN),
            ),
            // 9223372036854775808: too big for an integer
            (
                numeric(4, 0, 0, &[922, 3372, 368, 5477, 5808]),
                SqlValue::Real(9_223_372_036_854_775_808.0),
            ),
            // 10^40
            (numeric(10, 0, 0, &[1]), SqlValue::Real(1e40)),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode(&Type::NUMERIC, Some(&raw)), expected, "{raw:?}");
        }
        match decode(&Type::NUMERIC, Some(&numeric(0, 0xC000, 0, &[]))) {
            SqlValue::Real(f) => assert!(f.is_nan()),
            other => panic!("NaN read as {other:?}"),
        }
        assert!(Cell::from_sql(&Type::NUMERIC, &[0, 1]).is_err());
    }

    /// What earlier builds computed for these names (see [`lock_key`]).
    const LEADER_KEY_OF_EARLIER_BUILDS: i64 = -6713204180410446054;
    const WRITER_KEY_OF_EARLIER_BUILDS: i64 = -5629034641980586749;

    /// The backends holding the session-level advisory lock `key`.
    fn lock_holders(store: &PostgresStore, key: i64) -> Vec<i64> {
        let sql = "SELECT pid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted \
                   AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2";
        let (high, low) = ((key >> 32) & 0xffff_ffff, key & 0xffff_ffff);
        store
            .with_reader(&mut |c| c.query(sql, &[SqlValue::Int(high), SqlValue::Int(low)]))
            .expect("pg_locks reads")
            .iter()
            .filter_map(|r| r[0].as_i64())
            .collect()
    }

    /// A lock whose connection the server closed is lost, and taken again
    /// on a new connection the next time it is asked for.
    #[test]
    fn a_session_lock_lost_with_its_connection_is_taken_again() {
        let store = PostgresStore::open_temporary(DEFAULT_TEST_URL).expect("the test server");
        let name = format!(
            "sg-engine test lock {} {:?}",
            std::process::id(),
            Instant::now()
        );
        let key = lock_key(&name);
        assert!(store
            .hold_session_lock(&name)
            .expect("the lock is asked for"));
        assert!(store.hold_session_lock(&name).expect("the lock is checked"));
        let first = lock_holders(&store, key);
        assert_eq!(first.len(), 1, "one backend holds it");
        store
            .with_reader(&mut |c| {
                c.query(
                    "SELECT pg_terminate_backend($1::int)",
                    &[SqlValue::Int(first[0])],
                )
            })
            .expect("the holder's backend is ended");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lock_holders(&store, key).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            lock_holders(&store, key).is_empty(),
            "the server released it"
        );
        assert!(store
            .hold_session_lock(&name)
            .expect("the lock is asked for again"));
        let second = lock_holders(&store, key);
        assert_eq!(second.len(), 1);
        assert_ne!(second, first, "held on a new connection");
    }

    #[test]
    fn schema_names_must_be_plain() {
        let err = PostgresStore::connect(DEFAULT_TEST_URL, Some("x; DROP SCHEMA public"));
        assert!(matches!(err, Err(EngineError::BadIdentifier(_))));
        assert_ne!(lock_key("a"), lock_key("b"));
        // The keys of earlier builds, which processes sharing a database
        // with this one take: the sync's lock and a writer's of no schema.
        assert_eq!(
            lock_key("shotgun-cache sync public"),
            LEADER_KEY_OF_EARLIER_BUILDS
        );
        assert_eq!(lock_key("sg-engine writer:"), WRITER_KEY_OF_EARLIER_BUILDS);
    }
}
