//! A process that only serves (`run --serve-only`, or a PostgreSQL follower)
//! shares the database of the process that syncs. When a schema event makes
//! the syncing process read the site's schema again, the serving one takes
//! up that schema at its next `fetch_interval` without asking the site, so
//! its schema methods and its checks of requests agree with the site's.
//! On SQLite and on PostgreSQL.

mod support;

use std::path::Path;

use serde_json::json;

use sg_client::Client;
use sg_engine::AnyStore;
use sg_protocol::Auth;
use sg_sim::ServerOptions;
use sg_sync::{Cache, Leadership};
use support::{
    close, drop_postgres_schema, generated_site, open_shared_cache, serve, wait_until, Backend,
};

fn write_config(dir: &Path, url: &str) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\ndatabase: cache.sqlite\n\
         monitor:\n  fetch_interval: 0.1\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    std::fs::write(
        configs.join("Shot.json"),
        json!({ "fields": ["code", "description"] }).to_string(),
    )
    .expect("entity config");
}

/// The display name the cache's copy of the schema gives a Shot field.
fn shot_field_name(cache: &Cache<AnyStore>, field: &str) -> Option<String> {
    cache
        .engine
        .catalog()
        .schema
        .entity("Shot")
        .and_then(|shot| shot.fields.get(field))
        .map(|f| f.display_name().to_string())
}

async fn follower_takes_up_the_schema_the_syncing_process_read(backend: Backend) {
    let pg_schema = format!("follower_test_{}", std::process::id());
    if let Backend::Postgres = backend {
        drop_postgres_schema(&pg_schema).await;
    }
    let (url, _stop_site) = serve(generated_site(7).await, ServerOptions::default()).await;
    let writer = Client::new(&url, Auth::script("writer", "writer-key")).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &url);
    let leader = open_shared_cache(backend, dir.path(), &pg_schema).await;
    leader.import_pending().await.expect("import");
    let follower = open_shared_cache(backend, dir.path(), &pg_schema).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let following = tokio::spawn(follower.clone().run(stopped, Leadership::never()));

    let created = writer
        .call(
            "schema_field_create",
            Some(json!({"type": "Shot", "data_type": "text",
                "properties": [{"property_name": "name", "value": "Lens Notes"}]})),
        )
        .await
        .expect("schema_field_create");
    let field = created.as_str().expect("the new field's name").to_string();
    let renamed = writer
        .call(
            "schema_field_update",
            Some(json!({"type": "Shot", "field_name": "description",
                "properties": [{"property_name": "name", "value": "Shot Brief"}]})),
        )
        .await;
    renamed.expect("schema_field_update");
    assert_eq!(shot_field_name(&follower, &field), None);

    // The syncing process follows the log: the schema events make it read
    // the schema again and keep it in the database.
    while leader.poll_events().await.expect("poll") >= 500 {}
    assert_eq!(
        shot_field_name(&leader, &field).as_deref(),
        Some("Lens Notes")
    );
    wait_until("the follower takes up the new schema", || {
        let follower = follower.clone();
        let field = field.clone();
        async move {
            shot_field_name(&follower, &field).as_deref() == Some("Lens Notes")
                && shot_field_name(&follower, "description").as_deref() == Some("Shot Brief")
        }
    })
    .await;
    // It still serves its cached fields.
    let served = follower.engine.catalog().layout.table("Shot").map(|t| {
        let mut fields: Vec<String> = t.fields.keys().cloned().collect();
        fields.sort();
        fields
    });
    assert_eq!(
        served,
        Some(vec!["code".to_string(), "description".into(), "id".into()])
    );

    let _ = stop.send(true);
    following.await.expect("join").expect("follower run");
    close(follower).await;
    close(leader).await;
    if let Backend::Postgres = backend {
        drop_postgres_schema(&pg_schema).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_takes_up_the_schema_the_syncing_process_read_on_sqlite() {
    follower_takes_up_the_schema_the_syncing_process_read(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_takes_up_the_schema_the_syncing_process_read_on_postgresql() {
    follower_takes_up_the_schema_the_syncing_process_read(Backend::Postgres).await;
}
