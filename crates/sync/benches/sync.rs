//! Sync benchmark: the cache against an in-process simulated site with no
//! latency, on SQLite and on PostgreSQL.
//!
//! One site is generated (`sg_sim::generate`, built-in schema) and served on
//! `127.0.0.1:0`; then, for each store in turn, a cache of every type of the
//! site but `EventLogEntry` (the fields `shotgun-cache setup` would pick) is:
//!
//! 1. **imported**: `Cache::import_pending()` from empty, timed: records per
//!    second (median of `SYNC_BENCH_IMPORT_RUNS` runs, each into a fresh store;
//!    the last run's cache goes on to the next phases);
//! 2. **applying events**: the loop stopped, `SYNC_BENCH_APPLY_WRITES` writes
//!    (a mix of field updates, link moves and a few creates) are made on the
//!    site directly (`Site::handle`), then `poll_events()` is timed until the
//!    watermark reaches the site's newest event: event rows per second
//!    (median of `SYNC_BENCH_APPLY_RUNS` runs);
//! 3. **freshness**: with `Cache::run` running (`fetch_interval` 2 s), a Shot's
//!    description is written every 200 ms for `SYNC_BENCH_FRESH_SECS`; a watcher
//!    reads the cache's engine every 20 ms and notes when each value shows:
//!    p50, p99 and max from the write's commit to its visibility;
//! 4. **catching up**: the loop stopped, writes until `SYNC_BENCH_CATCHUP_EVENTS`
//!    event rows are waiting (counted by the site's newest event id), then the
//!    loop started again and timed until the cache's watermark reaches that id.
//!
//! A summary table at the end gives each figure with its target.
//!
//! ```text
//! cargo bench -p sg-sync --bench sync                          # large site (~1M records), both stores
//! SYNC_BENCH_SIZE=medium cargo bench -p sg-sync --bench sync   # ~100k records, quicker
//! SYNC_BENCH_SMOKE=1 cargo bench -p sg-sync --bench sync       # small site, few writes, < 30 s (CI)
//! ```
//!
//! Without `--bench` on the command line (`cargo test --bench sync`), or with
//! `--test` or `--smoke`, it runs the smoke mode too. Other settings:
//! `SYNC_BENCH_STORES=sqlite,postgres`, `SYNC_BENCH_SEED`,
//! `SYNC_BENCH_FETCH_INTERVAL` (seconds), `SHOTGUN_CACHE_TEST_POSTGRES`
//! (default `postgresql://postgres@127.0.0.1:5432/test`; each run uses a
//! temporary schema, dropped at the end), `SYNC_BENCH_STRICT=1` (exit status 1
//! when a target is missed). A store that can't be opened (PostgreSQL down) is
//! reported as skipped. Errors (a wrong record count, a value that never shows)
//! always end with exit status 1.

use sg_sync::config::cacheable_fields;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use sg_engine::postgres::PostgresStore;
use sg_engine::{AnyStore, Engine, SqliteStore, Store};
use sg_protocol::{Auth, ReadParams, Request, Schema};
use sg_sim::generate::Size;
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};
use sg_sync::{Cache, CacheConfig, Leadership, Progress};

// The same allocator as the `shotgun-cache` binary, so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

// ------------------------------------------------------------------ settings

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone)]
struct Opts {
    smoke: bool,
    size: Size,
    seed: u64,
    stores: Vec<Backend>,
    pg_url: String,
    fetch_interval: f64,
    apply_writes: usize,
    apply_runs: usize,
    import_runs: usize,
    fresh_secs: f64,
    fresh_every: Duration,
    catchup_events: i64,
    strict: bool,
    breakdown: bool,
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").trim().parse().ok())
}

impl Opts {
    fn from_env() -> Opts {
        let args: Vec<String> = std::env::args().collect();
        let benching = args.iter().any(|a| a == "--bench");
        let smoke = !benching
            || args.iter().any(|a| a == "--test" || a == "--smoke")
            || std::env::var("SYNC_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
        let size = std::env::var("SYNC_BENCH_SIZE")
            .ok()
            .map(|s| {
                s.parse::<Size>()
                    .expect("SYNC_BENCH_SIZE: small, medium or large")
            })
            .unwrap_or(if smoke { Size::Small } else { Size::Large });
        let stores = std::env::var("SYNC_BENCH_STORES")
            .unwrap_or_else(|_| "sqlite,postgres".into())
            .split(',')
            .filter_map(|s| match s.trim().to_ascii_lowercase().as_str() {
                "sqlite" => Some(Backend::Sqlite),
                "postgres" | "postgresql" | "pg" => Some(Backend::Postgres),
                "" => None,
                other => panic!("SYNC_BENCH_STORES: unknown store '{other}'"),
            })
            .collect();
        Opts {
            smoke,
            size,
            seed: env_parse("SYNC_BENCH_SEED").unwrap_or(42),
            stores,
            pg_url: std::env::var("SHOTGUN_CACHE_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into()),
            fetch_interval: env_parse("SYNC_BENCH_FETCH_INTERVAL").unwrap_or(2.0),
            apply_writes: env_parse("SYNC_BENCH_APPLY_WRITES").unwrap_or(if smoke {
                300
            } else {
                20_000
            }),
            apply_runs: env_parse("SYNC_BENCH_APPLY_RUNS").unwrap_or(if smoke { 1 } else { 3 }),
            import_runs: env_parse("SYNC_BENCH_IMPORT_RUNS").unwrap_or(if smoke { 1 } else { 3 }),
            fresh_secs: env_parse("SYNC_BENCH_FRESH_SECS").unwrap_or(if smoke {
                4.0
            } else {
                60.0
            }),
            fresh_every: Duration::from_millis(200),
            catchup_events: env_parse("SYNC_BENCH_CATCHUP_EVENTS").unwrap_or(if smoke {
                3_000
            } else {
                100_000
            }),
            strict: std::env::var("SYNC_BENCH_STRICT").is_ok_and(|v| !v.is_empty() && v != "0"),
            breakdown: std::env::var("SYNC_BENCH_BREAKDOWN")
                .is_ok_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

// ------------------------------------------------------------------ results

struct Row {
    figure: String,
    store: String,
    measured: String,
    target: String,
    /// `None` when the figure has no target (or the run is a smoke run).
    met: Option<bool>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    errors: Vec<String>,
}

impl Report {
    fn add(
        &mut self,
        figure: &str,
        store: &str,
        measured: String,
        target: String,
        met: Option<bool>,
    ) {
        println!("  => {figure} [{store}]: {measured}   (target {target})");
        self.rows.push(Row {
            figure: figure.into(),
            store: store.into(),
            measured,
            target,
            met,
        });
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn thousands(n: f64) -> String {
    let n = n.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU seconds this process has used (user and system, all threads), from
/// /proc/self/stat; `None` where that can't be read. On a shared machine the
/// CPU an import costs varies far less than its wall time.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

// ------------------------------------------------------------------ the site

/// The site, its address, and the active records the writes pick from.
struct SiteEnv {
    site: Arc<Site>,
    url: String,
    shots: Vec<i64>,
    tasks: Vec<i64>,
    versions: Vec<i64>,
}

/// Records per cached type on the site (active and retired).
async fn site_counts(site: &Arc<Site>) -> Res<BTreeMap<String, i64>> {
    let site = site.clone();
    tokio::task::spawn_blocking(move || {
        let schema = site.engine.catalog().schema.clone();
        let mut counts = BTreeMap::new();
        for t in cached_types(&schema) {
            let table = table_name(&site.engine, &t)?;
            let n = query_ints(&site.engine, &format!("SELECT COUNT(*) FROM {table}"))?;
            counts.insert(t, n.first().copied().unwrap_or(0));
        }
        Ok(counts)
    })
    .await
    .map_err(err)?
}

fn query_ints(engine: &Engine<SqliteStore>, sql: &str) -> Res<Vec<i64>> {
    engine
        .store()
        .with_reader(&mut |c| c.query(sql, &[]))
        .map_err(err)
        .map(|rows| rows.iter().filter_map(|r| r[0].as_i64()).collect())
}

fn table_name(engine: &Engine<SqliteStore>, entity_type: &str) -> Res<String> {
    engine
        .catalog()
        .layout
        .table(entity_type)
        .map(|t| t.table())
        .ok_or_else(|| format!("the site has no {entity_type} table"))
}

fn active_ids(engine: &Engine<SqliteStore>, entity_type: &str) -> Res<Vec<i64>> {
    let table = table_name(engine, entity_type)?;
    query_ints(
        engine,
        &format!("SELECT \"id\" FROM {table} WHERE \"__retired\" = 0 ORDER BY \"id\""),
    )
}

/// The site's newest event id.
fn newest_event(site: &Site) -> Res<i64> {
    let table = table_name(&site.engine, "EventLogEntry")?;
    Ok(
        query_ints(&site.engine, &format!("SELECT MAX(\"id\") FROM {table}"))?
            .first()
            .copied()
            .unwrap_or(0),
    )
}

async fn newest_event_async(site: &Arc<Site>) -> Res<i64> {
    let site = site.clone();
    tokio::task::spawn_blocking(move || newest_event(&site))
        .await
        .map_err(err)?
}

fn cached_types(schema: &Schema) -> Vec<String> {
    schema
        .entities
        .keys()
        .filter(|t| *t != "EventLogEntry")
        .cloned()
        .collect()
}

fn build_site(opts: &Opts) -> Res<(Site, f64, usize)> {
    let engine = Engine::new(
        SqliteStore::open_temporary().map_err(err)?,
        sg_sim::builtin::schema(),
    )
    .map_err(err)?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let total = sg_sim::generate::generate(&engine, opts.size, opts.seed, &mut |t, n| {
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  generating: {t} {n} ...");
            last_report = Instant::now();
        }
    })
    .map_err(err)?;
    let seconds = started.elapsed().as_secs_f64();
    let logins = Logins {
        allowed: ["cache:cache-key", "writer:writer-key"]
            .iter()
            .map(|s| Credential::parse_script(s))
            .collect::<Result<_, _>>()?,
    };
    let site = Site::new(engine, logins, EventFaults::default()).map_err(|f| f.message)?;
    Ok((site, seconds, total))
}

// ------------------------------------------------------------------ writes

/// Writes on the site, straight through `Site::handle` (no HTTP).
struct Writer {
    site: Arc<Site>,
    auth: Auth,
    shots: Vec<i64>,
    tasks: Vec<i64>,
    versions: Vec<i64>,
    rng: StdRng,
    serial: u64,
    faults: u64,
    first_fault: Option<String>,
}

impl Writer {
    fn new(env: &SiteEnv, seed: u64) -> Writer {
        Writer {
            site: env.site.clone(),
            auth: Auth::script("writer", "writer-key"),
            shots: env.shots.clone(),
            tasks: env.tasks.clone(),
            versions: env.versions.clone(),
            rng: StdRng::seed_from_u64(seed),
            serial: 0,
            faults: 0,
            first_fault: None,
        }
    }

    fn call(&mut self, method: &str, params: Value) {
        let request = Request {
            method_name: method.into(),
            auth: Some(self.auth.clone()),
            params: Some(params),
        };
        if let Err(fault) = self.site.handle(&request) {
            self.faults += 1;
            self.first_fault
                .get_or_insert(format!("{method}: {}", fault.message));
        }
    }

    fn pick(&mut self, ids: fn(&Writer) -> &Vec<i64>) -> i64 {
        let list = ids(self);
        let i = self.rng.gen_range(0..list.len());
        ids(self)[i]
    }

    /// One write of the mix: mostly field updates (1 to 3 rows each), some
    /// link moves (a forward row and back-reference rows) and a few creates.
    fn one(&mut self) {
        self.serial += 1;
        let n = self.serial;
        let link = |t: &str, id: i64| json!({"type": t, "id": id});
        let kind = self.rng.gen_range(0..100);
        match kind {
            0..=54 => {
                let id = self.pick(|w| &w.shots);
                let status = ["wtg", "rdy", "ip", "hld", "fin", "omt"][self.rng.gen_range(0..6)];
                let cut_in = self.rng.gen_range(900..1200);
                self.call(
                    "update",
                    json!({"type": "Shot", "id": id, "fields": [
                        {"field_name": "sg_status_list", "value": status},
                        {"field_name": "sg_cut_in", "value": cut_in},
                        {"field_name": "description", "value": format!("bench write {n}")}]}),
                );
            }
            55..=74 => {
                let id = self.pick(|w| &w.tasks);
                let status =
                    ["wtg", "rdy", "ip", "rev", "hld", "fin", "omt"][self.rng.gen_range(0..7)];
                self.call(
                    "update",
                    json!({"type": "Task", "id": id, "fields": [
                        {"field_name": "sg_status_list", "value": status},
                        {"field_name": "content", "value": format!("task {n}")}]}),
                );
            }
            75..=84 => {
                let id = self.pick(|w| &w.versions);
                let status = ["na", "rev", "vwd", "apr", "rej"][self.rng.gen_range(0..5)];
                self.call(
                    "update",
                    json!({"type": "Version", "id": id, "fields": [
                        {"field_name": "sg_status_list", "value": status},
                        {"field_name": "description", "value": format!("take {n}")}]}),
                );
            }
            85..=97 => {
                let id = self.pick(|w| &w.tasks);
                let shot = self.pick(|w| &w.shots);
                self.call(
                    "update",
                    json!({"type": "Task", "id": id, "fields": [
                        {"field_name": "entity", "value": link("Shot", shot)}]}),
                );
            }
            _ => {
                let shot = self.pick(|w| &w.shots);
                self.call(
                    "create",
                    json!({"type": "Note", "fields": [
                        {"field_name": "subject", "value": format!("bench note {n}")},
                        {"field_name": "content", "value": "looks good"},
                        {"field_name": "note_links", "value": [link("Shot", shot)]}],
                        "return_fields": ["id"]}),
                );
            }
        }
    }
}

/// Makes `count` writes off the async threads; returns the writer and the time taken.
async fn write_many(mut writer: Writer, count: usize) -> Res<(Writer, f64)> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        for _ in 0..count {
            writer.one();
        }
        (writer, started.elapsed().as_secs_f64())
    })
    .await
    .map_err(err)
}

/// Writes until at least `events` event rows were logged since `from`.
async fn write_events(mut writer: Writer, from: i64, events: i64) -> Res<(Writer, usize, f64)> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut writes = 0;
        loop {
            let newest = newest_event(&writer.site)?;
            if newest - from >= events {
                break;
            }
            // About 2.3 rows a write: never far past the target.
            let batch = (((events - (newest - from)) / 3).max(1) as usize).min(2_000);
            for _ in 0..batch {
                writer.one();
            }
            writes += batch;
        }
        Ok((writer, writes, started.elapsed().as_secs_f64()))
    })
    .await
    .map_err(err)?
}

// ------------------------------------------------------------------ the cache

/// Import progress: records and time per type.
#[derive(Default)]
struct Imported(Mutex<BTreeMap<String, (u64, Duration)>>);

impl Progress for Imported {
    fn imported(&self, _entity_type: &str, _done: u64, _total: Option<u64>) {}
    fn finished(&self, entity_type: &str, records: u64, elapsed: Duration) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(entity_type.to_string(), (records, elapsed));
        }
    }
}

fn write_config(dir: &Path, url: &str, opts: &Opts, schema: &Schema) -> Res<()> {
    let yaml = format!(
        "shotgun:\n  base_url: {url}\n  script_name: cache\n  api_key: cache-key\ndatabase: cache.sqlite\n\
         monitor:\n  fetch_interval: {}\nscan_interval: 3600\n",
        opts.fetch_interval
    );
    std::fs::write(dir.join("config.yaml"), yaml).map_err(err)?;
    let configs = dir.join("entity-configs");
    std::fs::create_dir_all(&configs).map_err(err)?;
    for t in cached_types(schema) {
        let fields = cacheable_fields(schema, &t);
        std::fs::write(
            configs.join(format!("{t}.json")),
            json!({ "fields": fields }).to_string(),
        )
        .map_err(err)?;
    }
    Ok(())
}

async fn open_store(backend: Backend, dir: &Path, pg_url: &str) -> Res<AnyStore> {
    let path = dir.join("cache.sqlite");
    let url = pg_url.to_string();
    tokio::task::spawn_blocking(move || match backend {
        Backend::Sqlite => SqliteStore::open(&path).map(AnyStore::from).map_err(err),
        Backend::Postgres => PostgresStore::open_temporary(&url)
            .map(AnyStore::from)
            .map_err(err),
    })
    .await
    .map_err(err)?
}

type SyncCache = Cache<AnyStore>;

/// The cache's event watermark.
async fn watermark(cache: &Arc<SyncCache>) -> Res<i64> {
    let engine = cache.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine
            .store()
            .with_reader(&mut |c| sg_sync::state::position(c))
            .map(|p| p.map(|p| p.watermark).unwrap_or(0))
    })
    .await
    .map_err(err)?
    .map_err(err)
}

/// Polls until the watermark reaches `target`; returns the polls made.
async fn poll_until(cache: &Arc<SyncCache>, target: i64) -> Res<usize> {
    let mut polls = 0;
    loop {
        let rows = cache.poll_events().await.map_err(err)?;
        polls += 1;
        if rows < 500 {
            let at = watermark(cache).await?;
            if at >= target {
                return Ok(polls);
            }
            if rows == 0 {
                return Err(format!(
                    "the cache stopped at event {at}, short of {target}"
                ));
            }
        }
    }
}

/// A running `Cache::run` and the switch that stops it.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), sg_sync::SyncError>>,
}

fn start(cache: &Arc<SyncCache>) -> Running {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(cache.clone().run(stopped, Leadership::sole()));
    Running { stop, task }
}

async fn stop(running: Running) -> Res<()> {
    let _ = running.stop.send(true);
    running.task.await.map_err(err)?.map_err(err)
}

// ------------------------------------------------------------------ phases

/// A cache of every type on a fresh store (a new SQLite file, or a new
/// PostgreSQL schema) and the import progress it reports.
struct FreshCache {
    cache: Arc<SyncCache>,
    progress: Arc<Imported>,
    dir: tempfile::TempDir,
}

impl FreshCache {
    async fn open(backend: Backend, opts: &Opts, env: &SiteEnv) -> Res<FreshCache> {
        let dir = tempfile::tempdir().map_err(err)?;
        let schema = env.site.engine.catalog().schema.clone();
        write_config(dir.path(), &env.url, opts, &schema)?;
        let config = CacheConfig::load(dir.path()).map_err(err)?;
        let store = open_store(backend, dir.path(), &opts.pg_url).await?;
        let progress = Arc::new(Imported::default());
        let cache = Cache::open(config, store, progress.clone())
            .await
            .map_err(err)?;
        Ok(FreshCache {
            cache,
            progress,
            dir,
        })
    }

    /// Drops the store (a PostgreSQL schema is dropped then) off the async
    /// threads, then the folder.
    async fn close(self) -> Res<()> {
        let FreshCache { cache, dir, .. } = self;
        tokio::task::spawn_blocking(move || drop(cache))
            .await
            .map_err(err)?;
        drop(dir);
        Ok(())
    }
}

async fn bench_store(
    backend: Backend,
    opts: &Opts,
    env: &SiteEnv,
    writer_seed: &mut u64,
    report: &mut Report,
) -> Res<()> {
    let store_name = backend.name();
    println!("\n== {store_name} ==");
    // Each import run starts from an empty store; the last run's cache goes
    // on to the other phases.
    let mut imports = Vec::new();
    let runs = opts.import_runs.max(1);
    for run in 1..=runs {
        let fresh = match FreshCache::open(backend, opts, env).await {
            Ok(f) => f,
            Err(e) if run == 1 => {
                println!("  {store_name} store can't be opened: {e}");
                report.add(
                    "import rate",
                    store_name,
                    format!("SKIPPED ({e})"),
                    "-".into(),
                    None,
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if runs > 1 {
            println!("  import run {run} of {runs}:");
        }
        let imported = import(backend, env, &fresh.cache, &fresh.progress).await;
        let imported = match imported {
            Ok(i) => i,
            Err(e) => {
                fresh.close().await?;
                return Err(e);
            }
        };
        imports.push(imported);
        if run < runs {
            fresh.close().await?;
            continue;
        }
        report_import(backend, opts, report, &imports);
        let result = async {
            if opts.breakdown {
                breakdown(backend, opts, env).await?;
            }
            follow(backend, opts, env, writer_seed, report, &fresh.cache).await
        }
        .await;
        fresh.close().await?;
        return result;
    }
    Ok(())
}

/// One timed import.
struct ImportRun {
    records: u64,
    seconds: f64,
}

impl ImportRun {
    fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

/// Imports every type from empty, checks the counts against the site and
/// prints the time per type.
async fn import(
    backend: Backend,
    env: &SiteEnv,
    cache: &Arc<SyncCache>,
    progress: &Arc<Imported>,
) -> Res<ImportRun> {
    let counts = site_counts(&env.site).await?;
    let started = Instant::now();
    let cpu_before = process_cpu_seconds();
    cache.import_pending().await.map_err(err)?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_seconds()).map(|(a, b)| b - a);
    let per_type = progress.0.lock().map_err(err)?.clone();
    let records: u64 = per_type.values().map(|(n, _)| *n).sum();
    let mut wrong = Vec::new();
    for (t, (n, d)) in &per_type {
        let site_n = counts.get(t).copied().unwrap_or(-1);
        if *n as i64 != site_n {
            wrong.push(format!("{t}: imported {n}, site has {site_n}"));
        }
        if *n >= 1000 {
            println!(
                "  {t:<18} {:>10} records  {:>7.2} s  {:>10}/s",
                thousands(*n as f64),
                d.as_secs_f64(),
                thousands(*n as f64 / d.as_secs_f64().max(1e-9))
            );
        }
    }
    if !wrong.is_empty() {
        return Err(format!(
            "import counts differ from the site: {}",
            wrong.join("; ")
        ));
    }
    println!(
        "  imported {} records of {} types in {seconds:.2} s: {}/s (load {})",
        thousands(records as f64),
        per_type.len(),
        thousands(records as f64 / seconds),
        loadavg()
    );
    if let Some(cpu) = cpu {
        // The site runs in this process: its share is in the figure too.
        println!(
            "  CPU of this process (site and cache) during the import: {cpu:.2} s, {} records per CPU-second{}",
            thousands(records as f64 / cpu.max(1e-9)),
            if backend == Backend::Postgres {
                " (the PostgreSQL server's own CPU not included)"
            } else {
                ""
            }
        );
    }
    Ok(ImportRun { records, seconds })
}

/// The import rate: the median of the runs.
fn report_import(backend: Backend, opts: &Opts, report: &mut Report, runs: &[ImportRun]) {
    let rates: Vec<f64> = runs.iter().map(ImportRun::rate).collect();
    let rate = median(&rates);
    let target = match backend {
        Backend::Sqlite => 50_000.0,
        Backend::Postgres => 25_000.0,
    };
    let records = runs.last().map(|r| r.records).unwrap_or(0);
    report.add(
        "import rate (records/s)",
        backend.name(),
        format!(
            "{} (median of {}: {}; {} records)",
            thousands(rate),
            rates.len(),
            rates
                .iter()
                .map(|r| thousands(*r))
                .collect::<Vec<_>>()
                .join(", "),
            thousands(records as f64)
        ),
        format!(">= {}", thousands(target)),
        (!opts.smoke).then_some(rate >= target),
    );
}

/// The phases after the import: event apply, freshness and catch-up.
async fn follow(
    backend: Backend,
    opts: &Opts,
    env: &SiteEnv,
    writer_seed: &mut u64,
    report: &mut Report,
    cache: &Arc<SyncCache>,
) -> Res<()> {
    let store_name = backend.name();
    let judge = |met: bool| if opts.smoke { None } else { Some(met) };

    // Whatever was logged since the import started.
    let newest = newest_event_async(&env.site).await?;
    poll_until(cache, newest).await?;

    // 2. Event apply rate.
    let mut writer = Writer::new(env, *writer_seed);
    *writer_seed += 1;
    let mut rates = Vec::new();
    for run in 1..=opts.apply_runs {
        let before = watermark(cache).await?;
        let (w, write_secs) = write_many(writer, opts.apply_writes).await?;
        writer = w;
        let after = newest_event_async(&env.site).await?;
        let events = after - before;
        let started = Instant::now();
        let polls = poll_until(cache, after).await?;
        let seconds = started.elapsed().as_secs_f64();
        let rate = events as f64 / seconds;
        println!(
            "  apply run {run}: {} writes ({:.0}/s on the site) logged {} event rows; applied in {seconds:.2} s, {polls} polls: {}/s",
            thousands(opts.apply_writes as f64),
            opts.apply_writes as f64 / write_secs,
            thousands(events as f64),
            thousands(rate)
        );
        rates.push(rate);
    }
    let rate = median(&rates);
    report.add(
        "event apply rate (rows/s)",
        store_name,
        format!(
            "{} (median of {}: {})",
            thousands(rate),
            rates.len(),
            rates
                .iter()
                .map(|r| thousands(*r))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ">= 5,000".into(),
        judge(rate >= 5_000.0),
    );

    // 3. Freshness under the run loop.
    let running = start(cache);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = freshness(opts, env, cache, &mut writer).await;
    let fresh = match fresh {
        Ok(f) => f,
        Err(e) => {
            let _ = stop(running).await;
            return Err(e);
        }
    };
    let mut lat = fresh.latencies.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99, max) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
    );
    let limit = opts.fetch_interval + 0.5;
    println!(
        "  freshness: {} writes, p50 {p50:.3} s, p99 {p99:.3} s, max {max:.3} s, never seen {}",
        lat.len(),
        fresh.unseen
    );
    if fresh.unseen > 0 {
        report.errors.push(format!(
            "{store_name}: {} written values never showed in the cache",
            fresh.unseen
        ));
    }
    report.add(
        "freshness p50 (s)",
        store_name,
        format!("{p50:.3} ({} writes)", lat.len()),
        "-".into(),
        None,
    );
    report.add(
        "freshness p99 (s)",
        store_name,
        format!("{p99:.3}"),
        format!("<= {limit:.1}"),
        judge(p99 <= limit),
    );
    report.add(
        "freshness max (s)",
        store_name,
        format!("{max:.3}"),
        "-".into(),
        None,
    );

    // 4. Catch-up after a stop.
    stop(running).await?;
    let from = watermark(cache).await?;
    let site_newest = newest_event_async(&env.site).await?;
    let (w, writes, write_secs) = write_events(writer, site_newest, opts.catchup_events).await?;
    writer = w;
    let target_id = newest_event_async(&env.site).await?;
    let lag = target_id - from;
    println!(
        "  catch-up: {} writes in {write_secs:.1} s left the cache {} event rows behind; restarting",
        thousands(writes as f64),
        thousands(lag as f64)
    );
    let started = Instant::now();
    let running = start(cache);
    let mut caught = None;
    while started.elapsed() < Duration::from_secs(900) {
        if watermark(cache).await? >= target_id {
            caught = Some(started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop(running).await?;
    match caught {
        Some(seconds) => {
            println!(
                "  caught up {} rows in {seconds:.2} s ({}/s)",
                thousands(lag as f64),
                thousands(lag as f64 / seconds)
            );
            report.add(
                "catch-up time (s)",
                store_name,
                format!(
                    "{seconds:.2} ({} events, {}/s)",
                    thousands(lag as f64),
                    thousands(lag as f64 / seconds)
                ),
                "<= 60".into(),
                judge(seconds <= 60.0),
            );
        }
        None => report.errors.push(format!(
            "{store_name}: the cache did not catch up within 900 s"
        )),
    }
    if writer.faults > 0 {
        println!(
            "  note: {} of the site writes failed (first: {})",
            writer.faults,
            writer.first_fault.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// Where an import's time goes, without HTTP and without concurrency: the
/// same pages read from the site's engine in process, their JSON encoded and
/// decoded once (what the HTTP hop adds at least), and written into a fresh
/// store of the same kind as the import writes them (one transaction a page).
async fn breakdown(backend: Backend, opts: &Opts, env: &SiteEnv) -> Res<()> {
    let site = env.site.clone();
    let pg_url = opts.pg_url.clone();
    let dir = tempfile::tempdir().map_err(err)?;
    let path = dir.path().join("breakdown.sqlite");
    let lines = tokio::task::spawn_blocking(move || -> Res<Vec<String>> {
        let store = match backend {
            Backend::Sqlite => AnyStore::from(SqliteStore::open(&path).map_err(err)?),
            Backend::Postgres => {
                AnyStore::from(PostgresStore::open_temporary(&pg_url).map_err(err)?)
            }
        };
        let schema = site.engine.catalog().schema.clone();
        let selection: BTreeMap<String, BTreeSet<String>> = cached_types(&schema)
            .into_iter()
            .map(|t| {
                let mut f = cacheable_fields(&schema, &t);
                f.insert("id".into());
                (t, f)
            })
            .collect();
        let cache = Engine::with_selection(store, schema, Some(selection)).map_err(err)?;
        let catalog = cache.catalog();
        let (mut read_s, mut json_s, mut write_s, mut records, mut bytes) =
            (0.0, 0.0, 0.0, 0u64, 0u64);
        for (t, table) in &catalog.layout.tables {
            let fields: Vec<String> = table
                .fields
                .keys()
                .filter(|f| *f != "id")
                .cloned()
                .collect();
            let keep: BTreeSet<String> = fields.iter().cloned().collect();
            for retired in [false, true] {
                let mut last_id = 0;
                loop {
                    let params = json!({"type": t, "return_fields": fields,
                        "filters": {"logical_operator": "and", "conditions": [
                            {"path": "id", "relation": "greater_than", "values": [last_id]}]},
                        "sorts": [{"field_name": "id", "direction": "asc"}],
                        "paging": {"entities_per_page": 500, "current_page": 1},
                        "return_only": if retired { "retired" } else { "active" },
                        "return_paging_info_without_counts": true, "api_return_image_urls": true});
                    let params = ReadParams::from_json(params.as_object().expect("object"))
                        .map_err(|f| f.message)?;
                    let started = Instant::now();
                    let result = site.engine.read(&params).map_err(err)?;
                    read_s += started.elapsed().as_secs_f64();
                    let started = Instant::now();
                    let text = serde_json::to_vec(&json!({"results": result})).map_err(err)?;
                    let mut back: Value = serde_json::from_slice(&text).map_err(err)?;
                    json_s += started.elapsed().as_secs_f64();
                    bytes += text.len() as u64;
                    let page: Vec<serde_json::Map<String, Value>> =
                        match back["results"]["entities"].take() {
                            Value::Array(items) => items
                                .into_iter()
                                .filter_map(|v| match v {
                                    Value::Object(mut m) => {
                                        m.retain(|k, _| k == "id" || keep.contains(k));
                                        m.insert("__retired".into(), json!(retired));
                                        Some(m)
                                    }
                                    _ => None,
                                })
                                .collect(),
                            _ => Vec::new(),
                        };
                    let full = page.len() >= 500;
                    last_id = page
                        .last()
                        .and_then(|r| r["id"].as_i64())
                        .unwrap_or(last_id);
                    records += page.len() as u64;
                    let started = Instant::now();
                    cache
                        .store()
                        .with_transaction(&mut |c| {
                            sg_engine::write::upsert_records(c, table, &page)
                        })
                        .map_err(err)?;
                    write_s += started.elapsed().as_secs_f64();
                    if !full {
                        break;
                    }
                }
            }
        }
        let r = records as f64;
        let lines = vec![
            format!(
                "import breakdown, one thread, no HTTP ({} records, {:.0} MB of JSON):",
                thousands(r),
                bytes as f64 / 1e6
            ),
            format!(
                "  {:<44} {read_s:>7.2} s {:>10}/s",
                "site read (Engine::read, 500 a page)",
                thousands(r / read_s)
            ),
            format!(
                "  {:<44} {json_s:>7.2} s {:>10}/s",
                "JSON encode + decode of the replies",
                thousands(r / json_s)
            ),
            format!(
                "  {:<44} {write_s:>7.2} s {:>10}/s",
                format!("{} writes (upsert_records, 500 a tx)", backend.name()),
                thousands(r / write_s)
            ),
            format!(
                "  {:<44} {:>7.2} s {:>10}/s",
                "sum",
                read_s + json_s + write_s,
                thousands(r / (read_s + json_s + write_s))
            ),
        ];
        drop(cache);
        Ok(lines)
    })
    .await
    .map_err(err)??;
    for line in lines {
        println!("  {line}");
    }
    drop(dir);
    Ok(())
}

struct Fresh {
    latencies: Vec<f64>,
    unseen: usize,
}

/// One Shot's description written every `fresh_every`; a watcher reads the
/// pending Shots from the cache every 20 ms and notes when each value shows.
async fn freshness(
    opts: &Opts,
    env: &SiteEnv,
    cache: &Arc<SyncCache>,
    writer: &mut Writer,
) -> Res<Fresh> {
    // id -> (value written, when its write committed)
    let pending: Arc<Mutex<BTreeMap<i64, (String, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let pending = pending.clone();
        let latencies = latencies.clone();
        let done = done.clone();
        let engine = cache.engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let wanted: Vec<i64> = pending.lock().map_err(err)?.keys().copied().collect();
                if wanted.is_empty() {
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok::<(), String>(());
                    }
                    continue;
                }
                let engine = engine.clone();
                let seen = tokio::task::spawn_blocking(move || {
                    let params = json!({"type": "Shot", "return_fields": ["description"],
                        "filters": {"logical_operator": "and", "conditions": [
                            {"path": "id", "relation": "in", "values": wanted}]},
                        "paging": {"entities_per_page": 500, "current_page": 1}});
                    let params = ReadParams::from_json(params.as_object().expect("object"))
                        .map_err(|f| f.message)?;
                    engine.read(&params).map_err(err)
                })
                .await
                .map_err(err)??;
                let now = Instant::now();
                let mut pending = pending.lock().map_err(err)?;
                for record in seen["entities"].as_array().into_iter().flatten() {
                    let (Some(id), Some(value)) =
                        (record["id"].as_i64(), record["description"].as_str())
                    else {
                        continue;
                    };
                    if pending.get(&id).is_some_and(|(want, _)| want == value) {
                        if let Some((_, at)) = pending.remove(&id) {
                            latencies
                                .lock()
                                .map_err(err)?
                                .push(now.duration_since(at).as_secs_f64());
                        }
                    }
                }
            }
        })
    };
    let mut shots = env.shots.clone();
    shots.shuffle(&mut writer.rng);
    let count = (opts.fresh_secs / opts.fresh_every.as_secs_f64())
        .round()
        .max(1.0) as usize;
    let mut tick = tokio::time::interval(opts.fresh_every);
    let mut next = 0;
    for i in 0..count {
        tick.tick().await;
        // A Shot not waited on already.
        let id = loop {
            let id = shots[next % shots.len()];
            next += 1;
            if !pending.lock().map_err(err)?.contains_key(&id) {
                break id;
            }
        };
        let value = format!("fresh {i} {}", writer.rng.gen::<u32>());
        let site = env.site.clone();
        let params = json!({"type": "Shot", "id": id, "fields": [{"field_name": "description", "value": value}]});
        let auth = writer.auth.clone();
        tokio::task::spawn_blocking(move || {
            site.handle(&Request {
                method_name: "update".into(),
                auth: Some(auth),
                params: Some(params),
            })
            .map_err(|f| f.message)
        })
        .await
        .map_err(err)??;
        pending
            .lock()
            .map_err(err)?
            .insert(id, (value, Instant::now()));
    }
    // Give the last writes time to show.
    let wait_until = Instant::now() + Duration::from_secs_f64(opts.fetch_interval * 3.0 + 10.0);
    while Instant::now() < wait_until && !pending.lock().map_err(err)?.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let unseen = {
        let mut p = pending.lock().map_err(err)?;
        let n = p.len();
        p.clear();
        n
    };
    watcher.await.map_err(err)??;
    let latencies = latencies.lock().map_err(err)?.clone();
    Ok(Fresh { latencies, unseen })
}

// ------------------------------------------------------------------ main

fn main() {
    let opts = Opts::from_env();
    let started = Instant::now();
    println!(
        "sync bench: {} site, stores {:?}, fetch_interval {} s{}; load average {}",
        opts.size,
        opts.stores.iter().map(|b| b.name()).collect::<Vec<_>>(),
        opts.fetch_interval,
        if opts.smoke {
            ", SMOKE run (targets not judged)"
        } else {
            ""
        },
        loadavg()
    );
    let mut report = Report::default();
    let (site, gen_secs, generated) = match build_site(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("can't build the site: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "generated {} records ({}) in {gen_secs:.1} s",
        thousands(generated as f64),
        opts.size
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome: Res<()> = runtime.block_on(async {
        let site = Arc::new(site);
        let env = SiteEnv {
            shots: active_ids(&site.engine, "Shot")?,
            tasks: active_ids(&site.engine, "Task")?,
            versions: active_ids(&site.engine, "Version")?,
            url: String::new(),
            site,
        };
        if env.shots.is_empty() || env.tasks.is_empty() || env.versions.is_empty() {
            return Err("the generated site has no Shots, Tasks or Versions".into());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(err)?;
        let env = SiteEnv {
            url: format!("http://{}", listener.local_addr().map_err(err)?),
            ..env
        };
        let (halt, halted) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(sg_sim::serve(
            env.site.clone(),
            listener,
            ServerOptions::default(),
            async {
                let _ = halted.await;
            },
        ));
        let mut seed = opts.seed;
        for backend in opts.stores.clone() {
            if let Err(e) = bench_store(backend, &opts, &env, &mut seed, &mut report).await {
                println!("  {} FAILED: {e}", backend.name());
                report.errors.push(format!("{}: {e}", backend.name()));
            }
        }
        let _ = halt.send(());
        let _ = server.await;
        Ok(())
    });
    if let Err(e) = outcome {
        report.errors.push(e);
    }
    // The site (and its temporary database) is dropped here, off the runtime.
    drop(runtime);

    println!(
        "\n== summary: {} site ({} records), {:.0} s in all, load average now {} ==",
        opts.size,
        thousands(generated as f64),
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    let w0 = report
        .rows
        .iter()
        .map(|r| r.figure.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let w1 = 10;
    let w2 = report
        .rows
        .iter()
        .map(|r| r.measured.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let w3 = report
        .rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "| {:<w0$} | {:<w1$} | {:<w2$} | {:<w3$} | met |",
        "figure", "store", "measured", "target"
    );
    println!(
        "|{}|{}|{}|{}|-----|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2),
        "-".repeat(w3 + 2)
    );
    let mut missed = 0;
    for r in &report.rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => {
                missed += 1;
                "NO"
            }
            None => "-",
        };
        println!(
            "| {:<w0$} | {:<w1$} | {:<w2$} | {:<w3$} | {met:<3} |",
            r.figure, r.store, r.measured, r.target
        );
    }
    for e in &report.errors {
        println!("ERROR: {e}");
    }
    if !report.errors.is_empty() || (opts.strict && missed > 0) {
        std::process::exit(1);
    }
}
