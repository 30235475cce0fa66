//! Pairs of fields a site keeps in step: writing one side of a link also
//! writes the other (Shot.assets and Asset.shots, Task.entity and Shot.tasks).
//!
//! [`inverse_field`] says which field mirrors which, [`Inverse::of`] finds it
//! where a store keeps it, and [`Inverse::after`] is the one place that says
//! what the mirroring field holds once a link is added or taken out: the
//! site's writes and the data generator both use it.

use serde_json::{json, Value};

use sg_engine::layout::Storage;
use sg_engine::Catalog;
use sg_protocol::value::EntityLink;
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

/// The field on a linked record that mirrors a link to it, as stored there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inverse {
    pub field: String,
    /// A list of links (multi_entity) rather than a single link.
    pub many: bool,
}

impl Inverse {
    /// The field on `target_type` that mirrors `source_type.field` (see
    /// [`inverse_field`]), if the catalog's layout stores it as links.
    pub fn of(
        catalog: &Catalog,
        source_type: &str,
        field: &str,
        target_type: &str,
    ) -> Option<Inverse> {
        let field = inverse_field(&catalog.schema, source_type, field, target_type)?;
        let many = match catalog.layout.table(target_type)?.field(&field)?.storage {
            Storage::Links => true,
            Storage::Entity => false,
            _ => return None,
        };
        Some(Inverse { field, many })
    }

    /// What the field holds once `source` is added to it (`adding`) or taken
    /// out of it, given what it holds now; `None` when that changes nothing.
    /// A list gains `source` at its end; a single link becomes `source`, and
    /// is emptied only if it was `source`.
    pub fn after(
        &self,
        current: Option<&Value>,
        source: &EntityLink,
        adding: bool,
    ) -> Option<Value> {
        let current = current.unwrap_or(&Value::Null);
        if self.many {
            let links = links_of(current);
            if links.contains(source) == adding {
                return None;
            }
            let next = if adding {
                links
                    .iter()
                    .chain(std::iter::once(source))
                    .map(bare)
                    .collect()
            } else {
                links.iter().filter(|l| *l != source).map(bare).collect()
            };
            return Some(Value::Array(next));
        }
        let current = EntityLink::from_json(current);
        let next = match (adding, current.as_ref()) {
            (true, _) => Some(source),
            (false, Some(link)) if link == source => None,
            (false, _) => return None,
        };
        (next != current.as_ref()).then(|| next.map(bare).unwrap_or(Value::Null))
    }
}

/// The links of a multi-entity value (anything else has none).
pub(crate) fn links_of(value: &Value) -> Vec<EntityLink> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(EntityLink::from_json).collect())
        .unwrap_or_default()
}

/// A link as records store it: `{type, id}`.
pub(crate) fn bare(link: &EntityLink) -> Value {
    json!({"type": link.entity_type, "id": link.id})
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

    fn shot(id: i64) -> EntityLink {
        EntityLink {
            entity_type: "Shot".into(),
            id,
        }
    }

    #[test]
    fn a_list_gains_a_link_once_at_its_end_and_loses_it() {
        let list = Inverse {
            field: "shots".into(),
            many: true,
        };
        let two = json!([{"type": "Shot", "id": 2, "name": "SH020"}]);
        assert_eq!(
            list.after(Some(&two), &shot(1), true),
            Some(json!([{"type": "Shot", "id": 2}, {"type": "Shot", "id": 1}]))
        );
        assert_eq!(
            list.after(Some(&two), &shot(2), true),
            None,
            "already there"
        );
        assert_eq!(
            list.after(None, &shot(1), true),
            Some(json!([{"type": "Shot", "id": 1}]))
        );
        assert_eq!(list.after(Some(&two), &shot(2), false), Some(json!([])));
        assert_eq!(list.after(Some(&two), &shot(1), false), None, "never there");
    }

    #[test]
    fn a_single_link_is_replaced_and_emptied_only_by_its_own_link() {
        let one = Inverse {
            field: "entity".into(),
            many: false,
        };
        let two = json!({"type": "Shot", "id": 2});
        assert_eq!(
            one.after(Some(&two), &shot(1), true),
            Some(json!({"type": "Shot", "id": 1}))
        );
        assert_eq!(
            one.after(None, &shot(1), true),
            Some(json!({"type": "Shot", "id": 1}))
        );
        assert_eq!(one.after(Some(&two), &shot(2), true), None, "already it");
        assert_eq!(
            one.after(Some(&two), &shot(1), false),
            None,
            "points elsewhere"
        );
        assert_eq!(one.after(Some(&two), &shot(2), false), Some(Value::Null));
    }
}
