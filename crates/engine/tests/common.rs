//! Shared fixtures for the engine's integration tests: a small production
//! schema with a field of every filterable data type, and helpers to read.

#![allow(dead_code)]

use serde_json::{json, Map, Value};

use sg_engine::{Engine, SqliteStore};
use sg_protocol::{ReadParams, Schema};

fn field(data_type: &str, extra: Value) -> Value {
    let mut properties = json!({
        "default_value": {"value": null, "editable": false},
        "summary_default": {"value": "none", "editable": true}
    });
    if let (Some(p), Some(e)) = (properties.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), json!({"value": v, "editable": true}));
        }
    }
    json!({"data_type": {"value": data_type, "editable": false}, "properties": properties})
}

/// A schema with every data type the site can filter on.
pub fn schema() -> Schema {
    let fields = json!({
        "Project": {"id": field("number", json!({})), "name": field("text", json!({})), "archived": field("checkbox", json!({}))},
        "Sequence": {"id": field("number", json!({})), "code": field("text", json!({})),
                     "project": field("entity", json!({"valid_types": ["Project"]}))},
        "Asset": {"id": field("number", json!({})), "code": field("text", json!({})),
                  "sg_asset_type": field("list", json!({"valid_values": ["Character", "Prop"]}))},
        "HumanUser": {"id": field("number", json!({})), "name": field("text", json!({})), "login": field("text", json!({}))},
        "Shot": {
            "id": field("number", json!({})),
            "code": field("text", json!({})),
            "description": field("text", json!({})),
            "sg_cut_in": field("number", json!({})),
            "sg_rate": field("float", json!({})),
            "sg_budget": field("currency", json!({})),
            "sg_done": field("percent", json!({})),
            "sg_length": field("duration", json!({})),
            "src_in": field("timecode", json!({})),
            "sg_hero": field("checkbox", json!({})),
            "sg_due": field("date", json!({})),
            "created_at": field("date_time", json!({})),
            "sg_status_list": field("status_list", json!({"valid_values": ["ip", "wtg", "fin"]})),
            "sg_shot_type": field("list", json!({"valid_values": ["Hero", "BG"]})),
            "sg_kind": field("entity_type", json!({})),
            "sg_color": field("color", json!({})),
            "sg_uuid": field("uuid", json!({})),
            "image": field("image", json!({})),
            "sg_link": field("url", json!({})),
            "sg_data": field("serializable", json!({})),
            "sg_secret": field("password", json!({})),
            "sg_sequence": field("entity", json!({"valid_types": ["Sequence"]})),
            "project": field("entity", json!({"valid_types": ["Project"]})),
            "assets": field("multi_entity", json!({"valid_types": ["Asset"]})),
            "tags": field("tag_list", json!({"valid_types": ["Tag"]})),
            "users": field("multi_entity", json!({"valid_types": ["HumanUser"]})),
            "cc": field("addressing", json!({"valid_types": ["HumanUser"]}))
        }
    });
    Schema::from_json(&fields, None).expect("test schema is valid")
}

pub fn engine() -> Engine<SqliteStore> {
    Engine::new(SqliteStore::open_temporary().expect("temp db"), schema()).expect("engine")
}

pub fn params(v: Value) -> ReadParams {
    ReadParams::from_json(v.as_object().expect("object")).expect("valid read params")
}

/// A read with one condition, answered as ids.
pub fn ids(engine: &Engine<SqliteStore>, entity_type: &str, conditions: Value) -> Vec<i64> {
    let p = params(json!({"type": entity_type, "return_fields": ["id"],
        "filters": {"logical_operator": "and", "conditions": conditions}}));
    let result = engine
        .read(&p)
        .unwrap_or_else(|e| panic!("read failed: {e} for {conditions}"));
    result["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|r| r["id"].as_i64().unwrap_or(-1))
        .collect()
}

/// A read's entities.
pub fn entities(engine: &Engine<SqliteStore>, v: Value) -> Vec<Value> {
    engine.read(&params(v)).expect("read")["entities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn cond(path: &str, relation: &str, values: Value) -> Value {
    json!({"path": path, "relation": relation, "values": values})
}

pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}
