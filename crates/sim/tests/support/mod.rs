//! Shared fixtures for the site's integration tests: a small production
//! schema with a field of every writable data type and the inverse pairs the
//! site keeps in step, a site on a free port, and helpers that call it with
//! the project's client exactly as the official Python client would.

#![allow(dead_code)]

use std::sync::Arc;

use serde_json::{json, Map, Value};

use sg_client::{Client, ClientError};
use sg_engine::{Engine, SqliteStore};
use sg_protocol::{Auth, Fault, Schema};
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};

/// The script every test writes as, its key, and the other logins the sites accept.
pub const SCRIPT: &str = "tests";
pub const KEY: &str = "key";
pub const QUIET_SCRIPT: &str = "quiet";
pub const QUIET_KEY: &str = "qkey";
pub const USER: &str = "artist";
pub const PASSWORD: &str = "pw";

/// The Project every small-schema site starts with.
pub const PROJECT_ID: i64 = 1;
pub const PROJECT_NAME: &str = "Demo";

/// Fields the site sets itself.
pub const AUDIT_FIELDS: [&str; 4] = ["created_at", "updated_at", "created_by", "updated_by"];

/// A field definition in the `schema_read` shape.
fn def(data_type: &str, editable: bool, extra: Value) -> Value {
    let mut properties = json!({
        "default_value": {"value": null, "editable": false},
        "summary_default": {"value": "none", "editable": true}
    });
    if let (Some(p), Some(e)) = (properties.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(
                k.clone(),
                json!({"value": v, "editable": k != "default_value"}),
            );
        }
    }
    json!({
        "data_type": {"value": data_type, "editable": false},
        "editable": {"value": editable, "editable": false},
        "mandatory": {"value": false, "editable": false},
        "unique": {"value": false, "editable": false},
        "description": {"value": "", "editable": true},
        "visible": {"value": true, "editable": false},
        "properties": properties
    })
}

fn rw(data_type: &str) -> Value {
    def(data_type, true, json!({}))
}

fn rw_with(data_type: &str, extra: Value) -> Value {
    def(data_type, true, extra)
}

fn ro(data_type: &str, extra: Value) -> Value {
    def(data_type, false, extra)
}

fn with_audit(mut fields: Value) -> Value {
    let users = json!({"valid_types": ["HumanUser", "ApiUser"]});
    if let Some(map) = fields.as_object_mut() {
        map.insert("id".into(), ro("number", json!({})));
        map.insert("created_at".into(), ro("date_time", json!({})));
        map.insert("updated_at".into(), ro("date_time", json!({})));
        map.insert("created_by".into(), ro("entity", users.clone()));
        map.insert("updated_by".into(), ro("entity", users));
    }
    fields
}

/// The small schema: Project, Sequence, Shot (a field of every writable data
/// type), Tag, Asset, Task, HumanUser, ApiUser and EventLogEntry, with the inverse
/// pairs Shot.assets/Asset.shots, Task.entity/Shot.tasks (and Asset.tasks)
/// and Shot.sg_sequence/Sequence.shots.
pub fn schema_json() -> Value {
    json!({
        "Project": with_audit(json!({"name": rw("text"), "archived": rw("checkbox")})),
        "Sequence": with_audit(json!({
            "code": rw("text"),
            "project": rw_with("entity", json!({"valid_types": ["Project"]})),
            "shots": rw_with("multi_entity", json!({"valid_types": ["Shot"]}))
        })),
        "Shot": with_audit(json!({
            "code": rw("text"),
            "description": rw("text"),
            "sg_cut_in": rw("number"),
            "sg_priority": rw_with("number", json!({"default_value": 5})),
            "sg_rate": rw("float"),
            "sg_budget": rw("currency"),
            "sg_done": rw("percent"),
            "sg_length": rw("duration"),
            "sg_hero": rw("checkbox"),
            "sg_due": rw("date"),
            "sg_start": rw("date_time"),
            "sg_status_list": rw_with("status_list", json!({"valid_values": ["ip", "wtg", "fin"], "default_value": "wtg"})),
            "sg_shot_type": rw_with("list", json!({"valid_values": ["Hero", "BG"]})),
            "sg_kind": rw("entity_type"),
            "sg_color": rw("color"),
            "sg_uuid": rw("uuid"),
            "sg_link": rw("url"),
            "sg_data": rw("serializable"),
            "sg_sequence": rw_with("entity", json!({"valid_types": ["Sequence"]})),
            "project": rw_with("entity", json!({"valid_types": ["Project"]})),
            "assets": rw_with("multi_entity", json!({"valid_types": ["Asset"]})),
            "tasks": rw_with("multi_entity", json!({"valid_types": ["Task"]})),
            "tag_list": rw_with("tag_list", json!({"valid_types": ["Tag"]}))
        })),
        "Tag": with_audit(json!({"name": rw("text")})),
        "Asset": with_audit(json!({
            "code": rw("text"),
            "sg_asset_type": rw_with("list", json!({"valid_values": ["Character", "Prop"]})),
            "sg_status_list": rw_with("status_list", json!({"valid_values": ["ip", "wtg", "fin"], "default_value": "wtg"})),
            "project": rw_with("entity", json!({"valid_types": ["Project"]})),
            "shots": rw_with("multi_entity", json!({"valid_types": ["Shot"]})),
            "tasks": rw_with("multi_entity", json!({"valid_types": ["Task"]}))
        })),
        "Task": with_audit(json!({
            "content": rw("text"),
            "entity": rw_with("entity", json!({"valid_types": ["Shot", "Asset"]})),
            "project": rw_with("entity", json!({"valid_types": ["Project"]})),
            "sg_status_list": rw_with("status_list", json!({"valid_values": ["ip", "wtg", "fin"], "default_value": "wtg"})),
            "color": rw_with("color", json!({"default_value": "pipeline_step"}))
        })),
        "HumanUser": with_audit(json!({"name": rw("text"), "login": rw("text")})),
        "ApiUser": with_audit(json!({"firstname": rw("text")})),
        "EventLogEntry": {
            "id": ro("number", json!({})),
            "event_type": ro("text", json!({})),
            "attribute_name": ro("text", json!({})),
            "entity": ro("entity", json!({"valid_types": []})),
            "meta": ro("serializable", json!({})),
            "project": ro("entity", json!({"valid_types": ["Project"]})),
            "user": ro("entity", json!({"valid_types": ["HumanUser", "ApiUser"]})),
            "created_at": ro("date_time", json!({})),
            "session_uuid": ro("uuid", json!({})),
            "description": ro("text", json!({}))
        }
    })
}

pub fn small_schema() -> Schema {
    Schema::from_json(&schema_json(), None).expect("the small schema is valid")
}

/// The real site schema of the fixtures in tests/fixtures.
pub fn fixture_schema() -> Schema {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(format!("{dir}/{name}"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    Schema::from_json(
        &read("site-schema.fields.json"),
        Some(&read("site-schema.entities.json")),
    )
    .expect("the fixture schema is valid")
}

/// Every login the test sites accept: the main script, a script with
/// "Generate Events" off, and a user.
pub fn logins() -> Logins {
    Logins {
        allowed: vec![
            Credential::parse_script(&format!("{SCRIPT}:{KEY}")).expect("script"),
            Credential::parse_script(&format!("{QUIET_SCRIPT}:{QUIET_KEY}:no-events"))
                .expect("quiet script"),
            Credential::parse_user(&format!("{USER}:{PASSWORD}")).expect("user"),
        ],
    }
}

/// A running site; dropping it stops the server.
pub struct TestSite {
    pub url: String,
    pub site: Arc<Site>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestSite {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a site over `schema` holding `dataset`, on a free port.
pub async fn start_with(
    schema: Schema,
    dataset: Value,
    faults: EventFaults,
    options: ServerOptions,
) -> TestSite {
    let engine = Engine::new(SqliteStore::open_temporary().expect("db"), schema).expect("engine");
    engine.load_dataset(&dataset).expect("dataset");
    let site = Arc::new(Site::new(engine, logins(), faults).expect("site"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sg_sim::serve(site.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    TestSite {
        url,
        site,
        stop: Some(stop),
    }
}

/// The small schema with one Project, no event faults, no HTTP faults.
pub async fn start() -> TestSite {
    start_with(
        small_schema(),
        json!({"Project": [{"id": PROJECT_ID, "name": PROJECT_NAME}]}),
        EventFaults::default(),
        ServerOptions::default(),
    )
    .await
}

impl TestSite {
    /// The main script's client.
    pub fn client(&self) -> Client {
        self.client_as(Auth::script(SCRIPT, KEY))
    }

    pub fn client_as(&self, auth: Auth) -> Client {
        Client::new(&self.url, auth).expect("client")
    }
}

/// `{field: value, ...}` as the client sends fields: `[{field_name, value}]`.
pub fn field_list(fields: &Value) -> Value {
    Value::Array(
        fields
            .as_object()
            .expect("fields are a dictionary")
            .iter()
            .map(|(k, v)| json!({"field_name": k, "value": v}))
            .collect(),
    )
}

pub async fn call(c: &Client, method: &str, params: Value) -> Value {
    match c.call(method, Some(params.clone())).await {
        Ok(v) => v,
        Err(e) => panic!("{method} {params} failed: {e}"),
    }
}

/// Calls a method that must fail with a fault; returns the fault.
pub async fn fault(c: &Client, method: &str, params: Value) -> Fault {
    match c.call(method, Some(params.clone())).await {
        Err(ClientError::Fault(f)) => f,
        other => panic!("{method} {params}: expected a fault, got {other:?}"),
    }
}

/// `create` with `return_fields`; returns the result.
pub async fn create_returning(
    c: &Client,
    entity_type: &str,
    fields: Value,
    return_fields: &[&str],
) -> Value {
    call(
        c,
        "create",
        json!({"type": entity_type, "fields": field_list(&fields), "return_fields": return_fields}),
    )
    .await
}

/// `create` (return_fields `["id"]`, the client's default); returns the new id.
pub async fn create(c: &Client, entity_type: &str, fields: Value) -> i64 {
    let result = create_returning(c, entity_type, fields, &["id"]).await;
    assert_eq!(result["type"], json!(entity_type), "{result}");
    result["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("create {entity_type} gave no id: {result}"))
}

pub async fn update(c: &Client, entity_type: &str, id: i64, fields: Value) -> Value {
    call(
        c,
        "update",
        json!({"type": entity_type, "id": id, "fields": field_list(&fields)}),
    )
    .await
}

/// An update of one multi_entity field in a given mode (set, add, remove).
pub async fn update_mode(
    c: &Client,
    entity_type: &str,
    id: i64,
    field: &str,
    value: Value,
    mode: &str,
) -> Value {
    call(
        c,
        "update",
        json!({"type": entity_type, "id": id, "fields": [{"field_name": field, "value": value, "multi_entity_update_mode": mode}]}),
    )
    .await
}

pub async fn delete(c: &Client, entity_type: &str, id: i64) -> Value {
    call(c, "delete", json!({"type": entity_type, "id": id})).await
}

pub async fn revive(c: &Client, entity_type: &str, id: i64) -> Value {
    call(c, "revive", json!({"type": entity_type, "id": id})).await
}

/// The records a `read` returns (every page), in id order.
pub async fn read(
    c: &Client,
    entity_type: &str,
    fields: &[&str],
    conditions: Value,
    return_only: &str,
) -> Vec<Value> {
    let params = json!({
        "type": entity_type,
        "return_fields": fields,
        "filters": {"logical_operator": "and", "conditions": conditions},
        "return_only": return_only,
        "sorts": [{"field_name": "id", "direction": "asc"}],
        "api_return_image_urls": true,
    });
    c.read_all(params, 500)
        .await
        .unwrap_or_else(|e| panic!("read {entity_type} failed: {e}"))
}

/// One active record by id, or None.
pub async fn find(c: &Client, entity_type: &str, id: i64, fields: &[&str]) -> Option<Value> {
    read(
        c,
        entity_type,
        fields,
        json!([{"path": "id", "relation": "is", "values": [id]}]),
        "active",
    )
    .await
    .into_iter()
    .next()
}

/// One retired record by id, or None.
pub async fn find_retired(
    c: &Client,
    entity_type: &str,
    id: i64,
    fields: &[&str],
) -> Option<Value> {
    read(
        c,
        entity_type,
        fields,
        json!([{"path": "id", "relation": "is", "values": [id]}]),
        "retired",
    )
    .await
    .into_iter()
    .next()
}

/// One field of an active record.
pub async fn get(c: &Client, entity_type: &str, id: i64, field: &str) -> Value {
    find(c, entity_type, id, &[field])
        .await
        .unwrap_or_else(|| panic!("{entity_type} {id} is not active"))[field]
        .clone()
}

/// `[(type, id)]` of a list of links, for comparisons that ignore names.
pub fn pairs(links: &Value) -> Vec<(String, i64)> {
    links
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|l| {
                    (
                        l["type"].as_str().unwrap_or("").to_string(),
                        l["id"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn pair(entity_type: &str, id: i64) -> (String, i64) {
    (entity_type.to_string(), id)
}

/// The fields every EventLogEntry read asks for, as the official daemon does.
pub const EVENT_FIELDS: [&str; 8] = [
    "event_type",
    "attribute_name",
    "entity",
    "meta",
    "project",
    "user",
    "created_at",
    "session_uuid",
];

/// Every visible EventLogEntry row with an id above `after`, in id order.
pub async fn events_after(c: &Client, after: i64) -> Vec<Value> {
    read(
        c,
        "EventLogEntry",
        &EVENT_FIELDS,
        json!([{"path": "id", "relation": "greater_than", "values": [after]}]),
        "active",
    )
    .await
}

/// The highest visible event id (0 when the log is empty).
pub async fn last_event_id(c: &Client) -> i64 {
    events_after(c, 0)
        .await
        .last()
        .and_then(|r| r["id"].as_i64())
        .unwrap_or(0)
}

/// The number of records of a type, active or retired.
pub async fn count(c: &Client, entity_type: &str, return_only: &str) -> usize {
    read(c, entity_type, &["id"], json!([]), return_only)
        .await
        .len()
}

/// `meta` as a map.
pub fn meta(row: &Value) -> Map<String, Value> {
    row["meta"]
        .as_object()
        .cloned()
        .unwrap_or_else(|| panic!("meta is not a dictionary: {row}"))
}

/// Sorted keys of a map.
pub fn keys(map: &Map<String, Value>) -> Vec<String> {
    let mut k: Vec<String> = map.keys().cloned().collect();
    k.sort();
    k
}

/// A compact line per row, for assertion messages.
pub fn describe(rows: &[Value]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["id"], r["event_type"], r["attribute_name"], r["entity"], r["meta"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until just after the start of the next wall-clock second, so that a
/// few quick calls share one second-resolution timestamp.
pub async fn at_start_of_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let to_next = 1_000_000_000u64 - u64::from(now.subsec_nanos());
    tokio::time::sleep(
        std::time::Duration::from_nanos(to_next) + std::time::Duration::from_millis(20),
    )
    .await;
}

/// Waits until the wall-clock second changes.
pub async fn next_second() {
    at_start_of_second().await;
}
