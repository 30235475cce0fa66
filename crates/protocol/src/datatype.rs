//! The field data types a schema declares, and which filter relations each accepts.

use std::fmt;

use crate::filter::Relation;

/// A field's `data_type`, as `schema_read` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Text,
    Number,
    Float,
    Currency,
    Percent,
    Duration,
    Timecode,
    Checkbox,
    Date,
    DateTime,
    Entity,
    MultiEntity,
    List,
    StatusList,
    EntityType,
    Color,
    Url,
    Image,
    TagList,
    Uuid,
    Password,
    Serializable,
    Summary,
    PivotColumn,
    Calculated,
    Footage,
    Addressing,
    /// A type this version does not know; kept by name.
    Unknown,
}

impl DataType {
    pub fn parse(name: &str) -> DataType {
        use DataType::*;
        match name {
            "text" => Text,
            "number" => Number,
            "float" => Float,
            "currency" => Currency,
            "percent" => Percent,
            "duration" => Duration,
            "timecode" => Timecode,
            "checkbox" => Checkbox,
            "date" => Date,
            "date_time" => DateTime,
            "entity" => Entity,
            "multi_entity" => MultiEntity,
            "list" => List,
            "status_list" => StatusList,
            "entity_type" => EntityType,
            "color" => Color,
            "url" => Url,
            "image" => Image,
            "tag_list" => TagList,
            "uuid" => Uuid,
            "password" => Password,
            "serializable" => Serializable,
            "summary" => Summary,
            "pivot_column" => PivotColumn,
            "calculated" => Calculated,
            "footage" => Footage,
            "addressing" => Addressing,
            _ => Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        use DataType::*;
        match self {
            Text => "text",
            Number => "number",
            Float => "float",
            Currency => "currency",
            Percent => "percent",
            Duration => "duration",
            Timecode => "timecode",
            Checkbox => "checkbox",
            Date => "date",
            DateTime => "date_time",
            Entity => "entity",
            MultiEntity => "multi_entity",
            List => "list",
            StatusList => "status_list",
            EntityType => "entity_type",
            Color => "color",
            Url => "url",
            Image => "image",
            TagList => "tag_list",
            Uuid => "uuid",
            Password => "password",
            Serializable => "serializable",
            Summary => "summary",
            PivotColumn => "pivot_column",
            Calculated => "calculated",
            Footage => "footage",
            Addressing => "addressing",
            Unknown => "unknown",
        }
    }

    /// Whether values of this type are integers on the wire.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::Number | DataType::Duration | DataType::Timecode
        )
    }

    /// Whether values of this type are numbers (integer or not) on the wire.
    pub fn is_numeric(self) -> bool {
        self.is_integer()
            || matches!(
                self,
                DataType::Float | DataType::Currency | DataType::Percent
            )
    }

    /// Whether values of this type are plain strings stored as text.
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            DataType::Text
                | DataType::List
                | DataType::StatusList
                | DataType::EntityType
                | DataType::Color
                | DataType::Uuid
                | DataType::Footage
                | DataType::Calculated
        )
    }

    /// The relations the site accepts on a field of this type (protocol.md §2.1 and the
    /// client's live tests: `in`/`not_in` also work on color, entity_type and uuid).
    pub fn supports(self, relation: Relation) -> bool {
        use DataType::*;
        use Relation::*;
        match self {
            Text | Footage | Calculated => matches!(
                relation,
                Is | IsNot | Contains | NotContains | StartsWith | EndsWith | In | NotIn
            ),
            Number | Currency => matches!(
                relation,
                Is | IsNot | LessThan | GreaterThan | Between | NotBetween | In | NotIn
            ),
            Float | Percent | Duration | Timecode => {
                matches!(
                    relation,
                    Is | IsNot | LessThan | GreaterThan | Between | In | NotIn
                )
            }
            Date | DateTime => matches!(
                relation,
                Is | IsNot
                    | GreaterThan
                    | LessThan
                    | Between
                    | In
                    | NotIn
                    | InLast
                    | NotInLast
                    | InNext
                    | NotInNext
                    | InCalendarDay
                    | InCalendarWeek
                    | InCalendarMonth
                    | InCalendarYear
            ),
            Entity => matches!(
                relation,
                Is | IsNot
                    | TypeIs
                    | TypeIsNot
                    | NameContains
                    | NameNotContains
                    | NameIs
                    | NameStartsWith
                    | NameEndsWith
                    | In
                    | NotIn
            ),
            MultiEntity => matches!(
                relation,
                Is | IsNot
                    | TypeIs
                    | TypeIsNot
                    | NameContains
                    | NameNotContains
                    | NameStartsWith
                    | NameEndsWith
                    | In
                    | NotIn
            ),
            List | StatusList | Color | EntityType | Uuid => {
                matches!(relation, Is | IsNot | In | NotIn)
            }
            Checkbox => matches!(relation, Is | IsNot),
            Image => matches!(relation, Is | IsNot),
            TagList => matches!(
                relation,
                Is | IsNot | NameContains | NameNotContains | NameId
            ),
            Addressing => matches!(
                relation,
                Is | IsNot
                    | TypeIs
                    | TypeIsNot
                    | NameContains
                    | NameNotContains
                    | NameIs
                    | NameStartsWith
                    | NameEndsWith
                    | In
                    | NotIn
                    | Contains
                    | NotContains
            ),
            Password | Serializable | Summary | Url | PivotColumn | Unknown => false,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "text",
            "number",
            "float",
            "currency",
            "percent",
            "duration",
            "timecode",
            "checkbox",
            "date",
            "date_time",
            "entity",
            "multi_entity",
            "list",
            "status_list",
            "entity_type",
            "color",
            "url",
            "image",
            "tag_list",
            "uuid",
            "password",
            "serializable",
            "summary",
            "pivot_column",
            "calculated",
            "footage",
            "addressing",
        ] {
            assert_eq!(DataType::parse(name).name(), name);
        }
        assert_eq!(DataType::parse("hologram"), DataType::Unknown);
    }

    #[test]
    fn relation_table_matches_the_documented_vocabulary() {
        assert!(DataType::Text.supports(Relation::StartsWith));
        assert!(!DataType::Text.supports(Relation::LessThan));
        assert!(DataType::Number.supports(Relation::NotBetween));
        assert!(!DataType::Float.supports(Relation::NotBetween));
        assert!(DataType::DateTime.supports(Relation::InCalendarWeek));
        assert!(DataType::Entity.supports(Relation::NameIs));
        assert!(!DataType::MultiEntity.supports(Relation::NameIs));
        assert!(!DataType::Checkbox.supports(Relation::In));
        assert!(!DataType::Url.supports(Relation::Is));
        assert!(!DataType::Serializable.supports(Relation::Is));
        assert!(!DataType::Password.supports(Relation::Is));
    }
}
