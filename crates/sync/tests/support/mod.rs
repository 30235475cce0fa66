//! Shared by the sync's integration tests: a simulated site served on a free
//! port, a generated production behind it, and the cache's store on either
//! backend.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sg_engine::{AnyStore, Engine, PostgresStore, SqliteStore, Store};
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};
use sg_sync::{Cache, CacheConfig, LogProgress};

/// Which store a test runs on.
#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    std::env::var("SHOTGUN_CACHE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// Logins for these scripts (`name:key`, as `shotgun-cache sim --script` takes them).
pub fn logins(scripts: &[&str]) -> Logins {
    Logins {
        allowed: scripts
            .iter()
            .map(|s| Credential::parse_script(s).expect("script"))
            .collect(),
    }
}

/// A site with the built-in schema and a small production generated from
/// `seed`, open to the scripts `cache` and `writer`.
pub async fn generated_site(seed: u64) -> Arc<Site> {
    generated_site_for(seed, &["cache:cache-key", "writer:writer-key"]).await
}

/// [`generated_site`] open to these scripts (`name:key[:no-events]`).
pub async fn generated_site_for(seed: u64, scripts: &[&str]) -> Arc<Site> {
    generated_site_with(seed, scripts, EventFaults::default()).await
}

/// [`generated_site_for`] whose event log has these faults.
pub async fn generated_site_with(seed: u64, scripts: &[&str], faults: EventFaults) -> Arc<Site> {
    let scripts: Vec<String> = scripts.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let engine = Engine::new(
            SqliteStore::open_temporary().expect("db"),
            sg_sim::builtin::schema(),
        )
        .expect("engine");
        sg_sim::generate::generate(&engine, sg_sim::generate::Size::Small, seed, &mut |_, _| {})
            .expect("generate");
        let scripts: Vec<&str> = scripts.iter().map(String::as_str).collect();
        let logins = logins(&scripts);
        Arc::new(Site::new(engine, logins, faults).expect("site"))
    })
    .await
    .expect("site")
}

/// Serves `site` on a free port until the returned sender is dropped.
pub async fn serve(
    site: Arc<Site>,
    options: ServerOptions,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sg_sim::serve(site, listener, options, async {
        let _ = stopped.await;
    }));
    (url, stop)
}

/// A cache store in `dir` (SQLite) or in a schema of its own (PostgreSQL,
/// dropped with the store). Opened off the async threads: the PostgreSQL client blocks.
pub async fn open_store(backend: Backend, dir: &Path) -> AnyStore {
    let path = dir.join("cache.sqlite");
    tokio::task::spawn_blocking(move || match backend {
        Backend::Sqlite => AnyStore::from(SqliteStore::open(&path).expect("sqlite store")),
        Backend::Postgres => AnyStore::from(
            PostgresStore::open_temporary(&postgres_url())
                .expect("PostgreSQL must be running for this test"),
        ),
    })
    .await
    .expect("open the store")
}

/// Drops a cache off the async threads (a PostgreSQL store drops its schema then).
pub async fn close<T: Send + 'static>(cache: T) {
    tokio::task::spawn_blocking(move || drop(cache))
        .await
        .expect("close");
}

/// The cache configured in `dir` (its `config.yaml` and entity configs), on
/// `backend`'s store.
pub async fn open_cache(backend: Backend, dir: &Path) -> Arc<Cache<AnyStore>> {
    cache_on(dir, open_store(backend, dir).await).await
}

/// The cache configured in `dir`, on `store`.
async fn cache_on(dir: &Path, store: AnyStore) -> Arc<Cache<AnyStore>> {
    let config = CacheConfig::load(dir).expect("config");
    Cache::open(config, store, Arc::new(LogProgress))
        .await
        .expect("cache opens")
}

/// Fails with the first differences (`what` says when) unless `validate`
/// finds the cache equal to the site.
pub async fn assert_same_as_site<S: sg_engine::Store>(cache: &Cache<S>, what: &str) {
    let differences = cache.validate(&[], None).await.expect("validate");
    for d in differences.iter().take(20) {
        eprintln!("{d}");
    }
    assert!(
        differences.is_empty(),
        "{} differences {what}",
        differences.len()
    );
}

/// A store several caches (processes) can share: the SQLite file in `dir`,
/// or the PostgreSQL schema `schema`, kept across openings as a real
/// database is (drop it with [`drop_postgres_schema`]).
pub async fn open_shared_store(backend: Backend, dir: &Path, schema: &str) -> AnyStore {
    let path = dir.join("cache.sqlite");
    let schema = schema.to_string();
    tokio::task::spawn_blocking(move || match backend {
        Backend::Sqlite => AnyStore::from(SqliteStore::open(&path).expect("sqlite store")),
        Backend::Postgres => AnyStore::from(
            PostgresStore::connect(&postgres_url(), Some(&schema))
                .expect("PostgreSQL must be running for this test"),
        ),
    })
    .await
    .expect("open the store")
}

/// The cache configured in `dir` on a store several caches can share (see
/// [`open_shared_store`]).
pub async fn open_shared_cache(backend: Backend, dir: &Path, schema: &str) -> Arc<Cache<AnyStore>> {
    cache_on(dir, open_shared_store(backend, dir, schema).await).await
}

/// Drops a PostgreSQL schema made by [`open_shared_store`], if it is there.
pub async fn drop_postgres_schema(schema: &str) {
    let schema = schema.to_string();
    tokio::task::spawn_blocking(move || {
        let store = PostgresStore::connect(&postgres_url(), None).expect("connect");
        store
            .with_transaction(&mut |c| {
                c.execute_batch(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            })
            .expect("drop schema");
    })
    .await
    .expect("join");
}

/// Waits until `done` holds, checking every 20 ms; fails after 60 s.
pub async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..3000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 60 s");
}
