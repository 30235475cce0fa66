//! Compares the cache with the site, record by record and field by field.

use std::collections::{BTreeMap, BTreeSet};

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

/// Links compare by type and id (a link to a type the cache does not hold
/// has no name there); lists of links compare as sets.
fn normalize(value: &Value) -> Value {
    if let Some(link) = EntityLink::from_json(value) {
        return json!([link.entity_type, link.id]);
    }
    match value {
        Value::Array(items) if items.iter().all(|v| EntityLink::from_json(v).is_some()) => {
            let set: BTreeSet<String> = items.iter().map(|v| normalize(v).to_string()).collect();
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
                            if normalize(&sv) != normalize(&cv) {
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
