//! `nodegate`: a kernel-bypass packet forwarder that replaces kube-proxy.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "nodegate",
    version,
    about = "Kernel-bypass Service load balancer for Kubernetes nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forward traffic with the ports, routes and Services of a configuration file.
    Run {
        /// The configuration (YAML); see docs/configuration.md.
        #[arg(long, short)]
        config: PathBuf,
        /// Write the final counters as JSON to this file.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Print every frame received and sent, and why frames were dropped.
        #[arg(long)]
        trace: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            stats_json,
            trace,
        } => {
            let opts = nodegate::run::RunOptions {
                config,
                stats_json,
                trace,
            };
            match nodegate::run::run(&opts) {
                Ok(stats) => {
                    print!("{}", stats.summary());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
