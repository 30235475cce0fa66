//! Writes on the simulated site: `create`, `update`, `delete` and `revive`,
//! each inside the caller's transaction, with the site's validation, defaults,
//! audit fields, mirrored inverse links and event rows.
//!
//! A [`WriteTx`] lives for one transaction (one call, or one whole `batch`):
//! it collects the event rows, which are written at the end of the
//! transaction, so a failing batch item rolls back data and events alike.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use sg_engine::frag::Fragment;
use sg_engine::layout::{Storage, TableLayout};
use sg_engine::sql::SqlValue;
use sg_engine::{Catalog, Connection, EngineError};
use sg_protocol::value::{format_date_time, EntityLink};
use sg_protocol::{DataType, Fault};

use crate::events::{retirement_stamp, EventRow};
use crate::inverse::{bare, links_of, Inverse};

/// Who is writing.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The ApiUser of a script or the HumanUser of a login.
    pub user: EntityLink,
    /// False for a script whose "Generate Events" switch is off.
    pub generate_events: bool,
    pub session_uuid: Option<String>,
}

/// How a multi_entity or tag_list value in an update combines with the
/// current list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    Set,
    Add,
    Remove,
}

/// One field of an update.
#[derive(Debug, Clone)]
pub struct FieldWrite {
    pub field: String,
    pub value: Value,
    pub mode: UpdateMode,
}

/// Fields a site sets itself; writes to them are refused and they log no events.
const AUDIT_FIELDS: &[&str] = &["created_at", "updated_at", "created_by", "updated_by"];

fn fault(message: String) -> EngineError {
    EngineError::Fault(Fault::bad_request(message))
}

fn link_of(value: &Value) -> Option<EntityLink> {
    EntityLink::from_json(value)
}

/// The names of a stored tag_list value.
fn names_of(value: &Value) -> Vec<String> {
    sg_engine::codec::tag_names(value).unwrap_or_default()
}

/// A list after an update of `given` in `mode`: `given` itself, or the
/// current list with those added (at the end, each once) or removed.
fn combine<T: Clone + PartialEq>(current: &[T], given: &[T], mode: UpdateMode) -> Vec<T> {
    match mode {
        UpdateMode::Set => given.to_vec(),
        UpdateMode::Add => {
            let mut list = current.to_vec();
            for item in given {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
            list
        }
        UpdateMode::Remove => current
            .iter()
            .filter(|item| !given.contains(item))
            .cloned()
            .collect(),
    }
}

/// What one field of an update logs.
enum Change {
    /// The old and new values; an entity field's new and old links are
    /// `added` and `removed`, for the inverse side.
    Value {
        added: Vec<EntityLink>,
        removed: Vec<EntityLink>,
    },
    /// The links a multi-entity list gained and lost.
    Links {
        added: Vec<EntityLink>,
        removed: Vec<EntityLink>,
    },
    /// The names a tag_list gained and lost.
    Tags {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

/// One transaction's worth of writes.
pub struct WriteTx<'a> {
    pub conn: &'a mut dyn Connection,
    pub catalog: &'a Catalog,
    pub caller: &'a Caller,
    pub now: i64,
    pub method: &'static str,
    /// Rows to log when the transaction ends; ids come from `allocate`.
    pub rows: Vec<EventRow>,
    pub allocate: &'a dyn Fn() -> i64,
}

impl<'a> WriteTx<'a> {
    fn table(&self, entity_type: &str) -> Result<&'a TableLayout, EngineError> {
        let catalog: &'a Catalog = self.catalog;
        catalog.layout.table(entity_type).ok_or_else(|| {
            fault(format!(
                "API {}() entity type {entity_type} doesn't exist",
                self.method
            ))
        })
    }

    fn fetch(
        &mut self,
        entity_type: &str,
        id: i64,
    ) -> Result<Option<sg_engine::lookup::FetchedRecord>, EngineError> {
        let table = self.table(entity_type)?;
        sg_engine::lookup::fetch_record(self.conn, &self.catalog.layout, table, id)
    }

    /// An active record's stored fields; None when it is missing or retired.
    pub fn active_record(
        &mut self,
        entity_type: &str,
        id: i64,
    ) -> Result<Option<Map<String, Value>>, EngineError> {
        Ok(match self.fetch(entity_type, id)? {
            Some((record, false)) => Some(record),
            _ => None,
        })
    }

    fn named(&mut self, links: &[EntityLink]) -> Result<Vec<Value>, EngineError> {
        sg_engine::read::named_links(self.conn, &self.catalog.layout, links)
    }

    /// A link as event rows show it in `added`/`removed`.
    fn event_items(&mut self, links: &[EntityLink]) -> Result<Vec<Value>, EngineError> {
        let mut items = self.named(links)?;
        for item in items.iter_mut() {
            if let Some(obj) = item.as_object_mut() {
                obj.insert("valid".into(), json!("valid"));
            }
        }
        Ok(items)
    }

    fn log(&mut self, mut row: EventRow) -> i64 {
        let id = (self.allocate)();
        row.id = id;
        self.rows.push(row);
        id
    }

    /// Checks a value against the field's data type, valid types and valid
    /// values; returns it in stored form (links as bare `{type, id}`).
    fn validate(
        &mut self,
        entity_type: &str,
        field: &str,
        value: &Value,
    ) -> Result<Value, EngineError> {
        self.validate_as(entity_type, field, value, false)
    }

    /// [`Self::validate`]; `by_site` also allows the fields only the site
    /// itself writes (not editable ones, such as an Attachment's `this_file`).
    fn validate_as(
        &mut self,
        entity_type: &str,
        field: &str,
        value: &Value,
        by_site: bool,
    ) -> Result<Value, EngineError> {
        let m = self.method;
        let schema_field = self
            .catalog
            .schema
            .entity(entity_type)
            .and_then(|e| e.field(field))
            .ok_or_else(|| fault(format!("API {m}() {entity_type}.{field} doesn't exist")))?;
        let editable = schema_field
            .raw
            .get("editable")
            .and_then(|e| e.get("value"))
            .and_then(Value::as_bool);
        // Any script may log its own EventLogEntry rows (Toolkit does).
        let custom_event = entity_type == "EventLogEntry" && self.method == "create";
        if field == "id"
            || AUDIT_FIELDS.contains(&field)
            || (editable == Some(false) && !custom_event && !by_site)
        {
            return Err(fault(format!(
                "API {m}() {entity_type}.{field} is not editable"
            )));
        }
        let table = self.table(entity_type)?;
        let layout_field = table
            .field(field)
            .ok_or_else(|| fault(format!("API {m}() {entity_type}.{field} can't be written")))?
            .clone();
        let bad = |why: &str| {
            fault(format!(
                "API {m}() {entity_type}.{field}: {value} is not valid: {why}"
            ))
        };
        let check_link = |tx: &mut Self, link: &EntityLink| -> Result<(), EngineError> {
            if !schema_field.valid_types.is_empty()
                && !schema_field.valid_types.contains(&link.entity_type)
            {
                return Err(fault(format!(
                    "API {m}() {entity_type}.{field} can't link to a {} (valid types: {})",
                    link.entity_type,
                    schema_field.valid_types.join(", ")
                )));
            }
            if tx.catalog.layout.table(&link.entity_type).is_some() {
                match tx.fetch(&link.entity_type, link.id)? {
                    Some((_, false)) => {}
                    _ => {
                        return Err(fault(format!(
                            "API {m}() {entity_type}.{field}: {} {} doesn't exist",
                            link.entity_type, link.id
                        )))
                    }
                }
            }
            Ok(())
        };
        match layout_field.storage {
            Storage::Entity => {
                if value.is_null() {
                    return Ok(Value::Null);
                }
                let link = link_of(value).ok_or_else(|| bad("expected {\"type\", \"id\"}"))?;
                check_link(self, &link)?;
                Ok(bare(&link))
            }
            Storage::Links => {
                let items = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items.clone(),
                    _ => return Err(bad("expected a list of entities")),
                };
                let mut links = Vec::new();
                for item in &items {
                    let link = link_of(item)
                        .ok_or_else(|| bad("expected a list of {\"type\", \"id\"}"))?;
                    check_link(self, &link)?;
                    links.push(bare(&link));
                }
                Ok(Value::Array(links))
            }
            Storage::Tags => {
                let names = sg_engine::codec::tag_names(value)
                    .ok_or_else(|| bad("expected a list of tag names"))?;
                if names.iter().any(|n| n.trim().is_empty()) {
                    return Err(bad("a tag name can't be empty"));
                }
                Ok(json!(names))
            }
            _ => {
                let checked = match (schema_field.data_type, value) {
                    (_, Value::Null) => Value::Null,
                    (
                        DataType::Number
                        | DataType::Duration
                        | DataType::Timecode
                        | DataType::Percent,
                        v,
                    ) if v.is_i64() => v.clone(),
                    (
                        DataType::Number
                        | DataType::Duration
                        | DataType::Timecode
                        | DataType::Percent,
                        _,
                    ) => return Err(bad("expected a whole number")),
                    (DataType::Float | DataType::Currency, v) if v.is_number() => v.clone(),
                    (DataType::Float | DataType::Currency, _) => {
                        return Err(bad("expected a number"))
                    }
                    (DataType::Url, v) if v.is_object() => v.clone(),
                    (DataType::Url, _) => return Err(bad("expected a url dictionary")),
                    (DataType::Summary | DataType::PivotColumn, _) => {
                        return Err(bad("the field is computed"))
                    }
                    (DataType::List | DataType::StatusList, Value::String(s)) => {
                        if !schema_field.valid_values.is_empty()
                            && !schema_field.valid_values.contains(s)
                        {
                            return Err(bad(&format!(
                                "valid values are {}",
                                schema_field.valid_values.join(", ")
                            )));
                        }
                        value.clone()
                    }
                    (DataType::EntityType, Value::String(s)) => {
                        if self.catalog.schema.entity(s).is_none() {
                            return Err(bad("not an entity type of this site"));
                        }
                        value.clone()
                    }
                    (_, v) => v.clone(),
                };
                // The stored form's own checks (dates, date-times, text, booleans).
                sg_engine::codec::encode_scalar(&layout_field, &checked).map_err(|e| match e {
                    EngineError::Fault(f) => {
                        fault(format!("API {m}() {entity_type}.{field}: {}", f.message))
                    }
                    other => other,
                })?;
                Ok(checked)
            }
        }
    }

    /// Tag names as the site keeps them: each the name of a Tag record,
    /// spelled as that record spells it, the record made (when `make`) for a
    /// name no Tag has yet. A site without a Tag type keeps the names as given.
    fn tag_records(&mut self, names: &[String], make: bool) -> Result<Vec<String>, EngineError> {
        let tags = self.catalog.layout.table("Tag");
        if tags.and_then(|t| t.field("name")).is_none() {
            return Ok(names.to_vec());
        }
        let mut kept: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            let spelled = match self.tag_named(name)? {
                Some(existing) => existing,
                None => {
                    if make {
                        self.create("Tag", &[("name".to_string(), json!(name))], &[])?;
                    }
                    name.clone()
                }
            };
            if !kept.contains(&spelled) {
                kept.push(spelled);
            }
        }
        Ok(kept)
    }

    /// The name of the live Tag named `name` (compared as text is), if any.
    fn tag_named(&mut self, name: &str) -> Result<Option<String>, EngineError> {
        let mut params = sg_protocol::ReadParams::new("Tag", &["name"]);
        params.filters = sg_protocol::FilterNode::Condition(sg_protocol::Condition {
            path: "name".into(),
            relation: sg_protocol::Relation::Is,
            values: vec![json!(name)],
        });
        let found = sg_engine::read::read(self.conn, &self.catalog.layout, &params)?;
        Ok(found["entities"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(|t| t["name"].as_str())
            .map(str::to_string))
    }

    fn project_of(record: &Map<String, Value>) -> Option<Value> {
        record
            .get("project")
            .filter(|p| p.is_object())
            .map(|p| json!({"type": p["type"], "id": p["id"]}))
    }

    fn display_name(&self, entity_type: &str, record: &Map<String, Value>) -> Value {
        let display = self
            .catalog
            .layout
            .table(entity_type)
            .and_then(|t| t.display_field.clone());
        display
            .and_then(|d| record.get(&d).cloned())
            .unwrap_or(Value::Null)
    }

    fn audit(&self, record: &mut Map<String, Value>, table: &TableLayout, created: bool) {
        let stamp = json!(format_date_time(self.now));
        let user = bare(&self.caller.user);
        let mut set = |k: &str, v: &Value| {
            if table.field(k).is_some() {
                record.insert(k.into(), v.clone());
            }
        };
        if created {
            set("created_at", &stamp);
            set("created_by", &user);
        }
        set("updated_at", &stamp);
        set("updated_by", &user);
    }

    fn change_row(
        &self,
        entity_type: &str,
        id: i64,
        field: &str,
        data_type: Option<DataType>,
        change: Map<String, Value>,
        project: Option<Value>,
    ) -> EventRow {
        let mut meta = Map::new();
        meta.insert("type".into(), json!("attribute_change"));
        meta.insert("attribute_name".into(), json!(field));
        meta.insert("entity_type".into(), json!(entity_type));
        meta.insert("entity_id".into(), json!(id));
        if let Some(dt) = data_type {
            meta.insert("field_data_type".into(), json!(dt.name()));
        }
        meta.extend(change);
        EventRow {
            id: 0,
            event_type: format!("Shotgun_{entity_type}_Change"),
            attribute_name: Some(field.to_string()),
            entity: Some(EntityLink {
                entity_type: entity_type.to_string(),
                id,
            }),
            meta: Value::Object(meta),
            project,
            description: format!(
                "{} changed {field} on {entity_type} {id}",
                self.caller.user.entity_type
            ),
        }
    }

    fn data_type(&self, entity_type: &str, field: &str) -> Option<DataType> {
        self.catalog
            .schema
            .entity(entity_type)?
            .field(field)
            .map(|f| f.data_type)
    }

    /// `create`: returns the new record's fields, as the site does.
    pub fn create(
        &mut self,
        entity_type: &str,
        fields: &[(String, Value)],
        return_fields: &[String],
    ) -> Result<Value, EngineError> {
        self.create_by_site(entity_type, fields, &|_| Vec::new(), return_fields)
    }

    /// A `create` in which the site also sets fields of its own, which may
    /// depend on the new record's id (an Attachment's `this_file` holds its
    /// own download URL) and may be fields no caller can edit. They are logged
    /// like every other field of a create.
    pub fn create_by_site(
        &mut self,
        entity_type: &str,
        fields: &[(String, Value)],
        site_fields: &dyn Fn(i64) -> Vec<(String, Value)>,
        return_fields: &[String],
    ) -> Result<Value, EngineError> {
        let table = self.table(entity_type)?.clone();
        let mut record = Map::new();
        let mut given = BTreeMap::new();
        for (field, value) in fields {
            let mut stored = self.validate(entity_type, field, value)?;
            if table.field(field).map(|f| f.storage) == Some(Storage::Tags) {
                stored = json!(self.tag_records(&names_of(&stored), true)?);
            }
            given.insert(field.clone(), stored);
        }
        // Custom event rows take their ids from the log's own sequence.
        let custom_event = entity_type == "EventLogEntry";
        let id = if custom_event {
            (self.allocate)()
        } else {
            sg_engine::write::next_id(self.conn, &table)?
        };
        record.insert("id".into(), json!(id));
        for (field, value) in site_fields(id) {
            let stored = self.validate_as(entity_type, &field, &value, true)?;
            given.insert(field, stored);
        }
        if custom_event && table.field("user").is_some() {
            record.insert("user".into(), bare(&self.caller.user));
        }
        let mut set_fields: Vec<String> = given.keys().cloned().collect();
        for (name, default) in default_values(self.catalog, &table) {
            if !given.contains_key(&name) {
                record.insert(name.clone(), default);
                set_fields.push(name);
            }
        }
        record.extend(given.clone());
        self.audit(&mut record, &table, true);
        sg_engine::write::upsert_record(self.conn, &table, &record)?;
        let (stored, _) = self.fetch(entity_type, id)?.ok_or_else(|| {
            fault(format!(
                "API create() the new {entity_type} could not be read back"
            ))
        })?;

        if entity_type != "EventLogEntry" {
            let project = Self::project_of(&stored);
            let name = self.display_name(entity_type, &stored);
            self.log(EventRow {
                id: 0,
                event_type: format!("Shotgun_{entity_type}_New"),
                attribute_name: None,
                entity: Some(EntityLink {
                    entity_type: entity_type.into(),
                    id,
                }),
                meta: json!({"type": "new_entity", "entity_type": entity_type, "entity_id": id}),
                project: project.clone(),
                description: format!(
                    "{} created new {entity_type} {}",
                    self.caller.user.entity_type, name
                ),
            });
            set_fields.sort();
            for field in &set_fields {
                let dt = self.data_type(entity_type, field);
                let new_value = stored.get(field).cloned().unwrap_or(Value::Null);
                let mut change = Map::new();
                let storage = table.field(field).map(|f| f.storage);
                let is_multi = storage == Some(Storage::Links);
                let added_links = if is_multi {
                    links_of(&new_value)
                } else {
                    Vec::new()
                };
                if is_multi {
                    change.insert(
                        "added".into(),
                        Value::Array(self.event_items(&added_links)?),
                    );
                    change.insert("removed".into(), json!([]));
                } else if storage == Some(Storage::Tags) {
                    change.insert("added".into(), json!(names_of(&new_value)));
                    change.insert("removed".into(), json!([]));
                } else {
                    change.insert("old_value".into(), Value::Null);
                    change.insert("new_value".into(), new_value.clone());
                }
                change.insert("in_create".into(), json!(true));
                let row = self.change_row(entity_type, id, field, dt, change, project.clone());
                let forward = self.log(row);
                let added = if is_multi {
                    added_links
                } else {
                    link_of(&new_value).into_iter().collect()
                };
                self.mirror(entity_type, id, field, &added, &[], forward, true)?;
            }
        }

        let mut result = Map::new();
        result.insert("type".into(), json!(entity_type));
        result.insert("id".into(), json!(id));
        for field in given.keys().chain(return_fields.iter()) {
            if let Some(v) = stored.get(field) {
                result.insert(field.clone(), v.clone());
            }
        }
        Ok(Value::Object(result))
    }

    /// `update`: returns `{type, id, <updated fields>}`.
    pub fn update(
        &mut self,
        entity_type: &str,
        id: i64,
        writes: &[FieldWrite],
    ) -> Result<Value, EngineError> {
        let table = self.table(entity_type)?.clone();
        let (before, retired) = self
            .fetch(entity_type, id)?
            .ok_or_else(|| fault(format!("API update() {entity_type} {id} doesn't exist")))?;
        if retired {
            return Err(fault(format!("API update() {entity_type} {id} is retired")));
        }
        let mut record = Map::new();
        record.insert("id".into(), json!(id));
        let mut changes: Vec<(String, Change)> = Vec::new();
        for w in writes {
            let stored = self.validate(entity_type, &w.field, &w.value)?;
            let storage = table.field(&w.field).map(|f| f.storage);
            let old = before.get(&w.field).cloned().unwrap_or(Value::Null);
            match storage {
                Some(Storage::Links) => {
                    let current = links_of(&old);
                    let given = links_of(&stored);
                    let next = combine(&current, &given, w.mode);
                    let added: Vec<EntityLink> = next
                        .iter()
                        .filter(|l| !current.contains(l))
                        .cloned()
                        .collect();
                    let removed: Vec<EntityLink> = current
                        .iter()
                        .filter(|l| !next.contains(l))
                        .cloned()
                        .collect();
                    if next != current {
                        record.insert(
                            w.field.clone(),
                            Value::Array(next.iter().map(bare).collect()),
                        );
                        changes.push((w.field.clone(), Change::Links { added, removed }));
                    }
                }
                Some(Storage::Tags) => {
                    let current = names_of(&old);
                    // Removing a name no Tag has makes none.
                    let make = w.mode != UpdateMode::Remove;
                    let given = self.tag_records(&names_of(&stored), make)?;
                    let next = combine(&current, &given, w.mode);
                    if next != current {
                        let added = next.iter().filter(|n| !current.contains(n)).cloned();
                        let removed = current.iter().filter(|n| !next.contains(n)).cloned();
                        let change = Change::Tags {
                            added: added.collect(),
                            removed: removed.collect(),
                        };
                        record.insert(w.field.clone(), json!(next));
                        changes.push((w.field.clone(), change));
                    }
                }
                Some(Storage::Entity) => {
                    let old_link = link_of(&old);
                    let new_link = link_of(&stored);
                    if old_link != new_link {
                        record.insert(w.field.clone(), stored.clone());
                        changes.push((
                            w.field.clone(),
                            Change::Value {
                                added: new_link.into_iter().collect(),
                                removed: old_link.into_iter().collect(),
                            },
                        ));
                    }
                }
                _ => {
                    let same = match (&old, &stored) {
                        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                        (a, b) => a == b,
                    };
                    if !same {
                        record.insert(w.field.clone(), stored.clone());
                        let unlinked = Change::Value {
                            added: Vec::new(),
                            removed: Vec::new(),
                        };
                        changes.push((w.field.clone(), unlinked));
                    }
                }
            }
        }
        if !changes.is_empty() {
            self.audit(&mut record, &table, false);
            sg_engine::write::upsert_record(self.conn, &table, &record)?;
        }
        let (after, _) = self.fetch(entity_type, id)?.ok_or_else(|| {
            fault(format!(
                "API update() {entity_type} {id} could not be read back"
            ))
        })?;
        let project = Self::project_of(&after);
        for (field, logged) in &changes {
            let dt = self.data_type(entity_type, field);
            let mut change = Map::new();
            let (added, removed) = match logged {
                Change::Links { added, removed } => {
                    change.insert("added".into(), Value::Array(self.event_items(added)?));
                    change.insert("removed".into(), Value::Array(self.event_items(removed)?));
                    (added.as_slice(), removed.as_slice())
                }
                Change::Tags { added, removed } => {
                    // No real site's row for a tag_list change has been seen:
                    // this is the multi-entity shape, with the names as items.
                    change.insert("added".into(), json!(added));
                    change.insert("removed".into(), json!(removed));
                    (&[][..], &[][..])
                }
                Change::Value { added, removed } => {
                    change.insert(
                        "old_value".into(),
                        before.get(field).cloned().unwrap_or(Value::Null),
                    );
                    change.insert(
                        "new_value".into(),
                        after.get(field).cloned().unwrap_or(Value::Null),
                    );
                    (added.as_slice(), removed.as_slice())
                }
            };
            let row = self.change_row(entity_type, id, field, dt, change, project.clone());
            let forward = self.log(row);
            self.mirror(entity_type, id, field, added, removed, forward, false)?;
        }
        let mut result = Map::new();
        result.insert("type".into(), json!(entity_type));
        result.insert("id".into(), json!(id));
        for w in writes {
            result.insert(
                w.field.clone(),
                after.get(&w.field).cloned().unwrap_or(Value::Null),
            );
        }
        Ok(Value::Object(result))
    }

    /// Keeps the inverse side of a link field in step, with back-reference rows.
    #[allow(clippy::too_many_arguments)]
    fn mirror(
        &mut self,
        source_type: &str,
        source_id: i64,
        field: &str,
        added: &[EntityLink],
        removed: &[EntityLink],
        forward_event: i64,
        in_create: bool,
    ) -> Result<(), EngineError> {
        let source = EntityLink {
            entity_type: source_type.to_string(),
            id: source_id,
        };
        let source_dt = self.data_type(source_type, field);
        let targets = added
            .iter()
            .map(|l| (l, true))
            .chain(removed.iter().map(|l| (l, false)));
        for (target, adding) in targets.collect::<Vec<_>>() {
            let Some(inverse) = Inverse::of(self.catalog, source_type, field, &target.entity_type)
            else {
                continue;
            };
            let target_table = self.table(&target.entity_type)?.clone();
            let Some((target_record, false)) = self.fetch(&target.entity_type, target.id)? else {
                continue;
            };
            let current = target_record.get(&inverse.field);
            let Some(next) = inverse.after(current, &source, adding) else {
                continue;
            };
            let mut change = Map::new();
            if inverse.many {
                let items = self.event_items(std::slice::from_ref(&source))?;
                let (a, r) = if adding {
                    (items, vec![])
                } else {
                    (vec![], items)
                };
                change.insert("added".into(), Value::Array(a));
                change.insert("removed".into(), Value::Array(r));
            } else {
                // The target moves away from its previous owner, whose list loses it.
                if let (true, Some(previous)) = (adding, current.and_then(link_of)) {
                    let moved = format!("{}.{}", target.entity_type, inverse.field);
                    self.detach(&previous, target, &inverse.field, &moved, forward_event)?;
                }
                change.insert("old_value".into(), current.cloned().unwrap_or(Value::Null));
                let new_value = if adding {
                    self.named(std::slice::from_ref(&source))?
                        .into_iter()
                        .next()
                        .unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                change.insert("new_value".into(), new_value);
            }
            let mut record = Map::new();
            record.insert("id".into(), json!(target.id));
            record.insert(inverse.field.clone(), next);
            self.audit(&mut record, &target_table, false);
            sg_engine::write::upsert_record(self.conn, &target_table, &record)?;
            change.insert(
                "actual_attribute_changed".into(),
                json!(format!("{source_type}.{field}")),
            );
            change.insert("original_event_log_entry_id".into(), json!(forward_event));
            if in_create {
                change.insert("in_create".into(), json!(true));
            }
            let side = EntityLink {
                entity_type: source_type.to_string(),
                id: source_id,
            };
            let project = Self::project_of(&target_record);
            self.log_back_reference(target, &side, &inverse.field, source_dt, change, project);
        }
        Ok(())
    }

    /// Logs a back-reference row on `record`'s `field`: as real sites write
    /// them, its meta's entity_type and entity_id describe `changed`, the
    /// side whose write caused it.
    fn log_back_reference(
        &mut self,
        record: &EntityLink,
        changed: &EntityLink,
        field: &str,
        data_type: Option<DataType>,
        change: Map<String, Value>,
        project: Option<Value>,
    ) {
        let mut row = self.change_row(
            &changed.entity_type,
            changed.id,
            field,
            data_type,
            change,
            project,
        );
        row.event_type = format!("Shotgun_{}_Change", record.entity_type);
        row.entity = Some(record.clone());
        self.log(row);
    }

    /// Removes `child` from its previous owner's list after the child's link
    /// field `child_field` moved to another owner (of any type).
    fn detach(
        &mut self,
        owner: &EntityLink,
        child: &EntityLink,
        child_field: &str,
        actual_attribute_changed: &str,
        forward_event: i64,
    ) -> Result<(), EngineError> {
        let inverse = Inverse::of(
            self.catalog,
            &child.entity_type,
            child_field,
            &owner.entity_type,
        );
        let Some(inverse) = inverse.filter(|i| i.many) else {
            return Ok(());
        };
        let table = self.table(&owner.entity_type)?.clone();
        let Some((owner_record, false)) = self.fetch(&owner.entity_type, owner.id)? else {
            return Ok(());
        };
        let Some(next) = inverse.after(owner_record.get(&inverse.field), child, false) else {
            return Ok(());
        };
        let mut record = Map::new();
        record.insert("id".into(), json!(owner.id));
        record.insert(inverse.field.clone(), next);
        self.audit(&mut record, &table, false);
        sg_engine::write::upsert_record(self.conn, &table, &record)?;
        let mut change = Map::new();
        change.insert("added".into(), json!([]));
        change.insert(
            "removed".into(),
            Value::Array(self.event_items(std::slice::from_ref(child))?),
        );
        change.insert(
            "actual_attribute_changed".into(),
            json!(actual_attribute_changed),
        );
        change.insert("original_event_log_entry_id".into(), json!(forward_event));
        let child_dt = self.data_type(&child.entity_type, child_field);
        let project = Self::project_of(&owner_record);
        self.log_back_reference(owner, child, &inverse.field, child_dt, change, project);
        Ok(())
    }

    /// The Tasks whose `entity` is this record, active or retired, with their `updated_at`.
    fn child_tasks(
        &mut self,
        entity_type: &str,
        id: i64,
        retired: bool,
    ) -> Result<Vec<(i64, Value)>, EngineError> {
        if entity_type == "Task" {
            return Ok(Vec::new());
        }
        let Some(tasks) = self.catalog.layout.table("Task") else {
            return Ok(Vec::new());
        };
        let parent = EntityLink {
            entity_type: entity_type.to_string(),
            id,
        };
        let ids = sg_engine::lookup::ids_linking_to(self.conn, tasks, "entity", &parent, retired)?;
        let mut out = Vec::with_capacity(ids.len());
        for task in ids {
            if let Some((record, _)) = self.fetch("Task", task)? {
                out.push((
                    task,
                    record.get("updated_at").cloned().unwrap_or(Value::Null),
                ));
            }
        }
        Ok(out)
    }

    /// Whether the record that `method` (`delete` or `revive`) names is
    /// retired; event log entries can't be `done` (deleted, revived), and a
    /// missing record is a fault.
    fn is_retired(
        &mut self,
        method: &str,
        done: &str,
        entity_type: &str,
        id: i64,
    ) -> Result<bool, EngineError> {
        if entity_type == "EventLogEntry" {
            return Err(fault(format!(
                "API {method}() EventLogEntry records can't be {done}"
            )));
        }
        let (_, retired) = self
            .fetch(entity_type, id)?
            .ok_or_else(|| fault(format!("API {method}() {entity_type} {id} doesn't exist")))?;
        Ok(retired)
    }

    /// `delete`: retires the record (and its Tasks); false if it already was.
    pub fn delete(&mut self, entity_type: &str, id: i64) -> Result<bool, EngineError> {
        if self.is_retired("delete", "deleted", entity_type, id)? {
            return Ok(false);
        }
        for (task, _) in self.child_tasks(entity_type, id, false)? {
            self.set_retirement("Task", task, true)?;
            self.record_cascade(entity_type, id, task)?;
        }
        self.set_retirement(entity_type, id, true)?;
        Ok(true)
    }

    /// Retires (`retire`) or revives one record that is not so yet: stamps
    /// its `updated_at` and logs the retirement_date change and the
    /// Retirement or Revival row.
    fn set_retirement(
        &mut self,
        entity_type: &str,
        id: i64,
        retire: bool,
    ) -> Result<(), EngineError> {
        let table = self.table(entity_type)?.clone();
        let Some((record, retired)) = self.fetch(entity_type, id)? else {
            return Ok(());
        };
        if retired == retire {
            return Ok(());
        }
        // A retirement stamps updated_at, so that is when the record was retired.
        let retired_at = record
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(sg_protocol::value::parse_date_time);
        // The stamp is written while the record is active.
        if !retire {
            sg_engine::write::set_retired(self.conn, &table, id, false)?;
        }
        let mut stamp = Map::new();
        stamp.insert("id".into(), json!(id));
        self.audit(&mut stamp, &table, false);
        sg_engine::write::upsert_record(self.conn, &table, &stamp)?;
        if retire {
            sg_engine::write::set_retired(self.conn, &table, id, true)?;
        }
        let project = Self::project_of(&record);
        let when = retirement_stamp(self.now);
        let mut change = Map::new();
        if retire {
            change.insert("old_value".into(), Value::Null);
            change.insert("new_value".into(), json!(when));
        } else {
            change.insert("old_value".into(), json!(retired_at.map(retirement_stamp)));
            change.insert("new_value".into(), Value::Null);
        }
        let row = self.change_row(
            entity_type,
            id,
            "retirement_date",
            None,
            change,
            project.clone(),
        );
        self.log(row);
        let name = self.display_name(entity_type, &record);
        let (event, verb, meta) = if retire {
            (
                "Retirement",
                "retired",
                json!({"type": "entity_retirement", "entity_type": entity_type, "entity_id": id, "id": id,
                    "class_name": entity_type, "display_name": name, "retirement_date": when}),
            )
        } else {
            (
                "Revival",
                "revived",
                json!({"class_name": entity_type, "display_name": name, "entity_id": id, "entity_type": entity_type, "id": id}),
            )
        };
        self.log(EventRow {
            id: 0,
            event_type: format!("Shotgun_{entity_type}_{event}"),
            attribute_name: None,
            entity: Some(EntityLink {
                entity_type: entity_type.into(),
                id,
            }),
            meta,
            project,
            description: format!("{} {verb} {entity_type} {id}", self.caller.user.entity_type),
        });
        Ok(())
    }

    /// Remembers that deleting a record retired one of its Tasks.
    fn record_cascade(&mut self, entity_type: &str, id: i64, task: i64) -> Result<(), EngineError> {
        let mut f = Fragment::text(
            "INSERT INTO \"__sim_cascade\" (\"parent_type\", \"parent_id\", \"task_id\") VALUES (",
        );
        f.bind(SqlValue::Text(entity_type.to_string())).push(", ");
        f.bind(SqlValue::Int(id))
            .push(", ")
            .bind(SqlValue::Int(task))
            .push(")");
        let (sql, params) = f.finish(self.conn.dialect());
        self.conn.execute(&sql, &params).map(|_| ())
    }

    /// The Tasks a record's delete retired, forgotten as they are returned.
    fn take_cascade(&mut self, entity_type: &str, id: i64) -> Result<Vec<i64>, EngineError> {
        let filter = |sql: &str| {
            let mut f = Fragment::text(sql);
            f.bind(SqlValue::Text(entity_type.to_string()))
                .push(" AND \"parent_id\" = ");
            f.bind(SqlValue::Int(id));
            f
        };
        let (sql, params) =
            filter("SELECT \"task_id\" FROM \"__sim_cascade\" WHERE \"parent_type\" = ")
                .finish(self.conn.dialect());
        let tasks = self
            .conn
            .query(&sql, &params)?
            .iter()
            .filter_map(|r| r[0].as_i64())
            .collect();
        let (sql, params) = filter("DELETE FROM \"__sim_cascade\" WHERE \"parent_type\" = ")
            .finish(self.conn.dialect());
        self.conn.execute(&sql, &params)?;
        Ok(tasks)
    }

    /// `revive`: brings a retired record back (and the Tasks retired with it);
    /// false if it was not retired.
    pub fn revive(&mut self, entity_type: &str, id: i64) -> Result<bool, EngineError> {
        if !self.is_retired("revive", "revived", entity_type, id)? {
            return Ok(false);
        }
        // The Tasks the record's delete retired come back with it (children first).
        for task in self.take_cascade(entity_type, id)? {
            self.set_retirement("Task", task, false)?;
        }
        self.set_retirement(entity_type, id, false)?;
        Ok(true)
    }
}

/// The values a new record of `table` takes where its creator gives none:
/// the schema's default of each stored field (but links and audit fields).
pub(crate) fn default_values(catalog: &Catalog, table: &TableLayout) -> Vec<(String, Value)> {
    let Some(schema) = catalog.schema.entity(&table.entity_type) else {
        return Vec::new();
    };
    schema
        .fields
        .iter()
        .filter(|(name, f)| {
            !f.default_value.is_null()
                && !AUDIT_FIELDS.contains(&name.as_str())
                && table.field(name).is_some_and(|l| {
                    !matches!(l.storage, Storage::Links | Storage::Entity | Storage::Id)
                })
        })
        .map(|(name, f)| {
            // Some schemas give a checkbox's default as 0 or 1.
            let default = match (f.data_type, &f.default_value) {
                (DataType::Checkbox, Value::Number(n)) => json!(n.as_f64() != Some(0.0)),
                (_, v) => v.clone(),
            };
            (name.clone(), default)
        })
        .collect()
}
