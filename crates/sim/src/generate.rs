//! Fills an empty site with a realistic, seeded production: people and
//! groups, pipeline steps, tags, projects with episodes, sequences, shots and
//! assets, their tasks, versions, published files, notes, replies, playlists
//! and time logs.
//!
//! The same size, seed and clock give the same records. Both sides of every
//! link the site keeps in step (see [`crate::inverse`]) are stored, and every
//! value passes the site's own validation: statuses and list values come
//! from the field's valid values, links point at records that exist and that
//! the field accepts. A field the engine's schema lacks is skipped, and so
//! is a type, so the generator also fills the real site schema.
//!
//! Records are written through [`Engine::upsert_records`], one transaction
//! per chunk of 5,000, one project at a time: one thread builds a project's
//! records while the caller's thread writes the previous project's, so only
//! a few projects are ever in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use sg_engine::layout::{FieldLayout, Storage};
use sg_engine::{Catalog, Engine, EngineError, SqliteStore, Store};
use sg_protocol::value::format_date_time;
use sg_protocol::DataType;

use crate::inverse::inverse_field;

/// How big a production to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// About 5,000 records.
    Small,
    /// About 100,000 records.
    Medium,
    /// About 1,000,000 records.
    Large,
}

impl Size {
    pub const ALL: [Size; 3] = [Size::Small, Size::Medium, Size::Large];

    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        }
    }

    fn scale(self) -> Scale {
        match self {
            Size::Small => Scale {
                projects: 2,
                users: 40,
                shots: 72,
                assets: 26,
            },
            Size::Medium => Scale {
                projects: 6,
                users: 300,
                shots: 1_400,
                assets: 500,
            },
            Size::Large => Scale {
                projects: 24,
                users: 2_000,
                shots: 14_000,
                assets: 5_000,
            },
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "small" => Ok(Size::Small),
            "medium" => Ok(Size::Medium),
            "large" => Ok(Size::Large),
            other => Err(format!(
                "unknown size '{other}': expected small, medium or large"
            )),
        }
    }
}

/// The counts a size starts from; the rest follows from the production.
struct Scale {
    projects: usize,
    users: usize,
    shots: usize,
    assets: usize,
}

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
/// Records per `upsert_records` call (one transaction each).
const CHUNK: usize = 5_000;

/// Fills the site with a production of `size`, seeded by `seed`, dated
/// within the year before today (UTC). Returns how many records it wrote;
/// calls `progress(type, written so far)` after each chunk.
pub fn generate(
    engine: &Engine<SqliteStore>,
    size: Size,
    seed: u64,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<usize, EngineError> {
    let now = chrono::Utc::now().timestamp();
    generate_at(engine, size, seed, now - now.rem_euclid(DAY), progress)
}

/// [`generate`] with an explicit clock (seconds since the epoch): every
/// date-time is before `now`, within the year before it.
pub fn generate_at(
    engine: &Engine<SqliteStore>,
    size: Size,
    seed: u64,
    now: i64,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<usize, EngineError> {
    let shape = Shape::new(engine.catalog());
    let mut ids = Ids::start(engine, &shape)?;
    let mut writer = Writer {
        engine,
        counts: BTreeMap::new(),
        total: 0,
        progress,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let scale = size.scale();

    let mut world = World::default();
    let mut globals = Builder::new(&shape, &mut ids, StdRng::seed_from_u64(rng.gen()), now);
    globals.people(&mut world, &scale);
    globals.pipeline(&mut world);
    globals.projects(&mut world, &scale);
    let mut globals = globals.batch;
    shape.mirror(&mut globals, None, &mut BTreeSet::new());
    writer.write(&globals, GLOBAL_ORDER)?;

    // One thread builds each project's records while this one writes the
    // previous project's; a third frees them. Links from a project's records
    // back to global ones (Project.tasks) are written once every project is done.
    let seeds: Vec<u64> = world.projects.iter().map(|_| rng.gen()).collect();
    let (built_tx, built_rx) = std::sync::mpsc::sync_channel::<Batch>(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let shape = &shape;
        let world = &world;
        let builder = scope.spawn(move || {
            let mut late = BTreeSet::new();
            for (index, seed) in seeds.into_iter().enumerate() {
                let mut b = Builder::new(shape, &mut ids, StdRng::seed_from_u64(seed), now);
                b.production(world, index, &scale);
                let mut batch = b.batch;
                shape.mirror(&mut batch, Some(&mut globals), &mut late);
                if built_tx.send(batch).is_err() {
                    break;
                }
            }
            (globals, late)
        });
        scope.spawn(move || done_rx.into_iter().for_each(drop));
        let mut result = Ok(());
        for batch in built_rx {
            result = writer.write(&batch, PROJECT_ORDER);
            let _ = done_tx.send(batch);
            if result.is_err() {
                break;
            }
        }
        drop(done_tx);
        let (globals, late) = builder
            .join()
            .map_err(|_| EngineError::Store("the generator panicked".into()))?;
        result?;
        writer.patch(&globals, &late)
    })?;
    Ok(writer.total)
}

const GLOBAL_ORDER: &[&str] = &[
    "ApiUser",
    "HumanUser",
    "Group",
    "Step",
    "PublishedFileType",
    "Tag",
    "Project",
];
const PROJECT_ORDER: &[&str] = &[
    "Episode",
    "Sequence",
    "Shot",
    "Asset",
    "Task",
    "Version",
    "PublishedFile",
    "Note",
    "Reply",
    "Playlist",
    "TimeLog",
];

/// Writes batches in chunks and reports progress.
struct Writer<'e, 'p> {
    engine: &'e Engine<SqliteStore>,
    counts: BTreeMap<&'static str, usize>,
    total: usize,
    progress: &'p mut dyn FnMut(&str, usize),
}

impl Writer<'_, '_> {
    fn write(&mut self, batch: &Batch, order: &[&'static str]) -> Result<(), EngineError> {
        let rest = batch.types.keys().filter(|t| !order.contains(t)).copied();
        for t in order.iter().copied().chain(rest.collect::<Vec<_>>()) {
            let Some(rows) = batch.types.get(t) else {
                continue;
            };
            for chunk in rows.rows.chunks(CHUNK) {
                self.engine.upsert_records(t, chunk)?;
                let count = self.counts.entry(t).or_default();
                *count += chunk.len();
                self.total += chunk.len();
                (self.progress)(t, *count);
            }
        }
        Ok(())
    }

    /// Rewrites the given fields of records already written.
    fn patch(
        &mut self,
        batch: &Batch,
        fields: &BTreeSet<(String, i64, String)>,
    ) -> Result<(), EngineError> {
        let mut by_type: BTreeMap<&str, Vec<Map<String, Value>>> = BTreeMap::new();
        for (t, id, field) in fields {
            let Some(record) = batch.get(t, *id) else {
                continue;
            };
            let rows = by_type.entry(t.as_str()).or_default();
            if rows.last().and_then(|r| r["id"].as_i64()) != Some(*id) {
                let mut patch = Map::new();
                patch.insert("id".into(), json!(id));
                rows.push(patch);
            }
            if let (Some(patch), Some(value)) = (rows.last_mut(), record.get(field)) {
                patch.insert(field.clone(), value.clone());
            }
        }
        for (t, rows) in by_type {
            for chunk in rows.chunks(CHUNK) {
                self.engine.upsert_records(t, chunk)?;
            }
        }
        Ok(())
    }
}

/// The next id of every type.
struct Ids(HashMap<&'static str, i64>);

impl Ids {
    fn start(engine: &Engine<SqliteStore>, shape: &Shape) -> Result<Ids, EngineError> {
        let mut next = HashMap::new();
        for t in ALL_TYPES {
            if let Some(table) = shape.cat.layout.table(t) {
                let id = engine
                    .store()
                    .with_reader(&mut |conn| sg_engine::write::next_id(conn, table))?;
                next.insert(*t, id);
            }
        }
        Ok(Ids(next))
    }

    fn next(&mut self, t: &'static str) -> Option<i64> {
        let id = self.0.get_mut(t)?;
        *id += 1;
        Some(*id - 1)
    }
}

const ALL_TYPES: &[&str] = &[
    "ApiUser",
    "Asset",
    "Episode",
    "Group",
    "HumanUser",
    "Note",
    "Playlist",
    "Project",
    "PublishedFile",
    "PublishedFileType",
    "Reply",
    "Sequence",
    "Shot",
    "Step",
    "Tag",
    "Task",
    "TimeLog",
    "Version",
];

/// Records of several types, each type's ids contiguous from its first.
#[derive(Default)]
struct Batch {
    types: BTreeMap<&'static str, Rows>,
}

struct Rows {
    first: i64,
    rows: Vec<Map<String, Value>>,
}

impl Batch {
    fn push(&mut self, t: &'static str, id: i64, record: Map<String, Value>) {
        let rows = self.types.entry(t).or_insert(Rows {
            first: id,
            rows: Vec::new(),
        });
        debug_assert_eq!(
            rows.first + rows.rows.len() as i64,
            id,
            "{t} ids are contiguous"
        );
        rows.rows.push(record);
    }

    fn get(&self, t: &str, id: i64) -> Option<&Map<String, Value>> {
        let rows = self.types.get(t)?;
        rows.rows.get(usize::try_from(id - rows.first).ok()?)
    }

    fn get_mut(&mut self, t: &str, id: i64) -> Option<&mut Map<String, Value>> {
        let rows = self.types.get_mut(t)?;
        rows.rows.get_mut(usize::try_from(id - rows.first).ok()?)
    }
}

fn link(t: &str, id: i64) -> Value {
    json!({"type": t, "id": id})
}

fn stamp(t: i64) -> Value {
    Value::String(format_date_time(t))
}

fn date(t: i64) -> Value {
    let day = chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d").to_string());
    day.map(Value::String).unwrap_or(Value::Null)
}

/// What the engine's schema stores: every value is checked against it
/// before it goes into a record, and left out if it would not be valid.
struct Shape {
    cat: Arc<Catalog>,
    /// Per type, its link fields that have an inverse.
    mirrors: HashMap<String, Vec<(String, Vec<Mirror>)>>,
}

/// The field mirroring a link to one target type: `(target type, inverse
/// field, whether the inverse is a list)`.
type Mirror = (String, String, bool);

impl Shape {
    fn new(cat: Arc<Catalog>) -> Shape {
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
                let mut found = Vec::new();
                for target in targets {
                    let Some(inverse) = inverse_field(&cat.schema, t, name, target) else {
                        continue;
                    };
                    let Some(inverse_layout) =
                        cat.layout.table(target).and_then(|x| x.field(&inverse))
                    else {
                        continue;
                    };
                    let multi = inverse_layout.storage == Storage::Links;
                    found.push((target.clone(), inverse, multi));
                }
                if !found.is_empty() {
                    fields.push((name.clone(), found));
                }
            }
            if !fields.is_empty() {
                mirrors.insert(t.clone(), fields);
            }
        }
        Shape { cat, mirrors }
    }

    fn has(&self, t: &str) -> bool {
        self.cat.layout.table(t).is_some()
    }

    fn field(&self, t: &str, field: &str) -> Option<&FieldLayout> {
        self.cat.layout.table(t)?.field(field)
    }

    fn valid_values(&self, t: &str, field: &str) -> &[String] {
        match self.cat.schema.entity(t).and_then(|e| e.field(field)) {
            Some(f) => &f.valid_values,
            None => &[],
        }
    }

    fn link_ok(&self, field: &FieldLayout, target: &str) -> bool {
        (field.valid_types.is_empty() || field.valid_types.iter().any(|v| v == target))
            && self.has(target)
    }

    /// `value` as `t.field` may hold it, or `None` to leave the field out.
    fn check(&self, t: &str, name: &str, value: Value) -> Option<Value> {
        let field = self.field(t, name)?;
        match field.storage {
            Storage::Id => None,
            Storage::Entity => {
                let target = value.get("type")?.as_str()?;
                self.link_ok(field, target).then_some(value)
            }
            Storage::Links => {
                let Value::Array(items) = value else {
                    return None;
                };
                let kept: Vec<Value> = items
                    .into_iter()
                    .filter(|l| {
                        l.get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|x| self.link_ok(field, x))
                    })
                    .collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            _ => {
                if value.is_null() || sg_engine::codec::encode_scalar(field, &value).is_err() {
                    return None;
                }
                if matches!(field.data_type, DataType::List | DataType::StatusList) {
                    let valid = self.valid_values(t, name);
                    let s = value.as_str()?;
                    if !valid.is_empty() && !valid.iter().any(|v| v == s) {
                        return None;
                    }
                }
                Some(value)
            }
        }
    }

    /// One of `choices` (weighted) that the field accepts, else any of its
    /// valid values, else `None`.
    fn pick(
        &self,
        rng: &mut StdRng,
        t: &str,
        field: &str,
        choices: &[(&str, u32)],
    ) -> Option<String> {
        let valid = self.valid_values(t, field);
        let ok: Vec<(&str, u32)> = choices
            .iter()
            .copied()
            .filter(|(c, _)| valid.is_empty() || valid.iter().any(|v| v == c))
            .collect();
        let roll: u32 = rng.gen_range(0..ok.iter().map(|c| c.1).sum::<u32>().max(1));
        if ok.is_empty() {
            return valid.get(roll as usize % valid.len().max(1)).cloned();
        }
        let mut acc = 0;
        for (c, w) in &ok {
            acc += w;
            if roll < acc {
                return Some(c.to_string());
            }
        }
        ok.last().map(|c| c.0.to_string())
    }

    /// Stores the other side of every link in `batch` that the site keeps in
    /// step, in `batch` or else in `globals` (noting `(type, id, field)` in `late`).
    fn mirror(
        &self,
        batch: &mut Batch,
        mut globals: Option<&mut Batch>,
        late: &mut BTreeSet<(String, i64, String)>,
    ) {
        let mut adds: Vec<(&str, i64, &str, bool, &'static str, i64)> = Vec::new();
        for (&t, rows) in &batch.types {
            let Some(fields) = self.mirrors.get(t) else {
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
                        if let Some((tt, inverse, multi)) = targets.iter().find(|x| x.0 == target) {
                            adds.push((tt, target_id, inverse, *multi, t, id));
                        }
                    }
                }
            }
        }
        for (target, target_id, inverse, multi, source, source_id) in adds {
            let record = match batch.get_mut(target, target_id) {
                Some(r) => r,
                None => match globals
                    .as_deref_mut()
                    .and_then(|g| g.get_mut(target, target_id))
                {
                    Some(r) => {
                        late.insert((target.to_string(), target_id, inverse.to_string()));
                        r
                    }
                    None => continue,
                },
            };
            let back = link(source, source_id);
            if multi {
                let list = record
                    .entry(inverse.to_string())
                    .or_insert_with(|| json!([]));
                if let Value::Array(items) = list {
                    if !items.contains(&back) {
                        items.push(back);
                    }
                }
            } else {
                record.insert(inverse.to_string(), back);
            }
        }
    }
}

/// A record being built; values the schema would refuse are left out.
struct Rec<'s> {
    shape: &'s Shape,
    t: &'static str,
    m: Map<String, Value>,
}

impl Rec<'_> {
    fn set(&mut self, field: &str, value: impl Into<Value>) -> &mut Self {
        if let Some(v) = self.shape.check(self.t, field, value.into()) {
            self.m.insert(field.to_string(), v);
        }
        self
    }

    fn link(&mut self, field: &str, target: &str, id: Option<i64>) -> &mut Self {
        match id {
            Some(id) => self.set(field, link(target, id)),
            None => self,
        }
    }

    fn links(&mut self, field: &str, targets: &[(&str, i64)]) -> &mut Self {
        self.set(
            field,
            Value::Array(targets.iter().map(|(t, id)| link(t, *id)).collect()),
        )
    }

    fn pick(&mut self, rng: &mut StdRng, field: &str, choices: &[(&str, u32)]) -> &mut Self {
        match self.shape.pick(rng, self.t, field, choices) {
            Some(v) => self.set(field, v),
            None => self,
        }
    }

    /// created_at/by and updated_at/by.
    fn audit(&mut self, created: i64, by: &Value, updated: i64, updated_by: &Value) -> &mut Self {
        self.set("created_at", stamp(created));
        self.set("created_by", by.clone());
        self.set("updated_at", stamp(updated.max(created)));
        self.set("updated_by", updated_by.clone())
    }
}

/// Builds one batch of records.
struct Builder<'s, 'i> {
    shape: &'s Shape,
    ids: &'i mut Ids,
    batch: Batch,
    rng: StdRng,
    now: i64,
}

/// People, steps, file types and projects: what every project's records refer to.
#[derive(Default)]
struct World {
    users: Vec<User>,
    /// Group ids by department, and the supervisors' group.
    groups: Vec<Option<i64>>,
    supervisors_group: Option<i64>,
    scripts: Vec<i64>,
    steps: Vec<Option<i64>>,
    file_types: HashMap<&'static str, i64>,
    projects: Vec<ProjectInfo>,
}

struct User {
    id: i64,
    dept: usize,
    supervisor: bool,
    active: bool,
}

struct ProjectInfo {
    id: i64,
    name: String,
    tank: String,
    start: i64,
    end: i64,
    episodic: bool,
    /// User indices on the project, by department.
    team: Vec<Vec<usize>>,
    supervisors: Vec<usize>,
}

const DEPTS: [&str; 10] = [
    "Layout",
    "Animation",
    "FX",
    "Lighting",
    "Compositing",
    "Art",
    "Modeling",
    "Rigging",
    "Surfacing",
    "Production",
];
const DEPT_WEIGHTS: [u32; 10] = [7, 18, 8, 12, 16, 5, 9, 5, 7, 8];
const PRODUCTION: usize = 9;

struct StepDef {
    code: &'static str,
    short: &'static str,
    dir: &'static str,
    entity_type: &'static str,
    color: &'static str,
    dept: usize,
    files: &'static [&'static str],
    /// Working days: low, high.
    days: (i64, i64),
}

const STEPS: &[StepDef] = &[
    StepDef {
        code: "Previs",
        short: "PVS",
        dir: "previs",
        entity_type: "Sequence",
        color: "128,128,255",
        dept: 0,
        files: &["Maya Scene", "Movie"],
        days: (5, 15),
    },
    StepDef {
        code: "Layout",
        short: "LAY",
        dir: "layout",
        entity_type: "Shot",
        color: "0,128,255",
        dept: 0,
        files: &["Maya Scene", "Camera"],
        days: (2, 6),
    },
    StepDef {
        code: "Animation",
        short: "ANM",
        dir: "anim",
        entity_type: "Shot",
        color: "255,128,0",
        dept: 1,
        files: &["Maya Scene", "Alembic Cache"],
        days: (4, 15),
    },
    StepDef {
        code: "FX",
        short: "FX",
        dir: "fx",
        entity_type: "Shot",
        color: "255,64,64",
        dept: 2,
        files: &["Houdini Scene", "VDB Cache"],
        days: (4, 12),
    },
    StepDef {
        code: "Lighting",
        short: "LGT",
        dir: "light",
        entity_type: "Shot",
        color: "255,220,0",
        dept: 3,
        files: &["USD Layer", "Rendered Image"],
        days: (3, 10),
    },
    StepDef {
        code: "Roto",
        short: "ROTO",
        dir: "roto",
        entity_type: "Shot",
        color: "128,0,128",
        dept: 4,
        files: &["Nuke Script"],
        days: (1, 5),
    },
    StepDef {
        code: "Comp",
        short: "CMP",
        dir: "comp",
        entity_type: "Shot",
        color: "0,200,0",
        dept: 4,
        files: &["Nuke Script", "Rendered Image"],
        days: (3, 10),
    },
    StepDef {
        code: "Art",
        short: "ART",
        dir: "art",
        entity_type: "Asset",
        color: "200,100,200",
        dept: 5,
        files: &["Photoshop Image"],
        days: (3, 10),
    },
    StepDef {
        code: "Model",
        short: "MOD",
        dir: "model",
        entity_type: "Asset",
        color: "100,180,255",
        dept: 6,
        files: &["Maya Scene", "Alembic Cache"],
        days: (4, 15),
    },
    StepDef {
        code: "Rig",
        short: "RIG",
        dir: "rig",
        entity_type: "Asset",
        color: "255,150,150",
        dept: 7,
        files: &["Maya Scene"],
        days: (4, 12),
    },
    StepDef {
        code: "Surface",
        short: "SRF",
        dir: "surface",
        entity_type: "Asset",
        color: "150,255,150",
        dept: 8,
        files: &["Texture", "USD Layer"],
        days: (3, 12),
    },
    StepDef {
        code: "Production",
        short: "PRD",
        dir: "production",
        entity_type: "Project",
        color: "160,160,160",
        dept: PRODUCTION,
        files: &[],
        days: (10, 60),
    },
];
const PREVIS: usize = 0;
const PRODUCTION_STEP: usize = 11;
/// Shot steps in pipeline order, with how often a shot has each.
const SHOT_STEPS: &[(usize, f64)] = &[
    (1, 0.95),
    (2, 0.8),
    (3, 0.3),
    (4, 0.95),
    (5, 0.25),
    (6, 1.0),
];

/// The names that tag_list fields hold (each a Tag record where the
/// schema has the type).
const TAG_NAMES: &[&str] = &[
    "hero",
    "crowd",
    "fx heavy",
    "client favourite",
    "reshoot",
    "stereo",
    "night",
    "rain",
];

/// File types: code, short name, extension, whether it is an image sequence.
const FILE_TYPES: &[(&str, &str, &str, bool)] = &[
    ("Maya Scene", "maya", "ma", false),
    ("Houdini Scene", "hip", "hip", false),
    ("Nuke Script", "nuke", "nk", false),
    ("Alembic Cache", "abc", "abc", false),
    ("Camera", "cam", "abc", false),
    ("VDB Cache", "vdb", "vdb", true),
    ("USD Layer", "usd", "usd", false),
    ("Rendered Image", "render", "exr", true),
    ("Texture", "tex", "tx", false),
    ("Photoshop Image", "psd", "psd", false),
    ("Movie", "mov", "mov", false),
];

/// Asset types: the list value, the code prefix, how common, names, steps with their odds.
struct AssetKind {
    kind: &'static str,
    prefix: &'static str,
    weight: u32,
    names: &'static [&'static str],
    steps: &'static [(usize, f64)],
}

const ASSET_KINDS: &[AssetKind] = &[
    AssetKind {
        kind: "Character",
        prefix: "chr",
        weight: 25,
        names: &[
            "hero", "villain", "mentor", "sidekick", "guard", "king", "queen", "knight", "goblin",
            "dragon", "wolf", "fox", "owl", "crow", "merchant", "child", "soldier", "pirate",
            "robot", "ghost", "witch", "wizard", "troll", "giant", "farmer", "captain", "sailor",
            "thief", "monk", "hunter",
        ],
        steps: &[(7, 0.7), (8, 1.0), (9, 1.0), (10, 1.0)],
    },
    AssetKind {
        kind: "Prop",
        prefix: "prp",
        weight: 40,
        names: &[
            "sword", "shield", "lantern", "book", "chair", "table", "barrel", "crate", "cart",
            "rope", "key", "map", "compass", "lamp", "bottle", "cup", "bow", "arrow", "spear",
            "helmet", "torch", "satchel", "coin", "ring", "bell", "clock", "door", "window",
            "fence", "sign",
        ],
        steps: &[(7, 0.2), (8, 1.0), (9, 0.15), (10, 0.9)],
    },
    AssetKind {
        kind: "Environment",
        prefix: "env",
        weight: 15,
        names: &[
            "castle",
            "forest",
            "village",
            "harbor",
            "cave",
            "desert",
            "city",
            "street",
            "tavern",
            "throneRoom",
            "beach",
            "mountain",
            "bridge",
            "market",
            "lighthouse",
            "canyon",
            "swamp",
            "palace",
            "temple",
            "shipDeck",
        ],
        steps: &[(7, 0.8), (8, 1.0), (10, 1.0)],
    },
    AssetKind {
        kind: "Vehicle",
        prefix: "veh",
        weight: 10,
        names: &[
            "wagon", "ship", "boat", "car", "truck", "airship", "train", "bike", "carriage", "sled",
        ],
        steps: &[(7, 0.4), (8, 1.0), (9, 0.8), (10, 1.0)],
    },
    AssetKind {
        kind: "FX",
        prefix: "fx",
        weight: 5,
        names: &[
            "smoke",
            "fire",
            "dust",
            "water",
            "rain",
            "snow",
            "magic",
            "explosion",
            "sparks",
            "fog",
        ],
        steps: &[(3, 1.0)],
    },
    AssetKind {
        kind: "Matte Painting",
        prefix: "mp",
        weight: 5,
        names: &["skyline", "sky", "mountains", "horizon", "clouds", "valley"],
        steps: &[(7, 1.0)],
    },
];

const PROJECT_NAMES: &[&str] = &[
    "Nightfall",
    "Paper Moon",
    "Iron Harbor",
    "Glass Garden",
    "Silent Reef",
    "Ember Road",
    "Northern Lights",
    "The Lantern Keeper",
    "Copper Sky",
    "Blue Meridian",
    "Hollow Crown",
    "Salt and Stone",
    "Wild Orchard",
    "Last Light",
    "Tin Soldiers",
    "Velvet Storm",
    "Red Canyon",
    "Starling",
    "Deep Current",
    "The Clockmaker",
    "Ashfall",
    "Quiet Giants",
    "Moth and Flame",
    "Winter Tide",
];
const FIRST_NAMES: &[&str] = &[
    "Ada", "Alex", "Amara", "Ana", "Ben", "Bruno", "Carla", "Chen", "Chloe", "Dan", "Daria",
    "David", "Elena", "Emil", "Eva", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan",
    "Jade", "James", "Jonas", "Julia", "Kai", "Kenji", "Lara", "Leo", "Lina", "Luca", "Maya",
    "Marco", "Mei", "Mila", "Nadia", "Nick", "Noor", "Olga", "Omar", "Paul", "Priya", "Quinn",
    "Rafael", "Rosa", "Ryan", "Sara", "Sean", "Sofia", "Tariq", "Tess", "Theo", "Uma", "Victor",
    "Wei", "Yara", "Yusuf", "Zoe", "Zain",
];
const LAST_NAMES: &[&str] = &[
    "Abbott", "Alvarez", "Bauer", "Becker", "Brennan", "Castillo", "Chen", "Costa", "Dubois",
    "Duarte", "Evans", "Fischer", "Garcia", "Gupta", "Haddad", "Hansen", "Ito", "Jensen", "Kaur",
    "Kim", "Klein", "Kowalski", "Larsen", "Lopez", "Martin", "Meyer", "Moreau", "Murphy",
    "Nakamura", "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Quinn", "Rossi", "Santos",
    "Schmidt", "Silva", "Singh", "Sato", "Tanaka", "Thompson", "Ueda", "Vargas", "Weber", "Wong",
    "Young", "Zhang", "Ziegler",
];
const FRAMINGS: &[&str] = &[
    "Wide shot",
    "Close-up",
    "Medium shot",
    "Over-the-shoulder",
    "Tracking shot",
    "Aerial",
    "Insert",
    "Low angle",
    "Two-shot",
    "Extreme close-up",
];
const SUBJECTS: &[&str] = &[
    "the hero",
    "the crowd",
    "the ship",
    "the villain",
    "the gate",
    "the twins",
    "the captain",
    "the creature",
    "the convoy",
    "the old man",
];
const ACTIONS: &[&str] = &[
    "enters frame left",
    "turns to camera",
    "runs toward the gate",
    "looks up at the sky",
    "draws a sword",
    "falls back",
    "crosses the bridge",
    "lands hard",
    "disappears into fog",
    "reacts to the blast",
];
const VERSION_NOTES: &[&str] = &[
    "WIP",
    "First pass",
    "Addressed notes from dailies",
    "Updated timing per notes",
    "Tech check fixes",
    "Final for review",
    "Blocking pass",
    "Polish pass",
    "New camera from layout",
    "Client notes addressed",
];
const NOTE_BODIES: &[&str] = &[
    "Timing feels a little slow in the middle; tighten by about 6 frames.",
    "Lighting on the face is too flat, add a rim from screen left.",
    "Great progress, approved for the next step.",
    "Edges are chattering around the hair, please check the roto.",
    "Can we push the contrast in the background?",
    "The contact shadow is missing where the feet land.",
    "Motion blur looks too strong on the fast move.",
    "Please match the grade of the previous shot.",
    "Camera shake is distracting, reduce by half.",
    "Texture reads too clean, add some wear on the edges.",
    "The silhouette is unclear in the first pose.",
    "Smoke needs more detail in the leading edge.",
    "Looks good to me, send it to the client.",
    "Scale feels off against the set, check with layout.",
];
const REPLY_BODIES: &[&str] = &[
    "Will do, a new version is coming today.",
    "Addressed in the next version.",
    "Thanks!",
    "Can you clarify which frames?",
    "Fixed, please have another look.",
    "Agreed, I will talk to layout.",
    "On it.",
];

impl<'s, 'i> Builder<'s, 'i> {
    fn new(shape: &'s Shape, ids: &'i mut Ids, rng: StdRng, now: i64) -> Builder<'s, 'i> {
        Builder {
            shape,
            ids,
            batch: Batch::default(),
            rng,
            now,
        }
    }

    fn rec(&self, t: &'static str) -> Rec<'s> {
        Rec {
            shape: self.shape,
            t,
            m: Map::new(),
        }
    }

    /// Stores a record under the next id of its type; `None` if the schema has no such type.
    fn add(&mut self, mut rec: Rec<'_>) -> Option<i64> {
        if !self.shape.has(rec.t) {
            return None;
        }
        let id = self.ids.next(rec.t)?;
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.append(&mut rec.m);
        self.batch.push(rec.t, id, m);
        Some(id)
    }

    /// A time between `a` and `b`, never after now.
    fn between(&mut self, a: i64, b: i64) -> i64 {
        let b = b.min(self.now - HOUR);
        let a = a.min(b);
        if a >= b {
            a
        } else {
            self.rng.gen_range(a..=b)
        }
    }

    /// The tag names of one record: none for most, else one or two.
    fn some_tags(&mut self) -> Value {
        let count = *self.weighted(&[(0usize, 6u32), (1, 3), (2, 1)], |c| c.1);
        let names: Vec<&str> = TAG_NAMES
            .choose_multiple(&mut self.rng, count.0)
            .copied()
            .collect();
        json!(names)
    }

    fn weighted<'a, T>(&mut self, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
        let total: u32 = items.iter().map(&weight).sum();
        let mut roll = self.rng.gen_range(0..total.max(1));
        for item in items {
            let w = weight(item);
            if roll < w {
                return item;
            }
            roll -= w;
        }
        &items[items.len() - 1]
    }

    // ---- people, pipeline and projects ----

    fn people(&mut self, world: &mut World, scale: &Scale) {
        let year_ago = self.now - 365 * DAY;
        let mut admin = self.rec("HumanUser");
        admin
            .set("name", "Production Admin")
            .set("login", "admin")
            .set("firstname", "Production");
        admin
            .set("lastname", "Admin")
            .set("email", "admin@studio.example")
            .pick(&mut self.rng, "sg_status_list", &[("act", 1)]);
        let admin_id = self.add(admin);
        let by = admin_id
            .map(|id| link("HumanUser", id))
            .unwrap_or(Value::Null);
        let first_stamp = year_ago + DAY;
        // The admin made itself.
        let mut stamps = self.rec("HumanUser");
        stamps.audit(first_stamp, &by, first_stamp, &by);
        if let Some(rec) = admin_id.and_then(|id| self.batch.get_mut("HumanUser", id)) {
            rec.append(&mut stamps.m);
        }
        if let Some(id) = admin_id {
            world.users.push(User {
                id,
                dept: PRODUCTION,
                supervisor: true,
                active: true,
            });
        }

        let scripts = [
            (
                "Toolkit",
                "Pipeline publishes and version creation",
                "pipeline@studio.example",
                "1.4",
            ),
            (
                "shotgun_events",
                "Event daemon: status roll-ups and notifications",
                "pipeline@studio.example",
                "2.0",
            ),
            (
                "sync_service",
                "Mirrors the site into the local cache",
                "infra@studio.example",
                "0.9",
            ),
        ];
        for (name, description, email, version) in scripts {
            let mut r = self.rec("ApiUser");
            r.set("firstname", name)
                .set("lastname", version)
                .set("description", description)
                .set("email", email);
            r.set("generate_event_log_entries", true)
                .audit(first_stamp, &by, first_stamp, &by);
            if let Some(id) = self.add(r) {
                world.scripts.push(id);
            }
        }

        let mut logins = BTreeSet::from(["admin".to_string()]);
        for i in 1..scale.users {
            let first = *FIRST_NAMES.choose(&mut self.rng).unwrap_or(&"Alex");
            let last = *LAST_NAMES.choose(&mut self.rng).unwrap_or(&"Smith");
            let base = format!("{}.{}", first.to_lowercase(), last.to_lowercase());
            let mut login = base.clone();
            let mut n = 2;
            while !logins.insert(login.clone()) {
                login = format!("{base}{n}");
                n += 1;
            }
            let dept = *self.weighted(&(0..DEPTS.len()).collect::<Vec<_>>(), |d| DEPT_WEIGHTS[*d]);
            let supervisor = self.rng.gen_bool(0.08) || i <= DEPTS.len() && dept == PRODUCTION;
            let active = !self.rng.gen_bool(0.08);
            let created = self.between(year_ago + 2 * DAY, self.now - 30 * DAY);
            let updated = self.between(created, self.now);
            let mut r = self.rec("HumanUser");
            r.set("name", format!("{first} {last}"))
                .set("login", login.as_str())
                .set("firstname", first);
            r.set("lastname", last)
                .set("email", format!("{login}@studio.example"));
            r.pick(
                &mut self.rng,
                "sg_status_list",
                if active { &[("act", 1)] } else { &[("dis", 1)] },
            );
            r.audit(created, &by, updated, &by);
            if let Some(id) = self.add(r) {
                world.users.push(User {
                    id,
                    dept,
                    supervisor,
                    active,
                });
            }
        }

        // Departments and supervisors as groups.
        for (d, dept) in DEPTS.iter().enumerate() {
            let members: Vec<(&str, i64)> = world
                .users
                .iter()
                .filter(|u| u.dept == d)
                .map(|u| ("HumanUser", u.id))
                .collect();
            let mut r = self.rec("Group");
            r.set("code", *dept)
                .links("users", &members)
                .audit(first_stamp, &by, first_stamp, &by);
            world.groups.push(self.add(r));
        }
        let members: Vec<(&str, i64)> = world
            .users
            .iter()
            .filter(|u| u.supervisor)
            .map(|u| ("HumanUser", u.id))
            .collect();
        let mut r = self.rec("Group");
        r.set("code", "Supervisors").links("users", &members).audit(
            first_stamp,
            &by,
            first_stamp,
            &by,
        );
        world.supervisors_group = self.add(r);
    }

    fn pipeline(&mut self, world: &mut World) {
        let at = self.now - 364 * DAY;
        let by = world
            .users
            .first()
            .map(|u| link("HumanUser", u.id))
            .unwrap_or(Value::Null);
        for (order, step) in STEPS.iter().enumerate() {
            let mut r = self.rec("Step");
            r.set("code", step.code)
                .set("short_name", step.short)
                .set("entity_type", step.entity_type);
            r.set("color", step.color)
                .set("list_order", order as i64 + 1);
            r.set(
                "description",
                format!("{} work on {}s", step.code, step.entity_type),
            );
            r.audit(at, &by, at, &by);
            world.steps.push(self.add(r));
        }
        for name in TAG_NAMES {
            let mut r = self.rec("Tag");
            r.set("name", *name);
            r.audit(at, &by, at, &by);
            self.add(r);
        }
        for (code, short, ext, _) in FILE_TYPES {
            let mut r = self.rec("PublishedFileType");
            r.set("code", *code)
                .set("short_name", *short)
                .set("description", format!("{code} (.{ext})"));
            r.audit(at, &by, at, &by);
            if let Some(id) = self.add(r) {
                world.file_types.insert(code, id);
            }
        }
    }

    fn projects(&mut self, world: &mut World, scale: &Scale) {
        let by = world
            .users
            .first()
            .map(|u| link("HumanUser", u.id))
            .unwrap_or(Value::Null);
        let count = scale.projects;
        // Each person works on one project, some on two.
        let mut teams: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); DEPTS.len()]; count];
        for (u, user) in world.users.iter().enumerate() {
            let first = self.rng.gen_range(0..count);
            teams[first][user.dept].push(u);
            if self.rng.gen_bool(0.25) && count > 1 {
                let second = (first + self.rng.gen_range(1..count)) % count;
                teams[second][user.dept].push(u);
            }
        }
        for (p, mut team) in teams.into_iter().enumerate() {
            for (dept, members) in team.iter_mut().enumerate() {
                if members.is_empty() {
                    let pool: Vec<usize> = (0..world.users.len())
                        .filter(|u| world.users[*u].dept == dept)
                        .collect();
                    members.extend(
                        pool.choose(&mut self.rng)
                            .copied()
                            .or_else(|| (!world.users.is_empty()).then_some(0)),
                    );
                }
                members.sort_unstable();
                members.dedup();
            }
            let supervisors: Vec<usize> = team
                .iter()
                .flatten()
                .copied()
                .filter(|u| world.users[*u].supervisor)
                .collect();
            let supervisors = if supervisors.is_empty() {
                team[PRODUCTION].clone()
            } else {
                supervisors
            };
            let archived = count >= 4 && p % 6 == 5;
            let name = match PROJECT_NAMES.get(p) {
                Some(n) => n.to_string(),
                None => format!(
                    "{} {}",
                    PROJECT_NAMES[p % PROJECT_NAMES.len()],
                    p / PROJECT_NAMES.len() + 1
                ),
            };
            let tank: String = name
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let (start, end) = if archived {
                let start = self.now - self.rng.gen_range(320..345) * DAY;
                (start, self.now - self.rng.gen_range(15..60) * DAY)
            } else {
                let start = self.now - self.rng.gen_range(120..330) * DAY;
                (
                    start,
                    (start + self.rng.gen_range(300..520) * DAY).min(self.now + 90 * DAY),
                )
            };
            let episodic = p % 3 == 1;
            let mut users: Vec<usize> = team.iter().flatten().copied().collect();
            users.sort_unstable();
            users.dedup();
            let user_links: Vec<(&str, i64)> = users
                .iter()
                .map(|u| ("HumanUser", world.users[*u].id))
                .collect();
            let mut r = self.rec("Project");
            r.set("name", name.as_str()).set("tank_name", tank.as_str());
            let kind = if episodic {
                "Episodic"
            } else {
                ["Feature Film", "Short Film", "Commercial", "Game Cinematic"][p % 4]
            };
            r.pick(&mut self.rng, "sg_type", &[(kind, 1)]);
            let status = if archived {
                "Delivered"
            } else if p % 7 == 6 {
                "Bidding"
            } else {
                "Active"
            };
            r.pick(&mut self.rng, "sg_status", &[(status, 1)]);
            r.set("archived", archived)
                .set("start_date", date(start))
                .set("end_date", date(end));
            let what = if episodic { "series" } else { "production" };
            r.set(
                "sg_description",
                format!("{name}: {} {what}.", kind.to_lowercase()),
            );
            r.links("users", &user_links);
            let created = start - self.rng.gen_range(5..15) * DAY;
            let updated = self.between(start, self.now);
            r.audit(created, &by, updated, &by);
            let Some(id) = self.add(r) else { continue };
            world.projects.push(ProjectInfo {
                id,
                name,
                tank,
                start,
                end,
                episodic,
                team,
                supervisors,
            });
        }
    }

    // ---- one project's production ----

    fn production(&mut self, world: &World, index: usize, scale: &Scale) {
        let p = &world.projects[index];
        let n = world.projects.len().max(1);
        let jitter = |rng: &mut StdRng, total: usize| {
            let base = total / n + usize::from(index < total % n);
            (base as f64 * rng.gen_range(0.8..1.2)).round().max(1.0) as usize
        };
        let shot_count = jitter(&mut self.rng, scale.shots);
        let asset_count = jitter(&mut self.rng, scale.assets);
        let ctx = ProjectCtx::new(world, p);

        // Project-level production tasks.
        for (content, from, to) in [
            ("Bidding", 0.0, 0.1),
            ("Editorial", 0.1, 0.9),
            ("Final delivery", 0.9, 1.0),
        ] {
            let span = (p.end - p.start) as f64;
            let start = p.start + (span * from) as i64;
            let due = p.start + (span * to) as i64;
            let target = Target {
                t: "Project",
                id: p.id,
                code: p.tank.clone(),
                dir: "editorial".into(),
                frames: None,
            };
            self.task(
                &ctx,
                &target,
                PRODUCTION_STEP,
                content,
                start,
                due,
                None,
                p.start,
            );
        }

        // Assets.
        let mut assets: Vec<(usize, i64)> = Vec::new();
        let mut used: HashMap<String, usize> = HashMap::new();
        for _ in 0..asset_count {
            let kind_index = *self.weighted(&(0..ASSET_KINDS.len()).collect::<Vec<_>>(), |k| {
                ASSET_KINDS[*k].weight
            });
            let kind = &ASSET_KINDS[kind_index];
            let name = *kind.names.choose(&mut self.rng).unwrap_or(&"thing");
            let mut code = format!("{}_{}", kind.prefix, name);
            let seen = used.entry(code.clone()).or_default();
            *seen += 1;
            if *seen > 1 {
                code = format!("{code}_{:02}", seen);
            }
            let created = self.between(p.start, p.start + 30 * DAY);
            let schedule = self.between(p.start + 5 * DAY, p.start + (p.end - p.start) * 2 / 5);
            let mut r = self.rec("Asset");
            r.set("code", code.as_str())
                .set("project", link("Project", p.id));
            let tags = self.some_tags();
            r.set("tag_list", tags);
            r.pick(&mut self.rng, "sg_asset_type", &[(kind.kind, 1)]);
            r.set("description", format!("{} {}", kind.kind, name));
            let by = ctx.coordinator(&mut self.rng);
            r.audit(created, &by, created, &by);
            let Some(id) = self.add(r) else { continue };
            let target = Target {
                t: "Asset",
                id,
                code: code.clone(),
                dir: format!("assets/{}/{code}", kind.kind.replace(' ', "")),
                frames: Some((1001, 1100)),
            };
            let steps: Vec<usize> = kind
                .steps
                .iter()
                .filter(|(_, odds)| self.rng.gen_bool(*odds))
                .map(|(s, _)| *s)
                .collect();
            let statuses = self.entity_work(&ctx, &target, &steps, schedule, created);
            self.roll_up("Asset", id, &statuses);
            assets.push((kind_index, id));
        }
        let of_kind = |k: &str| -> Vec<i64> {
            assets
                .iter()
                .filter(|(i, _)| ASSET_KINDS[*i].kind == k)
                .map(|(_, id)| *id)
                .collect()
        };
        let (characters, props, environments) = (
            of_kind("Character"),
            of_kind("Prop"),
            of_kind("Environment"),
        );
        let (vehicles, fx, mattes) = (of_kind("Vehicle"), of_kind("FX"), of_kind("Matte Painting"));
        // Sets dress with props: the environment lists them as sub-assets.
        for env in &environments {
            let count = self.rng.gen_range(0..=4).min(props.len());
            let dressing: Vec<(&str, i64)> = props
                .choose_multiple(&mut self.rng, count)
                .map(|id| ("Asset", *id))
                .collect();
            if let Some(v) = self.shape.check(
                "Asset",
                "assets",
                Value::Array(dressing.iter().map(|(t, id)| link(t, *id)).collect()),
            ) {
                if let Some(rec) = self.batch.get_mut("Asset", *env) {
                    rec.insert("assets".into(), v);
                }
            }
        }

        // Episodes and sequences.
        let seq_count = ((shot_count as f64) / 12.0).ceil().max(1.0) as usize;
        let episodes: Vec<Option<i64>> = if p.episodic && self.shape.has("Episode") {
            let count = seq_count.div_ceil(4).clamp(1, 26);
            (0..count)
                .map(|e| {
                    let created = self.between(p.start, p.start + 20 * DAY);
                    let by = ctx.coordinator(&mut self.rng);
                    let mut r = self.rec("Episode");
                    r.set("code", format!("EP{}", 101 + e))
                        .set("project", link("Project", p.id));
                    r.set(
                        "description",
                        format!("Episode {}: {}", e + 1, SUBJECTS[e % SUBJECTS.len()]),
                    );
                    r.audit(created, &by, created, &by);
                    self.add(r)
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut shots_left = shot_count;
        let mut cut_order = 0;
        let mut episode_sequences: Vec<Vec<(&str, i64)>> = vec![Vec::new(); episodes.len()];
        let mut episode_status: Vec<Vec<String>> = vec![Vec::new(); episodes.len()];
        for s in 0..seq_count {
            let number = (s + 1) * 10;
            let code = format!("SEQ_{number:03}");
            let created = self.between(p.start, p.start + 25 * DAY);
            let by = ctx.coordinator(&mut self.rng);
            let episode = (!episodes.is_empty()).then(|| s * episodes.len() / seq_count);
            let mut r = self.rec("Sequence");
            r.set("code", code.as_str())
                .set("project", link("Project", p.id));
            r.set(
                "description",
                format!(
                    "{} {}",
                    FRAMINGS[s % FRAMINGS.len()],
                    ACTIONS[s % ACTIONS.len()]
                ),
            );
            if let Some(e) = episode {
                r.link("episode", "Episode", episodes[e]);
            }
            r.audit(created, &by, created, &by);
            let Some(seq_id) = self.add(r) else { continue };
            if let Some(e) = episode {
                episode_sequences[e].push(("Sequence", seq_id));
            }
            let seq_dir = format!("sequences/{code}");
            if self.rng.gen_bool(0.5) {
                let schedule = self.between(p.start + 5 * DAY, p.start + 60 * DAY);
                let target = Target {
                    t: "Sequence",
                    id: seq_id,
                    code: code.clone(),
                    dir: seq_dir.clone(),
                    frames: Some((1001, 2400)),
                };
                self.entity_work(&ctx, &target, &[PREVIS], schedule, created);
            }
            // The sequence's sets and cast.
            let sets: Vec<i64> = environments
                .choose_multiple(&mut self.rng, 2)
                .copied()
                .collect();
            let remaining = seq_count - s;
            let want = (shots_left / remaining + self.rng.gen_range(0..=6))
                .saturating_sub(3)
                .max(1);
            let shots_here = if remaining == 1 {
                shots_left
            } else {
                want.min(shots_left)
            };
            shots_left = shots_left.saturating_sub(shots_here);
            let mut statuses = Vec::new();
            for k in 0..shots_here {
                cut_order += 1;
                let shot_code = format!("SH{number:03}_{:04}", (k + 1) * 10);
                let duration: i64 = self.rng.gen_range(24..=200);
                let cut_in = 1001;
                let cut_out = cut_in + duration - 1;
                let created = self.between(p.start + DAY, p.start + 40 * DAY);
                let by = ctx.coordinator(&mut self.rng);
                let mut cast: Vec<(&str, i64)> = Vec::new();
                let lead = characters.len().min(3);
                for _ in 0..self.rng.gen_range(0..=3) {
                    if let Some(c) = if self.rng.gen_bool(0.6) {
                        characters[..lead].choose(&mut self.rng)
                    } else {
                        characters.choose(&mut self.rng)
                    } {
                        cast.push(("Asset", *c));
                    }
                }
                for (pool, odds, most) in [
                    (&sets, 0.9, 1),
                    (&props, 0.6, 3),
                    (&vehicles, 0.2, 1),
                    (&fx, 0.15, 1),
                    (&mattes, 0.1, 1),
                ] {
                    if self.rng.gen_bool(odds) {
                        let count = self.rng.gen_range(1..=most);
                        cast.extend(
                            pool.choose_multiple(&mut self.rng, count)
                                .map(|id| ("Asset", *id)),
                        );
                    }
                }
                cast.sort_unstable_by_key(|(_, id)| *id);
                cast.dedup();
                let mut r = self.rec("Shot");
                r.set("code", shot_code.as_str())
                    .set("project", link("Project", p.id))
                    .set("sg_sequence", link("Sequence", seq_id));
                let tags = self.some_tags();
                r.set("tag_list", tags);
                let framing = FRAMINGS.choose(&mut self.rng).unwrap_or(&"Wide shot");
                let subject = SUBJECTS.choose(&mut self.rng).unwrap_or(&"the hero");
                let action = ACTIONS.choose(&mut self.rng).unwrap_or(&"turns");
                r.set(
                    "description",
                    format!("{framing} of {subject} as it {action}."),
                );
                r.pick(
                    &mut self.rng,
                    "sg_shot_type",
                    &[
                        ("Bread & Butter", 60),
                        ("Complex", 25),
                        ("Hero", 10),
                        ("Insert", 5),
                    ],
                );
                r.set("sg_cut_in", cut_in)
                    .set("sg_cut_out", cut_out)
                    .set("sg_cut_duration", duration);
                r.set("sg_cut_order", cut_order)
                    .set("sg_head_in", cut_in - 8)
                    .set("sg_tail_out", cut_out + 8);
                r.links("assets", &cast);
                r.audit(created, &by, created, &by);
                let Some(shot_id) = self.add(r) else { continue };
                let schedule = self.between(p.start + (p.end - p.start) / 5, p.end - 40 * DAY);
                let steps: Vec<usize> = SHOT_STEPS
                    .iter()
                    .filter(|(_, odds)| self.rng.gen_bool(*odds))
                    .map(|(s, _)| *s)
                    .collect();
                let target = Target {
                    t: "Shot",
                    id: shot_id,
                    code: shot_code.clone(),
                    dir: format!("{seq_dir}/{shot_code}"),
                    frames: Some((cut_in, cut_out)),
                };
                let task_statuses = self.entity_work(&ctx, &target, &steps, schedule, created);
                let status = self.roll_up("Shot", shot_id, &task_statuses);
                statuses.push(status);
            }
            let status = self.roll_up_names(&statuses);
            self.set_status("Sequence", seq_id, &status);
            if let Some(e) = episode {
                episode_status[e].push(status);
            }
        }
        for (e, episode) in episodes.iter().enumerate() {
            let Some(id) = *episode else { continue };
            let status = self.roll_up_names(&episode_status[e]);
            self.set_status("Episode", id, &status);
            let v = self.shape.check(
                "Episode",
                "sequences",
                Value::Array(
                    episode_sequences[e]
                        .iter()
                        .map(|(t, id)| link(t, *id))
                        .collect(),
                ),
            );
            if let (Some(v), Some(rec)) = (v, self.batch.get_mut("Episode", id)) {
                rec.insert("sequences".into(), v);
            }
        }

        self.playlists(&ctx);
    }

    /// Sets a record's status to `status` if the field takes it.
    fn set_status(&mut self, t: &'static str, id: i64, status: &str) {
        if let Some(v) = self.shape.check(t, "sg_status_list", json!(status)) {
            if let Some(rec) = self.batch.get_mut(t, id) {
                rec.insert("sg_status_list".into(), v);
            }
        }
    }

    /// An entity's status from its tasks' statuses; returns it.
    fn roll_up(&mut self, t: &'static str, id: i64, tasks: &[String]) -> String {
        let status = if self.rng.gen_bool(0.02) {
            "omt".to_string()
        } else if self.rng.gen_bool(0.02) {
            "hld".to_string()
        } else {
            self.roll_up_names(tasks)
        };
        self.set_status(t, id, &status);
        status
    }

    fn roll_up_names(&self, statuses: &[String]) -> String {
        let live: Vec<&str> = statuses
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "omt")
            .collect();
        if live.is_empty() {
            "wtg"
        } else if live.iter().all(|s| *s == "fin") {
            "fin"
        } else if live.iter().any(|s| matches!(*s, "ip" | "rev" | "fin")) {
            "ip"
        } else if live.contains(&"rdy") {
            "rdy"
        } else {
            "wtg"
        }
        .to_string()
    }

    /// The tasks of one entity, in pipeline order, each depending on the one
    /// before, with their versions, files, notes and time logs. Returns the
    /// tasks' statuses.
    fn entity_work(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        steps: &[usize],
        schedule: i64,
        created: i64,
    ) -> Vec<String> {
        let mut cursor = schedule;
        let mut upstream: Option<(i64, Option<i64>)> = None;
        let mut statuses = Vec::new();
        for &step in steps {
            let def = &STEPS[step];
            let days = self.rng.gen_range(def.days.0..=def.days.1);
            let start = cursor;
            let due = start + days * DAY * 7 / 5;
            cursor = start + days * DAY * 4 / 5;
            let (task, status, file) =
                self.task(ctx, target, step, def.code, start, due, upstream, created);
            if let Some(task) = task {
                upstream = Some((task, file));
            }
            statuses.push(status);
        }
        statuses
    }

    /// One task and everything made on it; returns its id, status and latest published file.
    #[allow(clippy::too_many_arguments)]
    fn task(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        step: usize,
        content: &str,
        start: i64,
        due: i64,
        upstream: Option<(i64, Option<i64>)>,
        created: i64,
    ) -> (Option<i64>, String, Option<i64>) {
        let def = &STEPS[step];
        let now = self.now;
        let status = if self.rng.gen_bool(0.02) {
            "omt"
        } else if self.rng.gen_bool(0.03) {
            "hld"
        } else if due < now {
            if self.rng.gen_bool(0.9) {
                "fin"
            } else {
                "rev"
            }
        } else if start < now {
            if self.rng.gen_bool(0.7) {
                "ip"
            } else {
                "rev"
            }
        } else if start < now + 14 * DAY {
            "rdy"
        } else {
            "wtg"
        };
        let status = self
            .shape
            .pick(&mut self.rng, "Task", "sg_status_list", &[(status, 1)])
            .unwrap_or_else(|| status.to_string());
        let team = &ctx.team[def.dept];
        let mut assignees: Vec<i64> = Vec::new();
        let mut assignee_links: Vec<(&str, i64)> = Vec::new();
        let roll = self.rng.gen_range(0..100);
        if roll < 5 {
            if let Some(group) = ctx.world.groups[def.dept] {
                assignee_links.push(("Group", group));
            }
        } else {
            let count = if roll < 15 { 2 } else { 1 };
            for u in team.choose_multiple(&mut self.rng, count) {
                assignees.push(ctx.world.users[*u].id);
                assignee_links.push(("HumanUser", ctx.world.users[*u].id));
            }
        }
        let task_created = self.between(created, created + 2 * DAY);
        let by = ctx.coordinator(&mut self.rng);
        let working_days = ((due - start) / DAY * 5 / 7).max(1);
        let mut r = self.rec("Task");
        r.set("content", content)
            .set("entity", link(target.t, target.id))
            .set("project", link("Project", ctx.project.id));
        r.link("step", "Step", ctx.world.steps[step])
            .links("task_assignees", &assignee_links);
        r.set("sg_status_list", status.as_str())
            .set("start_date", date(start))
            .set("due_date", date(due));
        r.set("duration", working_days * 8 * 60);
        r.set(
            "est_in_mins",
            (working_days as f64 * 8.0 * 60.0 * self.rng.gen_range(0.7..1.3)).round() as i64 / 30
                * 30,
        );
        r.set(
            "milestone",
            step == PRODUCTION_STEP && content == "Final delivery",
        );
        if let Some((up, _)) = upstream {
            r.links("upstream_tasks", &[("Task", up)]);
        }
        let updated = self.between(task_created, due.min(now));
        r.audit(task_created, &by, updated, &by);
        let Some(task_id) = self.add(r) else {
            return (None, status, None);
        };

        // Versions while the task was worked on.
        let versions = match status.as_str() {
            "ip" => self.rng.gen_range(1..=3),
            "rev" => self.rng.gen_range(1..=4),
            "fin" => self.rng.gen_range(2..=5),
            "hld" => self.rng.gen_range(0..=1),
            _ => 0,
        };
        let versions = if def.files.is_empty() || start >= now {
            0
        } else {
            versions
        };
        let window_end = due.min(now - HOUR);
        let mut latest_file = None;
        let mut worked = Vec::new();
        for v in 1..=versions {
            let at = start
                + (window_end - start).max(HOUR) * v / (versions + 1)
                + self.rng.gen_range(0..6 * HOUR);
            let at = at.min(now - HOUR);
            let artist = assignees
                .choose(&mut self.rng)
                .copied()
                .or_else(|| team.choose(&mut self.rng).map(|u| ctx.world.users[*u].id));
            worked.push((at, artist));
            let last = v == versions;
            let version_status = match (status.as_str(), last) {
                ("fin", true) => "apr",
                ("rev" | "ip", true) => {
                    if self.rng.gen_bool(0.7) {
                        "rev"
                    } else {
                        "na"
                    }
                }
                ("hld" | "omt", _) => "na",
                _ => {
                    if self.rng.gen_bool(0.1) {
                        "rej"
                    } else {
                        "vwd"
                    }
                }
            };
            let upstream_file = upstream.and_then(|u| u.1);
            let (version_id, file) = self.version(
                ctx,
                target,
                task_id,
                step,
                v,
                at,
                artist,
                version_status,
                upstream_file,
            );
            latest_file = file.or(latest_file);
            if let Some(version_id) = version_id {
                ctx.versions.borrow_mut().push((at, version_id));
                if self.rng.gen_bool(0.35) {
                    self.note(ctx, target, Some((version_id, v)), at, artist);
                }
            }
        }
        if self.rng.gen_bool(0.04) {
            let at = self.between(task_created, now);
            self.note(ctx, target, None, at, assignees.first().copied());
        }

        // Time logged by the assignees.
        let mut logged = 0;
        if matches!(status.as_str(), "ip" | "rev" | "fin") && !assignees.is_empty() {
            for _ in 0..self.rng.gen_range(1..=3) {
                let user = *assignees.choose(&mut self.rng).unwrap_or(&assignees[0]);
                let day = self.between(start, window_end);
                let minutes = self.rng.gen_range(2..=16) * 30;
                logged += minutes;
                let mut r = self.rec("TimeLog");
                r.set("entity", link("Task", task_id))
                    .set("project", link("Project", ctx.project.id));
                r.set("user", link("HumanUser", user))
                    .set("duration", minutes)
                    .set("date", date(day));
                r.set("description", format!("{content} on {}", target.code));
                let at = (day + 17 * HOUR).min(now - HOUR);
                let who = link("HumanUser", user);
                r.audit(at, &who, at, &who);
                self.add(r);
            }
        }
        if let Some(rec) = self.batch.get_mut("Task", task_id) {
            if self.shape.field("Task", "time_logs_sum").is_some() {
                rec.insert("time_logs_sum".into(), json!(logged));
            }
        }
        (Some(task_id), status, latest_file)
    }

    /// One version and its published files; returns the version and its main file.
    #[allow(clippy::too_many_arguments)]
    fn version(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        task: i64,
        step: usize,
        number: i64,
        at: i64,
        artist: Option<i64>,
        status: &str,
        upstream_file: Option<i64>,
    ) -> (Option<i64>, Option<i64>) {
        let def = &STEPS[step];
        let root = format!(
            "/mnt/projects/{}/{}/{}",
            ctx.project.tank, target.dir, def.dir
        );
        let code = format!("{}_{}_v{number:03}", target.code, def.dir);
        let who = artist
            .map(|id| link("HumanUser", id))
            .unwrap_or_else(|| ctx.script(0));
        let (first, last) = target.frames.unwrap_or((1001, 1100));
        let mut r = self.rec("Version");
        r.set("code", code.as_str())
            .set("entity", link(target.t, target.id))
            .set("project", link("Project", ctx.project.id));
        r.set("sg_task", link("Task", task))
            .set("user", who.clone());
        r.pick(&mut self.rng, "sg_status_list", &[(status, 1)]);
        r.set(
            "description",
            *VERSION_NOTES.choose(&mut self.rng).unwrap_or(&"WIP"),
        );
        r.set("sg_path_to_movie", format!("{root}/review/{code}.mov"));
        r.set(
            "sg_path_to_frames",
            format!("{root}/render/v{number:03}/{code}.%04d.exr"),
        );
        r.set("sg_first_frame", first)
            .set("sg_last_frame", last)
            .set("frame_count", last - first + 1);
        r.set("frame_range", format!("{first}-{last}"));
        let updated = self.between(at, at + 3 * DAY);
        let updater = if self.rng.gen_bool(0.3) {
            ctx.script(1)
        } else {
            who.clone()
        };
        r.audit(at, &who, updated, &updater);
        let Some(version_id) = self.add(r) else {
            return (None, None);
        };

        let mut main = None;
        for (i, kind) in def.files.iter().enumerate() {
            if i > 0 && !self.rng.gen_bool(0.6) {
                continue;
            }
            let Some(&(_, short, ext, sequence)) = FILE_TYPES.iter().find(|f| f.0 == *kind) else {
                continue;
            };
            let file = if sequence {
                format!(
                    "{}_{}_{short}_v{number:03}.%04d.{ext}",
                    target.code, def.dir
                )
            } else {
                format!("{}_{}_{short}_v{number:03}.{ext}", target.code, def.dir)
            };
            let name = format!("{}_{}_{short}.{ext}", target.code, def.dir);
            let path = format!("{root}/publish/{short}/v{number:03}/{file}");
            let mut r = self.rec("PublishedFile");
            r.set("code", file.as_str())
                .set("name", name.as_str())
                .set("entity", link(target.t, target.id));
            r.set("project", link("Project", ctx.project.id))
                .set("task", link("Task", task));
            r.set("version", link("Version", version_id))
                .set("version_number", number);
            if let Some(ft) = ctx.world.file_types.get(kind) {
                r.set("published_file_type", link("PublishedFileType", *ft));
            }
            let url = format!("file://{path}");
            r.set(
                "path",
                json!({"content_type": null, "link_type": "local", "local_path": path,
                       "local_path_linux": path, "name": file, "url": url}),
            );
            r.set(
                "path_cache",
                format!(
                    "{}/{}/{}/publish/{short}/v{number:03}/{file}",
                    ctx.project.tank, target.dir, def.dir
                ),
            );
            r.pick(&mut self.rng, "sg_status_list", &[("cmpt", 1)]);
            r.set("description", format!("{kind} for {code}"));
            if let (0, Some(up)) = (i, upstream_file) {
                r.links("upstream_published_files", &[("PublishedFile", up)]);
            }
            let published = (at - self.rng.gen_range(60..1800)).max(at - HOUR);
            let by = if self.rng.gen_bool(0.5) {
                who.clone()
            } else {
                ctx.script(0)
            };
            r.audit(published, &by, published, &by);
            let id = self.add(r);
            if i == 0 {
                main = id;
            }
        }
        (Some(version_id), main)
    }

    /// A note from a supervisor, on a version (and its entity) or on the entity, with replies.
    fn note(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        version: Option<(i64, i64)>,
        at: i64,
        artist: Option<i64>,
    ) {
        let now = self.now;
        let author = ctx.supervisor(&mut self.rng);
        let written = self.between(at + HOUR, at + 2 * DAY);
        let mut links: Vec<(&str, i64)> = Vec::new();
        if let Some((v, _)) = version {
            links.push(("Version", v));
        }
        links.push((target.t, target.id));
        let subject = match version {
            Some((_, n)) => format!("{} v{n:03} - dailies", target.code),
            None => format!("{} - notes", target.code),
        };
        let mut body = String::new();
        for _ in 0..self.rng.gen_range(1..=3) {
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(NOTE_BODIES.choose(&mut self.rng).unwrap_or(&"Looks good."));
        }
        let mut r = self.rec("Note");
        r.set("subject", subject)
            .set("content", body.as_str())
            .set("project", link("Project", ctx.project.id));
        r.links("note_links", &links).set("user", author.clone());
        if let Some(artist) = artist {
            r.links("addressings_to", &[("HumanUser", artist)]);
        }
        if self.rng.gen_bool(0.3) {
            if let Some(group) = ctx.world.supervisors_group {
                r.links("addressings_cc", &[("Group", group)]);
            }
        }
        r.pick(
            &mut self.rng,
            "sg_note_type",
            &[("Internal", 80), ("Client", 20)],
        );
        let open = written > now - 10 * DAY;
        r.pick(
            &mut self.rng,
            "sg_status_list",
            if open { &[("opn", 1)] } else { &[("clsd", 1)] },
        );
        let replies = *self.weighted(&[(0, 45), (1, 30), (2, 15), (3, 10)], |x| x.1);
        let updated = self.between(written, written + 3 * DAY);
        r.audit(written, &author, updated, &author);
        let Some(note) = self.add(r) else { return };
        let mut when = written;
        for i in 0..replies.0 {
            when = self.between(when + HOUR, when + DAY);
            let user = match (i % 2, artist) {
                (0, Some(a)) => link("HumanUser", a),
                _ => author.clone(),
            };
            let mut r = self.rec("Reply");
            r.set(
                "content",
                *REPLY_BODIES.choose(&mut self.rng).unwrap_or(&"Thanks!"),
            );
            r.set("entity", link("Note", note))
                .set("user", user.clone());
            r.audit(when, &user, when, &user);
            self.add(r);
        }
    }

    /// Dailies and client reviews, each with recent versions.
    fn playlists(&mut self, ctx: &ProjectCtx) {
        let mut versions = ctx.versions.borrow().clone();
        if versions.is_empty() {
            return;
        }
        versions.sort_unstable();
        let count = (versions.len() / 25).max(2);
        let first = versions[0].0;
        let last = versions[versions.len() - 1].0;
        let mut days: Vec<i64> = (0..count)
            .map(|_| self.between(first + DAY, last + DAY))
            .collect();
        days.sort_unstable();
        for day in days {
            let day = day - day.rem_euclid(DAY);
            let client = self.rng.gen_bool(0.2);
            let at = day + if client { 16 } else { 10 } * HOUR;
            let end = versions.partition_point(|(t, _)| *t < at);
            let begin = versions[..end].partition_point(|(t, _)| *t < at - 7 * DAY);
            let pool = &versions[begin..end];
            let count = self.rng.gen_range(8..=24).min(pool.len());
            let mut chosen: Vec<i64> = pool
                .choose_multiple(&mut self.rng, count)
                .map(|v| v.1)
                .collect();
            chosen.sort_unstable();
            let items: Vec<(&str, i64)> = chosen.iter().map(|id| ("Version", *id)).collect();
            let by = ctx.coordinator(&mut self.rng);
            let name = if client { "Client Review" } else { "Dailies" };
            let created = (at - self.rng.gen_range(1..20) * HOUR).min(self.now - HOUR);
            let closed = at < self.now - 3 * DAY;
            let mut r = self.rec("Playlist");
            r.set(
                "code",
                format!("{name} {}", date(at).as_str().unwrap_or_default()),
            );
            r.set("description", format!("{name} for {}", ctx.project.name));
            r.set("project", link("Project", ctx.project.id))
                .links("versions", &items);
            r.set("sg_date_and_time", stamp(at.min(self.now - HOUR)));
            r.pick(
                &mut self.rng,
                "sg_status",
                if closed {
                    &[("clsd", 1)]
                } else {
                    &[("opn", 1)]
                },
            );
            r.set("locked", closed);
            let updated = self.between(created, at + DAY);
            r.audit(created, &by, updated, &by);
            self.add(r);
        }
    }
}

/// What tasks and versions hang off.
struct Target {
    t: &'static str,
    id: i64,
    code: String,
    /// The entity's folder under the project's root.
    dir: String,
    frames: Option<(i64, i64)>,
}

/// A project being built: its people, and its versions so far.
struct ProjectCtx<'w> {
    world: &'w World,
    project: &'w ProjectInfo,
    team: &'w [Vec<usize>],
    versions: std::cell::RefCell<Vec<(i64, i64)>>,
}

impl<'w> ProjectCtx<'w> {
    fn new(world: &'w World, project: &'w ProjectInfo) -> ProjectCtx<'w> {
        ProjectCtx {
            world,
            project,
            team: &project.team,
            versions: Default::default(),
        }
    }

    fn user(&self, u: usize) -> Value {
        link("HumanUser", self.world.users[u].id)
    }

    /// Someone from production (active if possible).
    fn coordinator(&self, rng: &mut StdRng) -> Value {
        let team = &self.team[PRODUCTION];
        let active: Vec<usize> = team
            .iter()
            .copied()
            .filter(|u| self.world.users[*u].active)
            .collect();
        match active.choose(rng).or_else(|| team.choose(rng)) {
            Some(u) => self.user(*u),
            None => self.script(0),
        }
    }

    fn supervisor(&self, rng: &mut StdRng) -> Value {
        match self.project.supervisors.choose(rng) {
            Some(u) => self.user(*u),
            None => self.coordinator(rng),
        }
    }

    fn script(&self, i: usize) -> Value {
        match self.world.scripts.get(i).or(self.world.scripts.first()) {
            Some(id) => link("ApiUser", *id),
            None => link(
                "HumanUser",
                self.world.users.first().map(|u| u.id).unwrap_or(1),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        for size in Size::ALL {
            assert_eq!(size.name().parse::<Size>(), Ok(size));
            assert_eq!(size.to_string(), size.name());
        }
        assert_eq!(" Large ".parse::<Size>(), Ok(Size::Large));
        assert!("huge".parse::<Size>().is_err());
    }
}
