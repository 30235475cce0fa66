//! The query engine: answers Shotgun `read` and `summarize` requests from
//! typed SQL tables built from a site schema.
//!
//! Both the cache's proxy and the simulated site answer queries through this
//! crate, so both give the same answers. It is not a server and makes no
//! network calls.
//!
//! Layout of the crate:
//! - [`layout`] maps a schema to tables and columns, [`ddl`] creates them;
//! - [`store`] is the seam to a database, with SQLite ([`SqliteStore`]) and
//!   [`postgres`] behind it ([`AnyStore`] picks one at run time);
//!   [`sql::Dialect`] holds what differs between their SQL;
//! - [`path`] resolves (deep) field paths, `filter` compiles filter trees,
//!   [`read`] and [`summarize`] plan, run and render the two query methods
//!   (`render` takes a read's result to a `Value` or straight to JSON text);
//! - [`codec`] converts wire values to stored values and back,
//!   [`write`](mod@write) is the one place records are written, and
//!   [`lookup`] the one place stored records are looked up by id or by link;
//! - [`QueryLimits`] bound what one query may ask for: the budgeted calls
//!   ([`Engine::read_json_budgeted`], [`Engine::summarize_budgeted`]) run
//!   within those limits and a time budget, for a caller (the proxy) that
//!   sends what is over them to the site rather than be held up.
//!
//! Queries are staged as a checked plan before any SQL exists: names are
//! resolved against the layout (unknown names become the site's fault 103),
//! values are converted to their stored form and bound as parameters, and
//! identifiers in SQL text only ever come from the schema.

pub mod codec;
pub mod ddl;
pub mod decode;
mod error;
mod filter;
pub mod frag;
mod joins;
pub mod layout;
mod limits;
pub mod lookup;
pub mod path;
pub mod postgres;
pub mod read;
mod render;
pub mod sql;
mod sqlite;
pub mod store;
pub mod summarize;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};

use sg_protocol::{ReadParams, Schema, SummarizeParams};

pub use crate::postgres::PostgresStore;
pub use error::EngineError;
pub use layout::Layout;
pub use limits::QueryLimits;
pub use sqlite::SqliteStore;
pub use store::{AnyStore, Connection, Store};

/// The types and fields kept, each type with its chosen fields.
pub type Selection = BTreeMap<String, BTreeSet<String>>;

/// A schema and the tables laid out for it: what the engine answers from.
/// Replaced whole when the schema changes, so a query sees one consistent catalog.
#[derive(Debug)]
pub struct Catalog {
    pub schema: Schema,
    pub layout: Layout,
}

/// A catalog and the store that holds its tables.
pub struct Engine<S: Store> {
    store: S,
    catalog: RwLock<Arc<Catalog>>,
    /// The types and fields kept (all when `None`).
    selection: RwLock<Option<BTreeMap<String, BTreeSet<String>>>>,
    /// What one budgeted query may ask for.
    limits: RwLock<QueryLimits>,
}

impl<S: Store> Engine<S> {
    /// An engine over every type and field of `schema`; creates missing tables.
    pub fn new(store: S, schema: Schema) -> Result<Engine<S>, EngineError> {
        Engine::with_selection(store, schema, None)
    }

    /// An engine over the chosen types and fields only.
    pub fn with_selection(
        store: S,
        schema: Schema,
        selection: Option<BTreeMap<String, BTreeSet<String>>>,
    ) -> Result<Engine<S>, EngineError> {
        Engine::with_selection_from(store, schema, |_| Ok(selection.clone()))
    }

    /// An engine over the types and fields `choose` picks, inside the same
    /// write transaction that brings the tables to them: the choice may
    /// depend on what the tables hold, which another process may be changing.
    pub fn with_selection_from<F>(
        store: S,
        schema: Schema,
        mut choose: F,
    ) -> Result<Engine<S>, EngineError>
    where
        F: FnMut(&mut dyn Connection) -> Result<Option<Selection>, EngineError>,
    {
        let dialect = store.dialect();
        let (selection, layout) = store.with_transaction(&mut |conn| {
            let selection = choose(conn)?;
            let layout = Layout::from_schema(&schema, selection.as_ref());
            for table in layout.tables.values() {
                // An existing table may lack fields chosen since it was made.
                ddl::ensure_columns(conn, table, dialect)?;
            }
            Ok((selection, layout))
        })?;
        Ok(Engine {
            store,
            catalog: RwLock::new(Arc::new(Catalog { schema, layout })),
            selection: RwLock::new(selection),
            limits: RwLock::new(QueryLimits::default()),
        })
    }

    /// The types and fields kept (all when `None`).
    pub fn selection(&self) -> Option<BTreeMap<String, BTreeSet<String>>> {
        match self.selection.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches to a new schema and choice of types and fields whose tables
    /// the caller has already brought to their layout (inside the transaction
    /// that did it, say, so that no write of this process sees the tables
    /// and the catalog disagree). Runs no SQL.
    pub fn set_catalog(
        &self,
        schema: Schema,
        selection: Option<BTreeMap<String, BTreeSet<String>>>,
    ) {
        let layout = Layout::from_schema(&schema, selection.as_ref());
        match self.catalog.write() {
            Ok(mut c) => *c = Arc::new(Catalog { schema, layout }),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(Catalog { schema, layout }),
        }
        match self.selection.write() {
            Ok(mut s) => *s = selection,
            Err(poisoned) => *poisoned.into_inner() = selection,
        }
    }

    /// The current schema and layout.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches to a new schema: creates the tables, columns and link tables
    /// it adds (existing data stays; columns of removed fields are left in place).
    pub fn set_schema(&self, schema: Schema) -> Result<(), EngineError> {
        let selection = match self.selection.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        self.set_schema_and_selection(schema, selection)
    }

    /// Switches to a new schema and a new choice of types and fields, creating
    /// what they add. Tables of types left out stay in the store until dropped.
    pub fn set_schema_and_selection(
        &self,
        schema: Schema,
        selection: Option<BTreeMap<String, BTreeSet<String>>>,
    ) -> Result<(), EngineError> {
        let layout = Layout::from_schema(&schema, selection.as_ref());
        let dialect = self.store.dialect();
        self.store.with_transaction(&mut |conn| {
            // The tables are brought to the new layout from what they hold, not
            // from the old layout: another process may have changed them already.
            for table in layout.tables.values() {
                ddl::ensure_columns(conn, table, dialect)?;
            }
            Ok(())
        })?;
        let mut guard = match self.catalog.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(Catalog { schema, layout });
        drop(guard);
        match self.selection.write() {
            Ok(mut s) => *s = selection,
            Err(poisoned) => *poisoned.into_inner() = selection,
        }
        Ok(())
    }

    /// Refreshes the planner's statistics; call it after a bulk load.
    pub fn analyze(&self) -> Result<(), EngineError> {
        self.store
            .with_transaction(&mut |conn| conn.execute_batch("ANALYZE"))
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The rows of a `read`, to be rendered.
    fn read_rows(&self, params: &ReadParams) -> Result<read::ReadRows, EngineError> {
        let catalog = self.catalog();
        self.store
            .with_reader(&mut |conn| read::query(conn, &catalog.layout, params))
    }

    /// The rows of a `read`, bounded as [`Engine::read_budgeted`] says.
    fn read_rows_budgeted(
        &self,
        params: &ReadParams,
        budget: Duration,
    ) -> Result<read::ReadRows, EngineError> {
        let catalog = self.catalog();
        let limits = self.limits();
        self.store.with_reader_budgeted(budget, &mut |conn| {
            read::query_within(conn, &catalog.layout, params, &limits)
        })
    }

    /// Answers a `read`: the `results` value, `{entities, paging_info}`.
    pub fn read(&self, params: &ReadParams) -> Result<Value, EngineError> {
        Ok(self.read_rows(params)?.to_value())
    }

    /// Answers a `read` as JSON text: `out` with the `results` value,
    /// `{"entities": [...], "paging_info": {...}}`, appended (the same JSON
    /// [`Engine::read`] gives, without building it as a `Value`).
    pub fn read_json(&self, params: &ReadParams, out: Vec<u8>) -> Result<Vec<u8>, EngineError> {
        // Rendered after the connection has gone back to the pool.
        Ok(self.read_rows(params)?.write_json(out))
    }

    /// Answers a `summarize`: the `results` value, `{summaries, groups}`.
    pub fn summarize(&self, params: &SummarizeParams) -> Result<Value, EngineError> {
        let catalog = self.catalog();
        self.store
            .with_reader(&mut |conn| summarize::summarize(conn, &catalog.layout, params))
    }

    /// Answers a `read` as [`Engine::read`] does, but bounded: a filter over
    /// [`Engine::limits`] fails with [`EngineError::OverLimit`], and SQL
    /// running longer than `budget` in all is stopped and fails with
    /// [`EngineError::OverBudget`] (soon after the budget: SQLite looks at
    /// the clock every few thousand steps of a statement, PostgreSQL's
    /// `statement_timeout` fires on its own timer). For a caller that must
    /// not be held up, which sends such a request elsewhere.
    pub fn read_budgeted(
        &self,
        params: &ReadParams,
        budget: Duration,
    ) -> Result<Value, EngineError> {
        Ok(self.read_rows_budgeted(params, budget)?.to_value())
    }

    /// Answers a `read` as JSON text as [`Engine::read_json`] does, bounded
    /// as [`Engine::read_budgeted`] is.
    pub fn read_json_budgeted(
        &self,
        params: &ReadParams,
        out: Vec<u8>,
        budget: Duration,
    ) -> Result<Vec<u8>, EngineError> {
        Ok(self.read_rows_budgeted(params, budget)?.write_json(out))
    }

    /// Answers a `summarize` as [`Engine::summarize`] does, but bounded: a
    /// request over [`Engine::limits`] (its filter, grouping levels or
    /// groups) fails with [`EngineError::OverLimit`] before it builds what
    /// is over, and SQL running longer than `budget` fails with
    /// [`EngineError::OverBudget`].
    pub fn summarize_budgeted(
        &self,
        params: &SummarizeParams,
        budget: Duration,
    ) -> Result<Value, EngineError> {
        let catalog = self.catalog();
        let limits = self.limits();
        self.store.with_reader_budgeted(budget, &mut |conn| {
            summarize::summarize_within(conn, &catalog.layout, params, &limits)
        })
    }

    /// The limits the budgeted calls run within ([`QueryLimits::default`]
    /// unless set).
    pub fn limits(&self) -> QueryLimits {
        match self.limits.read() {
            Ok(l) => *l,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Changes the limits later budgeted calls run within.
    pub fn set_limits(&self, limits: QueryLimits) {
        match self.limits.write() {
            Ok(mut l) => *l = limits,
            Err(poisoned) => *poisoned.into_inner() = limits,
        }
    }

    /// Inserts or updates records of one type in one transaction.
    pub fn upsert_records(
        &self,
        entity_type: &str,
        records: &[Map<String, Value>],
    ) -> Result<(), EngineError> {
        let catalog = self.catalog();
        let table = catalog.layout.table(entity_type).ok_or_else(|| {
            error::bad_request(format!("entity type {entity_type} is not cached"))
        })?;
        self.store
            .with_transaction(&mut |conn| write::upsert_records(conn, table, records))
    }

    /// Loads a dataset `{Type: [record, ...]}` (records in wire form, with
    /// `id` and optionally `__retired`), all in one transaction.
    pub fn load_dataset(&self, dataset: &Value) -> Result<usize, EngineError> {
        let types = dataset
            .as_object()
            .ok_or_else(|| error::bad_request("a dataset must be a dictionary of entity types"))?;
        let catalog = self.catalog();
        let loaded = self.store.with_transaction(&mut |conn| {
            let mut count = 0;
            for (entity_type, records) in types {
                let table = catalog.layout.table(entity_type).ok_or_else(|| {
                    error::bad_request(format!("entity type {entity_type} is not in the schema"))
                })?;
                let records = records.as_array().ok_or_else(|| {
                    error::bad_request(format!("records of {entity_type} must be a list"))
                })?;
                for record in records {
                    let record = record.as_object().ok_or_else(|| {
                        error::bad_request(format!("a {entity_type} record must be a dictionary"))
                    })?;
                    write::upsert_record(conn, table, record)?;
                    count += 1;
                }
            }
            Ok(count)
        })?;
        // Fresh statistics keep the planner on the right index (a link and a
        // status together, say) instead of walking a big index in id order.
        self.analyze()?;
        Ok(loaded)
    }
}

impl Engine<AnyStore> {
    /// Answers a `read` as [`Engine::read_json`] does, on the calling thread,
    /// unless its SQL runs longer than `budget`: then it is stopped and the
    /// answer is `None` (always `None` on PostgreSQL, whose synchronous client
    /// can't run on an async thread). For answering short reads where the
    /// request arrived, without handing them to another thread and back.
    /// A filter over [`Engine::limits`] is `None` too: SQLite's clock can't
    /// stop a statement while it is prepared, which for thousands of
    /// conditions takes long enough to hold up the thread.
    pub fn read_json_within(
        &self,
        params: &ReadParams,
        out: Vec<u8>,
        budget: std::time::Duration,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let AnyStore::Sqlite(store) = &self.store else {
            return Ok(None);
        };
        let catalog = self.catalog();
        let limits = self.limits();
        let found = match store.with_reader_within(budget, &mut |conn| {
            read::query_within(conn, &catalog.layout, params, &limits)
        }) {
            Ok(Some(found)) => found,
            Ok(None) | Err(EngineError::OverLimit(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(found.write_json(out)))
    }
}
