//! How a schema maps onto tables: which fields are stored, in which columns,
//! and which field names a record (its display field).
//!
//! Each entity type is one table named after the type, with `id` as primary
//! key, a `__retired` flag and one typed column per field. An entity link is
//! two columns, `<field>__type` and `<field>__id`. A multi_entity field (and
//! addressing, which is a list of links too) is a link table
//! `<Type>__<field>` with one row per link, in order.
//!
//! A type that a kept link field can point at but that is not kept itself
//! gets a *names-only* table: `id`, `__retired` and its display field. It
//! gives links their names (and hides links to retired records) the way the
//! site does; it is never the type a read is answered for.
//!
//! A tag_list field holds tag names, which is what a site takes and returns
//! (`["hero", "fx"]`): one text column with the names as a JSON array, in
//! their order, null for none. A record's tags then come with its row (no
//! second query per page, as link tables need) and are written in its own
//! upsert, and every tag_list filter stays in SQL on both stores as an
//! `EXISTS` over the array's elements (`json_each` on SQLite,
//! `json_array_elements_text` on PostgreSQL). No index serves those filters;
//! a tag table `(src_id, pos, tag)` would let one serve `is`, at the price of
//! a second table to write and read for every record, for a relation reads
//! seldom use and mostly next to an indexed one (a project, a status).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sg_protocol::{DataType, EntitySchema, Schema};

use crate::sql::is_plain_ident;

/// The quoted id column of every table, its primary key.
pub const ID_COLUMN: &str = "\"id\"";

/// The quoted column of every table that flags a record retired (1) or active (0).
pub const RETIRED_COLUMN: &str = "\"__retired\"";

/// The quoted columns of a link table (see [`TableLayout::link_table`]): the
/// id of the record holding the list, a link's place in it, and the type and
/// id of the record it points at.
pub const LINK_SOURCE_COLUMN: &str = "\"src_id\"";
pub const LINK_POSITION_COLUMN: &str = "\"pos\"";
pub const LINK_TARGET_TYPE_COLUMN: &str = "\"dst_type\"";
pub const LINK_TARGET_ID_COLUMN: &str = "\"dst_id\"";

/// How one field's values sit in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The `id` primary key.
    Id,
    Integer,
    Real,
    /// Text compared case-insensitively.
    Text,
    /// 0 or 1; unset reads as false.
    Bool,
    /// `YYYY-MM-DD` text.
    Date,
    /// Seconds since the epoch, UTC.
    DateTime,
    /// Any JSON value, stored as its text (url dicts, serializable, image, ...).
    Json,
    /// Two columns: `<field>__type` and `<field>__id`.
    Entity,
    /// A link table `<Type>__<field>`.
    Links,
    /// Tag names: a JSON array of strings as text, null when there are none.
    Tags,
}

impl Storage {
    pub fn for_data_type(data_type: DataType) -> Storage {
        use DataType::*;
        match data_type {
            Number | Duration | Timecode | Percent => Storage::Integer,
            Float | Currency => Storage::Real,
            Checkbox => Storage::Bool,
            Date => Storage::Date,
            DateTime => Storage::DateTime,
            Entity => Storage::Entity,
            MultiEntity | Addressing => Storage::Links,
            TagList => Storage::Tags,
            Text | List | StatusList | EntityType | Color | Uuid | Password | Footage
            | Calculated => Storage::Text,
            Url | Image | Serializable | Summary | PivotColumn | Unknown => Storage::Json,
        }
    }
}

/// One stored field.
#[derive(Debug, Clone)]
pub struct FieldLayout {
    pub name: String,
    pub data_type: DataType,
    pub storage: Storage,
    pub valid_types: Vec<String>,
    /// The quoted column names, made once and shared: every record written
    /// names them.
    column: Arc<str>,
    type_column: Arc<str>,
}

impl FieldLayout {
    pub fn new(
        name: &str,
        data_type: DataType,
        storage: Storage,
        valid_types: Vec<String>,
    ) -> FieldLayout {
        let column: Arc<str> = match storage {
            Storage::Id => "\"id\"".into(),
            Storage::Entity => format!("\"{name}__id\"").into(),
            _ => format!("\"{name}\"").into(),
        };
        FieldLayout {
            name: name.to_string(),
            data_type,
            storage,
            valid_types,
            column,
            type_column: format!("\"{name}__type\"").into(),
        }
    }

    /// The column of a single-column field (or the id column of an entity field).
    pub fn column(&self) -> String {
        self.column.to_string()
    }

    /// [`FieldLayout::column`], borrowed.
    pub fn column_name(&self) -> &str {
        &self.column
    }

    /// The type column of an entity field.
    pub fn type_column(&self) -> String {
        self.type_column.to_string()
    }

    /// [`FieldLayout::type_column`], borrowed.
    pub fn type_column_name(&self) -> &str {
        &self.type_column
    }

    /// [`FieldLayout::column_name`], shared (for data that outlives the layout's borrow).
    pub fn shared_column_name(&self) -> Arc<str> {
        self.column.clone()
    }

    /// [`FieldLayout::type_column_name`], shared.
    pub fn shared_type_column_name(&self) -> Arc<str> {
        self.type_column.clone()
    }
}

/// One entity type's table.
#[derive(Debug, Clone)]
pub struct TableLayout {
    pub entity_type: String,
    pub fields: BTreeMap<String, FieldLayout>,
    /// The field whose value is a link's `name`, if the type has one stored.
    pub display_field: Option<String>,
    /// Whether the table only names the records that kept links point at
    /// (see the module doc): reads of the type itself are not answered.
    pub names_only: bool,
}

impl TableLayout {
    /// The quoted table name.
    pub fn table(&self) -> String {
        format!("\"{}\"", self.entity_type)
    }

    /// The quoted name of a link table.
    pub fn link_table(&self, field: &str) -> String {
        format!("\"{}__{}\"", self.entity_type, field)
    }

    pub fn field(&self, name: &str) -> Option<&FieldLayout> {
        self.fields.get(name)
    }
}

/// The tables of every cached type.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub tables: BTreeMap<String, TableLayout>,
}

/// The field that names a record of this type in links, as sites choose it.
pub fn display_field(entity: &EntitySchema) -> Option<&'static str> {
    let explicit: &[(&str, &str)] = &[
        ("Task", "content"),
        ("Note", "subject"),
        ("Reply", "content"),
        ("HumanUser", "name"),
        ("ApiUser", "firstname"),
        ("Project", "name"),
        ("Group", "code"),
        ("Department", "name"),
        ("Attachment", "filename"),
        ("EventLogEntry", "description"),
    ];
    for (entity_type, field) in explicit {
        if entity.name == *entity_type && entity.fields.contains_key(*field) {
            return Some(field);
        }
    }
    ["code", "name", "title", "content"]
        .into_iter()
        .find(|f| entity.fields.contains_key(*f))
}

impl Layout {
    /// The layout of a whole schema, or of the chosen types and fields.
    /// `id` is always kept; names that are not plain identifiers are left out.
    pub fn from_schema(
        schema: &Schema,
        selection: Option<&BTreeMap<String, BTreeSet<String>>>,
    ) -> Layout {
        let mut tables = BTreeMap::new();
        for (name, entity) in &schema.entities {
            if !is_plain_ident(name) || name.contains("__") {
                continue;
            }
            let chosen = match selection {
                Some(sel) => match sel.get(name) {
                    Some(fields) => Some(fields),
                    None => continue,
                },
                None => None,
            };
            let mut fields = BTreeMap::new();
            fields.insert(
                "id".to_string(),
                FieldLayout::new("id", DataType::Number, Storage::Id, vec![]),
            );
            for (field_name, field) in &entity.fields {
                if field_name == "id" || !is_plain_ident(field_name) || field_name.contains("__") {
                    continue;
                }
                if chosen.is_some_and(|c| !c.contains(field_name)) {
                    continue;
                }
                fields.insert(
                    field_name.clone(),
                    FieldLayout::new(
                        field_name,
                        field.data_type,
                        Storage::for_data_type(field.data_type),
                        field.valid_types.clone(),
                    ),
                );
            }
            let display = display_field(entity)
                .filter(|f| fields.get(*f).is_some_and(|l| l.storage == Storage::Text))
                .map(str::to_string);
            tables.insert(
                name.clone(),
                TableLayout {
                    entity_type: name.clone(),
                    fields,
                    display_field: display,
                    names_only: false,
                },
            );
        }
        if let Some(selection) = selection {
            for (name, display) in names_targets(schema, selection) {
                let Some(field) = schema.entity(&name).and_then(|e| e.field(&display)) else {
                    continue;
                };
                let mut fields = BTreeMap::new();
                fields.insert(
                    "id".to_string(),
                    FieldLayout::new("id", DataType::Number, Storage::Id, vec![]),
                );
                fields.insert(
                    display.clone(),
                    FieldLayout::new(&display, field.data_type, Storage::Text, vec![]),
                );
                tables.insert(
                    name.clone(),
                    TableLayout {
                        entity_type: name,
                        fields,
                        display_field: Some(display),
                        names_only: true,
                    },
                );
            }
        }
        Layout { tables }
    }

    /// The table of a type: kept, or names-only.
    pub fn table(&self, entity_type: &str) -> Option<&TableLayout> {
        self.tables.get(entity_type)
    }

    /// The table of a type whose reads the cache answers (not names-only).
    pub fn served(&self, entity_type: &str) -> Option<&TableLayout> {
        self.tables.get(entity_type).filter(|t| !t.names_only)
    }
}

/// The types a selection's link fields can point at that it does not keep,
/// each with the field that names its records: the names-only tables a
/// cache of that selection holds. A type without a display field the cache
/// can store is left out (its links' names can't be known).
pub fn names_targets(
    schema: &Schema,
    selection: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, String> {
    let mut targets = BTreeMap::new();
    for (kept, fields) in selection {
        let Some(entity) = schema.entity(kept) else {
            continue;
        };
        for field in fields {
            let Some(field) = entity.field(field) else {
                continue;
            };
            // tag_list holds tag names, not links.
            if !matches!(
                field.data_type,
                DataType::Entity | DataType::MultiEntity | DataType::Addressing
            ) {
                continue;
            }
            for target in &field.valid_types {
                if selection.contains_key(target) || targets.contains_key(target) {
                    continue;
                }
                if !is_plain_ident(target) || target.contains("__") {
                    continue;
                }
                let Some(target_schema) = schema.entity(target) else {
                    continue;
                };
                let named = display_field(target_schema).filter(|d| {
                    target_schema
                        .field(d)
                        .is_some_and(|f| Storage::for_data_type(f.data_type) == Storage::Text)
                });
                if let Some(display) = named {
                    targets.insert(target.clone(), display.to_string());
                }
            }
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        let f = |t: &str| json!({"data_type": {"value": t, "editable": false}, "properties": {}});
        Schema::from_json(
            &json!({
                "Task": {"id": f("number"), "content": f("text"), "entity": f("entity"), "task_assignees": f("multi_entity"), "due_date": f("date")},
                "Shot": {"id": f("number"), "code": f("text"), "sg_cut_in": f("number"), "weird name": f("text")},
                "Bad Type": {"id": f("number")}
            }),
            None,
        )
        .unwrap()
    }

    #[test]
    fn maps_fields_to_storage() {
        let layout = Layout::from_schema(&schema(), None);
        let task = layout.table("Task").unwrap();
        assert_eq!(task.field("entity").unwrap().storage, Storage::Entity);
        assert_eq!(
            task.field("task_assignees").unwrap().storage,
            Storage::Links
        );
        assert_eq!(task.field("due_date").unwrap().storage, Storage::Date);
        assert_eq!(task.display_field.as_deref(), Some("content"));
        assert_eq!(
            task.link_table("task_assignees"),
            "\"Task__task_assignees\""
        );
        let shot = layout.table("Shot").unwrap();
        assert_eq!(shot.display_field.as_deref(), Some("code"));
        assert!(
            shot.field("weird name").is_none(),
            "names that are not identifiers are not stored"
        );
        assert!(layout.table("Bad Type").is_none());
    }

    #[test]
    fn a_selection_keeps_only_chosen_types_and_fields() {
        let mut sel = BTreeMap::new();
        sel.insert("Shot".to_string(), BTreeSet::from(["code".to_string()]));
        let layout = Layout::from_schema(&schema(), Some(&sel));
        assert!(layout.table("Task").is_none());
        let shot = layout.table("Shot").unwrap();
        assert!(shot.field("code").is_some() && shot.field("id").is_some());
        assert!(shot.field("sg_cut_in").is_none());
    }

    #[test]
    fn link_targets_left_out_get_names_only_tables() {
        let f = |t: &str, valid: &[&str]| json!({"data_type": {"value": t}, "properties": {"valid_types": {"value": valid}}});
        let schema = Schema::from_json(
            &json!({
                "Task": {"id": f("number", &[]), "content": f("text", &[]),
                         "crew": f("multi_entity", &["Group", "TimeLog"]),
                         "tags": f("tag_list", &["Tag"]),
                         "entity": f("entity", &["Shot"])},
                "Shot": {"id": f("number", &[]), "code": f("text", &[])},
                "Group": {"id": f("number", &[]), "code": f("text", &[]), "sg_size": f("number", &[])},
                "TimeLog": {"id": f("number", &[]), "duration": f("number", &[])},
                "Tag": {"id": f("number", &[]), "name": f("text", &[])}
            }),
            None,
        )
        .unwrap();
        let mut sel = BTreeMap::new();
        sel.insert(
            "Task".to_string(),
            BTreeSet::from(["id", "crew", "tags", "entity"].map(String::from)),
        );
        sel.insert("Shot".to_string(), BTreeSet::from(["id".to_string()]));
        let layout = Layout::from_schema(&schema, Some(&sel));
        let group = layout.table("Group").unwrap();
        assert!(group.names_only && layout.served("Group").is_none());
        assert_eq!(group.display_field.as_deref(), Some("code"));
        assert_eq!(
            group.fields.keys().collect::<Vec<_>>(),
            ["code", "id"],
            "only the name is held"
        );
        assert!(
            layout.table("TimeLog").is_none(),
            "no display field to hold"
        );
        assert!(
            layout.table("Tag").is_none(),
            "tag_list holds names, not links"
        );
        let shot = layout.served("Shot").unwrap();
        assert!(
            !shot.names_only,
            "a kept type is served, whatever its fields"
        );
        assert!(Layout::from_schema(&schema, None)
            .tables
            .values()
            .all(|t| !t.names_only));
    }
}
