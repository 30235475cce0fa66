//! `shotgun-cache sim`: start a simulated site.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use sg_engine::{Engine, SqliteStore};
use sg_protocol::Schema;
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port. The address taken is
    /// printed as `listening on http://HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    listen: String,

    /// The site schema, as `schema_read` returns it (JSON). Without it, a
    /// built-in schema of a typical production (Project, Sequence, Shot,
    /// Asset, Task, Version, PublishedFile, Note, HumanUser, ...).
    #[arg(long, value_name = "PATH")]
    schema: Option<PathBuf>,

    /// Fill the site with a generated production: small (about 5,000
    /// records), medium (about 100,000) or large (about 1,000,000). Not done
    /// when --state names a site that already exists.
    #[arg(long, value_name = "SIZE")]
    generate: Option<sg_sim::generate::Size>,

    /// Seed of the generated production (the same seed gives the same data on the same day).
    #[arg(long, default_value_t = 1, value_name = "N")]
    seed: u64,

    /// The entity display names, as `schema_entity_read` returns them (JSON).
    #[arg(long, value_name = "PATH")]
    entity_schema: Option<PathBuf>,

    /// Records to load at start: JSON `{"Type": [{"id": 1, "field": value, ...}]}`.
    #[arg(long, value_name = "PATH")]
    load: Option<PathBuf>,

    /// Keep the site in this SQLite file, so it survives restarts (in a
    /// throwaway file without it). The schema is kept beside it, in PATH.schema.json.
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,

    /// An API script allowed in, as NAME:KEY, or NAME:KEY:no-events for a script
    /// whose writes log no events (the site's "Generate Events" switch off). Repeatable.
    #[arg(long = "script", value_name = "NAME:KEY[:no-events]", value_parser = Credential::parse_script)]
    scripts: Vec<Credential>,

    /// A user allowed in, as LOGIN:PASSWORD (repeatable).
    #[arg(long = "user", value_name = "LOGIN:PASSWORD", value_parser = Credential::parse_user)]
    users: Vec<Credential>,

    /// Delay every call by this many milliseconds, or by a random amount in
    /// N-M, as a hosted site does (100-500 is typical).
    #[arg(long, value_name = "N[-M]", value_parser = parse_latency)]
    latency_ms: Option<(Duration, Duration)>,

    /// Fail this fraction of calls as real sites fail: HTTP 502/503/504, a
    /// reset connection, or a stalled reply. A failed call changes nothing.
    #[arg(long, default_value_t = 0.0, value_name = "F", value_parser = parse_fraction)]
    fault_rate: f64,

    /// How long a stalled reply stalls, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    stall_ms: u64,

    /// Make the event rows of some writes visible late, up to this many
    /// milliseconds, so ids appear out of order as on real sites.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    late_commit_ms: u64,

    /// Leave this fraction of event ids never visible.
    #[arg(long, default_value_t = 0.0, value_name = "F", value_parser = parse_fraction)]
    lost_event_rate: f64,

    /// Every this many writes, also log event rows a follower must skip (a
    /// `Toolkit_*` row, and `Shotgun_Reading_Change` for Notes). 0 turns it off.
    #[arg(long, default_value_t = 25, value_name = "N")]
    noise_every: u64,

    /// Request bodies larger than this many bytes get a fault.
    #[arg(long, default_value_t = 50 * 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a fraction between 0 and 1, got '{text}'")),
    }
}

fn parse_latency(text: &str) -> Result<(Duration, Duration), String> {
    let ms = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("expected N or N-M milliseconds, got '{text}'"))
    };
    let (low, high) = match text.split_once('-') {
        Some((a, b)) => (ms(a)?, ms(b)?),
        None => (ms(text)?, ms(text)?),
    };
    if high < low {
        return Err(format!("the range {text} goes backwards"));
    }
    Ok((Duration::from_millis(low), Duration::from_millis(high)))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("can't read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn schema_file_of(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".schema.json");
    PathBuf::from(name)
}

pub fn run(args: SimArgs) -> Result<()> {
    let saved_schema = args
        .state
        .as_deref()
        .map(schema_file_of)
        .filter(|p| p.exists());
    let schema = match &saved_schema {
        Some(path) => {
            let saved = read_json(path)?;
            Schema::from_json(&saved["fields"], Some(&saved["entities"]))
                .map_err(|f| anyhow::anyhow!("{}: {}", path.display(), f.message))?
        }
        None => match &args.schema {
            Some(path) => {
                let fields = read_json(path)?;
                let entities = args.entity_schema.as_deref().map(read_json).transpose()?;
                Schema::from_json(&fields, entities.as_ref())
                    .map_err(|f| anyhow::anyhow!("{}: {}", path.display(), f.message))?
            }
            None => sg_sim::builtin::schema(),
        },
    };
    let fresh = saved_schema.is_none();
    let store = match &args.state {
        Some(path) => {
            SqliteStore::open(path).with_context(|| format!("can't open {}", path.display()))?
        }
        None => SqliteStore::open_temporary().context("can't create the site's database")?,
    };
    let engine = Engine::new(store, schema).context("can't create the site's tables")?;
    if let (Some(size), true) = (args.generate, fresh) {
        let started = std::time::Instant::now();
        let count = sg_sim::generate::generate(&engine, size, args.seed, &mut |entity_type, n| {
            tracing::debug!(entity_type, records = n, "generating");
        })
        .context("can't generate the production")?;
        tracing::info!(
            records = count,
            seconds = started.elapsed().as_secs_f64(),
            "production generated"
        );
    }
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
        bail!("give at least one --script NAME:KEY or --user LOGIN:PASSWORD, or no call could authenticate");
    }
    let faults = EventFaults {
        late_commit: Duration::from_millis(args.late_commit_ms),
        lost_rate: args.lost_event_rate,
        noise_every: args.noise_every,
    };
    let mut site = Site::new(engine, Logins { allowed }, faults)
        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    if let Some(state) = &args.state {
        site.persist_schema_to(schema_file_of(state))
            .context("can't save the schema beside the state")?;
    }
    let site = Arc::new(site);
    let options = ServerOptions {
        max_body_bytes: args.max_body_bytes,
        latency: args.latency_ms,
        fault_rate: args.fault_rate,
        stall: Duration::from_millis(args.stall_ms),
    };

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
        sg_sim::serve(site, listener, options, shutdown)
            .await
            .context("server failed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_takes_a_value_or_a_range() {
        assert_eq!(
            parse_latency("150").unwrap(),
            (Duration::from_millis(150), Duration::from_millis(150))
        );
        assert_eq!(
            parse_latency("100-500").unwrap(),
            (Duration::from_millis(100), Duration::from_millis(500))
        );
        assert!(parse_latency("500-100").is_err());
        assert!(parse_latency("fast").is_err());
    }

    #[test]
    fn fractions_are_between_zero_and_one() {
        assert_eq!(parse_fraction("0.2").unwrap(), 0.2);
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_fraction("-0.1").is_err());
    }
}
