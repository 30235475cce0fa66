//! The server-side filter tree that `read` and `summarize` receive:
//! `{"logical_operator": "and"|"or", "conditions": [{"path", "relation", "values"} | group]}`.

use std::fmt;

use serde_json::{json, Value};

use crate::fault::Fault;

/// How the conditions of a group combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicalOperator {
    And,
    Or,
}

/// A filter relation, by its wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    Is,
    IsNot,
    LessThan,
    GreaterThan,
    Between,
    NotBetween,
    In,
    NotIn,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    InLast,
    NotInLast,
    InNext,
    NotInNext,
    InCalendarDay,
    InCalendarWeek,
    InCalendarMonth,
    InCalendarYear,
    TypeIs,
    TypeIsNot,
    NameIs,
    NameContains,
    NameNotContains,
    NameStartsWith,
    NameEndsWith,
    NameId,
}

const RELATIONS: &[(&str, Relation)] = &[
    ("is", Relation::Is),
    ("is_not", Relation::IsNot),
    ("less_than", Relation::LessThan),
    ("greater_than", Relation::GreaterThan),
    ("between", Relation::Between),
    ("not_between", Relation::NotBetween),
    ("in", Relation::In),
    ("not_in", Relation::NotIn),
    ("contains", Relation::Contains),
    ("not_contains", Relation::NotContains),
    ("starts_with", Relation::StartsWith),
    ("ends_with", Relation::EndsWith),
    ("in_last", Relation::InLast),
    ("not_in_last", Relation::NotInLast),
    ("in_next", Relation::InNext),
    ("not_in_next", Relation::NotInNext),
    ("in_calendar_day", Relation::InCalendarDay),
    ("in_calendar_week", Relation::InCalendarWeek),
    ("in_calendar_month", Relation::InCalendarMonth),
    ("in_calendar_year", Relation::InCalendarYear),
    ("type_is", Relation::TypeIs),
    ("type_is_not", Relation::TypeIsNot),
    ("name_is", Relation::NameIs),
    ("name_contains", Relation::NameContains),
    ("name_not_contains", Relation::NameNotContains),
    ("name_starts_with", Relation::NameStartsWith),
    ("name_ends_with", Relation::NameEndsWith),
    ("name_id", Relation::NameId),
];

impl Relation {
    pub fn parse(name: &str) -> Option<Relation> {
        RELATIONS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    pub fn name(self) -> &'static str {
        RELATIONS
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Every relation, for tests that walk the whole vocabulary.
    pub fn all() -> impl Iterator<Item = Relation> {
        RELATIONS.iter().map(|(_, r)| *r)
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One leaf of the filter tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// A field name or a deep path such as `sg_sequence.Sequence.code`.
    pub path: String,
    pub relation: Relation,
    /// The values as sent: a list even for single-valued relations.
    pub values: Vec<Value>,
}

/// A node of the filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterNode {
    Condition(Condition),
    Group {
        operator: LogicalOperator,
        conditions: Vec<FilterNode>,
    },
}

/// Deeper groups than this are refused rather than risk the stack.
pub const MAX_FILTER_DEPTH: usize = 64;

impl FilterNode {
    /// The filter that matches everything.
    pub fn match_all() -> FilterNode {
        FilterNode::Group {
            operator: LogicalOperator::And,
            conditions: Vec::new(),
        }
    }

    /// Reads a filter tree; `method` names the API call in fault messages.
    pub fn from_json(value: &Value, method: &str) -> Result<FilterNode, Fault> {
        FilterNode::from_json_at(value, method, 0)
    }

    fn from_json_at(value: &Value, method: &str, depth: usize) -> Result<FilterNode, Fault> {
        if depth > MAX_FILTER_DEPTH {
            return Err(Fault::bad_request(format!(
                "API {method}() filters are nested more than {MAX_FILTER_DEPTH} levels deep"
            )));
        }
        let obj = value.as_object().ok_or_else(|| {
            Fault::bad_request(format!(
                "API {method}() filters must be a dictionary, got {value}"
            ))
        })?;
        if obj.contains_key("conditions") || obj.contains_key("logical_operator") {
            let operator = match obj.get("logical_operator").and_then(Value::as_str) {
                Some("and") | Some("all") | None => LogicalOperator::And,
                Some("or") | Some("any") => LogicalOperator::Or,
                Some(other) => {
                    return Err(Fault::bad_request(format!(
                        "API {method}() unknown logical_operator '{other}'"
                    )))
                }
            };
            let conditions = match obj.get("conditions") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|c| FilterNode::from_json_at(c, method, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => {
                    return Err(Fault::bad_request(format!(
                        "API {method}() filter 'conditions' must be a list"
                    )))
                }
            };
            return Ok(FilterNode::Group {
                operator,
                conditions,
            });
        }
        let path = obj.get("path").and_then(Value::as_str).ok_or_else(|| {
            Fault::bad_request(format!("API {method}() filter condition is missing 'path'"))
        })?;
        let relation_name = obj.get("relation").and_then(Value::as_str).ok_or_else(|| {
            Fault::bad_request(format!(
                "API {method}() filter on '{path}' is missing 'relation'"
            ))
        })?;
        let relation = Relation::parse(relation_name).ok_or_else(|| {
            Fault::bad_request(format!(
                "API {method}() filter on '{path}' has an unknown relation '{relation_name}'"
            ))
        })?;
        let values = match obj.get("values") {
            Some(Value::Array(items)) => items.clone(),
            None => Vec::new(),
            Some(single) => vec![single.clone()],
        };
        Ok(FilterNode::Condition(Condition {
            path: path.to_string(),
            relation,
            values,
        }))
    }

    pub fn to_json(&self) -> Value {
        match self {
            FilterNode::Condition(c) => {
                json!({"path": c.path, "relation": c.relation.name(), "values": c.values})
            }
            FilterNode::Group {
                operator,
                conditions,
            } => json!({
                "logical_operator": match operator { LogicalOperator::And => "and", LogicalOperator::Or => "or" },
                "conditions": conditions.iter().map(FilterNode::to_json).collect::<Vec<_>>(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_groups() {
        let wire = json!({"logical_operator": "and", "conditions": [
            {"path": "project", "relation": "is", "values": [{"type": "Project", "id": 1}]},
            {"logical_operator": "or", "conditions": [
                {"path": "code", "relation": "in", "values": ["a", "b"]},
                {"path": "sg_cut_in", "relation": "between", "values": [1, 5]}]}]});
        let node = FilterNode::from_json(&wire, "read").unwrap();
        match &node {
            FilterNode::Group {
                operator: LogicalOperator::And,
                conditions,
            } => {
                assert_eq!(conditions.len(), 2);
                assert!(
                    matches!(&conditions[1], FilterNode::Group { operator: LogicalOperator::Or, conditions } if conditions.len() == 2)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(node.to_json(), wire);
    }

    #[test]
    fn relation_names_round_trip() {
        for r in Relation::all() {
            assert_eq!(Relation::parse(r.name()), Some(r));
        }
        assert_eq!(Relation::parse("drop table"), None);
    }

    #[test]
    fn bad_shapes_are_faults() {
        for bad in [
            json!(5),
            json!({"path": "code"}),
            json!({"path": "code", "relation": "resembles", "values": []}),
            json!({"logical_operator": "xor", "conditions": []}),
            json!({"logical_operator": "and", "conditions": {}}),
            json!({"relation": "is", "values": []}),
        ] {
            assert_eq!(
                FilterNode::from_json(&bad, "read")
                    .unwrap_err()
                    .code
                    .as_i64(),
                103,
                "{bad}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut v = json!({"path": "id", "relation": "is", "values": [1]});
        for _ in 0..100 {
            v = json!({"logical_operator": "and", "conditions": [v]});
        }
        assert!(FilterNode::from_json(&v, "read").is_err());
    }
}
