//! Converts between wire values and stored column values, for every storage kind.
//!
//! Encoding checks each value's shape against the field's data type, so a bad
//! value is refused with a fault rather than stored.

use serde_json::{json, Value};

use sg_protocol::value::{format_date_time, parse_date, parse_date_time, EntityLink};

use crate::error::{bad_request, EngineError};
use crate::layout::{FieldLayout, Storage};
use crate::sql::SqlValue;

fn wrong(field: &FieldLayout, value: &Value) -> EngineError {
    bad_request(format!(
        "{} value {} is not valid for a {} field",
        field.name, value, field.data_type
    ))
}

/// The stored value of a single-column field.
pub fn encode_scalar(field: &FieldLayout, value: &Value) -> Result<SqlValue, EngineError> {
    if value.is_null() {
        return Ok(match field.storage {
            Storage::Bool => SqlValue::Int(0),
            _ => SqlValue::Null,
        });
    }
    if field.storage == Storage::Tags {
        return encode_tags(field, value);
    }
    Ok(match field.storage {
        Storage::Id | Storage::Integer => match value.as_i64() {
            Some(i) => SqlValue::Int(i),
            None => return Err(wrong(field, value)),
        },
        Storage::Real => match value.as_f64() {
            Some(f) => SqlValue::Real(f),
            None => return Err(wrong(field, value)),
        },
        Storage::Bool => match value.as_bool() {
            Some(b) => SqlValue::Int(b as i64),
            None => return Err(wrong(field, value)),
        },
        Storage::Text => match value.as_str() {
            Some(s) => SqlValue::Text(s.to_string()),
            None => return Err(wrong(field, value)),
        },
        Storage::Date => match value.as_str().filter(|s| parse_date(s).is_some()) {
            Some(s) => SqlValue::Text(s.to_string()),
            None => return Err(wrong(field, value)),
        },
        Storage::DateTime => match value.as_str().and_then(parse_date_time) {
            Some(t) => SqlValue::Int(t),
            None => return Err(wrong(field, value)),
        },
        Storage::Json => SqlValue::Text(value.to_string()),
        Storage::Entity | Storage::Links | Storage::Tags => return Err(wrong(field, value)),
    })
}

/// The stored form of a tag_list value: its names as a JSON array, each
/// once, in the order given; null for no names.
fn encode_tags(field: &FieldLayout, value: &Value) -> Result<SqlValue, EngineError> {
    let names = tag_names(value).ok_or_else(|| wrong(field, value))?;
    if names.is_empty() {
        return Ok(SqlValue::Null);
    }
    Ok(SqlValue::Text(Value::from(names).to_string()))
}

/// The names of a tag_list value (null is none), each once, in the order
/// given; `None` unless it is a list of strings.
pub fn tag_names(value: &Value) -> Option<Vec<String>> {
    let items = match value {
        Value::Null => return Some(Vec::new()),
        Value::Array(items) => items,
        _ => return None,
    };
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let name = item.as_str()?;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Some(names)
}

/// [`encode_scalar`] of a value the caller gives up: text is moved, not copied.
pub fn encode_scalar_owned(field: &FieldLayout, value: Value) -> Result<SqlValue, EngineError> {
    match (field.storage, value) {
        (Storage::Text, Value::String(s)) => Ok(SqlValue::Text(s)),
        (Storage::Date, Value::String(s)) if parse_date(&s).is_some() => Ok(SqlValue::Text(s)),
        (_, value) => encode_scalar(field, &value),
    }
}

/// The `(type, id)` columns of an entity field.
pub fn encode_entity(
    field: &FieldLayout,
    value: &Value,
) -> Result<(SqlValue, SqlValue), EngineError> {
    if value.is_null() {
        return Ok((SqlValue::Null, SqlValue::Null));
    }
    let link = EntityLink::from_json(value).ok_or_else(|| wrong(field, value))?;
    Ok((SqlValue::Text(link.entity_type), SqlValue::Int(link.id)))
}

/// The rows of a link table for a list of links.
pub fn encode_links(field: &FieldLayout, value: &Value) -> Result<Vec<EntityLink>, EngineError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|v| EntityLink::from_json(v).ok_or_else(|| wrong(field, v)))
            .collect(),
        _ => Err(wrong(field, value)),
    }
}

/// The wire value of a single-column field.
pub fn decode_scalar(storage: Storage, value: &SqlValue) -> Value {
    match (storage, value) {
        (Storage::Bool, v) => json!(v.as_i64().unwrap_or(0) != 0),
        // A record without tags shows an empty list, as a site shows it.
        (Storage::Tags, SqlValue::Text(t)) => serde_json::from_str(t).unwrap_or_else(|_| json!([])),
        (Storage::Tags, _) => json!([]),
        (_, SqlValue::Null) => Value::Null,
        (Storage::Id | Storage::Integer, v) => v.as_i64().map(Value::from).unwrap_or(Value::Null),
        (Storage::Real, SqlValue::Real(f)) => json!(f),
        (Storage::Real, SqlValue::Int(i)) => json!(*i as f64),
        (Storage::DateTime, v) => v
            .as_i64()
            .map(|t| json!(format_date_time(t)))
            .unwrap_or(Value::Null),
        (Storage::Json, SqlValue::Text(t)) => serde_json::from_str(t).unwrap_or(Value::Null),
        (_, SqlValue::Text(t)) => json!(t),
        (_, SqlValue::Int(i)) => json!(i),
        (_, SqlValue::Real(f)) => json!(f),
    }
}

/// Writes the wire value of a single-column field as JSON text: the very
/// text `decode_scalar(storage, value).to_string()` gives, arm for arm,
/// without building the `Value` (what the proxy's replies are made of).
pub fn write_scalar(out: &mut Vec<u8>, storage: Storage, value: &SqlValue) {
    // Writing into a Vec can't fail, and these types always serialise.
    match (storage, value) {
        (Storage::Bool, v) => out.extend_from_slice(if v.as_i64().unwrap_or(0) != 0 {
            b"true"
        } else {
            b"false"
        }),
        (Storage::Tags, SqlValue::Text(t)) => {
            let parsed: Value = serde_json::from_str(t).unwrap_or_else(|_| json!([]));
            let _ = serde_json::to_writer(&mut *out, &parsed);
        }
        (Storage::Tags, _) => out.extend_from_slice(b"[]"),
        (_, SqlValue::Null) => out.extend_from_slice(b"null"),
        (Storage::Id | Storage::Integer, v) => match v.as_i64() {
            Some(i) => {
                let _ = serde_json::to_writer(&mut *out, &i);
            }
            None => out.extend_from_slice(b"null"),
        },
        // serde_json prints a non-finite float as null, as json!(f) holds it.
        (Storage::Real, SqlValue::Real(f)) => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        (Storage::Real, SqlValue::Int(i)) => {
            let _ = serde_json::to_writer(&mut *out, &(*i as f64));
        }
        (Storage::DateTime, v) => match v.as_i64() {
            Some(t) => crate::render::write_str(out, &format_date_time(t)),
            None => out.extend_from_slice(b"null"),
        },
        // Stored JSON is re-printed, so its spacing and key order are the decoded value's.
        (Storage::Json, SqlValue::Text(t)) => {
            let parsed: Value = serde_json::from_str(t).unwrap_or(Value::Null);
            let _ = serde_json::to_writer(&mut *out, &parsed);
        }
        (_, SqlValue::Text(t)) => crate::render::write_str(out, t),
        (_, SqlValue::Int(i)) => {
            let _ = serde_json::to_writer(&mut *out, i);
        }
        (_, SqlValue::Real(f)) => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sg_protocol::DataType;

    fn field(data_type: DataType) -> FieldLayout {
        FieldLayout::new("f", data_type, Storage::for_data_type(data_type), vec![])
    }

    /// Every data type's wire value survives a round trip through storage.
    #[test]
    fn every_scalar_type_round_trips() {
        let cases = [
            (DataType::Text, json!("héllo <b>")),
            (DataType::Number, json!(42)),
            (DataType::Duration, json!(600)),
            (DataType::Percent, json!(50)),
            (DataType::Timecode, json!(1000)),
            (DataType::Float, json!(1.5)),
            (DataType::Currency, json!(9.99)),
            (DataType::Checkbox, json!(true)),
            (DataType::Checkbox, json!(false)),
            (DataType::Date, json!("2024-02-29")),
            (DataType::DateTime, json!("2024-01-02T03:04:05Z")),
            (DataType::List, json!("Character")),
            (DataType::StatusList, json!("ip")),
            (DataType::EntityType, json!("Shot")),
            (DataType::Color, json!("255,0,0")),
            (
                DataType::Uuid,
                json!("5d7f6b9e-0000-4000-8000-000000000000"),
            ),
            (
                DataType::Url,
                json!({"url": "http://x", "name": "x", "link_type": "web", "content_type": null}),
            ),
            (DataType::Serializable, json!({"a": [1, 2]})),
            (DataType::Image, json!("http://thumb/1.png")),
        ];
        for (data_type, value) in cases {
            let f = field(data_type);
            let stored = encode_scalar(&f, &value).unwrap();
            assert_eq!(decode_scalar(f.storage, &stored), value, "{data_type}");
        }
    }

    /// The bytes path prints every stored shape exactly as the Value path does.
    #[test]
    fn written_scalars_match_decoded_ones() {
        let storages = [
            Storage::Id,
            Storage::Integer,
            Storage::Real,
            Storage::Text,
            Storage::Bool,
            Storage::Date,
            Storage::DateTime,
            Storage::Json,
            Storage::Tags,
        ];
        let values = [
            SqlValue::Null,
            SqlValue::Int(0),
            SqlValue::Int(-7),
            SqlValue::Int(i64::MAX),
            SqlValue::Int(1_700_000_000),
            SqlValue::Int(i64::MIN),
            SqlValue::Real(1.0),
            SqlValue::Real(-0.0),
            SqlValue::Real(1e300),
            SqlValue::Real(0.1),
            SqlValue::Real(f64::NAN),
            SqlValue::Real(f64::INFINITY),
            SqlValue::Text("héllo \"q\" \\ \n \u{1f}".into()),
            SqlValue::Text("2024-02-29".into()),
            SqlValue::Text("{\"url\": \"http://x\", \"name\": null}".into()),
            SqlValue::Text("not json".into()),
            SqlValue::Text("[\"hero\", \"fx \\\"b\\\"\"]".into()),
            SqlValue::Text(String::new()),
        ];
        for storage in storages {
            for value in &values {
                let mut out = Vec::new();
                write_scalar(&mut out, storage, value);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    decode_scalar(storage, value).to_string(),
                    "{storage:?} {value:?}"
                );
            }
        }
    }

    #[test]
    fn nulls_read_back_as_the_site_shows_them() {
        assert_eq!(
            decode_scalar(
                Storage::Bool,
                &encode_scalar(&field(DataType::Checkbox), &Value::Null).unwrap()
            ),
            json!(false)
        );
        assert_eq!(decode_scalar(Storage::Text, &SqlValue::Null), Value::Null);
        assert_eq!(
            decode_scalar(Storage::DateTime, &SqlValue::Null),
            Value::Null
        );
    }

    #[test]
    fn values_of_the_wrong_shape_are_refused() {
        let cases = [
            (DataType::Number, json!("12")),
            (DataType::Number, json!(1.5)),
            (DataType::Float, json!("x")),
            (DataType::Checkbox, json!(1)),
            (DataType::Date, json!("2024-13-01")),
            (DataType::Date, json!("2024-01-01T00:00:00Z")),
            (DataType::DateTime, json!("2024-01-01")),
            (DataType::Text, json!(5)),
        ];
        for (data_type, value) in cases {
            assert!(
                encode_scalar(&field(data_type), &value).is_err(),
                "{data_type} {value}"
            );
        }
        assert!(encode_entity(&field(DataType::Entity), &json!({"type": "Shot"})).is_err());
        assert!(encode_links(
            &field(DataType::MultiEntity),
            &json!({"type": "Shot", "id": 1})
        )
        .is_err());
    }

    #[test]
    fn tag_lists_store_names_in_order_and_refuse_anything_else() {
        let f = field(DataType::TagList);
        assert_eq!(f.storage, Storage::Tags);
        let stored = encode_scalar(&f, &json!(["b", "a", "b", "A"])).unwrap();
        assert_eq!(
            decode_scalar(f.storage, &stored),
            json!(["b", "a", "A"]),
            "in order, each name once"
        );
        for none in [json!(null), json!([])] {
            let stored = encode_scalar(&f, &none).unwrap();
            assert_eq!(stored, SqlValue::Null);
            assert_eq!(decode_scalar(f.storage, &stored), json!([]));
        }
        for bad in [
            json!("a"),
            json!([1]),
            json!([{"type": "Tag", "id": 1}]),
            json!(["a", null]),
            json!({"a": 1}),
        ] {
            assert!(encode_scalar(&f, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_encode_as_type_and_id() {
        let f = field(DataType::Entity);
        assert_eq!(
            encode_entity(&f, &json!({"type": "Sequence", "id": 7, "name": "ignored"})).unwrap(),
            (SqlValue::Text("Sequence".into()), SqlValue::Int(7))
        );
        let links = encode_links(
            &field(DataType::MultiEntity),
            &json!([{"type": "Asset", "id": 1}, {"type": "Asset", "id": 2}]),
        )
        .unwrap();
        assert_eq!(links.len(), 2);
    }
}
