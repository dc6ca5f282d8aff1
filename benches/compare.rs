//! nodegate side by side with what it replaces, in one run (docs/benchmarks.md, "Side by side
//! with kube-proxy's rules"): the same traffic through a node namespace that forwards a
//! NodePort Service (externalTrafficPolicy Cluster: DNAT to one of 16 endpoints, SNAT to the
//! node) with, in turn:
//!
//! - nodegate on `af_xdp` and on `af_packet`, one worker;
//! - the kernel with kube-proxy's iptables rules (its chains: KUBE-SERVICES, KUBE-NODEPORTS,
//!   KUBE-EXT, KUBE-SVC with `statistic` probabilities, KUBE-SEP DNAT, KUBE-MARK-MASQ and
//!   KUBE-POSTROUTING MASQUERADE, KUBE-FORWARD dropping INVALID);
//! - the kernel with kube-proxy's nftables rules (service and nodeport verdict maps, `numgen`
//!   endpoint choice, mark and masquerade);
//!
//! next to the generator's own ceiling (generator to receiver on a veth pair, nothing between).
//!
//! ```text
//!   tester ns (nodegate pktgen, CPU 0)          node ns (the system measured, CPU 1)
//!   t0 ──────── veth ───────────────────────── n0 198.18.1.1 (NodePort 30080/udp)
//!   t1 ──────── veth ───────────────────────── n1 198.18.2.1 → endpoints 198.18.2.2-17:9
//!   t2 ── veth ── t3   (the generator's ceiling)
//! ```
//!
//! The generator is `nodegate pktgen` (AF_XDP, frames prebuilt) sending on t0 and receiving on
//! t1 (AF_XDP: the tester's kernel never sees the frames), so every system gets the same
//! frames and is measured the same way: frames per second received, loss at the highest rate
//! the generator reaches, and latency percentiles at a fixed 100 kpps that every system keeps
//! up with. Frames of 64 and 1500 bytes, 1 / 1k / 100k flows (source ports and addresses).
//!
//! veth delivers a frame by running the receiver's path in the sender's softirq: without
//! anything else the kernel forwards on the generator's CPU. The kernel is measured both as veth
//! comes and with n0's receive in a NAPI thread pinned to the node's CPU; the table reports the
//! better of the two for each case and says which.
//!
//! `cargo bench --bench compare` (the full matrix, about 10 minutes on 2 cores);
//! `-- --quick` (64-byte frames, 1 and 1k flows, under 5 minutes); `-- --json FILE` writes the
//! rows for machines; `-- --doc` writes the table and `docs/compare.svg` into
//! docs/benchmarks.md. Needs root, two CPUs, iproute2, ethtool, iptables, nftables. Under
//! `cargo test` it checks its rule texts and plot only.

use std::process::{Command, Stdio};
use std::time::Instant;

mod netbench;
use netbench::{cmd as run, must, Namespaces, Nodegate, ThreadedNapi};

const ENDPOINTS: usize = 16;
const NODE_PORT: u16 = 30080;
/// The fixed rate of the latency measurement.
const LATENCY_PPS: u64 = 100_000;

// ---- commands ----------------------------------------------------------------------------------

/// Runs `cmd` in namespace `ns` with `input` on its standard input.
fn must_in_with_input(ns: &str, cmd: &[&str], input: &str) {
    use std::io::Write;
    let mut child = nodegate::netns::exec(ns)
        .args(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip netns exec");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- CPUs -------------------------------------------------------------------------------------

/// Which CPUs the generator and the node get, and how many workers (and queues) the node runs.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    workers: usize,
    /// The generator's CPUs, one lane (a queue of each port) pinned to each in turn.
    gen: Vec<usize>,
    /// The node's CPUs: nodegate's process and the kernel's NAPI threads stay on them.
    node: Vec<usize>,
}

impl Plan {
    /// `workers` (default: half the CPUs) node workers on multi-queue links, one queue per
    /// worker. The generator gets as many CPUs as the node: on veth its CPUs also carry the
    /// node's receive of what it sends. With fewer than 2 × `workers` CPUs the generator keeps
    /// half and the node's workers share the rest (overcommitted; the notes say so).
    fn new(cpus: &[usize], workers: Option<usize>) -> Result<Plan, String> {
        if cpus.len() < 2 {
            return Err(format!(
                "needs two CPUs (one for the generator, one for the node), have {cpus:?}"
            ));
        }
        let workers = workers.unwrap_or(cpus.len() / 2);
        if workers == 0 || workers > 64 {
            return Err(format!("--workers {workers}: expected 1..=64"));
        }
        let g = workers.min(cpus.len() / 2);
        Ok(Plan {
            workers,
            gen: cpus[..g].to_vec(),
            node: cpus[g..(g + workers).min(cpus.len())].to_vec(),
        })
    }

    /// Whether every worker has a CPU of its own.
    fn pinned(&self) -> bool {
        self.node.len() >= self.workers
    }

    fn list(cpus: &[usize]) -> String {
        cpus.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// "CPU 1" or "CPUs 2,3".
    fn name(cpus: &[usize]) -> String {
        if cpus.len() == 1 {
            format!("CPU {}", cpus[0])
        } else {
            format!("CPUs {}", Self::list(cpus))
        }
    }

    /// How nodegate's workers run, for the notes.
    fn workers_note(&self) -> String {
        if self.workers == 1 {
            format!("worker busy-polling on {}", Self::name(&self.node))
        } else if self.pinned() {
            format!("workers busy-polling on {}", Self::name(&self.node))
        } else {
            format!(
                "{} workers sharing {} (overcommitted)",
                self.workers,
                Self::name(&self.node)
            )
        }
    }
}

// ---- topology ----------------------------------------------------------------------------------

struct Topology {
    tester: String,
    node: String,
    _namespaces: Namespaces,
}

impl Topology {
    /// The namespaces and links, each link with `queues` queues in each direction.
    fn create(queues: usize) -> Topology {
        let id = std::process::id();
        let (tester, node) = (format!("ngc-t-{id}"), format!("ngc-n-{id}"));
        let t = Topology {
            _namespaces: Namespaces::add(&[&tester, &node]),
            tester,
            node,
        };
        for (a, a_ns, b, b_ns) in [
            ("t0", &t.tester, "n0", &t.node),
            ("t1", &t.tester, "n1", &t.node),
            ("t2", &t.tester, "t3", &t.tester),
        ] {
            let q = queues.to_string();
            must(&[
                "ip",
                "link",
                "add",
                a,
                "netns",
                a_ns,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                b_ns,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ]);
        }
        for (ns, devs) in [
            (&t.tester, &["t0", "t1", "t2", "t3", "lo"][..]),
            (&t.node, &["n0", "n1", "lo"][..]),
        ] {
            for dev in devs {
                must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
        }
        // Frames stay frames: no offloads that would hand on partial checksums or merge them.
        for (ns, dev) in [
            (&t.tester, "t0"),
            (&t.tester, "t1"),
            (&t.tester, "t2"),
            (&t.tester, "t3"),
            (&t.node, "n0"),
            (&t.node, "n1"),
        ] {
            must(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "gso", "off", "tso",
                "off", "gro", "off",
            ]);
        }
        // IPv6 off on the test links: no router solicitations or DAD among the frames counted.
        for ns in [&t.tester, &t.node] {
            must(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
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

fn endpoint(i: usize) -> String {
    format!("198.18.2.{}", 2 + i)
}

// ---- the kernel ---------------------------------------------------------------------------------

/// kube-proxy's iptables-mode rules for one NodePort Service (Cluster policy) with
/// `ENDPOINTS` endpoints, as `iptables-restore` input.
fn iptables_rules() -> String {
    let mut nat = String::from(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
         :KUBE-MARK-MASQ - [0:0]\n:KUBE-EXT-BENCH - [0:0]\n:KUBE-SVC-BENCH - [0:0]\n",
    );
    for i in 0..ENDPOINTS {
        nat.push_str(&format!(":KUBE-SEP-{i} - [0:0]\n"));
    }
    nat.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 80 -j KUBE-SVC-BENCH\n\
         -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    nat.push_str(&format!(
        "-A KUBE-NODEPORTS -p udp -m udp --dport {NODE_PORT} -j KUBE-EXT-BENCH\n\
         -A KUBE-EXT-BENCH -j KUBE-MARK-MASQ\n-A KUBE-EXT-BENCH -j KUBE-SVC-BENCH\n"
    ));
    for i in 0..ENDPOINTS {
        let left = ENDPOINTS - i;
        if left > 1 {
            nat.push_str(&format!(
                "-A KUBE-SVC-BENCH -m statistic --mode random --probability {:.11} -j KUBE-SEP-{i}\n",
                1.0 / left as f64
            ));
        } else {
            nat.push_str(&format!("-A KUBE-SVC-BENCH -j KUBE-SEP-{i}\n"));
        }
    }
    for i in 0..ENDPOINTS {
        nat.push_str(&format!(
            "-A KUBE-SEP-{i} -p udp -m udp -j DNAT --to-destination {}:9\n",
            endpoint(i)
        ));
    }
    nat.push_str("COMMIT\n");
    nat.push_str(
        "*filter\n:KUBE-FORWARD - [0:0]\n-A FORWARD -j KUBE-FORWARD\n\
         -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
         -A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n",
    );
    nat
}

/// kube-proxy's nftables-mode rules for the same Service, as `nft -f` input.
fn nftables_rules() -> String {
    let mut s = String::from("table ip kube-proxy {\n");
    s.push_str(
        "  map service-ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n    \
         elements = { 10.96.0.10 . udp . 80 : goto service-BENCH }\n  }\n",
    );
    s.push_str(&format!(
        "  map service-nodeports {{\n    type inet_proto . inet_service : verdict\n    \
         elements = {{ udp . {NODE_PORT} : goto external-BENCH }}\n  }}\n"
    ));
    s.push_str(
        "  chain mark-for-masquerade {\n    mark set mark or 0x4000\n  }\n\
         \x20 chain masquerading {\n    mark and 0x4000 == 0 return\n    mark set mark xor 0x4000\n    masquerade fully-random\n  }\n\
         \x20 chain services {\n    ip daddr . meta l4proto . th dport vmap @service-ips\n    \
         fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n  }\n\
         \x20 chain nat-prerouting {\n    type nat hook prerouting priority -100; policy accept;\n    jump services\n  }\n\
         \x20 chain nat-output {\n    type nat hook output priority -100; policy accept;\n    jump services\n  }\n\
         \x20 chain nat-postrouting {\n    type nat hook postrouting priority 100; policy accept;\n    jump masquerading\n  }\n\
         \x20 chain filter-forward {\n    type filter hook forward priority -110; policy accept;\n    ct state invalid drop\n  }\n\
         \x20 chain external-BENCH {\n    jump mark-for-masquerade\n    goto service-BENCH\n  }\n",
    );
    let arms: Vec<String> = (0..ENDPOINTS)
        .map(|i| format!("{i} : goto endpoint-{i}"))
        .collect();
    s.push_str(&format!(
        "  chain service-BENCH {{\n    numgen random mod {ENDPOINTS} vmap {{ {} }}\n  }}\n",
        arms.join(", ")
    ));
    for i in 0..ENDPOINTS {
        s.push_str(&format!(
            "  chain endpoint-{i} {{\n    meta l4proto udp dnat to {}:9\n  }}\n",
            endpoint(i)
        ));
    }
    s.push_str("}\n");
    s
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rules {
    Iptables,
    Nftables,
}

/// The node's kernel set up to forward the Service with `rules`; everything undone on drop.
struct Kernel<'a> {
    t: &'a Topology,
    rules: Rules,
}

impl<'a> Kernel<'a> {
    fn start(t: &'a Topology, rules: Rules, t1_mac: &str) -> Kernel<'a> {
        let node = t.node.as_str();
        for c in [
            "addr add 198.18.1.1/24 dev n0",
            "addr add 198.18.2.1/24 dev n1",
        ] {
            let mut args = vec!["ip", "-n", node];
            args.extend(c.split(' '));
            must(&args);
        }
        for i in 0..ENDPOINTS {
            must(&[
                "ip",
                "-n",
                node,
                "neigh",
                "replace",
                &endpoint(i),
                "lladdr",
                t1_mac,
                "dev",
                "n1",
                "nud",
                "permanent",
            ]);
        }
        for s in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.n0.rp_filter=0",
        ] {
            must(&["ip", "netns", "exec", node, "sysctl", "-qw", s]);
        }
        match rules {
            Rules::Iptables => must_in_with_input(node, &["iptables-restore"], &iptables_rules()),
            Rules::Nftables => must_in_with_input(node, &["nft", "-f", "-"], &nftables_rules()),
        }
        Kernel { t, rules }
    }
}

impl Drop for Kernel<'_> {
    fn drop(&mut self) {
        let node = self.t.node.as_str();
        let quiet = |args: &[&str]| {
            let _ = Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        match self.rules {
            Rules::Iptables => {
                for table in ["nat", "filter"] {
                    quiet(&["ip", "netns", "exec", node, "iptables", "-t", table, "-F"]);
                    quiet(&["ip", "netns", "exec", node, "iptables", "-t", table, "-X"]);
                }
            }
            Rules::Nftables => {}
        }
        // iptables-nft leaves its (now empty) tables and base chains in the ruleset: remove
        // them too, so the next system meets no hooks.
        quiet(&["ip", "netns", "exec", node, "nft", "flush", "ruleset"]);
        quiet(&["ip", "netns", "exec", node, "conntrack", "-F"]);
        quiet(&[
            "ip",
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
        ]);
        for dev in ["n0", "n1"] {
            quiet(&["ip", "-n", node, "addr", "flush", "dev", dev]);
            quiet(&["ip", "-n", node, "neigh", "flush", "dev", dev]);
        }
    }
}

// ---- nodegate ---------------------------------------------------------------------------------

/// The directory of a nodegate run forwarding the benchmark's Service with `driver`, with
/// `plan.workers` workers (pinned when each has a CPU of its own) and as many queues per port.
fn nodegate_dir(driver: &str, t1_mac: &str, plan: &Plan) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let neighbors: String = (0..ENDPOINTS)
        .map(|i| format!("  - {{address: \"{}\", mac: \"{t1_mac}\"}}\n", endpoint(i)))
        .collect();
    let cpus = if plan.pinned() {
        format!("cpus: [{}]\n", Plan::list(&plan.node[..plan.workers]))
    } else {
        String::new()
    };
    let queues = if driver == "af_xdp" {
        format!(", queues: {}", plan.workers)
    } else {
        String::new()
    };
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: bench, addresses: [\"198.18.1.1\"]}}\n\
             workers: {}\n\
             {cpus}\
             idle: {{spin: 4294967295}}\n\
             ports:\n\
             \x20 - {{name: gen, driver: {driver}, interface: n0, addresses: [\"198.18.1.1/24\"]{queues}}}\n\
             \x20 - {{name: out, driver: {driver}, interface: n1, addresses: [\"198.18.2.1/24\"]{queues}}}\n\
             neighbors:\n{neighbors}\
             snat: {{ports: \"1024-29999\"}}\n\
             kubernetes: {{manifests: manifests, api: off}}\n",
            plan.workers
        ),
    )
    .expect("write the configuration");
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    let eps: String = (0..ENDPOINTS)
        .map(|i| {
            format!(
                "  - {{addresses: [\"{}\"], nodeName: bench}}\n",
                endpoint(i)
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("manifests/bench.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: bench, namespace: default}}\n\
             spec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n  \
             ports: [{{port: 80, protocol: UDP, targetPort: 9, nodePort: {NODE_PORT}}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: bench-1, namespace: default, labels: {{kubernetes.io/service-name: bench}}}}\n\
             addressType: IPv4\nports: [{{name: \"\", port: 9, protocol: UDP}}]\nendpoints:\n{eps}"
        ),
    )
    .unwrap();
    dir
}

// ---- the generator ----------------------------------------------------------------------------

/// One traffic case.
#[derive(Clone, Copy, Debug)]
struct Case {
    size: usize,
    flows: u32,
}

impl Case {
    /// (sources, source ports) giving `flows` flows. With several workers the flows come from
    /// 200 clients: nodegate gives a Service flow to the worker of its client's address (which
    /// keeps session affinity within one worker), so one client's flows all land on one worker
    /// and would measure one worker plus handoffs.
    fn ranges(&self, workers: usize) -> (String, String) {
        let (addrs, ports) =
            if workers > 1 && self.flows >= 200 && self.flows / 200 * 200 == self.flows {
                (200, self.flows / 200)
            } else if self.flows > 50_000 {
                (self.flows.div_ceil(50_000), 50_000.min(self.flows))
            } else {
                (1, self.flows)
            };
        let src = if addrs == 1 {
            "198.18.1.2".to_string()
        } else {
            format!("198.18.1.2-198.18.1.{}", 1 + addrs)
        };
        (src, format!("1024-{}", 1024 + ports - 1))
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
struct Measured {
    /// Frames per second the generator sent and the receiver got, at the highest rate.
    tx_mpps: f64,
    rx_mpps: f64,
    loss: f64,
    /// At LATENCY_PPS.
    p50_us: Option<f64>,
    p90_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    latency_loss: f64,
}

/// Where the generator's frames go: sent on `tx`, received on `rx` (tester interfaces),
/// addressed to `dst_mac`, one lane per worker of `plan` on its generator CPUs.
struct Path<'a> {
    t: &'a Topology,
    plan: &'a Plan,
    tx: &'a str,
    rx: &'a str,
    dst_mac: &'a str,
}

/// Runs the generator from the tester namespace along `path`, `seconds` long, at `rate`.
fn pktgen(path: &Path, case: Case, rate: &str, seconds: f64) -> serde_json::Value {
    let Path {
        t,
        plan,
        tx,
        rx,
        dst_mac,
    } = *path;
    let (src, sport) = case.ranges(plan.workers);
    let dst = if tx == "t2" {
        "198.18.2.2"
    } else {
        "198.18.1.1"
    };
    let json = tempfile::NamedTempFile::new().unwrap();
    let json_path = json.path().to_str().unwrap().to_string();
    let out = run(&[
        "ip",
        "netns",
        "exec",
        &t.tester,
        env!("CARGO_BIN_EXE_nodegate"),
        "pktgen",
        "--tx",
        &format!("af_xdp:{tx}"),
        "--rx",
        &format!("af_xdp:{rx}"),
        "--dst-mac",
        dst_mac,
        "--src",
        &src,
        "--sport",
        &sport,
        "--dst",
        dst,
        "--dport",
        &NODE_PORT.to_string(),
        "--size",
        &case.size.to_string(),
        "--rate",
        rate,
        "--duration",
        &format!("{seconds}"),
        "--cpu",
        &Plan::list(&plan.gen),
        "--queues",
        &plan.workers.to_string(),
        // At the highest rate, bursts of 64 (the generator's best); a latency probe paces
        // single frames (bursts that catch up after a stall queue behind each other and showed
        // as p99 of 40-3000 µs through nodegate, 5-8 µs paced).
        "--burst",
        if rate == "max" { "64" } else { "1" },
        "--json",
        &json_path,
    ]);
    assert!(
        out.status.success(),
        "pktgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap()
}

struct Timing {
    warmup: f64,
    measure: f64,
    latency: f64,
}

/// Throughput at the generator's highest rate, then latency at LATENCY_PPS.
fn measure(path: &Path, case: Case, timing: &Timing) -> Measured {
    // Warm-up: flows created (conntrack, nodegate's flow table), neighbours resolved.
    pktgen(path, case, "max", timing.warmup);
    let max = pktgen(path, case, "max", timing.measure);
    let lat = pktgen(path, case, &LATENCY_PPS.to_string(), timing.latency);
    let us = |v: &serde_json::Value| v.as_f64().map(|ns| ns / 1e3);
    Measured {
        tx_mpps: max["tx_pps"].as_f64().unwrap() / 1e6,
        rx_mpps: max["rx_pps"].as_f64().unwrap() / 1e6,
        loss: max["loss_ratio"].as_f64().unwrap(),
        p50_us: us(&lat["latency_ns"]["p50"]),
        p90_us: us(&lat["latency_ns"]["p90"]),
        p99_us: us(&lat["latency_ns"]["p99"]),
        p999_us: us(&lat["latency_ns"]["p999"]),
        max_us: us(&lat["latency_ns"]["max"]),
        latency_loss: lat["loss_ratio"].as_f64().unwrap(),
    }
}

// ---- the report -------------------------------------------------------------------------------

#[derive(Clone, Debug, serde::Serialize)]
struct Row {
    system: String,
    frame: usize,
    flows: u32,
    #[serde(flatten)]
    m: Measured,
    /// Mpps relative to the better kernel (iptables or nftables) of the same case.
    ratio_to_kernel: Option<f64>,
    note: String,
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn table(rows: &[Row], ceiling: &[Row]) -> String {
    let mut s = String::from(
        "| frame | flows | system | Mpps | loss at max | × kernel | p50 µs | p99 µs | note |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in ceiling.iter().chain(rows) {
        s.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.1} % | {} | {} | {} | {} |\n",
            r.frame,
            r.flows,
            r.system,
            r.m.rx_mpps,
            r.m.loss * 100.0,
            fmt_opt(r.ratio_to_kernel, 2),
            fmt_opt(r.m.p50_us, 1),
            fmt_opt(r.m.p99_us, 1),
            r.note
        ));
    }
    s
}

/// A grouped bar chart of Mpps per case and system, as SVG.
fn svg(rows: &[Row], ceiling: &[Row]) -> String {
    let systems: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in ceiling.iter().chain(rows) {
            if !v.contains(&r.system) {
                v.push(r.system.clone());
            }
        }
        v
    };
    let mut cases: Vec<(usize, u32)> = Vec::new();
    for r in rows {
        if !cases.contains(&(r.frame, r.flows)) {
            cases.push((r.frame, r.flows));
        }
    }
    let colors = [
        "#999999", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    ];
    let max = ceiling
        .iter()
        .chain(rows)
        .map(|r| r.m.rx_mpps)
        .fold(0.1f64, f64::max)
        * 1.1;
    let (w, h, left, bottom, top) = (
        120 * cases.len().max(1) + 80,
        360usize,
        50usize,
        60usize,
        20usize,
    );
    let plot_h = (h - bottom - top) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n",
        w + 220
    );
    s.push_str(&format!(
        "<text x=\"{left}\" y=\"14\">Mpps received (higher is better)</text>\n"
    ));
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = top as f64 + plot_h * (1.0 - k as f64 / 4.0);
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"4\" y=\"{:.1}\">{v:.2}</text>\n",
            w,
            y + 4.0
        ));
    }
    let bar = 100.0 / systems.len().max(1) as f64;
    for (ci, (frame, flows)) in cases.iter().enumerate() {
        let x0 = left as f64 + 10.0 + ci as f64 * 120.0;
        for (si, sys) in systems.iter().enumerate() {
            // The ceiling is measured once per frame size and drawn in every group.
            let r = ceiling
                .iter()
                .find(|r| &r.system == sys && r.frame == *frame)
                .or_else(|| {
                    rows.iter()
                        .find(|r| &r.system == sys && r.frame == *frame && r.flows == *flows)
                });
            if let Some(r) = r {
                let bh = plot_h * r.m.rx_mpps / max;
                s.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"/>\n",
                    x0 + si as f64 * bar,
                    top as f64 + plot_h - bh,
                    bar - 2.0,
                    colors[si % colors.len()]
                ));
            }
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\">{frame} B, {flows} flow{}</text>\n",
            x0,
            h - bottom + 16,
            if *flows == 1 { "" } else { "s" }
        ));
    }
    for (si, sys) in systems.iter().enumerate() {
        let y = top + 10 + si * 16;
        s.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            w + 10,
            y,
            colors[si % colors.len()],
            w + 26,
            y + 9,
            sys.replace('&', "&amp;").replace('<', "&lt;")
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// Replaces the part of docs/benchmarks.md between the compare markers.
fn write_doc(text: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md");
    let doc = std::fs::read_to_string(path).expect("docs/benchmarks.md");
    let (begin, end) = ("<!-- compare:begin -->", "<!-- compare:end -->");
    let (Some(a), Some(b)) = (doc.find(begin), doc.find(end)) else {
        panic!("docs/benchmarks.md has no {begin} ... {end} section");
    };
    let new = format!("{}{begin}\n{text}{}", &doc[..a], &doc[b..]);
    std::fs::write(path, new).expect("write docs/benchmarks.md");
}

/// How often a CPU is taken away from a thread that never sleeps: a busy loop pinned to `cpu`
/// for `seconds` notes every gap between two clock reads of 5 µs or more (interrupts, the
/// hypervisor running something else on the vCPU). A frame that has to cross to that CPU waits
/// out the gap it meets, so the share of time lost is about the share of frames delayed.
#[derive(Clone, Debug, serde::Serialize)]
struct Stalls {
    cpu: usize,
    per_second: f64,
    /// Of the time, lost in gaps.
    lost: f64,
    over_1ms: u64,
    max_us: f64,
}

fn stalls(cpu: usize, seconds: f64) -> Stalls {
    std::thread::spawn(move || {
        assert!(ffi::pin_current_thread(cpu), "cannot pin to CPU {cpu}");
        let start = Instant::now();
        let (mut last, mut gaps, mut over_1ms, mut max) = (start, 0u64, 0u64, 0f64);
        let mut lost = 0f64;
        loop {
            let now = Instant::now();
            let gap = now.duration_since(last).as_secs_f64() * 1e6;
            if gap >= 5.0 {
                gaps += 1;
                lost += gap;
                over_1ms += u64::from(gap >= 1000.0);
                max = max.max(gap);
            }
            last = now;
            if now.duration_since(start).as_secs_f64() >= seconds {
                break;
            }
        }
        Stalls {
            cpu,
            per_second: gaps as f64 / seconds,
            lost: lost / 1e6 / seconds,
            over_1ms,
            max_us: max,
        }
    })
    .join()
    .expect("stall probe")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = must(&["uname", "-r"]).trim().to_string();
    format!(
        "{} CPUs ({cpu}), Linux {kernel}",
        ffi::available_cpus().len()
    )
}

// ---- main ---------------------------------------------------------------------------------------

fn bench(quick: bool, json: Option<String>, doc: bool, workers: Option<usize>) {
    let started = Instant::now();
    let plan = Plan::new(&ffi::available_cpus(), workers).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{plan:?}");
    let timing = if quick {
        Timing {
            warmup: 0.5,
            measure: 1.5,
            latency: 1.0,
        }
    } else {
        Timing {
            warmup: 1.0,
            measure: 4.0,
            latency: 2.0,
        }
    };
    let cases: Vec<Case> = if quick {
        vec![
            Case { size: 64, flows: 1 },
            Case {
                size: 64,
                flows: 1000,
            },
        ]
    } else {
        let mut v = Vec::new();
        for size in [64, 1500] {
            for flows in [1, 1000, 100_000] {
                v.push(Case { size, flows });
            }
        }
        v
    };
    // How much the CPUs themselves stall, one after the other (nothing else running).
    let stall: Vec<Stalls> = plan
        .gen
        .iter()
        .chain(&plan.node)
        .map(|&cpu| stalls(cpu, if quick { 1.0 } else { 3.0 }))
        .collect();
    eprintln!("{stall:?}");
    let t = Topology::create(plan.workers);
    let (n0, t1, t3) = (
        t.mac(&t.node, "n0"),
        t.mac(&t.tester, "t1"),
        t.mac(&t.tester, "t3"),
    );
    let path = |tx, rx, dst_mac| Path {
        t: &t,
        plan: &plan,
        tx,
        rx,
        dst_mac,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut ceiling: Vec<Row> = Vec::new();

    // The generator's ceiling, per frame size.
    let mut sizes: Vec<usize> = cases.iter().map(|c| c.size).collect();
    sizes.dedup();
    for &size in &sizes {
        let case = Case { size, flows: 1000 };
        let m = measure(&path("t2", "t3", &t3), case, &timing);
        eprintln!("ceiling {size} B: {:.3} Mpps", m.rx_mpps);
        ceiling.push(Row {
            system: "generator ceiling (no forwarder)".into(),
            frame: size,
            flows: 1000,
            m,
            ratio_to_kernel: None,
            note: "pktgen t2 → t3, the receive on the generator's CPU too".into(),
        });
    }

    // The kernel, both rule sets, plain veth and threaded NAPI; the better one is reported.
    for rules in [Rules::Iptables, Rules::Nftables] {
        let name = match rules {
            Rules::Iptables => "kernel + kube-proxy iptables rules",
            Rules::Nftables => "kernel + kube-proxy nftables rules",
        };
        let _k = Kernel::start(&t, rules, &t1);
        for &case in &cases {
            let plain = measure(&path("t0", "t1", &n0), case, &timing);
            let napi = {
                let _n = ThreadedNapi::enable(&t.node, "n0", &plan.node);
                measure(&path("t0", "t1", &n0), case, &timing)
            };
            eprintln!(
                "{name} {case:?}: plain {:.3} Mpps, threaded NAPI {:.3} Mpps",
                plain.rx_mpps, napi.rx_mpps
            );
            let (m, note) = if napi.rx_mpps > plain.rx_mpps {
                (
                    napi,
                    format!(
                        "threaded NAPI on {} (as veth comes: {:.3} Mpps)",
                        Plan::name(&plan.node),
                        plain.rx_mpps
                    ),
                )
            } else {
                (
                    plain,
                    format!(
                        "as veth comes, in the generator's softirq (threaded NAPI: {:.3} Mpps)",
                        napi.rx_mpps
                    ),
                )
            };
            rows.push(Row {
                system: name.into(),
                frame: case.size,
                flows: case.flows,
                m,
                ratio_to_kernel: None,
                note,
            });
        }
    }

    // nodegate, its process on the node's CPUs.
    let workers = format!(
        "{} worker{}",
        plan.workers,
        if plan.workers == 1 { "" } else { "s" }
    );
    for driver in ["af_xdp", "af_packet"] {
        let ng = Nodegate::start_on(
            &t.node,
            nodegate_dir(driver, &t1, &plan),
            &Plan::list(&plan.node),
        );
        let xdp = ng
            .log
            .lines()
            .find(|l| l.contains("port up") && l.contains("xdp="))
            .map(|l| {
                if l.contains("native") {
                    "native XDP"
                } else {
                    "skb XDP"
                }
            })
            .unwrap_or("");
        let mut measured = Vec::new();
        for &case in &cases {
            let m = measure(&path("t0", "t1", &n0), case, &timing);
            eprintln!("nodegate {driver} {case:?}: {:.3} Mpps", m.rx_mpps);
            measured.push((case, m));
        }
        let stats = ng.stop();
        let mut drops: Vec<String> = Vec::new();
        if let Some(d) = stats["total"]["drops"].as_object() {
            for (reason, n) in d {
                if n.as_u64().unwrap_or(0) > 0 && reason != "eth-not-for-us" {
                    drops.push(format!("{reason} {n}"));
                }
            }
        }
        for (case, m) in measured {
            rows.push(Row {
                system: format!("nodegate {driver}, {workers}"),
                frame: case.size,
                flows: case.flows,
                m,
                ratio_to_kernel: None,
                note: if driver == "af_xdp" {
                    format!("{xdp}, copy mode; {}", plan.workers_note())
                } else {
                    plan.workers_note()
                },
            });
        }
        if !drops.is_empty() {
            eprintln!("nodegate {driver} drops over the run: {}", drops.join(", "));
        }
    }

    // Ratios to the better kernel of each case.
    let snapshot = rows.clone();
    for r in &mut rows {
        let kernel = snapshot
            .iter()
            .filter(|k| k.system.starts_with("kernel") && k.frame == r.frame && k.flows == r.flows)
            .map(|k| k.m.rx_mpps)
            .fold(0.0, f64::max);
        if kernel > 0.0 {
            r.ratio_to_kernel = Some(r.m.rx_mpps / kernel);
        }
    }
    // Systems within 5 % of the generator's ceiling are bounded by it.
    for r in &mut rows {
        if let Some(c) = ceiling.iter().find(|c| c.frame == r.frame) {
            if r.m.rx_mpps >= 0.95 * c.m.rx_mpps {
                r.note.push_str("; bounded by the generator");
            }
        }
    }

    let text = format!(
        "Measured {} by `cargo bench --bench compare{}` in {:.0} s on {}. Generator: \
         `nodegate pktgen` on AF_XDP (copy mode), {} lane{} pinned to {}; the node runs on {} \
         ({} queue{} per link). Mpps = frames per second received at the highest rate the \
         generator reached; loss at that rate; latency at {} kpps (every system keeps up). \
         A busy loop alone on each CPU lost {}.\n\n{}\n\
         ![Mpps per system](compare.svg)\n",
        chrono_date(),
        if quick { " -- --quick" } else { "" },
        started.elapsed().as_secs_f64(),
        machine(),
        plan.workers,
        if plan.workers == 1 { "" } else { "s" },
        Plan::name(&plan.gen),
        Plan::name(&plan.node),
        plan.workers,
        if plan.workers == 1 { "" } else { "s" },
        LATENCY_PPS / 1000,
        stall
            .iter()
            .map(|s| format!(
                "{:.1} % of CPU {}'s time ({:.0} gaps of 5 µs or more a second, {} over 1 ms, \
                 the longest {:.0} µs)",
                s.lost * 100.0,
                s.cpu,
                s.per_second,
                s.over_1ms,
                s.max_us
            ))
            .collect::<Vec<_>>()
            .join(", "),
        table(&rows, &ceiling)
    );
    println!("{text}");
    if let Some(path) = json {
        let all: Vec<&Row> = ceiling.iter().chain(&rows).collect();
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&serde_json::json!({
                "machine": machine(),
                "quick": quick,
                "cpu_stalls": stall,
                "rows": all,
            }))
            .unwrap(),
        )
        .expect("write the JSON file");
    }
    if doc {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/compare.svg"),
            svg(&rows, &ceiling),
        )
        .expect("write docs/compare.svg");
        write_doc(&text);
    }
}

/// Today's date (UTC), from `date`.
fn chrono_date() -> String {
    must(&["date", "-u", "+%Y-%m-%d"]).trim().to_string()
}

/// Under `cargo test`: the rule texts and the plot are well formed.
fn self_check() {
    let ipt = iptables_rules();
    assert_eq!(ipt.matches("-j DNAT").count(), ENDPOINTS);
    assert_eq!(ipt.matches("COMMIT").count(), 2);
    assert!(ipt.contains("--probability 0.06250000000"));
    let nft = nftables_rules();
    assert_eq!(nft.matches("dnat to").count(), ENDPOINTS);
    assert_eq!(nft.matches('{').count(), nft.matches('}').count());
    let r = |system: &str, mpps: f64| Row {
        system: system.into(),
        frame: 64,
        flows: 1,
        m: Measured {
            rx_mpps: mpps,
            ..Default::default()
        },
        ratio_to_kernel: None,
        note: String::new(),
    };
    let s = svg(&[r("a", 1.0), r("b<c", 2.0)], &[r("ceiling", 3.0)]);
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    assert_eq!(
        s.matches("<rect").count(),
        3 + 3,
        "3 bars and 3 legend boxes"
    );
    assert!(s.contains("b&lt;c"));
    // Two CPUs: one for the generator, one for the node's one worker; four: two and two;
    // two workers on two CPUs share the node's one.
    assert_eq!(
        Plan::new(&[0, 1], None),
        Ok(Plan {
            workers: 1,
            gen: vec![0],
            node: vec![1]
        })
    );
    let four = Plan::new(&[0, 1, 2, 3], None).unwrap();
    assert_eq!(
        (four.workers, &four.gen[..], &four.node[..]),
        (2, &[0, 1][..], &[2, 3][..])
    );
    assert!(four.pinned());
    let over = Plan::new(&[0, 1], Some(2)).unwrap();
    assert_eq!((&over.gen[..], &over.node[..]), (&[0][..], &[1][..]));
    assert!(!over.pinned() && over.workers_note().contains("overcommitted"));
    assert!(Plan::new(&[0], None).is_err());
    let spread = Case {
        size: 64,
        flows: 1000,
    };
    assert_eq!(
        spread.ranges(2),
        (
            "198.18.1.2-198.18.1.201".to_string(),
            "1024-1028".to_string()
        )
    );
    assert_eq!(spread.ranges(1).0, "198.18.1.2");
    assert!(Plan::new(&[0, 1], Some(0)).is_err());
    let c = Case {
        size: 64,
        flows: 100_000,
    };
    assert_eq!(
        c.ranges(1),
        (
            "198.18.1.2-198.18.1.3".to_string(),
            "1024-51023".to_string()
        )
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        self_check();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let doc = args.iter().any(|a| a == "--doc");
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned());
    let workers = args.iter().position(|a| a == "--workers").map(|i| {
        args.get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--workers N: a number of workers")
    });
    bench(quick, json, doc, workers);
}
