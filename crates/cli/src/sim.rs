//! `shotgun-cache sim`: start a simulated site.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use sg_engine::{Engine, SqliteStore};
use sg_protocol::Schema;
use sg_sim::{Credential, Logins, ServerOptions, Site};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port. The address taken is
    /// printed as `listening on http://HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    listen: String,

    /// The site schema, as `schema_read` returns it (JSON).
    #[arg(long, value_name = "PATH")]
    schema: PathBuf,

    /// The entity display names, as `schema_entity_read` returns them (JSON).
    #[arg(long, value_name = "PATH")]
    entity_schema: Option<PathBuf>,

    /// Records to load at start: JSON `{"Type": [{"id": 1, "field": value, ...}]}`.
    #[arg(long, value_name = "PATH")]
    load: Option<PathBuf>,

    /// An API script allowed in, as NAME:KEY (repeatable).
    #[arg(long = "script", value_name = "NAME:KEY", value_parser = Credential::parse_script)]
    scripts: Vec<Credential>,

    /// A user allowed in, as LOGIN:PASSWORD (repeatable).
    #[arg(long = "user", value_name = "LOGIN:PASSWORD", value_parser = Credential::parse_user)]
    users: Vec<Credential>,

    /// Request bodies larger than this many bytes get a fault.
    #[arg(long, default_value_t = 50 * 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,
}

fn read_json(path: &PathBuf) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("can't read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

pub fn run(args: SimArgs) -> Result<()> {
    let fields = read_json(&args.schema)?;
    let entities = args.entity_schema.as_ref().map(read_json).transpose()?;
    let schema = Schema::from_json(&fields, entities.as_ref())
        .map_err(|f| anyhow::anyhow!("{}: {}", args.schema.display(), f.message))?;
    let store = SqliteStore::open_temporary().context("can't create the site's database")?;
    let engine = Engine::new(store, schema).context("can't create the site's tables")?;
    if let Some(path) = &args.load {
        let dataset = read_json(path)?;
        let count = engine
            .load_dataset(&dataset)
            .with_context(|| format!("can't load {}", path.display()))?;
        tracing::info!(records = count, "dataset loaded");
    }
    let mut allowed = args.scripts;
    allowed.extend(args.users);
    if allowed.is_empty() {
        tracing::warn!("no --script or --user given: every authenticated call will be refused");
    }
    let site = Arc::new(Site {
        engine,
        logins: Logins { allowed },
    });

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("can't listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        sg_sim::serve(
            site,
            listener,
            ServerOptions {
                max_body_bytes: args.max_body_bytes,
            },
            shutdown,
        )
        .await
        .context("server failed")
    })
}
