//! Names of link targets the cache does not hold, on SQLite and on
//! PostgreSQL: the cache keeps a names-only table for every type its link
//! fields can point at but its config leaves out, imports it and keeps it in
//! step with the event log, so the links it serves carry the site's names
//! and hide retired targets as the site does.

mod support;

use std::path::Path;

use serde_json::{json, Value};

use sg_client::Client;
use sg_protocol::{Auth, ReadParams};
use sg_sim::ServerOptions;
use support::{close, generated_site, open_cache, serve, Backend};

/// The fields the cache keeps: links to Groups, HumanUsers, PublishedFiles
/// and ApiUsers, none of which it caches.
const TASK_FIELDS: [&str; 3] = ["content", "task_assignees", "created_by"];
const VERSION_FIELDS: [&str; 3] = ["code", "published_files", "created_by"];

fn write_config(dir: &Path, url: &str) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\n\
         database: cache.sqlite\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    for (t, fields) in [("Task", &TASK_FIELDS), ("Version", &VERSION_FIELDS)] {
        std::fs::write(
            configs.join(format!("{t}.json")),
            json!({ "fields": fields }).to_string(),
        )
        .expect("entity config");
    }
}

fn read_params(entity_type: &str, fields: &[&str], conditions: Value) -> Value {
    json!({"type": entity_type, "return_fields": fields,
           "filters": {"logical_operator": "and", "conditions": conditions},
           "sorts": [{"field_name": "id", "direction": "asc"}],
           "paging": {"entities_per_page": 500, "current_page": 1}})
}

/// Every page of a read, from the site.
async fn site_read(site: &Client, params: &Value) -> Vec<Value> {
    site.read_all(params.clone(), 500).await.expect("site read")
}

/// Every page of a read, from the cache's engine.
async fn cache_read(cache: &sg_sync::Cache<sg_engine::AnyStore>, params: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let mut params = params.clone();
        params["paging"]["current_page"] = json!(page);
        let engine = cache.engine.clone();
        let found = tokio::task::spawn_blocking(move || {
            let p =
                ReadParams::from_json(params.as_object().expect("an object")).expect("read params");
            engine.read(&p).expect("cache read")
        })
        .await
        .expect("reader");
        let entities = found["entities"].as_array().cloned().unwrap_or_default();
        let full = entities.len() == 500;
        out.extend(entities);
        if !full {
            return out;
        }
        page += 1;
    }
}

/// The cache's answers equal the site's, link names included.
async fn assert_reads_match(
    site: &Client,
    cache: &sg_sync::Cache<sg_engine::AnyStore>,
    what: &str,
) {
    let reads = [
        read_params("Task", &TASK_FIELDS, json!([])),
        read_params("Version", &VERSION_FIELDS, json!([])),
        read_params(
            "Task",
            &["id"],
            json!([{"path": "task_assignees", "relation": "name_contains", "values": ["a"]}]),
        ),
        read_params(
            "Version",
            &["id"],
            json!([{"path": "published_files", "relation": "name_contains", "values": ["e"]}]),
        ),
        read_params(
            "Version",
            &["id"],
            json!([{"path": "created_by", "relation": "name_starts_with", "values": ["c"]}]),
        ),
    ];
    for params in &reads {
        let expected = site_read(site, params).await;
        let got = cache_read(cache, params).await;
        assert!(
            !expected.is_empty(),
            "{what}: the site has records for {params}"
        );
        assert_eq!(got.len(), expected.len(), "{what}: how many for {params}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "{what}: a record of {params}");
        }
    }
}

async fn call(writer: &Client, method: &str, params: Value) -> Value {
    writer
        .call(method, Some(params))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// The first active record of `entity_type` that `holder_field` of some
/// record of `holder_type` links to.
async fn linked(writer: &Client, holder_type: &str, holder_field: &str, target: &str) -> i64 {
    let holders = writer
        .read_all(
            json!({"type": holder_type, "return_fields": [holder_field], "filters": [],
                   "sorts": [{"field_name": "id", "direction": "asc"}]}),
            500,
        )
        .await
        .expect("holders");
    holders
        .iter()
        .flat_map(|h| h[holder_field].as_array().cloned().unwrap_or_default())
        .find(|l| l["type"] == target)
        .and_then(|l| l["id"].as_i64())
        .unwrap_or_else(|| {
            panic!("the small site links {holder_type}.{holder_field} to a {target}")
        })
}

async fn names_of_uncached_targets_follow_the_site(backend: Backend) {
    let (url, _stop) = serve(generated_site(11).await, ServerOptions::default()).await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let cache = open_cache(backend, dir.path()).await;
    cache.import_pending().await.expect("import");

    let catalog = cache.engine.catalog();
    for t in ["Group", "HumanUser", "PublishedFile", "ApiUser"] {
        let table = catalog.layout.table(t);
        assert!(
            table.is_some_and(|t| t.names_only && t.display_field.is_some()),
            "{t} is held names-only"
        );
        assert!(catalog.layout.served(t).is_none(), "{t} is not served");
    }
    drop(catalog);
    assert_reads_match(&writer, &cache, "after the import").await;

    // A Group renamed, a PublishedFile retired, another retired and revived,
    // a new Group assigned to a Task: each reaches the names-only tables
    // through the event log alone.
    let group = linked(&writer, "Task", "task_assignees", "Group").await;
    call(
        &writer,
        "update",
        json!({"type": "Group", "id": group, "fields": [{"field_name": "code", "value": "Renamed Crew"}]}),
    )
    .await;
    let file = linked(&writer, "Version", "published_files", "PublishedFile").await;
    call(
        &writer,
        "delete",
        json!({"type": "PublishedFile", "id": file}),
    )
    .await;
    let created = call(
        &writer,
        "create",
        json!({"type": "Group", "fields": [{"field_name": "code", "value": "New Crew"}],
               "return_fields": ["id"]}),
    )
    .await;
    let new_group = created["id"].as_i64().expect("the new Group's id");
    let tasks = writer
        .read_all(read_params("Task", &["id"], json!([])), 500)
        .await
        .expect("tasks");
    let task = tasks[0]["id"].as_i64().expect("a Task");
    call(
        &writer,
        "update",
        json!({"type": "Task", "id": task, "fields": [{"field_name": "task_assignees",
               "value": [{"type": "Group", "id": new_group}], "multi_entity_update_mode": "add"}]}),
    )
    .await;
    while cache.poll_events().await.expect("poll") >= 500 {}
    assert_reads_match(&writer, &cache, "after the changes").await;

    call(
        &writer,
        "revive",
        json!({"type": "PublishedFile", "id": file}),
    )
    .await;
    while cache.poll_events().await.expect("poll") >= 500 {}
    assert_reads_match(&writer, &cache, "after the revival").await;
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_of_uncached_targets_follow_the_site_on_sqlite() {
    names_of_uncached_targets_follow_the_site(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_of_uncached_targets_follow_the_site_on_postgresql() {
    names_of_uncached_targets_follow_the_site(Backend::Postgres).await;
}
