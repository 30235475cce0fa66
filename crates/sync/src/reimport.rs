//! Importing a type again (its fields changed, or `rebuild` asked for it)
//! without readers ever seeing it half-imported.
//!
//! The new layout is imported into shadow tables (`__reimport__<Type>` and
//! `__reimport__<Type>__<field>`) page by page, with its progress in
//! `__sync_reimports`, written in the same transaction as each page, so a
//! crash resumes it. Meanwhile the old tables go on being served and the
//! sync goes on following the event log: every write it makes to a type's
//! table (event rows, records read whole, scans) is made to the shadow tables
//! too, in the same transaction. When the last page is in, one transaction
//! drops the old tables, renames the shadow tables in their place, builds
//! their indexes and switches the catalog: readers see the old complete type
//! or the new complete one.
//!
//! Until that swap, the engine serves the fields the old tables hold (read
//! from their columns), not the configured ones; see [`served_selection`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sg_engine::layout::TableLayout;
use sg_engine::{ddl, Connection, EngineError, Layout, Store};

use crate::cache::{Cache, ImportTarget};
use crate::config::CacheConfig;
use crate::error::SyncError;
use crate::state::{self, TypeState};

/// What the shadow tables' names start with (no entity type starts so: the
/// layout leaves out names with `__`).
const SHADOW_PREFIX: &str = "__reimport__";

/// The name of a type's shadow table.
pub(crate) fn shadow_name(entity_type: &str) -> String {
    format!("{SHADOW_PREFIX}{entity_type}")
}

/// The shadow tables of the types being imported again, by type: their
/// layouts, named as the shadow tables.
#[derive(Clone, Default)]
pub(crate) struct Shadows(Arc<Mutex<BTreeMap<String, TableLayout>>>);

impl Shadows {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TableLayout>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The shadow table of a type, if it is being imported again.
    pub(crate) fn table(&self, entity_type: &str) -> Option<TableLayout> {
        self.lock().get(entity_type).cloned()
    }

    /// Every shadow table, keyed by its type's name (as [`Layout`] is), so
    /// that code written for the served layout writes to the shadows.
    pub(crate) fn layout(&self) -> Layout {
        Layout {
            tables: self.lock().clone(),
        }
    }

    fn insert(&self, entity_type: &str, table: TableLayout) {
        self.lock().insert(entity_type.to_string(), table);
    }

    fn remove(&self, entity_type: &str) -> Option<TableLayout> {
        self.lock().remove(entity_type)
    }
}

/// The types and fields the engine serves: the configured ones, except that
/// a type imported completely whose config has changed since keeps the
/// fields its tables hold until its reimport is swapped in.
pub(crate) fn served_selection(
    conn: &mut dyn Connection,
    config: &CacheConfig,
    dialect: sg_engine::sql::Dialect,
) -> Result<BTreeMap<String, BTreeSet<String>>, EngineError> {
    let known = state::types(conn)?;
    let mut selection = config.selection();
    for (t, fields) in selection.iter_mut() {
        let changed = known.get(t).is_some_and(|s| {
            s.status == "ready"
                && config
                    .entities
                    .get(t)
                    .is_some_and(|c| c.digest() != s.digest)
        });
        if !changed {
            continue;
        }
        if let Some(mut held) = ddl::stored_fields(conn, t, dialect)? {
            held.insert("id".into());
            *fields = held;
        }
    }
    Ok(selection)
}

impl<S: Store> Cache<S> {
    /// Drops types no longer configured: their tables, shadow tables and state.
    pub(crate) async fn drop_types(&self, types: Vec<String>) -> Result<(), SyncError> {
        if types.is_empty() {
            return Ok(());
        }
        for t in &types {
            self.stop_reimport(t);
            self.shadows.remove(t);
        }
        self.db(move |e| {
            let dialect = e.store().dialect();
            e.store().with_transaction(&mut |c| {
                for t in &types {
                    ddl::drop_tables_of(c, t, dialect)?;
                    ddl::drop_tables_of(c, &shadow_name(t), dialect)?;
                    state::remove_type(c, t)?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Makes the reimports under way those of `wanted` (type → config
    /// digest): starts or resumes each, and cancels any other (its type's
    /// config went back to what its tables hold, say). Returns once every
    /// wanted reimport's shadow tables receive the sync's writes; the
    /// imports themselves run on in the background.
    pub(crate) async fn schedule_reimports(
        self: &Arc<Self>,
        wanted: BTreeMap<String, String>,
    ) -> Result<(), SyncError> {
        let recorded = self
            .db(|e| e.store().with_reader(&mut |c| state::reimports(c)))
            .await?;
        // A type wanted with another digest starts over in `begin_reimport`.
        let cancelled: Vec<String> = recorded
            .values()
            .filter(|r| !wanted.contains_key(&r.entity_type))
            .map(|r| r.entity_type.clone())
            .collect();
        if !cancelled.is_empty() {
            for t in &cancelled {
                self.stop_reimport(t);
                self.shadows.remove(t);
                tracing::info!(entity_type = t.as_str(), "reimport no longer wanted");
            }
            self.db(move |e| {
                let dialect = e.store().dialect();
                e.store().with_transaction(&mut |c| {
                    for t in &cancelled {
                        ddl::drop_tables_of(c, &shadow_name(t), dialect)?;
                        state::remove_reimport(c, t)?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        for (t, digest) in wanted {
            let running = self
                .reimporting
                .lock()
                .ok()
                .and_then(|r| r.get(&t).map(|(d, _)| d.clone()));
            if running.as_ref() == Some(&digest) {
                continue;
            }
            self.stop_reimport(&t);
            self.begin_reimport(&t, &digest).await?;
            let cache = self.clone();
            let (task_type, task_digest) = (t.clone(), digest.clone());
            // The lock is held until the task is recorded, so that its own
            // removal at the end can't come first.
            let mut running = match self.reimporting.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let task = tokio::spawn(async move {
                cache.reimport(&task_type, &task_digest).await;
            });
            running.insert(t, (digest, task.abort_handle()));
        }
        Ok(())
    }

    /// Creates a type's shadow tables (or keeps those of the same reimport,
    /// interrupted) and records the reimport; from then on the sync's
    /// writes to the type reach the shadow tables too.
    async fn begin_reimport(&self, entity_type: &str, digest: &str) -> Result<(), SyncError> {
        let config = self.config();
        let Some(entity) = config.entities.get(entity_type) else {
            return Ok(());
        };
        let mut fields = entity.fields.clone();
        fields.insert("id".into());
        let selection = BTreeMap::from([(entity_type.to_string(), fields)]);
        let layout = Layout::from_schema(&self.engine.catalog().schema, Some(&selection));
        let Some(mut table) = layout.table(entity_type).cloned() else {
            return Ok(());
        };
        table.entity_type = shadow_name(entity_type);
        let (t, d) = (entity_type.to_string(), digest.to_string());
        let shadows = self.shadows.clone();
        let resumed = self
            .db(move |e| {
                let dialect = e.store().dialect();
                let result = e.store().with_transaction(&mut |c| {
                    let resumed = state::reimport(c, &t)?.is_some_and(|r| r.digest == d);
                    if !resumed {
                        ddl::drop_tables_of(c, &table.entity_type, dialect)?;
                        state::set_reimport(
                            c,
                            &TypeState {
                                entity_type: t.clone(),
                                digest: d.clone(),
                                status: "reimporting".into(),
                                phase: "active".into(),
                                last_id: 0,
                                imported: 0,
                                imported_at: None,
                            },
                        )?;
                    }
                    c.execute_batch(&ddl::create_unindexed_sql(&table, dialect))?;
                    // Inside the transaction: a write of the sync (which takes
                    // the same writer) either comes before the shadow exists
                    // or finds it here.
                    shadows.insert(&t, table.clone());
                    Ok(resumed)
                });
                if result.is_err() {
                    shadows.remove(&t);
                }
                result
            })
            .await?;
        tracing::info!(
            entity_type,
            resumed,
            "importing again into new tables; the old ones are served meanwhile"
        );
        Ok(())
    }

    /// Runs one reimport to its swap, logging how it ends.
    async fn reimport(self: &Arc<Self>, entity_type: &str, digest: &str) {
        let started = Instant::now();
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config().file.import.processes.max(1),
        ));
        let result = async {
            let Some(table) = self.shadows.table(entity_type) else {
                return Ok(None);
            };
            let Some(done) = self
                .import_type(
                    entity_type,
                    digest,
                    false,
                    limit,
                    ImportTarget::Shadow(table),
                )
                .await?
            else {
                return Ok(None);
            };
            self.swap_in(entity_type, digest, done).await
        }
        .await;
        match result {
            Ok(Some(records)) => self
                .progress
                .finished(entity_type, records, started.elapsed()),
            Ok(None) => tracing::info!(entity_type, "reimport superseded"),
            // The next step finds the reimport recorded and resumes it.
            Err(e) => tracing::error!(entity_type, "reimport failed: {e}"),
        }
        if let Ok(mut running) = self.reimporting.lock() {
            if running.get(entity_type).is_some_and(|(d, _)| d == digest) {
                running.remove(entity_type);
            }
        }
    }

    /// Puts a finished reimport in place of the type's tables, in one
    /// transaction, and serves its layout from then on. Returns the number of
    /// records, or `None` when the reimport is no longer the one wanted.
    async fn swap_in(
        &self,
        entity_type: &str,
        digest: &str,
        done: TypeState,
    ) -> Result<Option<u64>, SyncError> {
        let config = self.config();
        let Some(entity) = config.entities.get(entity_type) else {
            return Ok(None);
        };
        if entity.digest() != digest {
            return Ok(None);
        }
        let mut fields = entity.fields.clone();
        fields.insert("id".into());
        let (t, d) = (entity_type.to_string(), digest.to_string());
        let shadows = self.shadows.clone();
        let swapped = self
            .db(move |e| {
                let dialect = e.store().dialect();
                let before = e.catalog();
                let old_selection = e.selection();
                let mut selection = old_selection.clone().unwrap_or_default();
                selection.insert(t.clone(), fields.clone());
                let layout = Layout::from_schema(&before.schema, Some(&selection));
                let Some(table) = layout.table(&t) else {
                    return Ok(false);
                };
                // A link field the type gains may point at a type no table
                // names yet: its names-only table is made first, on its own
                // (empty until the next step imports it), so that the
                // catalog swapped in names no missing table.
                let missing: Vec<&TableLayout> = layout
                    .tables
                    .values()
                    .filter(|n| n.names_only && before.layout.table(&n.entity_type).is_none())
                    .collect();
                if !missing.is_empty() {
                    e.store().with_transaction(&mut |c| {
                        for names in &missing {
                            ddl::ensure_columns(c, names, dialect)?;
                        }
                        Ok(())
                    })?;
                }
                let result = e.store().with_transaction(&mut |c| {
                    if state::reimport(c, &t)?.is_none_or(|r| r.digest != d) {
                        return Ok(false);
                    }
                    ddl::drop_tables_of(c, &t, dialect)?;
                    ddl::rename_tables_of(c, &shadow_name(&t), &t, dialect)?;
                    // Adds what the schema gained meanwhile, and the indexes.
                    ddl::ensure_columns(c, table, dialect)?;
                    state::remove_reimport(c, &t)?;
                    state::set_type(
                        c,
                        &TypeState {
                            entity_type: t.clone(),
                            digest: d.clone(),
                            status: "ready".into(),
                            phase: "done".into(),
                            last_id: 0,
                            imported: done.imported,
                            imported_at: Some(chrono::Utc::now().to_rfc3339()),
                        },
                    )?;
                    // Inside the transaction, so that no write of the sync
                    // sees the new tables with the old catalog or the shadow.
                    shadows.remove(&t);
                    e.set_catalog(before.schema.clone(), Some(selection.clone()));
                    Ok(true)
                });
                if result.is_err() {
                    if let Some(old) = before.layout.table(&t) {
                        let mut shadow = layout.table(&t).cloned().unwrap_or_else(|| old.clone());
                        shadow.entity_type = shadow_name(&t);
                        shadows.insert(&t, shadow);
                    }
                    e.set_catalog(before.schema.clone(), old_selection.clone());
                }
                result
            })
            .await?;
        if swapped {
            self.analyze(entity_type).await?;
        }
        Ok(swapped.then_some(done.imported.max(0) as u64))
    }

    /// Stops this process's reimport of a type, if one runs (its progress
    /// stays recorded).
    fn stop_reimport(&self, entity_type: &str) {
        if let Ok(mut running) = self.reimporting.lock() {
            if let Some((_, task)) = running.remove(entity_type) {
                task.abort();
            }
        }
    }

    /// Stops every reimport this process runs (when it stops syncing); each
    /// resumes from its recorded progress at the next start, or in the
    /// process that syncs now. The sync's writes stop going to their shadow
    /// tables, which that process may swap in.
    pub(crate) fn stop_reimports(&self) {
        if let Ok(mut running) = self.reimporting.lock() {
            for (t, (_, task)) in std::mem::take(&mut *running) {
                task.abort();
                self.shadows.remove(&t);
            }
        }
    }
}
