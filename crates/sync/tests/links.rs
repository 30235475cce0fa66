//! Links to retired records, kept while the site hides them, on SQLite and
//! on PostgreSQL. A site's read hides a link to a retired record but keeps
//! it, and shows it again when the record is revived (logging nothing for the
//! record holding it); so when the cache stores a copy read from the site
//! that no longer shows a link it holds, it must tell a link hidden (keep it)
//! from a link removed (drop it). The target's state is asked after the copy
//! was read: a target revived in between must not pass for a removed link.
//! And a record revived by a script that logs no events brings back the
//! links to it, which the cache learns of by its reconcile scan.

mod support;

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use sg_client::Client;
use sg_engine::{AnyStore, Store};
use sg_protocol::Auth;
use sg_sim::ServerOptions;
use sg_sync::Cache;
use support::{
    assert_same_as_site, close, generated_site, generated_site_for, open_cache, serve, Backend,
};

const FIELDS: [&str; 3] = ["content", "upstream_tasks", "downstream_tasks"];

fn write_config(dir: &Path, url: &str) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\n\
         database: cache.sqlite\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    std::fs::write(
        configs.join("Task.json"),
        json!({ "fields": FIELDS }).to_string(),
    )
    .expect("entity config");
}

/// The Task ids the cache holds in `holder`'s `downstream_tasks`, hidden or not.
async fn held_downstream(cache: &Arc<Cache<AnyStore>>, holder: i64) -> Vec<i64> {
    let engine = cache.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine
            .store()
            .with_reader(&mut |c| {
                let sql = format!(
                    "SELECT \"dst_id\" FROM \"Task__downstream_tasks\" WHERE \"src_id\" = {holder} ORDER BY \"pos\""
                );
                Ok(c.query(&sql, &[])?
                    .iter()
                    .filter_map(|r| r[0].as_i64())
                    .collect())
            })
            .expect("read the link table")
    })
    .await
    .expect("reader")
}

/// A copy of a Task as the cache reads it from the site now.
async fn copy_of(writer: &Client, id: i64) -> (String, Map<String, Value>) {
    let reply = writer
        .call(
            "read",
            Some(json!({"type": "Task", "return_fields": FIELDS,
                "filters": {"logical_operator": "and",
                    "conditions": [{"path": "id", "relation": "is", "values": [id]}]},
                "paging": {"entities_per_page": 1, "current_page": 1}})),
        )
        .await
        .expect("read");
    let mut record = reply["entities"][0]
        .as_object()
        .cloned()
        .unwrap_or_else(|| panic!("Task {id} is not active: {reply}"));
    record.retain(|k, _| k == "id" || FIELDS.contains(&k.as_str()));
    record.insert("__retired".into(), json!(false));
    ("Task".to_string(), record)
}

async fn call(writer: &Client, method: &str, params: Value) {
    writer
        .call(method, Some(params))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"));
}

/// `count` pairs of Tasks, each a Task and the one Task downstream of it,
/// no Task in two pairs.
async fn chains(writer: &Client, count: usize) -> Vec<(i64, i64)> {
    let tasks = writer
        .read_all(
            json!({"type": "Task", "return_fields": ["downstream_tasks"], "filters": [],
                   "sorts": [{"field_name": "id", "direction": "asc"}]}),
            500,
        )
        .await
        .expect("tasks");
    let mut chains: Vec<(i64, i64)> = Vec::new();
    for (holder, target) in tasks.iter().filter_map(|t| {
        let down = t["downstream_tasks"].as_array()?;
        (down.len() == 1).then(|| Some((t["id"].as_i64()?, down[0]["id"].as_i64()?)))?
    }) {
        let used = |id: i64| chains.iter().any(|(h, t)| *h == id || *t == id);
        if chains.len() < count && !used(holder) && !used(target) {
            chains.push((holder, target));
        }
    }
    assert_eq!(chains.len(), count, "the small site has chains of Tasks");
    chains
}

async fn hidden_links_are_told_from_removed_ones(backend: Backend) {
    let (url, _stop) = serve(generated_site(5).await, ServerOptions::default()).await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let chains = chains(&writer, 3).await;

    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let cache = open_cache(backend, dir.path()).await;
    cache.import_pending().await.expect("import");

    // 1. The target is retired when its holder's copy is stored: kept.
    let (holder, target) = chains[0];
    call(&writer, "delete", json!({"type": "Task", "id": target})).await;
    let copy = copy_of(&writer, holder).await;
    assert_eq!(copy.1["downstream_tasks"], json!([]), "the site hides it");
    cache.store_site_copies(vec![copy]).await.expect("store");
    assert_eq!(held_downstream(&cache, holder).await, vec![target]);

    // 2. The target is revived between the copy's read and its storing: the
    // copy is stale, and the link is kept (it was never removed).
    let (holder, target) = chains[1];
    call(&writer, "delete", json!({"type": "Task", "id": target})).await;
    let stale = copy_of(&writer, holder).await;
    assert_eq!(stale.1["downstream_tasks"], json!([]), "the site hides it");
    call(&writer, "revive", json!({"type": "Task", "id": target})).await;
    cache.store_site_copies(vec![stale]).await.expect("store");
    assert_eq!(held_downstream(&cache, holder).await, vec![target]);

    // 3. The link is removed and its target stays active: dropped.
    let (holder, _) = chains[2];
    call(
        &writer,
        "update",
        json!({"type": "Task", "id": holder, "fields": [{"field_name": "downstream_tasks", "value": []}]}),
    )
    .await;
    let copy = copy_of(&writer, holder).await;
    cache.store_site_copies(vec![copy]).await.expect("store");
    assert_eq!(held_downstream(&cache, holder).await, Vec::<i64>::new());

    // And with the event log applied, the cache is the site.
    while cache.poll_events().await.expect("poll") >= 500 {}
    assert_same_as_site(&cache, "at the end").await;
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hidden_links_are_told_from_removed_ones_on_sqlite() {
    hidden_links_are_told_from_removed_ones(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hidden_links_are_told_from_removed_ones_on_postgresql() {
    hidden_links_are_told_from_removed_ones(Backend::Postgres).await;
}

/// A Task retired while the cache imports is imported without the links to
/// it (the site hides them); revived by a script that logs no events, the
/// scan finds it active and reads again the records linking to it.
async fn a_revival_without_events_brings_back_the_links_to_it(backend: Backend) {
    let scripts = [
        "cache:cache-key",
        "writer:writer-key",
        "quiet:quiet-key:no-events",
    ];
    let (url, _stop) = serve(
        generated_site_for(6, &scripts).await,
        ServerOptions::default(),
    )
    .await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let quiet = Client::new(&url, Auth::script("quiet", "quiet-key")).expect("client");
    let (holder, target) = chains(&writer, 1).await[0];
    call(&writer, "delete", json!({"type": "Task", "id": target})).await;

    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let cache = open_cache(backend, dir.path()).await;
    cache.import_pending().await.expect("import");
    assert_eq!(held_downstream(&cache, holder).await, Vec::<i64>::new());

    call(&quiet, "revive", json!({"type": "Task", "id": target})).await;
    while cache.poll_events().await.expect("poll") >= 500 {}
    cache.reconcile().await.expect("scan");
    assert_eq!(held_downstream(&cache, holder).await, vec![target]);
    assert_same_as_site(&cache, "at the end").await;
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revival_without_events_brings_back_the_links_to_it_on_sqlite() {
    a_revival_without_events_brings_back_the_links_to_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revival_without_events_brings_back_the_links_to_it_on_postgresql() {
    a_revival_without_events_brings_back_the_links_to_it(Backend::Postgres).await;
}
