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
