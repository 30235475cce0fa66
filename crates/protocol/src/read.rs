//! Parameters of the `read` method (the client's `find` and `find_one`).

use serde_json::{Map, Value};

use crate::fault::Fault;
use crate::filter::FilterNode;

/// Which records a read looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnOnly {
    #[default]
    Active,
    Retired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    Asc,
    Desc,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub field_name: String,
    pub direction: SortDirection,
}

/// The most records a site puts on one page (`api_max_entities_per_page` in
/// its `info`): a larger `entities_per_page` gets pages of this size.
pub const API_MAX_ENTITIES_PER_PAGE: u64 = 500;

/// `paging: {entities_per_page, current_page}`; pages count from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub entities_per_page: u64,
    pub current_page: u64,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            entities_per_page: 500,
            current_page: 1,
        }
    }
}

/// Everything a `read` call asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadParams {
    pub entity_type: String,
    pub return_fields: Vec<String>,
    pub filters: FilterNode,
    pub return_only: ReturnOnly,
    pub paging: Paging,
    pub sorts: Vec<Sort>,
    /// `None` when not sent, which the site treats as `true`.
    pub include_archived_projects: Option<bool>,
    pub additional_filter_presets: Option<Value>,
    pub api_return_image_urls: bool,
    /// `return_paging_info`: legacy paging, with `entity_count`.
    pub return_paging_info: bool,
    /// `return_paging_info_without_counts`: modern paging, `has_next_page` only.
    pub return_paging_info_without_counts: bool,
}

/// Params keys the site knows for `read`; anything else is ignored as sites do.
pub(crate) fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    method: &str,
) -> Result<Option<&'a str>, Fault> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Fault::bad_request(format!(
            "API {method}() '{key}' must be a string, got {other}"
        ))),
    }
}

pub(crate) fn get_bool(obj: &Map<String, Value>, key: &str) -> Option<bool> {
    match obj.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(n)) => Some(n.as_f64() != Some(0.0)),
        _ => None,
    }
}

pub(crate) fn entity_type(obj: &Map<String, Value>, method: &str) -> Result<String, Fault> {
    get_str(obj, "type", method)?
        .map(str::to_string)
        .ok_or_else(|| Fault::bad_request(format!("API {method}() 'type' is required")))
}

pub(crate) fn filters(obj: &Map<String, Value>, method: &str) -> Result<FilterNode, Fault> {
    match obj.get("filters") {
        None | Some(Value::Null) => Ok(FilterNode::match_all()),
        Some(Value::Array(items)) if items.is_empty() => Ok(FilterNode::match_all()),
        Some(value) => FilterNode::from_json(value, method),
    }
}

impl ReadParams {
    /// A read of `return_fields` on every active record of a type.
    pub fn new(entity_type: &str, return_fields: &[&str]) -> ReadParams {
        ReadParams {
            entity_type: entity_type.to_string(),
            return_fields: return_fields.iter().map(|s| s.to_string()).collect(),
            filters: FilterNode::match_all(),
            return_only: ReturnOnly::Active,
            paging: Paging::default(),
            sorts: Vec::new(),
            include_archived_projects: None,
            additional_filter_presets: None,
            api_return_image_urls: true,
            return_paging_info: false,
            return_paging_info_without_counts: true,
        }
    }

    /// Reads the params object of a `read` call.
    pub fn from_json(params: &Map<String, Value>) -> Result<ReadParams, Fault> {
        const M: &str = "read";
        let entity_type = entity_type(params, M)?;
        let return_fields = match params.get("return_fields") {
            None | Some(Value::Null) => vec!["id".to_string()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        Fault::bad_request(format!(
                            "API read() return_fields must be strings, got {v}"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(Value::String(s)) => vec![s.clone()],
            Some(other) => {
                return Err(Fault::bad_request(format!(
                    "API read() return_fields must be a list, got {other}"
                )))
            }
        };
        let return_only = match get_str(params, "return_only", M)? {
            None | Some("active") => ReturnOnly::Active,
            Some("retired") => ReturnOnly::Retired,
            Some(other) => {
                return Err(Fault::bad_request(format!(
                    "API read() return_only must be 'active' or 'retired', got '{other}'"
                )))
            }
        };
        let paging = match params.get("paging") {
            None | Some(Value::Null) => Paging::default(),
            Some(Value::Object(p)) => {
                let number = |key: &str, default: u64| -> Result<u64, Fault> {
                    match p.get(key) {
                        None | Some(Value::Null) => Ok(default),
                        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                            Fault::bad_request(format!(
                                "API read() paging '{key}' must be a positive integer, got {v}"
                            ))
                        }),
                    }
                };
                Paging {
                    entities_per_page: number("entities_per_page", 500)?,
                    current_page: number("current_page", 1)?,
                }
            }
            Some(other) => {
                return Err(Fault::bad_request(format!(
                    "API read() paging must be a dictionary, got {other}"
                )))
            }
        };
        let sorts = match params.get("sorts") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(Sort::from_json)
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(Fault::bad_request(format!(
                    "API read() sorts must be a list, got {other}"
                )))
            }
        };
        Ok(ReadParams {
            entity_type,
            return_fields,
            filters: filters(params, M)?,
            return_only,
            paging,
            sorts,
            include_archived_projects: get_bool(params, "include_archived_projects"),
            additional_filter_presets: params.get("additional_filter_presets").cloned(),
            api_return_image_urls: get_bool(params, "api_return_image_urls").unwrap_or(false),
            return_paging_info: get_bool(params, "return_paging_info").unwrap_or(false),
            return_paging_info_without_counts: get_bool(
                params,
                "return_paging_info_without_counts",
            )
            .unwrap_or(false),
        })
    }
}

impl Sort {
    fn from_json(value: &Value) -> Result<Sort, Fault> {
        let obj = value.as_object().ok_or_else(|| {
            Fault::bad_request(format!(
                "API read() each sort must be a dictionary, got {value}"
            ))
        })?;
        let field_name = get_str(obj, "field_name", "read")?
            .or(get_str(obj, "column", "read")?)
            .ok_or_else(|| Fault::bad_request("API read() sort is missing 'field_name'"))?
            .to_string();
        let direction = match get_str(obj, "direction", "read")? {
            None | Some("asc") | Some("ASC") => SortDirection::Asc,
            Some("desc") | Some("DESC") => SortDirection::Desc,
            Some(other) => {
                return Err(Fault::bad_request(format!(
                    "API read() sort direction must be 'asc' or 'desc', got '{other}'"
                )))
            }
        };
        Ok(Sort {
            field_name,
            direction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_the_clients_params() {
        let p = ReadParams::from_json(&obj(json!({
            "type": "Shot", "return_fields": ["code", "project.Project.name"],
            "filters": {"logical_operator": "and", "conditions": []},
            "return_only": "retired", "paging": {"entities_per_page": 10, "current_page": 3},
            "sorts": [{"field_name": "code", "direction": "desc"}, {"column": "id"}],
            "include_archived_projects": false, "api_return_image_urls": true,
            "return_paging_info_without_counts": true
        })))
        .unwrap();
        assert_eq!(p.entity_type, "Shot");
        assert_eq!(p.return_fields, vec!["code", "project.Project.name"]);
        assert_eq!(p.return_only, ReturnOnly::Retired);
        assert_eq!(
            p.paging,
            Paging {
                entities_per_page: 10,
                current_page: 3
            }
        );
        assert_eq!(p.sorts[0].direction, SortDirection::Desc);
        assert_eq!(
            p.sorts[1],
            Sort {
                field_name: "id".into(),
                direction: SortDirection::Asc
            }
        );
        assert_eq!(p.include_archived_projects, Some(false));
        assert!(p.return_paging_info_without_counts && !p.return_paging_info);
    }

    #[test]
    fn bad_params_are_faults() {
        for bad in [
            json!({}),
            json!({"type": 5}),
            json!({"type": "Shot", "return_fields": [1]}),
            json!({"type": "Shot", "return_only": "both"}),
            json!({"type": "Shot", "paging": {"entities_per_page": -1}}),
            json!({"type": "Shot", "sorts": [{"field_name": "code", "direction": "up"}]}),
            json!({"type": "Shot", "sorts": "code"}),
        ] {
            assert!(ReadParams::from_json(&obj(bad.clone())).is_err(), "{bad}");
        }
    }
}
