//! `shotgun-cache`: the command line. Thin glue that parses arguments, wires
//! the crates together and decides exit codes; the work lives in the crates.

mod sim;

use clap::{Parser, Subcommand};

/// A local, always-fresh partial replica of a Shotgun site, served over the
/// site's own /api3/json protocol.
#[derive(Parser, Debug)]
#[command(name = "shotgun-cache", version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `sg_sim=debug` (overrides RUST_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a simulated Shotgun site: the /api3/json protocol over a loaded dataset.
    Sim(sim::SimArgs),
}

fn init_logging(filter: Option<&str>) {
    let filter = filter
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log.as_deref());
    let result = match cli.command {
        Command::Sim(args) => sim::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
