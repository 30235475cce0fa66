//! The cache against a simulated site with late and lost event rows: import,
//! thousands of random writes of every kind (some by a script that logs no
//! events), event following, one reconcile scan, and then no difference at
//! all between the cache and the site.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use sg_client::Client;
use sg_engine::{Engine, SqliteStore};
use sg_protocol::{Auth, Schema};
use sg_sim::{EventFaults, ServerOptions, Site};
use sg_sync::{Cache, CacheConfig, LogProgress};
use support::{assert_same_as_site, close, logins, open_store, serve, Backend};

fn fixture_schema() -> Schema {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(format!("{dir}{name}"))
            .expect("the site schema fixtures in tests/fixtures");
        serde_json::from_str(&text).expect("fixture JSON")
    };
    Schema::from_json(
        &read("site-schema.fields.json"),
        Some(&read("site-schema.entities.json")),
    )
    .expect("schema")
}

/// A small production: projects, sequences, shots with assets, tasks, users, versions, notes.
fn dataset(rng: &mut StdRng) -> Value {
    let link = |t: &str, id: i64| json!({"type": t, "id": id});
    let statuses = ["ip", "wtg", "fin", "hld"];
    let shots: Vec<Value> = (1..=60)
        .map(|i| {
            let ids: BTreeSet<i64> = (0..rng.gen_range(0..3)).map(|_| rng.gen_range(1..=30)).collect();
            let assets: Vec<Value> = ids.into_iter().map(|a| link("Asset", a)).collect();
            json!({"id": i, "code": format!("SH{i:03}"), "project": link("Project", 1 + i % 2),
                   "sg_sequence": link("Sequence", 1 + i % 5), "sg_status_list": statuses[i as usize % 4],
                   "sg_cut_in": 1001 + i, "description": format!("shot {i}"), "assets": assets})
        })
        .collect();
    let mut asset_shots: Vec<Vec<Value>> = vec![Vec::new(); 31];
    for shot in &shots {
        for a in shot["assets"].as_array().into_iter().flatten() {
            let id = a["id"].as_i64().unwrap_or(0) as usize;
            asset_shots[id].push(link("Shot", shot["id"].as_i64().unwrap_or(0)));
        }
    }
    let assets: Vec<Value> = (1..=30)
        .map(|i| json!({"id": i, "code": format!("asset_{i}"), "sg_asset_type": (["Character", "Prop", "Environment"][i % 3]),
                        "project": link("Project", 1), "shots": asset_shots[i]}))
        .collect();
    let tasks: Vec<Value> = (1..=150)
        .map(|i| json!({"id": i, "content": format!("task {i}"), "entity": link("Shot", 1 + i % 60),
                        "sg_status_list": "wtg", "task_assignees": [link("HumanUser", 1 + i % 5)], "project": link("Project", 1)}))
        .collect();
    let mut shot_tasks: Vec<Vec<Value>> = vec![Vec::new(); 61];
    for t in &tasks {
        let s = t["entity"]["id"].as_i64().unwrap_or(0) as usize;
        shot_tasks[s].push(link("Task", t["id"].as_i64().unwrap_or(0)));
    }
    let shots: Vec<Value> = shots
        .into_iter()
        .map(|mut s| {
            let id = s["id"].as_i64().unwrap_or(0) as usize;
            s["tasks"] = json!(shot_tasks[id]);
            s
        })
        .collect();
    json!({
        "Project": [{"id": 1, "name": "Alpha"}, {"id": 2, "name": "Beta"}],
        "Sequence": (1..=5).map(|i| json!({"id": i, "code": format!("SEQ{i:02}"), "project": link("Project", 1)})).collect::<Vec<_>>(),
        "Shot": shots,
        "Asset": assets,
        "Task": tasks,
        "HumanUser": (1..=5).map(|i| json!({"id": i, "name": format!("Artist {i}"), "login": format!("artist{i}")})).collect::<Vec<_>>(),
        "Version": (1..=40).map(|i| json!({"id": i, "code": format!("v{i:03}"), "entity": link("Shot", 1 + i % 60), "sg_status_list": "rev"})).collect::<Vec<_>>(),
    })
}

async fn start_site(faults: EventFaults, seed: u64) -> (String, tokio::sync::oneshot::Sender<()>) {
    let engine =
        Engine::new(SqliteStore::open_temporary().expect("db"), fixture_schema()).expect("engine");
    let mut rng = StdRng::seed_from_u64(seed);
    engine.load_dataset(&dataset(&mut rng)).expect("dataset");
    let logins = logins(&[
        "cache:cache-key",
        "writer:writer-key",
        "quiet:quiet-key:no-events",
    ]);
    let site = Arc::new(Site::new(engine, logins, faults).expect("site"));
    serve(site, ServerOptions::default()).await
}

fn write_config(dir: &Path, url: &str) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\ndatabase: cache.sqlite\nmonitor:\n  fetch_interval: 0.2\n  missing_event_timeout: 5\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    let types: &[(&str, &[&str])] = &[
        ("Project", &["name"]),
        ("Sequence", &["code", "project", "shots"]),
        (
            "Shot",
            &[
                "code",
                "sg_status_list",
                "sg_sequence",
                "project",
                "assets",
                "tasks",
                "sg_cut_in",
                "description",
                "created_at",
                "updated_at",
            ],
        ),
        (
            "Asset",
            &["code", "sg_asset_type", "shots", "project", "tasks"],
        ),
        (
            "Task",
            &[
                "content",
                "entity",
                "sg_status_list",
                "task_assignees",
                "due_date",
                "project",
                "start_date",
            ],
        ),
        ("HumanUser", &["name", "login"]),
        (
            "Version",
            &["code", "entity", "sg_status_list", "description"],
        ),
        ("Note", &["subject", "content", "note_links"]),
    ];
    for (t, fields) in types {
        std::fs::write(
            configs.join(format!("{t}.json")),
            json!({ "fields": fields }).to_string(),
        )
        .expect("entity config");
    }
}

/// One random write of any kind.
async fn random_write(
    rng: &mut StdRng,
    writer: &Client,
    quiet: Option<&Client>,
    created: &mut Vec<(String, i64)>,
) {
    let client = match quiet {
        Some(quiet) if rng.gen_bool(0.1) => quiet,
        _ => writer,
    };
    let link = |t: &str, id: i64| json!({"type": t, "id": id});
    let shot = rng.gen_range(1..=60);
    let asset = rng.gen_range(1..=30);
    let task = rng.gen_range(1..=150);
    let call = match rng.gen_range(0..14) {
        0 => (
            "create",
            json!({"type": "Shot", "fields": [{"field_name": "code", "value": format!("NEW{}", rng.gen::<u16>())},
                {"field_name": "sg_sequence", "value": link("Sequence", rng.gen_range(1..=5))},
                {"field_name": "assets", "value": [link("Asset", asset)]}], "return_fields": ["id"]}),
        ),
        1 => (
            "create",
            json!({"type": "Task", "fields": [{"field_name": "content", "value": "new task"},
                {"field_name": "entity", "value": link(if rng.gen_bool(0.5) { "Shot" } else { "Asset" }, if rng.gen_bool(0.5) { shot } else { asset })},
                {"field_name": "due_date", "value": format!("2025-0{}-1{}", rng.gen_range(1..=9), rng.gen_range(0..=9))}], "return_fields": ["id"]}),
        ),
        2 => (
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "code", "value": format!("SH{shot:03}_{}", rng.gen::<u8>())}]}),
        ),
        3 => (
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "sg_status_list", "value": (["ip", "wtg", "fin", "hld"][rng.gen_range(0..4)])},
                {"field_name": "sg_cut_in", "value": rng.gen_range(900..1200)}]}),
        ),
        4 => (
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "assets", "value": [link("Asset", asset)],
                "multi_entity_update_mode": (["add", "remove", "set"][rng.gen_range(0..3)])}]}),
        ),
        5 => (
            "update",
            json!({"type": "Task", "id": task, "fields": [{"field_name": "entity", "value": link("Shot", shot)},
                {"field_name": "sg_status_list", "value": (["wtg", "ip", "fin"][rng.gen_range(0..3)])}]}),
        ),
        6 => (
            "update",
            json!({"type": "Task", "id": task, "fields": [{"field_name": "task_assignees", "value": [link("HumanUser", rng.gen_range(1..=5))],
                "multi_entity_update_mode": if rng.gen_bool(0.5) { "add" } else { "remove" }}]}),
        ),
        7 => (
            "update",
            json!({"type": "Sequence", "id": rng.gen_range(1..=5), "fields": [{"field_name": "code", "value": format!("SEQ_R{}", rng.gen::<u8>())}]}),
        ),
        8 => (
            "delete",
            json!({"type": if rng.gen_bool(0.5) { "Task" } else { "Shot" }, "id": if rng.gen_bool(0.5) { task } else { shot }}),
        ),
        9 => (
            "revive",
            json!({"type": if rng.gen_bool(0.5) { "Task" } else { "Shot" }, "id": if rng.gen_bool(0.5) { task } else { shot }}),
        ),
        10 => (
            "update",
            json!({"type": "Asset", "id": asset, "fields": [{"field_name": "code", "value": format!("asset_{asset}_{}", rng.gen::<u8>())},
                {"field_name": "shots", "value": [link("Shot", shot)], "multi_entity_update_mode": "add"}]}),
        ),
        11 => (
            "update",
            json!({"type": "Version", "id": rng.gen_range(1..=40), "fields": [{"field_name": "description", "value": format!("note {}", rng.gen::<u32>())},
                {"field_name": "entity", "value": link("Shot", shot)}]}),
        ),
        12 => (
            "create",
            json!({"type": "Note", "fields": [{"field_name": "subject", "value": "look"}, {"field_name": "content", "value": "hello"},
                {"field_name": "note_links", "value": [link("Shot", shot)]}], "return_fields": ["id"]}),
        ),
        _ => {
            if let Some((t, id)) = created.get(rng.gen_range(0..created.len().max(1))).cloned() {
                ("delete", json!({"type": t, "id": id}))
            } else {
                (
                    "update",
                    json!({"type": "Shot", "id": shot, "fields": [{"field_name": "description", "value": "batch"}]}),
                )
            }
        }
    };
    let (method, params) = call;
    let batch = rng.gen_bool(0.05);
    let result = if batch {
        let mut item = params.clone();
        item["request_type"] = json!(method);
        writer
            .call(
                "batch",
                Some(
                    json!([item, {"request_type": "update", "type": "Shot", "id": shot,
            "fields": [{"field_name": "description", "value": "batched"}]}]),
                ),
            )
            .await
    } else {
        client.call(method, Some(params)).await
    };
    if let Ok(v) = result {
        if method == "create" && !batch {
            if let (Some(t), Some(id)) = (v["type"].as_str(), v["id"].as_i64()) {
                created.push((t.to_string(), id));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_after_random_writes_with_late_and_lost_events() {
    converges(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_on_postgresql_too() {
    converges(Backend::Postgres).await;
}

async fn converges(backend: Backend) {
    let writes: usize = std::env::var("SYNC_CONVERGENCE_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let faults = EventFaults {
        late_commit: Duration::from_millis(300),
        lost_rate: 0.05,
        noise_every: 10,
    };
    let (url, _stop) = start_site(faults, 7).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let config = CacheConfig::load(dir.path()).expect("config");
    let store = open_store(backend, dir.path()).await;
    let cache = Cache::open(config, store, Arc::new(LogProgress))
        .await
        .expect("cache opens");
    cache.import_pending().await.expect("import");
    assert!(
        cache
            .validate(&[], None)
            .await
            .expect("validate")
            .is_empty(),
        "a fresh import matches the site"
    );

    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let quiet = Client::new(&url, Auth::script("quiet", "quiet-key")).expect("client");
    let mut rng = StdRng::seed_from_u64(11);
    let mut created = Vec::new();
    for i in 0..writes {
        random_write(&mut rng, &writer, Some(&quiet), &mut created).await;
        if i % 25 == 0 {
            cache.poll_events().await.expect("poll");
        }
    }
    // Let late rows commit, follow the log to its end, then one scan.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while cache.poll_events().await.expect("poll") >= 500 {}
    cache.poll_events().await.expect("poll");
    cache.reconcile().await.expect("reconcile");
    assert_same_as_site(&cache, &format!("after {writes} writes")).await;

    // The comparison itself can fail: change one cached value behind the sync's back.
    let engine = cache.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine.upsert_records(
            "Shot",
            &[serde_json::Map::from_iter([
                ("id".to_string(), json!(1)),
                ("code".to_string(), json!("tampered")),
            ])],
        )
    })
    .await
    .expect("join")
    .expect("tamper");
    let differences = cache
        .validate(&["Shot".to_string()], None)
        .await
        .expect("validate");
    assert_eq!(differences.len(), 1, "{differences:?}");
    close(cache).await;
}

/// Without rows lost and without writes that log nothing, following the log
/// alone (no scan) keeps the cache exact, late rows included: `validate`
/// finds nothing as soon as the log is followed to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_alone_keeps_the_cache_exact() {
    event_log_alone(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_alone_keeps_the_cache_exact_on_postgresql_too() {
    event_log_alone(Backend::Postgres).await;
}

async fn event_log_alone(backend: Backend) {
    let faults = EventFaults {
        late_commit: Duration::from_millis(200),
        lost_rate: 0.0,
        noise_every: 7,
    };
    let (url, _stop) = start_site(faults, 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let config = CacheConfig::load(dir.path()).expect("config");
    let store = open_store(backend, dir.path()).await;
    let cache = Cache::open(config, store, Arc::new(LogProgress))
        .await
        .expect("cache opens");
    cache.import_pending().await.expect("import");
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let mut rng = StdRng::seed_from_u64(5);
    let mut created = Vec::new();
    for i in 0..1000 {
        random_write(&mut rng, &writer, None, &mut created).await;
        if i % 10 == 0 {
            cache.poll_events().await.expect("poll");
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    while cache.poll_events().await.expect("poll") >= 500 {}
    assert_same_as_site(&cache, "without a scan").await;
    close(cache).await;
}
