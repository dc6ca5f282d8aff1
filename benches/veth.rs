//! veth forwarding side by side with the kernel, in one run (docs/benchmarks.md, "veth
//! forwarding (issue 4)"): a flood of 64-byte UDP frames from a generator namespace to a sink
//! namespace through a node namespace that forwards it with, in turn, the kernel
//! (`ip_forward`; as veth comes, then with a threaded NAPI on the other CPU), nodegate on
//! `af_packet` and nodegate on `af_xdp` (one worker each), after the generator straight into
//! the sink as its own ceiling.
//!
//! ```text
//!   gen ns                node ns                 sink ns
//!   g0 198.18.1.2 ─veth─ n0 (198.18.1.1)  n1 (198.18.2.1) ─veth─ s0 198.18.2.2
//!   g1 198.18.3.2 ─────────────────── veth ───────────────────── s1 198.18.3.3
//! ```
//!
//! `cargo bench --bench veth` (add `-- --quick`, or set `NODEGATE_VETH_QUICK=1`, for a short
//! run). Needs root, two CPUs, iproute2, ethtool and procps. Without `--bench` (that is, under
//! `cargo test`) it only checks its frame builder.
//!
//! The generator is this binary again (`--generate`), started inside the generator namespace
//! and pinned to CPU 0: a transmit-only AF_XDP socket (`ffi::af_xdp::XskSocket::open_tx`, copy
//! mode) over a region of 4096 frames, built once (4096 source ports) and sent again and again
//! as they complete, 32 per kick. The sink is this binary too (`--sink`): a UDP socket on the destination port
//! that is never read, so the sink's kernel drops frames at the socket rather than answering
//! each. Counting happens outside both, from the veths' counters over the same window: frames
//! that entered the forwarder's receiving veth plus those it refused, and frames the
//! forwarder's sending veth delivered to the sink.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod netbench;
use netbench::{must, Guard, Namespaces, Nodegate, ThreadedNapi};

/// CPU of the generator; nodegate's worker runs on `FWD_CPU`.
const GEN_CPU: usize = 0;
const FWD_CPU: usize = 1;
/// Frame length handed to the interface: the minimum Ethernet frame, 64 bytes on a wire once
/// the 4-byte FCS is added.
const FRAME_LEN: usize = 60;
const FIRST_SOURCE_PORT: u16 = 1024;
const DEST_PORT: u16 = 9; // discard
const BURST: usize = 32;
/// Frames the generator cycles through (one source port each).
const GEN_FRAMES: usize = 4096;

/// The addresses of one generator frame stream.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stream {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes a 60-byte Ethernet + IPv4 + UDP frame (18 bytes of payload, checksums filled in)
/// from `source_port` into `buf`; returns its length.
fn build_frame(buf: &mut [u8], s: &Stream, source_port: u16) -> usize {
    let f = &mut buf[..FRAME_LEN];
    f.fill(0);
    f[0..6].copy_from_slice(&s.dst_mac);
    f[6..12].copy_from_slice(&s.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (FRAME_LEN - 14) as u16;
    let udp_len = ip_len - 20;
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&s.src_ip);
        ip[16..20].copy_from_slice(&s.dst_ip);
        let c = checksum(&[ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    f[34..36].copy_from_slice(&source_port.to_be_bytes());
    f[36..38].copy_from_slice(&DEST_PORT.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&s.src_ip);
    pseudo[4..8].copy_from_slice(&s.dst_ip);
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
    let c = match checksum(&[&pseudo, &f[34..]]) {
        0 => 0xffff,
        c => c,
    };
    f[40..42].copy_from_slice(&c.to_be_bytes());
    FRAME_LEN
}

fn parse_mac(s: &str) -> [u8; 6] {
    s.trim()
        .parse::<dataplane::wire::MacAddr>()
        .unwrap_or_else(|_| panic!("bad MAC {s:?}"))
        .0
}

fn parse_ip(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>()
        .unwrap_or_else(|_| panic!("bad address {s:?}"))
        .octets()
}

/// Generator mode: `--generate IFACE SRC_MAC DST_MAC SRC_IP DST_IP SECONDS CPU`. Floods until
/// the time is up and prints `<frames completed> <seconds>`.
fn generate(args: &[String]) {
    let [iface, src_mac, dst_mac, src_ip, dst_ip, secs, cpu] = args else {
        panic!("--generate IFACE SRC_MAC DST_MAC SRC_IP DST_IP SECONDS CPU, got {args:?}");
    };
    let stream = Stream {
        src_mac: parse_mac(src_mac),
        dst_mac: parse_mac(dst_mac),
        src_ip: parse_ip(src_ip),
        dst_ip: parse_ip(dst_ip),
    };
    let secs: f64 = secs.parse().expect("seconds");
    let cpu: usize = cpu.parse().expect("cpu");
    if !ffi::pin_current_thread(cpu) {
        eprintln!("generator: could not pin to CPU {cpu}");
    }
    // 4096 frames in their own region, built once (one source port each), sent again and again
    // as the kernel completes them: never rewritten, never copied by us.
    let (region, mut free) = ffi::frames::FrameRegion::new(GEN_FRAMES).expect("a frame region");
    for (i, f) in free.iter_mut().enumerate() {
        build_frame(
            f.data_mut(),
            &stream,
            FIRST_SOURCE_PORT.wrapping_add(i as u16),
        );
    }
    let mut sock = ffi::af_xdp::XskSocket::open_tx(iface, 0, region).unwrap_or_else(|e| {
        eprintln!("generator: {e}");
        std::process::exit(2)
    });
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    // Bounded by time, and by a count no machine reaches in that time.
    let max_kicks = ((secs + 1.0) * 50e6) as u64;
    let (mut kicks, mut completed) = (0u64, 0u64);
    while kicks < max_kicks {
        for _ in 0..BURST {
            let Some(f) = free.pop() else { break };
            if let Err(f) = sock.send(f, FRAME_LEN) {
                free.push(f);
                break;
            }
        }
        sock.flush(|f| {
            completed += 1;
            free.push(f);
        });
        kicks += 1;
        if kicks % 64 == 0 && Instant::now() >= end {
            break;
        }
    }
    println!("{} {:.6}", completed, start.elapsed().as_secs_f64());
}

/// Sink mode: `--sink SECONDS`. Holds a UDP socket on the flood's destination port, never read,
/// for at most SECONDS: once its buffer is full the kernel drops each frame at the socket. Without
/// it every frame would be answered with an ICMP port unreachable, whose per-destination rate
/// limiter routes each one first; veth charges that to whoever sent into the sink.
fn sink(args: &[String]) {
    let [secs] = args else {
        panic!("--sink SECONDS, got {args:?}");
    };
    let secs: f64 = secs.parse().expect("seconds");
    let _socket = std::net::UdpSocket::bind(("0.0.0.0", DEST_PORT)).expect("bind the sink socket");
    println!("bound");
    std::thread::sleep(Duration::from_secs_f64(secs));
}

/// `cargo test` mode: the frames the generator sends are well-formed.
fn self_check() {
    let s = Stream {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: [198, 18, 1, 2],
        dst_ip: [198, 18, 2, 2],
    };
    let mut buf = [0xaau8; 2048];
    let mut ports = std::collections::HashSet::new();
    for port in [FIRST_SOURCE_PORT, 1500, 5119, 65535] {
        assert_eq!(build_frame(&mut buf, &s, port), FRAME_LEN);
        let frame = &buf[..FRAME_LEN];
        let p = etherparse::SlicedPacket::from_ethernet(frame).expect("a valid frame");
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source(), s.src_ip);
        assert_eq!(ip.header().destination(), s.dst_ip);
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.source_port(), port);
        assert_eq!(udp.destination_port(), DEST_PORT);
        let uh = udp.to_header();
        assert_eq!(
            uh.checksum,
            uh.calc_checksum_ipv4(&h, udp.payload()).unwrap(),
            "UDP checksum"
        );
        // Our own checksum over the whole datagram with its checksum must verify to zero.
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&s.src_ip);
        pseudo[4..8].copy_from_slice(&s.dst_ip);
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&26u16.to_be_bytes());
        assert_eq!(checksum(&[&pseudo, &frame[34..]]), 0);
        assert!(
            buf[FRAME_LEN..].iter().all(|&b| b == 0xaa),
            "wrote past the frame"
        );
        ports.insert(port);
    }
    assert_eq!(ports.len(), 4);
    assert_eq!(parse_mac("02:0a:FF:00:00:01"), [2, 10, 255, 0, 0, 1]);
    println!("veth bench: frame builder checked (run `cargo bench --bench veth` to measure)");
}

// ---------------------------------------------------------------------------------------------
// The measurement.

/// Sleeps, but gives up (panics, so every guard cleans up) on SIGINT/SIGTERM.
fn sleep(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        assert!(!ffi::signal::stop_requested(), "interrupted");
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
}

/// The three namespaces and their veth pairs; deleting the namespaces deletes the links.
struct Topology {
    gen: String,
    node: String,
    sink: String,
    _namespaces: Namespaces,
}

impl Topology {
    fn create() -> Topology {
        let id = std::process::id();
        let (gen, node, sink) = (
            format!("ngv-gen-{id}"),
            format!("ngv-node-{id}"),
            format!("ngv-sink-{id}"),
        );
        let t = Topology {
            _namespaces: Namespaces::add(&[&gen, &node, &sink]),
            gen,
            node,
            sink,
        };
        for (a, a_ns, b, b_ns) in [
            ("g0", &t.gen, "n0", &t.node),
            ("n1", &t.node, "s0", &t.sink),
            ("g1", &t.gen, "s1", &t.sink),
        ] {
            must(&[
                "ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns",
                b_ns,
            ]);
        }
        for (ns, cmds) in [
            (
                &t.gen,
                vec![
                    "addr add 198.18.1.2/24 dev g0",
                    "addr add 198.18.3.2/24 dev g1",
                    "link set g0 up",
                    "link set g1 up",
                    "link set lo up",
                    "route add 198.18.2.0/24 via 198.18.1.1",
                ],
            ),
            (
                &t.node,
                vec!["link set n0 up", "link set n1 up", "link set lo up"],
            ),
            (
                &t.sink,
                vec![
                    "addr add 198.18.2.2/24 dev s0",
                    "addr add 198.18.3.3/24 dev s1",
                    "link set s0 up",
                    "link set s1 up",
                    "link set lo up",
                    "route add 198.18.1.0/24 via 198.18.2.1",
                ],
            ),
        ] {
            for c in cmds {
                let mut args = vec!["ip", "-n", ns.as_str()];
                args.extend(c.split(' '));
                must(&args);
            }
        }
        // Senders compute their checksums (veth would otherwise hand on partial ones), and no
        // GRO/GSO: frames stay frames, and plain veth stays in its non-NAPI receive path.
        for (ns, dev) in [
            (&t.gen, "g0"),
            (&t.gen, "g1"),
            (&t.node, "n0"),
            (&t.node, "n1"),
            (&t.sink, "s0"),
            (&t.sink, "s1"),
        ] {
            must(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "gso", "off", "tso",
                "off", "gro", "off",
            ]);
        }
        t
    }

    fn mac(&self, ns: &str, dev: &str) -> String {
        must(&[
            "ip",
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/address"),
        ])
        .trim()
        .to_string()
    }
}

/// Packet counters of one interface.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    rx_packets: u64,
    tx_packets: u64,
    tx_dropped: u64,
}

/// The counters of every link of namespace `ns`, read at one moment (one `ip` call).
fn links(ns: &str) -> Vec<(String, Counters)> {
    let out = must(&["ip", "-n", ns, "-s", "-j", "link", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    v.as_array()
        .expect("a list of links")
        .iter()
        .map(|l| {
            let s = &l["stats64"];
            let get = |dir: &str, field: &str| s[dir][field].as_u64().unwrap_or(0);
            (
                l["ifname"].as_str().unwrap_or_default().to_string(),
                Counters {
                    rx_packets: get("rx", "packets"),
                    tx_packets: get("tx", "packets"),
                    tx_dropped: get("tx", "dropped"),
                },
            )
        })
        .collect()
}

fn link(ns: &str, dev: &str) -> Counters {
    links(ns)
        .into_iter()
        .find(|(name, _)| name == dev)
        .unwrap_or_else(|| panic!("no link {dev} in {ns}"))
        .1
}

/// Where a flood is counted. A veth's `rx_packets` are its peer's successful sends, so both
/// ends of the path can be read in one namespace: frames that entered the forwarder's receiving
/// veth, and frames the forwarder's sending veth delivered to the sink (for the ceiling, both
/// are the sink's receiving veth). Frames the receiving veth refused (its queue was full) are
/// the generator interface's `tx_dropped`.
struct Path<'a> {
    gen_dev: &'a str,
    dst_mac: &'a str,
    src_ip: &'a str,
    dst_ip: &'a str,
    /// Namespace holding `entry` (counted by `rx_packets`) and `exit` (by `tx_packets`, or by
    /// `rx_packets` when it is the same link).
    count_ns: &'a str,
    entry: &'a str,
    exit: &'a str,
}

#[derive(Clone, Copy)]
struct Snapshot {
    at: Instant,
    /// Frames the generator put on its interface: taken by the other end, or refused by it.
    sent: u64,
    refused: u64,
    received: u64,
}

fn snapshot(t: &Topology, p: &Path) -> Snapshot {
    let before = Instant::now();
    let l = links(p.count_ns);
    let after = Instant::now();
    let find = |dev: &str| {
        l.iter()
            .find(|(name, _)| name == dev)
            .unwrap_or_else(|| panic!("no link {dev}"))
            .1
    };
    let entry = find(p.entry).rx_packets;
    let received = if p.exit == p.entry {
        entry
    } else {
        find(p.exit).tx_packets
    };
    let refused = link(&t.gen, p.gen_dev).tx_dropped;
    Snapshot {
        at: before + (after - before) / 2,
        sent: entry + refused,
        refused,
        received,
    }
}

struct Timing {
    warmup: Duration,
    /// The measured window, sampled `samples` times.
    measure: Duration,
    samples: u32,
}

/// One measured flood: what was sent and received over the window.
struct Measurement {
    sent_mpps: f64,
    fwd_mpps: f64,
    /// Lowest and highest forwarded rate of the window's samples.
    fwd_range: (f64, f64),
    loss: f64,
    /// Part of the loss refused by the forwarder's receiving veth (its queue was full).
    refused: f64,
}

/// Floods along `p` for warm-up + window, counting over the window.
fn flood(t: &Topology, timing: &Timing, p: &Path) -> Measurement {
    let exe = std::env::current_exe().expect("own path");
    let src_mac = t.mac(&t.gen, p.gen_dev);
    let total = timing.warmup + timing.measure + Duration::from_millis(300);
    let child = nodegate::netns::exec(&t.gen)
        .arg(&exe)
        .args([
            "--generate",
            p.gen_dev,
            &src_mac,
            p.dst_mac,
            p.src_ip,
            p.dst_ip,
            &format!("{:.3}", total.as_secs_f64()),
            &GEN_CPU.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the generator");
    let mut gen = Guard(child);
    sleep(timing.warmup);
    let mut snaps = vec![snapshot(t, p)];
    let start = Instant::now();
    for i in 1..=timing.samples {
        let due = start + timing.measure * i / timing.samples;
        sleep(due.saturating_duration_since(Instant::now()));
        snaps.push(snapshot(t, p));
    }
    // The generator stops by itself shortly after; wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gen.0.try_wait().expect("generator status").is_none() {
        assert!(Instant::now() < deadline, "generator did not stop");
        sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    if let Some(mut stdout) = gen.0.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    let status = gen.0.wait().expect("generator status");
    assert!(status.success(), "generator failed: {status:?}");
    let completed: u64 = out
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .expect("generator output");
    assert!(completed > 0, "the generator sent nothing");

    let (a, b) = (snaps[0], snaps[snaps.len() - 1]);
    let secs = (b.at - a.at).as_secs_f64();
    let sent = b.sent - a.sent;
    let received = b.received - a.received;
    let rate = |x: &Snapshot, y: &Snapshot| {
        (y.received - x.received) as f64 / (y.at - x.at).as_secs_f64() / 1e6
    };
    let rates: Vec<f64> = snaps.windows(2).map(|w| rate(&w[0], &w[1])).collect();
    let ratio = |n: u64| {
        if sent == 0 {
            0.0
        } else {
            n as f64 / sent as f64
        }
    };
    Measurement {
        sent_mpps: sent as f64 / secs / 1e6,
        fwd_mpps: received as f64 / secs / 1e6,
        fwd_range: (
            rates.iter().copied().fold(f64::INFINITY, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
        ),
        loss: 1.0 - ratio(received),
        refused: ratio(b.refused - a.refused),
    }
}

/// A `nodegate run` inside the node namespace, stopped with SIGTERM by [`Nodegate::stop`] and
/// killed on drop otherwise.
/// The directory of a nodegate run with one worker on `driver` ports n0 and n1.
fn nodegate_dir(driver: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mode = if driver == "af_xdp" {
        ", mode: auto"
    } else {
        ""
    };
    std::fs::write(
            dir.path().join("nodegate.yaml"),
            format!(
                "node: {{name: bench, addresses: [\"198.18.1.1\"]}}\n\
                 workers: 1\n\
                 cpus: [{FWD_CPU}]\n\
                 ports:\n\
                 \x20 - {{name: gen, driver: {driver}, interface: n0, queues: 1{mode}, addresses: [\"198.18.1.1/24\"]}}\n\
                 \x20 - {{name: sink, driver: {driver}, interface: n1, queues: 1{mode}, addresses: [\"198.18.2.1/24\"]}}\n"
            ),
        )
        .expect("write the configuration");
    dir
}

/// A fraction as a percentage with one decimal; a loss that rounds to zero from below (the
/// two ends are read a few milliseconds apart) shows as 0.0.
fn percent(x: f64) -> String {
    let p = x * 100.0;
    if p.abs() < 0.05 {
        "0.0 %".into()
    } else {
        format!("{p:.1} %")
    }
}

/// Microseconds some task has waited for a CPU since boot (`/proc/pressure/cpu`, "some").
fn cpu_pressure_us() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    let line = text.lines().find(|l| l.starts_with("some"))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The sink's UDP socket (see [`sink`]), for the whole run.
fn start_sink(t: &Topology) -> Guard {
    let exe = std::env::current_exe().expect("own path");
    let child = nodegate::netns::exec(&t.sink)
        .arg(&exe)
        .args(["--sink", "600"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sink");
    let mut guard = Guard(child);
    let mut line = String::new();
    let stdout = guard.0.stdout.take().expect("stdout");
    // The sink prints one line, at once; a failed bind exits, which ends the read too.
    let _ = BufReader::new(stdout).read_line(&mut line);
    assert_eq!(line.trim(), "bound", "the sink could not bind its socket");
    guard
}

/// A table row.
struct Row {
    system: String,
    m: Measurement,
    note: String,
}

/// Nodegate's nonzero drop counters, as a short note.
fn drop_note(stats: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(drops) = stats["total"]["drops"].as_object() {
        for (reason, n) in drops {
            if n.as_u64().unwrap_or(0) > 0 {
                parts.push(format!("{reason} {n}"));
            }
        }
    }
    if parts.is_empty() {
        "no drops counted by nodegate".into()
    } else {
        format!("nodegate drops: {}", parts.join(", "))
    }
}

fn bench(quick: bool) {
    ffi::signal::install_stop_handler().expect("signal handler");
    let timing = if quick {
        Timing {
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(1),
            samples: 4,
        }
    } else {
        Timing {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
            samples: 5,
        }
    };
    let cpus = ffi::available_cpus();
    assert!(
        cpus.contains(&GEN_CPU) && cpus.contains(&FWD_CPU),
        "needs CPUs {GEN_CPU} and {FWD_CPU}, have {cpus:?}"
    );
    let (pressure_start, run_start) = (cpu_pressure_us(), Instant::now());
    let t = Topology::create();
    let n0 = t.mac(&t.node, "n0");
    let s1 = t.mac(&t.sink, "s1");
    let _sink = start_sink(&t);
    let mut rows = Vec::new();

    // (0) The generator's ceiling: straight into the sink, no forwarder.
    let direct = Path {
        gen_dev: "g1",
        dst_mac: &s1,
        src_ip: "198.18.3.2",
        dst_ip: "198.18.3.3",
        count_ns: &t.sink,
        entry: "s1",
        exit: "s1",
    };
    let through = Path {
        gen_dev: "g0",
        dst_mac: &n0,
        src_ip: "198.18.1.2",
        dst_ip: "198.18.2.2",
        count_ns: &t.node,
        entry: "n0",
        exit: "n1",
    };
    let m = flood(&t, &timing, &direct);
    rows.push(Row {
        system: "generator → sink, no forwarder".into(),
        m,
        note: "the generator's ceiling (the sink's receive runs on the generator's CPU too)".into(),
    });

    // (a) The kernel: addresses on the node's veths, ip_forward on, no RPS. First as veth
    // comes (everything in the softirq of the generator's sends), then with n0's receive in a
    // NAPI thread pinned to the forwarder's CPU.
    for c in [
        "addr add 198.18.1.1/24 dev n0",
        "addr add 198.18.2.1/24 dev n1",
    ] {
        let mut args = vec!["ip", "-n", t.node.as_str()];
        args.extend(c.split(' '));
        must(&args);
    }
    must(&[
        "ip",
        "netns",
        "exec",
        &t.node,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    let m = flood(&t, &timing, &through);
    rows.push(Row {
        system: "kernel, ip_forward".into(),
        m,
        note: format!("no RPS, no NAPI: forwarding runs in the softirq of the generator's sends, on CPU {GEN_CPU}"),
    });
    let napi = ThreadedNapi::enable(&t.node, "n0", &[FWD_CPU]);
    let m = flood(&t, &timing, &through);
    rows.push(Row {
        system: "kernel, ip_forward, threaded NAPI".into(),
        m,
        note: format!(
            "n0 with GRO on (so veth receives through NAPI), NAPI thread pinned to CPU {FWD_CPU}"
        ),
    });
    drop(napi);
    must(&[
        "ip",
        "netns",
        "exec",
        &t.node,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=0",
    ]);
    for dev in ["n0", "n1"] {
        must(&["ip", "-n", &t.node, "addr", "flush", "dev", dev]);
    }

    // (b), (c) nodegate, one worker on FWD_CPU; the node's veths have no kernel addresses.
    for driver in ["af_packet", "af_xdp"] {
        let run = Nodegate::start(&t.node, nodegate_dir(driver));
        let mut system = format!("nodegate {driver}, 1 worker");
        if driver == "af_xdp" {
            let native = run
                .log
                .lines()
                .filter(|l| l.contains("port up"))
                .all(|l| l.contains("xdp=\"native\"") || l.contains("xdp=native"));
            let zerocopy = run
                .log
                .lines()
                .filter(|l| l.contains("port up"))
                .all(|l| l.contains("zerocopy=true"));
            system.push_str(&format!(
                " ({} XDP, {} mode)",
                if native { "native" } else { "skb" },
                if zerocopy { "zero-copy" } else { "copy" }
            ));
        }
        let m = flood(&t, &timing, &through);
        let stats = run.stop();
        rows.push(Row {
            system,
            m,
            note: drop_note(&stats),
        });
    }
    drop(t);
    let pressure = match (pressure_start, cpu_pressure_us()) {
        (Some(a), Some(b)) => format!(
            "{:.0} %",
            (b - a) as f64 / run_start.elapsed().as_micros() as f64 * 100.0
        ),
        _ => "unknown".into(),
    };

    // The kernel's best configuration is the reference.
    let kernel = rows[1].m.fwd_mpps.max(rows[2].m.fwd_mpps);
    println!();
    println!(
        "veth forwarding, {}: {FRAME_LEN}-byte UDP frames (64 with FCS), 4096 source ports; \
         generator on CPU {GEN_CPU}, nodegate's worker on CPU {FWD_CPU}; {:.1} s warm-up, \
         {:.1} s measured per system in {} samples; some task waited for a CPU {pressure} of \
         the run (PSI)",
        must(&["uname", "-sr"]).trim(),
        timing.warmup.as_secs_f64(),
        timing.measure.as_secs_f64(),
        timing.samples,
    );
    println!();
    println!(
        "| system | sent Mpps | forwarded Mpps | per sample | loss | of which refused at input | × kernel | notes |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.3} | **{:.3}** | {:.2} – {:.2} | {} | {} | {:.2} | {} |",
            r.system,
            r.m.sent_mpps,
            r.m.fwd_mpps,
            r.m.fwd_range.0,
            r.m.fwd_range.1,
            percent(r.m.loss),
            percent(r.m.refused),
            if kernel > 0.0 {
                r.m.fwd_mpps / kernel
            } else {
                0.0
            },
            r.note
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--generate") => return generate(&args[2..]),
        Some("--sink") => return sink(&args[2..]),
        _ => {}
    }
    if !args.iter().any(|a| a == "--bench") {
        self_check();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("NODEGATE_VETH_QUICK").is_some_and(|v| v != "0" && !v.is_empty());
    bench(quick);
}
