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

// Parsed once at start-up: the size of the largest variant (pktgen's) costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Generate IPv4 UDP/TCP traffic on a port (af_xdp, af_packet, tap, or a pcap file) and
    /// count what comes back on another: rate, loss, latency. Bounded by --duration or
    /// --count. Send only into network namespaces you own: it puts raw frames on the wire.
    Pktgen(PktgenArgs),
}

#[derive(clap::Args)]
struct PktgenArgs {
    /// Where to send: `af_xdp:IFACE[:MODE]`, `af_packet:IFACE`, `tap:IFACE` or `pcap:FILE`.
    #[arg(long)]
    tx: nodegate::pktgen::PortSpec,
    /// Where the frames come back (counted, latency measured): a port spec as for --tx.
    #[arg(long)]
    rx: Option<nodegate::pktgen::PortSpec>,
    /// Destination MAC (the next hop's); required on interfaces.
    #[arg(long, value_parser = parse_mac)]
    dst_mac: Option<[u8; 6]>,
    /// Source MAC; default: the transmit interface's.
    #[arg(long, value_parser = parse_mac)]
    src_mac: Option<[u8; 6]>,
    /// Source address or range (`198.18.1.2`, `198.18.1.2-198.18.1.9`, `2001:db8::1-2001:db8::ff`).
    #[arg(long)]
    src: nodegate::pktgen::Range<std::net::IpAddr>,
    /// Destination address or range, of the same family.
    #[arg(long)]
    dst: nodegate::pktgen::Range<std::net::IpAddr>,
    /// Source port or range: flows = product of the four ranges.
    #[arg(long, default_value = "1024")]
    sport: nodegate::pktgen::Range<u16>,
    /// Destination port or range.
    #[arg(long, default_value = "9")]
    dport: nodegate::pktgen::Range<u16>,
    /// `udp` or `tcp` (ACK segments of established flows).
    #[arg(long, default_value = "udp")]
    proto: nodegate::pktgen::Proto,
    /// Frame size on the wire, FCS included: 64..=1518.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// `max`, frames per second (`500000`, `1.5M`) or a line rate (`10G`).
    #[arg(long, default_value = "max")]
    rate: nodegate::pktgen::Rate,
    /// Seconds to send (at most 600).
    #[arg(long)]
    duration: Option<f64>,
    /// Frames to send.
    #[arg(long)]
    count: Option<u64>,
    /// Frames per transmit call (1..=256).
    #[arg(long, default_value_t = 64)]
    burst: usize,
    /// Milliseconds the receiver keeps counting after the last frame.
    #[arg(long, default_value_t = 200)]
    drain_ms: u64,
    /// Queues of the ports to use, one sending (and receiving) thread each: lane `q` sends on
    /// queue `q` of --tx and receives on queue `q` of --rx. Above 1, af_xdp ports only.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Pin the generator to these CPUs (`0` or `0,2`): thread `q` to the `q`-th, round robin.
    #[arg(long, value_delimiter = ',')]
    cpu: Vec<usize>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<dataplane::wire::MacAddr>()
        .map(|m| m.0)
        .map_err(|_| format!("`{s}` is not a MAC address (02:00:00:00:00:01)"))
}

/// `nodegate pktgen`: opens the ports, runs the generator, prints (and writes) the report.
fn pktgen(a: PktgenArgs) -> Result<(), String> {
    use nodegate::pktgen::*;
    let schedule = Schedule {
        rate: a.rate,
        duration: match a.duration {
            Some(d) if d.is_finite() && d > 0.0 => Some(std::time::Duration::from_secs_f64(d)),
            Some(d) => return Err(format!("--duration {d}: expected seconds above 0")),
            None => None,
        },
        count: a.count,
        burst: a.burst,
        drain: std::time::Duration::from_millis(a.drain_ms),
    };
    schedule.check()?;
    let src_mac = match (a.src_mac, a.tx.interface()) {
        (Some(m), _) => m,
        (None, Some(i)) => std::fs::read_to_string(format!("/sys/class/net/{i}/address"))
            .ok()
            .and_then(|t| parse_mac(t.trim()).ok())
            .ok_or_else(|| format!("cannot read the MAC of `{i}`; give --src-mac"))?,
        (None, None) => [2, 0, 0, 0, 0, 1],
    };
    let dst_mac = match (a.dst_mac, a.tx.interface()) {
        (Some(m), _) => m,
        (None, Some(_)) => return Err("give --dst-mac: the MAC of the next hop".into()),
        (None, None) => [2, 0, 0, 0, 0, 2],
    };
    let traffic = Traffic {
        src_mac,
        dst_mac,
        src: a.src,
        dst: a.dst,
        sport: a.sport,
        dport: a.dport,
        proto: a.proto,
        size: a.size,
    };
    traffic.check()?;
    let queues = usize::from(a.queues);
    let pool = dataplane::mbuf::Pool::with_region(16 * 1024 * queues)
        .map_err(|e| format!("cannot allocate the frame region: {e}"))?;
    let clock = nodegate::pcap::ReplayClock::default();
    let tx = open(&a.tx, a.queues, &pool, &clock).map_err(|e| format!("--tx {}: {e}", a.tx))?;
    let rx = match &a.rx {
        Some(spec) => {
            if matches!(spec, PortSpec::Pcap { .. }) {
                return Err("--rx cannot be a pcap file".into());
            }
            Some(open(spec, a.queues, &pool, &clock).map_err(|e| format!("--rx {spec}: {e}"))?)
        }
        None => None,
    };
    let report = if queues == 1 {
        if let Some(&cpu) = a.cpu.first() {
            if !ffi::pin_current_thread(cpu) {
                return Err(format!("cannot pin to CPU {cpu}"));
            }
        }
        let (mut tx, mut rx) = (tx, rx);
        let mut cache = dataplane::mbuf::PoolCache::new(pool);
        generate(
            &traffic,
            &schedule,
            tx.ports[0].as_mut(),
            rx.as_mut()
                .map(|r| r.ports[0].as_mut() as &mut dyn dataplane::port::Port),
            &mut cache,
            Some(&clock),
        )
    } else {
        // The sockets move to the lanes' threads; the XDP programs stay attached until the
        // `Opened` shells drop at the end.
        let (mut tx, mut rx) = (tx, rx);
        let mut rx_ports = rx.as_mut().map(|r| std::mem::take(&mut r.ports));
        let lanes = std::mem::take(&mut tx.ports)
            .into_iter()
            .enumerate()
            .map(|(q, port)| Lane {
                tx: port,
                rx: rx_ports.as_mut().map(|p| p.remove(0)),
                cpu: (!a.cpu.is_empty()).then(|| a.cpu[q % a.cpu.len()]),
            })
            .collect();
        let report = generate_lanes(&traffic, &schedule, lanes, &pool)?;
        drop((tx, rx));
        report
    };
    print(&report);
    if let Some(path) = a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Standard error for the log, whatever happens to it: a forwarder must not stop because whoever
/// read its log went away (tracing-subscriber reports a failed write with `eprintln!`, which
/// panics on a closed pipe). Lost lines are lost; forwarding goes on.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube's HTTP layer logs every failed request as an error; the watchers log the
            // same failures, with what they do about them.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .with_writer(|| LogWriter)
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
        Command::Pktgen(args) => match pktgen(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
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
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}
