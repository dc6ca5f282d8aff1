//! Shared helpers of the golden tests: the test topology, manifests, a lockstep harness around
//! [`Node`], frame builders (etherparse) and frame checkers that recompute every checksum
//! independently of the data plane.
//!
//! Topology of node-a:
//!
//! ```text
//!   eth0 10.0.0.1/16  02:00:00:00:00:01 ── gateway 10.0.255.254 (02:00:00:00:00:fe), default route
//!                                       └─ node-b  10.0.0.2     (02:00:00:00:00:02), 10.1.0.0/16 (remote pods)
//!   eth1 10.2.0.1/24  02:00:00:00:01:01 ── local pods 10.2.0.0/24, static neighbours 10.2.0.2..=10.2.0.199
//!   node.addresses: 10.0.0.1 and 192.168.50.1 (an address on no port)
//! ```
#![allow(dead_code)]

use control::config::Config;
use control::model::ClusterState;
use dataplane::drop::DropReason;
use dataplane::tables::Tables;
use dataplane::time::Instant;
use etherparse::{Ethernet2Header, IpNumber, Ipv4Header, PacketBuilder, TcpHeader, UdpHeader};
use nodegate::node::{worker_configs, Node};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

// ---- topology ---------------------------------------------------------------------------------

pub const ETH0: usize = 0;
pub const ETH1: usize = 1;
pub const MAC0: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const MAC1: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
pub const NODE_B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const ETH1_IP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const NODE_EXTRA_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
pub const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 255, 254);
pub const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// An external client, reached through the gateway.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// A pod on this node (eth1).
pub const POD_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 50);
/// A local pod address with no static neighbour (ARP needed).
pub const UNRESOLVED_POD: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 200);

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// MAC of a local pod on eth1 (the static neighbour table uses the same rule).
pub fn pod_mac(addr: Ipv4Addr) -> [u8; 6] {
    [2, 0, 0, 2, 0, addr.octets()[3]]
}

/// MAC and port a frame from `src` arrives with (sender's MAC, our port's MAC).
pub fn ingress_of(src: Ipv4Addr) -> (usize, [u8; 6], [u8; 6]) {
    let o = src.octets();
    if o[0] == 10 && o[1] == 2 && o[2] == 0 {
        (ETH1, pod_mac(src), MAC1)
    } else if (o[0] == 10 && o[1] == 1) || src == NODE_B {
        (ETH0, NODE_B_MAC, MAC0)
    } else {
        (ETH0, GW_MAC, MAC0)
    }
}

/// Port and neighbour MAC a frame to `dst` must leave by.
pub fn egress_of(dst: Ipv4Addr) -> (usize, [u8; 6], [u8; 6]) {
    let o = dst.octets();
    if o[0] == 10 && o[1] == 2 && o[2] == 0 {
        (ETH1, MAC1, pod_mac(dst))
    } else if (o[0] == 10 && o[1] == 1) || dst == NODE_B {
        (ETH0, MAC0, NODE_B_MAC)
    } else {
        (ETH0, MAC0, GW_MAC)
    }
}

/// The node configuration; `extra` is appended verbatim (e.g. a `conntrack:` section).
pub fn config_yaml(workers: usize, extra: &str) -> String {
    let mut neighbors = String::new();
    for last in 2..200u8 {
        let a = Ipv4Addr::new(10, 2, 0, last);
        let m = pod_mac(a);
        neighbors.push_str(&format!(
            "  - address: \"{a}\"\n    mac: \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\n",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ));
    }
    format!(
        r#"node:
  name: node-a
  addresses: ["10.0.0.1", "192.168.50.1"]
workers: {workers}
ports:
  - name: eth0
    driver: memory
    mac: "02:00:00:00:00:01"
    addresses: ["10.0.0.1/16"]
  - name: eth1
    driver: memory
    mac: "02:00:00:00:01:01"
    addresses: ["10.2.0.1/24"]
routes:
  - prefix: "0.0.0.0/0"
    via: "10.0.255.254"
  - prefix: "10.1.0.0/16"
    via: "10.0.0.2"
neighbors:
  - address: "10.0.255.254"
    mac: "02:00:00:00:00:fe"
  - address: "10.0.0.2"
    mac: "02:00:00:00:00:02"
{neighbors}{extra}"#
    )
}

pub fn config(workers: usize, extra: &str) -> Config {
    let text = config_yaml(workers, extra);
    Config::parse(&text, Path::new("/virtual/nodegate.yaml"))
        .unwrap_or_else(|e| panic!("test config does not parse: {e:?}\n{text}"))
}

pub fn state(manifests: &str) -> ClusterState {
    let mut st = ClusterState::default();
    control::manifests::parse_str(manifests, Path::new("/virtual/m.yaml"), &mut st)
        .unwrap_or_else(|e| panic!("manifests do not parse: {e}"));
    st
}

pub fn tables(cfg: &Config, manifests: &str) -> Tables {
    let (t, warnings) = control::snapshot::build(cfg, &state(manifests)).expect("tables build");
    assert!(warnings.is_empty(), "{warnings:?}");
    t
}

// ---- manifests --------------------------------------------------------------------------------

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug)]
pub struct Ep {
    pub addr: Ipv4Addr,
    pub node: &'static str,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

pub fn ready(addr: &str, node: &'static str) -> Ep {
    Ep {
        addr: ip(addr),
        node,
        ready: true,
        serving: true,
        terminating: false,
    }
}

pub fn terminating(addr: &str, node: &'static str) -> Ep {
    Ep {
        addr: ip(addr),
        node,
        ready: false,
        serving: true,
        terminating: true,
    }
}

/// A v1 Service. `spec_extra` is indented spec YAML (type, policies, affinity...), `status` an
/// optional top-level status block.
#[allow(clippy::too_many_arguments)]
pub fn service(
    name: &str,
    cluster_ip: &str,
    proto: &str,
    port: u16,
    target: u16,
    node_port: Option<u16>,
    spec_extra: &str,
    status: &str,
) -> String {
    let np = node_port
        .map(|n| format!("\n    nodePort: {n}"))
        .unwrap_or_default();
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  clusterIP: {cluster_ip}
  clusterIPs: ["{cluster_ip}"]
  ports:
  - name: p
    protocol: {proto}
    port: {port}
    targetPort: {target}{np}
{spec_extra}
{status}
"#
    )
}

/// A discovery.k8s.io/v1 EndpointSlice for Service `svc`.
pub fn slice(svc: &str, suffix: &str, proto: &str, port: u16, eps: &[Ep]) -> String {
    let mut endpoints = String::new();
    for e in eps {
        endpoints.push_str(&format!(
            r#"- addresses: ["{}"]
  conditions:
    ready: {}
    serving: {}
    terminating: {}
  nodeName: {}
"#,
            e.addr, e.ready, e.serving, e.terminating, e.node
        ));
    }
    let endpoints = if eps.is_empty() {
        "endpoints: []\n".to_string()
    } else {
        format!("endpoints:\n{endpoints}")
    };
    format!(
        r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {svc}-{suffix}
  namespace: default
  labels:
    kubernetes.io/service-name: {svc}
addressType: IPv4
ports:
- name: p
  protocol: {proto}
  port: {port}
{endpoints}"#
    )
}

// ---- harness ----------------------------------------------------------------------------------

/// A frame the node transmitted, with the port it left by.
#[derive(Clone, Debug)]
pub struct Sent {
    pub port: usize,
    pub bytes: Vec<u8>,
}

/// A lockstep node plus the far ends of its ports and a clock the test moves.
pub struct Harness {
    pub node: Node,
    pub peers: Vec<dataplane::port::MemoryPeer>,
    pub now: Instant,
    pub cfg: Config,
}

impl Harness {
    pub fn new(workers: usize, cfg_extra: &str, manifests: &str) -> Harness {
        let cfg = config(workers, cfg_extra);
        let t = tables(&cfg, manifests);
        let (node, peers) = Node::with_memory_ports(worker_configs(&cfg), t, 8192);
        Harness {
            node,
            peers,
            now: Instant::from_secs(1),
            cfg,
        }
    }

    /// A harness over `cfg` whose data ports are paired with host ports (the node's exception
    /// path), numbered after the data ports: `pairs` is (data port, host port). The memory
    /// driver has no `host_interface`, so the pairs are set on the worker configurations as a
    /// live run derives them from `host_interface`.
    pub fn with_host_ports(cfg: Config, manifests: &str, pairs: &[(u16, u16)]) -> Harness {
        let t = tables(&cfg, manifests);
        let mut configs = worker_configs(&cfg);
        for c in &mut configs {
            c.host_ports = pairs.to_vec();
        }
        let (node, peers) = Node::with_memory_ports(configs, t, 8192);
        Harness {
            node,
            peers,
            now: Instant::from_secs(1),
            cfg,
        }
    }

    /// A harness whose workers also have the host stack's port (numbered after the data
    /// ports), as a live run with `health.host_stack` has; returns the stack's queues, which
    /// the test serves with a `control::hoststack::HostStack`.
    pub fn with_host_stack(
        workers: usize,
        manifests: &str,
    ) -> (Harness, std::sync::Arc<dataplane::hoststack::StackQueues>) {
        use dataplane::port::{MemoryPort, Port};
        let cfg = config(workers, "");
        let t = tables(&cfg, manifests);
        let data = t.ports.len();
        let mut configs = worker_configs(&cfg);
        for c in &mut configs {
            c.stack_port = Some(data as u16);
        }
        let queues = dataplane::hoststack::StackQueues::new(dataplane::hoststack::STACK_DEPTH);
        let mut ports: Vec<Box<dyn Port>> = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..data {
            let (p, peer) = MemoryPort::pair(4096);
            ports.push(Box::new(p));
            peers.push(peer);
        }
        ports.push(Box::new(queues.port(true)));
        let node = Node::new(configs, t, ports, 8192);
        let h = Harness {
            node,
            peers,
            now: Instant::from_secs(1),
            cfg,
        };
        (h, queues)
    }

    /// Publishes tables built from new manifests.
    pub fn publish(&mut self, manifests: &str) {
        let t = tables(&self.cfg, manifests);
        self.node.publisher().publish(t);
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    /// Offers a frame on `port` (without running the node).
    pub fn inject(&mut self, port: usize, frame: &[u8]) {
        let m = self.node.frame(frame).expect("pool has buffers");
        assert!(self.peers[port].inject(m).is_ok(), "rx ring full");
    }

    pub fn run(&mut self) {
        self.node.run_until_idle(self.now);
    }

    /// Everything transmitted since the last call, every IPv4 frame checked by [`check`].
    pub fn sent(&mut self) -> Vec<Sent> {
        let out = self.sent_unchecked();
        for s in &out {
            if s.bytes.len() >= 14 && s.bytes[12..14] == [0x08, 0x00] {
                check(&s.bytes);
            }
        }
        out
    }

    /// Everything transmitted since the last call, as is (for garbage in, garbage out).
    pub fn sent_unchecked(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        for (port, peer) in self.peers.iter().enumerate() {
            while let Some(m) = peer.collect() {
                out.push(Sent {
                    port,
                    bytes: m.to_vec(),
                });
                self.node.pool().put(m);
            }
        }
        out
    }

    /// Injects one frame on the port its source arrives by, runs the node, returns what left.
    pub fn send(&mut self, frame: &[u8]) -> Vec<Sent> {
        let port = port_of_frame(frame);
        self.send_on(port, frame)
    }

    pub fn send_on(&mut self, port: usize, frame: &[u8]) -> Vec<Sent> {
        self.inject(port, frame);
        self.run();
        self.sent()
    }

    /// Sends a frame and expects exactly one frame out, which it returns.
    pub fn send_one(&mut self, frame: &[u8]) -> Sent {
        let out = self.send(frame);
        assert_eq!(out.len(), 1, "expected one frame out, got {}", out.len());
        out.into_iter().next().unwrap()
    }

    /// A drop counter summed over the workers.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.node
            .workers()
            .iter()
            .map(|w| w.stats().drop_count(r))
            .sum()
    }

    pub fn total(&self) -> nodegate::stats::WorkerReport {
        nodegate::stats::Stats::gather(self.node.workers(), &self.node.publisher().current()).total
    }

    pub fn flows(&self) -> usize {
        self.node.workers().iter().map(|w| w.flows().len()).sum()
    }

    /// IPv6 flows on every worker.
    pub fn flows6(&self) -> usize {
        self.node.workers().iter().map(|w| w.flows6().len()).sum()
    }
}

/// The port a frame built by [`Pkt`] arrives by: the one whose MAC it is sent to.
pub fn port_of_frame(frame: &[u8]) -> usize {
    if frame[..6] == MAC1 {
        ETH1
    } else {
        ETH0
    }
}

// ---- frame builders ---------------------------------------------------------------------------

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Clone, Debug)]
pub enum L4 {
    Tcp { flags: u8, seq: u32, ack: u32 },
    Udp,
    Sctp { vtag: u32 },
    Echo { id: u16, seq: u16 },
}

/// An IPv4 packet to build; MACs default to those of the port `src` arrives by.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    pub l4: L4,
    pub payload: Vec<u8>,
}

impl Pkt {
    fn new(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, l4: L4) -> Pkt {
        let (_, smac, dmac) = ingress_of(src);
        Pkt {
            smac,
            dmac,
            src,
            dst,
            sport,
            dport,
            ttl: 64,
            l4,
            payload: b"hello".to_vec(),
        }
    }

    pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Pkt {
        let seq = 1000 + u32::from(sport);
        let mut p = Pkt::new(
            src,
            sport,
            dst,
            dport,
            L4::Tcp {
                flags,
                seq,
                ack: if flags & ACK != 0 { 5000 } else { 0 },
            },
        );
        if flags & SYN != 0 {
            p.payload.clear();
        }
        p
    }

    pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Pkt {
        Pkt::new(src, sport, dst, dport, L4::Udp)
    }

    pub fn sctp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Pkt {
        Pkt::new(src, sport, dst, dport, L4::Sctp { vtag: 0x1234_5678 })
    }

    pub fn echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Pkt {
        Pkt::new(src, id, dst, 0, L4::Echo { id, seq: 1 })
    }

    pub fn ttl(mut self, ttl: u8) -> Pkt {
        self.ttl = ttl;
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Pkt {
        self.payload = p.to_vec();
        self
    }

    pub fn seq_ack(mut self, s: u32, a: u32) -> Pkt {
        if let L4::Tcp { seq, ack, .. } = &mut self.l4 {
            *seq = s;
            *ack = a;
        }
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(self.smac, self.dmac).ipv4(
            self.src.octets(),
            self.dst.octets(),
            self.ttl,
        );
        let mut out = Vec::new();
        match &self.l4 {
            L4::Tcp { flags, seq, ack } => {
                let mut h = TcpHeader::new(self.sport, self.dport, *seq, 64240);
                h.fin = flags & FIN != 0;
                h.syn = flags & SYN != 0;
                h.rst = flags & RST != 0;
                h.psh = flags & PSH != 0;
                h.ack = flags & ACK != 0;
                h.acknowledgment_number = *ack;
                b.tcp_header(h).write(&mut out, &self.payload).unwrap();
            }
            L4::Udp => b
                .udp(self.sport, self.dport)
                .write(&mut out, &self.payload)
                .unwrap(),
            L4::Echo { id, seq } => b
                .icmpv4_echo_request(*id, *seq)
                .write(&mut out, &self.payload)
                .unwrap(),
            L4::Sctp { vtag } => {
                let sctp = sctp_packet(self.sport, self.dport, *vtag, &self.payload);
                out = raw_ipv4(
                    self.smac, self.dmac, self.src, self.dst, 132, self.ttl, &sctp,
                );
            }
        }
        out
    }
}

/// An Ethernet + IPv4 frame around a raw L4 payload (header checksum filled by etherparse).
pub fn raw_ipv4(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    Ethernet2Header {
        source: smac,
        destination: dmac,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut out)
    .unwrap();
    let mut h = Ipv4Header::new(
        l4.len() as u16,
        ttl,
        IpNumber(proto),
        src.octets(),
        dst.octets(),
    )
    .unwrap();
    h.header_checksum = h.calc_header_checksum();
    h.write(&mut out).unwrap();
    out.extend_from_slice(l4);
    out
}

/// An SCTP packet: common header and one DATA chunk carrying `payload`, CRC32c filled.
pub fn sctp_packet(sport: u16, dport: u16, vtag: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    // DATA chunk: type 0, flags B|E, length, TSN, stream id, stream seq, PPID, data.
    let len = 16 + payload.len();
    p.push(0);
    p.push(0x03);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(payload);
    while p.len() % 4 != 0 {
        p.push(0);
    }
    let crc = crc32c(&p);
    p[8..12].copy_from_slice(&crc.to_le_bytes());
    p
}

/// CRC32c (Castagnoli), bit by bit: independent of the data plane's table-driven version.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// RFC 1071 ones'-complement sum, folded; a region carrying its own valid checksum sums to 0xffff.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// An ARP frame (Ethernet/IPv4).
pub fn arp(
    op: u16,
    smac: [u8; 6],
    dmac: [u8; 6],
    sender_mac: [u8; 6],
    sender: Ipv4Addr,
    target_mac: [u8; 6],
    target: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&target.octets());
    f
}

// ---- checkers ---------------------------------------------------------------------------------

/// A transmitted IPv4 frame, parsed with etherparse.
#[derive(Clone, Debug)]
pub struct Out {
    pub eth: Ethernet2Header,
    pub ip: Ipv4Header,
    /// The L4 bytes, exactly `total_len - ihl*4` of them.
    pub l4: Vec<u8>,
}

impl Out {
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.ip.source)
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.ip.destination)
    }

    pub fn tcp(&self) -> (TcpHeader, Vec<u8>) {
        assert_eq!(self.ip.protocol, IpNumber::TCP);
        let (h, rest) = TcpHeader::from_slice(&self.l4).expect("TCP header");
        (h, rest.to_vec())
    }

    pub fn udp(&self) -> (UdpHeader, Vec<u8>) {
        assert_eq!(self.ip.protocol, IpNumber::UDP);
        let (h, rest) = UdpHeader::from_slice(&self.l4).expect("UDP header");
        (h, rest.to_vec())
    }

    /// Source and destination ports of TCP, UDP or SCTP.
    pub fn ports(&self) -> (u16, u16) {
        (
            u16::from_be_bytes([self.l4[0], self.l4[1]]),
            u16::from_be_bytes([self.l4[2], self.l4[3]]),
        )
    }

    /// ICMP type and code.
    pub fn icmp(&self) -> (u8, u8) {
        assert_eq!(self.ip.protocol, IpNumber::ICMP);
        (self.l4[0], self.l4[1])
    }

    /// The packet quoted by an ICMP error, parsed.
    pub fn quote(&self) -> (Ipv4Header, Vec<u8>) {
        let (h, rest) = Ipv4Header::from_slice(&self.l4[8..]).expect("quoted IPv4 header");
        (h, rest.to_vec())
    }
}

/// Parses an IPv4 frame and verifies every checksum by full recomputation: the IPv4 header,
/// TCP/UDP over the pseudo header, SCTP's CRC32c, ICMP over the message and, for an ICMP error,
/// the quoted IPv4 header. Panics on any mismatch.
pub fn check(frame: &[u8]) -> Out {
    let (eth, rest) = Ethernet2Header::from_slice(frame).expect("Ethernet header");
    assert_eq!(eth.ether_type, etherparse::EtherType::IPV4);
    let (ip, _) = Ipv4Header::from_slice(rest).expect("IPv4 header");
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 header checksum of {ip:?}"
    );
    let total = usize::from(ip.total_len);
    assert!(rest.len() >= total, "frame shorter than total length");
    let l4 = rest[ip.header_len()..total].to_vec();
    match ip.protocol {
        IpNumber::TCP => {
            let (h, payload) = TcpHeader::from_slice(&l4).expect("TCP header");
            let c = h.calc_checksum_ipv4(&ip, payload).unwrap();
            assert_eq!(h.checksum, c, "TCP checksum");
        }
        IpNumber::UDP => {
            let (h, payload) = UdpHeader::from_slice(&l4).expect("UDP header");
            if h.checksum != 0 {
                let c = h.calc_checksum_ipv4(&ip, payload).unwrap();
                assert_eq!(h.checksum, c, "UDP checksum");
            }
            assert_eq!(usize::from(h.length), l4.len(), "UDP length");
        }
        IpNumber::ICMP => {
            assert_eq!(ones_sum(&l4), 0xffff, "ICMP checksum");
            if matches!(l4[0], 3 | 11 | 12) {
                let (q, _) = Ipv4Header::from_slice(&l4[8..]).expect("quoted IPv4 header");
                assert_eq!(
                    q.header_checksum,
                    q.calc_header_checksum(),
                    "quoted IPv4 header checksum"
                );
            }
        }
        IpNumber(132) => {
            let mut z = l4.clone();
            let stored = u32::from_le_bytes([z[8], z[9], z[10], z[11]]);
            z[8..12].fill(0);
            assert_eq!(stored, crc32c(&z), "SCTP CRC32c");
        }
        _ => {}
    }
    Out { eth, ip, l4 }
}

/// Checks the frame leaves by the port and towards the neighbour `dst` must use, with TTL
/// `ttl`; returns it parsed.
pub fn expect_out(s: &Sent, ttl: u8) -> Out {
    let o = check(&s.bytes);
    let (port, smac, dmac) = egress_of(o.dst());
    assert_eq!(s.port, port, "egress port for {}", o.dst());
    assert_eq!(o.eth.source, smac, "source MAC");
    assert_eq!(o.eth.destination, dmac, "destination MAC");
    assert_eq!(o.ip.time_to_live, ttl, "TTL");
    o
}

impl Harness {
    /// Gives one frame to the next worker in turn (as a NIC's RSS would, ignoring flows), runs
    /// every worker until idle and returns what left.
    pub fn send_rr(&mut self, frame: &[u8]) -> Vec<Sent> {
        let port = port_of_frame(frame);
        let mut v = vec![self.node.frame(frame).expect("pool has buffers")];
        self.node.inject(port as u16, &mut v, self.now);
        self.sent()
    }
}

/// The reply an endpoint (or client) would send to an observed frame: addresses and ports
/// swapped, MACs those of the port the reply arrives by.
pub fn reply_to(o: &Out, l4: L4) -> Pkt {
    let (sport, dport) = o.ports();
    let mut p = match l4 {
        L4::Tcp { flags, .. } => Pkt::tcp(o.dst(), dport, o.src(), sport, flags),
        L4::Udp => Pkt::udp(o.dst(), dport, o.src(), sport),
        L4::Sctp { .. } => Pkt::sctp(o.dst(), dport, o.src(), sport),
        L4::Echo { .. } => panic!("no echo replies here"),
    };
    p.payload = b"reply".to_vec();
    p
}

// ---- randomness -------------------------------------------------------------------------------

/// xorshift64*: deterministic pseudo-random numbers for the mutation tests (seeded, so a
/// failure replays).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
