//! **host-input** and **stack-input**: frames that come from the node itself.
//!
//! `host-input` reads what the kernel sent on a host port (the data port's TAP twin) and sets
//! nothing: the frame leaves by the data port unchanged (`tx`). `stack-input` reads the IP
//! packets the host stack sends (health-check answers, [`crate::hoststack`]) and routes them
//! like any packet the node originates (`ip-output`). `host-punt` (`Worker::punt_or`) is the
//! other direction: frames for the node that no stage handles go to the kernel.

use super::family::V4;
use super::{Action, PortRole, Worker, L2};
use crate::drop::DropReason;
use crate::mbuf::Mbuf;
use crate::port::PortId;
use crate::time::Instant;
use crate::wire::Ipv4Packet;

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

    /// The kernel's frames, read from the host port of `data`: they leave by `data` unchanged,
    /// in the same transmit batch as everything else. Nothing is looked at or learned.
    pub(super) fn host_input(&mut self, data: PortId, burst: &mut Vec<Mbuf>) {
        for m in burst.drain(..) {
            if self.enqueue_tx(data, m) {
                self.stats.from_host[usize::from(data)] += 1;
            }
        }
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
}
