//! A first import by id range, on SQLite and on PostgreSQL: with pages of 7
//! records, ids in uneven runs (most of the first half of the Tasks deleted,
//! so that stretch is sparse and the rest denser than the average the ranges
//! are cut by, and the retired phase takes many pages) and Tasks
//! created on the site while the import runs, the cache ends up with exactly
//! the site's records, active and retired. And the first reconcile scan
//! after an import reads only what changed since it began, even where the
//! site's event log is empty and gives no time to start from.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use sg_client::Client;
use sg_protocol::Auth;
use sg_sim::ServerOptions;
use support::{
    assert_same_as_site, close, generated_site, generated_site_for, open_cache, serve, Backend,
};

fn write_config(dir: &Path, url: &str) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\ndatabase: cache.sqlite\n\
         import:\n  batch_size: 7\n  processes: 3\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    for (entity_type, fields) in [
        ("Project", vec!["name"]),
        ("HumanUser", vec!["name", "login"]),
        ("Shot", vec!["code", "sg_status_list", "project", "assets"]),
        (
            "Task",
            vec!["content", "sg_status_list", "entity", "task_assignees"],
        ),
    ] {
        std::fs::write(
            configs.join(format!("{entity_type}.json")),
            json!({ "fields": fields }).to_string(),
        )
        .expect("entity config");
    }
}

async fn ranged_import_holds_exactly_the_site(backend: Backend) {
    let options = ServerOptions {
        latency: Some((Duration::from_millis(1), Duration::from_millis(4))),
        ..ServerOptions::default()
    };
    let (url, _stop) = serve(generated_site(9).await, options).await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let tasks = writer
        .read_all(
            json!({"type": "Task", "return_fields": ["id"], "filters": [],
                   "sorts": [{"field_name": "id", "direction": "asc"}]}),
            500,
        )
        .await
        .expect("tasks");
    let ids: Vec<i64> = tasks.iter().filter_map(|t| t["id"].as_i64()).collect();
    assert!(ids.len() > 100, "the small site has Tasks to spare");
    // Most of the first half of the ids deleted: sparse there, so the ranges
    // cut by the average density take more than a page in the second half.
    for id in ids[..ids.len() / 2].iter().filter(|id| *id % 10 != 0) {
        writer
            .call("delete", Some(json!({"type": "Task", "id": id})))
            .await
            .expect("delete");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let cache = open_cache(backend, dir.path()).await;
    let creating = tokio::spawn(async move {
        for i in 0..25 {
            writer
                .call(
                    "create",
                    Some(json!({"type": "Task", "data": {"content": format!("made during the import {i}")}})),
                )
                .await
                .expect("create");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    cache.import_pending().await.expect("import");
    creating.await.expect("writer");
    // What the import missed of the creations comes with the event log.
    while cache.poll_events().await.expect("poll") >= 500 {}
    assert_same_as_site(&cache, "after the import").await;
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranged_import_holds_exactly_the_site_on_sqlite() {
    ranged_import_holds_exactly_the_site(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranged_import_holds_exactly_the_site_on_postgresql() {
    ranged_import_holds_exactly_the_site(Backend::Postgres).await;
}

/// A generated site logs no events for its records: the newest `updated_at`
/// of the imported types stands in for the event log's time, so the first
/// scan reads the Shot a no-events script changed after the import, and
/// hardly anything else (before, it read every cached record again).
async fn the_first_scan_reads_only_what_changed_after_the_import(backend: Backend) {
    let scripts = ["cache:cache-key", "quiet:quiet-key:no-events"];
    let (url, _stop) = serve(
        generated_site_for(8, &scripts).await,
        ServerOptions::default(),
    )
    .await;
    let quiet = Client::new(&url, Auth::script("quiet", "quiet-key")).expect("client");
    let newest_event = quiet
        .call(
            "read",
            Some(
                json!({"type": "EventLogEntry", "return_fields": ["id"], "filters": [],
                "paging": {"entities_per_page": 1, "current_page": 1}}),
            ),
        )
        .await
        .expect("read the event log");
    assert_eq!(
        newest_event["entities"].as_array().map(Vec::len),
        Some(0),
        "the generated site's event log is empty"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let cache = open_cache(backend, dir.path()).await;
    cache.import_pending().await.expect("import");
    let imported: u64 = cache
        .status()
        .await
        .expect("status")
        .types
        .iter()
        .map(|t| t.records)
        .sum();
    assert!(imported > 100, "imported {imported} records");

    let shots = quiet
        .call(
            "read",
            Some(
                json!({"type": "Shot", "return_fields": ["code"], "filters": [],
                "paging": {"entities_per_page": 1, "current_page": 1}}),
            ),
        )
        .await
        .expect("read a Shot");
    let shot = shots["entities"][0]["id"].as_i64().expect("a Shot");
    quiet
        .call(
            "update",
            Some(json!({"type": "Shot", "id": shot,
                "fields": [{"field_name": "code", "value": "changed quietly"}]})),
        )
        .await
        .expect("update");

    let read = cache.reconcile().await.expect("scan");
    assert!(
        (1..=10).contains(&read),
        "the first scan read {read} of {imported} records"
    );
    assert_same_as_site(&cache, "after the scan").await;
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_scan_reads_only_what_changed_after_the_import_on_sqlite() {
    the_first_scan_reads_only_what_changed_after_the_import(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_scan_reads_only_what_changed_after_the_import_on_postgresql() {
    the_first_scan_reads_only_what_changed_after_the_import(Backend::Postgres).await;
}
