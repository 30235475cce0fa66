//! Engine benchmark: `read` and `summarize` on a large Shot table.
//!
//! A site of `SHOTGUN_BENCH_ROWS` Shots (default 1,000,000 under `cargo bench`),
//! one Project per 10,000 Shots (100) and 100 Sequences per Project (10,000),
//! timed in process (no HTTP), each read both as a `Value` (`Engine::read`)
//! and as the JSON text the proxy sends (`Engine::read_json`, the `_json`
//! benches; the issue's targets are for what the proxy does):
//!
//! - `read/a_project_and_status`: a 100-row page of the Shots of one Project
//!   whose status is `ip`, 8 fields, 2 of them links with names;
//! - `read/b_deep_sequence_code`: the same page filtered through
//!   `sg_sequence.Sequence.code starts_with 'P042_SQ07'` (10 of the project's
//!   100 Sequences) and the status;
//! - `summarize/c_count_by_status_all`: `count` of `id` grouped by
//!   `sg_status_list` (exact) over every Shot, and
//!   `summarize/c_count_by_status_project` over the 10,000 Shots of Project 1.
//!
//! (a) and (b) cycle through all the projects, one request per iteration.
//!
//! The database is built once, through the engine's own write path
//! (`Engine::upsert_records`, one transaction per 20,000 records), into
//! `<target>/bench-data/shots-<rows>-v<version>-<ddl hash>.sqlite`, and reused
//! while it holds the right row counts; the hash of the engine's DDL in the
//! name rebuilds it when tables or indexes change. `<target>` is
//! `CARGO_TARGET_DIR` or the workspace's `target`; `SHOTGUN_BENCH_REBUILD=1`
//! forces a rebuild.
//!
//! Every request is checked against the generator's own answer before it is
//! timed (ids of the page, named links, group counts), so the bench cannot
//! time an error path or a wrong answer. A summarize that fails is reported
//! and skipped rather than timed.
//!
//! `SHOTGUN_BENCH_PLAN=1` also prints the SQL the engine sends for each
//! request, its `EXPLAIN QUERY PLAN`, and the time of each statement alone.
//!
//! ```text
//! cargo bench -p sg-engine --bench read                  # 1M rows; medians at the end
//! SHOTGUN_BENCH_ROWS=20000 cargo bench -p sg-engine --bench read -- --quick   # CI smoke
//! cargo test -p sg-engine --bench read                   # each bench once, 20k rows
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion, SamplingMode};
use serde_json::{json, Map, Value};

use sg_engine::sql::{Dialect, SqlValue};
use sg_engine::store::Rows;
use sg_engine::{Connection, Engine, EngineError, SqliteStore};
use sg_protocol::value::format_date_time;
use sg_protocol::{ReadParams, Schema, SummarizeParams};

/// Bump when the generator or the schema changes, so old files are not reused.
const DATA_VERSION: u32 = 1;
const SHOTS_PER_PROJECT: u64 = 10_000;
const SEQUENCES_PER_PROJECT: u64 = 100;
/// Records per `upsert_records` call (one transaction each).
const LOAD_CHUNK: usize = 20_000;
const PAGE: usize = 100;
const STATUSES: [(&str, u64); 7] = [
    ("wtg", 20),
    ("rdy", 10),
    ("ip", 25),
    ("rev", 10),
    ("fin", 25),
    ("hld", 5),
    ("omt", 5),
];
const FIELDS: [&str; 8] = [
    "code",
    "sg_status_list",
    "project",
    "sg_sequence",
    "sg_cut_in",
    "sg_cut_out",
    "description",
    "created_at",
];

// ---------------------------------------------------------------- the data

/// splitmix64: a fixed, seedable mix, so every run builds the same site.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const SEED: u64 = 0x5107_6C0D_E5EE_D001;

/// The shape of the generated site; everything else is a function of an id.
#[derive(Clone, Copy)]
struct Site {
    shots: u64,
    projects: u64,
    sequences: u64,
}

impl Site {
    fn new(shots: u64) -> Site {
        let projects = shots.div_ceil(SHOTS_PER_PROJECT).max(1);
        Site {
            shots,
            projects,
            sequences: projects * SEQUENCES_PER_PROJECT,
        }
    }

    /// Shots are spread over the sequences (and so the projects) at random:
    /// every project's shots are interleaved across the whole id range, as on
    /// a site where many shows run at once.
    fn shot_sequence(&self, shot: u64) -> u64 {
        mix(shot ^ SEED) % self.sequences + 1
    }

    fn shot_status(&self, shot: u64) -> &'static str {
        let mut roll = mix(shot.wrapping_mul(3) ^ SEED.rotate_left(17)) % 100;
        for (status, weight) in STATUSES {
            if roll < weight {
                return status;
            }
            roll -= weight;
        }
        unreachable!("weights add up to 100")
    }
}

fn sequence_project(sequence: u64) -> u64 {
    (sequence - 1) / SEQUENCES_PER_PROJECT + 1
}

/// 1..=100 within its project; codes count in tens: SQ0010 .. SQ1000.
fn sequence_number(sequence: u64) -> u64 {
    (sequence - 1) % SEQUENCES_PER_PROJECT + 1
}

fn project_code(project: u64) -> String {
    format!("P{project:03}")
}

fn project_name(project: u64) -> String {
    const A: [&str; 10] = [
        "Silent", "Crimson", "Broken", "Hollow", "Golden", "Last", "Frozen", "Electric", "Distant",
        "Wild",
    ];
    const B: [&str; 10] = [
        "Harbour", "Empire", "Signal", "Forest", "Orbit", "Tide", "Garden", "Frontier", "Engine",
        "Lantern",
    ];
    let h = mix(project ^ SEED);
    format!(
        "{} {} ({})",
        A[(h % 10) as usize],
        B[((h / 10) % 10) as usize],
        project_code(project)
    )
}

fn sequence_code(sequence: u64) -> String {
    format!(
        "{}_SQ{:04}",
        project_code(sequence_project(sequence)),
        sequence_number(sequence) * 10
    )
}

fn description(shot: u64) -> Value {
    const WHO: [&str; 8] = [
        "Hero",
        "The crowd",
        "Drone",
        "Villain",
        "Two guards",
        "The ship",
        "A lone rider",
        "Camera",
    ];
    const WHAT: [&str; 8] = [
        "crosses the bridge",
        "turns toward the light",
        "pushes in on the harbour",
        "runs through the market",
        "lands on the roof",
        "breaks through the ice",
        "waits in the rain",
        "pulls out to a wide",
    ];
    const NOTE: [&str; 8] = [
        "plate is soft, needs regrain",
        "add CG debris",
        "sky replacement",
        "match the grade of the previous shot",
        "paint out the rig",
        "crowd extension",
        "retime to 80%",
        "client notes pending",
    ];
    let h = mix(shot ^ 0xDE5C);
    if h.is_multiple_of(10) {
        return Value::Null;
    }
    json!(format!(
        "{} {}; {}.",
        WHO[((h >> 8) % 8) as usize],
        WHAT[((h >> 16) % 8) as usize],
        NOTE[((h >> 24) % 8) as usize]
    ))
}

/// 2021-01-01T00:00:00Z; shots are created over three years, in id order.
const EPOCH_START: i64 = 1_609_459_200;
const THREE_YEARS: i64 = 3 * 365 * 86_400;

fn shot_record(site: &Site, shot: u64, number_in_sequence: u64) -> Map<String, Value> {
    let sequence = site.shot_sequence(shot);
    let project = sequence_project(sequence);
    let h = mix(shot ^ 0xC0FFEE);
    let created = EPOCH_START + (shot as i64 * THREE_YEARS) / site.shots as i64 + (h % 600) as i64;
    let updated = created + ((h >> 12) % (90 * 86_400)) as i64;
    let cut_in = 1001;
    let cut_out = cut_in + 24 + ((h >> 40) % 216) as i64;
    let record = json!({
        "type": "Shot",
        "id": shot,
        "code": format!("{}_{:04}", sequence_code(sequence), number_in_sequence * 10),
        "project": {"type": "Project", "id": project},
        "sg_sequence": {"type": "Sequence", "id": sequence},
        "sg_status_list": site.shot_status(shot),
        "sg_cut_in": cut_in,
        "sg_cut_out": cut_out,
        "description": description(shot),
        "created_at": format_date_time(created),
        "updated_at": format_date_time(updated),
    });
    match record {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// The compact schema, in the `schema_read` shape.
fn schema_json() -> Value {
    fn field(data_type: &str, name: &str, properties: Value) -> Value {
        let mut props = Map::new();
        props.insert(
            "default_value".into(),
            json!({"value": null, "editable": false}),
        );
        if let Value::Object(extra) = properties {
            for (k, v) in extra {
                props.insert(k, json!({"value": v, "editable": true}));
            }
        }
        json!({
            "data_type": {"value": data_type, "editable": false},
            "name": {"value": name, "editable": true},
            "properties": props,
        })
    }
    let link = |name: &str, types: &[&str]| field("entity", name, json!({"valid_types": types}));
    let statuses: Vec<&str> = STATUSES.iter().map(|(s, _)| *s).collect();
    json!({
        "Project": {
            "id": field("number", "Id", json!({})),
            "name": field("text", "Project Name", json!({})),
            "created_at": field("date_time", "Date Created", json!({})),
        },
        "Sequence": {
            "id": field("number", "Id", json!({})),
            "code": field("text", "Sequence Name", json!({})),
            "project": link("Project", &["Project"]),
        },
        "Shot": {
            "id": field("number", "Id", json!({})),
            "code": field("text", "Shot Code", json!({})),
            "project": link("Project", &["Project"]),
            "sg_sequence": link("Sequence", &["Sequence"]),
            "sg_status_list": field("status_list", "Status", json!({"valid_values": statuses})),
            "sg_cut_in": field("number", "Cut In", json!({})),
            "sg_cut_out": field("number", "Cut Out", json!({})),
            "description": field("text", "Description", json!({})),
            "created_at": field("date_time", "Date Created", json!({})),
            "updated_at": field("date_time", "Date Updated", json!({})),
        },
    })
}

fn schema() -> Schema {
    Schema::from_json(&schema_json(), None).expect("the bench schema parses")
}

// ---------------------------------------------------------- the database file

fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Removes the databases of this row count built under other versions or DDL.
fn remove_stale_files(dir: &Path, shots: u64) {
    let prefix = format!("shots-{shots}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Row counts of the three tables, if the file is a database that has them.
fn row_counts(path: &Path) -> Option<[u64; 3]> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    let count = |t: &str| -> Option<u64> {
        conn.query_row(
            &format!("SELECT COUNT(*) FROM \"{t}\" WHERE \"__retired\" = 0"),
            [],
            |r| r.get::<_, i64>(0),
        )
        .ok()
        .map(|n| n as u64)
    };
    Some([count("Project")?, count("Sequence")?, count("Shot")?])
}

fn load(engine: &Engine<SqliteStore>, site: &Site) -> Result<(), EngineError> {
    let projects: Vec<Map<String, Value>> = (1..=site.projects)
        .map(|p| {
            let created = EPOCH_START - 30 * 86_400 + (p as i64) * 3_600;
            let v = json!({"type": "Project", "id": p, "name": project_name(p),
                           "created_at": format_date_time(created)});
            v.as_object().cloned().unwrap()
        })
        .collect();
    engine.upsert_records("Project", &projects)?;
    let sequences: Vec<Map<String, Value>> = (1..=site.sequences)
        .map(|s| {
            let v = json!({"type": "Sequence", "id": s, "code": sequence_code(s),
                           "project": {"type": "Project", "id": sequence_project(s)}});
            v.as_object().cloned().unwrap()
        })
        .collect();
    for chunk in sequences.chunks(LOAD_CHUNK) {
        engine.upsert_records("Sequence", chunk)?;
    }
    let mut per_sequence = vec![0u64; site.sequences as usize + 1];
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    let started = Instant::now();
    for shot in 1..=site.shots {
        let seq = site.shot_sequence(shot) as usize;
        per_sequence[seq] += 1;
        chunk.push(shot_record(site, shot, per_sequence[seq]));
        if chunk.len() == LOAD_CHUNK || shot == site.shots {
            engine.upsert_records("Shot", &chunk)?;
            chunk.clear();
            if shot % 200_000 == 0 {
                eprintln!("  {shot} shots in {:.1} s", started.elapsed().as_secs_f64());
            }
        }
    }
    Ok(())
}

/// A hash of the engine's DDL for the bench schema. `CREATE INDEX IF NOT
/// EXISTS` keeps an old index of the same name, so a file built under other
/// DDL would silently keep the old indexes; keying the file on the DDL makes
/// a change of tables or indexes rebuild it.
fn ddl_fingerprint() -> u32 {
    let layout = sg_engine::Layout::from_schema(&schema(), None);
    let mut hash: u32 = 0x811C_9DC5; // FNV-1a: stable across toolchains.
    for table in layout.tables.values() {
        for byte in sg_engine::ddl::create_table_sql(table, Dialect::Sqlite).bytes() {
            hash = (hash ^ byte as u32).wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// The engine over the bench database, built first if needed.
fn open_site(site: &Site) -> Engine<SqliteStore> {
    let dir = target_dir().join("bench-data");
    std::fs::create_dir_all(&dir).expect("create the bench-data folder");
    let path = dir.join(format!(
        "shots-{}-v{DATA_VERSION}-{:08x}.sqlite",
        site.shots,
        ddl_fingerprint()
    ));
    let timing = path.with_extension("load-time.txt");
    let expected = [site.projects, site.sequences, site.shots];
    let rebuild = std::env::var_os("SHOTGUN_BENCH_REBUILD").is_some_and(|v| v != "0");
    let reusable = !rebuild && path.exists() && row_counts(&path) == Some(expected);
    if reusable {
        let note = std::fs::read_to_string(&timing).unwrap_or_default();
        eprintln!(
            "bench database: reusing {} ({})",
            path.display(),
            note.trim()
        );
    } else {
        remove_stale_files(&dir, site.shots);
        let partial = path.with_extension("partial");
        remove_db(&partial);
        eprintln!(
            "bench database: loading {} projects, {} sequences, {} shots through \
             Engine::upsert_records ({LOAD_CHUNK} per transaction) into {}",
            site.projects,
            site.sequences,
            site.shots,
            path.display()
        );
        let started = Instant::now();
        {
            let store = SqliteStore::open(&partial).expect("open the bench database");
            let engine = Engine::new(store, schema()).expect("create the tables");
            load(&engine, site).expect("load the bench site");
            // As after any bulk load (load_dataset, an import): fresh planner statistics.
            engine.analyze().expect("analyze");
        } // Closing the last connection checkpoints the WAL into the file.
        let secs = started.elapsed().as_secs_f64();
        remove_db(&path);
        std::fs::rename(&partial, &path).expect("move the finished database in place");
        remove_db(&partial);
        let note = format!(
            "loaded {} shots in {secs:.1} s, {:.0} rows/s",
            site.shots,
            site.shots as f64 / secs
        );
        eprintln!("bench database: {note}");
        let _ = std::fs::write(&timing, format!("{note}\n"));
        assert_eq!(
            row_counts(&path),
            Some(expected),
            "the loaded database has the wrong row counts"
        );
    }
    let store = SqliteStore::open(&path).expect("open the bench database");
    Engine::new(store, schema()).expect("open the engine")
}

// ------------------------------------------------------------- the requests

/// A `read` exactly as the Python client's `find()` sends it.
fn read_params(conditions: Value) -> ReadParams {
    let params = json!({
        "type": "Shot",
        "return_fields": FIELDS,
        "filters": {"logical_operator": "and", "conditions": conditions},
        "return_only": "active",
        "paging": {"entities_per_page": PAGE, "current_page": 1},
        "api_return_image_urls": true,
        "return_paging_info_without_counts": true,
    });
    ReadParams::from_json(params.as_object().unwrap()).expect("valid read params")
}

fn project_status_read(project: u64) -> ReadParams {
    read_params(json!([
        {"path": "project", "relation": "is", "values": [{"type": "Project", "id": project}]},
        {"path": "sg_status_list", "relation": "is", "values": ["ip"]},
    ]))
}

/// `P042_SQ07` matches SQ0700 .. SQ0790: ten of the sequences of project 42.
fn sequence_prefix(project: u64) -> String {
    format!("{}_SQ0{}", project_code(project), 1 + project % 9)
}

fn deep_read(project: u64) -> ReadParams {
    read_params(json!([
        {"path": "sg_sequence.Sequence.code", "relation": "starts_with",
         "values": [sequence_prefix(project)]},
        {"path": "sg_status_list", "relation": "is", "values": ["ip"]},
    ]))
}

fn count_by_status(project: Option<u64>) -> SummarizeParams {
    let conditions = match project {
        Some(p) => {
            json!([{"path": "project", "relation": "is", "values": [{"type": "Project", "id": p}]}])
        }
        None => json!([]),
    };
    let params = json!({
        "type": "Shot",
        "summaries": [{"field": "id", "type": "count"}],
        "filters": {"logical_operator": "and", "conditions": conditions},
        "grouping": [{"field": "sg_status_list", "type": "exact", "direction": "asc"}],
    });
    SummarizeParams::from_json(params.as_object().unwrap()).expect("valid summarize params")
}

// ------------------------------------------------------------- the checks

/// What the generator says each query must answer.
struct Expected {
    /// Per project: ids of its `ip` shots, the first page's worth.
    project_ip: Vec<Vec<u64>>,
    /// Per project: ids of the `ip` shots of its prefixed sequences, first page.
    deep_ip: Vec<Vec<u64>>,
    /// Per status: counts over all shots and over project 1.
    counts_all: Vec<(&'static str, u64)>,
    counts_project: Vec<(&'static str, u64)>,
}

fn expected(site: &Site) -> Expected {
    let n = site.projects as usize + 1;
    let mut project_ip = vec![Vec::new(); n];
    let mut deep_ip = vec![Vec::new(); n];
    let mut all = vec![0u64; STATUSES.len()];
    let mut one = vec![0u64; STATUSES.len()];
    for shot in 1..=site.shots {
        let status = site.shot_status(shot);
        let k = STATUSES.iter().position(|(s, _)| *s == status).unwrap();
        let sequence = site.shot_sequence(shot);
        let project = sequence_project(sequence);
        all[k] += 1;
        if project == 1 {
            one[k] += 1;
        }
        if status != "ip" {
            continue;
        }
        if project_ip[project as usize].len() <= PAGE {
            project_ip[project as usize].push(shot);
        }
        let deep = &mut deep_ip[project as usize];
        if deep.len() <= PAGE && sequence_code(sequence).starts_with(&sequence_prefix(project)) {
            deep.push(shot);
        }
    }
    let zip = |counts: Vec<u64>| {
        STATUSES
            .iter()
            .zip(counts)
            .map(|((s, _), c)| (*s, c))
            .filter(|(_, c)| *c > 0)
            .collect()
    };
    Expected {
        project_ip,
        deep_ip,
        counts_all: zip(all),
        counts_project: zip(one),
    }
}

/// Checks a `read` page against the generator's ids, and the shape of every row.
fn check_page(what: &str, result: &Value, ids: &[u64], project: u64, prefix: Option<&str>) {
    let entities = result["entities"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no entities in {result}"));
    let want: Vec<u64> = ids.iter().copied().take(PAGE).collect();
    let got: Vec<u64> = entities.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert_eq!(got, want, "{what}: wrong ids");
    assert_eq!(
        result["paging_info"]["has_next_page"],
        json!(ids.len() > PAGE),
        "{what}: has_next_page"
    );
    let project_name = project_name(project);
    for e in entities {
        let obj = e.as_object().unwrap();
        for f in FIELDS {
            assert!(obj.contains_key(f), "{what}: {f} missing from {e}");
        }
        assert_eq!(e["type"], "Shot", "{what}: {e}");
        assert_eq!(e["sg_status_list"], "ip", "{what}: {e}");
        assert_eq!(
            e["project"],
            json!({"type": "Project", "id": project, "name": project_name}),
            "{what}: project link"
        );
        let seq_name = e["sg_sequence"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: sg_sequence has no name: {e}"));
        assert_eq!(e["sg_sequence"]["type"], "Sequence");
        if let Some(prefix) = prefix {
            assert!(
                seq_name.starts_with(prefix),
                "{what}: {seq_name} !~ {prefix}"
            );
        }
        let code = e["code"].as_str().unwrap();
        assert!(code.starts_with(seq_name), "{what}: {code} vs {seq_name}");
        assert!(e["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(e["sg_cut_in"].as_i64() < e["sg_cut_out"].as_i64());
    }
}

/// Checks a summarize answer: the total and every group's count.
fn check_summary(what: &str, result: &Value, counts: &[(&str, u64)]) -> Result<(), String> {
    let total: u64 = counts.iter().map(|(_, c)| c).sum();
    if result["summaries"]["id"].as_u64() != Some(total) {
        return Err(format!("{what}: summaries.id should be {total}: {result}"));
    }
    let groups = result["groups"]
        .as_array()
        .ok_or_else(|| format!("{what}: no groups: {result}"))?;
    let mut got: Vec<(String, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["group_value"].as_str().unwrap_or("?").to_string(),
                g["summaries"]["id"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = counts.iter().map(|(s, c)| (s.to_string(), *c)).collect();
    want.sort();
    if got != want {
        return Err(format!("{what}: groups {got:?}, want {want:?}"));
    }
    Ok(())
}

/// Times single calls by hand: their median, mean and 90th percentile.
/// Criterion's estimates are over samples of many back-to-back calls, so a
/// slow tail (allocator housekeeping, page faults) shows in them and not in
/// the median of single calls; both are printed.
struct Timings {
    median: Duration,
    mean: Duration,
    p90: Duration,
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:?}, mean {:?}, p90 {:?}",
            self.median, self.mean, self.p90
        )
    }
}

fn time_calls<T>(runs: usize, mut f: impl FnMut(usize) -> T) -> Timings {
    let mut times: Vec<Duration> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            black_box(f(i));
            t.elapsed()
        })
        .collect();
    times.sort();
    Timings {
        median: times[times.len() / 2],
        mean: times.iter().sum::<Duration>() / times.len() as u32,
        p90: times[times.len() * 9 / 10],
    }
}

fn median_of<T>(runs: usize, f: impl FnMut(usize) -> T) -> Duration {
    time_calls(runs, f).median
}

// ------------------------------------------------------------------- main

fn main() {
    // Under `cargo bench` criterion gets `--bench`; without it (cargo test
    // --benches) every bench runs once, so a small site is enough.
    let benching = std::env::args().any(|a| a == "--bench");
    let started = std::time::SystemTime::now();
    let rows = std::env::var("SHOTGUN_BENCH_ROWS")
        .ok()
        .map(|v| {
            v.replace('_', "")
                .parse::<u64>()
                .expect("SHOTGUN_BENCH_ROWS")
        })
        .unwrap_or(if benching { 1_000_000 } else { 20_000 });
    let site = Site::new(rows);
    let engine = open_site(&site);
    let want = expected(&site);
    let projects: Vec<u64> = (1..=site.projects).collect();

    // Check every request the timing loops will send, and take a first median.
    let a_params: Vec<ReadParams> = projects.iter().map(|p| project_status_read(*p)).collect();
    let b_params: Vec<ReadParams> = projects.iter().map(|p| deep_read(*p)).collect();
    for (i, p) in projects.iter().enumerate() {
        let r = engine.read(&a_params[i]).expect("read (a)");
        check_page("(a)", &r, &want.project_ip[*p as usize], *p, None);
        let r = engine.read(&b_params[i]).expect("read (b)");
        let prefix = sequence_prefix(*p);
        check_page("(b)", &r, &want.deep_ip[*p as usize], *p, Some(&prefix));
        let text = engine
            .read_json(&b_params[i], Vec::new())
            .expect("read (b) as JSON");
        assert_eq!(text, r.to_string().into_bytes(), "(b) as JSON text");
        let r = engine.read(&a_params[i]).expect("read (a)");
        let text = engine
            .read_json(&a_params[i], Vec::new())
            .expect("read (a) as JSON");
        assert_eq!(text, r.to_string().into_bytes(), "(a) as JSON text");
    }
    let n = projects.len();
    eprintln!(
        "checked (a) and (b) on {n} projects of {} shots",
        site.shots
    );
    eprintln!(
        "  single calls (a): {}",
        time_calls(400, |i| engine.read(&a_params[i % n]).unwrap())
    );
    eprintln!(
        "  single calls (b): {}",
        time_calls(100, |i| engine.read(&b_params[i % n]).unwrap())
    );
    if std::env::var_os("SHOTGUN_BENCH_PLAN").is_some() {
        let k = 41.min(n - 1);
        let (all, one) = (count_by_status(None), count_by_status(Some(1)));
        print_plans(
            &engine,
            &[
                ("(a)", Request::Read(&a_params[k])),
                ("(b)", Request::Read(&b_params[k])),
                ("(c) all", Request::Summarize(&all)),
                ("(c) project", Request::Summarize(&one)),
            ],
        );
    }

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("read");
        g.sample_size(100).measurement_time(Duration::from_secs(5));
        let mut i = 0;
        g.bench_function("a_project_and_status", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                engine.read(black_box(&a_params[i])).unwrap()
            })
        });
        g.bench_function("b_deep_sequence_code", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                engine.read(black_box(&b_params[i])).unwrap()
            })
        });
        g.bench_function("a_project_and_status_json", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                engine
                    .read_json(black_box(&a_params[i]), Vec::with_capacity(16 * 1024))
                    .unwrap()
            })
        });
        g.bench_function("b_deep_sequence_code_json", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                engine
                    .read_json(black_box(&b_params[i]), Vec::with_capacity(16 * 1024))
                    .unwrap()
            })
        });
        g.finish();
    }

    let summaries = [
        (
            "c_count_by_status_all",
            count_by_status(None),
            &want.counts_all,
        ),
        (
            "c_count_by_status_project",
            count_by_status(Some(1)),
            &want.counts_project,
        ),
    ];
    let mut g = c.benchmark_group("summarize");
    g.sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(8));
    for (name, params, counts) in &summaries {
        let checked = engine
            .summarize(params)
            .map_err(|e| format!("summarize failed: {e}"))
            .and_then(|r| check_summary(name, &r, counts));
        match checked {
            Ok(()) => {
                eprintln!(
                    "checked summarize/{name}; single calls: {}",
                    time_calls(5, |_| engine.summarize(params).unwrap())
                );
                g.bench_function(*name, |b| {
                    b.iter(|| engine.summarize(black_box(params)).unwrap())
                });
            }
            Err(why) => eprintln!("summarize/{name}: SKIPPED, {why}"),
        }
    }
    g.finish();
    c.final_summary();
    if benching {
        print_medians(&site, started);
    }
}

/// Criterion's median estimates of this run, beside the issue's targets.
fn print_medians(site: &Site, started: std::time::SystemTime) {
    let root = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"));
    let targets = [
        ("read/a_project_and_status", None),
        ("read/b_deep_sequence_code", None),
        ("read/a_project_and_status_json", Some(0.2)),
        ("read/b_deep_sequence_code_json", Some(1.0)),
        ("summarize/c_count_by_status_all", Some(50.0)),
        ("summarize/c_count_by_status_project", None),
    ];
    eprintln!("\nmedians on {} shots:", site.shots);
    for (id, target) in targets {
        let path = root.join(id).join("new/estimates.json");
        // Only the benches this run measured (a filter may have skipped some).
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= started);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if !fresh {
            continue;
        }
        let Some(ns) = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["median"]["point_estimate"].as_f64())
        else {
            continue;
        };
        let ms = ns / 1e6;
        let verdict = match target {
            Some(t) if ms <= t => format!("target {t} ms: met"),
            Some(t) => format!("target {t} ms: MISSED"),
            None => String::new(),
        };
        eprintln!("  {id:<38} {ms:>10.3} ms   {verdict}");
    }
}

// ------------------------------------------------------- plan diagnostics

/// Records the statements the engine sends, then passes them on.
struct Logged<'c> {
    inner: &'c mut rusqlite::Connection,
    log: Vec<(String, Vec<SqlValue>)>,
}

impl Connection for Logged<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Rows, EngineError> {
        self.log.push((sql.to_string(), params.to_vec()));
        self.inner.query(sql, params)
    }
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<usize, EngineError> {
        self.inner.execute(sql, params)
    }
    fn execute_batch(&mut self, sql: &str) -> Result<(), EngineError> {
        Connection::execute_batch(self.inner, sql)
    }
}

/// One request the diagnostics replay: a read or a summarize.
enum Request<'p> {
    Read(&'p ReadParams),
    Summarize(&'p SummarizeParams),
}

fn to_rusqlite(values: &[SqlValue]) -> Vec<rusqlite::types::Value> {
    values
        .iter()
        .map(|v| match v {
            SqlValue::Null => rusqlite::types::Value::Null,
            SqlValue::Int(i) => rusqlite::types::Value::Integer(*i),
            SqlValue::Real(f) => rusqlite::types::Value::Real(*f),
            SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
        })
        .collect()
}

/// With `SHOTGUN_BENCH_PLAN=1`: the SQL the engine runs for each request, its
/// bound values, SQLite's `EXPLAIN QUERY PLAN`, and the median time of the
/// statement alone (through the engine's `Connection::query`, rows read into
/// `SqlValue`s), to split a request's time between SQL and building the JSON.
fn print_plans(engine: &Engine<SqliteStore>, requests: &[(&str, Request)]) {
    let mut conn = rusqlite::Connection::open(engine.store().path()).unwrap();
    conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA mmap_size = 1073741824;")
        .unwrap();
    let catalog = engine.catalog();
    for (what, request) in requests {
        let mut logged = Logged {
            inner: &mut conn,
            log: Vec::new(),
        };
        let runs = match request {
            Request::Read(_) => 200,
            Request::Summarize(_) => 5,
        };
        let whole = median_of(runs, |_| {
            logged.log.clear();
            match request {
                Request::Read(p) => sg_engine::read::read(&mut logged, &catalog.layout, p),
                Request::Summarize(p) => {
                    sg_engine::summarize::summarize(&mut logged, &catalog.layout, p)
                }
            }
            .expect("logged request")
        });
        let log = std::mem::take(&mut logged.log);
        eprintln!(
            "\n==== {what}: {} statements, whole request median {whole:?}",
            log.len()
        );
        let mut in_sql = Duration::ZERO;
        for (sql, values) in log {
            let shown: Vec<String> = values
                .iter()
                .take(12)
                .map(|v| match v {
                    SqlValue::Text(s) => format!("'{s}'"),
                    SqlValue::Int(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .collect();
            let bound = to_rusqlite(&values);
            // Through the engine's own `Connection::query`: SQLite plus
            // reading every row into `SqlValue`s, nothing of the JSON.
            let alone = median_of(runs, |_| {
                Connection::query(&mut conn, &sql, &values).unwrap()
            });
            in_sql += alone;
            eprintln!(
                "\n{what} SQL ({alone:?} alone): {sql}\n  values ({}): {}",
                values.len(),
                shown.join(", ")
            );
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(bound.iter()), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .unwrap();
            for row in rows {
                let (id, parent, detail) = row.unwrap();
                eprintln!("  plan {id:>3} <- {parent:>3}: {detail}");
            }
        }
        eprintln!("---- {what}: statements alone {in_sql:?} of {whole:?}");
    }
}
