//! Compares the cache with the site, record by record and field by field
//! (link names too, where the cache holds the link's target type), and
//! reports the differences grouped by type and field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{json, Value};

use sg_engine::Store;
use sg_protocol::value::EntityLink;
use sg_protocol::ReadParams;

use crate::cache::Cache;
use crate::error::SyncError;

/// One way the cache differs from the site.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The site has the record; the cache does not.
    Missing { entity_type: String, id: i64 },
    /// The cache has a record the site does not.
    Extra { entity_type: String, id: i64 },
    /// Active on one side, retired on the other.
    Retired {
        entity_type: String,
        id: i64,
        site: bool,
    },
    /// A field's value differs.
    Field {
        entity_type: String,
        id: i64,
        field: String,
        site: Value,
        cache: Value,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { entity_type, id } => {
                write!(f, "{entity_type} {id}: on the site, not in the cache")
            }
            Difference::Extra { entity_type, id } => {
                write!(f, "{entity_type} {id}: in the cache, not on the site")
            }
            Difference::Retired {
                entity_type,
                id,
                site,
            } => {
                write!(
                    f,
                    "{entity_type} {id}: {} on the site, not in the cache",
                    if *site { "retired" } else { "active" }
                )
            }
            Difference::Field {
                entity_type,
                id,
                field,
                site,
                cache,
            } => {
                write!(f, "{entity_type} {id}.{field}: site {site}, cache {cache}")
            }
        }
    }
}

impl Difference {
    /// The type and what differs (a field, or `(missing)`, `(extra)`,
    /// `(retired)` for whole records): the report's groups.
    fn group(&self) -> (&str, &str) {
        match self {
            Difference::Missing { entity_type, .. } => (entity_type, "(missing)"),
            Difference::Extra { entity_type, .. } => (entity_type, "(extra)"),
            Difference::Retired { entity_type, .. } => (entity_type, "(retired)"),
            Difference::Field {
                entity_type, field, ..
            } => (entity_type, field),
        }
    }
}

/// The differences grouped by type and field: per group its count, then up
/// to `examples` of them; the largest groups first.
pub fn report(differences: &[Difference], examples: usize) -> String {
    let mut groups: BTreeMap<(&str, &str), Vec<&Difference>> = BTreeMap::new();
    for d in differences {
        groups.entry(d.group()).or_default().push(d);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let mut out = String::new();
    for ((entity_type, what), items) in groups {
        let _ = writeln!(out, "{entity_type} {what}: {}", items.len());
        for d in items.iter().take(examples) {
            let _ = writeln!(out, "  {d}");
        }
        if items.len() > examples {
            let _ = writeln!(out, "  ... and {} more", items.len() - examples);
        }
    }
    out
}

/// Links compare by type, id, and name where `named(type)` (the cache holds
/// the target type, so it can name the link); lists of links compare as sets.
fn normalize(value: &Value, named: &dyn Fn(&str) -> bool) -> Value {
    if let Some(link) = EntityLink::from_json(value) {
        return if named(&link.entity_type) {
            let name = value.get("name").cloned().unwrap_or(Value::Null);
            json!([link.entity_type, link.id, name])
        } else {
            json!([link.entity_type, link.id])
        };
    }
    match value {
        Value::Array(items) if items.iter().all(|v| EntityLink::from_json(v).is_some()) => {
            let set: BTreeSet<String> = items
                .iter()
                .map(|v| normalize(v, named).to_string())
                .collect();
            json!(set)
        }
        Value::Number(n) => n.as_f64().map(|f| json!(f)).unwrap_or(value.clone()),
        other => other.clone(),
    }
}

type Records = BTreeMap<i64, (bool, serde_json::Map<String, Value>)>;

impl<S: Store> Cache<S> {
    /// Every difference between the cache and the site for `types` (all
    /// cached types when empty); `sample` limits the records compared per type.
    pub async fn validate(
        &self,
        types: &[String],
        sample: Option<usize>,
    ) -> Result<Vec<Difference>, SyncError> {
        let catalog = self.engine.catalog();
        let named = |t: &str| catalog.layout.table(t).is_some();
        let wanted: Vec<String> = if types.is_empty() {
            catalog.layout.tables.keys().cloned().collect()
        } else {
            types.to_vec()
        };
        let mut out = Vec::new();
        for entity_type in wanted {
            let Some(table) = catalog.layout.table(&entity_type) else {
                return Err(SyncError::Other(format!("{entity_type} is not cached")));
            };
            let fields: Vec<String> = table
                .fields
                .keys()
                .filter(|f| *f != "id")
                .cloned()
                .collect();
            let mut site: Records = BTreeMap::new();
            let mut cache: Records = BTreeMap::new();
            for retired in [false, true] {
                let params = json!({"type": entity_type, "return_fields": fields,
                    "sorts": [{"field_name": "id", "direction": "asc"}],
                    "return_only": if retired { "retired" } else { "active" }});
                for record in self.client().read_all(params.clone(), 500).await? {
                    if let (Some(id), Value::Object(map)) = (record["id"].as_i64(), record) {
                        site.insert(id, (retired, map));
                    }
                }
                let mut page = 1;
                loop {
                    let mut p = ReadParams::from_json(
                        params
                            .as_object()
                            .ok_or_else(|| SyncError::Other("bad params".into()))?,
                    )
                    .map_err(|f| SyncError::Other(f.message))?;
                    p.paging.current_page = page;
                    let engine = self.engine.clone();
                    let result = tokio::task::spawn_blocking(move || engine.read(&p))
                        .await
                        .map_err(|e| SyncError::Other(e.to_string()))??;
                    for record in result["entities"].as_array().into_iter().flatten() {
                        if let (Some(id), Value::Object(map)) =
                            (record["id"].as_i64(), record.clone())
                        {
                            cache.insert(id, (retired, map));
                        }
                    }
                    if result["paging_info"]["has_next_page"] != json!(true) {
                        break;
                    }
                    page += 1;
                }
            }
            let ids: BTreeSet<i64> = site.keys().chain(cache.keys()).copied().collect();
            for id in ids.into_iter().take(sample.unwrap_or(usize::MAX)) {
                let t = entity_type.clone();
                match (site.get(&id), cache.get(&id)) {
                    (Some(_), None) => out.push(Difference::Missing { entity_type: t, id }),
                    (None, Some(_)) => out.push(Difference::Extra { entity_type: t, id }),
                    (Some((site_retired, s)), Some((cache_retired, c))) => {
                        if site_retired != cache_retired {
                            out.push(Difference::Retired {
                                entity_type: t.clone(),
                                id,
                                site: *site_retired,
                            });
                        }
                        for field in &fields {
                            let sv = s.get(field).cloned().unwrap_or(Value::Null);
                            let cv = c.get(field).cloned().unwrap_or(Value::Null);
                            if normalize(&sv, &named) != normalize(&cv, &named) {
                                out.push(Difference::Field {
                                    entity_type: t.clone(),
                                    id,
                                    field: field.clone(),
                                    site: sv,
                                    cache: cv,
                                });
                            }
                        }
                    }
                    (None, None) => {}
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_count_where_the_cache_holds_the_target_type() {
        let named = |t: &str| t == "HumanUser";
        let user = |name: &str| json!({"type": "HumanUser", "id": 1, "name": name});
        let group = |name: &str| json!({"type": "Group", "id": 1, "name": name});
        assert_ne!(
            normalize(&user("Ann"), &named),
            normalize(&user("Bob"), &named)
        );
        assert_ne!(
            normalize(&json!([user("Ann")]), &named),
            normalize(&json!([user("Bob")]), &named)
        );
        assert_eq!(
            normalize(&group("x"), &named),
            normalize(&json!({"type": "Group", "id": 1}), &named),
            "an uncached type's link has no name in the cache"
        );
    }

    #[test]
    fn the_report_groups_by_type_and_field_largest_first() {
        let field = |t: &str, id: i64, f: &str| Difference::Field {
            entity_type: t.into(),
            id,
            field: f.into(),
            site: json!(1),
            cache: json!(2),
        };
        let mut differences: Vec<Difference> =
            (1..=7).map(|id| field("Shot", id, "code")).collect();
        differences.push(field("Task", 3, "content"));
        differences.push(Difference::Missing {
            entity_type: "Shot".into(),
            id: 9,
        });
        let report = report(&differences, 2);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[0], "Shot code: 7");
        assert_eq!(lines[1], "  Shot 1.code: site 1, cache 2");
        assert_eq!(lines[3], "  ... and 5 more");
        assert!(lines.contains(&"Shot (missing): 1"), "{report}");
        assert!(lines.contains(&"Task content: 1"), "{report}");
        assert_eq!(lines.len(), 8, "{report}");
    }
}
