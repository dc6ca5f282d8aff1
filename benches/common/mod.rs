//! Shared set-up for the benchmarks: a one-port, dual-stack node with a ClusterIP Service of 16
//! endpoints in each family, built through the same control-plane code as `nodegate run`. Each
//! bench uses part of it.

#![allow(dead_code)]

use control::config::Config;
use control::model::ClusterState;
use dataplane::mbuf::{Mbuf, PoolCache};
use dataplane::port::Port;
use dataplane::tables::Tables;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

pub const VIP: [u8; 4] = [10, 96, 0, 10];
/// The IPv6 Service's ClusterIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x10);
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub fn tables(max_flows: usize, syn_timeout: u32) -> (Config, Tables) {
    let yaml = format!(
        r#"
node: {{name: node-a, addresses: ["10.0.0.1"]}}
workers: 1
ports:
  - {{name: eth0, driver: memory, mac: "02:00:00:00:00:01", addresses: ["10.0.0.1/16", "fd00::1/64"]}}
routes:
  - {{prefix: "0.0.0.0/0", via: "10.0.0.2"}}
  - {{prefix: "::/0", via: "fd00::2"}}
neighbors:
  - {{address: "10.0.0.2", mac: "02:00:00:00:00:02"}}
  - {{address: "fd00::2", mac: "02:00:00:00:00:02"}}
conntrack:
  max_flows: {max_flows}
  max_flows6: {max_flows}
  timeouts: {{tcp_syn_sent: {syn_timeout}}}
"#
    );
    let cfg = Config::parse(&yaml, Path::new("/bench/nodegate.yaml")).expect("bench config");
    let mut eps = String::new();
    for i in 0..16 {
        eps.push_str(&format!(
            "  - addresses: [\"10.1.{}.{}\"]\n    conditions: {{ready: true}}\n    nodeName: node-b\n",
            i / 200,
            i % 200 + 10
        ));
    }
    let mut eps6 = String::new();
    for i in 0..16 {
        eps6.push_str(&format!(
            "  - addresses: [\"fd01::{:x}\"]\n    conditions: {{ready: true}}\n    nodeName: node-b\n",
            i + 0x10
        ));
    }
    let manifests = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: 10.96.0.10
  ports: [{{port: 80, protocol: TCP, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: "", port: 8080, protocol: TCP}}]
endpoints:
{eps}---
apiVersion: v1
kind: Service
metadata: {{name: web6, namespace: default}}
spec:
  ipFamilies: [IPv6]
  clusterIPs: ["fd00:96::10"]
  ports: [{{port: 80, protocol: TCP, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web6-1
  namespace: default
  labels: {{kubernetes.io/service-name: web6}}
addressType: IPv6
ports: [{{name: "", port: 8080, protocol: TCP}}]
endpoints:
{eps6}"#
    );
    let mut state = ClusterState::default();
    control::manifests::parse_str(&manifests, Path::new("/bench/m.yaml"), &mut state)
        .expect("bench manifests");
    let (tables, _) = control::snapshot::build(&cfg, &state).expect("bench tables");
    (cfg, tables)
}

/// A 64-byte TCP frame from client `flow` (a unique address per flow id, up to 2^24 ids) to the
/// Service, with valid checksums.
pub fn frame(flow: u32, flags: u8) -> [u8; 64] {
    let src = [
        100 + (flow >> 24) as u8,
        (flow >> 16) as u8,
        (flow >> 8) as u8,
        flow as u8,
    ];
    let sport = 1024 + (flow.wrapping_mul(7) & 0x3fff) as u16;
    tcp_frame(src.into(), VIP.into(), sport, 80, flags)
}

/// A 64-byte TCP frame with valid checksums, arriving from the peer.
pub fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[0..6].copy_from_slice(&NODE_MAC);
    f[6..12].copy_from_slice(&PEER_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = !dataplane::wire::checksum::data(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    dataplane::wire::TcpPacket::new_unchecked(&mut f[34..54]).fill_checksum_v4(src, dst);
    f
}

/// An IPv6 TCP frame (74 bytes, no options) from client `flow` (a unique address per flow id)
/// to the IPv6 Service, with a valid checksum.
pub fn frame6(flow: u32, flags: u8) -> [u8; 74] {
    let src = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(flow));
    let sport = 1024 + (flow.wrapping_mul(7) & 0x3fff) as u16;
    tcp6_frame(src, VIP6, sport, 80, flags)
}

/// A 74-byte IPv6 TCP frame with a valid checksum, arriving from the peer.
pub fn tcp6_frame(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, flags: u8) -> [u8; 74] {
    let mut f = [0u8; 74];
    f[0..6].copy_from_slice(&NODE_MAC);
    f[6..12].copy_from_slice(&PEER_MAC);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip[6] = 6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let tcp = &mut f[54..74];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    dataplane::wire::TcpPacket::new_unchecked(&mut f[54..74]).fill_checksum_v6(&src, &dst);
    f
}

/// SYN-ACKs from the IPv6 endpoints for every flow in `flows`.
pub fn syn_acks6(
    flows: &dataplane::conntrack::FlowTable<dataplane::nat66::FlowKey6>,
) -> Vec<[u8; 74]> {
    flows
        .iter()
        .map(|f| tcp6_frame(f.reply.src, f.reply.dst, f.reply.sport, f.reply.dport, 0x12))
        .collect()
}

/// SYN-ACKs from the endpoints for every flow in `flows` (as the reply direction carries them),
/// to complete the handshakes in benchmark set-ups.
pub fn syn_acks(flows: &dataplane::conntrack::FlowTable) -> Vec<[u8; 64]> {
    flows
        .iter()
        .map(|f| tcp_frame(f.reply.src, f.reply.dst, f.reply.sport, f.reply.dport, 0x12))
        .collect()
}

/// A port that accepts everything and recycles the buffers.
pub struct Sink;

impl Port for Sink {
    fn rx_burst(&mut self, _: &mut PoolCache, _: &mut Vec<Mbuf>, _: usize) -> usize {
        0
    }
    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        let n = burst.len();
        for m in burst.drain(..) {
            pool.free(m);
        }
        n
    }
}

/// A fixed pseudo-random visiting order over `n` flows (so large tables miss the caches, as
/// real traffic does).
pub fn order(n: u32, len: usize) -> Vec<u32> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(n)) as u32
        })
        .collect()
}

/// Runs one burst of frames `ids` (indices into `frames`) through the worker and transmits the
/// result.
pub fn burst(
    w: &mut dataplane::pipeline::Worker,
    ports: &mut [Box<dyn Port>],
    frames: &[impl AsRef<[u8]>],
    ids: &[u32],
    rx: &mut Vec<Mbuf>,
    now: dataplane::time::Instant,
) {
    for &i in ids {
        let mut m = w.pool().alloc().expect("pool");
        m.copy_from(frames[i as usize].as_ref());
        rx.push(m);
    }
    w.process_rx(0, rx, now);
    w.flush(ports);
}
