//! The cache's commands: `setup`, `run`, `status`, `validate` and `rebuild`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use sg_engine::{AnyStore, PostgresStore, SqliteStore};
use sg_protocol::Schema;
use sg_sync::config::{
    cacheable_fields, write_config, AccessSection, ConfigFile, ImportSection, MonitorSection,
    Secret, Serve, ServingSection, SiteSection, API_KEY_ENV,
};
use sg_sync::{Cache, CacheConfig, Database, Leadership, LogProgress, Progress};

use crate::progress::Bars;

/// Where the configuration folder is.
#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// The configuration folder (else $SHOTGUN_CACHE_CONFIG, else ~/shotguncache).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> Result<CacheConfig> {
        let dir = CacheConfig::locate(self.config.as_deref());
        CacheConfig::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Opens the configured store (off any async thread: the PostgreSQL client blocks).
fn open_store(config: &CacheConfig) -> Result<AnyStore> {
    Ok(match config.database() {
        Database::Sqlite(path) => AnyStore::from(
            SqliteStore::open(&path)
                .with_context(|| format!("can't open the cache database {}", path.display()))?,
        ),
        Database::Postgres(url) => AnyStore::from(
            PostgresStore::connect(&url, None)
                .map_err(|e| anyhow::anyhow!("can't connect to the cache database: {e}"))?,
        ),
    })
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("can't start the async runtime")
}

async fn open_cache(
    config: CacheConfig,
    progress: Arc<dyn Progress>,
) -> Result<Arc<Cache<AnyStore>>> {
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config)).await??
    };
    Cache::open(config, store, progress)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Drops a cache off the async threads (the PostgreSQL client must not be dropped on one).
async fn close(cache: Arc<Cache<AnyStore>>) {
    let _ = tokio::task::spawn_blocking(move || drop(cache)).await;
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The site's URL, e.g. https://studio.shotgrid.autodesk.com.
    #[arg(long, value_name = "URL")]
    site: Option<String>,
    /// The API script the cache logs in as.
    #[arg(long, value_name = "NAME")]
    script_name: Option<String>,
    /// The script's key. Prefer setting $SHOTGUN_CACHE_API_KEY (or answering the prompt,
    /// which doesn't echo): a key given here shows in `ps` and the shell's history.
    #[arg(
        long,
        value_name = "KEY",
        env = "SHOTGUN_CACHE_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Write `api_key_file: FILE` into config.yaml instead of the key, and read the key from
    /// FILE's first line (FILE relative to the config folder) now and at every start.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// The entity types to cache, comma-separated (all fields of each).
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    types: Vec<String>,
    /// Where to keep the cache: an SQLite file (relative to the config folder) or postgresql://...
    #[arg(long, value_name = "DATABASE")]
    database: Option<String>,
    /// The address the cache's server listens on.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// What API scripts acting as themselves read from the cache: `cached` (every
    /// cached record) or `site` (nothing: the site answers them). Users are served by
    /// their permission rule set, asked for each of the site's rule sets.
    #[arg(long, value_name = "POLICY", value_parser = ["cached", "site"])]
    scripts: Option<String>,
    /// Don't ask anything: take the flags and defaults, overwrite existing files.
    #[arg(long)]
    yes: bool,
}

fn serve_of(text: &str) -> Option<Serve> {
    match text.trim().to_ascii_lowercase().as_str() {
        "cached" => Some(Serve::Cached),
        "projects" => Some(Serve::Projects),
        "site" => Some(Serve::Site),
        _ => None,
    }
}

fn serve_name(serve: Serve) -> &'static str {
    match serve {
        Serve::Cached => "cached",
        Serve::Projects => "projects",
        Serve::Site => "site",
    }
}

/// The `access:` policy: the default for every rule set the site has, asked
/// for each one when there is a terminal to ask on.
fn access_policy(
    scripts: Option<String>,
    rule_sets: &[String],
    interactive: bool,
) -> Result<AccessSection> {
    let mut access = AccessSection::default();
    let ask_serve = |question: &str, default: Serve, choices: &str| -> Result<Serve> {
        loop {
            let answer = ask(
                &format!("{question} ({choices})"),
                Some(serve_name(default)),
            )?;
            match serve_of(&answer) {
                Some(Serve::Projects) if !choices.contains("projects") => {}
                Some(serve) => return Ok(serve),
                None => {}
            }
            eprintln!("answer one of: {choices}");
        }
    };
    access.scripts = match scripts.as_deref().and_then(serve_of) {
        Some(serve) => serve,
        None if interactive => ask_serve(
            "What do API scripts read from the cache?",
            Serve::Cached,
            "cached, site",
        )?,
        None => Serve::Cached,
    };
    if interactive && !rule_sets.is_empty() {
        eprintln!(
            "The site's permission rule sets for people: {}.\n\
             cached: every cached record; projects: only records of the user's projects; \
             site: nothing from the cache (the site answers, with its own permissions).",
            rule_sets.join(", ")
        );
    }
    for name in rule_sets {
        let default = access
            .rule_sets
            .get(name)
            .copied()
            .unwrap_or(access.other_rule_sets);
        let serve = match interactive {
            true => ask_serve(
                &format!("Users of rule set '{name}' read"),
                default,
                "cached, projects, site",
            )?,
            false => default,
        };
        access.rule_sets.insert(name.clone(), serve);
    }
    Ok(access)
}

fn ask(question: &str, default: Option<&str>) -> Result<String> {
    let stdin = std::io::stdin();
    loop {
        match default {
            Some(d) => eprint!("{question} [{d}]: "),
            None => eprint!("{question}: "),
        }
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            bail!("no answer to '{question}' (stdin closed); give it as a flag");
        }
        let line = line.trim();
        if !line.is_empty() {
            return Ok(line.to_string());
        }
        if let Some(d) = default {
            return Ok(d.to_string());
        }
    }
}

pub fn setup(args: SetupArgs) -> Result<()> {
    let dir = CacheConfig::locate(args.config.config.as_deref());
    let interactive = !args.yes && std::io::stdin().is_terminal();
    let need = |value: Option<String>, question: &str, default: Option<&str>| -> Result<String> {
        match value {
            Some(v) => Ok(v),
            None if interactive => ask(question, default),
            None => default.map(str::to_string).ok_or_else(|| {
                anyhow::anyhow!("{question}: give it as a flag (no terminal to ask on)")
            }),
        }
    };
    let site = need(args.site, "Site URL", None)?;
    let script_name = need(args.script_name, "Script name", Some("shotgun-cache"))?;
    let api_key = match (&args.api_key, &args.api_key_file) {
        (_, Some(file)) => {
            let site = SiteSection {
                base_url: site.clone(),
                script_name: script_name.clone(),
                api_key: Secret::default(),
                api_key_file: Some(file.clone()),
            };
            let (key, _) = sg_sync::config::resolve_api_key(&site, &dir, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            key.expose().to_string()
        }
        (Some(k), None) => k.clone(),
        (None, None) if interactive => rpassword::prompt_password("API key (not shown): ")?,
        (None, None) => {
            bail!("the API key: set ${API_KEY_ENV} (no terminal to ask on)")
        }
    };
    let database = need(
        args.database,
        "Database (an SQLite file in the config folder, or postgresql://...)",
        Some("cache.sqlite"),
    )?;
    let listen = need(args.listen, "Address to serve on", Some("127.0.0.1:8091"))?;

    let runtime = runtime()?;
    let schema = runtime.block_on(async {
        let client =
            sg_client::Client::new(&site, sg_protocol::Auth::script(&script_name, &api_key))?;
        client.info().await?;
        let fields = client.call("schema_read", None).await?;
        let entities = client.call("schema_entity_read", None).await?;
        // The rule sets people can have (the policy names them); a site
        // whose schema has none leaves the list empty.
        let rule_sets = match fields.get("PermissionRuleSet") {
            Some(_) => client
                .read_all(
                    serde_json::json!({"type": "PermissionRuleSet", "return_fields": ["code"],
                        "filters": {"logical_operator": "and", "conditions": [
                            {"path": "entity_type", "relation": "is", "values": ["HumanUser"]}]},
                        "sorts": [{"field_name": "id", "direction": "asc"}]}),
                    500,
                )
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok::<_, sg_client::ClientError>((fields, entities, rule_sets))
    });
    let (fields, entities, rule_sets) = schema
        .map_err(|e| anyhow::anyhow!("can't read the site's schema with these credentials: {e}"))?;
    let rule_sets: Vec<String> = rule_sets
        .iter()
        .filter_map(|r| r.get("code").and_then(|c| c.as_str()).map(str::to_string))
        .collect();
    let schema = Schema::from_json(&fields, Some(&entities))
        .map_err(|f| anyhow::anyhow!("the site's schema: {}", f.message))?;
    let known: Vec<String> = schema
        .entities
        .keys()
        .filter(|t| *t != "EventLogEntry")
        .cloned()
        .collect();
    let types: Vec<String> = if !args.types.is_empty() {
        args.types
    } else if interactive {
        eprintln!(
            "The site has {} entity types: {}",
            known.len(),
            known.join(", ")
        );
        ask(
            "Types to cache, comma-separated",
            Some("Project,Sequence,Shot,Asset,Task,Version,HumanUser"),
        )?
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
    } else {
        bail!("the types to cache: give --types Shot,Asset,...");
    };
    for t in &types {
        if !known.contains(t) {
            bail!(
                "the site has no entity type '{t}' (it has: {})",
                known.join(", ")
            );
        }
    }
    let access = access_policy(args.scripts, &rule_sets, interactive)?;
    if dir.join("config.yaml").exists() && interactive && !args.yes {
        let answer = ask(
            &format!("{} already has a config.yaml; overwrite it?", dir.display()),
            Some("no"),
        )?;
        if !answer.to_ascii_lowercase().starts_with('y') {
            bail!("left {} as it was", dir.display());
        }
    }
    let (api_key, api_key_file) = match args.api_key_file {
        Some(file) => (Secret::default(), Some(file)),
        None => (Secret(api_key), None),
    };
    let file = ConfigFile {
        shotgun: SiteSection {
            base_url: site,
            script_name,
            api_key,
            api_key_file,
        },
        database,
        monitor: MonitorSection::default(),
        import: ImportSection::default(),
        scan_interval: 300.0,
        listen,
        log_level: "info".into(),
        entity_config_foldername: "entity-configs".into(),
        serving: ServingSection::default(),
        access,
    };
    let entities: BTreeMap<String, BTreeSet<String>> = types
        .iter()
        .map(|t| (t.clone(), cacheable_fields(&schema, t)))
        .collect();
    // config.yaml is created readable by its owner only: it may hold the key.
    write_config(&dir, &file, &entities)
        .with_context(|| format!("can't write {}", dir.display()))?;
    eprintln!(
        "wrote {} ({} types); start the cache with: shotgun-cache run --config {}",
        dir.display(),
        types.len(),
        dir.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only serve: leave the syncing to another `run` on the same PostgreSQL database.
    #[arg(long)]
    serve_only: bool,
    /// Serve on this address instead of the config's `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// How long a caller's credentials, once accepted by the site, are trusted while the
    /// site is up (seconds); overrides the config's `access.credential_ttl` (default 600).
    #[arg(long, value_name = "SECS")]
    credential_ttl: Option<f64>,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve cached data only to this script (repeat for more; added to the config's
    /// `access.allow_scripts`). Other scripts, user logins and session tokens are then
    /// answered by the site, as if there were no cache.
    #[arg(long = "allow-script", value_name = "NAME")]
    allow_scripts: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<()> {
    let config = args.config.load()?;
    for exposed in config.exposed_key_files() {
        tracing::warn!(
            "{} holds the API key and is readable by others than its owner; make it private: chmod 600 {}",
            exposed.display(),
            exposed.display()
        );
    }
    let serving = config.file.serving.clone();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(sg_server::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let database = config.database();
    let progress: Arc<dyn Progress> = match Bars::on_terminal() {
        Some(bars) => Arc::new(bars),
        None => Arc::new(LogProgress),
    };
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.file.listen.clone());
    let site_url = config.file.shotgun.base_url.clone();
    let own_script = (
        config.file.shotgun.script_name.clone(),
        config.file.shotgun.api_key.expose().to_string(),
    );
    let mut access = config.file.access.clone();
    if let Some(ttl) = args.credential_ttl {
        access.credential_ttl = ttl;
    }
    access
        .allow_scripts
        .extend(args.allow_scripts.iter().cloned());
    if let Err(e) = access.check() {
        bail!("{e}");
    }
    let runtime = runtime()?;
    let outcome = runtime.block_on(async move {
        let cache = open_cache(config, progress).await?;
        let leadership = match (args.serve_only, database) {
            (true, _) => Leadership::never(),
            (false, Database::Postgres(_)) => {
                Leadership::compete(&cache.engine, "public", Duration::from_secs(2)).await
            }
            (false, Database::Sqlite(_)) => Leadership::sole(),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        let proxy = Arc::new(
            sg_server::Proxy::new(
                cache.clone(),
                &site_url,
                own_script,
                &access,
                sg_server::ProxyLimits::from(&serving),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("can't listen on {listen}"))?;
        let addr = listener.local_addr()?;
        println!("serving on {scheme}://{addr}");
        std::io::stdout().flush()?;
        let mut server_stop = stopped.clone();
        let server = tokio::spawn(sg_server::serve(
            proxy,
            listener,
            sg_server::ServeOptions {
                max_body_bytes: serving.max_body_bytes,
                header_timeout: serving.header_timeout(),
                body_timeout: serving.body_timeout(),
                idle_timeout: serving.idle_timeout(),
                max_connections: serving.max_connections,
                tls,
            },
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        ));
        tracing::info!("keeping the cache in step; Ctrl-C stops");
        let mut stop_seen = stopped.clone();
        let sync = cache.clone().run(stopped, leadership);
        let result = tokio::select! {
            result = sync => result,
            // A step in progress (a long scan, say) is not waited for: every
            // step is one transaction, rolled back here and done again at
            // the next start, as after a crash.
            _ = async {
                let _ = stop_seen.wait_for(|s| *s).await;
                tokio::time::sleep(STOP_GRACE).await;
            } => {
                tracing::info!("stopped without finishing the current step; it is done again at the next start");
                Ok(())
            }
        };
        // Keep-alive clients may hold the server's shutdown open: not for long.
        let _ = tokio::time::timeout(STOP_GRACE, server).await;
        close(cache).await;
        result.map_err(|e| anyhow::anyhow!("{e}"))
    });
    // Blocking database work still running is abandoned, not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    outcome
}

/// How long a stop waits for the sync step and the server's connections.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
}

pub fn status(args: StatusArgs) -> Result<()> {
    let config = args.config.load()?;
    runtime()?.block_on(async move {
        let cache = open_cache(config, Arc::new(LogProgress)).await?;
        let status = cache.status().await.map_err(|e| anyhow::anyhow!("{e}"));
        close(cache).await;
        let status = status?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        println!(
            "{:<20} {:<14} {:>10} {:>10}  imported at",
            "type", "state", "records", "retired"
        );
        for t in &status.types {
            println!(
                "{:<20} {:<14} {:>10} {:>10}  {}",
                t.entity_type,
                t.state,
                t.records,
                t.retired,
                t.imported_at.as_deref().unwrap_or("-")
            );
            if let Some(n) = t.reimported {
                println!("{:<20} {n} records imported into its new tables so far", "");
            }
            if t.names_only {
                println!("{:<20} names only: cached links point at it", "");
            }
        }
        let show = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!();
        println!("event watermark     {}", show(status.watermark));
        println!("site's newest event {}", show(status.site_newest_event));
        println!(
            "lag                 {} events, {} s",
            show(status.lag_events),
            show(status.lag_seconds)
        );
        println!("missing ids waiting {}", status.missing_ids);
        println!(
            "last scan           {}",
            status.last_scan.as_deref().unwrap_or("-")
        );
        println!(
            "site reachable      {}",
            if status.site_reachable { "yes" } else { "NO" }
        );
        println!(
            "sync healthy        {} (last poll {})",
            if status.sync_healthy { "yes" } else { "NO" },
            status.last_poll_at.as_deref().unwrap_or("-")
        );
        if let Some(error) = &status.last_error {
            println!("last error          {error}");
        }
        println!("records marked      {}", status.marked_records.len());
        for m in &status.marked_records {
            println!(
                "  {} {} (event {}): {}; its type is read from the site",
                m.entity_type, m.id, m.event_id, m.reason
            );
        }
        for b in &status.broken_types {
            println!("broken config       {}: {}", b.entity_type, b.error);
        }
        Ok(())
    })
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The types to compare (all cached types when none are given).
    types: Vec<String>,
    /// Compare only this many records per type.
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
}

/// Differences shown per type and field by `validate` (all are counted).
const VALIDATE_EXAMPLES: usize = 5;

/// Returns whether the cache matches the site.
pub fn validate(args: ValidateArgs) -> Result<bool> {
    let config = args.config.load()?;
    runtime()?.block_on(async move {
        let cache = open_cache(config, Arc::new(LogProgress)).await?;
        let differences = cache
            .validate(&args.types, args.sample)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"));
        close(cache).await;
        let differences = differences?;
        print!(
            "{}",
            sg_sync::validate::report(&differences, VALIDATE_EXAMPLES)
        );
        eprintln!("{} difference(s)", differences.len());
        Ok(differences.is_empty())
    })
}

#[derive(Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The types to import again (all cached types when none are given).
    types: Vec<String>,
}

pub fn rebuild(args: RebuildArgs) -> Result<()> {
    let config = args.config.load()?;
    let types: Vec<String> = if args.types.is_empty() {
        config.entities.keys().cloned().collect()
    } else {
        args.types
    };
    runtime()?.block_on(async move {
        let cache = open_cache(config, Arc::new(LogProgress)).await?;
        let marked = cache.request_rebuild(types.clone()).await.map_err(|e| anyhow::anyhow!("{e}"));
        close(cache).await;
        eprintln!("{} of {} type(s) marked; a running `shotgun-cache run` imports them again at its next step", marked?, types.len());
        Ok(())
    })
}
