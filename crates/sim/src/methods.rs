//! The methods the simulated site answers, one function each, behind one
//! dispatch on `method_name`.

use serde_json::{json, Map, Value};

use sg_engine::{Engine, SqliteStore};
use sg_protocol::{Fault, ReadParams, Reply, Request, SummarizeParams};

use crate::auth::Logins;

/// The version the site reports; ≥ 7.10 makes the client use its modern wire format.
pub const SITE_VERSION: [u32; 3] = [8, 50, 0];

/// A simulated site: its data and who may call it.
pub struct Site {
    pub engine: Engine<SqliteStore>,
    pub logins: Logins,
}

impl Site {
    /// Answers one decoded request. Never panics on bad input: every
    /// problem with the request comes back as a fault.
    pub fn handle(&self, request: &Request) -> Result<Reply, Fault> {
        if request.method_name == "info" {
            return Ok(Reply::Bare(info()));
        }
        self.logins.check(request.auth.as_ref())?;
        let engine_fault = |e: sg_engine::EngineError| e.to_fault();
        match request.method_name.as_str() {
            "read" => {
                let params = ReadParams::from_json(request.params_object()?)?;
                self.engine
                    .read(&params)
                    .map(Reply::Results)
                    .map_err(engine_fault)
            }
            "summarize" => {
                let params = SummarizeParams::from_json(request.params_object()?)?;
                self.engine
                    .summarize(&params)
                    .map(Reply::Results)
                    .map_err(engine_fault)
            }
            "schema_read" => Ok(Reply::Results(self.engine.catalog().schema.to_fields_json())),
            "schema_entity_read" => {
                Ok(Reply::Results(self.engine.catalog().schema.to_entities_json()))
            }
            "schema_field_read" => self
                .schema_field_read(request.params_object()?)
                .map(Reply::Results),
            other => Err(Fault::bad_request(format!("Unknown method '{other}'"))),
        }
    }

    fn schema_field_read(&self, params: &Map<String, Value>) -> Result<Value, Fault> {
        let entity_type = params
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Fault::bad_request("API schema_field_read() 'type' is required"))?;
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
