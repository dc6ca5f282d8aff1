//! **host-input** and **stack-input**: frames that come from the node itself.
//!
//! `host-input` reads what the kernel sent on a host port (the data port's TAP twin). The node
//! and everything the kernel routes (pods a CNI plugin attached to it) are Service clients like
//! any client on the wire: an IPv4 or IPv6 packet that a flow or a Service frontend claims goes
//! through the same Service stages (`steer` to `nat44`/`nat66`, then `ip-output`), with the
//! kernel's addresses allowed as its source. Everything else sets nothing and leaves by the
//! data port unchanged (`tx`): the kernel did its own routing and neighbour resolution. The
//! other way, `ip-output` delivers what is addressed to a node address (a reply translated back
//! for the kernel) to the host port (`hop_output`). `stack-input` reads the IP
//! packets the host stack sends (health-check answers, [`crate::hoststack`]) and routes them
//! like any packet the node originates (`ip-output`). `host-punt` (`Worker::punt_or`) is the
//! other direction: frames for the node that no stage handles go to the kernel.

use super::family::{V4, V6};
use super::ip6_input::Tuple6;
use super::service::FlowPacket;
use super::{ip4_input, ip6_input, Action, Class, PortRole, Worker, L2};
use crate::drop::DropReason;
use crate::mbuf::Mbuf;
use crate::nat::PROTO_ICMP;
use crate::port::PortId;
use crate::tables::Tables;
use crate::time::Instant;
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet};

impl Worker {
    /// host-punt: frames for the node that the data plane does not handle go to the kernel
    /// through the host port of the port they arrived on; without one, `otherwise` happens.
    #[inline]
    pub(super) fn punt_or(&self, port: PortId, otherwise: Action) -> Action {
        match self.roles.get(usize::from(port)) {
            Some(PortRole::Data { host: Some(h) }) => Action::Punt(*h),
            _ => otherwise,
        }
    }

    /// The kernel's frames, read from `host`, the host port of `data`: what a flow or a
    /// Service claims is decided as a frame from the wire would be, the rest leaves by `data`
    /// unchanged, in the same transmit batch as everything else.
    pub(super) fn host_input(
        &mut self,
        host: PortId,
        data: PortId,
        burst: &mut Vec<Mbuf>,
        now: Instant,
    ) {
        self.now = now;
        self.tables.refresh();
        let t = self.tables.get().clone();
        for mut m in burst.drain(..) {
            let action = self.host_frame(&t, &mut m, data, false);
            self.apply_from_host(&t, m, host, data, action);
        }
    }

    /// One of the kernel's frames (`steered`: handed over by the worker that read it).
    pub(super) fn host_frame(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        data: PortId,
        steered: bool,
    ) -> Action {
        match self.kernel_service(t, m, data, steered) {
            Some(action) => action,
            None => Action::Tx(data),
        }
    }

    /// Carries out a decision about one of the kernel's frames: a frame handed over keeps the
    /// host port as its port, so that its owner takes it for the kernel's too.
    pub(super) fn apply_from_host(
        &mut self,
        t: &Tables,
        m: Mbuf,
        host: PortId,
        data: PortId,
        action: Action,
    ) {
        match action {
            Action::Tx(p) if p == data => {
                if self.enqueue_tx(data, m) {
                    self.stats.from_host[usize::from(data)] += 1;
                }
            }
            Action::Handoff(_) | Action::HandoffFragment(..) => self.apply(t, m, host, action),
            _ => self.apply(t, m, data, action),
        }
    }

    /// The Service stages for a packet from the kernel, when a flow or a frontend claims it
    /// (checked first, so that the frame is left unchanged otherwise).
    fn kernel_service(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        data: PortId,
        steered: bool,
    ) -> Option<Action> {
        let eth = EthernetFrame::new_checked(&m[..]).ok()?;
        match eth.ethertype() {
            EtherType::Ipv4 => {
                let Class::Ip4(c) = ip4_input::classify_ip4_from_kernel(t, m) else {
                    return None;
                };
                // ICMP errors and fragments from the kernel are not matched to flows yet.
                if c.icmp_error || c.meta.fragmented {
                    return None;
                }
                let key = c.key?;
                if let Some(owner) = self.kernel_owner::<V4>(t, &key, steered) {
                    return Some(Action::Handoff(owner));
                }
                let claimed = self.ct.contains(&key)
                    || (key.proto != PROTO_ICMP
                        && t.services.lookup(key.proto, key.dst, key.dport).is_some());
                if !claimed {
                    return None;
                }
                let p = FlowPacket {
                    meta: &c.meta,
                    key,
                    flags: c.flags,
                    hash: None,
                    steered,
                    kernel: true,
                };
                Some(self.flow::<V4>(t, m, data, p))
            }
            EtherType::Ipv6 => {
                let Class::Ip6 { meta, .. } = ip6_input::classify_ip6(m) else {
                    return None;
                };
                if meta.tuple != Tuple6::Found || meta.fragment.is_some() {
                    return None;
                }
                let key = meta.key(m);
                if let Some(owner) = self.kernel_owner::<V6>(t, &key, steered) {
                    return Some(Action::Handoff(owner));
                }
                let claimed = self.ct6.contains(&key)
                    || t.services6.lookup(key.proto, key.dst, key.dport).is_some();
                if !claimed {
                    return None;
                }
                let p = FlowPacket {
                    meta: &meta,
                    key,
                    flags: meta.flags,
                    hash: None,
                    steered,
                    kernel: true,
                };
                Some(self.flow::<V6>(t, m, data, p))
            }
            _ => None,
        }
    }

    /// The worker that owns the flow `key` would belong to, when it is another one: whether
    /// the kernel's packet is part of a flow can only be told by the owner's table, so every
    /// packet with a tuple goes there first (the replies of flows the wire started, with no
    /// SNAT port to tell them by, would otherwise leave untranslated).
    fn kernel_owner<F: super::family::Family>(
        &self,
        t: &Tables,
        key: &F::Key,
        steered: bool,
    ) -> Option<usize> {
        if self.cfg.workers <= 1 || steered {
            return None;
        }
        let owner = self.owner_of::<F>(t, key);
        (owner != self.cfg.id).then_some(owner)
    }

    /// stack-input: IP packets the host stack sends (after `STACK_L2` bytes of room for the
    /// Ethernet header) are routed like any packet the node originates. Only unicast
    /// destinations off the node are accepted.
    pub(super) fn stack_input(&mut self, port: PortId, burst: &mut Vec<Mbuf>, now: Instant) {
        self.now = now;
        self.tables.refresh();
        let t = self.tables.get().clone();
        for mut m in burst.drain(..) {
            let dst = match m.get(L2..).map(Ipv4Packet::new_checked) {
                Some(Ok(ip)) => ip.dst_addr(),
                _ => {
                    self.count(DropReason::Ip4Malformed);
                    self.pool.free(m);
                    continue;
                }
            };
            let action = if dst.is_broadcast() || dst.is_multicast() || t.is_local(dst) {
                Action::Drop(DropReason::Ip4NoRoute)
            } else {
                self.route_output::<V4>(&t, &mut m, dst)
            };
            self.apply(&t, m, port, action);
        }
    }
}

#[cfg(test)]
mod test {
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig};
    use crate::drop::DropReason;
    use crate::time::Instant;
    use crate::wire::Ipv4Packet;

    /// Port 0 paired with host port 2 (the kernel's TAP twin); port 1 without one.
    fn rig() -> Rig {
        let mut cfg = WorkerConfig::new(0, 1);
        cfg.host_ports = vec![(0, 2)];
        Rig::new(cfg)
    }

    #[test]
    fn frames_for_the_node_are_punted_to_its_host_port_only_where_there_is_one() {
        let mut rig = rig();
        // UDP to the node's own address: nothing here handles it.
        let f = udp4_frame(MAC0, [10, 0, 0, 99], [10, 0, 0, 1], 64, b"to the kernel");
        let (a, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(a, Action::Punt(2));
        assert_eq!(&m[..], &f[..], "unchanged");
        rig.free(m);
        let f = udp4_frame(MAC1, [10, 1, 0, 99], [10, 1, 0, 1], 64, b"no host port");
        let (a, m) = rig.input(&f, 1, Instant::ZERO);
        assert_eq!(a, Action::Drop(DropReason::Ip4Local));
        rig.free(m);
        rig.free_all();
    }

    #[test]
    fn the_kernels_frames_leave_by_the_data_port_unchanged() {
        let mut rig = rig();
        // Whatever the kernel sends, even what the pipeline would refuse from the wire (TTL 1,
        // an address nothing routes), leaves untouched: the kernel did its own routing.
        let frames = vec![
            udp4_frame(GW, [10, 0, 0, 1], [198, 51, 100, 1], 1, b"ttl one"),
            vec![0xff; 20],
        ];
        rig.burst(2, &frames, Instant::ZERO);
        let sent: Vec<_> = rig.out.iter().map(|(p, m)| (*p, m.to_vec())).collect();
        assert_eq!(sent, vec![(0, frames[0].clone()), (0, frames[1].clone())]);
        assert_eq!(rig.w.stats.from_host[0], 2);
        assert_eq!(rig.w.stats.rx[2], 2);
        rig.free_all();
    }

    #[test]
    fn the_kernel_is_a_service_client_and_gets_its_replies() {
        let mut cfg = WorkerConfig::new(0, 1);
        cfg.host_ports = vec![(0, 2)];
        let pod = [10, 1, 0, 7];
        let mut rig = Rig::with_tables(cfg, tables_with_service(Some(pod)));
        let pod_mac = crate::wire::MacAddr([2, 0, 0, 0, 1, 7]);
        rig.w.neigh.learn(pod.into(), pod_mac, Instant::ZERO);
        // The node (10.0.0.1, port 0's address) asks the ClusterIP, through its default
        // gateway on the TAP.
        let q = udp4_ports(GW, ([10, 0, 0, 1], 40000), ([10, 96, 0, 10], 53), 64, b"q");
        rig.burst(2, &[q], Instant::ZERO);
        let (p, m) = rig.out.pop().expect("the query leaves");
        assert_eq!(p, 1, "towards the endpoint's port");
        let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
        assert_eq!(
            (ip.src_addr().octets(), ip.dst_addr().octets()),
            ([10, 0, 0, 1], pod),
            "DNAT, the node's address kept"
        );
        assert_eq!(&m[..6], &pod_mac.0);
        rig.free(m);
        assert_eq!(rig.w.flows().len(), 1);
        assert_eq!(rig.w.stats.from_host[0], 0, "not forwarded unchanged");

        // The endpoint's answer is translated back and goes up to the kernel, to its MAC.
        let r = udp4_ports(MAC1, (pod, 53), ([10, 0, 0, 1], 40000), 64, b"a");
        let (a, m) = rig.input(&r, 1, Instant::ZERO);
        assert_eq!(a, Action::Punt(2));
        let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
        assert_eq!(ip.src_addr().octets(), [10, 96, 0, 10]);
        assert_eq!(ip.dst_addr().octets(), [10, 0, 0, 1]);
        assert!(ip.verify_checksum());
        assert_eq!(&m[..6], &MAC0.0, "the TAP has the port's MAC");
        rig.free(m);

        // Without a host interface the same reply has nowhere to go.
        let mut rig = Rig::with_tables(WorkerConfig::new(0, 1), tables_with_service(Some(pod)));
        rig.w.neigh.learn(pod.into(), pod_mac, Instant::ZERO);
        let q = udp4_ports(
            MAC0,
            ([10, 0, 0, 1], 40000),
            ([10, 96, 0, 10], 53),
            64,
            b"q",
        );
        assert_eq!(
            rig.input(&q, 0, Instant::ZERO).0,
            Action::Drop(DropReason::Ip4BadSource),
            "from the wire, the node's own address is a spoofed source"
        );
        rig.free_all();
    }

    /// Tables with the DNS Service's endpoint at `endpoint`, this node's pods (10.244.1.0/24)
    /// behind the kernel of port 0 (via its own address) and the service loopback address.
    fn pod_tables(endpoint: [u8; 4]) -> crate::tables::Tables {
        use crate::route::{PortAddress, RouteTable, StaticRoute};
        let mut t = tables_with_service(Some(endpoint));
        let addrs = [
            PortAddress {
                port: 0,
                address: [10, 0, 0, 1].into(),
                prefix_len: 24,
            },
            PortAddress {
                port: 1,
                address: [10, 1, 0, 1].into(),
                prefix_len: 24,
            },
        ];
        let pods = StaticRoute {
            prefix: [10, 244, 1, 0].into(),
            prefix_len: 24,
            via: Some([10, 0, 0, 1].into()),
            port: Some(0),
        };
        t.routes = RouteTable::build(&addrs, &[pods]).unwrap();
        t.kernel.loopback4 = Some(LOOPBACK.into());
        t
    }

    const LOOPBACK: [u8; 4] = [169, 254, 42, 1];

    fn addrs(m: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
        let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
        assert!(ip.verify_checksum());
        let l4 = &m[L2 + ip.header_len()..];
        (
            ip.src_addr().octets(),
            ip.dst_addr().octets(),
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )
    }

    #[test]
    fn a_pod_reaching_a_pod_of_its_node_is_snated_to_the_service_loopback_address() {
        let mut cfg = WorkerConfig::new(0, 1);
        cfg.host_ports = vec![(0, 2)];
        let (client, server) = ([10, 244, 1, 2], [10, 244, 1, 3]);
        let mut rig = Rig::with_tables(cfg, pod_tables(server));
        // The client pod asks the ClusterIP; its node's kernel routes it to the TAP.
        let q = udp4_ports(GW, (client, 40000), ([10, 96, 0, 10], 53), 63, b"q");
        rig.burst(2, &[q], Instant::ZERO);
        let (p, m) = rig.out.pop().expect("the query goes on");
        assert_eq!(p, 2, "up to the kernel, which has the endpoint pod");
        assert_eq!(&m[..6], &MAC0.0, "to the TAP's MAC");
        let (src, dst, sport, dport) = addrs(&m);
        assert_eq!((src, dst, dport), (LOOPBACK, server, 53), "SNAT and DNAT");
        rig.free(m);
        // The endpoint answers the loopback address; the kernel routes that to the TAP.
        let r = udp4_ports(GW, (server, 53), (LOOPBACK, sport), 64, b"a");
        rig.burst(2, &[r], Instant::ZERO);
        let (p, m) = rig.out.pop().expect("the answer goes on");
        assert_eq!(p, 2);
        assert_eq!(
            addrs(&m),
            ([10, 96, 0, 10], client, 53, 40000),
            "translated back for the client pod"
        );
        rig.free(m);
        assert_eq!(rig.w.stats.from_host[0], 0);

        // From the wire, the same Service and endpoint keep the client's address.
        let q = udp4_ports(
            MAC1,
            ([10, 1, 0, 9], 40001),
            ([10, 96, 0, 10], 53),
            64,
            b"q",
        );
        rig.burst(1, &[q], Instant::ZERO);
        let (p, m) = rig.out.pop().expect("the query goes on");
        assert_eq!(p, 2);
        assert_eq!(addrs(&m).0, [10, 1, 0, 9], "no SNAT for a ClusterIP client");
        rig.free(m);
        rig.free_all();
    }

    #[test]
    fn off_cluster_clients_of_a_cluster_ip_are_masqueraded_when_the_cluster_cidr_is_known() {
        let server = [10, 244, 1, 3];
        let mut t = pod_tables(server);
        t.kernel.cluster4 = vec![([10, 244, 0, 0].into(), 16)];
        let mut cfg = WorkerConfig::new(0, 1);
        cfg.host_ports = vec![(0, 2)];
        let mut rig = Rig::with_tables(cfg, t);
        let q = udp4_ports(
            MAC1,
            ([10, 1, 0, 9], 40001),
            ([10, 96, 0, 10], 53),
            64,
            b"q",
        );
        rig.burst(1, &[q], Instant::ZERO);
        let (_, m) = rig.out.pop().expect("the query goes on");
        assert_eq!(addrs(&m).0, LOOPBACK, "outside 10.244.0.0/16: SNAT");
        rig.free(m);
        // A pod of another node (inside the cluster CIDR) keeps its address.
        let q = udp4_ports(
            MAC1,
            ([10, 244, 2, 5], 40002),
            ([10, 96, 0, 10], 53),
            64,
            b"q",
        );
        rig.burst(1, &[q], Instant::ZERO);
        let (_, m) = rig.out.pop().expect("the query goes on");
        assert_eq!(addrs(&m).0, [10, 244, 2, 5]);
        rig.free(m);
        rig.free_all();
    }

    #[test]
    fn in_cluster_clients_of_a_local_frontend_use_every_endpoint() {
        use crate::service::FrontendAction;
        let server = [10, 1, 0, 7];
        let mut t = pod_tables(server);
        // As for a Local external IP with no endpoint on this node: the wire's clients are
        // dropped, in-cluster ones use the cluster's endpoints.
        let fe = t.services.frontends()[0].clone();
        let mut fe = fe;
        let cluster = fe.action.clone();
        fe.action = FrontendAction::Drop;
        fe.internal = Some(cluster);
        let (services, _) = crate::service::ServiceTable::new(vec![fe]);
        t.services = services;
        let mut cfg = WorkerConfig::new(0, 1);
        cfg.host_ports = vec![(0, 2)];
        let mut rig = Rig::with_tables(cfg, t);
        rig.w.neigh.learn(
            server.into(),
            crate::wire::MacAddr([2, 0, 0, 0, 1, 7]),
            Instant::ZERO,
        );
        let q = udp4_ports(
            MAC1,
            ([10, 1, 0, 9], 40001),
            ([10, 96, 0, 10], 53),
            64,
            b"q",
        );
        let (a, m) = rig.input(&q, 1, Instant::ZERO);
        assert_eq!(a, Action::Drop(DropReason::SvcNoLocalEndpoint));
        rig.free(m);
        let q = udp4_ports(
            GW,
            ([10, 244, 1, 2], 40000),
            ([10, 96, 0, 10], 53),
            64,
            b"q",
        );
        rig.burst(2, &[q], Instant::ZERO);
        let (p, m) = rig.out.pop().expect("the pod's query goes on");
        assert_eq!(p, 1);
        assert_eq!(addrs(&m).1, server);
        rig.free(m);
        rig.free_all();
    }
}
