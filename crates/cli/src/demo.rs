//! `shotgun-cache demo`: a simulated site with a medium production and a
//! hosted site's latency, a cache of it in a temporary folder, and the proxy;
//! then typical pipeline queries timed against both, a change made on the
//! site arriving in the cache, and the proxy left serving until Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};

use sg_client::Client;
use sg_engine::{AnyStore, Engine, SqliteStore};
use sg_protocol::Auth;
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};
use sg_sync::config::{
    write_config, ConfigFile, ImportSection, MonitorSection, Secret, SiteSection,
};
use sg_sync::{Cache, CacheConfig, Leadership, LogProgress, Progress};

use crate::progress::Bars;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How big a production the simulated site holds (small, medium or large).
    #[arg(long, default_value = "medium", value_name = "SIZE")]
    size: sg_sim::generate::Size,
    /// The simulated site's latency per call, in milliseconds.
    #[arg(long, default_value_t = 150, value_name = "MS")]
    latency_ms: u64,
    /// Where the proxy listens (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8091", value_name = "ADDR")]
    listen: String,
}

const TYPES: &[&str] = &[
    "Project",
    "Sequence",
    "Shot",
    "Asset",
    "Step",
    "Task",
    "Version",
    "HumanUser",
    "Note",
];

/// Median of a call's time over a few runs, in milliseconds.
async fn time_ms(client: &Client, method: &str, params: &Value) -> Result<(f64, usize)> {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let result = client.call(method, Some(params.clone())).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        rows = result["entities"]
            .as_array()
            .map(Vec::len)
            .or_else(|| result["groups"].as_array().map(Vec::len))
            .unwrap_or(0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[1], rows))
}

fn filters(conditions: Value) -> Value {
    json!({"logical_operator": "and", "conditions": conditions})
}

pub fn run(args: DemoArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("can't make a temporary folder")?;
    let key = format!("{:016x}", rand::random::<u64>());
    let demo_key = format!("{:016x}", rand::random::<u64>());
    eprintln!(
        "generating a {:?} production for the simulated site...",
        args.size
    );
    let started = Instant::now();
    let engine = Engine::new(SqliteStore::open_temporary()?, sg_sim::builtin::schema())?;
    let records = sg_sim::generate::generate(&engine, args.size, 1, &mut |_, _| {})?;
    eprintln!(
        "  {records} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let logins = Logins {
        allowed: vec![
            Credential::parse_script(&format!("cache:{key}")).map_err(anyhow::Error::msg)?,
            Credential::parse_script(&format!("demo:{demo_key}")).map_err(anyhow::Error::msg)?,
        ],
    };
    let site = Arc::new(
        Site::new(engine, logins, EventFaults::default())
            .map_err(|f| anyhow::anyhow!(f.message))?,
    );
    let schema = site.engine.catalog().schema.clone();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let latency = Duration::from_millis(args.latency_ms);
        let site_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let site_url = format!("http://{}", site_listener.local_addr()?);
        let options = ServerOptions { latency: Some((latency, latency)), ..ServerOptions::default() };
        tokio::spawn(sg_sim::serve(site, site_listener, options, std::future::pending()));
        eprintln!("simulated site on {site_url} ({} ms per call)", args.latency_ms);

        let file = ConfigFile {
            shotgun: SiteSection { base_url: site_url.clone(), script_name: "cache".into(), api_key: Secret(key.clone()), api_key_file: None },
            database: "cache.sqlite".into(),
            monitor: MonitorSection::default(),
            import: ImportSection::default(),
            scan_interval: 300.0,
            listen: args.listen.clone(),
            log_level: "info".into(),
            entity_config_foldername: "entity-configs".into(),
            access: Default::default(),
            serving: sg_sync::config::ServingSection::default(),
        };
        let entities: BTreeMap<String, BTreeSet<String>> =
            TYPES.iter().map(|t| (t.to_string(), sg_sync::config::cacheable_fields(&schema, t))).collect();
        write_config(dir.path(), &file, &entities)?;
        let config = CacheConfig::load(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = AnyStore::from(SqliteStore::open(&dir.path().join("cache.sqlite"))?);
        let progress: Arc<dyn Progress> = match Bars::on_terminal() {
            Some(bars) => Arc::new(bars),
            None => Arc::new(LogProgress),
        };
        eprintln!("importing into a cache in {} ...", dir.path().display());
        let started = Instant::now();
        let cache = Cache::open(config, store, progress).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        cache.import_pending().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        eprintln!("imported in {:.1} s", started.elapsed().as_secs_f64());

        let proxy = Arc::new(
            sg_server::Proxy::new(cache.clone(), &site_url, ("cache".into(), key.clone()), &Default::default(), Default::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let listener = tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("can't listen on {}", args.listen))?;
        let proxy_url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(sg_server::serve(proxy, listener, sg_server::ServeOptions::default(), std::future::pending()));
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(cache.clone().run(stopped, Leadership::sole()));

        let direct = Client::new(&site_url, Auth::script("demo", &demo_key))?;
        let cached = Client::new(&proxy_url, Auth::script("demo", &demo_key))?;
        // Pick real ids to query.
        let first = |t: &str, fields: Value| {
            let direct = direct.clone();
            let t = t.to_string();
            async move {
                direct
                    .call("read", Some(json!({"type": t, "return_fields": fields, "paging": {"entities_per_page": 1, "current_page": 1}})))
                    .await
                    .map(|r| r["entities"][0].clone())
            }
        };
        let project = first("Project", json!(["name"])).await?;
        let shot = first("Shot", json!(["code", "sg_sequence"])).await?;
        // An artist with open work, so that their query finds something.
        let open_task = direct
            .call("read", Some(json!({"type": "Task", "return_fields": ["task_assignees"],
                "filters": {"logical_operator": "and", "conditions": [
                    {"path": "sg_status_list", "relation": "not_in", "values": ["fin", "omt"]},
                    {"path": "task_assignees", "relation": "is_not", "values": [null]}]},
                "paging": {"entities_per_page": 1, "current_page": 1}})))
            .await?;
        let user = match open_task["entities"][0]["task_assignees"].get(0) {
            Some(assignee) => assignee.clone(),
            None => first("HumanUser", json!(["name"])).await?,
        };
        let link = |v: &Value| json!({"type": v["type"], "id": v["id"]});
        let sequence = shot["sg_sequence"].clone();
        let queries: Vec<(&str, &str, Value)> = vec![
            ("a project's shots with sequence and status", "read", json!({"type": "Shot",
                "return_fields": ["code", "sg_sequence", "sg_status_list", "description"],
                "filters": filters(json!([{"path": "project", "relation": "is", "values": [link(&project)]}])),
                "paging": {"entities_per_page": 500, "current_page": 1}})),
            ("a shot's tasks with assignees", "read", json!({"type": "Task",
                "return_fields": ["content", "step", "task_assignees", "sg_status_list", "due_date"],
                "filters": filters(json!([{"path": "entity", "relation": "is", "values": [link(&shot)]}]))})),
            ("an artist's open tasks", "read", json!({"type": "Task",
                "return_fields": ["content", "entity", "project", "due_date"],
                "filters": filters(json!([{"path": "task_assignees", "relation": "is", "values": [link(&user)]},
                                          {"path": "sg_status_list", "relation": "not_in", "values": ["fin", "omt"]}]))})),
            ("the latest versions of a sequence", "read", json!({"type": "Version",
                "return_fields": ["code", "entity", "sg_status_list", "created_at"],
                "filters": filters(json!([{"path": "entity.Shot.sg_sequence", "relation": "is", "values": [sequence]}])),
                "sorts": [{"field_name": "created_at", "direction": "desc"}],
                "paging": {"entities_per_page": 20, "current_page": 1}})),
            ("task status per shot (summarize)", "summarize", json!({"type": "Task",
                "summaries": [{"field": "id", "type": "count"}],
                "filters": filters(json!([{"path": "project", "relation": "is", "values": [link(&project)]}])),
                "grouping": [{"field": "entity", "type": "exact", "direction": "asc"},
                             {"field": "sg_status_list", "type": "exact", "direction": "asc"}]})),
        ];
        println!();
        println!("{:<45} {:>6} {:>12} {:>12} {:>8}", "query", "rows", "site (ms)", "cache (ms)", "faster");
        for (name, method, params) in &queries {
            let (site_ms, rows) = time_ms(&direct, method, params).await?;
            let (cache_ms, _) = time_ms(&cached, method, params).await?;
            println!("{name:<45} {rows:>6} {site_ms:>12.1} {cache_ms:>12.1} {:>7.0}x", site_ms / cache_ms.max(0.001));
        }

        let new_code = format!("{}_renamed", shot["code"].as_str().unwrap_or("shot"));
        direct
            .call("update", Some(json!({"type": "Shot", "id": shot["id"], "fields": [{"field_name": "code", "value": new_code}]})))
            .await?;
        let changed = Instant::now();
        loop {
            let got = cached
                .call("read", Some(json!({"type": "Shot", "return_fields": ["code"],
                    "filters": filters(json!([{"path": "id", "relation": "is", "values": [shot["id"]]}]))})))
                .await?;
            if got["entities"][0]["code"] == json!(new_code) {
                break;
            }
            if changed.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("the change made on the site did not reach the cache in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!();
        println!("renamed Shot {} on the site; the cache had it {:.2} s later", shot["id"], changed.elapsed().as_secs_f64());
        println!();
        println!("The cache is serving. Try it:");
        println!("    import shotgun_api3");
        println!("    sg = shotgun_api3.Shotgun(\"{proxy_url}\", \"demo\", \"{demo_key}\")");
        println!("    sg.find(\"Shot\", [], [\"code\", \"sg_sequence\", \"sg_status_list\"])");
        println!("(the simulated site itself is at {site_url}). Ctrl-C stops.");
        let _ = tokio::signal::ctrl_c().await;
        tokio::task::spawn_blocking(move || drop(cache)).await.ok();
        Ok(())
    })
}
