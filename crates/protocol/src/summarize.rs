//! Parameters of the `summarize` method.

use serde_json::{Map, Value};

use crate::fault::Fault;
use crate::filter::FilterNode;
use crate::read::{entity_type, filters, get_bool, get_str, SortDirection};

/// A summary type, as the client's `summarize` docstring lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryType {
    RecordCount,
    Count,
    Sum,
    Maximum,
    Minimum,
    Average,
    Earliest,
    Latest,
    Percentage,
    StatusPercentage,
    StatusList,
    Checked,
    Unchecked,
    /// The number of distinct non-null values.
    CountDistinct,
}

const SUMMARY_TYPES: &[(&str, SummaryType)] = &[
    ("record_count", SummaryType::RecordCount),
    ("count", SummaryType::Count),
    ("sum", SummaryType::Sum),
    ("maximum", SummaryType::Maximum),
    ("minimum", SummaryType::Minimum),
    ("average", SummaryType::Average),
    ("earliest", SummaryType::Earliest),
    ("latest", SummaryType::Latest),
    ("percentage", SummaryType::Percentage),
    ("status_percentage", SummaryType::StatusPercentage),
    ("status_list", SummaryType::StatusList),
    ("checked", SummaryType::Checked),
    ("unchecked", SummaryType::Unchecked),
    ("count_distinct", SummaryType::CountDistinct),
];

impl SummaryType {
    pub fn parse(name: &str) -> Option<SummaryType> {
        SUMMARY_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
    pub fn name(self) -> &'static str {
        SUMMARY_TYPES
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// A grouping type, as the client's `summarize` docstring lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupingType {
    Exact,
    Tens,
    Hundreds,
    Thousands,
    TensOfThousands,
    HundredsOfThousands,
    Millions,
    Day,
    Week,
    Month,
    Quarter,
    Year,
    ClusteredDate,
    OneDay,
    FiveDays,
    EntityType,
    FirstLetter,
}

const GROUPING_TYPES: &[(&str, GroupingType)] = &[
    ("exact", GroupingType::Exact),
    ("tens", GroupingType::Tens),
    ("hundreds", GroupingType::Hundreds),
    ("thousands", GroupingType::Thousands),
    ("tensofthousands", GroupingType::TensOfThousands),
    ("hundredsofthousands", GroupingType::HundredsOfThousands),
    ("millions", GroupingType::Millions),
    ("day", GroupingType::Day),
    ("week", GroupingType::Week),
    ("month", GroupingType::Month),
    ("quarter", GroupingType::Quarter),
    ("year", GroupingType::Year),
    ("clustered_date", GroupingType::ClusteredDate),
    ("oneday", GroupingType::OneDay),
    ("fivedays", GroupingType::FiveDays),
    ("entitytype", GroupingType::EntityType),
    ("firstletter", GroupingType::FirstLetter),
];

impl GroupingType {
    pub fn parse(name: &str) -> Option<GroupingType> {
        GROUPING_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
    pub fn name(self) -> &'static str {
        GROUPING_TYPES
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// One `{field, type}` summary request.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySpec {
    pub field: String,
    pub summary_type: SummaryType,
}

/// One `{field, type, direction}` grouping level.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupingSpec {
    pub field: String,
    pub grouping_type: GroupingType,
    pub direction: SortDirection,
}

/// Everything a `summarize` call asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarizeParams {
    pub entity_type: String,
    pub summaries: Vec<SummarySpec>,
    pub filters: FilterNode,
    pub grouping: Vec<GroupingSpec>,
    pub include_archived_projects: Option<bool>,
}

fn list<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], Fault> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(Fault::bad_request(format!(
            "API summarize() '{key}' must be a list, got {other}"
        ))),
    }
}

fn item_str<'a>(item: &'a Value, key: &str, what: &str) -> Result<&'a str, Fault> {
    item.get(key).and_then(Value::as_str).ok_or_else(|| {
        Fault::bad_request(format!(
            "API summarize() each {what} needs a string '{key}', got {item}"
        ))
    })
}

impl SummarizeParams {
    pub fn from_json(params: &Map<String, Value>) -> Result<SummarizeParams, Fault> {
        const M: &str = "summarize";
        let summaries = list(params, "summaries")?
            .iter()
            .map(|item| {
                let field = item_str(item, "field", "summary")?.to_string();
                let name = item_str(item, "type", "summary")?;
                let summary_type = SummaryType::parse(name).ok_or_else(|| {
                    Fault::bad_request(format!("API summarize() unknown summary type '{name}'"))
                })?;
                Ok(SummarySpec {
                    field,
                    summary_type,
                })
            })
            .collect::<Result<Vec<_>, Fault>>()?;
        let grouping = list(params, "grouping")?
            .iter()
            .map(|item| {
                let field = item_str(item, "field", "grouping")?.to_string();
                let name = item_str(item, "type", "grouping")?;
                let grouping_type = GroupingType::parse(name).ok_or_else(|| {
                    Fault::bad_request(format!("API summarize() unknown grouping type '{name}'"))
                })?;
                let direction = match item.get("direction").and_then(Value::as_str) {
                    None | Some("asc") => SortDirection::Asc,
                    Some("desc") => SortDirection::Desc,
                    Some(other) => {
                        return Err(Fault::bad_request(format!(
                        "API summarize() grouping direction must be 'asc' or 'desc', got '{other}'"
                    )))
                    }
                };
                Ok(GroupingSpec {
                    field,
                    grouping_type,
                    direction,
                })
            })
            .collect::<Result<Vec<_>, Fault>>()?;
        let _ = get_str(params, "type", M)?;
        Ok(SummarizeParams {
            entity_type: entity_type(params, M)?,
            summaries,
            filters: filters(params, M)?,
            grouping,
            include_archived_projects: get_bool(params, "include_archived_projects"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_summaries_and_groupings() {
        let p = SummarizeParams::from_json(json!({
            "type": "Task", "summaries": [{"field": "id", "type": "count"}, {"field": "due_date", "type": "latest"}],
            "grouping": [{"field": "entity", "type": "exact", "direction": "desc"}, {"field": "code", "type": "firstletter"}]
        }).as_object().unwrap()).unwrap();
        assert_eq!(p.summaries[1].summary_type, SummaryType::Latest);
        assert_eq!(p.grouping[0].direction, SortDirection::Desc);
        assert_eq!(p.grouping[1].grouping_type, GroupingType::FirstLetter);
        assert_eq!(p.filters, FilterNode::match_all());
    }

    #[test]
    fn unknown_types_are_faults() {
        for bad in [
            json!({"type": "Task", "summaries": [{"field": "id", "type": "median"}]}),
            json!({"type": "Task", "summaries": [{"field": "id"}]}),
            json!({"type": "Task", "grouping": [{"field": "id", "type": "fortnight"}]}),
            json!({"type": "Task", "summaries": {}}),
        ] {
            assert!(
                SummarizeParams::from_json(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
