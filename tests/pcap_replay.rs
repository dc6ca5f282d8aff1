//! pcap replay semantics through the binary: several pcap ports are merged in timestamp order,
//! and the data plane clock follows the capture, so conntrack timeouts happen in capture time.

use dataplane::time::Instant;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use nodegate::pcap::{PcapReader, PcapWriter};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

const NODE0: [u8; 6] = [2, 0, 0, 0, 0, 1];
const NODE1: [u8; 6] = [2, 0, 0, 0, 1, 1];
const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const POD: [u8; 6] = [2, 0, 0, 0, 1, 5];

const CONFIG: &str = r#"
node: {name: node-a, addresses: ["10.0.0.1"]}
workers: 2
ports:
  - {name: uplink, driver: pcap, rx: up.pcap, tx: up-out.pcap, mac: "02:00:00:00:00:01", addresses: ["10.0.0.1/24"]}
  - {name: pods, driver: pcap, rx: pods.pcap, tx: pods-out.pcap, mac: "02:00:00:00:01:01", addresses: ["10.2.0.1/24"]}
routes:
  - {prefix: "0.0.0.0/0", via: "10.0.0.254"}
neighbors:
  - {address: "10.0.0.254", mac: "02:00:00:00:00:fe"}
  - {address: "10.2.0.5", mac: "02:00:00:00:01:05"}
conntrack:
  timeouts: {udp: 30, udp_stream: 30}
kubernetes: {manifests: manifests}
"#;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.53
  ports: [{port: 53, protocol: UDP, targetPort: 53, nodePort: 30053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: default, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: "", port: 53, protocol: UDP}]
endpoints:
  - {addresses: ["10.2.0.5"], conditions: {ready: true}, nodeName: node-a}
"#;

fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, b"payload")
        .unwrap();
    out
}

fn write(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let mut w = PcapWriter::create(path).unwrap();
    for (ms, f) in frames {
        w.write(Instant::from_micros(ms * 1000), f).unwrap();
    }
    w.flush().unwrap();
}

fn udp_tuple(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) = (&p.net, &p.transport) else {
        panic!("not UDP/IPv4");
    };
    let h = ip.header();
    (
        h.source_addr(),
        u.source_port(),
        h.destination_addr(),
        u.destination_port(),
    )
}

/// A directory with the node's configuration and its manifests.
fn node_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("nodegate.yaml"), CONFIG).unwrap();
    std::fs::create_dir(d.join("manifests")).unwrap();
    std::fs::write(d.join("manifests/dns.yaml"), MANIFESTS).unwrap();
    dir
}

#[test]
fn ports_are_merged_in_time_order_and_timeouts_follow_capture_time() {
    let dir = node_dir();
    let d = dir.path();
    let client = [198, 51, 100, 7];
    // Uplink: two queries, 60 s apart. Pods: a reply to each 1 ms later, and a late second reply
    // to the first query at 40 s, after that flow's 30 s timeout.
    write(
        &d.join("up.pcap"),
        &[
            (1_000, udp(GW, NODE0, client, [10, 0, 0, 1], 5000, 30053)),
            (61_000, udp(GW, NODE0, client, [10, 0, 0, 1], 5001, 30053)),
        ],
    );
    // The pod's replies need the SNAT ports the node chose: learn them from a first run with
    // an empty pod capture, then build the pod capture from them.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nodegate"))
            .args(args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    write(&d.join("pods.pcap"), &[]);
    let out = run(&["run", "--config", "nodegate.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = PcapReader::read_all(&d.join("pods-out.pcap")).unwrap();
    assert_eq!(sent.len(), 2, "both queries DNATed to the pod");
    let (node_ip, port1, pod, _) = udp_tuple(&sent[0].data);
    let (_, port2, _, _) = udp_tuple(&sent[1].data);
    assert_eq!(
        node_ip,
        Ipv4Addr::new(10, 2, 0, 1),
        "SNAT to the pods port's address"
    );
    assert_eq!(pod, Ipv4Addr::new(10, 2, 0, 5));
    assert_eq!(
        sent[0].time,
        Instant::from_micros(1_000_000),
        "tx stamped with capture time"
    );

    write(
        &d.join("pods.pcap"),
        &[
            (
                1_001,
                udp(POD, NODE1, [10, 2, 0, 5], [10, 2, 0, 1], 53, port1),
            ),
            (
                40_000,
                udp(POD, NODE1, [10, 2, 0, 5], [10, 2, 0, 1], 53, port1),
            ),
            (
                61_001,
                udp(POD, NODE1, [10, 2, 0, 5], [10, 2, 0, 1], 53, port2),
            ),
        ],
    );
    let out = run(&[
        "run",
        "--config",
        "nodegate.yaml",
        "--stats-json",
        "stats.json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = PcapReader::read_all(&d.join("up-out.pcap")).unwrap();
    let tuples: Vec<_> = up.iter().map(|r| udp_tuple(&r.data)).collect();
    // In time order: reply 1 translated (t = 1.001), the late reply is not a flow's any more
    // and is routed as plain traffic to its destination, the node itself (dropped there), and
    // reply 2 is translated at t = 61.001.
    assert_eq!(
        tuples,
        vec![
            (
                Ipv4Addr::new(10, 0, 0, 1),
                30053,
                Ipv4Addr::from(client),
                5000
            ),
            (
                Ipv4Addr::new(10, 0, 0, 1),
                30053,
                Ipv4Addr::from(client),
                5001
            ),
        ]
    );
    assert_eq!(up[0].time, Instant::from_micros(1_001_000));
    assert_eq!(up[1].time, Instant::from_micros(61_001_000));
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("stats.json")).unwrap()).unwrap();
    assert_eq!(
        stats["total"]["drops"]["ip4-local"], 1,
        "the late reply: no flow any more"
    );
    assert!(stats["total"]["flows_expired"].as_u64().unwrap() >= 1);
    assert_eq!(stats["ports"][0]["rx"], 2);
    assert_eq!(stats["ports"][1]["rx"], 3);
}

#[test]
fn trace_names_each_frame_and_the_stage_that_dropped_it() {
    let dir = node_dir();
    let d = dir.path();
    let client = [198, 51, 100, 7];
    // A query to the NodePort (DNATed), a truncated frame, and a frame to a routed address
    // whose IPv4 header checksum is wrong.
    let mut bad_sum = udp(GW, NODE0, client, [10, 2, 0, 9], 5000, 53);
    bad_sum[14 + 10] ^= 0xff;
    write(
        &d.join("up.pcap"),
        &[
            (1, udp(GW, NODE0, client, [10, 0, 0, 1], 5000, 30053)),
            (2, GW.iter().chain(&NODE0).copied().collect()),
            (3, bad_sum),
        ],
    );
    write(&d.join("pods.pcap"), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["run", "--config", "nodegate.yaml", "--trace"])
        .current_dir(d)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"))
    };
    let (f1, f2, f3) = (at("#1 "), at("#2 "), at("#3 "));
    assert!(
        lines[f1].contains("UDP 198.51.100.7:5000 > 10.0.0.1:30053"),
        "{}",
        lines[f1]
    );
    assert!(
        lines[f1 + 1].starts_with("  tx pods") && lines[f1 + 1].contains("> 10.2.0.5:53"),
        "the query leaves DNATed by the pods port: {stdout}"
    );
    assert_eq!(
        lines[f2 + 1],
        "  drop   eth-malformed at eth-input (Ethernet header truncated)",
        "{stdout}"
    );
    assert_eq!(
        lines[f3 + 1],
        "  drop   ip4-bad-checksum at ip4-input (IPv4 header checksum wrong)",
        "{stdout}"
    );
}
