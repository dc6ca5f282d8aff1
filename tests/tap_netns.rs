//! nodegate on a real TAP interface, with the kernel of a network namespace as its neighbour:
//! ARP and ping answered by the data plane, and a UDP request through a ClusterIP that is DNATed
//! (and hairpin-SNATed) back to a server in that namespace. Needs root (CI runs as root); a
//! machine without it fails with the reason, never skips.

use control::config::Config;
use control::model::ClusterState;
use dataplane::time::MonotonicClock;
use nodegate::node::{worker_configs, Node};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod netns;
use netns::*;

/// A node on a TAP port whose kernel side (192.0.2.2/24, route to the Service range) lives in a
/// fresh namespace, forwarding on a thread until `stop`.
struct TapLab {
    ns: Netns,
    stop: Arc<AtomicBool>,
    runner: Option<std::thread::JoinHandle<Node>>,
}

impl TapLab {
    fn new(tag: &str) -> TapLab {
        let id = std::process::id() % 100_000;
        let ns = Netns(format!("ng{tag}{id}"));
        let ifname = format!("ng{tag}{id}");
        must(&["ip", "netns", "add", &ns.0]);
        let port = nodegate::tap::TapPort::open(&ifname).unwrap_or_else(|e| {
            panic!("cannot create TAP {ifname} (needs root and /dev/net/tun): {e}")
        });
        for args in [
            vec!["link", "set", &ifname, "netns", &ns.0],
            vec!["-n", &ns.0, "addr", "add", "192.0.2.2/24", "dev", &ifname],
            vec!["-n", &ns.0, "link", "set", &ifname, "up"],
            vec!["-n", &ns.0, "link", "set", "lo", "up"],
            vec![
                "-n",
                &ns.0,
                "route",
                "add",
                "10.96.0.0/16",
                "via",
                "192.0.2.1",
            ],
        ] {
            let mut full = vec!["ip"];
            full.extend(args);
            must(&full);
        }
        let yaml = format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nports:\n  - {{name: tap0, driver: tap, interface: {ifname}, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}}\n"
        );
        let cfg = Config::parse(&yaml, Path::new("/virtual/nodegate.yaml")).unwrap();
        let mut state = ClusterState::default();
        control::manifests::parse_str(
            &format!("{UDP_SERVICE}---{BULK_SERVICE}"),
            Path::new("/virtual/m.yaml"),
            &mut state,
        )
        .unwrap();
        let (tables, _) = control::snapshot::build(&cfg, &state).unwrap();
        let mut node = Node::new(worker_configs(&cfg), tables, vec![Box::new(port)], 4096);
        let stop = Arc::new(AtomicBool::new(false));
        let runner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let clock = MonotonicClock::new();
                while !stop.load(Ordering::Relaxed) {
                    node.run_until_idle(clock.now());
                    std::thread::sleep(Duration::from_micros(100));
                }
                node
            })
        };
        TapLab {
            ns,
            stop,
            runner: Some(runner),
        }
    }

    /// Stops forwarding and returns the node's counters.
    fn finish(mut self) -> nodegate::stats::Stats {
        self.stop.store(true, Ordering::Relaxed);
        let node = self.runner.take().unwrap().join().expect("runner thread");
        nodegate::stats::Stats::gather(node.workers(), &node.publisher().current())
    }
}

impl Drop for TapLab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Tens of megabytes through NAT (DNAT, plus hairpin SNAT) and back, byte for byte.
#[test]
fn a_long_tcp_transfer_through_a_clusterip_arrives_intact() {
    let lab = TapLab::new("b");
    bulk_transfer(&lab.ns.0);
    let stats = lab.finish();
    assert_eq!(stats.total.flows_created, 1, "one NATed connection");
    // The namespace's kernel also sends IPv6 neighbour discovery and multicast reports, which
    // are dropped and counted; nothing on the IPv4 path may be.
    for reason in [
        "tx-full",
        "no-buffer",
        "ct-full",
        "ct-invalid",
        "l4-malformed",
        "ip4-bad-checksum",
        "ip4-no-route",
        "neigh-unresolved",
    ] {
        assert_eq!(
            stats.total.drops[reason], 0,
            "{reason}: {:?}",
            stats.total.drops
        );
    }
}

#[test]
fn ping_and_a_service_through_a_tap_port() {
    let lab = TapLab::new("t");
    let ns = &lab.ns;
    ping(&ns.0, "192.0.2.1");
    // The server sees the node's address (hairpin: client and endpoint are the same host, so
    // the flow is SNATed), and the answer comes back from the Service address.
    udp_request(&ns.0);
    let stats = lab.finish();
    assert!(
        stats.total.arp_replies >= 1,
        "the kernel had to ARP for 192.0.2.1"
    );
    assert!(stats.total.icmp_sent >= 3, "three echo replies");
    assert_eq!(stats.total.flows_created, 1);
}

/// `nodegate run` on a TAP port with two workers (a multi-queue TAP): it logs the port and
/// `ready`, answers ping from the namespace, and on SIGTERM stops cleanly, exits 0 and writes
/// its counters.
#[test]
fn nodegate_run_on_tap_stops_cleanly_on_sigterm() {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngrun{id}"));
    let ifname = format!("ngr{id}");
    must(&["ip", "netns", "add", &ns.0]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: 2\nports:\n  - {{name: tap0, driver: tap, interface: {ifname}, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}}\n"
        ),
    )
    .unwrap();
    let run = Running::start(dir.path());
    let seen = &run.log;
    assert!(seen.contains("port up") && seen.contains(&ifname), "{seen}");
    must(&["ip", "link", "set", &ifname, "netns", &ns.0]);
    must(&[
        "ip",
        "-n",
        &ns.0,
        "addr",
        "add",
        "192.0.2.2/24",
        "dev",
        &ifname,
    ]);
    must(&["ip", "-n", &ns.0, "link", "set", &ifname, "up"]);
    ping(&ns.0, "192.0.2.1");
    let stats = run.stop();
    assert!(
        stats["total"]["icmp_sent"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    assert_eq!(stats["workers"].as_array().unwrap().len(), 2);
}
