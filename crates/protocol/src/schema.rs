//! Schema structures as `schema_read`, `schema_entity_read` and
//! `schema_field_read` return them: every attribute a `{value, editable}` pair.
//!
//! The raw JSON of each field is kept, so the schema is served back exactly as
//! it was read, while the parts the engine needs are lifted into typed fields.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::datatype::DataType;
use crate::fault::Fault;

/// One field's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSchema {
    pub name: String,
    pub data_type: DataType,
    /// `properties.valid_types` for entity, multi_entity and tag_list fields.
    pub valid_types: Vec<String>,
    /// `properties.valid_values` for list and status_list fields.
    pub valid_values: Vec<String>,
    pub default_value: Value,
    /// The definition exactly as `schema_field_read` returns it.
    pub raw: Value,
}

/// One entity type: its display name and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySchema {
    pub name: String,
    /// The `schema_entity_read` entry (`{name: {value, editable}, visible: ...}`).
    pub raw: Value,
    pub fields: BTreeMap<String, FieldSchema>,
}

/// A whole site schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schema {
    pub entities: BTreeMap<String, EntitySchema>,
}

fn attr<'a>(obj: &'a Value, key: &str) -> &'a Value {
    obj.get(key)
        .and_then(|a| a.get("value"))
        .unwrap_or(&Value::Null)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Wraps a plain value as a schema attribute.
pub fn attribute(value: Value, editable: bool) -> Value {
    json!({"value": value, "editable": editable})
}

impl FieldSchema {
    pub fn from_json(name: &str, raw: &Value) -> Result<FieldSchema, Fault> {
        if !raw.is_object() {
            return Err(Fault::bad_request(format!(
                "schema field '{name}' is not a dictionary"
            )));
        }
        let data_type_name = attr(raw, "data_type")
            .as_str()
            .ok_or_else(|| Fault::bad_request(format!("schema field '{name}' has no data_type")))?;
        let properties = raw.get("properties").cloned().unwrap_or(Value::Null);
        Ok(FieldSchema {
            name: name.to_string(),
            data_type: DataType::parse(data_type_name),
            valid_types: strings(attr(&properties, "valid_types")),
            valid_values: strings(attr(&properties, "valid_values")),
            default_value: attr(&properties, "default_value").clone(),
            raw: raw.clone(),
        })
    }

    /// The display name shown in the UI (`name.value`).
    pub fn display_name(&self) -> &str {
        attr(&self.raw, "name").as_str().unwrap_or(&self.name)
    }
}

impl Schema {
    /// Builds a schema from a `schema_read` answer and, optionally, a
    /// `schema_entity_read` answer (entity display names default to the type name).
    pub fn from_json(fields: &Value, entities: Option<&Value>) -> Result<Schema, Fault> {
        let types = fields
            .as_object()
            .ok_or_else(|| Fault::bad_request("schema must be a dictionary of entity types"))?;
        let mut schema = Schema::default();
        for (type_name, type_fields) in types {
            let field_map = type_fields.as_object().ok_or_else(|| {
                Fault::bad_request(format!("schema of '{type_name}' is not a dictionary"))
            })?;
            let mut parsed = BTreeMap::new();
            for (field_name, raw) in field_map {
                parsed.insert(field_name.clone(), FieldSchema::from_json(field_name, raw)?);
            }
            let raw = entities
                .and_then(|e| e.get(type_name))
                .cloned()
                .unwrap_or_else(|| {
                    json!({"name": attribute(json!(type_name), false), "visible": attribute(json!(true), false)})
                });
            schema.entities.insert(
                type_name.clone(),
                EntitySchema {
                    name: type_name.clone(),
                    raw,
                    fields: parsed,
                },
            );
        }
        Ok(schema)
    }

    pub fn entity(&self, name: &str) -> Option<&EntitySchema> {
        self.entities.get(name)
    }

    /// The `schema_read` answer.
    pub fn to_fields_json(&self) -> Value {
        let mut out = Map::new();
        for (name, entity) in &self.entities {
            out.insert(name.clone(), entity.fields_json());
        }
        Value::Object(out)
    }

    /// The `schema_entity_read` answer.
    pub fn to_entities_json(&self) -> Value {
        let mut out = Map::new();
        for (name, entity) in &self.entities {
            out.insert(name.clone(), entity.raw.clone());
        }
        Value::Object(out)
    }
}

impl EntitySchema {
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.get(name)
    }

    /// The `schema_field_read` answer for every field of this type.
    pub fn fields_json(&self) -> Value {
        let mut out = Map::new();
        for (name, field) in &self.fields {
            out.insert(name.clone(), field.raw.clone());
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_attributes_and_lifts_typed_ones() {
        let fields = json!({"Shot": {
            "sg_status_list": {"data_type": {"value": "status_list", "editable": false},
                "name": {"value": "Status", "editable": true},
                "properties": {"default_value": {"value": "wtg", "editable": true},
                               "valid_values": {"value": ["ip", "wtg"], "editable": true}}},
            "sg_sequence": {"data_type": {"value": "entity", "editable": false},
                "properties": {"default_value": {"value": null, "editable": false},
                               "valid_types": {"value": ["Sequence"], "editable": true}}}}});
        let schema = Schema::from_json(&fields, None).unwrap();
        let shot = schema.entity("Shot").unwrap();
        let status = shot.field("sg_status_list").unwrap();
        assert_eq!(status.data_type, DataType::StatusList);
        assert_eq!(status.valid_values, vec!["ip", "wtg"]);
        assert_eq!(status.default_value, json!("wtg"));
        assert_eq!(status.display_name(), "Status");
        assert_eq!(
            shot.field("sg_sequence").unwrap().valid_types,
            vec!["Sequence"]
        );
        assert_eq!(schema.to_fields_json(), fields);
        assert_eq!(
            schema.to_entities_json()["Shot"]["name"]["value"],
            json!("Shot")
        );
    }

    #[test]
    fn loads_the_real_site_schema() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
        let Ok(text) = std::fs::read_to_string(format!("{dir}site-schema.fields.json")) else {
            panic!("the site schema fixtures are in tests/fixtures of the repository ({dir})");
        };
        let fields: Value = serde_json::from_str(&text).unwrap();
        let schema = Schema::from_json(&fields, None).unwrap();
        assert_eq!(schema.entities.len(), 77);
        let count: usize = schema.entities.values().map(|e| e.fields.len()).sum();
        assert_eq!(count, 1035);
        assert!(schema
            .entities
            .values()
            .flat_map(|e| e.fields.values())
            .all(|f| f.data_type != DataType::Unknown));
    }
}
