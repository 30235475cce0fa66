//! Resolving field paths, plain (`code`) or deep (`sg_sequence.Sequence.code`,
//! `task_assignees.HumanUser.login`), against the layout.

use crate::error::{bad_request, unknown, EngineError};
use crate::layout::{FieldLayout, Layout, Storage, TableLayout};

/// One step through a link: from a record to the linked record of one type.
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    /// The table the link field is on.
    pub from: &'a TableLayout,
    /// The link field (entity or multi_entity).
    pub field: &'a FieldLayout,
    /// The table of the linked type the path names.
    pub to: &'a TableLayout,
}

impl Hop<'_> {
    pub fn is_multi(&self) -> bool {
        self.field.storage == Storage::Links
    }
}

/// A resolved path: the hops, then the field at the end.
#[derive(Debug, Clone)]
pub struct ResolvedPath<'a> {
    pub hops: Vec<Hop<'a>>,
    pub table: &'a TableLayout,
    pub field: &'a FieldLayout,
}

impl ResolvedPath<'_> {
    pub fn has_multi_hop(&self) -> bool {
        self.hops.iter().any(Hop::is_multi)
    }
}

/// Resolves `path` on `root`. Unknown types and fields give the site's fault.
pub fn resolve<'a>(
    layout: &'a Layout,
    root: &'a TableLayout,
    path: &str,
    method: &str,
) -> Result<ResolvedPath<'a>, EngineError> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len().is_multiple_of(2) {
        return Err(bad_request(format!(
            "API {method}() {}.{path} is not a valid field path",
            root.entity_type
        )));
    }
    let mut table = root;
    let mut hops = Vec::new();
    let mut i = 0;
    while i + 1 < parts.len() {
        let field = table
            .field(parts[i])
            .ok_or_else(|| unknown(method, &table.entity_type, parts[i]))?;
        if !matches!(field.storage, Storage::Entity | Storage::Links) {
            return Err(bad_request(format!(
                "API {method}() {}.{} is not a link field, so {path} can't be followed",
                table.entity_type, field.name
            )));
        }
        let to = layout.table(parts[i + 1]).ok_or_else(|| {
            bad_request(format!(
                "API {method}() entity type {} doesn't exist",
                parts[i + 1]
            ))
        })?;
        hops.push(Hop {
            from: table,
            field,
            to,
        });
        table = to;
        i += 2;
    }
    let last = parts[parts.len() - 1];
    let field = table
        .field(last)
        .ok_or_else(|| unknown(method, &table.entity_type, last))?;
    Ok(ResolvedPath { hops, table, field })
}
