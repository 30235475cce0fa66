//! The methods the simulated site answers, behind one dispatch on
//! `method_name`: reads from the engine, writes through [`WriteTx`], schema
//! reads and edits, sessions.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use sg_engine::{Catalog, Engine, EngineError, SqliteStore, Store};
use sg_protocol::value::EntityLink;
use sg_protocol::{Auth, Fault, ReadParams, Reply, Request, SummarizeParams};

use crate::auth::{Credential, Logins};
use crate::events::{EventContext, EventFaults, EventLog, EventRow};
use crate::files::FileStore;
use crate::writes::{Caller, FieldWrite, UpdateMode, WriteTx};

/// The version the site reports; ≥ 7.10 makes the client use its modern wire format.
pub const SITE_VERSION: [u32; 3] = [8, 50, 0];

/// A simulated site: its data, who may call it, and its event log.
pub struct Site {
    pub engine: Engine<SqliteStore>,
    pub logins: Logins,
    pub events: EventLog,
    /// Session token → the caller it was issued to.
    sessions: Mutex<HashMap<String, Caller>>,
    /// Where schema edits are saved, when the site keeps its state in a file.
    schema_file: Option<std::path::PathBuf>,
    /// The bytes of uploaded files (see [`crate::uploads`]).
    pub files: FileStore,
}

fn engine_fault(e: EngineError) -> Fault {
    e.to_fault()
}

fn params_str<'a>(
    params: &'a Map<String, Value>,
    key: &str,
    method: &str,
) -> Result<&'a str, Fault> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::bad_request(format!("API {method}() '{key}' is required")))
}

fn params_id(params: &Map<String, Value>, method: &str) -> Result<i64, Fault> {
    params
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| Fault::bad_request(format!("API {method}() 'id' must be an integer")))
}

/// `[{field_name, value[, multi_entity_update_mode]}]`, as the client sends fields.
fn field_list(params: &Map<String, Value>, method: &str) -> Result<Vec<FieldWrite>, Fault> {
    let items = match params.get("fields") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Fault::bad_request(format!(
                "API {method}() 'fields' must be a list"
            )))
        }
    };
    items
        .iter()
        .map(|item| {
            let field = item.get("field_name").and_then(Value::as_str).ok_or_else(|| {
                Fault::bad_request(format!("API {method}() each field needs a 'field_name', got {item}"))
            })?;
            let mode = match item.get("multi_entity_update_mode").and_then(Value::as_str) {
                None | Some("set") => UpdateMode::Set,
                Some("add") => UpdateMode::Add,
                Some("remove") => UpdateMode::Remove,
                Some(other) => {
                    return Err(Fault::bad_request(format!(
                        "API {method}() multi_entity_update_mode must be set, add or remove, got '{other}'"
                    )))
                }
            };
            Ok(FieldWrite { field: field.to_string(), value: item.get("value").cloned().unwrap_or(Value::Null), mode })
        })
        .collect()
}

/// A caller's `read` params, with pages no larger than the site gives.
fn site_read_params(request: &Request) -> Result<ReadParams, Fault> {
    let mut params = ReadParams::from_json(request.params_object()?)?;
    params.paging.entities_per_page = params
        .paging
        .entities_per_page
        .min(sg_protocol::read::API_MAX_ENTITIES_PER_PAGE);
    Ok(params)
}

fn return_fields(params: &Map<String, Value>) -> Vec<String> {
    params
        .get("return_fields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Site {
    /// A site over `engine`: makes sure every script has its ApiUser and every
    /// login its HumanUser, and continues the event log after its last row.
    pub fn new(
        engine: Engine<SqliteStore>,
        logins: Logins,
        faults: EventFaults,
    ) -> Result<Site, Fault> {
        let last_event = max_id(&engine, "EventLogEntry").map_err(engine_fault)?;
        // Which Tasks each delete retired, so that a revive brings back just those.
        engine
            .store()
            .with_transaction(&mut |conn| {
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS \"__sim_cascade\" (\"parent_type\" TEXT NOT NULL, \
                     \"parent_id\" BIGINT NOT NULL, \"task_id\" BIGINT NOT NULL)",
                )
            })
            .map_err(engine_fault)?;
        let site = Site {
            engine,
            logins,
            events: EventLog::new(last_event, faults),
            sessions: Mutex::new(HashMap::new()),
            schema_file: None,
            files: FileStore::default(),
        };
        for credential in site.logins.allowed.clone() {
            site.user_record(&credential)?;
        }
        Ok(site)
    }

    /// The ApiUser of a script, or the HumanUser of a login; created when missing.
    fn user_record(&self, credential: &Credential) -> Result<EntityLink, Fault> {
        let (entity_type, field, value) = match credential {
            Credential::Script { name, .. } => ("ApiUser", "firstname", name.as_str()),
            Credential::User { login, .. } => ("HumanUser", "login", login.as_str()),
        };
        let catalog = self.engine.catalog();
        if catalog
            .layout
            .table(entity_type)
            .and_then(|t| t.field(field))
            .is_none()
        {
            return Ok(EntityLink {
                entity_type: entity_type.into(),
                id: 0,
            });
        }
        if let Some(link) = self.find_one(entity_type, field, value)? {
            return Ok(link);
        }
        let id = max_id(&self.engine, entity_type).map_err(engine_fault)? + 1;
        let mut record = Map::new();
        record.insert("id".into(), json!(id));
        // As a create would: a checkbox the schema defaults to false is
        // stored false, not null (a null one sorts apart from the false ones).
        if let Some(table) = catalog.layout.table(entity_type) {
            record.extend(crate::writes::default_values(&catalog, table));
        }
        record.insert(field.into(), json!(value));
        if entity_type == "HumanUser"
            && catalog
                .layout
                .table("HumanUser")
                .and_then(|t| t.field("name"))
                .is_some()
        {
            record.insert("name".into(), json!(value));
        }
        self.engine
            .upsert_records(entity_type, &[record])
            .map_err(engine_fault)?;
        Ok(EntityLink {
            entity_type: entity_type.into(),
            id,
        })
    }

    fn find_one(
        &self,
        entity_type: &str,
        field: &str,
        value: &str,
    ) -> Result<Option<EntityLink>, Fault> {
        let params = ReadParams::from_json(
            json!({"type": entity_type, "return_fields": ["id"], "paging": {"entities_per_page": 1, "current_page": 1},
                   "filters": {"logical_operator": "and", "conditions": [{"path": field, "relation": "is", "values": [value]}]}})
            .as_object()
            .ok_or_else(|| Fault::bad_request("internal: bad query"))?,
        )?;
        let result = self.engine.read(&params).map_err(engine_fault)?;
        Ok(result["entities"][0]["id"].as_i64().map(|id| EntityLink {
            entity_type: entity_type.into(),
            id,
        }))
    }

    /// Who is calling, from the auth block (credentials, session token, sudo).
    fn caller(&self, request: &Request) -> Result<Caller, Fault> {
        self.caller_for(request.auth.as_ref())
    }

    /// The caller a session token was issued to, if it is one of this site's.
    pub(crate) fn session_caller(&self, token: &str) -> Option<Caller> {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(token).cloned())
    }

    /// Who is calling, from an auth block however it came (a JSON envelope or
    /// the fields of an upload form).
    pub(crate) fn caller_for(&self, auth: Option<&Auth>) -> Result<Caller, Fault> {
        let session_uuid = auth.and_then(|a| a.session_uuid.clone());
        let mut caller = match auth
            .and_then(|a| a.session_token.clone())
            .filter(|_| auth.is_some_and(|a| a.script_name.is_none() && a.user_login.is_none()))
        {
            Some(token) => self
                .session_caller(&token)
                .ok_or_else(|| Fault::authentication("Invalid or expired session token"))?,
            None => {
                let credential = self.logins.check(auth)?.clone();
                let generate_events = !matches!(
                    credential,
                    Credential::Script {
                        generate_events: false,
                        ..
                    }
                );
                Caller {
                    user: self.user_record(&credential)?,
                    generate_events,
                    session_uuid: None,
                }
            }
        };
        caller.session_uuid = session_uuid.or(caller.session_uuid);
        if let Some(login) = auth.and_then(|a| a.sudo_as_login.clone()) {
            caller.user = self
                .find_one("HumanUser", "login", &login)?
                .ok_or_else(|| {
                    Fault::bad_request(format!(
                        "The user does not have permission to 'sudo': no user with login '{login}'"
                    ))
                })?;
        }
        Ok(caller)
    }

    /// Answers one decoded request with the JSON text of the reply body, as
    /// the HTTP server sends it. A `read` is rendered straight to text (the
    /// same JSON as [`Site::handle`] gives, without building it as a value
    /// first: an import reads hundreds of thousands of records).
    pub fn handle_text(&self, request: &Request) -> Result<Vec<u8>, Fault> {
        if request.method_name != "read" {
            return self.handle(request).map(|reply| reply.to_text());
        }
        self.caller(request)?;
        let params = site_read_params(request)?;
        let mut out = self
            .engine
            .read_json(&params, b"{\"results\":".to_vec())
            .map_err(engine_fault)?;
        out.push(b'}');
        Ok(out)
    }

    /// Answers one decoded request. Never panics on bad input: every problem
    /// with the request comes back as a fault.
    pub fn handle(&self, request: &Request) -> Result<Reply, Fault> {
        if request.method_name == "info" {
            return Ok(Reply::Bare(info()));
        }
        let caller = self.caller(request)?;
        let result = match request.method_name.as_str() {
            "read" => {
                let params = site_read_params(request)?;
                self.engine.read(&params).map_err(engine_fault)?
            }
            "summarize" => {
                let params = SummarizeParams::from_json(request.params_object()?)?;
                self.engine.summarize(&params).map_err(engine_fault)?
            }
            "create" | "update" | "delete" | "revive" => {
                let params = request.params_object()?.clone();
                let method = method_name(&request.method_name);
                self.write(&caller, method, |tx| write_one(tx, method, &params))?
            }
            "batch" => self.batch(&caller, request.params.as_ref())?,
            "schema_read" => self.engine.catalog().schema.to_fields_json(),
            "schema_entity_read" => self.engine.catalog().schema.to_entities_json(),
            "schema_field_read" => self.schema_field_read(request.params_object()?)?,
            "schema_field_create" | "schema_field_update" | "schema_field_delete" => {
                crate::schema_edit::edit(
                    self,
                    &caller,
                    &request.method_name,
                    request.params_object()?,
                )?
            }
            "get_session_token" => self.session_token(&caller)?,
            other => return Err(Fault::bad_request(format!("Unknown method '{other}'"))),
        };
        Ok(Reply::Results(result))
    }

    /// Runs `f` in one transaction and logs its event rows there too.
    pub(crate) fn write<T>(
        &self,
        caller: &Caller,
        method: &'static str,
        mut f: impl FnMut(&mut WriteTx) -> Result<T, EngineError>,
    ) -> Result<T, Fault> {
        let catalog = self.engine.catalog();
        let now = chrono::Utc::now().timestamp();
        let allocate = || self.events.allocate();
        self.engine
            .store()
            .with_transaction(&mut |conn| {
                let mut tx = WriteTx {
                    conn,
                    catalog: &catalog,
                    caller,
                    now,
                    method,
                    rows: Vec::new(),
                    allocate: &allocate,
                };
                let value = f(&mut tx)?;
                let rows = std::mem::take(&mut tx.rows);
                self.log_rows(tx.conn, &catalog, caller, now, &rows)?;
                Ok(value)
            })
            .map_err(engine_fault)
    }

    pub(crate) fn log_rows(
        &self,
        conn: &mut dyn sg_engine::Connection,
        catalog: &Catalog,
        caller: &Caller,
        now: i64,
        rows: &[EventRow],
    ) -> Result<(), EngineError> {
        if !caller.generate_events || rows.is_empty() {
            return Ok(());
        }
        let ctx = EventContext {
            user: caller.user.clone(),
            session_uuid: caller.session_uuid.clone(),
            created_at: now,
        };
        let mut all = rows.to_vec();
        all.extend(self.events.noise(rows));
        self.events.write(conn, catalog, &ctx, &all)
    }

    /// `batch`: every item in one transaction; a failing item undoes them all.
    fn batch(&self, caller: &Caller, params: Option<&Value>) -> Result<Value, Fault> {
        let items = match params {
            None | Some(Value::Null) => return Ok(json!([])),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(Fault::bad_request("API batch() expects a list of requests")),
        };
        self.write(caller, "batch", |tx| {
            let mut results = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let obj = item.as_object().ok_or_else(|| {
                    EngineError::Fault(Fault::bad_request(format!(
                        "API batch() request {i} is not a dictionary"
                    )))
                })?;
                let kind = obj
                    .get("request_type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let method = match kind {
                    "create" | "update" | "delete" | "revive" => method_name(kind),
                    other => {
                        return Err(EngineError::Fault(Fault::bad_request(format!(
                            "API batch() request {i} has an unknown request_type '{other}'"
                        ))))
                    }
                };
                tx.method = method;
                results.push(write_one(tx, method, obj)?);
            }
            Ok(Value::Array(results))
        })
    }

    fn schema_field_read(&self, params: &Map<String, Value>) -> Result<Value, Fault> {
        let entity_type = params_str(params, "type", "schema_field_read")?;
        let catalog = self.engine.catalog();
        let entity = catalog.schema.entity(entity_type).ok_or_else(|| {
            Fault::bad_request(format!(
                "API schema_field_read() entity type {entity_type} doesn't exist"
            ))
        })?;
        match params.get("field_name").and_then(Value::as_str) {
            None => Ok(entity.fields_json()),
            Some(name) => {
                let field = entity.field(name).ok_or_else(|| {
                    Fault::bad_request(format!(
                        "API schema_field_read() {entity_type}.{name} doesn't exist"
                    ))
                })?;
                Ok(json!({ name: field.raw }))
            }
        }
    }

    /// `get_session_token`: a token that authenticates as this caller; a user
    /// logging in this way logs `Shotgun_User_Login`.
    fn session_token(&self, caller: &Caller) -> Result<Value, Fault> {
        let token = format!("{:032x}", rand::random::<u128>());
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(token.clone(), caller.clone());
        }
        if caller.user.entity_type == "HumanUser" {
            self.write(caller, "get_session_token", |tx| {
                let row = EventRow {
                    id: 0,
                    event_type: "Shotgun_User_Login".into(),
                    attribute_name: None,
                    entity: Some(caller.user.clone()),
                    meta: json!({"type": "login"}),
                    project: None,
                    description: "User logged in".into(),
                };
                let id = (tx.allocate)();
                tx.rows.push(EventRow { id, ..row });
                Ok(())
            })?;
        }
        Ok(json!({ "session_id": token }))
    }

    /// Saves the schema to `path` now and after every schema edit.
    pub fn persist_schema_to(&mut self, path: std::path::PathBuf) -> std::io::Result<()> {
        self.schema_file = Some(path);
        self.save_schema()
    }

    /// Writes the schema file, if there is one.
    pub(crate) fn save_schema(&self) -> std::io::Result<()> {
        let Some(path) = &self.schema_file else {
            return Ok(());
        };
        let catalog = self.engine.catalog();
        let body = json!({"fields": catalog.schema.to_fields_json(), "entities": catalog.schema.to_entities_json()});
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body.to_string())?;
        std::fs::rename(&tmp, path)
    }

    /// Makes late event rows visible once they are due. Called on a timer.
    pub fn commit_late_events(&self) {
        let due = self.events.take_due();
        if !due.is_empty() {
            if let Err(e) = self.engine.upsert_records("EventLogEntry", &due) {
                tracing::error!("could not write late event rows: {e}");
            }
        }
    }
}

fn method_name(name: &str) -> &'static str {
    match name {
        "create" => "create",
        "update" => "update",
        "delete" => "delete",
        _ => "revive",
    }
}

/// One create, update, delete or revive inside a transaction.
fn write_one(
    tx: &mut WriteTx,
    method: &'static str,
    params: &Map<String, Value>,
) -> Result<Value, EngineError> {
    let entity_type = params_str(params, "type", method)?.to_string();
    match method {
        "create" => {
            let fields: Vec<(String, Value)> = field_list(params, method)?
                .into_iter()
                .map(|w| (w.field, w.value))
                .collect();
            tx.create(&entity_type, &fields, &return_fields(params))
        }
        "update" => {
            let id = params_id(params, method)?;
            tx.update(&entity_type, id, &field_list(params, method)?)
        }
        "delete" => Ok(json!(tx.delete(&entity_type, params_id(params, method)?)?)),
        _ => Ok(json!(tx.revive(&entity_type, params_id(params, method)?)?)),
    }
}

/// The largest id of a type (0 when empty or not stored).
fn max_id(engine: &Engine<SqliteStore>, entity_type: &str) -> Result<i64, EngineError> {
    let catalog = engine.catalog();
    let Some(table) = catalog.layout.table(entity_type) else {
        return Ok(0);
    };
    engine
        .store()
        .with_transaction(&mut |conn| Ok(sg_engine::write::next_id(conn, table)? - 1))
}

/// The `info` reply.
pub fn info() -> Value {
    let [major, minor, patch] = SITE_VERSION;
    json!({
        "version": [major, minor, patch],
        "full_version": [major, minor, patch, 0],
        "api_max_entities_per_page": 500,
        "user_authentication_method": "default",
        "s3_direct_uploads_enabled": false,
        "s3_enabled_upload_types": {},
    })
}
