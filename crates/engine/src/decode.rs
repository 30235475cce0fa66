//! A `read` reply's records decoded straight from its JSON text into stored
//! form, for the import: no `serde_json::Value` tree of the whole page, no
//! map per record with a key string per field, and text moved into its
//! column rather than copied. Building that tree was a third of the CPU of
//! importing the large site.
//!
//! It gives what [`crate::write::encode_records`] gives for the same records
//! with the fields not in `keep` removed and `__retired` added (the import's
//! own preparation of a page), and refuses what that refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use sg_protocol::value::EntityLink;

use crate::codec::encode_scalar_owned;
use crate::error::{bad_request, EngineError};
use crate::layout::{FieldLayout, Storage, TableLayout};
use crate::sql::SqlValue;
use crate::write::{EncodedRecords, RecordEncoder};

/// What decoding needs to know: the table, the fields kept, and whether the
/// page holds retired records.
struct Context<'t> {
    table: &'t TableLayout,
    kept: BTreeMap<&'t str, &'t FieldLayout>,
    retired: bool,
}

/// Decodes the records of a `read` reply (`{"results": {"entities": [...]}}`)
/// into stored form for `table`, keeping the fields in `keep` (and the id),
/// each record flagged `retired` or not. An error when the text is not such
/// a reply (a fault, say: the caller reads that from the text itself) or a
/// value does not fit its field.
pub fn decode_read_page(
    table: &TableLayout,
    keep: &BTreeSet<String>,
    retired: bool,
    json: &[u8],
) -> Result<EncodedRecords, EngineError> {
    let context = Context {
        table,
        kept: table
            .fields
            .iter()
            .filter(|(name, _)| keep.contains(*name))
            .map(|(name, field)| (name.as_str(), field))
            .collect(),
        retired,
    };
    let mut out = EncodedRecords::default();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let reply = Member {
        key: "results",
        inner: Member {
            key: "entities",
            inner: Entities {
                context: &context,
                out: &mut out,
            },
        },
    };
    reply
        .deserialize(&mut deserializer)
        .and_then(|found| {
            deserializer.end()?;
            Ok(matches!(found, Some(Some(()))))
        })
        .map_err(|e| bad_request(format!("a read reply for {}: {e}", table.entity_type)))
        .and_then(|found| {
            if found {
                Ok(out)
            } else {
                Err(bad_request(format!(
                    "a read reply for {} without results.entities",
                    table.entity_type
                )))
            }
        })
}

/// One member of an object, read with `inner`; the others are passed over.
/// `None` when the object has no such member.
struct Member<S> {
    key: &'static str,
    inner: S,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Member<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Member<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with '{}'", self.key)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut inner = Some(self.inner);
        let mut found = None;
        while let Some(key) = map.next_key::<KeyName>()? {
            match inner.take_if(|_| key.0 == self.key) {
                Some(seed) => found = Some(map.next_value_seed(seed)?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// `entities`: one record after another.
struct Entities<'c, 't> {
    context: &'c Context<'t>,
    out: &'c mut EncodedRecords,
}

impl<'de> DeserializeSeed<'de> for Entities<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entities<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(()) = seq.next_element_seed(Record {
            context: self.context,
            out: &mut *self.out,
        })? {}
        Ok(())
    }
}

/// One record, encoded field by field as its keys come.
struct Record<'c, 't> {
    context: &'c Context<'t>,
    out: &'c mut EncodedRecords,
}

impl<'de> DeserializeSeed<'de> for Record<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Record<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let context = self.context;
        let mut encoder = RecordEncoder::new();
        while let Some(key) = map.next_key_seed(FieldKey(context))? {
            match key {
                Key::Id => encoder.id(map.next_value::<i64>()?),
                Key::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Field(field) => match field.storage {
                    Storage::Id => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    Storage::Entity => {
                        let (link_type, link_id) = match map.next_value::<Option<Link>>()? {
                            Some(link) => {
                                (SqlValue::Text(link.entity_type), SqlValue::Int(link.id))
                            }
                            None => (SqlValue::Null, SqlValue::Null),
                        };
                        encoder.entity(field, link_type, link_id);
                    }
                    Storage::Links => {
                        let links = map.next_value::<Option<Vec<Link>>>()?.unwrap_or_default();
                        encoder.links(
                            field,
                            links
                                .into_iter()
                                .map(|l| EntityLink {
                                    entity_type: l.entity_type,
                                    id: l.id,
                                })
                                .collect(),
                        );
                    }
                    _ => {
                        let value = map.next_value::<Value>()?;
                        encoder.scalar(
                            field,
                            encode_scalar_owned(field, value).map_err(de::Error::custom)?,
                        );
                    }
                },
            }
        }
        encoder.retired(context.retired);
        self.out
            .push(encoder.finish(context.table).map_err(de::Error::custom)?);
        Ok(())
    }
}

/// A link as a reply gives it; its `name` (and anything else) is not stored.
#[derive(Deserialize)]
struct Link {
    #[serde(rename = "type")]
    entity_type: String,
    id: i64,
}

/// A key of a record: the id, a kept field, or something to pass over.
enum Key<'t> {
    Id,
    Field(&'t FieldLayout),
    Skip,
}

/// Reads a record's key without keeping a copy of it.
struct FieldKey<'c, 't>(&'c Context<'t>);

impl<'de, 't> DeserializeSeed<'de> for FieldKey<'_, 't> {
    type Value = Key<'t>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key<'t>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 't> Visitor<'de> for FieldKey<'_, 't> {
    type Value = Key<'t>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key<'t>, E> {
        Ok(if name == "id" {
            Key::Id
        } else {
            self.0
                .kept
                .get(name)
                .map_or(Key::Skip, |field| Key::Field(field))
        })
    }
}

/// A key of the reply's outer objects.
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<KeyName, D::Error> {
        String::deserialize(d).map(KeyName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::write::encode_records;
    use serde_json::json;

    fn table() -> TableLayout {
        let schema = sg_protocol::Schema::from_json(
            &json!({
            "Shot": {
                "id": {"data_type": {"value": "number"}},
                "code": {"data_type": {"value": "text"}},
                "sg_cut_in": {"data_type": {"value": "number"}},
                "sg_rate": {"data_type": {"value": "float"}},
                "sg_hero": {"data_type": {"value": "checkbox"}},
                "sg_due": {"data_type": {"value": "date"}},
                "created_at": {"data_type": {"value": "date_time"}},
                "sg_status_list": {"data_type": {"value": "status_list"}},
                "project": {"data_type": {"value": "entity"},
                    "properties": {"valid_types": {"value": ["Project"]}}},
                "assets": {"data_type": {"value": "multi_entity"},
                    "properties": {"valid_types": {"value": ["Asset"]}}},
                "sg_data": {"data_type": {"value": "serializable"}},
                "tag_list": {"data_type": {"value": "tag_list"},
                    "properties": {"valid_types": {"value": ["Tag"]}}},
            },
            "Project": {"id": {"data_type": {"value": "number"}}, "name": {"data_type": {"value": "text"}}},
            "Asset": {"id": {"data_type": {"value": "number"}}, "code": {"data_type": {"value": "text"}}},
            }),
            None,
        )
        .expect("schema");
        Layout::from_schema(&schema, None)
            .tables
            .remove("Shot")
            .expect("Shot")
    }

    /// What the import did before: the page as values, filtered and flagged.
    fn through_values(
        table: &TableLayout,
        keep: &BTreeSet<String>,
        retired: bool,
        reply: &Value,
    ) -> Result<EncodedRecords, EngineError> {
        let records: Vec<serde_json::Map<String, Value>> = reply["results"]["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_object().cloned())
            .map(|mut r| {
                r.retain(|k, _| k == "id" || keep.contains(k));
                r.insert("__retired".into(), json!(retired));
                r
            })
            .collect();
        encode_records(table, &records)
    }

    fn keep(fields: &[&str]) -> BTreeSet<String> {
        fields.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn a_page_decodes_as_its_values_encode() {
        let table = table();
        let reply = json!({"results": {
            "entities": [
                {"type": "Shot", "id": 3, "code": "sh030 \"quoted\" \u{e9}", "sg_cut_in": 10,
                 "sg_rate": 1.5, "sg_hero": true, "sg_due": "2024-01-05",
                 "created_at": "2024-01-05T10:00:00Z", "sg_status_list": "ip",
                 "project": {"type": "Project", "id": 1, "name": "Alpha"},
                 "assets": [{"type": "Asset", "id": 2, "name": "a"}, {"type": "Asset", "id": 5, "name": null}],
                 "sg_data": {"nested": [1, 2, {"x": null}]}, "tag_list": ["hero", "f\"x"], "not_kept": "x"},
                {"id": 4, "type": "Shot", "code": null, "sg_cut_in": null, "sg_rate": null,
                 "sg_hero": null, "sg_due": null, "created_at": null, "sg_status_list": null,
                 "project": null, "assets": [], "sg_data": null, "tag_list": []},
                {"project": {"id": 2, "type": "Project"}, "id": 9, "assets": null}
            ],
            "paging_info": {"has_next_page": false}}});
        let kept = keep(&[
            "code",
            "sg_cut_in",
            "sg_rate",
            "sg_hero",
            "sg_due",
            "created_at",
            "sg_status_list",
            "project",
            "assets",
            "sg_data",
            "tag_list",
        ]);
        for retired in [false, true] {
            let text = serde_json::to_vec(&reply).expect("json");
            let direct = decode_read_page(&table, &kept, retired, &text).expect("decodes");
            let expected = through_values(&table, &kept, retired, &reply).expect("encodes");
            assert_eq!(format!("{direct:?}"), format!("{expected:?}"));
            assert_eq!(direct.len(), 3);
            assert_eq!(direct.last_id(), Some(9));
        }
        // Fields left out of `keep` are passed over.
        let text = serde_json::to_vec(&reply).expect("json");
        let direct = decode_read_page(&table, &keep(&["code"]), false, &text).expect("decodes");
        let expected = through_values(&table, &keep(&["code"]), false, &reply).expect("encodes");
        assert_eq!(format!("{direct:?}"), format!("{expected:?}"));
    }

    #[test]
    fn what_the_values_refuse_is_refused() {
        let table = table();
        let kept = keep(&[
            "code",
            "sg_cut_in",
            "project",
            "assets",
            "created_at",
            "tag_list",
        ]);
        for bad in [
            json!({"id": 1, "sg_cut_in": "ten"}),
            json!({"id": 1, "project": {"type": "Project"}}),
            json!({"id": 1, "assets": {"type": "Asset", "id": 1}}),
            json!({"id": 1, "created_at": "yesterday"}),
            json!({"id": 1, "tag_list": [{"type": "Tag", "id": 1}]}),
            json!({"id": 1, "tag_list": "hero"}),
            json!({"code": "no id"}),
            json!({"id": "1"}),
        ] {
            let reply = json!({"results": {"entities": [bad.clone()]}});
            let text = serde_json::to_vec(&reply).expect("json");
            assert!(
                decode_read_page(&table, &kept, false, &text).is_err(),
                "{bad} decodes"
            );
            assert!(
                through_values(&table, &kept, false, &reply).is_err(),
                "{bad} encodes"
            );
        }
    }

    #[test]
    fn a_fault_or_other_text_is_no_page() {
        let table = table();
        let kept = keep(&["code"]);
        for text in [
            r#"{"exception": true, "error_code": 104, "message": "bad"}"#,
            r#"{"results": {"paging_info": {}}}"#,
            r#"{"results": {"entities": [{"id": 1}]}} trailing"#,
            "not json",
        ] {
            assert!(
                decode_read_page(&table, &kept, false, text.as_bytes()).is_err(),
                "{text}"
            );
        }
    }
}
