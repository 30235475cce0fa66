//! Answering one request: from the cache when it can, from the site when it
//! can't, and writes through the site with the cache updated at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{json, Map, Value};

use sg_engine::{AnyStore, EngineError, QueryLimits, Store};
use sg_protocol::value::EntityLink;
use sg_protocol::{Envelope, Fault, FilterNode, ReadParams, Reply, Request, SummarizeParams};
use sg_sync::config::{AccessSection, ServingSection};
use sg_sync::Cache;

use crate::access::{scope, Access, Caller};
use crate::forward::{Forwarder, SiteReply};
use crate::gate::Gate;
use crate::occasional::Occasional;
use crate::relay::Relay;
use crate::route::{route_read, route_summarize, Route};

/// What goes back to the caller.
#[derive(Debug)]
pub enum Answer {
    /// A JSON body built here (a result or a fault), sent with HTTP 200.
    Json(Value),
    /// A JSON body already written as text (a read's result), sent with HTTP 200.
    JsonText(Vec<u8>),
    /// The site's own reply, passed on unchanged.
    Site(SiteReply),
    /// The site could not be reached for a request only it can answer.
    Unreachable(String),
    /// The site answered with something that is not its API (a maintenance
    /// page): sent as 503, which the client reports as the site being down.
    SiteUnavailable(String),
    /// A write's reply did not come back: it may have been carried out, so
    /// the answer must not invite the client to send it again.
    WriteUnconfirmed(String),
}

/// The proxy of one cache.
pub struct Proxy {
    cache: Arc<Cache<AnyStore>>,
    forwarder: Forwarder,
    /// Everything besides `/api3/json`, streamed to the site and back.
    relay: Relay,
    /// Who gets cached data, and what of it.
    gate: Gate,
    limits: ProxyLimits,
    /// The site's `info`, kept so clients take the same code paths.
    info: Mutex<Option<Value>>,
    /// Requests answered from the cache at once; the rest wait their turn
    /// here, without a thread, instead of each taking a blocking thread and
    /// opening a database connection beyond the store's pool.
    engine_slots: tokio::sync::Semaphore,
    store_failures: Occasional,
    over_limits: Occasional,
}

/// Cache reads run at once: no more than the stores keep pooled connections
/// for (PostgreSQL keeps 4), and enough to keep a few cores busy.
const ENGINE_SLOTS: usize = 4;

/// How long a read may run on an async thread before it is stopped and run
/// on a blocking thread instead: long enough for a page of 500 records, short
/// enough that the other connections of that thread barely notice.
const INLINE_READ_BUDGET: Duration = Duration::from_millis(3);

/// Limits on what one read from the cache may cost. A read past them is
/// answered by the site, as if there were no cache.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// A page holds at most this many records, as on the site
    /// (`api_max_entities_per_page`, 500).
    pub max_entities_per_page: u64,
    /// How long one cached read or summary may run.
    pub read_budget: Duration,
    /// Conditions, grouping levels and groups one query may have.
    pub query: QueryLimits,
}

impl From<&ServingSection> for ProxyLimits {
    fn from(serving: &ServingSection) -> Self {
        ProxyLimits {
            max_entities_per_page: serving.max_entities_per_page,
            read_budget: serving.read_budget(),
            query: QueryLimits {
                max_conditions: serving.max_conditions,
                max_groupings: serving.max_groupings,
                max_groups: serving.max_groups,
            },
        }
    }
}

/// The limits of `serving:`'s defaults.
impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits::from(&ServingSection::default())
    }
}

fn fault(f: Fault) -> Answer {
    Answer::Json(f.to_json())
}

impl Proxy {
    pub fn new(
        cache: Arc<Cache<AnyStore>>,
        site_url: &str,
        own_script: (String, String),
        access: &AccessSection,
        limits: ProxyLimits,
    ) -> Result<Proxy, sg_client::ClientError> {
        cache.engine.set_limits(limits.query);
        let forwarder = Forwarder::new(site_url)?;
        Ok(Proxy {
            cache,
            gate: Gate::new(forwarder.clone(), access, own_script),
            forwarder,
            relay: Relay::new(site_url)?,
            limits,
            info: Mutex::new(None),
            engine_slots: tokio::sync::Semaphore::new(ENGINE_SLOTS),
            store_failures: Occasional::default(),
            over_limits: Occasional::default(),
        })
    }

    pub fn cache(&self) -> &Arc<Cache<AnyStore>> {
        &self.cache
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    async fn forward(&self, body: Bytes) -> Answer {
        match self.forwarder.send(body).await {
            Ok(reply) => Answer::Site(reply),
            Err(e) => Answer::Unreachable(format!("can't reach the site: {e}")),
        }
    }

    /// A read the store failed to answer (the database is down, or another
    /// process sharing it has just swapped a type's tables) goes to the site,
    /// which checks the caller's credentials itself: the caller gets the
    /// site's answer rather than an internal error.
    async fn store_failed(&self, message: &str, body: Bytes) -> Answer {
        if let Some(count) = self.store_failures.due() {
            tracing::warn!(
                error = message,
                failures = count,
                "the cache's database could not answer a read; the site answers such reads"
            );
        }
        self.forward(body).await
    }

    /// A read over the time budget or the limits goes to the site, which
    /// answers it as it would without a cache (its own reply or fault).
    async fn over_limits(&self, why: &EngineError, body: Bytes) -> Answer {
        if let Some(count) = self.over_limits.due() {
            tracing::warn!(
                reason = %why,
                reads = count,
                "a read was over the cache's time budget or limits; the site answers such reads"
            );
        }
        self.forward(body).await
    }

    /// Answers one request body. The envelope and the credentials are read
    /// first; the method's params are decoded only for a caller the site
    /// accepts (a large body from anyone else costs no more than its bytes).
    pub async fn handle(&self, body: Bytes) -> Answer {
        let envelope = match Envelope::from_slice(&body) {
            Ok(e) => e,
            Err(f) => return fault(f),
        };
        let method = envelope.method_name.as_str();
        if method == "info" {
            return self.info(body.clone()).await;
        }
        if envelope.auth.is_none() {
            // As the site does: credentials are checked before anything else.
            return fault(Fault::authentication(
                "No authentication credentials were given",
            ));
        }
        let reads = matches!(
            method,
            "read" | "summarize" | "schema_read" | "schema_entity_read" | "schema_field_read"
        );
        let writes = matches!(method, "create" | "update" | "delete" | "revive" | "batch");
        if matches!(
            method,
            "schema_field_create" | "schema_field_update" | "schema_field_delete"
        ) {
            return self.schema_edit(body.clone()).await;
        }
        if !reads && !writes {
            // Only the site answers these, and it checks the credentials itself.
            return self.forward(body.clone()).await;
        }
        let catalog = self.cache.engine.catalog();
        let admitted = self
            .gate
            .admit(envelope.auth.as_ref(), &catalog.schema)
            .await;
        drop(catalog);
        let caller = match admitted {
            Ok(caller) => caller,
            Err(answer) => return answer,
        };
        let request = match envelope.into_request() {
            Ok(r) => r,
            Err(f) => return fault(f),
        };
        if writes {
            return self.write_through(&request, body.clone()).await;
        }
        match &caller.access {
            Access::Site => self.forward(body.clone()).await,
            _ => self.read_side(&caller, request, body.clone()).await,
        }
    }

    /// A schema edit goes to the site; once the site has made it, the cache
    /// reads the site's schema again before answering, so the caller's next
    /// read sees the field it just made (read-your-writes for the schema).
    async fn schema_edit(&self, body: Bytes) -> Answer {
        let answer = self.forward(body).await;
        if let Answer::Site(reply) = &answer {
            if site_accepted(reply).is_some() {
                if let Err(e) = self.cache.reload_schema().await {
                    tracing::warn!(
                        "a schema edit went through but the cache could not read the schema again yet: {e}"
                    );
                }
            }
        }
        answer
    }

    async fn info(&self, body: Bytes) -> Answer {
        if let Some(info) = self.info.lock().ok().and_then(|i| i.clone()) {
            return Answer::Json(info);
        }
        match self.forward(body).await {
            Answer::Site(reply) if reply.status.is_success() => {
                if let Ok(info) = serde_json::from_slice::<Value>(&reply.body) {
                    if info.get("version").is_some() {
                        if let Ok(mut kept) = self.info.lock() {
                            *kept = Some(info);
                        }
                    }
                }
                Answer::Site(reply)
            }
            other => other,
        }
    }

    async fn read_side(&self, caller: &Caller, request: Request, body: Bytes) -> Answer {
        let catalog = self.cache.engine.catalog();
        // A caller limited to its projects reads only their records; a type
        // the cache can't scope is the site's to answer.
        let scoped = |entity_type: &str, filters: &mut FilterNode| match &caller.access {
            Access::Projects(projects) => scope(
                &catalog.layout,
                &catalog.schema,
                entity_type,
                filters,
                projects,
            )
            .is_ok(),
            _ => true,
        };
        // The params are decoded once, here, and the decoded form moves to
        // the blocking task that answers.
        let (route, method) = match request.method_name.as_str() {
            "read" => match request.params_object().and_then(ReadParams::from_json) {
                Ok(mut p) => {
                    // As the site does: no page holds more than its maximum.
                    p.paging.entities_per_page = p
                        .paging
                        .entities_per_page
                        .min(self.limits.max_entities_per_page);
                    let route = match scoped(&p.entity_type, &mut p.filters) {
                        true => route_read(&catalog.layout, &catalog.schema, &p),
                        false => Route::Site,
                    };
                    (route, CacheMethod::Read(p))
                }
                Err(f) => return fault(f),
            },
            "summarize" => match request.params_object().and_then(SummarizeParams::from_json) {
                Ok(mut p) => {
                    let route = match scoped(&p.entity_type, &mut p.filters) {
                        true => route_summarize(&catalog.layout, &catalog.schema, &p),
                        false => Route::Site,
                    };
                    (route, CacheMethod::Summarize(p))
                }
                Err(f) => return fault(f),
            },
            // The schema methods answer for the whole site, from the copy the cache keeps,
            // unless they ask for one project's view.
            _ => match request.params.as_ref().and_then(|p| p.get("project")) {
                Some(p) if !p.is_null() => return self.forward(body).await,
                _ => (Route::Cache, CacheMethod::Schema(request.clone())),
            },
        };
        drop(catalog);
        // A type with a record the cache could not store is the site's to answer.
        let marked = match &method {
            CacheMethod::Read(p) => self.cache.has_marks(&p.entity_type),
            CacheMethod::Summarize(p) => self.cache.has_marks(&p.entity_type),
            CacheMethod::Schema(_) => false,
        };
        if route == Route::Site || marked {
            return self.forward(body).await;
        }
        let outcome = match self.on_engine(caller, method).await {
            Some(outcome) => outcome,
            None => {
                return fault(Fault::new(
                    sg_protocol::ErrorCode::Other(100),
                    "the proxy is shutting down",
                ))
            }
        };
        // The engine's slots are free again before anything goes to the site.
        match outcome {
            Ok(answer) => answer,
            Err(EngineError::Store(message)) => self.store_failed(&message, body).await,
            Err(e @ (EngineError::OverBudget(_) | EngineError::OverLimit(_))) => {
                self.over_limits(&e, body).await
            }
            Err(e) => fault(e.to_fault()),
        }
    }

    /// Runs a read-side method on the engine, within the caller's share of
    /// its slots and the time budget; `None` when the proxy is shutting down.
    async fn on_engine(
        &self,
        caller: &Caller,
        method: CacheMethod,
    ) -> Option<Result<Answer, EngineError>> {
        // A caller's own share first, then a slot of the engine: one caller
        // can't hold every slot while others wait.
        let _own = caller.slots.acquire().await.ok()?;
        let _slot = self.engine_slots.acquire().await.ok()?;
        // Most reads take well under a millisecond: answered here, they skip
        // handing the request to a blocking thread and the answer back, which
        // cost about as much as the read itself. A read that runs longer is
        // stopped and answered on a blocking thread below.
        if let CacheMethod::Read(params) = &method {
            match self.cache.engine.read_json_within(
                params,
                br#"{"results":"#.to_vec(),
                INLINE_READ_BUDGET,
            ) {
                Ok(Some(mut out)) => {
                    out.push(b'}');
                    return Some(Ok(Answer::JsonText(out)));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        let engine = self.cache.engine.clone();
        let budget = self.limits.read_budget;
        let result = tokio::task::spawn_blocking(move || -> Result<Answer, EngineError> {
            match method {
                CacheMethod::Read(params) => {
                    // The envelope is written around the result's text, never re-parsed.
                    let mut out =
                        engine.read_json_budgeted(&params, br#"{"results":"#.to_vec(), budget)?;
                    out.push(b'}');
                    Ok(Answer::JsonText(out))
                }
                CacheMethod::Summarize(params) => engine
                    .summarize_budgeted(&params, budget)
                    .map(|v| Answer::Json(Reply::Results(v).to_json())),
                CacheMethod::Schema(request) => schema_answer(&engine.catalog().schema, &request)
                    .map(|v| Answer::Json(Reply::Results(v).to_json()))
                    .map_err(EngineError::from),
            }
        })
        .await;
        Some(match result {
            Ok(outcome) => outcome,
            Err(e) => Ok(fault(Fault::new(
                sg_protocol::ErrorCode::Other(100),
                format!("internal error: {e}"),
            ))),
        })
    }

    /// Sends a write to the site once; when the site accepts it, reads the
    /// records it touched into the cache before answering, so the caller
    /// reads its own write on its next call.
    async fn write_through(&self, request: &Request, body: Bytes) -> Answer {
        let mut touched = self.records_touched(request).await;
        let reply = match self.forwarder.send(body).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Answer::Unreachable(format!("can't reach the site: {e}"))
            }
            Err(e) => {
                return Answer::WriteUnconfirmed(format!(
                    "the site's reply to a write was lost ({e}); it may have been carried out"
                ))
            }
        };
        if let Some(body) = site_accepted(&reply) {
            collect_links(&body["results"], &mut touched);
            // A site shows the records linking to a revived record again
            // (the Tasks it revives with it among them) without naming them.
            let revived: BTreeSet<(String, i64)> = revived(request).into_iter().collect();
            match self.cache.records_linking_to(&revived).await {
                Ok(linking) => {
                    for (t, ids) in linking {
                        touched.entry(t).or_default().extend(ids);
                    }
                }
                // The event log brings them a moment later.
                Err(e) => tracing::debug!("can't ask the site what links to revived records: {e}"),
            }
            if let Err(e) = self.cache.refresh(touched).await {
                tracing::warn!(
                    "a write went through but the cache could not read it back yet: {e}"
                );
            }
        }
        Answer::Site(reply)
    }

    /// Records a write may change: the record itself, the records its new
    /// values link to, and the records its current links point at (their
    /// inverse fields change too).
    async fn records_touched(&self, request: &Request) -> BTreeMap<String, BTreeSet<i64>> {
        let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        let items: Vec<Map<String, Value>> = match &request.params {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_object().cloned())
                .collect(),
            Some(Value::Object(p)) => vec![p.clone()],
            _ => Vec::new(),
        };
        let mut current: Vec<(String, i64)> = Vec::new();
        for item in &items {
            let t = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(id) = item.get("id").and_then(Value::as_i64) {
                out.entry(t.clone()).or_default().insert(id);
                current.push((t.clone(), id));
            }
            if let Some(fields) = item.get("fields") {
                collect_links(fields, &mut out);
            }
        }
        let engine = self.cache.engine.clone();
        let linked = tokio::task::spawn_blocking(move || {
            let catalog = engine.catalog();
            let mut found = Vec::new();
            for (t, id) in current {
                let Some(table) = catalog.layout.table(&t) else {
                    continue;
                };
                let fetched = engine.store().with_reader(&mut |c| {
                    sg_engine::lookup::fetch_record(c, &catalog.layout, table, id)
                });
                if let Ok(Some((record, _))) = fetched {
                    found.push(Value::Object(record));
                }
            }
            found
        })
        .await
        .unwrap_or_default();
        for record in &linked {
            collect_links(record, &mut out);
        }
        out
    }
}

/// The body of a reply in which the site did what it was asked (HTTP 2xx,
/// JSON, no fault); `None` for any other reply.
fn site_accepted(reply: &SiteReply) -> Option<Value> {
    if !reply.status.is_success() {
        return None;
    }
    serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .filter(|body| Fault::from_json(body).is_none())
}

/// The records a `revive` (or the revive items of a `batch`) brings back.
fn revived(request: &Request) -> Vec<(String, i64)> {
    let item = |p: &Value| -> Option<(String, i64)> {
        Some((p.get("type")?.as_str()?.to_string(), p.get("id")?.as_i64()?))
    };
    match (request.method_name.as_str(), &request.params) {
        ("revive", Some(p)) => item(p).into_iter().collect(),
        ("batch", Some(Value::Array(items))) => items
            .iter()
            .filter(|i| i.get("request_type").and_then(Value::as_str) == Some("revive"))
            .filter_map(item)
            .collect(),
        _ => Vec::new(),
    }
}

/// A read-side method the cache answers, with its params decoded.
enum CacheMethod {
    Read(ReadParams),
    Summarize(SummarizeParams),
    /// `schema_read`, `schema_entity_read` or `schema_field_read`.
    Schema(Request),
}

/// The answer of a schema method, from the schema the cache keeps.
fn schema_answer(schema: &sg_protocol::Schema, request: &Request) -> Result<Value, Fault> {
    match request.method_name.as_str() {
        "schema_read" => Ok(schema.to_fields_json()),
        "schema_entity_read" => Ok(schema.to_entities_json()),
        _ => {
            let params = request.params_object()?;
            let t = params
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| Fault::bad_request("API schema_field_read() 'type' is required"))?;
            let entity = schema.entity(t).ok_or_else(|| {
                Fault::bad_request(format!(
                    "API schema_field_read() entity type {t} doesn't exist"
                ))
            })?;
            match params.get("field_name").and_then(Value::as_str) {
                None => Ok(entity.fields_json()),
                Some(f) => entity
                    .field(f)
                    .map(|field| json!({ f: field.raw }))
                    .ok_or_else(|| {
                        Fault::bad_request(format!("API schema_field_read() {t}.{f} doesn't exist"))
                    }),
            }
        }
    }
}

/// Every `{type, id}` inside a value.
fn collect_links(value: &Value, out: &mut BTreeMap<String, BTreeSet<i64>>) {
    if let Some(link) = EntityLink::from_json(value) {
        out.entry(link.entity_type).or_default().insert(link.id);
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_links(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_links(v, out)),
        _ => {}
    }
}
