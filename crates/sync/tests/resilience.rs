//! The sync never stops for one record or one file: a value the store can't
//! hold (a NUL byte in a text, which PostgreSQL refuses) marks its record and
//! the event log goes on; a broken entity config stops its type alone; and a
//! `run` restarted more often than `scan_interval` still scans when one is
//! due. On SQLite and on PostgreSQL.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use sg_client::Client;
use sg_engine::AnyStore;
use sg_protocol::{Auth, ReadParams};
use sg_sim::ServerOptions;
use sg_sync::{Cache, Leadership};
use support::{
    close, drop_postgres_schema, generated_site, generated_site_for, open_cache, open_shared_cache,
    serve, wait_until, Backend,
};

fn write_config(dir: &Path, url: &str, scan_interval: f64) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\ndatabase: cache.sqlite\n\
         monitor:\n  fetch_interval: 0.1\nscan_interval: {scan_interval}\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    for (t, fields) in [
        ("Shot", json!(["code", "description"])),
        ("Asset", json!(["code"])),
    ] {
        std::fs::write(
            configs.join(format!("{t}.json")),
            json!({ "fields": fields }).to_string(),
        )
        .expect("entity config");
    }
}

/// One field of a record as the cache holds it (`None`: not held).
/// Read off the async threads (the PostgreSQL client blocks).
async fn cached(cache: &Arc<Cache<AnyStore>>, t: &str, id: i64, field: &str) -> Option<Value> {
    let params = json!({"type": t, "return_fields": [field],
        "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [id]}]},
        "paging": {"entities_per_page": 1, "current_page": 1}});
    let params = ReadParams::from_json(params.as_object().expect("object")).expect("params");
    let engine = cache.engine.clone();
    let field = field.to_string();
    tokio::task::spawn_blocking(move || {
        let result = engine.read(&params).expect("read the cache");
        result["entities"][0].get(&field).cloned()
    })
    .await
    .expect("join")
}

/// The ids of the first `n` records of a type on the site.
async fn first_ids(site: &Client, t: &str, n: usize) -> Vec<i64> {
    let result = site
        .call(
            "read",
            Some(json!({"type": t, "return_fields": ["id"], "filters": {"logical_operator": "and", "conditions": []},
                "sorts": [{"field_name": "id", "direction": "asc"}],
                "paging": {"entities_per_page": n, "current_page": 1}})),
        )
        .await
        .expect("read");
    result["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect()
}

/// The wire form of fields to write: `[{"field_name": ..., "value": ...}]`.
fn wire_fields(fields: Value) -> Value {
    let fields = fields.as_object().cloned().unwrap_or_default();
    Value::Array(
        fields
            .into_iter()
            .map(|(name, value)| json!({"field_name": name, "value": value}))
            .collect(),
    )
}

async fn update(site: &Client, t: &str, id: i64, fields: Value) {
    site.call(
        "update",
        Some(json!({"type": t, "id": id, "fields": wire_fields(fields)})),
    )
    .await
    .expect("update");
}

async fn poll_all(cache: &Cache<AnyStore>) {
    while cache.poll_events().await.expect("the poll goes on") >= 500 {}
}

async fn a_record_the_store_cant_hold_is_marked_and_the_log_goes_on(backend: Backend) {
    let (url, _stop) = serve(generated_site(21).await, ServerOptions::default()).await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url, 3600.0);
    let cache = open_cache(backend, dir.path()).await;
    cache.import_pending().await.expect("import");
    let ids = first_ids(&writer, "Shot", 2).await;
    let (bad, good) = (ids[0], ids[1]);
    let asset = first_ids(&writer, "Asset", 1).await[0];

    update(
        &writer,
        "Shot",
        bad,
        json!({"description": "a NUL \u{0} byte"}),
    )
    .await;
    update(
        &writer,
        "Shot",
        good,
        json!({"description": "written after it"}),
    )
    .await;
    let created = writer
        .call(
            "create",
            Some(
                json!({"type": "Shot", "fields": wire_fields(json!({"code": "new \u{0} shot"})),
                "return_fields": ["id"]}),
            ),
        )
        .await
        .expect("create");
    let new_id = created["id"].as_i64().expect("the new id");
    update(&writer, "Asset", asset, json!({"code": "asset after it"})).await;
    poll_all(&cache).await;

    // The records after the bad ones are stored.
    assert_eq!(
        cached(&cache, "Shot", good, "description").await,
        Some(json!("written after it"))
    );
    assert_eq!(
        cached(&cache, "Asset", asset, "code").await,
        Some(json!("asset after it"))
    );
    let marked: Vec<(String, i64, i64)> = cache
        .marked_records()
        .into_iter()
        .map(|m| (m.entity_type, m.id, m.event_id))
        .collect();
    let status = cache.status().await.expect("status");
    match backend {
        Backend::Postgres => {
            for id in [bad, new_id] {
                assert!(
                    marked
                        .iter()
                        .any(|(t, i, event)| t == "Shot" && *i == id && *event > 0),
                    "Shot {id} is marked with its event: {marked:?}"
                );
            }
            assert!(cache.has_marks("Shot") && !cache.has_marks("Asset"));
            assert_eq!(
                status.marked_records.len(),
                2,
                "{:?}",
                status.marked_records
            );
        }
        Backend::Sqlite => {
            // SQLite holds the value: nothing to mark.
            assert!(marked.is_empty(), "{marked:?}");
            assert_eq!(
                cached(&cache, "Shot", bad, "description").await,
                Some(json!("a NUL \u{0} byte"))
            );
        }
    }

    // Later events read the marked records again; stored, they are unmarked.
    update(&writer, "Shot", bad, json!({"description": "fixed"})).await;
    update(&writer, "Shot", new_id, json!({"code": "fixed too"})).await;
    poll_all(&cache).await;
    assert_eq!(
        cached(&cache, "Shot", bad, "description").await,
        Some(json!("fixed"))
    );
    assert_eq!(
        cached(&cache, "Shot", new_id, "code").await,
        Some(json!("fixed too"))
    );
    assert!(cache.marked_records().is_empty() && !cache.has_marks("Shot"));
    assert!(cache
        .status()
        .await
        .expect("status")
        .marked_records
        .is_empty());
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_the_store_cant_hold_is_marked_and_the_log_goes_on_on_sqlite() {
    a_record_the_store_cant_hold_is_marked_and_the_log_goes_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_the_store_cant_hold_is_marked_and_the_log_goes_on_on_postgresql() {
    a_record_the_store_cant_hold_is_marked_and_the_log_goes_on(Backend::Postgres).await;
}

/// A record the store can't hold when the type is imported: the import
/// ends with the others, and the record is marked.
async fn an_import_goes_past_a_record_the_store_cant_hold(backend: Backend) {
    let (url, _stop) = serve(generated_site(24).await, ServerOptions::default()).await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url, 3600.0);
    let ids = first_ids(&writer, "Shot", 3).await;
    update(
        &writer,
        "Shot",
        ids[1],
        json!({"description": "imported with a NUL \u{0} byte"}),
    )
    .await;
    let cache = open_cache(backend, dir.path()).await;
    cache.import_pending().await.expect("the import goes on");
    let status = cache.status().await.expect("status");
    assert!(
        status.types.iter().all(|t| t.state == "ready"),
        "{:?}",
        status.types
    );
    assert!(cached(&cache, "Shot", ids[2], "description")
        .await
        .is_some());
    match backend {
        Backend::Postgres => {
            assert!(cache.has_marks("Shot"));
            assert_eq!(
                status.marked_records.len(),
                1,
                "{:?}",
                status.marked_records
            );
            assert_eq!(status.marked_records[0].id, ids[1]);
        }
        Backend::Sqlite => assert!(status.marked_records.is_empty()),
    }
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_goes_past_a_record_the_store_cant_hold_on_sqlite() {
    an_import_goes_past_a_record_the_store_cant_hold(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_goes_past_a_record_the_store_cant_hold_on_postgresql() {
    an_import_goes_past_a_record_the_store_cant_hold(Backend::Postgres).await;
}

async fn a_broken_entity_config_stops_its_type_alone(backend: Backend) {
    let (url, _stop) = serve(generated_site(22).await, ServerOptions::default()).await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url, 3600.0);
    let cache = open_cache(backend, dir.path()).await;
    cache.import_pending().await.expect("import");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(cache.clone().run(stopped, Leadership::sole()));
    let shot_config = dir.path().join("entity-configs/Shot.json");
    let good_config = std::fs::read_to_string(&shot_config).expect("Shot.json");

    // Saved half-written while `run` runs.
    std::fs::write(&shot_config, "{\"fields\": [\"code\",\n").expect("write");
    wait_until("status shows the broken config", || {
        let cache = cache.clone();
        async move {
            let status = cache.status().await.expect("status");
            status.broken_types.iter().any(|b| {
                b.entity_type == "Shot"
                    && b.error.contains("Shot.json")
                    && b.error.contains("line 2")
            })
        }
    })
    .await;
    let asset = first_ids(&writer, "Asset", 1).await[0];
    update(
        &writer,
        "Asset",
        asset,
        json!({"code": "followed meanwhile"}),
    )
    .await;
    wait_until("the other types follow events", || {
        let cache = cache.clone();
        async move { cached(&cache, "Asset", asset, "code").await == Some(json!("followed meanwhile")) }
    })
    .await;
    // The broken type is not dropped: it keeps its tables.
    let shot = first_ids(&writer, "Shot", 1).await[0];
    assert!(
        cached(&cache, "Shot", shot, "code").await.is_some(),
        "Shot is still cached"
    );

    // Fixed, the type goes on as before.
    std::fs::write(&shot_config, &good_config).expect("write");
    wait_until("the fixed config is taken up", || {
        let cache = cache.clone();
        async move {
            cache
                .status()
                .await
                .expect("status")
                .broken_types
                .is_empty()
        }
    })
    .await;
    update(&writer, "Shot", shot, json!({"code": "after the fix"})).await;
    wait_until("Shot follows events", || {
        let cache = cache.clone();
        async move { cached(&cache, "Shot", shot, "code").await == Some(json!("after the fix")) }
    })
    .await;
    let _ = stop.send(true);
    running.await.expect("join").expect("run");
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_entity_config_stops_its_type_alone_on_sqlite() {
    a_broken_entity_config_stops_its_type_alone(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_entity_config_stops_its_type_alone_on_postgresql() {
    a_broken_entity_config_stops_its_type_alone(Backend::Postgres).await;
}

/// A write that logs no event is repaired by a scan, even when `run` is
/// restarted more often than `scan_interval`.
async fn a_run_restarted_often_still_scans(backend: Backend) {
    let pg_schema = format!("restart_scan_test_{}", std::process::id());
    if let Backend::Postgres = backend {
        drop_postgres_schema(&pg_schema).await;
    }
    let site = generated_site_for(
        23,
        &[
            "cache:cache-key",
            "writer:writer-key",
            "quiet:quiet-key:no-events",
        ],
    )
    .await;
    let (url, _stop) = serve(site, ServerOptions::default()).await;
    let quiet = Client::new(&url, Auth::script("quiet", "quiet-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url, 2.0);
    let first = open_shared_cache(backend, dir.path(), &pg_schema).await;
    first.import_pending().await.expect("import");
    close(first).await;
    let shot = first_ids(&quiet, "Shot", 1).await[0];
    let mut written = false;
    let mut repaired = false;
    // Restarted every 0.8 s, for five scan intervals.
    for _ in 0..12 {
        let cache = open_shared_cache(backend, dir.path(), &pg_schema).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(cache.clone().run(stopped, Leadership::sole()));
        tokio::time::sleep(Duration::from_millis(800)).await;
        let _ = stop.send(true);
        running.await.expect("join").expect("run");
        if !written {
            update(
                &quiet,
                "Shot",
                shot,
                json!({"code": "written without an event"}),
            )
            .await;
            written = true;
        }
        repaired =
            cached(&cache, "Shot", shot, "code").await == Some(json!("written without an event"));
        close(cache).await;
        if repaired {
            break;
        }
    }
    assert!(repaired, "a scan repaired the write that logged no event");
    if let Backend::Postgres = backend {
        drop_postgres_schema(&pg_schema).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_restarted_often_still_scans_on_sqlite() {
    a_run_restarted_often_still_scans(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_restarted_often_still_scans_on_postgresql() {
    a_run_restarted_often_still_scans(Backend::Postgres).await;
}
