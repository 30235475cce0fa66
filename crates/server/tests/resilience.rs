//! The proxy tells the truth about the cache and keeps answering right when
//! the cache can't store: `/readyz` says 503 while the sync is stuck, reads
//! of a type with a record the store could not hold (a NUL byte on
//! PostgreSQL) go to the site, and with the disk full a write through the
//! proxy still reads back its new value. A simulated site, a real cache on
//! SQLite or PostgreSQL, and the proxy over HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use sg_client::Client;
use sg_engine::{AnyStore, Engine, PostgresStore, SqliteStore, Store};
use sg_protocol::Auth;
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};
use sg_sync::{Cache, CacheConfig, Leadership, LogProgress};

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

fn postgres_url() -> String {
    std::env::var("SHOTGUN_CACHE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// A simulated site with a small production, served on a free port until
/// the sender is dropped.
async fn site(seed: u64) -> (String, tokio::sync::oneshot::Sender<()>) {
    let site = tokio::task::spawn_blocking(move || {
        let engine = Engine::new(
            SqliteStore::open_temporary().expect("db"),
            sg_sim::builtin::schema(),
        )
        .expect("engine");
        sg_sim::generate::generate(&engine, sg_sim::generate::Size::Small, seed, &mut |_, _| {})
            .expect("generate");
        let logins = Logins {
            allowed: ["cache:cache-key", "writer:writer-key"]
                .iter()
                .map(|s| Credential::parse_script(s).expect("script"))
                .collect(),
        };
        Arc::new(Site::new(engine, logins, EventFaults::default()).expect("site"))
    })
    .await
    .expect("site");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sg_sim::serve(
        site,
        listener,
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    (url, stop)
}

fn write_config(dir: &Path, url: &str, database: &str) {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\ndatabase: {database}\n\
         monitor:\n  fetch_interval: 0.1\nscan_interval: 3600\n"
    );
    std::fs::write(dir.join("config.yaml"), yaml).expect("config.yaml");
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).expect("entity-configs");
    std::fs::write(
        configs.join("Shot.json"),
        json!({"fields": ["code", "description"]}).to_string(),
    )
    .expect("entity config");
}

/// The cache configured in `dir`, imported.
async fn cache(backend: Backend, dir: &Path) -> Arc<Cache<AnyStore>> {
    let config = CacheConfig::load(dir).expect("config");
    let database = config.database();
    let store = tokio::task::spawn_blocking(move || match (backend, database) {
        (Backend::Sqlite, sg_sync::Database::Sqlite(path)) => {
            AnyStore::from(SqliteStore::open(&path).expect("sqlite store"))
        }
        _ => AnyStore::from(
            PostgresStore::open_temporary(&postgres_url())
                .expect("PostgreSQL must be running for this test"),
        ),
    })
    .await
    .expect("store");
    let cache = Cache::open(config, store, Arc::new(LogProgress))
        .await
        .expect("cache opens");
    cache.import_pending().await.expect("import");
    cache
}

/// The proxy served for a test; [`Served::stop`] ends it and waits, so that
/// the cache it holds is not dropped on an async thread (the PostgreSQL
/// client must not be).
struct Served {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Serves the proxy of `cache` on a free port until stopped.
async fn proxy(cache: Arc<Cache<AnyStore>>, site: &str) -> Served {
    let proxy = sg_server::Proxy::new(
        cache,
        site,
        ("cache".into(), "cache-key".into()),
        &Default::default(),
        Default::default(),
    )
    .expect("proxy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sg_server::serve(
        Arc::new(proxy),
        listener,
        sg_server::ServeOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Served { url, stop, task }
}

async fn close(cache: Arc<Cache<AnyStore>>) {
    tokio::task::spawn_blocking(move || drop(cache))
        .await
        .expect("close");
}

async fn get(url: &str) -> (u16, Value) {
    let reply = reqwest::get(url).await.expect("GET");
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

/// Waits until `done` holds, checking every 50 ms; fails after 60 s.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 60 s");
}

async fn first_shot(client: &Client) -> i64 {
    let result = client
        .call(
            "read",
            Some(json!({"type": "Shot", "return_fields": ["id"], "filters": {"logical_operator": "and", "conditions": []},
                "sorts": [{"field_name": "id", "direction": "asc"}],
                "paging": {"entities_per_page": 1, "current_page": 1}})),
        )
        .await
        .expect("read");
    result["entities"][0]["id"].as_i64().expect("a Shot")
}

async fn set_description(client: &Client, id: i64, text: &str) {
    client
        .call(
            "update",
            Some(json!({"type": "Shot", "id": id,
                "fields": [{"field_name": "description", "value": text}]})),
        )
        .await
        .expect("update");
}

async fn description(client: &Client, id: i64) -> Value {
    let result = client
        .call(
            "read",
            Some(json!({"type": "Shot", "return_fields": ["description"],
                "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [id]}]},
                "paging": {"entities_per_page": 1, "current_page": 1}})),
        )
        .await
        .expect("read");
    result["entities"][0]["description"].clone()
}

/// SQL that makes every write of the sync's state fail, and SQL that undoes it.
fn failing_state_writes(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Sqlite => (
            "CREATE TRIGGER \"stuck_i\" BEFORE INSERT ON \"__sync_state\" BEGIN SELECT RAISE(ABORT, 'the disk is failing'); END;
             CREATE TRIGGER \"stuck_u\" BEFORE UPDATE ON \"__sync_state\" BEGIN SELECT RAISE(ABORT, 'the disk is failing'); END;",
            "DROP TRIGGER \"stuck_i\"; DROP TRIGGER \"stuck_u\";",
        ),
        Backend::Postgres => (
            "CREATE FUNCTION \"stuck\"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the disk is failing'; END $$;
             CREATE TRIGGER \"stuck\" BEFORE INSERT OR UPDATE ON \"__sync_state\" FOR EACH ROW EXECUTE FUNCTION \"stuck\"();",
            "DROP TRIGGER \"stuck\" ON \"__sync_state\"",
        ),
    }
}

async fn execute(cache: &Arc<Cache<AnyStore>>, sql: &'static str) {
    let engine = cache.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine
            .store()
            .with_transaction(&mut |c| c.execute_batch(sql))
    })
    .await
    .expect("join")
    .expect("SQL");
}

async fn readyz_is_503_while_the_sync_is_stuck(backend: Backend) {
    let (site_url, _site) = site(31).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &site_url, "cache.sqlite");
    let cache = cache(backend, dir.path()).await;
    let served = proxy(cache.clone(), &site_url).await;
    let proxy_url = served.url.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(cache.clone().run(stopped, Leadership::sole()));
    let readyz = format!("{proxy_url}/readyz");
    wait_until("ready", || async { get(&readyz).await.0 == 200 }).await;
    let (_, ready) = get(&readyz).await;
    assert_eq!(ready["site_reachable"], true, "{ready}");
    assert_eq!(ready["lag_events"], 0, "{ready}");

    // Every step fails while the site answers: the sync is stuck.
    let (fail, heal) = failing_state_writes(backend);
    execute(&cache, fail).await;
    wait_until("not ready while stuck", || async {
        let (code, body) = get(&readyz).await;
        code == 503
            && body["sync_healthy"] == false
            && body["site_reachable"] == true
            && body["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("the disk is failing"))
    })
    .await;
    let (_, stuck) = get(&readyz).await;
    assert!(
        !stuck.to_string().contains("cache-key"),
        "no secret in {stuck}"
    );
    // The process lives all the same.
    assert_eq!(get(&format!("{proxy_url}/healthz")).await.0, 200);

    execute(&cache, heal).await;
    wait_until("ready again", || async { get(&readyz).await.0 == 200 }).await;
    let _ = stop.send(true);
    running.await.expect("join").expect("run");
    served.stop().await;
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_while_the_sync_is_stuck_on_sqlite() {
    readyz_is_503_while_the_sync_is_stuck(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_while_the_sync_is_stuck_on_postgresql() {
    readyz_is_503_while_the_sync_is_stuck(Backend::Postgres).await;
}

/// A NUL byte in a text (PostgreSQL refuses it): reads of that type through
/// the proxy equal the site's, and the sync goes on with other records.
async fn reads_of_a_type_the_store_cant_hold_equal_the_sites(backend: Backend) {
    let (site_url, _site) = site(32).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &site_url, "cache.sqlite");
    let cache = cache(backend, dir.path()).await;
    let served = proxy(cache.clone(), &site_url).await;
    let proxy_url = served.url.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(cache.clone().run(stopped, Leadership::sole()));
    let writer = Client::new(&site_url, Auth::script("writer", "writer-key")).expect("client");
    let through_proxy =
        Client::new(&proxy_url, Auth::script("writer", "writer-key")).expect("client");
    let shot = first_shot(&writer).await;
    // Written at the site by someone else: the cache learns it from the log.
    set_description(&writer, shot, "with a NUL \u{0} byte").await;
    set_description(&writer, shot + 1, "written after it").await;
    wait_until("the sync goes past the bad record", || async {
        description(&through_proxy, shot + 1).await == json!("written after it")
            && (cache.has_marks("Shot") || matches!(backend, Backend::Sqlite))
    })
    .await;
    assert_eq!(
        description(&through_proxy, shot).await,
        description(&writer, shot).await,
        "the proxy's read equals the site's"
    );
    assert_eq!(
        description(&through_proxy, shot).await,
        json!("with a NUL \u{0} byte")
    );
    let (_, ready) = get(&format!("{proxy_url}/readyz")).await;
    assert_eq!(ready["sync_healthy"], true, "{ready}");
    if let Backend::Postgres = backend {
        assert_eq!(ready["marked_records"][0]["id"], shot, "{ready}");
    }
    drop((writer, through_proxy));
    let _ = stop.send(true);
    running.await.expect("join").expect("run");
    served.stop().await;
    close(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_of_a_type_the_store_cant_hold_equal_the_sites_on_sqlite() {
    reads_of_a_type_the_store_cant_hold_equal_the_sites(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_of_a_type_the_store_cant_hold_equal_the_sites_on_postgresql() {
    reads_of_a_type_the_store_cant_hold_equal_the_sites(Backend::Postgres).await;
}

/// Unmounts a tmpfs when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `dir` until it has no space left.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
}

/// SQLite on a full disk: a write through the proxy that the cache can't
/// store still reads back its new value through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_the_proxy_reads_back_with_the_disk_full() {
    let (site_url, _site) = site(33).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&disk)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: can't mount a tmpfs here (needs root)");
        return;
    }
    let _mount = Mount(disk.clone());
    let database = disk.join("cache.sqlite");
    write_config(dir.path(), &site_url, &database.display().to_string());
    let cache = cache(Backend::Sqlite, dir.path()).await;
    let served = proxy(cache.clone(), &site_url).await;
    let proxy_url = served.url.clone();
    let through_proxy =
        Client::new(&proxy_url, Auth::script("writer", "writer-key")).expect("client");
    let shot = first_shot(&through_proxy).await;
    assert_ne!(
        description(&through_proxy, shot).await,
        json!("after the disk filled")
    );

    fill(&disk);
    set_description(&through_proxy, shot, "after the disk filled").await;
    assert_eq!(
        description(&through_proxy, shot).await,
        json!("after the disk filled"),
        "the writer reads its own write"
    );
    assert!(cache.has_marks("Shot"), "the write could not be stored");

    // Space again: the next scan stores the record and clears its mark.
    std::fs::remove_file(disk.join("filler")).expect("free the disk");
    cache.reconcile().await.expect("scan");
    assert!(!cache.has_marks("Shot"), "{:?}", cache.marked_records());
    assert_eq!(
        description(&through_proxy, shot).await,
        json!("after the disk filled")
    );
    drop(through_proxy);
    served.stop().await;
    close(cache).await;
}
