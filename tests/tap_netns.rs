//! nodegate on a real TAP interface, with the kernel of a network namespace as its neighbour:
//! ARP and ping answered by the data plane, and a UDP request through a ClusterIP that is DNATed
//! (and hairpin-SNATed) back to a server in that namespace. Needs root (CI runs as root); a
//! machine without it fails with the reason, never skips.

use control::config::Config;
use control::model::ClusterState;
use dataplane::time::MonotonicClock;
use nodegate::node::{worker_configs, Node};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A network namespace deleted on drop, even when the test fails.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(args: &[&str]) -> std::process::Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (install iproute2 / iputils-ping)"));
    out
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed (this test needs root and iproute2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 5353, protocol: UDP, targetPort: 7777}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: "", port: 7777, protocol: UDP}]
endpoints:
  - {addresses: ["192.0.2.2"], conditions: {ready: true}, nodeName: node-b}
"#;

/// A UDP echo server and a client, run by the namespace's own Python.
const SERVER: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',7777))\ns.settimeout(10)\nd,a=s.recvfrom(2048)\ns.sendto(d+b' from '+a[0].encode(),a)\n";
const CLIENT: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(5)\ns.sendto(b'hello',('10.96.0.10',5353))\nd,a=s.recvfrom(2048)\nprint(d.decode(), a[0], a[1])\n";

#[test]
fn ping_and_a_service_through_a_tap_port() {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngtap{id}"));
    let ifname = format!("ngt{id}");
    must(&["ip", "netns", "add", &ns.0]);
    let port = nodegate::tap::TapPort::open(&ifname).unwrap_or_else(|e| {
        panic!("cannot create TAP {ifname} (needs root and /dev/net/tun): {e}")
    });
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
    must(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
    must(&[
        "ip",
        "-n",
        &ns.0,
        "route",
        "add",
        "10.96.0.0/16",
        "via",
        "192.0.2.1",
    ]);

    let yaml = format!(
        "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nports:\n  - {{name: tap0, driver: tap, interface: {ifname}, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}}\n"
    );
    let cfg = Config::parse(&yaml, Path::new("/virtual/nodegate.yaml")).unwrap();
    let mut state = ClusterState::default();
    control::manifests::parse_str(MANIFESTS, Path::new("/virtual/m.yaml"), &mut state).unwrap();
    let (tables, _) = control::snapshot::build(&cfg, &state).unwrap();
    let mut node = Node::new(worker_configs(&cfg), tables, vec![Box::new(port)], 4096);

    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let clock = MonotonicClock::new();
            while !stop.load(Ordering::Relaxed) {
                node.run_until_idle(clock.now());
                std::thread::sleep(Duration::from_micros(200));
            }
            node
        })
    };

    let ping = sh(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "192.0.2.1",
    ]);
    let server = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c", SERVER])
        .spawn()
        .expect("python3 for the UDP server");
    std::thread::sleep(Duration::from_millis(300));
    let client = sh(&["ip", "netns", "exec", &ns.0, "python3", "-c", CLIENT]);
    let mut server = server;
    let _ = server.wait();

    stop.store(true, Ordering::Relaxed);
    let node = runner.join().expect("runner thread");
    let stats = nodegate::stats::Stats::gather(node.workers(), &node.publisher().current());

    assert!(
        ping.status.success(),
        "ping through the TAP port failed: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    assert!(
        stats.total.arp_replies >= 1,
        "the kernel had to ARP for 192.0.2.1"
    );
    assert!(stats.total.icmp_sent >= 3, "three echo replies");
    let answer = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "UDP through the ClusterIP failed: {answer}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    // The server saw the node's address (hairpin: client and endpoint are the same host, so the
    // flow is SNATed), and the answer came back from the Service address.
    assert_eq!(answer.trim(), "hello from 192.0.2.1 10.96.0.10 5353");
    assert_eq!(stats.total.flows_created, 1);
}
