//! Reading EventLogEntry rows: what each row means for the cache.
//!
//! Rows are classified from `event_type` (split as `Shotgun_<Type>_<Action>`),
//! `attribute_name`, `entity` and `meta`, with the quirks of real logs in
//! mind: `entity` is null once its record is retired; back-reference rows
//! carry the other side's type and id in their meta; meta may be missing or
//! not a dictionary; anyone can log rows of their own.

use serde_json::Value;

use sg_protocol::value::{parse_date_time, EntityLink};

/// The fields the follower reads of each row.
pub const EVENT_FIELDS: &[&str] = &[
    "id",
    "event_type",
    "attribute_name",
    "entity",
    "meta",
    "created_at",
    "user",
];

/// What one row asks of the cache.
#[derive(Debug, Clone, PartialEq)]
pub enum EventAction {
    /// A record was created or revived: read it whole from the site.
    Fetch { entity_type: String, id: i64 },
    /// A record was retired.
    Retire { entity_type: String, id: i64 },
    /// A field was set to a value.
    Set {
        entity_type: String,
        id: i64,
        field: String,
        value: Value,
    },
    /// Links were added to and removed from a multi-entity field.
    Links {
        entity_type: String,
        id: i64,
        field: String,
        added: Vec<EntityLink>,
        removed: Vec<EntityLink>,
    },
    /// A field changed but the row does not say to what: read the record.
    Refresh { entity_type: String, id: i64 },
    /// A back-reference row whose record is retired now (its `entity` reads
    /// null): the record is one of the links the forward row names.
    BackReference { entity_type: String, forward: i64 },
    /// The schema changed: read it again.
    Schema,
    /// Nothing for the cache (logins, reading flags, custom rows, the
    /// retirement_date rows that precede Retirement and Revival rows).
    Skip,
}

/// One row as read from the site.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    /// Site time, seconds since the epoch.
    pub created_at: Option<i64>,
    /// Who made the change (the record's new `updated_by`).
    pub user: Option<EntityLink>,
    /// Every link the row's meta names (old and new values, added and removed).
    pub mentioned: Vec<EntityLink>,
    /// A `Shotgun_<Type>_Revival` row.
    pub revival: bool,
    pub action: EventAction,
}

fn links(value: Option<&Value>) -> Option<Vec<EntityLink>> {
    match value {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => Some(items.iter().filter_map(EntityLink::from_json).collect()),
        Some(_) => None,
    }
}

/// Classifies one row read with [`EVENT_FIELDS`].
pub fn classify(row: &Value) -> Option<EventRow> {
    let id = row.get("id")?.as_i64()?;
    let created_at = row
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(parse_date_time);
    let user = row.get("user").and_then(EntityLink::from_json);
    let mut mentioned = Vec::new();
    if let Some(meta) = row.get("meta").filter(|m| m.is_object()) {
        for key in ["old_value", "new_value"] {
            mentioned.extend(meta.get(key).and_then(EntityLink::from_json));
        }
        for key in ["added", "removed"] {
            mentioned.extend(links(meta.get(key)).unwrap_or_default());
        }
    }
    let revival = row
        .get("event_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("Shotgun_") && t.ends_with("_Revival"));
    Some(EventRow {
        id,
        created_at,
        user,
        mentioned,
        revival,
        action: action(row),
    })
}

fn action(row: &Value) -> EventAction {
    let event_type = row.get("event_type").and_then(Value::as_str).unwrap_or("");
    let mut parts = event_type.splitn(3, '_');
    let (Some(domain), Some(kind), Some(verb)) = (parts.next(), parts.next(), parts.next()) else {
        return EventAction::Skip;
    };
    if domain != "Shotgun" {
        return EventAction::Skip;
    }
    if kind == "DisplayColumn" || kind == "Status" {
        return EventAction::Schema;
    }
    let meta = row.get("meta").filter(|m| m.is_object());
    let meta_id = meta
        .and_then(|m| m.get("entity_id"))
        .and_then(Value::as_i64);
    let entity = row
        .get("entity")
        .and_then(EntityLink::from_json)
        .filter(|e| e.entity_type == kind);
    let id = entity.as_ref().map(|e| e.id).or(meta_id);
    let entity_type = kind.to_string();
    match verb {
        "New" | "Revival" => match id {
            Some(id) => EventAction::Fetch { entity_type, id },
            None => EventAction::Skip,
        },
        "Retirement" => match meta_id.or(id) {
            Some(id) => EventAction::Retire { entity_type, id },
            None => EventAction::Skip,
        },
        "Change" => change(row, meta, entity, meta_id, entity_type),
        _ => EventAction::Skip,
    }
}

fn change(
    row: &Value,
    meta: Option<&Value>,
    entity: Option<EntityLink>,
    meta_id: Option<i64>,
    entity_type: String,
) -> EventAction {
    let Some(field) = row
        .get("attribute_name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return EventAction::Skip;
    };
    if field == "retirement_date" || field == "read_by_current_user" {
        return EventAction::Skip;
    }
    let Some(meta) = meta else {
        // An automatic update with no meta: the row names the record, not the value.
        return match entity {
            Some(e) => EventAction::Refresh {
                entity_type,
                id: e.id,
            },
            None => EventAction::Skip,
        };
    };
    let back_reference = meta.get("actual_attribute_changed").is_some();
    // A back-reference row's meta describes the other side, so its record is
    // the row's `entity`; without one (retired) the reconcile scan repairs it.
    let id = if back_reference {
        match entity {
            Some(e) => e.id,
            None => {
                return match meta
                    .get("original_event_log_entry_id")
                    .and_then(Value::as_i64)
                {
                    Some(forward) => EventAction::BackReference {
                        entity_type,
                        forward,
                    },
                    None => EventAction::Skip,
                }
            }
        }
    } else {
        match entity.map(|e| e.id).or(meta_id) {
            Some(id) => id,
            None => return EventAction::Skip,
        }
    };
    if is_tag_list_change(meta) {
        // No real site's row for a tag_list has been seen. A whole value (a
        // list of names) is set; names added and removed can't say where
        // they stand in the list, nor what the cache missed: read the record.
        return match meta.get("new_value") {
            Some(value) if sg_engine::codec::tag_names(value).is_some() => EventAction::Set {
                entity_type,
                id,
                field,
                value: value.clone(),
            },
            _ => EventAction::Refresh { entity_type, id },
        };
    }
    if meta.get("added").is_some() || meta.get("removed").is_some() {
        match (links(meta.get("added")), links(meta.get("removed"))) {
            (Some(added), Some(removed)) => EventAction::Links {
                entity_type,
                id,
                field,
                added,
                removed,
            },
            _ => EventAction::Refresh { entity_type, id },
        }
    } else if let Some(value) = meta.get("new_value") {
        EventAction::Set {
            entity_type,
            id,
            field,
            value: value.clone(),
        }
    } else {
        EventAction::Refresh { entity_type, id }
    }
}

/// Whether a Change row's meta is about a tag_list: its data type says so,
/// or its `added`/`removed` hold names rather than links.
fn is_tag_list_change(meta: &Value) -> bool {
    let names = |key: &str| {
        meta.get(key)
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(Value::is_string))
    };
    meta.get("field_data_type").and_then(Value::as_str) == Some("tag_list")
        || names("added")
        || names("removed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classify_action(row: Value) -> EventAction {
        classify(&row)
            .map(|r| r.action)
            .unwrap_or(EventAction::Skip)
    }

    #[test]
    fn lifecycle_rows() {
        assert_eq!(
            classify_action(
                json!({"id": 1, "event_type": "Shotgun_Shot_New", "entity": {"type": "Shot", "id": 7},
                "meta": {"type": "new_entity", "entity_type": "Shot", "entity_id": 7}})
            ),
            EventAction::Fetch {
                entity_type: "Shot".into(),
                id: 7
            }
        );
        assert_eq!(
            classify_action(
                json!({"id": 2, "event_type": "Shotgun_Shot_Retirement", "entity": null,
                "meta": {"type": "entity_retirement", "entity_type": "Shot", "entity_id": 7, "id": 7}})
            ),
            EventAction::Retire {
                entity_type: "Shot".into(),
                id: 7
            }
        );
        assert_eq!(
            classify_action(
                json!({"id": 3, "event_type": "Shotgun_Shot_Revival", "entity": {"type": "Shot", "id": 7},
                "meta": {"class_name": "Shot", "entity_id": 7, "entity_type": "Shot", "id": 7}})
            ),
            EventAction::Fetch {
                entity_type: "Shot".into(),
                id: 7
            }
        );
    }

    #[test]
    fn change_rows() {
        assert_eq!(
            classify_action(
                json!({"id": 4, "event_type": "Shotgun_Shot_Change", "attribute_name": "code",
                "entity": null, "meta": {"type": "attribute_change", "entity_type": "Shot", "entity_id": 7,
                "old_value": "a", "new_value": "b"}})
            ),
            EventAction::Set {
                entity_type: "Shot".into(),
                id: 7,
                field: "code".into(),
                value: json!("b")
            }
        );
        // A back-reference row: the meta names the Task, the row's entity is the Shot.
        assert_eq!(
            classify_action(
                json!({"id": 5, "event_type": "Shotgun_Shot_Change", "attribute_name": "tasks",
                "entity": {"type": "Shot", "id": 7}, "meta": {"type": "attribute_change", "entity_type": "Task",
                "entity_id": 30, "actual_attribute_changed": "Task.entity", "original_event_log_entry_id": 4,
                "added": [{"type": "Task", "id": 30, "name": "x", "valid": "valid"}], "removed": []}})
            ),
            EventAction::Links {
                entity_type: "Shot".into(),
                id: 7,
                field: "tasks".into(),
                added: vec![EntityLink {
                    entity_type: "Task".into(),
                    id: 30
                }],
                removed: vec![]
            }
        );
        assert_eq!(
            classify_action(
                json!({"id": 6, "event_type": "Shotgun_Shot_Change", "attribute_name": "tasks",
                "entity": null, "meta": {"entity_type": "Task", "entity_id": 30, "actual_attribute_changed": "Task.entity",
                "added": [], "removed": []}})
            ),
            EventAction::Skip,
            "a back-reference row on a retired record with no forward row can't be placed"
        );
        assert_eq!(
            classify_action(
                json!({"id": 6, "event_type": "Shotgun_Shot_Change", "attribute_name": "tasks",
                "entity": null, "meta": {"entity_type": "Task", "entity_id": 30, "actual_attribute_changed": "Task.entity",
                "original_event_log_entry_id": 5, "added": [], "removed": []}})
            ),
            EventAction::BackReference {
                entity_type: "Shot".into(),
                forward: 5
            }
        );
        assert_eq!(
            classify_action(
                json!({"id": 7, "event_type": "Shotgun_Shot_Change", "attribute_name": "code",
                "entity": {"type": "Shot", "id": 7}, "meta": {"type": "attribute_change", "entity_id": 7, "warning": "too big"}})
            ),
            EventAction::Refresh {
                entity_type: "Shot".into(),
                id: 7
            }
        );
    }

    #[test]
    fn tag_list_rows_set_a_whole_value_or_read_the_record() {
        let shot = |id: i64, meta: Value| {
            classify_action(json!({"id": id, "event_type": "Shotgun_Shot_Change",
                "attribute_name": "tag_list", "entity": {"type": "Shot", "id": 7}, "meta": meta}))
        };
        let refresh = EventAction::Refresh {
            entity_type: "Shot".into(),
            id: 7,
        };
        assert_eq!(
            shot(
                1,
                json!({"type": "attribute_change", "entity_type": "Shot", "entity_id": 7,
                "field_data_type": "tag_list", "added": ["hero"], "removed": []})
            ),
            refresh
        );
        assert_eq!(
            shot(2, json!({"entity_id": 7, "added": [], "removed": ["fx"]})),
            refresh,
            "names, without a data type"
        );
        assert_eq!(
            shot(
                3,
                json!({"entity_id": 7, "field_data_type": "tag_list",
                "added": [{"type": "Tag", "id": 4, "name": "hero"}], "removed": []})
            ),
            refresh,
            "Tag links"
        );
        assert_eq!(
            shot(
                4,
                json!({"entity_id": 7, "field_data_type": "tag_list",
                "old_value": ["a"], "new_value": ["b", "a"]})
            ),
            EventAction::Set {
                entity_type: "Shot".into(),
                id: 7,
                field: "tag_list".into(),
                value: json!(["b", "a"])
            }
        );
        assert_eq!(
            shot(
                5,
                json!({"entity_id": 7, "field_data_type": "tag_list", "new_value": "hero, fx"})
            ),
            refresh
        );
    }

    #[test]
    fn noise_and_schema_rows() {
        for row in [
            json!({"id": 8, "event_type": "Shotgun_User_Login", "entity": {"type": "HumanUser", "id": 1}}),
            json!({"id": 9, "event_type": "Toolkit_App_Startup", "meta": {"core": "v0.20"}}),
            json!({"id": 10, "event_type": "Shotgun_Reading_Change", "attribute_name": "read_by_current_user",
                   "entity": {"type": "Note", "id": 1}, "meta": {"new_value": "read"}}),
            json!({"id": 11, "event_type": "Shotgun_Shot_Change", "attribute_name": "retirement_date",
                   "meta": {"entity_id": 7, "new_value": "2024-01-01 00:00:00 UTC"}}),
            json!({"id": 12, "event_type": "Shotgun_Shot_Change", "meta": "not a dict"}),
        ] {
            assert_eq!(classify_action(row.clone()), EventAction::Skip, "{row}");
        }
        assert_eq!(
            classify_action(
                json!({"id": 13, "event_type": "Shotgun_DisplayColumn_New", "meta": {}})
            ),
            EventAction::Schema
        );
    }
}
