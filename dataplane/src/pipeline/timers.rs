//! **timers**: a worker's periodic work, run from its poll loop every [`TIMER_PERIOD`].
//!
//! Reads the clock the loop passes in and the published tables. Sets the flow tables (expired
//! flows swept; after a table change, the UDP flows whose endpoint stopped serving removed,
//! [`UDP_CHECK_BUDGET`] slots a poll), the neighbour hold queue (`neighbour_timers`), the
//! tables' heartbeat and the counters' mirror other threads read.

use super::family::{V4, V6};
use super::{Worker, MIRROR_PERIOD, SWEEP_BUDGET, TIMER_PERIOD};
use crate::time::Instant;

impl Worker {
    /// kube-proxy's UDP conntrack clean-up: after a table change, the UDP flows whose endpoint
    /// no longer serves their Service port (it left the Service or stopped serving), or whose
    /// frontend is gone (the Service was deleted or its address changed), are removed,
    /// [`UDP_CHECK_BUDGET`] flow slots per poll, so their next datagram is balanced anew
    /// instead of going to an endpoint that is not there. As in kube-proxy, a flow to an
    /// endpoint that still serves stays even when new flows would not pick it (terminating,
    /// another node under policy Local, another zone under topology hints), and a port left
    /// with no serving endpoint keeps its flows. TCP flows keep their endpoint until they end.
    pub(super) fn check_udp_flows(&mut self) {
        self.tables.refresh();
        let generation = self.tables.get().generation;
        if generation != self.udp_checked.0 {
            self.udp_checked = (generation, Some(0));
            self.udp6_checked = (!self.ct6.is_empty()).then_some(0);
        }
        if let Some(from) = self.udp_checked.1 {
            let t = self.tables.get().clone();
            let (removed, next) = self.check_udp::<V4>(&t, from);
            self.stats.udp_flows_flushed += removed as u64;
            self.udp_checked.1 = next;
        } else if let Some(from) = self.udp6_checked {
            let t = self.tables.get().clone();
            let (removed, next) = self.check_udp::<V6>(&t, from);
            self.stats.udp_flows_flushed += removed as u64;
            self.udp6_checked = next;
        }
    }

    /// Periodic work: expiring flows, retrying ARP, giving up on unresolved next hops, and a
    /// slice of the UDP clean-up after a table change.
    pub fn timers(&mut self, now: Instant) {
        self.now = now;
        self.check_udp_flows();
        if now < self.next_timer {
            return;
        }
        self.next_timer = now + TIMER_PERIOD;
        // An idle worker still switches to new tables, so that "every worker runs generation N"
        // means what it says (the proxy health check waits for it).
        self.tables.refresh();
        self.tables.heartbeat();
        // A table three quarters full is swept eight times as fast, so that expired flows
        // do not pile up in front of new ones (they are also reclaimed on demand).
        let budget = |len: usize, cap: usize| {
            if len > cap / 4 * 3 {
                SWEEP_BUDGET * 8
            } else {
                SWEEP_BUDGET
            }
        };
        self.ct
            .sweep(now, budget(self.ct.len(), self.ct.capacity()));
        if !self.ct6.is_empty() {
            self.ct6
                .sweep(now, budget(self.ct6.len(), self.ct6.capacity()));
        }
        if now >= self.next_mirror {
            self.next_mirror = now + MIRROR_PERIOD;
            let ct = self.ct.stats() + self.ct6.stats();
            self.mirror.store(
                &self.stats,
                self.ct.len() + self.ct6.len(),
                ct,
                self.tables.get().generation,
            );
        }
        if !self.held.is_empty() {
            let t = self.tables.get().clone();
            self.neighbour_timers(&t, now);
        }
    }
}

#[cfg(test)]
mod test {
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig, TIMER_PERIOD};
    use crate::time::Instant;
    use core::time::Duration;

    const CLIENT: [u8; 4] = [10, 0, 0, 99];
    const POD: [u8; 4] = [10, 1, 0, 7];

    fn rig_with_flow() -> Rig {
        let mut cfg = WorkerConfig::new(0, 1);
        cfg.max_flows = 64;
        let mut rig = Rig::with_tables(cfg, tables_with_service(Some(POD)));
        rig.w.neigh.learn(POD.into(), HOST, Instant::ZERO);
        let q = udp4_ports(MAC0, (CLIENT, 5000), ([10, 96, 0, 10], 53), 64, b"q");
        let (a, m) = rig.input(&q, 0, Instant::ZERO);
        assert_eq!(a, Action::Tx(1));
        rig.free(m);
        assert_eq!(rig.w.flows().len(), 1);
        rig
    }

    #[test]
    fn idle_flows_are_swept_after_their_timeout() {
        let mut rig = rig_with_flow();
        let udp = rig.w.cfg.timeouts.udp;
        let mut now = Instant::ZERO;
        // Before the timeout, however often the timers run, the flow stays.
        while now + TIMER_PERIOD < Instant::ZERO + udp {
            now = now + TIMER_PERIOD;
            rig.timers(now);
        }
        assert_eq!(rig.w.flows().len(), 1, "still live before {udp:?}");
        let end = Instant::ZERO + udp + Duration::from_secs(5);
        while now < end {
            now = now + TIMER_PERIOD;
            rig.timers(now);
        }
        assert_eq!(rig.w.flows().len(), 0, "swept after its timeout");
        rig.free_all();
    }

    #[test]
    fn udp_flows_to_an_endpoint_that_left_are_flushed_after_a_table_change() {
        let mut rig = rig_with_flow();
        // The Service's endpoint moves to another pod: the flow to the old one goes, so the
        // client's next datagram is balanced anew.
        rig.publish(tables_with_service(Some([10, 1, 0, 8])));
        let mut now = Instant::ZERO;
        for _ in 0..4 {
            now = now + Duration::from_millis(1);
            rig.timers(now);
        }
        assert_eq!(rig.w.flows().len(), 0);
        assert_eq!(rig.w.stats.udp_flows_flushed, 1);

        // A table change that keeps the endpoint keeps the flow.
        let mut rig = rig_with_flow();
        rig.publish(tables_with_service(Some(POD)));
        for _ in 0..4 {
            now = now + Duration::from_millis(1);
            rig.timers(now);
        }
        assert_eq!(rig.w.flows().len(), 1);
        assert_eq!(rig.w.stats.udp_flows_flushed, 0);
        rig.free_all();
    }
}
