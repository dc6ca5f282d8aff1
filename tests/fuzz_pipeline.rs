//! The whole pipeline under mutated frames: valid frames of every protocol the node handles
//! (ARP, IPv4 and IPv6 TCP/UDP/SCTP/ICMP to Services with and without endpoints, NodePorts,
//! fragments, ICMP errors about flows, neighbour discovery, traffic to the node and from its
//! kernel), mutated and replayed through a lockstep node with memory ports, host ports, both
//! address families and 1-3 workers. A panic is a failure that prints the seed and the frame;
//! every frame must be accounted for, and the node must still forward afterwards.
//!
//! Bounded for CI: `NODEGATE_FUZZ_FRAMES` frames per worker count (default 250,000) and at
//! most `NODEGATE_FUZZ_SECS` seconds each (default 12). `NODEGATE_FUZZ_SEED` picks another
//! sequence. Runs of millions of frames are in docs/internals.md ("Fuzzing the pipeline").

mod support;

use control::config::Config;
use etherparse::PacketBuilder;
use nodegate::node::{worker_configs, Node};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;
use support::*;

const HOST0: usize = 2;
const HOST1: usize = 3;
const PORTS: usize = 4;

const WEB: &str = "10.96.0.10";
const WEB6: &str = "fd00:96::10";
const DNS: &str = "10.96.0.53";
const DNS6: &str = "fd00:96::53";
const EMPTY: &str = "10.96.0.16";
const EMPTY6: &str = "fd00:96::16";
const LB: &str = "198.51.100.10";
const SCTP_SVC: &str = "10.96.0.60";
const NODE6: &str = "fd00::1";
const ETH1_6: &str = "fd01::1";
const POD6: &str = "fd01::10";
const EXTERNAL6: &str = "2001:db8:5::7";
const GW6: &str = "fd00::fffe";

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn config_text(workers: usize) -> String {
    let mut neighbors = String::new();
    for last in 2..40u8 {
        let a = Ipv4Addr::new(10, 2, 0, last);
        let m = pod_mac(a);
        neighbors.push_str(&format!(
            "  - {{address: \"{a}\", mac: \"02:00:00:02:00:{:02x}\"}}\n",
            m[5]
        ));
    }
    format!(
        r#"node:
  name: node-a
  addresses: ["10.0.0.1"]
workers: {workers}
ports:
  - {{name: eth0, driver: memory, mac: "02:00:00:00:00:01", addresses: ["10.0.0.1/16", "{NODE6}/64"]}}
  - {{name: eth1, driver: memory, mac: "02:00:00:00:01:01", addresses: ["10.2.0.1/24", "{ETH1_6}/64"]}}
routes:
  - {{prefix: "0.0.0.0/0", via: "10.0.255.254"}}
  - {{prefix: "10.1.0.0/16", via: "10.0.0.2"}}
  - {{prefix: "2001:db8::/32", via: "{GW6}"}}
neighbors:
  - {{address: "10.0.255.254", mac: "02:00:00:00:00:fe"}}
  - {{address: "10.0.0.2", mac: "02:00:00:00:00:02"}}
  - {{address: "{GW6}", mac: "02:00:00:00:00:fe"}}
  - {{address: "{POD6}", mac: "02:00:00:06:00:10"}}
{neighbors}conntrack:
  max_flows: 4096
"#
    )
}

/// A dual-stack Service `name` with both ClusterIPs, and its EndpointSlices (one per family;
/// `v6_endpoints` false leaves the IPv6 slice empty, the case that once panicked a worker).
fn dual_stack(
    name: &str,
    (v4, v6): (&str, &str),
    proto: &str,
    port: u16,
    spec: &str,
    (v4_eps, v6_eps): (&[&str], &[&str]),
) -> String {
    let eps = |list: &[&str]| -> String {
        if list.is_empty() {
            return "endpoints: []\n".into();
        }
        let mut s = "endpoints:\n".to_string();
        for e in list {
            s.push_str(&format!(
                "- {{addresses: [\"{e}\"], conditions: {{ready: true}}, nodeName: node-a}}\n"
            ));
        }
        s
    };
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: PreferDualStack
  clusterIPs: ["{v4}", "{v6}"]
  ports: [{{name: p, port: {port}, protocol: {proto}, targetPort: 8080{spec}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-4, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: p, port: 8080, protocol: {proto}}}]
{}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-6, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv6
ports: [{{name: p, port: 8080, protocol: {proto}}}]
{}"#,
        eps(v4_eps),
        eps(v6_eps)
    )
}

/// The Services; `moved` gives the UDP Service other endpoints (a table change that flushes
/// UDP flows on every worker).
fn manifests(moved: bool) -> String {
    let dns4: &[&str] = if moved {
        &["10.2.0.21"]
    } else {
        &["10.2.0.20", "10.1.0.20"]
    };
    let dns6: &[&str] = if moved { &["fd01::21"] } else { &["fd01::20"] };
    [
        dual_stack(
            "web",
            (WEB, WEB6),
            "TCP",
            80,
            ", nodePort: 30080",
            (&["10.2.0.10", "10.1.0.10"], &[POD6]),
        )
        .replace(
            "spec:\n",
            "spec:\n  type: NodePort\n  sessionAffinity: ClientIP\n",
        ),
        dual_stack("dns", (DNS, DNS6), "UDP", 53, "", (dns4, dns6)),
        dual_stack(
            "empty",
            (EMPTY, EMPTY6),
            "TCP",
            81,
            ", nodePort: 30081",
            (&["10.2.0.11"], &[]),
        )
        .replace("spec:\n", "spec:\n  type: NodePort\n"),
        service(
            "local",
            "10.96.0.12",
            "TCP",
            80,
            8080,
            Some(30082),
            "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000",
            &format!("status:\n  loadBalancer:\n    ingress:\n    - ip: {LB}\n"),
        ),
        slice("local", "a", "TCP", 8080, &[ready("10.1.0.12", "node-b")]),
        service(SCTP_SVC, SCTP_SVC, "SCTP", 9, 9, None, "", ""),
        slice(SCTP_SVC, "a", "SCTP", 9, &[ready("10.2.0.30", "node-a")]),
    ]
    .concat()
}

fn harness(workers: usize) -> Harness {
    let text = config_text(workers);
    let cfg = Config::parse(&text, Path::new("/virtual/fuzz.yaml"))
        .unwrap_or_else(|e| panic!("fuzz config does not parse: {e:?}\n{text}"));
    let t = tables(&cfg, &manifests(false));
    let mut configs = worker_configs(&cfg);
    for c in &mut configs {
        c.host_ports = vec![(ETH0 as u16, HOST0 as u16), (ETH1 as u16, HOST1 as u16)];
    }
    let (node, peers) = Node::with_memory_ports(configs, t, 16384);
    Harness {
        node,
        peers,
        now: dataplane::time::Instant::from_secs(1),
        cfg,
    }
}

// ---- seeds ------------------------------------------------------------------------------------

/// Port and MACs (sender's, ours) an IPv6 frame from `src` arrives with.
fn ingress6(src: Ipv6Addr) -> (usize, [u8; 6], [u8; 6]) {
    if src.segments()[0] == 0xfd01 {
        (ETH1, [2, 0, 0, 6, 0, src.octets()[15]], MAC1)
    } else {
        (ETH0, GW_MAC, MAC0)
    }
}

enum L4v6<'a> {
    Tcp(u16, u16, u8),
    Udp(u16, u16),
    Echo,
    Raw(u8, u8, [u8; 4], &'a [u8]),
}

fn frame6(src: &str, dst: &str, hop: u8, l4: L4v6) -> (usize, Vec<u8>) {
    let (port, smac, dmac) = ingress6(ip6(src));
    let b = PacketBuilder::ethernet2(smac, dmac).ipv6(ip6(src).octets(), ip6(dst).octets(), hop);
    let mut out = Vec::new();
    match l4 {
        L4v6::Tcp(sport, dport, flags) => {
            let mut b = b.tcp(sport, dport, 7000, 64240);
            if flags & SYN != 0 {
                b = b.syn();
            }
            if flags & ACK != 0 {
                b = b.ack(1);
            }
            if flags & RST != 0 {
                b = b.rst();
            }
            b.write(&mut out, b"segment").unwrap()
        }
        L4v6::Udp(sport, dport) => b.udp(sport, dport).write(&mut out, b"datagram").unwrap(),
        L4v6::Echo => b
            .icmpv6_echo_request(3, 1)
            .write(&mut out, b"ping")
            .unwrap(),
        L4v6::Raw(ty, code, head, body) => {
            b.icmpv6_raw(ty, code, head).write(&mut out, body).unwrap()
        }
    }
    (port, out)
}

/// Inserts an IPv6 extension header (8 bytes, next header `inner`) of type `kind` after the
/// fixed header of `f`.
fn with_ext6(mut f: Vec<u8>, kind: u8, ext: [u8; 8]) -> Vec<u8> {
    let inner = f[14 + 6];
    f[14 + 6] = kind;
    let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    let mut ext = ext;
    ext[0] = inner;
    f.splice(54..54, ext);
    f
}

/// Splits an IPv4 frame's payload into two fragments at `at` (a multiple of 8).
fn fragments4(f: &[u8], at: usize) -> [Vec<u8>; 2] {
    let hl = usize::from(f[14] & 0xf) * 4;
    let body = &f[14 + hl..];
    let mk = |part: &[u8], offset: usize, more: bool| {
        let mut g = f[..14 + hl].to_vec();
        g.extend_from_slice(part);
        let total = (hl + part.len()) as u16;
        g[16..18].copy_from_slice(&total.to_be_bytes());
        g[18..20].copy_from_slice(&0x4242u16.to_be_bytes());
        let flags = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
        g[20..22].copy_from_slice(&flags.to_be_bytes());
        g[24..26].copy_from_slice(&[0, 0]);
        let c = !ones_sum(&g[14..14 + hl]);
        g[24..26].copy_from_slice(&c.to_be_bytes());
        g
    };
    [mk(&body[..at], 0, true), mk(&body[at..], at, false)]
}

/// Valid frames of every protocol and path, each with the port it arrives on.
fn seeds() -> Seeds {
    let client = CLIENT;
    let pod = ip("10.2.0.10");
    let mut s: Seeds = Vec::new();
    let mut v4 = |p: Pkt| {
        let f = p.bytes();
        s.push((port_of_frame(&f), f));
    };
    // IPv4 Services: ClusterIP, NodePort, no endpoints (RST), Local LB (drop), UDP, SCTP.
    v4(Pkt::tcp(client, 40000, ip(WEB), 80, SYN));
    v4(Pkt::tcp(client, 40000, ip(WEB), 80, ACK | PSH).payload(b"GET / HTTP/1.1\r\n\r\n"));
    v4(Pkt::tcp(client, 40001, NODE_IP, 30080, SYN));
    v4(Pkt::tcp(client, 40002, ip(EMPTY), 81, SYN));
    v4(Pkt::tcp(client, 40003, ip(LB), 80, SYN));
    v4(Pkt::tcp(client, 40004, NODE_IP, 32000, SYN)); // the health check port
    v4(Pkt::udp(client, 5300, ip(DNS), 53).payload(b"query"));
    v4(Pkt::sctp(POD_CLIENT, 7000, ip(SCTP_SVC), 9));
    // Replies of those flows: from a local pod and through the SNAT range.
    v4(Pkt::tcp(pod, 8080, client, 40000, SYN | ACK));
    v4(Pkt::tcp(ip("10.1.0.10"), 8080, NODE_IP, 20001, SYN | ACK));
    v4(Pkt::udp(ip("10.2.0.20"), 8080, client, 5300).payload(b"answer"));
    // The node: ping, ssh (punted), TTL 1 through a Service and through the router.
    v4(Pkt::echo(client, NODE_IP, 9));
    v4(Pkt::tcp(client, 40005, NODE_IP, 22, SYN));
    v4(Pkt::tcp(client, 40006, ip(WEB), 80, SYN).ttl(1));
    v4(Pkt::udp(client, 5301, ip("10.2.0.33"), 7777).ttl(1));
    v4(Pkt::udp(client, 5302, UNRESOLVED_POD, 7777));
    // An ICMP error about a Service flow (port unreachable from the endpoint, quoting its reply).
    let quoted = Pkt::udp(ip("10.2.0.20"), 8080, client, 5300).bytes();
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[14..14 + 28]);
    let c = !ones_sum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let err = raw_ipv4(
        pod_mac(ip("10.2.0.20")),
        MAC1,
        ip("10.2.0.20"),
        client,
        1,
        64,
        &icmp,
    );
    s.push((ETH1, err));
    // Fragments of a UDP datagram to the UDP Service, in order.
    let big = Pkt::udp(client, 5303, ip(DNS), 53)
        .payload(&[7u8; 64])
        .bytes();
    for f in fragments4(&big, 32) {
        s.push((ETH0, f));
    }
    // ARP: a request for the node, a reply from a pod, a gratuitous ARP.
    s.push((ETH0, arp(1, GW_MAC, BROADCAST, GW_MAC, GW, [0; 6], NODE_IP)));
    s.push((
        ETH1,
        arp(
            2,
            pod_mac(UNRESOLVED_POD),
            MAC1,
            pod_mac(UNRESOLVED_POD),
            UNRESOLVED_POD,
            MAC1,
            ETH1_IP,
        ),
    ));
    s.push((
        ETH0,
        arp(1, NODE_B_MAC, BROADCAST, NODE_B_MAC, NODE_B, [0; 6], NODE_B),
    ));
    // The node's kernel, through its host ports.
    let mut kernel = Pkt::tcp(NODE_IP, 22, client, 40005, SYN | ACK).bytes();
    kernel[..6].copy_from_slice(&GW_MAC);
    kernel[6..12].copy_from_slice(&MAC0);
    s.push((HOST0, kernel));
    let mut kernel_arp = arp(1, MAC1, BROADCAST, MAC1, ETH1_IP, [0; 6], ip("10.2.0.33"));
    kernel_arp[6..12].copy_from_slice(&MAC1);
    s.push((HOST1, kernel_arp));

    // IPv6: Services with and without endpoints, replies, echo, neighbour discovery, errors.
    s.push(frame6(EXTERNAL6, WEB6, 64, L4v6::Tcp(41000, 80, SYN)));
    s.push(frame6(EXTERNAL6, EMPTY6, 64, L4v6::Tcp(41001, 81, SYN)));
    s.push(frame6(EXTERNAL6, EMPTY6, 64, L4v6::Tcp(41001, 81, ACK)));
    s.push(frame6(EXTERNAL6, DNS6, 64, L4v6::Udp(41002, 53)));
    s.push(frame6(EXTERNAL6, NODE6, 64, L4v6::Tcp(41003, 30080, SYN)));
    s.push(frame6(
        POD6,
        EXTERNAL6,
        64,
        L4v6::Tcp(8080, 41000, SYN | ACK),
    ));
    s.push(frame6(EXTERNAL6, NODE6, 64, L4v6::Echo));
    s.push(frame6(EXTERNAL6, NODE6, 64, L4v6::Tcp(41004, 22, SYN)));
    s.push(frame6(EXTERNAL6, WEB6, 1, L4v6::Tcp(41005, 80, SYN)));
    s.push(frame6(EXTERNAL6, POD6, 1, L4v6::Udp(41006, 7)));
    let (p, f) = frame6(EXTERNAL6, DNS6, 64, L4v6::Udp(41007, 53));
    s.push((p, with_ext6(f.clone(), 0, [0, 0, 1, 4, 0, 0, 0, 0])));
    s.push((p, with_ext6(f.clone(), 60, [0, 0, 1, 4, 0, 0, 0, 0])));
    s.push((p, with_ext6(f, 44, [0, 0, 0, 1, 0, 0, 0x42, 0x42])));
    let (p, f) = frame6(EXTERNAL6, DNS6, 64, L4v6::Udp(41008, 53));
    s.push((p, with_ext6(f, 44, [0, 0, 0, 8, 0, 0, 0x42, 0x43])));
    let mut ns_body = ip6(NODE6).octets().to_vec();
    ns_body.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0xfe]);
    let (p, mut ns) = frame6(
        GW6,
        "ff02::1:ff00:1",
        255,
        L4v6::Raw(135, 0, [0; 4], &ns_body),
    );
    ns[..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 1]);
    s.push((p, ns));
    let mut na_body = ip6("fd01::33").octets().to_vec();
    na_body.extend_from_slice(&[2, 1, 2, 0, 0, 6, 0, 0x33]);
    s.push(frame6(
        "fd01::33",
        ETH1_6,
        255,
        L4v6::Raw(136, 0, [0x60, 0, 0, 0], &na_body),
    ));
    let (_, quoted6) = frame6(POD6, EXTERNAL6, 64, L4v6::Tcp(8080, 41000, ACK));
    s.push(frame6(
        POD6,
        EXTERNAL6,
        64,
        L4v6::Raw(1, 4, [0; 4], &quoted6[14..14 + 60]),
    ));
    s.push(frame6(
        EXTERNAL6,
        POD6,
        64,
        L4v6::Raw(2, 0, [0, 0, 5, 0], &quoted6[14..14 + 60]),
    ));
    // A tagged frame and an unknown EtherType.
    let mut tagged = Pkt::udp(client, 5304, ip(DNS), 53).bytes();
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    s.push((ETH0, tagged));
    let mut lldp = Pkt::udp(client, 5305, ip(DNS), 53).bytes();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    s.push((ETH0, lldp));
    s
}

// ---- mutations --------------------------------------------------------------------------------

/// Offsets of the fields whose values steer parsing: lengths, header lengths, protocol numbers,
/// flags, offsets. Mutating them reaches the checks (and the panics) a random byte rarely does.
fn interesting_offsets(f: &[u8]) -> Vec<usize> {
    let mut at = vec![12, 13];
    match f.get(12..14) {
        Some([0x08, 0x00]) => {
            at.extend([14, 16, 17, 20, 21, 22, 23]);
            let hl = usize::from(f.get(14).copied().unwrap_or(0x45) & 0xf) * 4;
            let l4 = 14 + hl.max(20);
            at.extend([l4, l4 + 1, l4 + 4, l4 + 5, l4 + 12, l4 + 13, l4 + 28]);
        }
        Some([0x86, 0xdd]) => {
            at.extend([18, 19, 20, 21, 54, 55, 56, 57, 58, 59, 66, 67, 68]);
        }
        Some([0x08, 0x06]) => at.extend([14, 15, 16, 17, 18, 19, 20, 21]),
        _ => at.extend([14, 15, 16, 17, 18]),
    }
    at.retain(|&i| i < f.len());
    at
}

const MAGIC: [u8; 10] = [0, 1, 0x7f, 0x80, 0xff, 0x40, 0x45, 0x4f, 0x06, 0xf0];

/// One mutated copy of `base`: byte and bit flips, interesting values in steering fields,
/// truncation, extension, a spliced tail from `other`.
fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 | 1 => {
                let at = rng.below(f.len());
                f[at] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(f.len());
                f[at] ^= 1 << rng.below(8);
            }
            3 | 4 => {
                let fields = interesting_offsets(&f);
                if !fields.is_empty() {
                    let at = fields[rng.below(fields.len())];
                    f[at] = MAGIC[rng.below(MAGIC.len())].wrapping_add(rng.below(3) as u8);
                }
            }
            5 => {
                let keep = rng.below(f.len() + 1);
                f.truncate(keep);
                if f.is_empty() {
                    f.push(0);
                }
            }
            6 => {
                let extra = rng.below(64);
                for _ in 0..extra {
                    f.push(rng.next() as u8);
                }
            }
            _ => {
                let at = rng.below(f.len());
                let from = rng.below(other.len());
                f.truncate(at);
                f.extend_from_slice(&other[from..]);
                if f.is_empty() {
                    f.push(0);
                }
            }
        }
    }
    f.truncate(2048);
    // Most of the time the IPv4 header checksum is made right again, so that a mutated header
    // gets past ip4-input's checksum check to the stages behind it.
    if rng.below(4) != 0 && f.get(12..14) == Some(&[0x08, 0x00]) {
        let hl = usize::from(f.get(14).copied().unwrap_or(0) & 0xf) * 4;
        if hl >= 20 && f.len() >= 14 + hl {
            f[24..26].copy_from_slice(&[0, 0]);
            let c = !ones_sum(&f[14..14 + hl]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
    }
    f
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the mutated frames through a node of `workers` workers; returns how many frames it
/// injected. Panics (test failure) with the seed, round and frame when the node panics.
fn fuzz(workers: usize, seed: u64, frames: u64, secs: u64) -> u64 {
    let mut h = harness(workers);
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let started = std::time::Instant::now();
    let mut injected = 0u64;
    let mut round = 0u64;
    while injected < frames && started.elapsed() < Duration::from_secs(secs) {
        round += 1;
        let (port, base) = &seeds[rng.below(seeds.len())];
        let (_, other) = &seeds[rng.below(seeds.len())];
        // One frame in eight goes in unmutated, so that flows and neighbours exist for the
        // mutated ones to meet.
        let f = if rng.below(8) == 0 {
            base.clone()
        } else {
            mutate(&mut rng, base, other)
        };
        let port = if rng.below(10) == 0 {
            rng.below(PORTS)
        } else {
            *port
        };
        h.inject(port, &f);
        injected += 1;
        let ran = catch_unwind(AssertUnwindSafe(|| {
            h.run();
            let _ = h.sent_unchecked();
            if round.is_multiple_of(997) {
                // Time passes: holds expire, flows time out, the sweeps run.
                h.advance(Duration::from_millis(rng.below(8000) as u64));
                h.run();
                let _ = h.sent_unchecked();
            }
            if round.is_multiple_of(4999) {
                h.publish(&manifests(round.is_multiple_of(2)));
                h.run();
                let _ = h.sent_unchecked();
            }
        }));
        if ran.is_err() {
            panic!(
                "the pipeline panicked: workers {workers}, seed {seed:#x}, round {round}, port {port}, frame {}",
                hex(&f)
            );
        }
    }
    h.advance(Duration::from_secs(30));
    h.run();
    let _ = h.sent_unchecked();
    let t = h.total();
    assert_eq!(
        t.rx, injected,
        "every frame received once (steering loses none)"
    );
    let mut drops: Vec<_> = t.drops.iter().filter(|(_, &n)| n > 0).collect();
    drops.sort_by_key(|(_, &n)| std::cmp::Reverse(n));
    eprintln!(
        "fuzz: {workers} worker(s): rx {} tx {} flows created {} resets {} icmp {} punted {} from host {} handoffs {} flushed {} nd {}/{} arp {}/{}; drops {drops:?}",
        t.rx, t.tx, t.flows_created, t.tcp_resets_sent, t.icmp_sent, t.punted, t.from_host,
        t.handoff_out, t.udp_flows_flushed, t.nd_solicitations, t.nd_advertisements,
        t.arp_requests, t.arp_replies
    );
    // The mutations must reach the deep stages, not only the parsers' early exits.
    assert!(t.flows_created > 100, "flows were created");
    assert!(t.tcp_resets_sent > 0 && t.icmp_sent > 0 && t.punted > 0 && t.from_host > 0);
    // Still forwarding, through a Service of each family.
    h.publish(&manifests(false));
    let syn = Pkt::tcp(ip("203.0.113.99"), 45000, ip(WEB), 80, SYN).bytes();
    let out = h.send(&syn);
    assert_eq!(out.len(), 1, "a SYN to the ClusterIP after fuzzing");
    let o = check(&out[0].bytes);
    assert!(["10.2.0.10", "10.1.0.10"].contains(&o.dst().to_string().as_str()));
    let (p, syn6) = frame6("2001:db8:5::99", WEB6, 64, L4v6::Tcp(45001, 80, SYN));
    let out = h.send_on(p, &syn6);
    assert_eq!(out.len(), 1, "an IPv6 SYN to the ClusterIP after fuzzing");
    assert_eq!(&out[0].bytes[14 + 24..14 + 40], &ip6(POD6).octets());
    injected
}

#[test]
fn mutated_frames_of_every_protocol_never_panic_a_worker() {
    let frames = env_u64("NODEGATE_FUZZ_FRAMES", 250_000);
    let secs = env_u64("NODEGATE_FUZZ_SECS", 12);
    let seed = env_u64("NODEGATE_FUZZ_SEED", 0x5eed_fa11);
    let mut total = 0;
    for workers in [1, 2, 3] {
        let n = fuzz(
            workers,
            seed.wrapping_add(0x9e37_79b9 * workers as u64),
            frames,
            secs,
        );
        eprintln!("fuzz: {workers} worker(s): {n} frames, no panic");
        total += n;
    }
    assert!(total >= 3_000, "the fuzz loop ran ({total} frames)");
}

/// The frame that panicked a worker (issue 12): an IPv6 TCP segment whose data offset points
/// past its end, to a dual-stack Service without IPv6 endpoints. Now dropped and counted.
#[test]
fn ipv6_tcp_with_data_offset_past_the_segment_is_dropped_not_a_panic() {
    for workers in [1, 2] {
        let mut h = harness(workers);
        let (p, mut f) = frame6(EXTERNAL6, EMPTY6, 64, L4v6::Tcp(41001, 81, ACK));
        f[14 + 40 + 12] = 0xf0; // data offset 60 bytes over a 27-byte segment
        let out = h.send_on(p, &f);
        assert!(out.is_empty(), "nothing answered: {out:?}");
        assert_eq!(h.drops(dataplane::drop::DropReason::L4Malformed), 1);
        // And the IPv4 twin.
        let mut f4 = Pkt::tcp(CLIENT, 40002, ip(EMPTY), 81, ACK).bytes();
        f4[14 + 20 + 12] = 0xf0;
        assert!(h.send(&f4).is_empty());
        assert_eq!(h.drops(dataplane::drop::DropReason::L4Malformed), 2);
    }
}

// ---- proptest: near-valid frames, shrunk to the smallest failing edit ---------------------------

/// Frames and the port each arrives on.
type Seeds = Vec<(usize, Vec<u8>)>;

std::thread_local! {
    static NODE: std::cell::RefCell<Option<(Harness, Seeds)>> =
        const { std::cell::RefCell::new(None) };
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 400, ..Default::default() })]

    /// A valid seed frame with a few bytes set and perhaps cut short, through two workers: no
    /// panic, and the frame is received (then sent, dropped or consumed).
    #[test]
    fn near_valid_frames_never_panic(
        which in 0usize..1024,
        edits in proptest::collection::vec((0usize..256, proptest::prelude::any::<u8>()), 1..5),
        cut in proptest::option::of(0usize..256),
    ) {
        NODE.with(|cell| {
            let mut cell = cell.borrow_mut();
            let (h, seeds) = cell.get_or_insert_with(|| (harness(2), seeds()));
            let (port, base) = &seeds[which % seeds.len()];
            let mut f = base.clone();
            for (at, v) in &edits {
                let i = (14 + at) % f.len();
                f[i] = *v;
            }
            if let Some(c) = cut {
                f.truncate((c + 1).min(f.len()));
            }
            let before = h.total().rx;
            h.inject(*port, &f);
            let ran = catch_unwind(AssertUnwindSafe(|| {
                h.run();
                let _ = h.sent_unchecked();
            }));
            proptest::prop_assert!(ran.is_ok(), "panicked on port {port}: {}", hex(&f));
            proptest::prop_assert_eq!(h.total().rx, before + 1);
            Ok(())
        })?;
    }
}
