//! `schema_field_create`, `schema_field_update` and `schema_field_delete`:
//! edits to the site's schema, applied to the engine's catalog at once and
//! logged as `Shotgun_DisplayColumn_New`, `_Change` and `_Delete` rows.

use serde_json::{json, Map, Value};

use sg_protocol::schema::attribute;
use sg_protocol::value::EntityLink;
use sg_protocol::{DataType, Fault, Schema};

use crate::events::EventRow;
use crate::methods::Site;
use crate::writes::Caller;

/// `[{property_name, value}]` as a map.
fn properties(params: &Map<String, Value>, method: &str) -> Result<Map<String, Value>, Fault> {
    let mut out = Map::new();
    for item in params
        .get("properties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = item
            .get("property_name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Fault::bad_request(format!(
                    "API {method}() each property needs a 'property_name'"
                ))
            })?;
        out.insert(
            name.to_string(),
            item.get("value").cloned().unwrap_or(Value::Null),
        );
    }
    Ok(out)
}

/// `sg_` plus the display name in lower case, `_` for anything else, `_1`... if taken.
fn field_name_for(display: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut base = String::from("sg_");
    let mut last_underscore = true;
    for c in display.chars() {
        if c.is_ascii_alphanumeric() {
            base.push(c.to_ascii_lowercase());
            last_underscore = false;
        } else if !last_underscore {
            base.push('_');
            last_underscore = true;
        }
    }
    let base = base.trim_end_matches('_').to_string();
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|n| format!("{base}_{n}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// Applies editable properties to a field definition.
fn apply_properties(raw: &mut Value, props: &Map<String, Value>) {
    for (name, value) in props {
        match name.as_str() {
            "name" | "description" => raw[name.as_str()] = attribute(value.clone(), true),
            _ => raw["properties"][name.as_str()] = attribute(value.clone(), true),
        }
    }
}

fn display_column_row(
    kind: &str,
    id: i64,
    field: &str,
    entity_type: &str,
    meta_extra: Map<String, Value>,
) -> EventRow {
    let mut meta = Map::new();
    meta.insert(
        "type".into(),
        json!(if kind == "New" {
            "new_entity"
        } else {
            "attribute_change"
        }),
    );
    meta.insert("entity_type".into(), json!("DisplayColumn"));
    meta.insert("entity_id".into(), json!(id));
    meta.insert("field_name".into(), json!(field));
    meta.insert("field_entity_type".into(), json!(entity_type));
    let attribute_name = meta_extra
        .get("attribute_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    meta.extend(meta_extra);
    EventRow {
        id: 0,
        event_type: format!("Shotgun_DisplayColumn_{kind}"),
        attribute_name,
        entity: Some(EntityLink {
            entity_type: "DisplayColumn".into(),
            id,
        }),
        meta: Value::Object(meta),
        project: None,
        description: format!("{kind} field {entity_type}.{field}"),
    }
}

/// The id of a field's DisplayColumn: the same for every row about one field
/// (derived from its type and name, as the simulated site keeps no
/// DisplayColumn records).
fn display_column_id(entity_type: &str, field: &str) -> i64 {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in entity_type.bytes().chain([b'.']).chain(field.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 33) as i64 + 1
}

/// Runs one schema edit and returns what the site returns for it.
pub fn edit(
    site: &Site,
    caller: &Caller,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Value, Fault> {
    let entity_type = params
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::bad_request(format!("API {method}() 'type' is required")))?
        .to_string();
    let catalog = site.engine.catalog();
    let mut fields_json = catalog.schema.to_fields_json();
    let entities_json = catalog.schema.to_entities_json();
    let entity_fields = fields_json
        .get_mut(&entity_type)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            Fault::bad_request(format!(
                "API {method}() entity type {entity_type} doesn't exist"
            ))
        })?;
    let props = properties(params, method)?;
    let (result, field, kind, extra) = match method {
        "schema_field_create" => {
            let data_type = params
                .get("data_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            if DataType::parse(data_type) == DataType::Unknown {
                return Err(Fault::bad_request(format!(
                    "API {method}() unknown data_type '{data_type}'"
                )));
            }
            let display = props
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if display.trim().is_empty() {
                return Err(Fault::bad_request(format!(
                    "API {method}() the 'name' property is required"
                )));
            }
            let name = field_name_for(&display, |n| entity_fields.contains_key(n));
            let mut raw = json!({
                "data_type": attribute(json!(data_type), false),
                "description": attribute(json!(""), true),
                "editable": attribute(json!(true), false),
                "entity_type": attribute(json!(entity_type), false),
                "mandatory": attribute(json!(false), false),
                "name": attribute(json!(display), true),
                "unique": attribute(json!(false), false),
                "visible": attribute(json!(true), false),
                "properties": {
                    "default_value": attribute(Value::Null, false),
                    "summary_default": attribute(json!("none"), true)
                }
            });
            apply_properties(&mut raw, &props);
            entity_fields.insert(name.clone(), raw);
            (json!(name), name, "New", Map::new())
        }
        "schema_field_update" => {
            let name = params
                .get("field_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let raw = entity_fields.get_mut(&name).ok_or_else(|| {
                Fault::bad_request(format!("API {method}() {entity_type}.{name} doesn't exist"))
            })?;
            let before = raw.clone();
            apply_properties(raw, &props);
            // A rename is a change of `human_name`; anything else of `properties`,
            // with just the properties that were given.
            let mut extra = Map::new();
            if props.len() == 1 && props.contains_key("name") {
                extra.insert("attribute_name".into(), json!("human_name"));
                extra.insert("old_value".into(), before["name"]["value"].clone());
                extra.insert("new_value".into(), raw["name"]["value"].clone());
            } else {
                let pick = |def: &Value| -> Value {
                    let mut out = Map::new();
                    for key in props.keys() {
                        let v = match key.as_str() {
                            "name" | "description" => def[key.as_str()]["value"].clone(),
                            _ => def["properties"][key.as_str()]["value"].clone(),
                        };
                        out.insert(key.clone(), v);
                    }
                    Value::Object(out)
                };
                extra.insert("attribute_name".into(), json!("properties"));
                extra.insert("old_value".into(), pick(&before));
                extra.insert("new_value".into(), pick(raw));
            }
            (json!(true), name, "Change", extra)
        }
        _ => {
            let name = params
                .get("field_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if name == "id" || entity_fields.remove(&name).is_none() {
                return Err(Fault::bad_request(format!(
                    "API {method}() {entity_type}.{name} can't be deleted"
                )));
            }
            (json!(true), name, "Delete", Map::new())
        }
    };
    let schema = Schema::from_json(&fields_json, Some(&entities_json))?;
    site.engine.set_schema(schema).map_err(|e| e.to_fault())?;
    if let Err(e) = site.save_schema() {
        tracing::error!("could not save the schema: {e}");
    }
    let method_static: &'static str = match method {
        "schema_field_create" => "schema_field_create",
        "schema_field_update" => "schema_field_update",
        _ => "schema_field_delete",
    };
    let column = display_column_id(&entity_type, &field);
    site.write(caller, method_static, |tx| {
        let id = (tx.allocate)();
        let row = display_column_row(kind, column, &field, &entity_type, extra.clone());
        tx.rows.push(EventRow { id, ..row });
        Ok(())
    })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_field_names_follow_the_site() {
        assert_eq!(field_name_for("Shot Budget!", |_| false), "sg_shot_budget");
        assert_eq!(
            field_name_for("Budget", |n| n == "sg_budget"),
            "sg_budget_1"
        );
        assert_eq!(
            field_name_for("Budget", |n| n == "sg_budget" || n == "sg_budget_1"),
            "sg_budget_2"
        );
    }
}
