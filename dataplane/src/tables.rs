//! The immutable tables the workers forward with, and how they are published.
//!
//! The control plane builds a complete [`Tables`] value and publishes it with
//! [`TablePublisher::publish`]; each worker checks for a new snapshot once per burst through its
//! [`TableReader`] (an `arc-swap` load: no lock, no refcount traffic unless a new snapshot
//! exists) and swaps it in between bursts. A worker therefore never sees half an update, and a
//! slow worker only delays its own switch. Flows already tracked keep the endpoint they were
//! given, whatever the new snapshot says.
//!
//! Every snapshot carries a generation. Each reader (one per worker) records the generation it
//! runs in an atomic of its own when it switches, so the control plane can tell whether a
//! published change is in effect everywhere ([`TablePublisher::applied`]): a stuck worker shows
//! as a reader left behind, which is what the proxy health check reports.

use crate::ip6::Ip6Tables;
use crate::port::PortId;
use crate::route::RouteTable;
use crate::service::{HealthChecks, ServiceTable};
use crate::wire::MacAddr;
use arc_swap::ArcSwap;
use hashbrown::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A port as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub mac: MacAddr,
    /// IPv4 addresses with prefix lengths; the first is the port's primary address.
    pub addresses: Vec<(Ipv4Addr, u8)>,
}

/// What the Service path needs for the clients and endpoints behind the node's kernel (on the
/// far side of a port's `host_interface`: the node itself, pods a CNI plugin attached to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelSide {
    /// The source that flows to an endpoint behind the kernel are SNATed to when they need
    /// SNAT (Cilium's service loopback address): an address the kernel routes back to the
    /// host interface and does not own, so that the endpoint's reply comes back through
    /// nodegate. `None`: such flows are SNATed to the route's source as any other.
    pub loopback4: Option<Ipv4Addr>,
    pub loopback6: Option<Ipv6Addr>,
    /// kube-proxy's `clusterCIDR`: new ClusterIP flows from a source outside every one of these
    /// prefixes are SNATed. Empty: none are.
    pub cluster4: Vec<(Ipv4Addr, u8)>,
    pub cluster6: Vec<(Ipv6Addr, u8)>,
}

/// Everything a worker reads to forward a frame.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Incremented by the publisher; for logs and the stats file.
    pub generation: u64,
    pub ports: Vec<PortInfo>,
    /// The node's own addresses (node addresses and every port address).
    pub local: Vec<Ipv4Addr>,
    pub routes: RouteTable,
    /// Static neighbours; learned ones live in each worker.
    pub neighbors: HashMap<Ipv4Addr, MacAddr>,
    pub services: ServiceTable,
    /// The IPv6 frontends of dual-stack and IPv6 Services.
    pub services6: ServiceTable<Ipv6Addr>,
    /// The health checks of Services with `externalTrafficPolicy: Local`, by port; served by the
    /// host stack (frames to a node address on one of these ports go there).
    pub health: HealthChecks,
    /// IPv6 routes, static neighbours and addresses.
    pub ip6: Ip6Tables,
    /// The kernel side: service loopback addresses and the cluster's prefixes.
    pub kernel: KernelSide,
}

impl Tables {
    /// Whether `addr` is one of the node's own addresses.
    #[inline]
    pub fn is_local(&self, addr: Ipv4Addr) -> bool {
        self.local.contains(&addr)
    }

    /// Whether `addr` is one of `port`'s addresses.
    pub fn is_port_address(&self, port: PortId, addr: Ipv4Addr) -> bool {
        self.ports
            .get(usize::from(port))
            .is_some_and(|p| p.addresses.iter().any(|(a, _)| *a == addr))
    }

    /// The port's primary address, if it has one.
    pub fn port_address(&self, port: PortId) -> Option<Ipv4Addr> {
        self.ports
            .get(usize::from(port))
            .and_then(|p| p.addresses.first().map(|(a, _)| *a))
    }
}

/// The writing side: the control plane.
#[derive(Clone)]
pub struct TablePublisher {
    shared: Arc<ArcSwap<Tables>>,
    /// The generation each reader runs, in the order the readers were made. Locked only by the
    /// control plane (making a reader, reading the generations), never by a reader.
    applied: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
    /// Each reader's heartbeat, in the same order (see [`TableReader::heartbeat`]).
    beats: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
}

impl TablePublisher {
    pub fn new(initial: Tables) -> TablePublisher {
        TablePublisher {
            shared: Arc::new(ArcSwap::from_pointee(initial)),
            applied: Arc::default(),
            beats: Arc::default(),
        }
    }

    /// Publishes a new snapshot; its generation is set to the previous one plus one.
    pub fn publish(&self, mut tables: Tables) -> u64 {
        let generation = self.shared.load().generation + 1;
        tables.generation = generation;
        self.shared.store(Arc::new(tables));
        generation
    }

    /// The snapshot currently published.
    pub fn current(&self) -> Arc<Tables> {
        self.shared.load_full()
    }

    /// A reader for one worker. Its generation is reported by [`TablePublisher::applied`] from
    /// now on (for as long as the publisher lives), so make readers for the workers only; the
    /// control plane reads [`TablePublisher::current`].
    pub fn reader(&self) -> TableReader {
        let current = self.shared.load_full();
        let applied = Arc::new(AtomicU64::new(current.generation));
        self.applied
            .lock()
            .expect("table reader registry poisoned")
            .push(applied.clone());
        let beat = Arc::new(AtomicU64::new(0));
        self.beats
            .lock()
            .expect("table reader registry poisoned")
            .push(beat.clone());
        TableReader {
            shared: self.shared.clone(),
            current,
            applied,
            beat,
        }
    }

    /// Each reader's heartbeat count, in worker order: a count that stops moving is a worker
    /// that stopped polling (the proxy health check fails it).
    pub fn heartbeats(&self) -> Vec<u64> {
        self.beats
            .lock()
            .expect("table reader registry poisoned")
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The generation every reader runs now, in the order the readers were made (worker order).
    pub fn applied(&self) -> Vec<u64> {
        self.applied
            .lock()
            .expect("table reader registry poisoned")
            .iter()
            .map(|g| g.load(Ordering::Acquire))
            .collect()
    }
}

/// The reading side, one per worker.
pub struct TableReader {
    shared: Arc<ArcSwap<Tables>>,
    current: Arc<Tables>,
    /// The generation of `current`, for the control plane (written only here, on a switch).
    applied: Arc<AtomicU64>,
    /// Counts the worker's timer ticks, for the control plane (written only here).
    beat: Arc<AtomicU64>,
}

impl TableReader {
    /// Switches to the newest snapshot if there is one; true when it changed. A switch records
    /// the new generation for [`TablePublisher::applied`] (one atomic store, only then).
    #[inline]
    pub fn refresh(&mut self) -> bool {
        let latest = self.shared.load();
        if Arc::ptr_eq(&latest, &self.current) {
            return false;
        }
        self.current = arc_swap::Guard::into_inner(latest);
        self.applied
            .store(self.current.generation, Ordering::Release);
        true
    }

    /// Says the worker is still polling; called from its timers (a store to a line only this
    /// worker writes, read by the control plane about once a second).
    #[inline]
    pub fn heartbeat(&self) {
        let n = self.beat.load(Ordering::Relaxed);
        self.beat.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> &Arc<Tables> {
        &self.current
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_readers_report_the_generation_they_run() {
        let publisher = TablePublisher::new(Tables::default());
        let mut a = publisher.reader();
        let mut b = publisher.reader();
        assert_eq!(publisher.applied(), vec![0, 0]);
        assert_eq!(publisher.publish(Tables::default()), 1);
        assert_eq!(publisher.publish(Tables::default()), 2);
        // Nothing changes until a reader switches.
        assert_eq!(publisher.applied(), vec![0, 0]);
        assert!(a.refresh());
        assert!(!a.refresh());
        assert_eq!(a.get().generation, 2);
        assert_eq!(publisher.applied(), vec![2, 0]);
        assert!(b.refresh());
        assert_eq!(publisher.applied(), vec![2, 2]);
        // A reader made later starts at the current generation.
        let _c = publisher.reader();
        assert_eq!(publisher.applied(), vec![2, 2, 2]);
    }
}
