//! Whether the cache can answer a read: only when every type, field, path
//! and relation it touches is cached. The decision is made before anything
//! is sent, so no request reaches the site twice.

use sg_engine::path::resolve;
use sg_engine::Layout;
use sg_protocol::{FilterNode, ReadParams, Schema, SummarizeParams};

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
/// answer (with the site's own fault).
fn route_paths(layout: &Layout, schema: &Schema, entity_type: &str, paths: &[String]) -> Route {
    let Some(root) = layout.table(entity_type) else {
        return if schema.entity(entity_type).is_some() {
            Route::Site
        } else {
            Route::Cache
        };
    };
    for path in paths.iter().filter(|p| p.as_str() != "type") {
        if resolve(layout, root, path, "read").is_err() && exists_on_site(schema, entity_type, path)
        {
            return Route::Site;
        }
    }
    Route::Cache
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

pub fn route_read(layout: &Layout, schema: &Schema, params: &ReadParams) -> Route {
    if params
        .additional_filter_presets
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Route::Site;
    }
    let mut paths = params.return_fields.clone();
    paths_of(&params.filters, &mut paths);
    paths.extend(params.sorts.iter().map(|s| s.field_name.clone()));
    route_paths(layout, schema, &params.entity_type, &paths)
}

pub fn route_summarize(layout: &Layout, schema: &Schema, params: &SummarizeParams) -> Route {
    let mut paths: Vec<String> = params.summaries.iter().map(|s| s.field.clone()).collect();
    paths.extend(params.grouping.iter().map(|g| g.field.clone()));
    paths_of(&params.filters, &mut paths);
    route_paths(layout, schema, &params.entity_type, &paths)
}
