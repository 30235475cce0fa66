//! The other side of the generated links: every link the site keeps in step
//! is stored on both records, with [`Inverse`] saying which field holds the
//! other side and what it holds, as the site's own writes do.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use sg_engine::layout::Storage;
use sg_engine::Catalog;
use sg_protocol::value::EntityLink;

use crate::inverse::Inverse;

use super::batch::Batch;

/// Per type, its link fields that have an inverse.
pub(super) struct Mirrors(HashMap<String, Vec<MirroredField>>);

/// A link field and its inverse on each type it links to: `(field,
/// [(target type, inverse)])`.
type MirroredField = (String, Vec<(String, Inverse)>);

impl Mirrors {
    pub(super) fn new(cat: &Catalog) -> Mirrors {
        let mut mirrors = HashMap::new();
        for (t, table) in &cat.layout.tables {
            let mut fields = Vec::new();
            for (name, field) in &table.fields {
                if !matches!(field.storage, Storage::Entity | Storage::Links) {
                    continue;
                }
                let targets: Vec<&String> = if field.valid_types.is_empty() {
                    cat.layout.tables.keys().collect()
                } else {
                    field.valid_types.iter().collect()
                };
                let found: Vec<(String, Inverse)> = targets
                    .into_iter()
                    .filter_map(|target| Some((target.clone(), Inverse::of(cat, t, name, target)?)))
                    .collect();
                if !found.is_empty() {
                    fields.push((name.clone(), found));
                }
            }
            if !fields.is_empty() {
                mirrors.insert(t.clone(), fields);
            }
        }
        Mirrors(mirrors)
    }

    /// Stores the other side of every link in `batch` that the site keeps in
    /// step, in `batch` or else in `globals` (noting `(type, id, field)` in `late`).
    pub(super) fn apply(
        &self,
        batch: &mut Batch,
        mut globals: Option<&mut Batch>,
        late: &mut BTreeSet<(String, i64, String)>,
    ) {
        for (target, target_id, inverse, source) in self.links(batch) {
            let record = match batch.get_mut(target, target_id) {
                Some(r) => r,
                None => match globals
                    .as_deref_mut()
                    .and_then(|g| g.get_mut(target, target_id))
                {
                    Some(r) => {
                        late.insert((target.to_string(), target_id, inverse.field.clone()));
                        r
                    }
                    None => continue,
                },
            };
            if let Some(value) = inverse.after(record.get(&inverse.field), &source, true) {
                record.insert(inverse.field.clone(), value);
            }
        }
    }

    /// Every link in `batch` that has an inverse: `(target type, target id,
    /// its inverse, the linking record)`.
    fn links(&self, batch: &Batch) -> Vec<(&str, i64, &Inverse, EntityLink)> {
        let mut found = Vec::new();
        for (&t, rows) in &batch.types {
            let Some(fields) = self.0.get(t) else {
                continue;
            };
            for record in &rows.rows {
                let Some(id) = record.get("id").and_then(Value::as_i64) else {
                    continue;
                };
                for (field, targets) in fields {
                    let links = match record.get(field) {
                        Some(Value::Array(items)) => items.iter().collect(),
                        Some(v @ Value::Object(_)) => vec![v],
                        _ => continue,
                    };
                    for l in links {
                        let (Some(target), Some(target_id)) =
                            (l["type"].as_str(), l["id"].as_i64())
                        else {
                            continue;
                        };
                        if let Some((tt, inverse)) = targets.iter().find(|x| x.0 == target) {
                            let source = EntityLink {
                                entity_type: t.to_string(),
                                id,
                            };
                            found.push((tt.as_str(), target_id, inverse, source));
                        }
                    }
                }
            }
        }
        found
    }
}
