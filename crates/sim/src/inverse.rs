//! Pairs of fields a site keeps in step: writing one side of a link also
//! writes the other (Shot.assets and Asset.shots, Task.entity and Shot.tasks).

use sg_protocol::{DataType, Schema};

/// `(type, field, inverse field)`: a link in `type.field` to a record of type
/// T is mirrored in `T.<inverse field>`. `*` stands for any type that has the
/// inverse field with the right valid types.
const PAIRS: &[(&str, &str, &str)] = &[
    ("Shot", "assets", "shots"),
    ("Asset", "shots", "assets"),
    ("Asset", "assets", "parents"),
    ("Asset", "parents", "assets"),
    ("Shot", "shots", "parent_shots"),
    ("Shot", "parent_shots", "shots"),
    ("Version", "playlists", "versions"),
    ("Playlist", "versions", "playlists"),
    ("Group", "users", "groups"),
    ("HumanUser", "groups", "users"),
    ("Project", "users", "projects"),
    ("HumanUser", "projects", "users"),
    ("Task", "upstream_tasks", "downstream_tasks"),
    ("Task", "downstream_tasks", "upstream_tasks"),
    (
        "PublishedFile",
        "upstream_published_files",
        "downstream_published_files",
    ),
    (
        "PublishedFile",
        "downstream_published_files",
        "upstream_published_files",
    ),
    ("Task", "entity", "tasks"),
    ("*", "tasks", "entity"),
    ("Shot", "sg_sequence", "shots"),
    ("Sequence", "shots", "sg_sequence"),
    ("Version", "published_files", "version"),
    ("PublishedFile", "version", "published_files"),
    ("Note", "note_links", "notes"),
    ("*", "notes", "note_links"),
    ("Sequence", "episode", "sequences"),
    ("Episode", "sequences", "episode"),
    ("Reply", "entity", "replies"),
    ("Note", "replies", "entity"),
];

/// The field on `target_type` that mirrors `source_type.field`, if the schema
/// has both sides and each side accepts the other's type.
pub fn inverse_field(
    schema: &Schema,
    source_type: &str,
    field: &str,
    target_type: &str,
) -> Option<String> {
    let (_, _, inverse) = PAIRS
        .iter()
        .find(|(t, f, _)| (*t == source_type || *t == "*") && *f == field)?;
    let source = schema.entity(source_type)?.field(field)?;
    let target = schema.entity(target_type)?.field(inverse)?;
    let links = |dt: DataType| matches!(dt, DataType::Entity | DataType::MultiEntity);
    let accepts = |types: &[String], t: &str| types.is_empty() || types.iter().any(|v| v == t);
    if links(source.data_type)
        && links(target.data_type)
        && accepts(&source.valid_types, target_type)
        && accepts(&target.valid_types, source_type)
    {
        Some(inverse.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn link(kind: &str, types: &[&str]) -> Value {
        json!({"data_type": {"value": kind, "editable": false}, "properties": {"valid_types": {"value": types, "editable": true}}})
    }

    #[test]
    fn finds_both_sides_only_when_the_schema_has_them() {
        let schema = Schema::from_json(
            &json!({
                "Shot": {"assets": link("multi_entity", &["Asset"]), "tasks": link("multi_entity", &["Task"])},
                "Asset": {"shots": link("multi_entity", &["Shot"])},
                "Task": {"entity": link("entity", &["Shot", "Asset"])}
            }),
            None,
        )
        .unwrap();
        assert_eq!(
            inverse_field(&schema, "Shot", "assets", "Asset").as_deref(),
            Some("shots")
        );
        assert_eq!(
            inverse_field(&schema, "Asset", "shots", "Shot").as_deref(),
            Some("assets")
        );
        assert_eq!(
            inverse_field(&schema, "Task", "entity", "Shot").as_deref(),
            Some("tasks")
        );
        assert_eq!(
            inverse_field(&schema, "Shot", "tasks", "Task").as_deref(),
            Some("entity")
        );
        assert_eq!(
            inverse_field(&schema, "Task", "entity", "Asset"),
            None,
            "Asset has no tasks field here"
        );
    }
}
