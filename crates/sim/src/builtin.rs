//! The site's own schema, used when no `--schema` is given: a typical
//! production (Projects, Episodes, Sequences, Shots, Assets, Steps, Tasks,
//! Versions, PublishedFiles, Playlists, Notes, Replies, people, groups, time
//! logs, uploaded files (Attachments), the Tags that tag_list fields name,
//! and the event log) with the fields and links sites usually have.
//!
//! The definitions are in `builtin_schema.json` (the `schema_read` shape,
//! every attribute a `{value, editable}` pair) and `builtin_entities.json`
//! (the `schema_entity_read` shape). Every pair of fields in
//! [`crate::inverse`] exists on both sides, with matching valid types, so the
//! site keeps them in step.

use serde_json::Value;

use sg_protocol::Schema;

const FIELDS: &str = include_str!("builtin_schema.json");
const ENTITIES: &str = include_str!("builtin_entities.json");

/// The `schema_read` answer of the built-in schema.
pub fn fields() -> Value {
    serde_json::from_str(FIELDS).expect("builtin_schema.json is valid JSON")
}

/// The `schema_entity_read` answer of the built-in schema (display names).
pub fn entities() -> Value {
    serde_json::from_str(ENTITIES).expect("builtin_entities.json is valid JSON")
}

/// The built-in schema, with its entity display names.
pub fn schema() -> Schema {
    Schema::from_json(&fields(), Some(&entities())).expect("the built-in schema is well formed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverse::inverse_field;
    use sg_protocol::DataType;

    const TYPES: [&str; 20] = [
        "ApiUser",
        "Asset",
        "Attachment",
        "Episode",
        "EventLogEntry",
        "Group",
        "HumanUser",
        "Note",
        "Playlist",
        "Project",
        "PublishedFile",
        "PublishedFileType",
        "Reply",
        "Sequence",
        "Shot",
        "Step",
        "Tag",
        "Task",
        "TimeLog",
        "Version",
    ];

    #[test]
    fn parses_with_every_type_and_display_name() {
        let schema = schema();
        let names: Vec<&str> = schema.entities.keys().map(String::as_str).collect();
        assert_eq!(names, TYPES);
        let entities = entities();
        for t in TYPES {
            assert!(
                entities[t]["name"]["value"].is_string(),
                "{t} has a display name"
            );
        }
        assert_eq!(
            schema.entity("HumanUser").unwrap().raw["name"]["value"],
            "Person"
        );
        assert!(schema
            .entities
            .values()
            .flat_map(|e| e.fields.values())
            .all(|f| f.data_type != DataType::Unknown));
        // Served back exactly as written.
        assert_eq!(schema.to_fields_json(), fields());
    }

    #[test]
    fn every_field_has_the_full_attribute_set() {
        let keys = [
            "data_type",
            "description",
            "editable",
            "entity_type",
            "mandatory",
            "name",
            "properties",
            "unique",
        ];
        for (type_name, entity) in &schema().entities {
            let id = entity
                .field("id")
                .unwrap_or_else(|| panic!("{type_name} has id"));
            assert_eq!(id.data_type, DataType::Number);
            assert_eq!(id.raw["editable"]["value"], false);
            for (name, field) in &entity.fields {
                for key in keys {
                    assert!(field.raw.get(key).is_some(), "{type_name}.{name} has {key}");
                }
                assert_eq!(field.raw["entity_type"]["value"], type_name.as_str());
                let links = matches!(field.data_type, DataType::Entity | DataType::MultiEntity);
                if links {
                    for t in &field.valid_types {
                        assert!(
                            TYPES.contains(&t.as_str()),
                            "{type_name}.{name} links to {t}"
                        );
                    }
                }
                if matches!(field.data_type, DataType::StatusList | DataType::List) {
                    assert!(
                        !field.valid_values.is_empty(),
                        "{type_name}.{name} has valid values"
                    );
                    if let Some(d) = field.default_value.as_str() {
                        assert!(
                            field.valid_values.iter().any(|v| v == d),
                            "{type_name}.{name} default"
                        );
                    }
                }
            }
            if !matches!(type_name.as_str(), "EventLogEntry" | "Reply") {
                for audit in ["created_at", "created_by", "updated_at", "updated_by"] {
                    let f = entity
                        .field(audit)
                        .unwrap_or_else(|| panic!("{type_name}.{audit}"));
                    assert_eq!(f.raw["editable"]["value"], false, "{type_name}.{audit}");
                }
            }
        }
        let shot = schema().entities["Shot"].clone();
        let status = shot.field("sg_status_list").unwrap();
        assert_eq!(status.default_value, "wtg");
        for v in ["ip", "wtg", "fin", "hld", "omt"] {
            assert!(status.valid_values.iter().any(|s| s == v));
        }
    }

    /// Every pair the site keeps in step resolves, both ways, for every type
    /// the forward side may link to.
    #[test]
    fn every_inverse_pair_resolves() {
        let schema = schema();
        let pairs: &[(&str, &str, &str, &str)] = &[
            ("Shot", "assets", "Asset", "shots"),
            ("Asset", "shots", "Shot", "assets"),
            ("Asset", "assets", "Asset", "parents"),
            ("Asset", "parents", "Asset", "assets"),
            ("Shot", "shots", "Shot", "parent_shots"),
            ("Shot", "parent_shots", "Shot", "shots"),
            ("Version", "playlists", "Playlist", "versions"),
            ("Playlist", "versions", "Version", "playlists"),
            ("Group", "users", "HumanUser", "groups"),
            ("HumanUser", "groups", "Group", "users"),
            ("Project", "users", "HumanUser", "projects"),
            ("HumanUser", "projects", "Project", "users"),
            ("Task", "upstream_tasks", "Task", "downstream_tasks"),
            ("Task", "downstream_tasks", "Task", "upstream_tasks"),
            (
                "PublishedFile",
                "upstream_published_files",
                "PublishedFile",
                "downstream_published_files",
            ),
            (
                "PublishedFile",
                "downstream_published_files",
                "PublishedFile",
                "upstream_published_files",
            ),
            ("Shot", "sg_sequence", "Sequence", "shots"),
            ("Sequence", "shots", "Shot", "sg_sequence"),
            ("Version", "published_files", "PublishedFile", "version"),
            ("PublishedFile", "version", "Version", "published_files"),
            ("Reply", "entity", "Note", "replies"),
            ("Note", "replies", "Reply", "entity"),
        ];
        for (source, field, target, inverse) in pairs {
            assert_eq!(
                inverse_field(&schema, source, field, target).as_deref(),
                Some(*inverse),
                "{source}.{field} -> {target}.{inverse}"
            );
        }
        // Task.entity and every type's `tasks`; Note.note_links and every type's `notes`.
        for (source, field, inverse, back) in [
            ("Task", "entity", "tasks", "Task"),
            ("Note", "note_links", "notes", "Note"),
        ] {
            let valid = &schema
                .entity(source)
                .unwrap()
                .field(field)
                .unwrap()
                .valid_types;
            assert!(!valid.is_empty());
            for target in valid {
                assert_eq!(
                    inverse_field(&schema, source, field, target).as_deref(),
                    Some(inverse),
                    "{source}.{field} -> {target}"
                );
                assert_eq!(
                    inverse_field(&schema, target, inverse, back).as_deref(),
                    Some(field),
                    "{target}.{inverse}"
                );
            }
            for (name, entity) in &schema.entities {
                if entity.field(inverse).is_some() {
                    assert!(
                        valid.contains(name),
                        "{name}.{inverse} has no {source}.{field} side"
                    );
                }
            }
        }
    }
}
