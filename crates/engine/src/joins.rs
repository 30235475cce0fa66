//! The LEFT JOINs that bring the records a path's entity links point at
//! into a query (`sg_sequence.Sequence.code` joins the Sequence), shared by
//! the plans of `read` and `summarize`: each prefix of a path is joined once
//! however many paths go through it.

use std::collections::HashMap;

use crate::filter::FilterCompiler;
use crate::frag::Fragment;
use crate::path::Hop;
use crate::sql::SqlValue;

/// The joins of a query's root (aliased `t0`) so far.
#[derive(Debug, Default)]
pub(crate) struct HopJoins {
    /// The JOIN clauses, to follow the root in the FROM clause.
    pub(crate) sql: Fragment,
    /// The alias of each entity-hop prefix joined, e.g. `sg_sequence.Sequence`.
    aliases: HashMap<String, String>,
}

impl HopJoins {
    /// Joins the entity hops of `path` (all of them must be entity hops,
    /// the first ones of the path) and returns the alias of the last table.
    /// A hop whose link is null, of another type or to a retired record
    /// joins nothing, so the path's value is null, as `read` shows it.
    pub(crate) fn join(&mut self, compiler: &FilterCompiler, path: &str, hops: &[Hop]) -> String {
        let parts: Vec<&str> = path.split('.').collect();
        let mut alias = "t0".to_string();
        for (i, hop) in hops.iter().enumerate() {
            // A resolved path has two parts per hop and a field after them.
            let prefix = parts.get(..(i + 1) * 2).unwrap_or(&parts).join(".");
            if let Some(existing) = self.aliases.get(&prefix) {
                alias = existing.clone();
                continue;
            }
            let next = compiler.alias();
            self.sql.push(&format!(
                " LEFT JOIN {} {next} ON {alias}.{} = ",
                hop.to.table(),
                hop.field.type_column()
            ));
            self.sql.bind(SqlValue::Text(hop.to.entity_type.clone()));
            self.sql.push(&format!(
                " AND {next}.\"id\" = {alias}.{} AND {next}.\"__retired\" = 0",
                hop.field.column()
            ));
            self.aliases.insert(prefix, next.clone());
            alias = next;
        }
        alias
    }
}
