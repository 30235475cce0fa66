//! The seam between the query logic and a database: a [`Store`] hands out
//! connections that run SQL text with bound [`SqlValue`]s. The SQLite backend
//! is [`crate::SqliteStore`], the PostgreSQL one [`crate::PostgresStore`].

use crate::error::EngineError;
use crate::sql::{Dialect, SqlArray, SqlValue};

/// Rows as read back: one `Vec` of column values per row.
pub type Rows = Vec<Vec<SqlValue>>;

/// One open connection (or transaction) of a store.
pub trait Connection {
    /// The SQL dialect this connection speaks.
    fn dialect(&self) -> Dialect;
    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Rows, EngineError>;
    /// Runs a statement and returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<usize, EngineError>;
    /// Runs several statements without parameters (DDL).
    fn execute_batch(&mut self, sql: &str) -> Result<(), EngineError>;
    /// Runs one statement once for each row of parameters; returns how many
    /// rows they changed in all.
    fn execute_each(
        &mut self,
        sql: &str,
        rows: &mut dyn Iterator<Item = &[SqlValue]>,
    ) -> Result<usize, EngineError> {
        let mut changed = 0;
        for params in rows {
            changed += self.execute(sql, params)?;
        }
        Ok(changed)
    }
    /// Runs a statement whose parameters are whole columns, each bound as
    /// one array (`unnest($1::bigint[], $2::text[], ...)`): PostgreSQL loads
    /// many rows this way with one short statement that is prepared once.
    /// Only PostgreSQL connections bind arrays, and only PostgreSQL's writes
    /// ask for it.
    fn execute_arrays(&mut self, sql: &str, arrays: &[SqlArray]) -> Result<usize, EngineError> {
        let _ = (sql, arrays);
        Err(EngineError::Store(format!(
            "{:?} connections do not bind array parameters",
            self.dialect()
        )))
    }
}

/// A database the engine keeps its tables in.
pub trait Store: Send + Sync + 'static {
    fn dialect(&self) -> Dialect;

    /// Runs `f` on a connection for reading. Many readers may run at once.
    fn with_reader<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError>;

    /// Runs `f` as [`Store::with_reader`] does, but stops its SQL once it
    /// has run for `budget` in all, and then fails with
    /// [`EngineError::OverBudget`]; the connection serves the next read as
    /// if nothing had happened.
    fn with_reader_budgeted<T>(
        &self,
        budget: std::time::Duration,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError>;

    /// Runs `f` inside one write transaction: committed if `f` succeeds,
    /// rolled back if it fails.
    fn with_transaction<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError>;

    /// Tells the store that a bulk load (an import) begins (`true`) or has
    /// ended. Stores that read differently while loading (SQLite's writer
    /// maps the file then) switch; the others ignore it.
    fn set_bulk_load(&self, loading: bool) -> Result<(), EngineError> {
        let _ = loading;
        Ok(())
    }

    /// Takes the session-level lock `name`, or checks that this store still
    /// holds it, for choosing one process among several that share the
    /// database: `Ok(true)` while this store holds it, `Ok(false)` while
    /// another holds it, an error when the database can't be reached. The
    /// lock is held on a connection kept for it alone, so it lasts until the
    /// store is dropped or that connection is lost (the process died, the
    /// server restarted): a lock found lost is taken again at once if it is
    /// free. A store no other process shares (SQLite's) always holds it.
    fn hold_session_lock(&self, name: &str) -> Result<bool, EngineError> {
        let _ = name;
        Ok(true)
    }
}

/// A store chosen at run time: SQLite or PostgreSQL behind one type, for
/// callers (and tests) that run one [`crate::Engine`] type on either.
pub enum AnyStore {
    Sqlite(crate::sqlite::SqliteStore),
    /// Boxed: a PostgreSQL store (its connection settings) is far larger.
    Postgres(Box<crate::postgres::PostgresStore>),
}

impl From<crate::sqlite::SqliteStore> for AnyStore {
    fn from(store: crate::sqlite::SqliteStore) -> Self {
        AnyStore::Sqlite(store)
    }
}

impl From<crate::postgres::PostgresStore> for AnyStore {
    fn from(store: crate::postgres::PostgresStore) -> Self {
        AnyStore::Postgres(Box::new(store))
    }
}

impl Store for AnyStore {
    fn dialect(&self) -> Dialect {
        match self {
            AnyStore::Sqlite(s) => s.dialect(),
            AnyStore::Postgres(s) => s.dialect(),
        }
    }

    fn with_reader<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match self {
            AnyStore::Sqlite(s) => s.with_reader(f),
            AnyStore::Postgres(s) => s.with_reader(f),
        }
    }

    fn with_reader_budgeted<T>(
        &self,
        budget: std::time::Duration,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match self {
            AnyStore::Sqlite(s) => s.with_reader_budgeted(budget, f),
            AnyStore::Postgres(s) => s.with_reader_budgeted(budget, f),
        }
    }

    fn with_transaction<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match self {
            AnyStore::Sqlite(s) => s.with_transaction(f),
            AnyStore::Postgres(s) => s.with_transaction(f),
        }
    }

    fn set_bulk_load(&self, loading: bool) -> Result<(), EngineError> {
        match self {
            AnyStore::Sqlite(s) => s.set_bulk_load(loading),
            AnyStore::Postgres(s) => s.set_bulk_load(loading),
        }
    }

    fn hold_session_lock(&self, name: &str) -> Result<bool, EngineError> {
        match self {
            AnyStore::Sqlite(s) => s.hold_session_lock(name),
            AnyStore::Postgres(s) => s.hold_session_lock(name),
        }
    }
}
