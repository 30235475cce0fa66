//! A type whose fields change is imported again into new tables and swapped
//! in at once, on SQLite and on PostgreSQL: while it runs (with writes on the
//! site, the event log followed, and the sync stopped and restarted half
//! way), readers always see the whole type; afterwards it holds exactly
//! what a fresh import of the new config holds.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use sg_client::Client;
use sg_engine::{AnyStore, Engine};
use sg_protocol::{Auth, ReadParams, ReturnOnly, SummarizeParams};
use sg_sim::ServerOptions;
use sg_sync::{Cache, Leadership};
use support::{
    close, drop_postgres_schema, generated_site, open_shared_cache, serve, wait_until, Backend,
};

const OLD_TASK: &[&str] = &["content", "sg_status_list", "entity", "start_date"];
const NEW_TASK: &[&str] = &[
    "content",
    "sg_status_list",
    "entity",
    "task_assignees",
    "due_date",
];

/// A simulated site with the built-in schema and a small generated
/// production, answering after a little latency so a reimport takes a while.
async fn start_site() -> (String, tokio::sync::oneshot::Sender<()>) {
    let options = ServerOptions {
        latency: Some((Duration::from_millis(30), Duration::from_millis(60))),
        ..ServerOptions::default()
    };
    serve(generated_site(5).await, options).await
}

fn write_config(dir: &Path, url: &str, task: &[&str]) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\ndatabase: cache.sqlite\n\
         monitor:\n  fetch_interval: 0.2\nimport:\n  batch_size: 40\n  processes: 2\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    write_entity_config(dir, "Project", &["name"]);
    write_entity_config(dir, "HumanUser", &["name", "login"]);
    write_entity_config(dir, "Task", task);
}

fn write_entity_config(dir: &Path, entity_type: &str, fields: &[&str]) {
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    std::fs::write(
        configs.join(format!("{entity_type}.json")),
        json!({ "fields": fields }).to_string(),
    )
    .expect("entity config");
}

/// Active and retired Tasks as the cache serves them.
/// The fields of `entity_type` the cache serves now.
fn served_fields(cache: &Cache<AnyStore>, entity_type: &str) -> Vec<String> {
    cache
        .engine
        .catalog()
        .layout
        .table(entity_type)
        .expect("the type is cached")
        .fields
        .keys()
        .cloned()
        .collect()
}

fn task_counts(engine: &Engine<AnyStore>) -> (u64, u64) {
    let params = SummarizeParams::from_json(
        json!({"type": "Task", "summaries": [{"field": "id", "type": "record_count"}],
               "filters": {"logical_operator": "and", "conditions": []}})
        .as_object()
        .expect("object"),
    )
    .expect("params");
    let active = engine.summarize(&params).expect("summarize")["summaries"]["id"]
        .as_u64()
        .unwrap_or(0);
    let mut read = ReadParams::new("Task", &[]);
    read.return_only = ReturnOnly::Retired;
    read.return_paging_info = true;
    read.return_paging_info_without_counts = false;
    read.paging.entities_per_page = 1;
    let retired = engine.read(&read).expect("read")["paging_info"]["entity_count"]
        .as_u64()
        .unwrap_or(0);
    (active, retired)
}

/// Active Tasks with a due date, once the cache serves `due_date` (which
/// the writes leave alone): a type imported in place would show fewer.
fn tasks_with_due_date(engine: &Engine<AnyStore>) -> Option<u64> {
    let params = SummarizeParams::from_json(
        json!({"type": "Task", "summaries": [{"field": "id", "type": "record_count"}],
               "filters": {"logical_operator": "and", "conditions": [
                   {"path": "due_date", "relation": "is_not", "values": [null]}]}})
        .as_object()
        .expect("object"),
    )
    .ok()?;
    // Fails (the field is unknown) while the old fields are served.
    let result = engine.summarize(&params).ok()?;
    result["summaries"]["id"].as_u64()
}

/// Every Task, active and retired, with every field the cache serves.
fn all_tasks(engine: &Engine<AnyStore>) -> Vec<Value> {
    let fields: Vec<String> = engine
        .catalog()
        .layout
        .table("Task")
        .expect("Task")
        .fields
        .keys()
        .cloned()
        .collect();
    let mut out = Vec::new();
    for return_only in [ReturnOnly::Active, ReturnOnly::Retired] {
        let mut read = ReadParams::new("Task", &[]);
        read.return_fields = fields.clone();
        read.return_only = return_only;
        read.paging.entities_per_page = 100_000;
        out.extend(
            engine.read(&read).expect("read")["entities"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    out
}

/// What readers must always see: active and retired Tasks, and active
/// Tasks with a due date (once that field is served).
type Expected = (u64, u64, u64);

/// Reads the Task counts over and over until stopped; counts the reads and
/// keeps those that differ from `expected`.
fn spawn_reader(
    engine: Arc<Engine<AnyStore>>,
    expected: Expected,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    wrong: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        while !stop.load(Ordering::Relaxed) {
            let counts = task_counts(&engine);
            reads.fetch_add(1, Ordering::Relaxed);
            if counts != (expected.0, expected.1) {
                wrong
                    .lock()
                    .expect("lock")
                    .push(format!("counts {counts:?}"));
            }
            if let Some(due) = tasks_with_due_date(&engine) {
                if due != expected.2 {
                    wrong
                        .lock()
                        .expect("lock")
                        .push(format!("{due} with a due date"));
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// Updates Tasks (status and assignees: nothing that changes the counts)
/// until stopped.
fn spawn_writer(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
        let mut written = 0u64;
        let mut i = 0i64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let task = 1 + (i * 37) % 400;
            let params = json!({"type": "Task", "id": task, "fields": [
                {"field_name": "sg_status_list", "value": (["wtg", "ip", "fin"][(i % 3) as usize])},
                {"field_name": "task_assignees", "value": [{"type": "HumanUser", "id": 1 + i % 5}],
                 "multi_entity_update_mode": if i % 2 == 0 { "add" } else { "remove" }}]});
            if writer.call("update", Some(params)).await.is_ok() {
                written += 1;
            }
        }
        written
    })
}

/// The reimport recorded for Task: records imported so far, if one is under way.
async fn reimported(cache: &Arc<Cache<AnyStore>>) -> Option<u64> {
    let status = cache.status().await.expect("status");
    let task = status
        .types
        .iter()
        .find(|t| t.entity_type == "Task")
        .expect("Task in status");
    (task.state == "reimporting").then(|| task.reimported.unwrap_or(0))
}

/// Starts the sync loop of a cache; returns its stop switch and task.
fn start_run(
    cache: &Arc<Cache<AnyStore>>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), sg_sync::SyncError>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(cache.clone().run(stopped, Leadership::sole()));
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reimport_by_swap_on_sqlite() {
    reimport_by_swap(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reimport_by_swap_on_postgresql() {
    reimport_by_swap(Backend::Postgres).await;
}

async fn reimport_by_swap(backend: Backend) {
    let schema = format!("reimport_test_{}", std::process::id());
    if let Backend::Postgres = backend {
        drop_postgres_schema(&schema).await;
    }
    let (url, _stop_site) = start_site().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url, OLD_TASK);
    let cache = open_shared_cache(backend, dir.path(), &schema).await;
    cache.import_pending().await.expect("first import");
    let counts = {
        let engine = cache.engine.clone();
        tokio::task::spawn_blocking(move || task_counts(&engine))
            .await
            .expect("join")
    };
    assert!(counts.0 > 200, "enough Tasks for several pages: {counts:?}");
    let site = Client::new(&url, Auth::script("cache", "cache-key")).expect("client");
    let due = site
        .call(
            "summarize",
            Some(
                json!({"type": "Task", "summaries": [{"field": "id", "type": "record_count"}],
                "filters": {"logical_operator": "and", "conditions": [
                    {"path": "due_date", "relation": "is_not", "values": [null]}]}}),
            ),
        )
        .await
        .expect("summarize")["summaries"]["id"]
        .as_u64()
        .expect("count");
    assert!(due > 0, "Tasks with a due date on the site");
    let expected = (counts.0, counts.1, due);

    // Readers and writers throughout; then Task's fields change.
    let stop_readers = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = spawn_reader(
        cache.engine.clone(),
        expected,
        stop_readers.clone(),
        reads.clone(),
        wrong.clone(),
    );
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(url.clone(), stop_writer.clone());
    let (stop_run, run) = start_run(&cache);
    write_entity_config(dir.path(), "Task", NEW_TASK);

    // Half way through, the sync stops (its reimport with it) and starts again.
    let mut seen = 0;
    wait_until("the reimport makes progress", || {
        let cache = cache.clone();
        async move { reimported(&cache).await.is_some_and(|n| n > 0) }
    })
    .await;
    let _ = stop_run.send(true);
    run.await.expect("join").expect("run");
    if let Some(n) = reimported(&cache).await {
        seen = n;
    }
    assert!(seen > 0, "the reimport stopped half way");
    let served = served_fields(&cache, "Task");
    assert!(
        served.contains(&"start_date".to_string()) && !served.contains(&"due_date".to_string()),
        "the old fields are served until the swap: {served:?}"
    );
    stop_readers.store(true, Ordering::Relaxed);
    reader.await.expect("reader");
    close(cache).await;

    let cache = open_shared_cache(backend, dir.path(), &schema).await;
    let resumed_at = reimported(&cache)
        .await
        .expect("still reimporting after the restart");
    assert!(
        resumed_at >= seen,
        "progress is kept: {resumed_at} < {seen}"
    );
    stop_readers.store(false, Ordering::Relaxed);
    let reader = spawn_reader(
        cache.engine.clone(),
        expected,
        stop_readers.clone(),
        reads.clone(),
        wrong.clone(),
    );
    let (stop_run, run) = start_run(&cache);
    // On PostgreSQL, a second process shares the database and only serves.
    let follower = match backend {
        Backend::Postgres => {
            let follower = open_shared_cache(backend, dir.path(), &schema).await;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(follower.clone().run(stopped, Leadership::never()));
            let served = served_fields(&follower, "Task");
            // Only while the reimport is still under way: on a loaded machine
            // the resumed reimport may be swapped in before the follower opens.
            let swapped = reimported(&cache).await.is_none();
            assert!(
                swapped || !served.contains(&"due_date".to_string()),
                "the follower serves the old fields before the swap: {served:?}"
            );
            Some((follower, stop, task))
        }
        Backend::Sqlite => None,
    };
    wait_until("the reimport is swapped in", || {
        let cache = cache.clone();
        async move { reimported(&cache).await.is_none() }
    })
    .await;
    stop_writer.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer");
    assert!(written > 0, "writes went on during the reimport");
    // Let the log be followed to its end.
    wait_until("the cache catches up", || {
        let cache = cache.clone();
        async move { cache.status().await.expect("status").lag_events == Some(0) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_run.send(true);
    run.await.expect("join").expect("run");
    stop_readers.store(true, Ordering::Relaxed);
    reader.await.expect("reader");

    let wrong = wrong.lock().expect("lock").clone();
    let reads = reads.load(Ordering::Relaxed);
    eprintln!("{reads} reads during the reimport");
    assert!(reads > 0, "readers ran");
    assert!(
        wrong.is_empty(),
        "readers saw a partial Task in {} of {} reads: {:?}",
        wrong.len(),
        reads,
        &wrong[..wrong.len().min(10)]
    );
    let status = cache.status().await.expect("status");
    let task = status
        .types
        .iter()
        .find(|t| t.entity_type == "Task")
        .expect("Task");
    assert_eq!(task.state, "ready", "{task:?}");
    let served = served_fields(&cache, "Task");
    assert!(
        served.contains(&"due_date".to_string())
            && served.contains(&"task_assignees".to_string())
            && !served.contains(&"start_date".to_string()),
        "the new fields are served after the swap: {served:?}"
    );
    let differences = cache.validate(&[], None).await.expect("validate");
    assert!(
        differences.is_empty(),
        "after the reimport: {:?}",
        &differences[..differences.len().min(10)]
    );

    if let Some((follower, stop, task)) = follower {
        wait_until("the follower serves the swapped-in fields", || {
            let follower = follower.clone();
            async move { served_fields(&follower, "Task").contains(&"due_date".to_string()) }
        })
        .await;
        let (from_leader, from_follower) = {
            let (a, b) = (cache.engine.clone(), follower.engine.clone());
            tokio::task::spawn_blocking(move || (all_tasks(&a), all_tasks(&b)))
                .await
                .expect("join")
        };
        assert!(
            from_follower == from_leader,
            "the follower reads the swapped-in Tasks as the leader does"
        );
        let _ = stop.send(true);
        task.await.expect("join").expect("follower run");
        close(follower).await;
    }

    // A fresh import of the new config holds the same Tasks.
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    write_config(fresh_dir.path(), &url, NEW_TASK);
    let fresh_schema = format!("{schema}_fresh");
    if let Backend::Postgres = backend {
        drop_postgres_schema(&fresh_schema).await;
    }
    let fresh = open_shared_cache(backend, fresh_dir.path(), &fresh_schema).await;
    fresh.import_pending().await.expect("fresh import");
    let (mine, theirs) = {
        let (a, b) = (cache.engine.clone(), fresh.engine.clone());
        tokio::task::spawn_blocking(move || (all_tasks(&a), all_tasks(&b)))
            .await
            .expect("join")
    };
    assert_eq!(mine.len(), theirs.len(), "Task records");
    assert!(mine == theirs, "the reimported Tasks equal a fresh import");
    close(cache).await;
    close(fresh).await;
    if let Backend::Postgres = backend {
        drop_postgres_schema(&schema).await;
        drop_postgres_schema(&fresh_schema).await;
    }
}
