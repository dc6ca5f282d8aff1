//! The immutable tables the workers forward with, and how they are published.
//!
//! The control plane builds a complete [`Tables`] value and publishes it with
//! [`TablePublisher::publish`]; each worker checks for a new snapshot once per burst through its
//! [`TableReader`] (an `arc-swap` load: no lock, no refcount traffic unless a new snapshot
//! exists) and swaps it in between bursts. A worker therefore never sees half an update, and a
//! slow worker only delays its own switch. Flows already tracked keep the endpoint they were
//! given, whatever the new snapshot says.

use crate::ip6::Ip6Tables;
use crate::port::PortId;
use crate::route::RouteTable;
use crate::service::ServiceTable;
use crate::wire::MacAddr;
use arc_swap::ArcSwap;
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A port as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub mac: MacAddr,
    /// IPv4 addresses with prefix lengths; the first is the port's primary address.
    pub addresses: Vec<(Ipv4Addr, u8)>,
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
    /// IPv6 routes, static neighbours and addresses (routed only: no Services).
    pub ip6: Ip6Tables,
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
}

impl TablePublisher {
    pub fn new(initial: Tables) -> TablePublisher {
        TablePublisher {
            shared: Arc::new(ArcSwap::from_pointee(initial)),
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

    /// A reader for one worker.
    pub fn reader(&self) -> TableReader {
        TableReader {
            shared: self.shared.clone(),
            current: self.shared.load_full(),
        }
    }
}

/// The reading side, one per worker.
pub struct TableReader {
    shared: Arc<ArcSwap<Tables>>,
    current: Arc<Tables>,
}

impl TableReader {
    /// Switches to the newest snapshot if there is one; true when it changed.
    #[inline]
    pub fn refresh(&mut self) -> bool {
        let latest = self.shared.load();
        if Arc::ptr_eq(&latest, &self.current) {
            return false;
        }
        self.current = arc_swap::Guard::into_inner(latest);
        true
    }

    #[inline]
    pub fn get(&self) -> &Arc<Tables> {
        &self.current
    }
}
