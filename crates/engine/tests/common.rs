//! Shared fixtures for the engine's integration tests: the stores every case
//! runs on, a small production schema with a field of every filterable data
//! type, and helpers to read.
//!
//! Every case runs once per store: a case is a function taking the
//! [`Backend`], and [`engine_tests!`] makes a `sqlite::<case>` and a
//! `postgres::<case>` test of each (`cargo test -p sg-engine postgres::`
//! runs one store's). The PostgreSQL cases need the server named by
//! `SHOTGUN_CACHE_TEST_POSTGRES` (default [`DEFAULT_TEST_URL`], the local
//! server CI starts) and fail if it cannot be reached; each gets a fresh
//! schema of its own, dropped when its engine is dropped.

#![allow(dead_code, unused_macros)]

use serde_json::{json, Map, Value};

use sg_engine::postgres::DEFAULT_TEST_URL;
use sg_engine::{AnyStore, Engine, PostgresStore, SqliteStore, Store};
use sg_protocol::{ReadParams, Schema};

/// The store a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An engine on either store.
pub type TestEngine = Engine<AnyStore>;

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    std::env::var("SHOTGUN_CACHE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_URL.to_string())
}

/// A fresh, empty store: a temporary SQLite file, or a schema of its own on
/// the PostgreSQL server. Panics if the server cannot be reached.
pub fn store(backend: Backend) -> AnyStore {
    match backend {
        Backend::Sqlite => SqliteStore::open_temporary().expect("temp db").into(),
        Backend::Postgres => {
            let url = postgres_url();
            PostgresStore::open_temporary(&url)
                .unwrap_or_else(|e| {
                    panic!(
                        "the PostgreSQL tests need a server at {url} (set SHOTGUN_CACHE_TEST_POSTGRES \
                         to another): {e}"
                    )
                })
                .into()
        }
    }
}

/// Makes each listed case a test on every store: `sqlite::case` and
/// `postgres::case`. Attributes before a case (`#[ignore]`) go on both.
macro_rules! engine_tests {
    ($($(#[$attr:meta])* $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                $(#[$attr])*
                #[test]
                fn $case() {
                    super::$case(crate::common::Backend::Sqlite)
                }
            )*
        }
        mod postgres {
            $(
                $(#[$attr])*
                #[test]
                fn $case() {
                    super::$case(crate::common::Backend::Postgres)
                }
            )*
        }
    };
}

pub fn field(data_type: &str, extra: Value) -> Value {
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
    Schema::from_json(&schema_fields(), None).expect("test schema is valid")
}

/// The fields of [`schema`] as the site's `schema_read` gives them.
pub fn schema_fields() -> Value {
    json!({
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
    })
}

pub fn engine(backend: Backend) -> TestEngine {
    Engine::new(store(backend), schema()).expect("engine")
}

pub fn params(v: Value) -> ReadParams {
    ReadParams::from_json(v.as_object().expect("object")).expect("valid read params")
}

/// A read with one condition, answered as ids.
pub fn ids<S: Store>(engine: &Engine<S>, entity_type: &str, conditions: Value) -> Vec<i64> {
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
pub fn entities<S: Store>(engine: &Engine<S>, v: Value) -> Vec<Value> {
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
