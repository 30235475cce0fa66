//! Event rows arriving out of order, from a simulated site that commits
//! some transactions' rows late, with no reconcile scan to mend anything:
//! no older value may overwrite a newer one. A late Retirement row must not
//! retire a record revived after it; a record read whole in a poll must not
//! be overwritten by the older rows of that poll, audit stamps included; and
//! the stamps must be the site's, so `validate` is clean once the log is
//! followed to its end.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use sg_client::Client;
use sg_engine::AnyStore;
use sg_protocol::Auth;
use sg_sim::{EventFaults, ServerOptions};
use sg_sync::Cache;
use support::{close, generated_site_with, open_cache, serve, Backend};

const LATE: Duration = Duration::from_millis(1500);

fn write_config(dir: &Path, url: &str, entity_type: &str, fields: &[&str]) {
    // The scan is as good as off: nothing but the event log keeps the cache in step.
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\n\
         database: cache.sqlite\nmonitor:\n  fetch_interval: 0.2\n  missing_event_timeout: 30\n\
         scan_interval: 1000000\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    std::fs::write(
        configs.join(format!("{entity_type}.json")),
        json!({ "fields": fields }).to_string(),
    )
    .expect("entity config");
}

/// A site whose rows of one transaction in five commit up to [`LATE`]
/// late, and a cache of `entity_type` imported from it.
async fn site_and_cache(
    dir: &Path,
    entity_type: &str,
    fields: &[&str],
) -> (
    Client,
    Arc<Cache<AnyStore>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let faults = EventFaults {
        late_commit: LATE,
        lost_rate: 0.0,
        noise_every: 0,
    };
    let site = generated_site_with(21, &["cache:cache-key", "writer:writer-key"], faults).await;
    let (url, stop) = serve(site, ServerOptions::default()).await;
    write_config(dir, &url, entity_type, fields);
    let cache = open_cache(Backend::Sqlite, dir).await;
    cache.import_pending().await.expect("import");
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    (writer, cache, stop)
}

async fn ids(writer: &Client, entity_type: &str, n: usize) -> Vec<i64> {
    let records = writer
        .read_all(
            json!({"type": entity_type, "return_fields": ["id"],
                   "sorts": [{"field_name": "id", "direction": "asc"}]}),
            500,
        )
        .await
        .expect("read ids");
    let ids: Vec<i64> = records
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .take(n)
        .collect();
    assert_eq!(ids.len(), n, "the generated site has {n} {entity_type}s");
    ids
}

async fn call(writer: &Client, method: &str, params: Value) {
    writer
        .call(method, Some(params))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"));
}

/// Polls every 200 ms until the late rows have all committed and been read.
async fn follow_to_the_end(cache: &Cache<AnyStore>) {
    let until = tokio::time::Instant::now() + LATE + Duration::from_millis(800);
    while tokio::time::Instant::now() < until {
        cache.poll_events().await.expect("poll");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while cache.poll_events().await.expect("poll") >= 500 {}
}

/// Prints the first differences and fails if there are any.
async fn assert_valid(cache: &Cache<AnyStore>, entity_type: &str, what: &str) {
    let differences = cache
        .validate(&[entity_type.to_string()], None)
        .await
        .expect("validate");
    eprint!("{}", sg_sync::validate::report(&differences, 10));
    assert!(
        differences.is_empty(),
        "{what}: {} differences",
        differences.len()
    );
}

/// 50 Versions deleted and revived at once, each in calls of its own (so
/// the Retirement and the Revival commit late independently): the cache,
/// polling all the while, ends with all 50 active. A Retirement row that
/// becomes visible after the Revival row of the same record is older than
/// the copy read for the Revival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_retirement_does_not_beat_a_revival() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fields = [
        "code",
        "sg_status_list",
        "description",
        "updated_at",
        "updated_by",
    ];
    let (writer, cache, _stop) = site_and_cache(dir.path(), "Version", &fields).await;
    let versions = ids(&writer, "Version", 50).await;
    for (i, id) in versions.iter().enumerate() {
        call(&writer, "delete", json!({"type": "Version", "id": id})).await;
        call(&writer, "revive", json!({"type": "Version", "id": id})).await;
        if i % 5 == 4 {
            cache.poll_events().await.expect("poll");
        }
    }
    follow_to_the_end(&cache).await;
    let engine = cache.engine.clone();
    let retired = tokio::task::spawn_blocking(move || {
        let params = sg_protocol::ReadParams::from_json(
            json!({"type": "Version", "return_fields": ["id"], "return_only": "retired"})
                .as_object()
                .expect("object"),
        )
        .expect("params");
        engine.read(&params).expect("read")["entities"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    })
    .await
    .expect("reader");
    assert_eq!(retired, 0, "Versions left retired in the cache");
    assert_valid(&cache, "Version", "after 50 deletes and revivals").await;
    close(cache).await;
}

/// 20 Tasks changed, then a second later deleted and revived, all seen by
/// one poll: the copy read for each Revival is newer than the poll's
/// Change rows, whose value and time must not be laid over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_then_delete_and_revive_in_one_poll_keeps_the_newer_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fields = ["content", "sg_status_list", "updated_at", "updated_by"];
    let (writer, cache, _stop) = site_and_cache(dir.path(), "Task", &fields).await;
    // Nothing pending before the writes: the writes' rows come in one poll.
    tokio::time::sleep(LATE).await;
    while cache.poll_events().await.expect("poll") >= 500 {}
    let tasks = ids(&writer, "Task", 20).await;
    for id in &tasks {
        call(
            &writer,
            "update",
            json!({"type": "Task", "id": id, "fields": [{"field_name": "content", "value": format!("changed {id}")}]}),
        )
        .await;
    }
    // The stamps of what follows fall in a later second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for id in &tasks {
        call(&writer, "delete", json!({"type": "Task", "id": id})).await;
        call(&writer, "revive", json!({"type": "Task", "id": id})).await;
    }
    tokio::time::sleep(LATE + Duration::from_millis(300)).await;
    let rows = cache.poll_events().await.expect("poll");
    assert!(
        (60..500).contains(&rows),
        "one poll holds every row of the writes ({rows})"
    );
    assert_valid(
        &cache,
        "Task",
        "after one poll of changes, deletes and revivals",
    )
    .await;
    close(cache).await;
}
