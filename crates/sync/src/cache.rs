//! The cache: a site's chosen types and fields, imported once and then kept in
//! step with the site's event log, with periodic reconcile scans.
//!
//! One [`Cache`] owns the engine (the cached tables) and a client of the site.
//! Its loop ([`Cache::run`]) imports what is not yet imported, polls the event
//! log every `fetch_interval` (at once again while polls come back full),
//! applies each row, reloads entity configs that changed, and scans
//! `updated_at` every `scan_interval`. Every database write of the sync goes
//! through one transaction together with the progress it records.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use sg_client::Client;
use sg_engine::layout::{Storage, TableLayout};
use sg_engine::{Engine, Store};
use sg_protocol::value::EntityLink;
use sg_protocol::{DataType, Schema};

use crate::apply::RowApplier;
use crate::careful;
use crate::config::CacheConfig;
use crate::error::SyncError;
use crate::event::{classify, EventAction, EventRow, EVENT_FIELDS};
use crate::marks::{self, MarkedRecord, Marks, RecordKey};
use crate::reimport::{served_selection, Shadows};
use crate::stamps::Stamps;
use crate::state::{self, EventPosition};

/// Rows per event-log poll and records per import page.
pub(crate) const PAGE: u64 = 500;
/// Reconcile scans look this far behind the last scan, by the site's clock.
const SCAN_MARGIN_SECS: i64 = 60;
/// Revived records asked about in one `read` (an `or` of `is` conditions).
const LINK_QUERY_CHUNK: usize = 50;
/// How long one step may go on reading full pages of events.
const POLL_BUDGET: Duration = Duration::from_secs(5);

/// What [`Cache::retired_targets`] found of the links held but not shown.
struct UnseenLinks {
    /// Targets retired on the site (of cached types): their links are kept.
    retired: BTreeSet<(String, i64)>,
    /// Per record, the targets of cached types that are active on the site.
    unseen_active: LinksByRecord,
}

/// Link targets (type, id) by the record (type, id) holding them.
type LinksByRecord = BTreeMap<(String, i64), BTreeSet<(String, i64)>>;

/// Reports import progress (the CLI draws progress bars from it).
pub trait Progress: Send + Sync {
    /// `done` of about `total` records of a type are imported.
    fn imported(&self, entity_type: &str, done: u64, total: Option<u64>);
    /// A type's import has finished.
    fn finished(&self, entity_type: &str, records: u64, elapsed: Duration);
}

/// Progress that goes to the log.
pub struct LogProgress;

impl Progress for LogProgress {
    fn imported(&self, entity_type: &str, done: u64, total: Option<u64>) {
        tracing::debug!(entity_type, done, total, "importing");
    }
    fn finished(&self, entity_type: &str, records: u64, elapsed: Duration) {
        tracing::info!(
            entity_type,
            records,
            seconds = elapsed.as_secs_f64(),
            "imported"
        );
    }
}

/// Where an import writes.
#[derive(Clone)]
pub(crate) enum ImportTarget {
    /// The served table: a type's first import.
    Live,
    /// A reimport's shadow tables (this is their layout).
    Shadow(TableLayout),
}

/// What one poll writes, kept whole so that it can be written again record
/// by record when the store refuses it whole.
struct PollWrites {
    fetched: Vec<(String, Map<String, Value>)>,
    hidden: BTreeSet<(String, i64)>,
    rows: Vec<EventRow>,
    /// The records read whole in this poll.
    refetched: BTreeMap<String, BTreeSet<i64>>,
    guards: crate::apply::Guards,
    /// The site's stamps of the records changed row by row.
    stamps: Stamps,
    position: EventPosition,
}

impl PollWrites {
    /// The row as it is applied, if at all. A record read whole in this
    /// poll was read after every row of the poll was visible: it already
    /// shows them all, so none is applied to it (an older value or stamp
    /// must not overwrite the copy), but for the changes its links to
    /// records retired on the site (`hidden`) went through: a read can't
    /// show those links, so a link to such a record held before and
    /// removed by a row would otherwise pass for a hidden one and stay.
    fn to_apply<'a>(&self, row: &'a EventRow) -> Option<Cow<'a, EventRow>> {
        let whole = careful::row_record(row)
            .is_some_and(|(t, id)| self.refetched.get(&t).is_some_and(|ids| ids.contains(&id)));
        if !whole {
            return Some(Cow::Borrowed(row));
        }
        let EventAction::Links {
            entity_type,
            id,
            field,
            added,
            removed,
        } = &row.action
        else {
            return None;
        };
        let hidden = |links: &[EntityLink]| -> Vec<EntityLink> {
            links
                .iter()
                .filter(|l| self.hidden.contains(&(l.entity_type.clone(), l.id)))
                .cloned()
                .collect()
        };
        let (added, removed) = (hidden(added), hidden(removed));
        if added.is_empty() && removed.is_empty() {
            return None;
        }
        Some(Cow::Owned(EventRow {
            action: EventAction::Links {
                entity_type: entity_type.clone(),
                id: *id,
                field: field.clone(),
                added,
                removed,
            },
            ..row.clone()
        }))
    }

    /// The guards of the records stored whole: the copy shows every row up
    /// to the poll's watermark (all those rows were there before the read).
    fn whole_guards<'a>(
        &self,
        stored: impl Iterator<Item = &'a RecordKey>,
    ) -> BTreeMap<RecordKey, i64> {
        stored
            .map(|key| (key.clone(), self.position.watermark))
            .collect()
    }
}

/// A cache of one site.
pub struct Cache<S: Store> {
    pub engine: Arc<Engine<S>>,
    pub(crate) client: Client,
    config: Mutex<CacheConfig>,
    pub(crate) progress: Arc<dyn Progress>,
    /// The shadow tables of the types being imported again, which every
    /// write of the sync updates too (see [`crate::reimport`]).
    pub(crate) shadows: Shadows,
    /// The reimports running in this process: per type, the config digest
    /// it imports and its task.
    pub(crate) reimporting: Mutex<BTreeMap<String, (String, tokio::task::AbortHandle)>>,
    /// Set while the site can't be reached, so the outage is logged once.
    outage: AtomicBool,
    /// The newest `created_at` seen in the event log: the site's clock.
    site_now: AtomicI64,
    /// The digest of the site schema this process uses (see
    /// [`state::schema_digest`]).
    schema_digest: Mutex<String>,
    /// Records the store could not hold (see [`crate::marks`]).
    pub(crate) marks: Marks,
    /// How the sync's steps have gone (see [`crate::health`]).
    pub(crate) health: crate::health::Health,
}

fn read_params(entity_type: &str, fields: &[String], conditions: Value, retired: bool) -> Value {
    read_page_params(entity_type, fields, conditions, retired, PAGE)
}

/// [`read_params`] with pages of `per_page` records.
pub(crate) fn read_page_params(
    entity_type: &str,
    fields: &[String],
    conditions: Value,
    retired: bool,
    per_page: u64,
) -> Value {
    json!({
        "type": entity_type,
        "return_fields": fields,
        "filters": {"logical_operator": "and", "conditions": conditions},
        "sorts": [{"field_name": "id", "direction": "asc"}],
        "paging": {"entities_per_page": per_page, "current_page": 1},
        "return_only": if retired { "retired" } else { "active" },
        "return_paging_info_without_counts": true,
        "api_return_image_urls": true,
    })
}

/// The records of a `read` reply (taken out of it, not copied).
pub(crate) fn entities(result: Value) -> Result<Vec<Map<String, Value>>, SyncError> {
    match result {
        Value::Object(mut reply) => match reply.remove("entities") {
            Some(Value::Array(items)) => Ok(items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(record) => Some(record),
                    _ => None,
                })
                .collect()),
            _ => Err(SyncError::Other(
                "the site's read reply has no entities list".into(),
            )),
        },
        _ => Err(SyncError::Other(
            "the site's read reply has no entities list".into(),
        )),
    }
}

/// A record from the site in the form the store takes: its fields, the
/// retired flag, and nothing the layout does not hold.
pub(crate) fn storable(
    mut record: Map<String, Value>,
    retired: bool,
    keep: &BTreeSet<String>,
) -> Map<String, Value> {
    record.retain(|k, _| k == "id" || keep.contains(k));
    record.insert("__retired".into(), json!(retired));
    record
}

impl<S: Store> Cache<S> {
    /// Opens a cache: reads the site's schema (or, when the site is down, the
    /// copy kept from last time), checks the config against it and creates the tables.
    pub async fn open(
        config: CacheConfig,
        store: S,
        progress: Arc<dyn Progress>,
    ) -> Result<Arc<Self>, SyncError> {
        let client = Client::new(
            &config.file.shotgun.base_url,
            sg_protocol::Auth::script(
                &config.file.shotgun.script_name,
                config.file.shotgun.api_key.expose(),
            ),
        )?;
        // Database work runs off the async threads (the PostgreSQL client blocks).
        let (store, (kept, marked)) = blocking(move || {
            store.with_transaction(&mut |conn| {
                state::create_tables(conn)?;
                marks::create_table(conn)
            })?;
            let kept = store.with_reader(&mut |conn| state::site_schema(conn))?;
            let marked = store.with_reader(&mut |conn| marks::kept(conn))?;
            Ok((store, (kept, marked)))
        })
        .await?;
        let (schema_json, fresh) = match Self::fetch_schema(&client).await {
            Ok(s) => (s, true),
            Err(e) => {
                match kept {
                    Some(kept) => {
                        tracing::warn!("the site can't be reached ({e}); starting from the schema kept last time");
                        (kept, false)
                    }
                    None => return Err(e),
                }
            }
        };
        let schema = site_schema(&schema_json)?;
        let mut config = config;
        // A type whose config is broken stops alone; with none usable nor
        // broken, nothing starts.
        config.hold_unusable(&schema, &BTreeMap::new());
        if config.entities.is_empty() && config.broken.is_empty() {
            config.check_against(&schema)?;
        }
        for (t, why) in &config.broken {
            tracing::error!(
                entity_type = t.as_str(),
                "its entity config can't be used ({why}); the other types go on"
            );
        }
        let mut chosen = config.clone();
        let text = schema_json.to_string();
        let schema_digest = state::schema_digest(&text);
        let (engine, held) = blocking(move || {
            if fresh {
                store.with_transaction(&mut |conn| {
                    state::set_site_schema(conn, &text).map(|_| ())
                })?;
            }
            let dialect = store.dialect();
            let held = store.with_reader(&mut |conn| held_configs(conn, &chosen, dialect))?;
            chosen.entities.extend(held.clone());
            let tag_lists = crate::upgrade::tag_list_fields(&schema);
            // Types whose config changed keep serving what their tables hold
            // until their reimport is swapped in.
            let engine = Engine::with_selection_from(store, schema, |conn| {
                let mut selection = served_selection(conn, &chosen, dialect)?;
                crate::upgrade::retire_tag_link_tables(conn, &tag_lists, &mut selection, dialect)?;
                Ok(Some(selection))
            })?;
            Ok((engine, held))
        })
        .await?;
        config.entities.extend(held);
        let marks = Marks::default();
        marks.add(marked);
        Ok(Arc::new(Cache {
            engine: Arc::new(engine),
            client,
            config: Mutex::new(config),
            progress,
            shadows: Shadows::default(),
            reimporting: Mutex::new(BTreeMap::new()),
            outage: AtomicBool::new(false),
            site_now: AtomicI64::new(0),
            schema_digest: Mutex::new(schema_digest),
            marks,
            health: crate::health::Health::default(),
        }))
    }

    async fn fetch_schema(client: &Client) -> Result<Value, SyncError> {
        let fields = client.call("schema_read", None).await?;
        let entities = client.call("schema_entity_read", None).await?;
        Ok(json!({"fields": fields, "entities": entities}))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn config(&self) -> CacheConfig {
        match self.config.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs blocking database work off the async threads.
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Engine<S>) -> Result<T, sg_engine::EngineError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || work(&engine))
            .await
            .map_err(|e| SyncError::Other(format!("database task failed: {e}")))?
            .map_err(SyncError::from)
    }

    /// The id and time of the newest row in the site's event log.
    pub async fn newest_event_public(&self) -> Result<(i64, Option<i64>), SyncError> {
        self.newest_event().await
    }

    /// The id of the newest row in the site's event log.
    async fn newest_event(&self) -> Result<(i64, Option<i64>), SyncError> {
        let params = json!({"type": "EventLogEntry", "return_fields": ["id", "created_at"],
            "sorts": [{"field_name": "id", "direction": "desc"}],
            "paging": {"entities_per_page": 1, "current_page": 1}, "return_paging_info_without_counts": true});
        let result = self.client.call("read", Some(params)).await?;
        let row = &result["entities"][0];
        let created = row["created_at"]
            .as_str()
            .and_then(sg_protocol::value::parse_date_time);
        Ok((row["id"].as_i64().unwrap_or(0), created))
    }

    /// The fields of a type that the cache stores: those of its served
    /// table and, while it is imported again, those of its shadow table.
    fn stored_fields(&self, entity_type: &str) -> Vec<String> {
        let catalog = self.engine.catalog();
        let shadow = self.shadows.table(entity_type);
        let fields: BTreeSet<String> = catalog
            .layout
            .table(entity_type)
            .into_iter()
            .chain(shadow.as_ref())
            .flat_map(|t| t.fields.keys().filter(|f| *f != "id").cloned())
            .collect();
        fields.into_iter().collect()
    }

    /// Imports every configured type that is not imported yet (or whose
    /// config changed), several at once. The event position is taken before
    /// the first import starts, so that what changes during it is replayed.
    pub async fn import_pending(self: &Arc<Self>) -> Result<(), SyncError> {
        let config = self.config();
        let mut known = self
            .db(|e| e.store().with_reader(&mut |c| state::types(c)))
            .await?;
        // Types cached before but no longer configured (removed while
        // nothing ran) are dropped, so adding one back imports it afresh.
        // The names-only tables the engine lays out for link targets the
        // config leaves out (see `sg_engine::layout`): imported like the
        // configured types, with their one display field.
        // A type configured before and now held names-only is dropped too,
        // and imported afresh with its name alone: its old columns would
        // linger unmaintained for anyone reading the tables with SQL.
        let names_only = self.names_only_configs();
        let stale: Vec<String> = known
            .iter()
            .filter(|(t, s)| {
                !config.entities.contains_key(*t)
                    && !config.broken.contains_key(*t)
                    && names_only.get(*t).is_none_or(|c| c.digest() != s.digest)
            })
            .map(|(t, _)| t.clone())
            .collect();
        if !stale.is_empty() {
            self.drop_types(stale.clone()).await?;
            for t in &stale {
                tracing::info!(entity_type = t.as_str(), "no longer configured: dropped");
                known.remove(t);
            }
        }
        let position = self
            .db(|e| e.store().with_reader(&mut |c| state::position(c)))
            .await?;
        // Types never imported completely are imported in place; a ready type
        // whose config changed (or that `rebuild` marked) is imported again
        // into shadow tables while it goes on being served.
        let pending: Vec<String> = config
            .entities
            .values()
            .chain(names_only.values())
            .filter(|c| {
                known
                    .get(&c.entity_type)
                    .is_none_or(|s| s.status != "ready")
            })
            .map(|c| c.entity_type.clone())
            .collect();
        let reimports: BTreeMap<String, String> = config
            .entities
            .values()
            .filter(|c| {
                // A broken type's held config is not a change to import.
                !config.broken.contains_key(&c.entity_type)
                    && known
                        .get(&c.entity_type)
                        .is_some_and(|s| s.status == "ready" && s.digest != c.digest())
            })
            .map(|c| (c.entity_type.clone(), c.digest()))
            .collect();
        if position.is_none() {
            let (newest, created) = self.newest_event().await?;
            if let Some(t) = created {
                self.site_now.fetch_max(t, Ordering::Relaxed);
            }
            // With an empty event log, the `Date` of the reply that told so
            // is the site's clock before the import instead: without a time,
            // the first scan would read every cached record again.
            let created = created.or_else(|| self.client.site_clock());
            let start = EventPosition {
                watermark: newest,
                missing: BTreeMap::new(),
            };
            self.db(move |e| {
                e.store().with_transaction(&mut |c| {
                    state::set_position(c, &start)?;
                    // The import reads everything changed before it starts;
                    // the first scan need only look at what changed after.
                    if let (Some(t), None) = (created, state::get(c, "last_scan")?) {
                        state::set(c, "last_scan", &t.to_string())?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        // Before any event is applied, so that each reaches the shadow tables too.
        self.schedule_reimports(reimports).await?;
        if pending.is_empty() {
            return Ok(());
        }
        // A names-only table may not exist yet: its type was just dropped
        // (configured before), or a reimport swapped in a link field to it.
        let fresh: Vec<String> = pending
            .iter()
            .filter(|t| names_only.contains_key(*t))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            self.db(move |e| {
                let catalog = e.catalog();
                let dialect = e.store().dialect();
                e.store().with_transaction(&mut |c| {
                    for table in fresh.iter().filter_map(|t| catalog.layout.table(t)) {
                        sg_engine::ddl::ensure_columns(c, table, dialect)?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(
            config.file.import.processes.max(1),
        ));
        self.db(|e| e.store().set_bulk_load(true)).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for entity_type in pending {
            let cache = self.clone();
            let digest = match config.entities.get(&entity_type) {
                Some(entity) => entity.digest(),
                None => names_only
                    .get(&entity_type)
                    .map(|entity| entity.digest())
                    .unwrap_or_default(),
            };
            let restart = known.get(&entity_type).is_none_or(|s| s.digest != digest);
            let limit = limit.clone();
            tasks.spawn(async move {
                cache
                    .import_type(&entity_type, &digest, restart, limit, ImportTarget::Live)
                    .await
                    .map(|_| ())
            });
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            let result = done
                .map_err(|e| SyncError::Other(format!("import task failed: {e}")))
                .and_then(|r| r);
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let unloaded = self.db(|e| e.store().set_bulk_load(false)).await;
        first_error.map_or(unloaded, Err)
    }

    /// The names-only tables of the served layout, each as the config of
    /// its one display field.
    fn names_only_configs(&self) -> BTreeMap<String, crate::config::EntityConfig> {
        self.engine
            .catalog()
            .layout
            .tables
            .values()
            .filter(|t| t.names_only)
            .map(|t| {
                let fields = t.fields.keys().filter(|f| *f != "id").cloned().collect();
                let entity = crate::config::EntityConfig {
                    entity_type: t.entity_type.clone(),
                    fields,
                };
                (t.entity_type.clone(), entity)
            })
            .collect()
    }

    /// Reads the next rows of the event log and applies them. Returns how many
    /// rows came back (a full page means more are waiting).
    pub async fn poll_events(&self) -> Result<usize, SyncError> {
        let Some(position) = self
            .db(|e| e.store().with_reader(&mut |c| state::position(c)))
            .await?
        else {
            return Ok(0);
        };
        let mut conditions =
            vec![json!({"path": "id", "relation": "greater_than", "values": [position.watermark]})];
        let missing: Vec<i64> = position
            .missing
            .keys()
            .take(PAGE as usize)
            .copied()
            .collect();
        if !missing.is_empty() {
            conditions.push(json!({"path": "id", "relation": "in", "values": missing}));
        }
        let params = json!({
            "type": "EventLogEntry",
            "return_fields": EVENT_FIELDS,
            "filters": {"logical_operator": "or", "conditions": conditions},
            "sorts": [{"field_name": "id", "direction": "asc"}],
            "paging": {"entities_per_page": PAGE, "current_page": 1},
            "return_paging_info_without_counts": true,
        });
        let result = self.client.call("read", Some(params)).await?;
        let rows: Vec<EventRow> = result["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(classify)
            .collect();
        let count = rows.len();
        let timeout = self.config().missing_event_timeout().as_secs() as i64;
        let next = advance(&position, &rows, timeout, &self.site_now);
        self.apply(rows, next).await?;
        Ok(count)
    }

    /// Applies event rows and saves the new position, all in one transaction.
    async fn apply(&self, rows: Vec<EventRow>, position: EventPosition) -> Result<(), SyncError> {
        let catalog = self.engine.catalog();
        let cached = |t: &str| catalog.layout.table(t).is_some();
        let mut refetch: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        let mut touched: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        let mut uncached_retired: BTreeSet<(String, i64)> = BTreeSet::new();
        let mut schema_changed = false;
        for row in &rows {
            match &row.action {
                EventAction::Fetch { entity_type, id }
                | EventAction::Refresh { entity_type, id }
                    if cached(entity_type) =>
                {
                    refetch.entry(entity_type.clone()).or_default().insert(*id);
                }
                EventAction::Set {
                    entity_type, id, ..
                }
                | EventAction::Links {
                    entity_type, id, ..
                }
                | EventAction::Retire { entity_type, id }
                    if cached(entity_type) =>
                {
                    touched.entry(entity_type.clone()).or_default().insert(*id);
                }
                EventAction::Retire { entity_type, id } => {
                    uncached_retired.insert((entity_type.clone(), *id));
                }
                EventAction::Schema => schema_changed = true,
                _ => {}
            }
        }
        // The site hides links to a retired record and logs nothing for the
        // records holding them. The engine hides links to retired records of
        // cached types itself; for the others, the holders are read again.
        if !uncached_retired.is_empty() {
            let targets = uncached_retired.clone();
            let holders = self
                .db(move |e| {
                    let catalog = e.catalog();
                    e.store().with_reader(&mut |c| {
                        sg_engine::lookup::records_holding_links(c, &catalog.layout, &targets)
                    })
                })
                .await?;
            for (t, ids) in holders {
                refetch.entry(t).or_default().extend(ids);
            }
        }
        // Back-reference rows on records retired since: read every record of
        // that type the forward row names (reading one more is harmless).
        let mut forwards_wanted = Vec::new();
        for row in &rows {
            if let EventAction::BackReference {
                entity_type,
                forward,
            } = &row.action
            {
                if !cached(entity_type) {
                    continue;
                }
                match rows.iter().find(|r| r.id == *forward) {
                    Some(f) => {
                        for link in f.mentioned.iter().filter(|l| &l.entity_type == entity_type) {
                            refetch
                                .entry(entity_type.clone())
                                .or_default()
                                .insert(link.id);
                        }
                    }
                    None => forwards_wanted.push((entity_type.clone(), *forward)),
                }
            }
        }
        for (entity_type, forward) in forwards_wanted {
            for link in self
                .event_links(forward)
                .await?
                .into_iter()
                .filter(|l| l.entity_type == entity_type)
            {
                refetch
                    .entry(entity_type.clone())
                    .or_default()
                    .insert(link.id);
            }
        }
        // A change to a record the cache does not hold, or not newer than
        // its guard (the newest row its copy reflects: a row arriving late),
        // can't be applied: read the record instead. A Retirement too: a
        // late one may be older than a Revival the copy shows.
        let first_event: BTreeMap<(String, i64), i64> = rows
            .iter()
            .filter_map(|r| match &r.action {
                EventAction::Set {
                    entity_type, id, ..
                }
                | EventAction::Links {
                    entity_type, id, ..
                }
                | EventAction::Retire { entity_type, id } => {
                    Some(((entity_type.clone(), *id), r.id))
                }
                _ => None,
            })
            .fold(BTreeMap::new(), |mut m, (k, v)| {
                let e = m.entry(k).or_insert(v);
                *e = (*e).min(v);
                m
            });
        let probe = touched.clone();
        let (present, guards) = self
            .db(move |e| {
                let catalog = e.catalog();
                e.store().with_reader(&mut |c| {
                    let mut present = BTreeMap::new();
                    let mut guards = BTreeMap::new();
                    for (t, ids) in &probe {
                        let Some(table) = catalog.layout.table(t) else {
                            continue;
                        };
                        let ids: Vec<i64> = ids.iter().copied().collect();
                        present.insert(t.clone(), sg_engine::lookup::existing_ids(c, table, &ids)?);
                        guards.insert(t.clone(), state::guards(c, t, &ids)?);
                    }
                    Ok((present, guards))
                })
            })
            .await?;
        for ((t, id), oldest) in &first_event {
            if !cached(t) {
                continue;
            }
            let absent = !present.get(t).is_some_and(|p| p.contains(id));
            let guard = guards.get(t).and_then(|g| g.get(id)).copied().unwrap_or(0);
            if absent || guard >= *oldest {
                refetch.entry(t.clone()).or_default().insert(*id);
            }
        }
        // A marked record is read whole again: its earlier change never got stored.
        for (t, ids) in &touched {
            for id in ids {
                if self.marks.contains(&(t.clone(), *id)) {
                    refetch.entry(t.clone()).or_default().insert(*id);
                }
            }
        }
        let mut fetched: Vec<(String, Map<String, Value>)> = Vec::new();
        for (t, ids) in &refetch {
            fetched.extend(
                self.fetch_records(t, ids)
                    .await?
                    .into_iter()
                    .map(|r| (t.clone(), r)),
            );
        }
        // A revived record shows again in the lists of the records it links
        // to, which log nothing: read those too.
        let revived: BTreeSet<(String, i64)> = rows
            .iter()
            .filter(|r| r.revival)
            .filter_map(|r| match &r.action {
                EventAction::Fetch { entity_type, id } => Some((entity_type.clone(), *id)),
                _ => None,
            })
            .collect();
        let mut linked: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for (t, record) in &fetched {
            let id = record.get("id").and_then(Value::as_i64).unwrap_or(0);
            if !revived.contains(&(t.clone(), id)) {
                continue;
            }
            for value in record.values() {
                let links = match value {
                    Value::Array(items) => items.iter().filter_map(EntityLink::from_json).collect(),
                    v => EntityLink::from_json(v).into_iter().collect::<Vec<_>>(),
                };
                for link in links.into_iter().filter(|l| cached(&l.entity_type)) {
                    if !refetch
                        .get(&link.entity_type)
                        .is_some_and(|ids| ids.contains(&link.id))
                    {
                        linked.entry(link.entity_type).or_default().insert(link.id);
                    }
                }
            }
        }
        // Records linking to a revived record show the link again and log
        // nothing; where the revived record names them in no field (no
        // inverse field), the site is asked which they are.
        for (t, ids) in self.records_linking_to(&revived).await? {
            let ids: BTreeSet<i64> = ids
                .into_iter()
                .filter(|id| !refetch.get(&t).is_some_and(|r| r.contains(id)))
                .collect();
            if !ids.is_empty() {
                linked.entry(t).or_default().extend(ids);
            }
        }
        for (t, ids) in &linked {
            fetched.extend(
                self.fetch_records(t, ids)
                    .await?
                    .into_iter()
                    .map(|r| (t.clone(), r)),
            );
        }
        let mut hidden = self.hidden_links(&mut fetched).await?;
        let mut refetched = refetch.clone();
        for (t, ids) in &linked {
            refetched
                .entry(t.clone())
                .or_default()
                .extend(ids.iter().copied());
        }
        // The links the poll's rows change in records read whole, to
        // records retired on the site, which the copies can't show (see
        // [`PollWrites::to_apply`]): those the copies don't show are asked about.
        let copies: BTreeMap<(&str, i64), &Map<String, Value>> = fetched
            .iter()
            .filter_map(|(t, r)| Some(((t.as_str(), r.get("id")?.as_i64()?), r)))
            .collect();
        let mut row_targets: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for row in &rows {
            if let EventAction::Links {
                entity_type,
                id,
                field,
                added,
                removed,
            } = &row.action
            {
                if !refetched
                    .get(entity_type)
                    .is_some_and(|ids| ids.contains(id))
                {
                    continue;
                }
                let shown = copies
                    .get(&(entity_type.as_str(), *id))
                    .and_then(|copy| copy.get(field))
                    .map(links_of)
                    .unwrap_or_default();
                for link in added.iter().chain(removed) {
                    if !shown.contains(link)
                        && !hidden.contains(&(link.entity_type.clone(), link.id))
                    {
                        row_targets
                            .entry(link.entity_type.clone())
                            .or_default()
                            .insert(link.id);
                    }
                }
            }
        }
        hidden.extend(self.retired_among(&row_targets).await?);
        // The records changed row by row get the site's stamps.
        let mut stamped = touched;
        for (t, ids) in stamped.iter_mut() {
            if let Some(whole) = refetched.get(t) {
                ids.retain(|id| !whole.contains(id));
            }
        }
        let shadow_layout = self.shadows.layout();
        let (stamps, stamp_reads) =
            crate::stamps::read_stamps(&self.client, &[&catalog.layout, &shadow_layout], &stamped)
                .await?;
        tracing::debug!(
            records = stamps.len(),
            reads = stamp_reads,
            "read the stamps of the records changed row by row"
        );
        // Records read whole first, then the batch's rows, in order, on the
        // other records (see [`PollWrites::read_whole`]), with their stamps.
        // Types imported again get the same writes in their shadow tables.
        let shadows = self.shadows.clone();
        let poll = Arc::new(PollWrites {
            fetched,
            hidden,
            rows,
            refetched,
            guards,
            stamps,
            position,
        });
        // Copies of marked records stored whole clear their marks.
        let unmarked: Vec<RecordKey> = poll
            .fetched
            .iter()
            .filter_map(|(t, r)| Some((t.clone(), r.get("id")?.as_i64()?)))
            .filter(|key| self.marks.contains(key))
            .collect();
        let writes = poll.clone();
        let cleared = unmarked.clone();
        let whole = self
            .db(move |e| {
                e.store().with_transaction(&mut |c| {
                    let catalog = e.catalog();
                    let shadow = shadows.layout();
                    let p = &*writes;
                    store_fetched(c, &[&catalog.layout, &shadow], &p.fetched, &p.hidden)?;
                    // The newest row applied to each record, written once at the end.
                    let mut applied = BTreeMap::new();
                    let (mut live, mut shadowed) = (RowApplier::default(), RowApplier::default());
                    for row in p.rows.iter().filter_map(|r| p.to_apply(r)) {
                        live.apply(c, &catalog.layout, &row, &p.guards, &mut applied)?;
                        shadowed.apply(c, &shadow, &row, &p.guards, &mut applied)?;
                    }
                    live.flush(c, &catalog.layout, &p.stamps, &mut applied)?;
                    shadowed.flush(c, &shadow, &p.stamps, &mut applied)?;
                    let stored: Vec<RecordKey> = p
                        .fetched
                        .iter()
                        .filter_map(|(t, r)| Some((t.clone(), r.get("id")?.as_i64()?)))
                        .collect();
                    applied.extend(p.whole_guards(stored.iter()));
                    state::set_guards(c, &applied)?;
                    state::set_poll_done(c)?;
                    marks::unkeep(c, &cleared)?;
                    state::set_position(c, &p.position)
                })
            })
            .await;
        match whole {
            Ok(()) => {
                self.marks.clear(&unmarked);
            }
            Err(refused) => {
                // Some record the store can't hold: the poll is written
                // again record by record, and those records are marked.
                tracing::debug!(
                    "a poll's writes were refused whole ({refused}); writing them one by one"
                );
                let shadows = self.shadows.clone();
                let outcome = self
                    .db(move |e| {
                        e.store().with_transaction(&mut |c| {
                            let catalog = e.catalog();
                            let shadow = shadows.layout();
                            let p = &*poll;
                            let mut outcome = careful::Outcome::default();
                            let mut applied = careful::apply_poll(
                                c,
                                &catalog.layout,
                                &shadow,
                                &p.fetched,
                                &p.hidden,
                                &p.rows,
                                &|r| p.to_apply(r),
                                &p.guards,
                                &p.stamps,
                                &mut outcome,
                            )?;
                            applied.extend(p.whole_guards(outcome.stored.iter()));
                            state::set_guards(c, &applied)?;
                            state::set_poll_done(c)?;
                            marks::unkeep(c, &outcome.stored)?;
                            marks::keep(c, &outcome.refused)?;
                            state::set_position(c, &p.position)?;
                            Ok(outcome)
                        })
                    })
                    .await?;
                self.note_outcome(outcome);
            }
        }
        if schema_changed {
            self.reload_schema().await?;
        }
        Ok(())
    }

    /// The records (active or retired) of cached types whose link fields
    /// point at one of `targets`, as the site says.
    pub async fn records_linking_to(
        &self,
        targets: &BTreeSet<(String, i64)>,
    ) -> Result<BTreeMap<String, BTreeSet<i64>>, SyncError> {
        let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        if targets.is_empty() {
            return Ok(out);
        }
        let catalog = self.engine.catalog();
        for (holder, table) in &catalog.layout.tables {
            for field in table
                .fields
                .values()
                .filter(|f| matches!(f.data_type, DataType::Entity | DataType::MultiEntity))
            {
                let wanted: Vec<Value> = targets
                    .iter()
                    .filter(|(t, _)| field.valid_types.is_empty() || field.valid_types.contains(t))
                    .map(|(t, id)| json!({"type": t, "id": id}))
                    .collect();
                for chunk in wanted.chunks(LINK_QUERY_CHUNK) {
                    let any: Vec<Value> = chunk
                        .iter()
                        .map(|l| json!({"path": field.name, "relation": "is", "values": [l]}))
                        .collect();
                    // Retired holders too: their links show again as well.
                    for retired in [false, true] {
                        let mut last_id = 0;
                        loop {
                            let conditions = json!([
                                {"logical_operator": "or", "conditions": any},
                                {"path": "id", "relation": "greater_than", "values": [last_id]}]);
                            let params = read_params(holder, &[], conditions, retired);
                            let page = entities(self.client.call("read", Some(params)).await?)?;
                            let ids: Vec<i64> = page
                                .iter()
                                .filter_map(|r| r.get("id").and_then(Value::as_i64))
                                .collect();
                            last_id = ids.last().copied().unwrap_or(last_id);
                            out.entry(holder.clone()).or_default().extend(&ids);
                            if (ids.len() as u64) < PAGE {
                                break;
                            }
                        }
                    }
                }
            }
        }
        out.retain(|_, ids| !ids.is_empty());
        Ok(out)
    }

    /// Of the links the cache holds in these records but the site's copies do
    /// not show, those that point at records retired on the site: the site
    /// still has them and shows them again when those records are revived.
    ///
    /// Whether a target is retired is asked after the records were read, so
    /// a target revived in between would pass for a link really removed, and
    /// the link would be lost with nothing logged to bring it back (the
    /// revival may log nothing). So a record whose unseen link points at an
    /// active record is read once more, and its newer copy replaces the one
    /// in `records`.
    async fn hidden_links(
        &self,
        records: &mut [(String, Map<String, Value>)],
    ) -> Result<BTreeSet<(String, i64)>, SyncError> {
        let first = self.retired_targets(records).await?;
        let mut again: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for ((t, id), targets) in &first.unseen_active {
            if !targets.is_empty() {
                again.entry(t.clone()).or_default().insert(*id);
            }
        }
        if again.is_empty() {
            return Ok(first.retired);
        }
        let mut newer: BTreeMap<(String, i64), Map<String, Value>> = BTreeMap::new();
        for (t, ids) in &again {
            for record in self.fetch_records(t, ids).await? {
                if let Some(id) = record.get("id").and_then(Value::as_i64) {
                    newer.insert((t.clone(), id), record);
                }
            }
        }
        let mut replaced = Vec::with_capacity(newer.len());
        for (t, record) in records.iter_mut() {
            let Some(id) = record.get("id").and_then(Value::as_i64) else {
                continue;
            };
            if let Some(copy) = newer.get(&(t.clone(), id)) {
                *record = copy.clone();
                replaced.push((t.clone(), copy.clone()));
            }
        }
        // Only the copies read again need their targets asked about again.
        let mut retired = first.retired;
        retired.extend(self.retired_targets(&replaced).await?.retired);
        Ok(retired)
    }

    /// The links held but not shown in these records: which of their
    /// targets are retired on the site, and per record those that are not.
    async fn retired_targets(
        &self,
        records: &[(String, Map<String, Value>)],
    ) -> Result<UnseenLinks, SyncError> {
        let owned = records.to_vec();
        let unseen = self
            .db(move |e| {
                let catalog = e.catalog();
                e.store()
                    .with_reader(&mut |c| unseen_links(c, &catalog.layout, &owned))
            })
            .await?;
        let mut by_type: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for targets in unseen.values() {
            for (t, id) in targets {
                by_type.entry(t.clone()).or_default().insert(*id);
            }
        }
        let retired = self.retired_among(&by_type).await?;
        let catalog = self.engine.catalog();
        let unseen_active = unseen
            .into_iter()
            .map(|(holder, targets)| {
                let active = targets
                    .into_iter()
                    .filter(|target| {
                        catalog.layout.table(&target.0).is_some() && !retired.contains(target)
                    })
                    .collect();
                (holder, active)
            })
            .collect();
        Ok(UnseenLinks {
            retired,
            unseen_active,
        })
    }

    /// Which of these records (of cached types) are retired on the site.
    async fn retired_among(
        &self,
        by_type: &BTreeMap<String, BTreeSet<i64>>,
    ) -> Result<BTreeSet<(String, i64)>, SyncError> {
        let mut retired = BTreeSet::new();
        for (t, ids) in by_type {
            // A link to a retired record of a type the cache does not hold
            // can't be hidden by the engine: it is not kept.
            if self.engine.catalog().layout.table(t).is_none() {
                continue;
            }
            let ids: Vec<i64> = ids.iter().copied().collect();
            for chunk in ids.chunks(PAGE as usize) {
                let params = read_params(
                    t,
                    &[],
                    json!([{"path": "id", "relation": "in", "values": chunk}]),
                    true,
                );
                for record in entities(self.client.call("read", Some(params)).await?)? {
                    if let Some(id) = record.get("id").and_then(Value::as_i64) {
                        retired.insert((t.clone(), id));
                    }
                }
            }
        }
        Ok(retired)
    }

    /// Reads these records from the site and stores them now (used after a
    /// write through the proxy, so the writer reads its own write at once).
    /// Types that are not cached are skipped.
    pub async fn refresh(
        &self,
        records: BTreeMap<String, BTreeSet<i64>>,
    ) -> Result<usize, SyncError> {
        let catalog = self.engine.catalog();
        let mut fetched: Vec<(String, Map<String, Value>)> = Vec::new();
        for (t, ids) in records
            .iter()
            .filter(|(t, ids)| catalog.layout.table(t).is_some() && !ids.is_empty())
        {
            fetched.extend(
                self.fetch_records(t, ids)
                    .await?
                    .into_iter()
                    .map(|r| (t.clone(), r)),
            );
        }
        let count = fetched.len();
        // Records asked for that the site no longer has (deleted) have
        // nothing to store: their marks go.
        let gone: Vec<RecordKey> = records
            .iter()
            .flat_map(|(t, ids)| ids.iter().map(move |id| (t.clone(), *id)))
            .filter(|key| {
                self.marks.contains(key)
                    && !fetched.iter().any(|(t, r)| {
                        *t == key.0 && r.get("id").and_then(Value::as_i64) == Some(key.1)
                    })
            })
            .collect();
        self.marks.clear(&gone);
        let touched: Vec<RecordKey> = fetched
            .iter()
            .filter_map(|(t, r)| Some((t.clone(), r.get("id")?.as_i64()?)))
            .collect();
        if let Err(e) = self.store_site_copies(fetched).await {
            // The store can't write at all (a full disk): until it holds
            // these records, their types are read from the site, so that a
            // writer reads its own write.
            let reason = self.without_secrets(&e.to_string());
            let unkept: Vec<MarkedRecord> = touched
                .into_iter()
                .map(|(entity_type, id)| MarkedRecord {
                    entity_type,
                    id,
                    event_id: 0,
                    reason: reason.clone(),
                })
                .collect();
            for mark in self.marks.add_unkept(unkept) {
                tracing::warn!(
                    entity_type = mark.entity_type.as_str(),
                    id = mark.id,
                    "the cache's database can't store this record ({}); its type is read from the site until it can",
                    mark.reason
                );
            }
            return Err(e);
        }
        Ok(count)
    }

    /// Stores copies of records read from the site, by type, each with its
    /// fields and `__retired` as a `read` of the stored fields gives them.
    /// The links the cache holds to records retired on the site are kept; a
    /// copy that no longer shows a held link to an active record is read
    /// again first (it may predate that record's revival).
    pub async fn store_site_copies(
        &self,
        mut copies: Vec<(String, Map<String, Value>)>,
    ) -> Result<(), SyncError> {
        let hidden = Arc::new(self.hidden_links(&mut copies).await?);
        let copies = Arc::new(copies);
        let unmarked: Vec<RecordKey> = copies
            .iter()
            .filter_map(|(t, r)| Some((t.clone(), r.get("id")?.as_i64()?)))
            .filter(|key| self.marks.contains(key))
            .collect();
        let (shadows, whole, held, cleared) = (
            self.shadows.clone(),
            copies.clone(),
            hidden.clone(),
            unmarked.clone(),
        );
        let stored = self
            .db(move |e| {
                e.store().with_transaction(&mut |c| {
                    let catalog = e.catalog();
                    let shadow = shadows.layout();
                    store_fetched(c, &[&catalog.layout, &shadow], &whole, &held)?;
                    marks::unkeep(c, &cleared)
                })
            })
            .await;
        if stored.is_ok() {
            self.marks.clear(&unmarked);
            return Ok(());
        }
        let shadows = self.shadows.clone();
        let outcome = self
            .db(move |e| {
                e.store().with_transaction(&mut |c| {
                    let catalog = e.catalog();
                    let shadow = shadows.layout();
                    let mut outcome = careful::Outcome::default();
                    careful::store_copies(
                        c,
                        &[&catalog.layout, &shadow],
                        &copies,
                        &hidden,
                        &|_| 0,
                        &mut outcome,
                    )?;
                    marks::unkeep(c, &outcome.stored)?;
                    marks::keep(c, &outcome.refused)?;
                    Ok(outcome)
                })
            })
            .await?;
        self.note_outcome(outcome);
        Ok(())
    }

    /// The links one event row names, read from the site.
    async fn event_links(&self, id: i64) -> Result<Vec<EntityLink>, SyncError> {
        let params = json!({"type": "EventLogEntry", "return_fields": EVENT_FIELDS,
            "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [id]}]},
            "paging": {"entities_per_page": 1, "current_page": 1}, "return_paging_info_without_counts": true});
        let result = self.client.call("read", Some(params)).await?;
        Ok(result["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(classify)
            .flat_map(|r| r.mentioned)
            .collect())
    }

    /// Reads records whole from the site, active and retired.
    async fn fetch_records(
        &self,
        entity_type: &str,
        ids: &BTreeSet<i64>,
    ) -> Result<Vec<Map<String, Value>>, SyncError> {
        let fields = self.stored_fields(entity_type);
        let keep: BTreeSet<String> = fields.iter().cloned().collect();
        let mut out = Vec::new();
        let ids: Vec<i64> = ids.iter().copied().collect();
        for chunk in ids.chunks(PAGE as usize) {
            for retired in [false, true] {
                let params = read_params(
                    entity_type,
                    &fields,
                    json!([{"path": "id", "relation": "in", "values": chunk}]),
                    retired,
                );
                let page = entities(self.client.call("read", Some(params)).await?)?;
                out.extend(page.into_iter().map(|r| storable(r, retired, &keep)));
            }
        }
        Ok(out)
    }

    /// Reads the site's schema again and applies it (after a schema event).
    pub async fn reload_schema(&self) -> Result<(), SyncError> {
        let schema_json = Self::fetch_schema(&self.client).await?;
        let schema = site_schema(&schema_json)?;
        let text = schema_json.to_string();
        let digest = self
            .db(move |e| {
                e.set_schema(schema.clone())?;
                e.store()
                    .with_transaction(&mut |c| state::set_site_schema(c, &text))
            })
            .await?;
        self.set_schema_digest(digest);
        Ok(())
    }

    fn set_schema_digest(&self, digest: String) {
        if let Ok(mut kept) = self.schema_digest.lock() {
            *kept = digest;
        }
    }

    fn schema_digest(&self) -> Option<String> {
        self.schema_digest.lock().ok().map(|d| d.clone())
    }

    /// Re-reads every record of every cached type changed since the last scan
    /// (by `updated_at`, active and retired) and stores what the site has.
    /// This repairs what the event log never reported.
    pub async fn reconcile(&self) -> Result<usize, SyncError> {
        let since = self
            .db(|e| e.store().with_reader(&mut |c| state::get(c, "last_scan")))
            .await?;
        let since: i64 = since.and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut scan_start = self.site_now.load(Ordering::Relaxed);
        if scan_start == 0 {
            // No event seen since this process started: the newest event's
            // time is a moment of the site's clock before this scan reads
            // anything, so the next scan can start from it.
            if let (_, Some(created)) = self.newest_event().await? {
                self.site_now.fetch_max(created, Ordering::Relaxed);
                scan_start = created;
            }
        }
        let stamp = sg_protocol::value::format_date_time(since - SCAN_MARGIN_SECS);
        let types: Vec<String> = self
            .engine
            .catalog()
            .layout
            .tables
            .keys()
            .cloned()
            .collect();
        let mut count = 0;
        // Records the scan finds active that the cache holds as retired:
        // revived without an event the cache applied.
        let mut revived: BTreeSet<(String, i64)> = BTreeSet::new();
        let schema = self.engine.catalog().schema.clone();
        for entity_type in types {
            // A type without `updated_at` (Reply on some sites) can't be scanned by it.
            let has_stamp = schema
                .entity(&entity_type)
                .is_some_and(|e| e.field("updated_at").is_some());
            if !has_stamp {
                continue;
            }
            let fields = self.stored_fields(&entity_type);
            let keep: BTreeSet<String> = fields.iter().cloned().collect();
            for retired in [false, true] {
                let mut last_id = 0;
                loop {
                    let conditions = json!([
                        {"path": "updated_at", "relation": "greater_than", "values": [stamp]},
                        {"path": "id", "relation": "greater_than", "values": [last_id]}]);
                    let page = entities(
                        self.client
                            .call(
                                "read",
                                Some(read_params(&entity_type, &fields, conditions, retired)),
                            )
                            .await?,
                    )?;
                    let full = page.len() as u64 >= PAGE;
                    last_id = page
                        .last()
                        .and_then(|r| r.get("id"))
                        .and_then(Value::as_i64)
                        .unwrap_or(last_id);
                    count += page.len();
                    let mut typed: Vec<(String, Map<String, Value>)> = page
                        .into_iter()
                        .map(|r| (entity_type.clone(), storable(r, retired, &keep)))
                        .collect();
                    let hidden = self.hidden_links(&mut typed).await?;
                    let records: Vec<Map<String, Value>> =
                        typed.into_iter().map(|(_, r)| r).collect();
                    if !retired {
                        let ids: Vec<i64> = records
                            .iter()
                            .filter_map(|r| r.get("id").and_then(Value::as_i64))
                            .collect();
                        let t = entity_type.clone();
                        let held_retired = self
                            .db(move |e| {
                                let catalog = e.catalog();
                                let Some(table) = catalog.layout.table(&t) else {
                                    return Ok(BTreeSet::new());
                                };
                                e.store().with_reader(&mut |c| {
                                    sg_engine::lookup::retired_ids(c, table, &ids)
                                })
                            })
                            .await?;
                        revived
                            .extend(held_retired.into_iter().map(|id| (entity_type.clone(), id)));
                    }
                    let t = entity_type.clone();
                    let shadows = self.shadows.clone();
                    let records = Arc::new(records);
                    let hidden = Arc::new(hidden);
                    let (page_records, page_hidden) = (records.clone(), hidden.clone());
                    let unmarked: Vec<RecordKey> = records
                        .iter()
                        .filter_map(|r| r.get("id").and_then(Value::as_i64))
                        .map(|id| (entity_type.clone(), id))
                        .filter(|key| self.marks.contains(key))
                        .collect();
                    let cleared = unmarked.clone();
                    let whole = self
                        .db(move |e| {
                            e.store().with_transaction(&mut |c| {
                                let catalog = e.catalog();
                                let shadow = shadows.table(&t);
                                let Some(table) = catalog.layout.table(&t) else {
                                    return Ok(());
                                };
                                let watermark =
                                    state::position(c)?.map(|p| p.watermark).unwrap_or(0);
                                let page: Vec<&Map<String, Value>> = page_records.iter().collect();
                                for table in std::iter::once(table).chain(shadow.as_ref()) {
                                    store_site_records(c, table, &page, &page_hidden)?;
                                }
                                let guards: BTreeMap<(String, i64), i64> = page_records
                                    .iter()
                                    .filter_map(|r| r.get("id").and_then(Value::as_i64))
                                    .map(|id| ((t.clone(), id), watermark))
                                    .collect();
                                state::set_guards(c, &guards)?;
                                marks::unkeep(c, &cleared)
                            })
                        })
                        .await;
                    match whole {
                        Ok(()) => {
                            self.marks.clear(&unmarked);
                        }
                        Err(_) => {
                            let t = entity_type.clone();
                            let shadows = self.shadows.clone();
                            let outcome = self
                                .db(move |e| {
                                    e.store().with_transaction(&mut |c| {
                                        let catalog = e.catalog();
                                        let shadow = shadows.layout();
                                        let watermark =
                                            state::position(c)?.map(|p| p.watermark).unwrap_or(0);
                                        let typed: Vec<(String, Map<String, Value>)> = records
                                            .iter()
                                            .map(|r| (t.clone(), r.clone()))
                                            .collect();
                                        let mut outcome = careful::Outcome::default();
                                        careful::store_copies(
                                            c,
                                            &[&catalog.layout, &shadow],
                                            &typed,
                                            &hidden,
                                            &|_| 0,
                                            &mut outcome,
                                        )?;
                                        let guards: BTreeMap<(String, i64), i64> = outcome
                                            .stored
                                            .iter()
                                            .map(|key| (key.clone(), watermark))
                                            .collect();
                                        state::set_guards(c, &guards)?;
                                        marks::unkeep(c, &outcome.stored)?;
                                        marks::keep(c, &outcome.refused)?;
                                        Ok(outcome)
                                    })
                                })
                                .await?;
                            self.note_outcome(outcome);
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
        }
        // A site shows the links to a revived record again and logs nothing
        // for the records holding them; after a revival the cache did not
        // see logged, those records are read again (as after a logged one).
        if !revived.is_empty() {
            let holders = self.records_linking_to(&revived).await?;
            count += self.refresh(holders).await?;
        }
        // Marked records are read again: a store of each clears its mark.
        let marked = self.marks.by_type();
        if !marked.is_empty() {
            count += self.refresh(marked).await?;
        }
        let ended = crate::health::now_secs();
        self.db(move |e| {
            e.store().with_transaction(&mut |c| {
                if scan_start > 0 {
                    state::set(c, "last_scan", &scan_start.to_string())?;
                }
                state::set_last_scan_ended(c, ended)
            })
        })
        .await?;
        Ok(count)
    }

    /// Applies changed entity configs: new types are imported, removed ones
    /// dropped, changed ones imported again. Returns whether anything changed.
    pub async fn reload_config(self: &Arc<Self>) -> Result<bool, SyncError> {
        let schema = self.engine.catalog().schema.clone();
        let (before, before_broken, after) = {
            let mut config = match self.config.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = config.entities.clone();
            let before_broken = config.broken.clone();
            if !config.reload_entities()? {
                return Ok(false);
            }
            // A type whose config is broken keeps the config it had; the
            // others take their changes.
            config.hold_unusable(&schema, &before);
            (before, before_broken, config.clone())
        };
        for (t, why) in &after.broken {
            if before_broken.get(t) != Some(why) {
                tracing::error!(entity_type = t.as_str(), "its entity config can't be used ({why}); it keeps its last good config, the other types go on");
            }
        }
        for t in before_broken
            .keys()
            .filter(|t| !after.broken.contains_key(*t))
        {
            tracing::info!(
                entity_type = t.as_str(),
                "its entity config is usable again"
            );
        }
        if after.entities == before {
            return Ok(false);
        }
        let removed: Vec<String> = before
            .keys()
            .filter(|t| !after.entities.contains_key(*t) && !after.broken.contains_key(*t))
            .cloned()
            .collect();
        let before = before.clone();
        let applied = async {
            self.drop_types(removed).await?;
            // A changed type keeps its tables as they are until its reimport
            // is swapped in.
            self.db(move |e| {
                let dialect = e.store().dialect();
                let selection = e
                    .store()
                    .with_reader(&mut |c| served_selection(c, &after, dialect))?;
                e.set_schema_and_selection(schema.clone(), Some(selection))
            })
            .await
        }
        .await;
        if let Err(e) = applied {
            // Keep the old config, so the change is tried again at the next step.
            if let Ok(mut config) = self.config.lock() {
                config.entities = before;
                config.broken = before_broken;
            }
            return Err(e);
        }
        tracing::info!("entity configs changed; importing what they add");
        self.import_pending().await?;
        Ok(true)
    }

    /// Keeps the cache in step until `shutdown` turns true, while
    /// `leadership` says this process is the one that syncs.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        leadership: crate::leader::Leadership,
    ) -> Result<(), SyncError> {
        let config = self.config();
        let fetch_interval = config.fetch_interval();
        let scan_interval = config.scan_interval();
        // When the last scan ended is kept in the store, so that a `run`
        // restarted more often than `scan_interval` still scans.
        let mut last_scan_ended = self.last_scan_ended().await;
        let mut was_leader = false;
        let mut in_step = false;
        loop {
            if *shutdown.borrow() {
                self.stop_reimports();
                return Ok(());
            }
            let leader = leadership.is_leader();
            if leader != was_leader && !leader {
                tracing::info!("another process keeps the cache in step; serving only");
                // The new leader resumes them from their recorded progress.
                self.stop_reimports();
            }
            was_leader = leader;
            if leader {
                let step = async {
                    // Cheap when nothing is pending; picks up `rebuild` requests.
                    self.import_pending().await?;
                    self.reload_config().await?;
                    // Full pages are read again at once, but not for ever: a
                    // site written faster than the cache applies must not
                    // keep config changes and scans waiting.
                    let polling = Instant::now();
                    loop {
                        let rows = self.poll_events().await?;
                        if (rows as u64) < PAGE || polling.elapsed() >= POLL_BUDGET {
                            break;
                        }
                    }
                    let due = last_scan_ended.is_some_and(|at| {
                        crate::health::now_secs() - at >= scan_interval.as_secs() as i64
                    });
                    if due {
                        let count = self.reconcile().await?;
                        tracing::info!(records = count, "reconcile scan done");
                        last_scan_ended = Some(crate::health::now_secs());
                    }
                    Ok::<(), SyncError>(())
                };
                let result = step.await;
                self.note_step(&result).await;
                if last_scan_ended.is_none() {
                    // The first scan is due a whole interval after the first start.
                    last_scan_ended = self.start_scan_clock().await;
                }
                match result {
                    Ok(()) => {
                        if !in_step {
                            in_step = true;
                            tracing::info!("in step with the site");
                        }
                        if self.outage.swap(false, Ordering::Relaxed) {
                            tracing::info!("the site is reachable again; catching up");
                        }
                    }
                    Err(e) if e.is_outage() => {
                        if !self.outage.swap(true, Ordering::Relaxed) {
                            tracing::warn!("the site can't be reached ({e}); serving what is cached and retrying");
                        }
                    }
                    Err(e) => tracing::error!("sync step failed: {e}"),
                }
            } else if let Err(e) = self.follow_tables().await {
                tracing::warn!("can't read what the syncing process changed: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(fetch_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// When the last reconcile scan ended, as kept in the store.
    async fn last_scan_ended(&self) -> Option<i64> {
        self.db(|e| e.store().with_reader(&mut |c| state::last_scan_ended(c)))
            .await
            .ok()
            .flatten()
    }

    /// Keeps "now" as the end of the last scan where none is kept yet, so
    /// that the first scan is due `scan_interval` after the first start,
    /// whatever the restarts in between.
    async fn start_scan_clock(&self) -> Option<i64> {
        let now = crate::health::now_secs();
        self.db(move |e| {
            e.store()
                .with_transaction(&mut |c| match state::last_scan_ended(c)? {
                    Some(at) => Ok(at),
                    None => state::set_last_scan_ended(c, now).map(|_| now),
                })
        })
        .await
        .ok()
    }

    /// In a process that only serves: takes up the tables the syncing
    /// process swapped in (a reimport) or brought to new fields, so that
    /// reads name the columns the tables hold, and the site schema it read
    /// again after a schema event, so that the schema methods and the checks
    /// of requests agree with the site's. Returns whether it changed.
    async fn follow_tables(&self) -> Result<bool, SyncError> {
        let config = self.config();
        let ours = self.schema_digest();
        // The syncing process's marks: this process's proxy reads their types from the site.
        let marked = self
            .db(|e| e.store().with_reader(&mut |c| marks::kept(c)))
            .await?;
        self.marks.replace(marked);
        let (selection, kept) = self
            .db(move |e| {
                let dialect = e.store().dialect();
                e.store().with_reader(&mut |c| {
                    let selection = served_selection(c, &config, dialect)?;
                    // The schema's text is read only when its digest changed.
                    let kept = match state::site_schema_digest(c)? {
                        Some(digest) if Some(&digest) != ours.as_ref() => {
                            state::site_schema(c)?.map(|schema| (digest, schema))
                        }
                        _ => None,
                    };
                    Ok((selection, kept))
                })
            })
            .await?;
        let new_schema = kept.and_then(|(digest, json)| match site_schema(&json) {
            Ok(schema) => Some((digest, schema)),
            Err(e) => {
                // Taken as seen, so that it is reported once, not at every interval.
                self.set_schema_digest(digest);
                tracing::warn!("the schema the syncing process kept: {e}");
                None
            }
        });
        if new_schema.is_none() && self.engine.selection().as_ref() == Some(&selection) {
            return Ok(false);
        }
        let schema = match new_schema {
            Some((digest, schema)) => {
                self.set_schema_digest(digest);
                tracing::info!("the syncing process read a changed site schema; serving by it now");
                schema
            }
            None => {
                tracing::info!(
                    "the syncing process changed the cached tables; serving what they hold now"
                );
                self.engine.catalog().schema.clone()
            }
        };
        self.engine.set_catalog(schema, Some(selection));
        Ok(true)
    }

    /// Whether the last step could not reach the site.
    pub fn site_unreachable(&self) -> bool {
        self.outage.load(Ordering::Relaxed)
    }
}

impl<S: Store> Cache<S> {
    /// Whether a record of `entity_type` is marked (the store could not hold
    /// it, or a write through the proxy is not stored yet): its reads go to
    /// the site. No database round trip: the proxy asks on every read.
    pub fn has_marks(&self, entity_type: &str) -> bool {
        self.marks.has(entity_type)
    }

    /// The types with a marked record.
    pub fn marked_types(&self) -> Arc<BTreeSet<String>> {
        self.marks.types()
    }

    /// The marked records this process knows.
    pub fn marked_records(&self) -> Vec<MarkedRecord> {
        self.marks.all()
    }

    /// Takes in what a careful write did: marks the refused records (each
    /// logged once) and clears the marks of those stored.
    pub(crate) fn note_outcome(&self, outcome: careful::Outcome) {
        self.marks.clear(&outcome.stored);
        for mark in self.marks.add(outcome.refused) {
            tracing::warn!(
                entity_type = mark.entity_type.as_str(),
                id = mark.id,
                event = mark.event_id,
                "the cache's database can't hold this record ({}); its type is read from the site until it can",
                mark.reason
            );
        }
    }
}

/// A site schema from the replies of `schema_read` and `schema_entity_read`
/// (`{"fields": ..., "entities": ...}`, as fetched and as kept).
fn site_schema(json: &Value) -> Result<Schema, SyncError> {
    Schema::from_json(&json["fields"], Some(&json["entities"]))
        .map_err(|f| SyncError::Other(format!("the site's schema can't be read: {}", f.message)))
}

/// For the types imported before whose config is broken now: configs of
/// the fields their tables hold, so that they go on being served and
/// followed as they were until the file is fixed.
fn held_configs(
    conn: &mut dyn sg_engine::Connection,
    config: &CacheConfig,
    dialect: sg_engine::sql::Dialect,
) -> Result<BTreeMap<String, crate::config::EntityConfig>, sg_engine::EngineError> {
    let known = state::types(conn)?;
    let mut held = BTreeMap::new();
    for t in config.broken.keys() {
        if config.entities.contains_key(t) || known.get(t).is_none_or(|s| s.status != "ready") {
            continue;
        }
        if let Some(mut fields) = sg_engine::ddl::stored_fields(conn, t, dialect)? {
            fields.remove("id");
            let entity = crate::config::EntityConfig {
                entity_type: t.clone(),
                fields,
            };
            held.insert(t.clone(), entity);
        }
    }
    Ok(held)
}

/// Runs blocking database work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, sg_engine::EngineError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SyncError::Other(format!("database task failed: {e}")))?
        .map_err(SyncError::from)
}

/// The position after `rows`: ids skipped over become missing (stamped with
/// the site time of the row that revealed them), arrived ids stop being
/// missing, and missing ids older than `timeout` seconds are given up.
pub fn advance(
    position: &EventPosition,
    rows: &[EventRow],
    timeout: i64,
    site_now: &AtomicI64,
) -> EventPosition {
    let mut next = position.clone();
    for row in rows {
        let seen_at = row.created_at.unwrap_or(0);
        site_now.fetch_max(seen_at, Ordering::Relaxed);
        if row.id > next.watermark {
            // Huge gaps are capped: ids that far back are for the scan to repair.
            let gap_start = (next.watermark + 1).max(row.id - 10_000);
            for missing in gap_start..row.id {
                next.missing.entry(missing).or_insert(seen_at);
            }
            next.watermark = row.id;
        }
        next.missing.remove(&row.id);
    }
    let now = site_now.load(Ordering::Relaxed);
    if timeout > 0 && now > 0 {
        next.missing
            .retain(|_, first_missed| *first_missed + timeout > now);
    }
    next
}

/// Stores a record read from the site. A site's reads hide links to retired
/// records, but the site keeps them and shows them again when the record is
/// revived; so the links the cache holds to records in `hidden` (retired on
/// the site, see [`Cache::hidden_links`]) are kept.
fn store_site_records(
    conn: &mut dyn sg_engine::Connection,
    table: &sg_engine::layout::TableLayout,
    records: &[&Map<String, Value>],
    hidden: &BTreeSet<(String, i64)>,
) -> Result<(), sg_engine::EngineError> {
    let mut merged = Vec::with_capacity(records.len());
    for record in records {
        if let Some(record) = with_hidden_links(conn, table, record, hidden)? {
            merged.push(record);
        }
    }
    // One multi-row statement per run of records that set the same fields.
    sg_engine::write::upsert_records(conn, table, &merged)
}

/// [`store_site_records`] for records of several types, each type's
/// records written together (in their order) into each of `layouts`.
pub(crate) fn store_fetched(
    conn: &mut dyn sg_engine::Connection,
    layouts: &[&sg_engine::Layout],
    fetched: &[(String, Map<String, Value>)],
    hidden: &BTreeSet<(String, i64)>,
) -> Result<(), sg_engine::EngineError> {
    let mut by_type: BTreeMap<&str, Vec<&Map<String, Value>>> = BTreeMap::new();
    for (t, record) in fetched {
        by_type.entry(t.as_str()).or_default().push(record);
    }
    for (t, records) in by_type {
        for layout in layouts {
            if let Some(table) = layout.table(t) {
                store_site_records(conn, table, &records, hidden)?;
            }
        }
    }
    Ok(())
}

/// A record from the site as the table stores it: only the table's fields,
/// and the links it holds to records in `hidden` kept. `None` without an id.
fn with_hidden_links(
    conn: &mut dyn sg_engine::Connection,
    table: &sg_engine::layout::TableLayout,
    record: &Map<String, Value>,
    hidden: &BTreeSet<(String, i64)>,
) -> Result<Option<Map<String, Value>>, sg_engine::EngineError> {
    let Some(id) = record.get("id").and_then(Value::as_i64) else {
        return Ok(None);
    };
    let is_hidden = |l: &EntityLink| hidden.contains(&(l.entity_type.clone(), l.id));
    let mut merged = record.clone();
    // The record may carry fields of another table of its type (a served
    // table and its reimport's shadow hold different fields).
    merged.retain(|k, _| k == "id" || k == "__retired" || table.fields.contains_key(k));
    if hidden.is_empty() {
        // Nothing held can be kept, so there is nothing to look up.
        return Ok(Some(merged));
    }
    for field in table.fields.values() {
        let Some(site_value) = record.get(&field.name) else {
            continue;
        };
        match field.storage {
            Storage::Links => {
                let mut links: Vec<EntityLink> = links_of(site_value);
                for held in sg_engine::lookup::current_links(conn, table, &field.name, id)? {
                    if !links.contains(&held) && is_hidden(&held) {
                        links.push(held);
                    }
                }
                merged.insert(
                    field.name.clone(),
                    json!(links
                        .iter()
                        .map(|l| json!({"type": l.entity_type, "id": l.id}))
                        .collect::<Vec<_>>()),
                );
            }
            Storage::Entity if site_value.is_null() => {
                if let Some(held) = sg_engine::lookup::current_link(conn, table, field, id)? {
                    if is_hidden(&held) {
                        merged.insert(
                            field.name.clone(),
                            json!({"type": held.entity_type, "id": held.id}),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(merged))
}

/// Per record, the links the cache holds in its link fields that the site's
/// copy does not show (for an entity field, only where the site shows none:
/// only then can the held link be kept).
fn unseen_links(
    conn: &mut dyn sg_engine::Connection,
    layout: &sg_engine::Layout,
    records: &[(String, Map<String, Value>)],
) -> Result<LinksByRecord, sg_engine::EngineError> {
    let mut out = LinksByRecord::new();
    for (t, record) in records {
        let Some(table) = layout.table(t) else {
            continue;
        };
        let Some(id) = record.get("id").and_then(Value::as_i64) else {
            continue;
        };
        for field in table.fields.values() {
            let Some(site_value) = record.get(&field.name) else {
                continue;
            };
            let held = match field.storage {
                Storage::Links => sg_engine::lookup::current_links(conn, table, &field.name, id)?,
                Storage::Entity if site_value.is_null() => {
                    sg_engine::lookup::current_link(conn, table, field, id)?
                        .into_iter()
                        .collect()
                }
                _ => continue,
            };
            let shown = links_of(site_value);
            for link in held.into_iter().filter(|l| !shown.contains(l)) {
                out.entry((t.clone(), id))
                    .or_default()
                    .insert((link.entity_type, link.id));
            }
        }
    }
    Ok(out)
}

fn links_of(value: &Value) -> Vec<EntityLink> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(EntityLink::from_json).collect())
        .unwrap_or_default()
}
