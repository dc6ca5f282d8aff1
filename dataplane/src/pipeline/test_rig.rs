//! A one-worker rig for the stages' unit tests: hand-built frames in, the decision and the
//! frames the node sent on the side out.

use super::{Action, Arrival, Worker, WorkerConfig};
use crate::ip6::{Ip6Tables, PortAddress6, StaticNeighbor6, StaticRoute6};
use crate::mbuf::{Mbuf, Pool};
use crate::port::PortId;
use crate::tables::{PortInfo, TablePublisher, Tables};
use crate::time::Instant;
use crate::wire::{Icmpv6Packet, IpProtocol, Ipv6Packet, Ipv6Repr, MacAddr};
use std::net::Ipv6Addr;
use std::sync::Arc;

pub const L2: usize = 14;
pub const IP6: usize = 40;
pub const MAC0: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
pub const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
pub const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);
pub const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);

pub fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Port 0: fd00::1/64 and 10.0.0.1/24 (MAC0); port 1: fd01::1/64 and 10.1.0.1/24 (MAC1);
/// fd10::/48 via fd01::fe (static neighbour GW); ::/0 via fd00::fffe (not resolved).
pub fn tables() -> Tables {
    let addrs = [
        PortAddress6 {
            port: 0,
            address: ip("fd00::1"),
            prefix_len: 64,
        },
        PortAddress6 {
            port: 1,
            address: ip("fd01::1"),
            prefix_len: 64,
        },
    ];
    let statics = [
        StaticRoute6 {
            prefix: ip("fd10::"),
            prefix_len: 48,
            via: Some(ip("fd01::fe")),
            port: None,
        },
        StaticRoute6 {
            prefix: ip("::"),
            prefix_len: 0,
            via: Some(ip("fd00::fffe")),
            port: None,
        },
    ];
    let neighbors = [StaticNeighbor6 {
        address: ip("fd01::fe"),
        mac: GW,
        port: None,
    }];
    let port = |name: &str, mac, a: [u8; 4]| PortInfo {
        name: name.into(),
        mac,
        addresses: vec![(a.into(), 24)],
    };
    let ports = vec![
        port("p0", MAC0, [10, 0, 0, 1]),
        port("p1", MAC1, [10, 1, 0, 1]),
    ];
    let v4 = crate::route::RouteTable::build(
        &[
            crate::route::PortAddress {
                port: 0,
                address: [10, 0, 0, 1].into(),
                prefix_len: 24,
            },
            crate::route::PortAddress {
                port: 1,
                address: [10, 1, 0, 1].into(),
                prefix_len: 24,
            },
        ],
        &[],
    )
    .unwrap();
    Tables {
        local: vec![[10, 0, 0, 1].into(), [10, 1, 0, 1].into()],
        routes: v4,
        ports,
        ip6: Ip6Tables::build(2, &addrs, &statics, &neighbors, &[]).unwrap(),
        ..Tables::default()
    }
}

pub struct Rig {
    pub w: Worker,
    pub publisher: TablePublisher,
    pub pool: Arc<Pool>,
    /// Frames the node sent besides the one decided (solicitations, released frames).
    pub out: Vec<(PortId, Mbuf)>,
}

impl Rig {
    pub fn new(cfg: WorkerConfig) -> Rig {
        Rig::with_tables(cfg, tables())
    }

    pub fn with_tables(cfg: WorkerConfig, t: Tables) -> Rig {
        let pool = Pool::new(2048);
        // Host ports and the stack port are numbered after the data ports.
        let ports = t.ports.len() + cfg.host_ports.len() + usize::from(cfg.stack_port.is_some());
        let publisher = TablePublisher::new(t);
        let w = Worker::new(
            cfg,
            publisher.reader(),
            pool.clone(),
            super::Fabric::new(1, 64),
            ports,
        );
        Rig {
            w,
            publisher,
            pool,
            out: Vec::new(),
        }
    }

    /// Publishes new tables (the worker switches at its next frame).
    pub fn publish(&mut self, t: Tables) {
        self.publisher.publish(t);
    }

    /// The tables the worker forwards with.
    pub fn tables(&self) -> Tables {
        (**self.w.tables.get()).clone()
    }

    /// Runs one frame through eth-input and everything after; returns the decision and the
    /// frame as the decision left it. A held frame moves into the hold queue (the frame
    /// returned is then an empty buffer), as the worker's `apply` does.
    pub fn input(&mut self, frame: &[u8], port: PortId, now: Instant) -> (Action, Mbuf) {
        let arrival = Arrival {
            hash: None,
            steered: false,
            learn: false,
        };
        self.decide_one(frame, port, now, arrival)
    }

    /// A copy of a frame another worker received: learned from, not answered.
    pub fn learn_only(&mut self, frame: &[u8], port: PortId, now: Instant) -> Action {
        let arrival = Arrival {
            hash: None,
            steered: true,
            learn: true,
        };
        let (action, m) = self.decide_one(frame, port, now, arrival);
        self.w.pool.free(m);
        action
    }

    fn decide_one(
        &mut self,
        frame: &[u8],
        port: PortId,
        now: Instant,
        arrival: Arrival,
    ) -> (Action, Mbuf) {
        self.w.now = now;
        self.w.tables.refresh();
        let t = self.w.tables.get().clone();
        let mut m = self.w.pool.alloc().expect("pool");
        assert!(m.copy_from(frame));
        let class = self.w.classify(&t, &mut m, port);
        let action = self.w.decide(&t, &mut m, port, class, arrival);
        if let Action::Hold { .. } = action {
            self.w.apply(&t, m, port, action);
            m = self.w.pool.alloc().expect("pool");
        }
        self.drain();
        (action, m)
    }

    /// Runs whole frames through the burst loop (`process_rx`) as received on `port`; what
    /// the worker sent lands in `out`.
    pub fn burst(&mut self, port: PortId, frames: &[Vec<u8>], now: Instant) {
        let mut burst: Vec<Mbuf> = frames
            .iter()
            .map(|f| {
                let mut m = self.w.pool.alloc().expect("pool");
                assert!(m.copy_from(f));
                m
            })
            .collect();
        self.w.process_rx(port, &mut burst, now);
        self.drain();
    }

    pub fn timers(&mut self, now: Instant) {
        self.w.timers(now);
        self.drain();
    }

    pub fn free(&mut self, m: Mbuf) {
        self.w.pool.free(m);
    }

    /// Frees everything sent on the side and what the worker's cache holds.
    pub fn free_all(&mut self) {
        for (_, m) in self.out.drain(..) {
            self.w.pool.free(m);
        }
        self.w.pool.flush();
    }

    fn drain(&mut self) {
        for (p, batch) in self.w.tx.iter_mut().enumerate() {
            for m in batch.drain(..) {
                self.out.push((p as PortId, m));
            }
        }
    }

    pub fn drops(&self, r: crate::drop::DropReason) -> u64 {
        self.w.stats.drop_count(r)
    }
}

/// Independent ICMPv6 checksum check (RFC 4443 §2.3 over the RFC 8200 §8.1 pseudo header).
pub fn icmp6_checksum_ok(ip_pkt: &[u8]) -> bool {
    let plen = usize::from(u16::from_be_bytes([ip_pkt[4], ip_pkt[5]]));
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip_pkt[8..40]);
    pseudo.extend_from_slice(&(plen as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&ip_pkt[40..40 + plen]);
    if pseudo.len() % 2 == 1 {
        pseudo.push(0);
    }
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

pub fn frame6(
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    next: IpProtocol,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; L2 + IP6 + payload.len()];
    f[0..6].copy_from_slice(&eth_dst.0);
    f[6..12].copy_from_slice(&eth_src.0);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: next,
        payload_len: payload.len(),
        hop_limit: hop,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut f[L2..]));
    f[L2 + IP6..].copy_from_slice(payload);
    f
}

pub fn icmp6_frame(
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    icmp: &[u8],
) -> Vec<u8> {
    let mut f = frame6(eth_dst, eth_src, src, dst, hop, IpProtocol::Icmpv6, icmp);
    Icmpv6Packet::new_unchecked(&mut f[L2 + IP6..]).fill_checksum(&src, &dst);
    f
}

pub fn ns(target: Ipv6Addr, sll: Option<MacAddr>) -> Vec<u8> {
    let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    if let Some(mac) = sll {
        b.extend_from_slice(&[1, 1]);
        b.extend_from_slice(&mac.0);
    }
    b
}

pub fn na(target: Ipv6Addr, flags: u8, tll: MacAddr) -> Vec<u8> {
    let mut b = vec![136, 0, 0, 0, flags, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(&[2, 1]);
    b.extend_from_slice(&tll.0);
    b
}

/// A solicited, overriding advertisement from `from` (MAC `mac`) to fd00::1 on port 0.
pub fn advert(from: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    use crate::wire::icmpv6::ndisc_flags::{OVERRIDE, SOLICITED};
    let body = na(from, SOLICITED | OVERRIDE, mac);
    icmp6_frame(MAC0, mac, from, ip("fd00::1"), 255, &body)
}

/// A UDP datagram from HOST of `len` bytes (header included; checksum 0, which IPv6 routing
/// does not look at).
pub fn udp6_frame(dst_mac: MacAddr, src: &str, dst: &str, hop: u8, len: usize) -> Vec<u8> {
    let mut udp = vec![0u8; len];
    udp[..8].copy_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, len as u8, 0, 0]);
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    frame6(dst_mac, HOST, ip(src), ip(dst), hop, IpProtocol::Udp, &udp)
}

/// `tables()` with one UDP ClusterIP Service, 10.96.0.10:53, whose endpoint is `endpoint`
/// (port 53 on port 1's link) or which has none (`None`: rejected).
pub fn tables_with_service(endpoint: Option<[u8; 4]>) -> Tables {
    use crate::service::{
        Backend, BackendSet, Frontend, FrontendAction, FrontendKey, FrontendKind, ServiceTable,
        ServingEndpoints, PROTO_UDP,
    };
    let action = match endpoint {
        Some(a) => FrontendAction::Balance(Arc::new(
            BackendSet::new(vec![Backend {
                addr: a.into(),
                port: 53,
                local: true,
            }])
            .unwrap(),
        )),
        None => FrontendAction::Reject,
    };
    let frontend = Frontend {
        key: FrontendKey {
            proto: PROTO_UDP,
            addr: [10, 96, 0, 10].into(),
            port: 53,
        },
        kind: FrontendKind::ClusterIp,
        service: "default/dns:53".into(),
        service_port_id: 1,
        snat: false,
        affinity_secs: None,
        source_ranges: None,
        action,
        internal: None,
        serving: ServingEndpoints::new(endpoint.map(|a| (a.into(), 53)).into_iter().collect()),
    };
    let (services, dups) = ServiceTable::new(vec![frontend]);
    assert!(dups.is_empty());
    Tables {
        services,
        ..tables()
    }
}

/// A UDP datagram over IPv4 from HOST to `dst_mac`, with valid checksums.
pub fn udp4_frame(
    dst_mac: MacAddr,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    udp4_ports(dst_mac, (src, 12345), (dst, 53), ttl, payload)
}

/// A UDP datagram over IPv4 between the given (address, port) pairs, from HOST.
pub fn udp4_ports(
    dst_mac: MacAddr,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(HOST.0, dst_mac.0)
        .ipv4(src.0, dst.0, ttl)
        .udp(src.1, dst.1)
        .write(&mut f, payload)
        .unwrap();
    f
}
