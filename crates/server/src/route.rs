//! Whether the cache can answer a read: only when every type, field, path
//! and relation it touches is cached, and every link it touches points at
//! types whose records the cache can name (kept, or held names-only). The
//! decision is made before anything is sent, so no request reaches the site
//! twice.

use sg_engine::layout::Storage;
use sg_engine::path::resolve;
use sg_engine::Layout;
use sg_protocol::{Condition, DataType, FilterNode, ReadParams, Relation, Schema, SummarizeParams};

/// Who answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The cache has everything the request touches.
    Cache,
    /// Something is not cached but exists on the site: the site answers.
    Site,
}

fn paths_of(node: &FilterNode, out: &mut Vec<String>) {
    match node {
        FilterNode::Condition(c) => out.push(c.path.clone()),
        FilterNode::Group { conditions, .. } => conditions.iter().for_each(|c| paths_of(c, out)),
    }
}

/// Routes a set of paths on one type. A path the cache lacks goes to the
/// site when the site's schema has it; a path neither has is the cache's to
/// answer (with the site's own fault). A link whose target's names the cache
/// can't know would show, match or sort by a name it lacks: the site answers.
fn route_paths(layout: &Layout, schema: &Schema, entity_type: &str, paths: &[String]) -> Route {
    let Some(root) = layout.served(entity_type) else {
        return if schema.entity(entity_type).is_some() {
            Route::Site
        } else {
            Route::Cache
        };
    };
    for path in paths.iter().filter(|p| p.as_str() != "type") {
        match resolve(layout, root, path, "read") {
            Ok(resolved) => {
                let field = resolved.field;
                let links = matches!(field.storage, Storage::Entity | Storage::Links)
                    && field.data_type != DataType::TagList;
                if links && !names_known(layout, schema, &field.valid_types) {
                    return Route::Site;
                }
            }
            Err(_) if exists_on_site(schema, entity_type, path) => return Route::Site,
            Err(_) => {}
        }
    }
    Route::Cache
}

/// Whether the cache can name every record a link of one of `valid_types`
/// points at: each type has a table with a display field (kept, or held
/// names-only), or is not on the site at all (so nothing links to it).
fn names_known(layout: &Layout, schema: &Schema, valid_types: &[String]) -> bool {
    valid_types.iter().all(|t| {
        layout.table(t).is_some_and(|t| t.display_field.is_some()) || schema.entity(t).is_none()
    })
}

/// Whether a (deep) path names fields the site's schema has.
fn exists_on_site(schema: &Schema, entity_type: &str, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let mut current = entity_type;
    let mut i = 0;
    while i < parts.len() {
        let Some(entity) = schema.entity(current) else {
            return false;
        };
        if entity.field(parts[i]).is_none() {
            return false;
        }
        if i + 1 < parts.len() {
            current = parts[i + 1];
        }
        i += 2;
    }
    true
}

/// Whether a filter asks for tags by their Tag record's id (`name_id` on a
/// tag_list) where the cache holds tag names only, no Tag records to look
/// the id up in, and the site has Tags: then the site answers.
fn needs_tag_records(
    layout: &Layout,
    schema: &Schema,
    entity_type: &str,
    node: &FilterNode,
) -> bool {
    let tags_cached = layout
        .table("Tag")
        .is_some_and(|t| t.field("name").is_some());
    if tags_cached || schema.entity("Tag").is_none() {
        return false;
    }
    let Some(root) = layout.table(entity_type) else {
        return false;
    };
    let mut conditions = Vec::new();
    conditions_of(node, &mut conditions);
    conditions.iter().any(|c| {
        c.relation == Relation::NameId
            && resolve(layout, root, &c.path, "read")
                .is_ok_and(|p| p.field.data_type == DataType::TagList)
    })
}

fn conditions_of<'a>(node: &'a FilterNode, out: &mut Vec<&'a Condition>) {
    match node {
        FilterNode::Condition(c) => out.push(c),
        FilterNode::Group { conditions, .. } => {
            conditions.iter().for_each(|c| conditions_of(c, out))
        }
    }
}

pub fn route_read(layout: &Layout, schema: &Schema, params: &ReadParams) -> Route {
    if params
        .additional_filter_presets
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Route::Site;
    }
    if needs_tag_records(layout, schema, &params.entity_type, &params.filters) {
        return Route::Site;
    }
    let mut paths = params.return_fields.clone();
    paths_of(&params.filters, &mut paths);
    paths.extend(params.sorts.iter().map(|s| s.field_name.clone()));
    route_paths(layout, schema, &params.entity_type, &paths)
}

pub fn route_summarize(layout: &Layout, schema: &Schema, params: &SummarizeParams) -> Route {
    if needs_tag_records(layout, schema, &params.entity_type, &params.filters) {
        return Route::Site;
    }
    let mut paths: Vec<String> = params.summaries.iter().map(|s| s.field.clone()).collect();
    paths.extend(params.grouping.iter().map(|g| g.field.clone()));
    paths_of(&params.filters, &mut paths);
    route_paths(layout, schema, &params.entity_type, &paths)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::json;

    use super::*;

    /// Tasks are cached; their assignees are Groups (named by `code`) or
    /// TimeLogs (no display field); their creator an ApiUser (not on this
    /// site at all).
    fn fixture() -> (Layout, Schema) {
        let f = |t: &str, valid: &[&str]| {
            json!({"data_type": {"value": t},
                   "properties": {"valid_types": {"value": valid}}})
        };
        let schema = Schema::from_json(
            &json!({
                "Task": {"id": f("number", &[]), "content": f("text", &[]),
                         "crew": f("multi_entity", &["Group"]),
                         "log": f("entity", &["TimeLog"]),
                         "created_by": f("entity", &["Group", "ApiUser"])},
                "Group": {"id": f("number", &[]), "code": f("text", &[]), "sg_size": f("number", &[])},
                "TimeLog": {"id": f("number", &[]), "duration": f("number", &[])}
            }),
            None,
        )
        .expect("schema");
        let selection = BTreeMap::from([(
            "Task".to_string(),
            BTreeSet::from(["id", "content", "crew", "log", "created_by"].map(String::from)),
        )]);
        (Layout::from_schema(&schema, Some(&selection)), schema)
    }

    fn read(entity_type: &str, fields: &[&str], filters: serde_json::Value) -> ReadParams {
        ReadParams::from_json(
            json!({"type": entity_type, "return_fields": fields, "filters": filters})
                .as_object()
                .expect("an object"),
        )
        .expect("read params")
    }

    fn no_filters() -> serde_json::Value {
        json!({"logical_operator": "and", "conditions": []})
    }

    #[test]
    fn links_to_named_targets_are_answered_by_the_cache() {
        let (layout, schema) = fixture();
        assert!(layout.table("Group").is_some_and(|t| t.names_only));
        let crew = read("Task", &["content", "crew", "created_by"], no_filters());
        assert_eq!(route_read(&layout, &schema, &crew), Route::Cache);
        let by_name = read(
            "Task",
            &["id"],
            json!({"logical_operator": "and", "conditions": [
                {"path": "crew", "relation": "name_contains", "values": ["x"]}]}),
        );
        assert_eq!(route_read(&layout, &schema, &by_name), Route::Cache);
        let deep = read(
            "Task",
            &["id"],
            json!({"logical_operator": "and", "conditions": [
                {"path": "crew.Group.code", "relation": "is", "values": ["x"]}]}),
        );
        assert_eq!(route_read(&layout, &schema, &deep), Route::Cache);
    }

    #[test]
    fn what_the_cache_cannot_name_goes_to_the_site() {
        let (layout, schema) = fixture();
        // A TimeLog has no display field: its links' names are unknown.
        let log = read("Task", &["log"], no_filters());
        assert_eq!(route_read(&layout, &schema, &log), Route::Site);
        let sorted = ReadParams::from_json(
            json!({"type": "Task", "return_fields": ["id"], "filters": no_filters(),
                   "sorts": [{"field_name": "log", "direction": "asc"}]})
            .as_object()
            .expect("an object"),
        )
        .expect("read params");
        assert_eq!(route_read(&layout, &schema, &sorted), Route::Site);
        // A names-only type is never the type answered for.
        let groups = read("Group", &["code"], no_filters());
        assert_eq!(route_read(&layout, &schema, &groups), Route::Site);
        // A field of a names-only type besides its name is not held.
        let deep = read(
            "Task",
            &["id"],
            json!({"logical_operator": "and", "conditions": [
                {"path": "crew.Group.sg_size", "relation": "is", "values": [3]}]}),
        );
        assert_eq!(route_read(&layout, &schema, &deep), Route::Site);
    }

    fn schema(with_tags: bool) -> Schema {
        let f = |t: &str| json!({"data_type": {"value": t}, "properties": {}});
        let mut fields =
            json!({"Shot": {"id": f("number"), "code": f("text"), "tag_list": f("tag_list")}});
        if with_tags {
            fields["Tag"] = json!({"id": f("number"), "name": f("text")});
        }
        Schema::from_json(&fields, None).expect("schema")
    }

    fn tag_read(relation: &str, value: serde_json::Value) -> ReadParams {
        let params = json!({"type": "Shot", "return_fields": ["code"],
            "filters": {"logical_operator": "or", "conditions": [
                {"path": "code", "relation": "is", "values": ["a"]},
                {"path": "tag_list", "relation": relation, "values": [value]}]}});
        ReadParams::from_json(params.as_object().expect("object")).expect("params")
    }

    /// `name_id` on a tag_list needs Tag records: without them cached, the
    /// site answers (when it has Tags); every other tag filter is the cache's.
    #[test]
    fn tag_ids_go_to_the_site_unless_tags_are_cached() {
        let site = schema(true);
        let shots_only = Layout::from_schema(
            &site,
            Some(
                &[(
                    "Shot".to_string(),
                    ["id", "code", "tag_list"].map(String::from).into(),
                )]
                .into(),
            ),
        );
        let with_tags = Layout::from_schema(&site, None);
        let by_id = tag_read("name_id", json!(3));
        assert_eq!(route_read(&shots_only, &site, &by_id), Route::Site);
        assert_eq!(route_read(&with_tags, &site, &by_id), Route::Cache);
        let no_tags_anywhere = schema(false);
        let layout = Layout::from_schema(&no_tags_anywhere, None);
        assert_eq!(route_read(&layout, &no_tags_anywhere, &by_id), Route::Cache);
        let by_name = tag_read("is", json!("hero"));
        assert_eq!(route_read(&shots_only, &site, &by_name), Route::Cache);
    }
}
