//! tag_list fields reach the cache as tag names, on SQLite and on
//! PostgreSQL: imported, then changed on the site (set, add, remove) and
//! followed through the event log; and a store an earlier version made,
//! which held them as link tables, imports them again.

mod support;

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use sg_client::Client;
use sg_engine::{AnyStore, Store};
use sg_protocol::{Auth, ReadParams};
use sg_sim::ServerOptions;
use sg_sync::{Cache, Leadership};
use support::{
    assert_same_as_site, close, drop_postgres_schema, generated_site, open_shared_cache,
    open_shared_store, serve, wait_until, Backend,
};

fn write_config(dir: &Path, url: &str) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\n\
         database: cache.sqlite\nmonitor:\n  fetch_interval: 0.2\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    for (t, fields) in [
        ("Shot", json!(["code", "tag_list"])),
        ("Tag", json!(["name"])),
    ] {
        std::fs::write(
            configs.join(format!("{t}.json")),
            json!({ "fields": fields }).to_string(),
        )
        .expect("entity config");
    }
}

fn shots_where(condition: Value) -> Value {
    json!({"type": "Shot", "return_fields": ["tag_list"],
        "filters": {"logical_operator": "and", "conditions": [condition]},
        "sorts": [{"field_name": "id", "direction": "asc"}]})
}

/// The Shots the site returns for a read, as `(id, tag_list)`.
async fn on_site(site: &Client, request: Value) -> Vec<(i64, Value)> {
    let found = site.read_all(request, 500).await.expect("site read");
    found
        .iter()
        .map(|r| (r["id"].as_i64().unwrap_or(-1), r["tag_list"].clone()))
        .collect()
}

/// The Shots the cache's engine returns for the same read.
async fn in_cache(cache: &Arc<Cache<AnyStore>>, request: Value) -> Vec<(i64, Value)> {
    let engine = cache.engine.clone();
    tokio::task::spawn_blocking(move || {
        let params = ReadParams::from_json(request.as_object().expect("object")).expect("params");
        let found = engine.read(&params).expect("cache read");
        found["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (r["id"].as_i64().unwrap_or(-1), r["tag_list"].clone()))
            .collect()
    })
    .await
    .expect("reader")
}

async fn update(site: &Client, id: i64, value: Value, mode: &str) {
    site.call(
        "update",
        Some(json!({"type": "Shot", "id": id, "fields": [
            {"field_name": "tag_list", "value": value, "multi_entity_update_mode": mode}]})),
    )
    .await
    .expect("update");
}

/// The filters the cache answers give the site's answers.
async fn assert_filters_agree(site: &Client, cache: &Arc<Cache<AnyStore>>, tag_id: i64) {
    for condition in [
        json!({"path": "tag_list", "relation": "is", "values": ["rain"]}),
        json!({"path": "tag_list", "relation": "is_not", "values": ["hero"]}),
        json!({"path": "tag_list", "relation": "is", "values": [null]}),
        json!({"path": "tag_list", "relation": "name_contains", "values": ["ER"]}),
        json!({"path": "tag_list", "relation": "name_not_contains", "values": ["o"]}),
        json!({"path": "tag_list", "relation": "name_id", "values": [tag_id]}),
    ] {
        let request = shots_where(condition.clone());
        let expected = on_site(site, request.clone()).await;
        assert!(!expected.is_empty(), "{condition} matches something");
        assert_eq!(in_cache(cache, request).await, expected, "{condition}");
    }
}

async fn names_follow_the_site(backend: Backend) {
    let schema = format!("tags_follow_{}", std::process::id());
    if let Backend::Postgres = backend {
        drop_postgres_schema(&schema).await;
    }
    let (url, _stop) = serve(generated_site(7).await, ServerOptions::default()).await;
    let site = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let cache = open_shared_cache(backend, dir.path(), &schema).await;
    cache.import_pending().await.expect("import");
    assert_same_as_site(&cache, "after the import").await;

    let tagged = on_site(
        &site,
        shots_where(json!({"path": "tag_list", "relation": "is_not", "values": [null]})),
    )
    .await;
    let untagged = on_site(
        &site,
        shots_where(json!({"path": "tag_list", "relation": "is", "values": [null]})),
    )
    .await;
    let (shot, other) = (tagged[0].0, untagged[0].0);
    let all = shots_where(json!({"path": "id", "relation": "in", "values": [shot, other]}));
    assert_eq!(
        in_cache(&cache, all.clone()).await,
        on_site(&site, all.clone()).await
    );

    update(&site, shot, json!(["night shoot", "hero"]), "set").await;
    update(&site, shot, json!(["rain", "HERO"]), "add").await;
    update(&site, other, json!(["rain", "Hero"]), "set").await;
    update(&site, shot, json!(["hero"]), "remove").await;
    while cache.poll_events().await.expect("poll") >= 500 {}
    let now = on_site(&site, all.clone()).await;
    let mut want = vec![
        (shot, json!(["night shoot", "rain"])),
        (other, json!(["rain", "hero"])),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(now, want);
    assert_eq!(
        in_cache(&cache, all).await,
        now,
        "the cache followed the log"
    );
    let hero = site
        .read_all(
            json!({"type": "Tag", "return_fields": ["name"], "filters": {"logical_operator": "and",
                "conditions": [{"path": "name", "relation": "is", "values": ["hero"]}]}}),
            10,
        )
        .await
        .expect("Tags")[0]["id"]
        .as_i64()
        .expect("Tag id");
    assert_filters_agree(&site, &cache, hero).await;
    assert_same_as_site(&cache, "after the changes").await;
    close(cache).await;
    if let Backend::Postgres = backend {
        drop_postgres_schema(&schema).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_follow_the_site_on_sqlite() {
    names_follow_the_site(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_follow_the_site_on_postgresql() {
    names_follow_the_site(Backend::Postgres).await;
}

/// Puts Shot.tag_list back as an earlier version stored it: a link table of
/// Tag records, and no column.
async fn store_tags_as_links(backend: Backend, dir: &Path, schema: &str) {
    let store = open_shared_store(backend, dir, schema).await;
    tokio::task::spawn_blocking(move || {
        store
            .with_transaction(&mut |c| {
                c.execute_batch("ALTER TABLE \"Shot\" DROP COLUMN \"tag_list\"")?;
                c.execute_batch(
                    "CREATE TABLE \"Shot__tag_list\" (\"src_id\" BIGINT NOT NULL, \"pos\" BIGINT NOT NULL, \
                     \"dst_type\" TEXT NOT NULL, \"dst_id\" BIGINT NOT NULL, PRIMARY KEY (\"src_id\", \"pos\"))",
                )?;
                c.execute_batch(
                    "INSERT INTO \"Shot__tag_list\" (\"src_id\", \"pos\", \"dst_type\", \"dst_id\") \
                     SELECT \"id\", 0, 'Tag', 1 FROM \"Shot\"",
                )
            })
            .expect("old form");
        drop(store);
    })
    .await
    .expect("join");
}

/// A store whose tag_list is a link table does not serve it (reads naming
/// it go to the site), imports the type again, and then serves the names.
async fn an_old_store_imports_tag_lists_again(backend: Backend) {
    let schema = format!("tags_upgrade_{}", std::process::id());
    if let Backend::Postgres = backend {
        drop_postgres_schema(&schema).await;
    }
    let (url, _stop) = serve(generated_site(8).await, ServerOptions::default()).await;
    let site = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let cache = open_shared_cache(backend, dir.path(), &schema).await;
    cache.import_pending().await.expect("import");
    close(cache).await;
    store_tags_as_links(backend, dir.path(), &schema).await;

    let cache = open_shared_cache(backend, dir.path(), &schema).await;
    let serves_tags = |cache: &Arc<Cache<AnyStore>>| {
        cache
            .engine
            .catalog()
            .layout
            .table("Shot")
            .is_some_and(|t| t.field("tag_list").is_some())
    };
    assert!(!serves_tags(&cache), "no tag_list is served from links");
    let tagged = shots_where(json!({"path": "tag_list", "relation": "is_not", "values": [null]}));
    let expected = on_site(&site, tagged.clone()).await;
    assert!(!expected.is_empty());

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(cache.clone().run(stopped, Leadership::sole()));
    wait_until("the type is imported again", || {
        let cache = cache.clone();
        async move { serves_tags(&cache) }
    })
    .await;
    let _ = stop.send(true);
    run.await.expect("join").expect("run");
    assert_eq!(in_cache(&cache, tagged).await, expected);
    assert_same_as_site(&cache, "after the new import").await;
    close(cache).await;
    if let Backend::Postgres = backend {
        drop_postgres_schema(&schema).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_store_imports_tag_lists_again_on_sqlite() {
    an_old_store_imports_tag_lists_again(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_store_imports_tag_lists_again_on_postgresql() {
    an_old_store_imports_tag_lists_again(Backend::Postgres).await;
}
