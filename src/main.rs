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
        /// Kubeconfig of the API server to watch (live runs); overrides `kubernetes.kubeconfig`.
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
    },
    /// Run the Kubernetes "Using Source IP" walkthrough for real in network namespaces (two
    /// nodes running nodegate on veth interfaces, a client, pods) and print what the backend
    /// saw. Needs root.
    Demo {
        /// The port driver of the nodes: `af_xdp` or `af_packet`.
        #[arg(long, default_value = "af_xdp")]
        driver: String,
        /// Take the Services and EndpointSlices from the API server of this kubeconfig (which
        /// must hold the demo's objects) instead of a manifests directory.
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube's HTTP layer logs every failed request as an error; the watchers log the
            // same failures, with what they do about them.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { driver, kubeconfig } => {
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: cannot find the nodegate executable: {e}");
                    return ExitCode::from(2);
                }
            };
            let (source, from) = match kubeconfig {
                Some(path) => {
                    let from = format!("the API server of {}", path.display());
                    (nodegate::demo::Source::Api(path), from)
                }
                None => (
                    nodegate::demo::Source::Manifests,
                    "a manifests directory".to_string(),
                ),
            };
            println!("building the topology of the \"Using Source IP\" page (nodes on {driver}, Services from {from}) and running its experiments...");
            match nodegate::demo::run(&exe, &driver, &source) {
                Ok(rows) => {
                    print!("{}", nodegate::demo::table(&rows));
                    if rows.iter().all(nodegate::demo::Row::as_expected) {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("error: some results differ from what kube-proxy does");
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            config,
            stats_json,
            trace,
            kubeconfig,
        } => {
            let opts = nodegate::run::RunOptions {
                config,
                stats_json,
                trace,
                kubeconfig,
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
