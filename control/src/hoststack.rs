//! The host stack: a small TCP/IP stack (smoltcp) of the data plane's own that answers the
//! Services' health checks on the node's addresses, on the data-plane ports.
//!
//! The workers own every frame of the data-plane ports, so the node's kernel never sees a load
//! balancer's probe of a `healthCheckNodePort` there (without a `host_interface` it sees
//! nothing at all). The workers steer those frames (TCP to a node address on a port of
//! `Tables::health`) into a queue (`dataplane::hoststack`); this stack reads them as its
//! device's receive side, answers like kube-proxy's health server and writes IP packets into
//! the other queue, which one worker routes out of the right port. The stack speaks IP only
//! (smoltcp's `Medium::Ip`): ARP, neighbours and routing stay the data plane's.
//!
//! It accepts any destination address it is given (`any_ip`): the data plane only gives it
//! frames for the node's addresses. Each health-check port has a few listening sockets (so
//! that probes arriving together are all accepted); a connection reads one request head,
//! gets one answer and is closed; one that says nothing for [`CONN_TIMEOUT`] is aborted.

use crate::http::{parse_request, Parsed, Request, Response, MAX_REQUEST_HEAD};
use dataplane::hoststack::{StackQueues, STACK_L2};
use dataplane::mbuf::{Mbuf, Pool, MBUF_SIZE};
use dataplane::tables::Tables;
use dataplane::time::Instant;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SDuration, Instant as SInstant};
use smoltcp::wire::{HardwareAddress, IpCidr};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Listening sockets kept ready on each port (probes arriving in the same poll each need one).
const LISTENERS: usize = 2;
/// Most sockets (listening or connected) on one port.
const MAX_SOCKETS_PER_PORT: usize = 64;
/// A connection that has not been answered and closed by then is aborted.
pub const CONN_TIMEOUT: SDuration = SDuration::from_secs(10);
/// Socket buffers. The request head is drained into the connection as it arrives (up to
/// `MAX_REQUEST_HEAD`, then 431), so the receive buffer need not hold it whole; an answer is a
/// few hundred bytes. 4 KiB a socket keeps a node with many Services cheap.
const RX_BUFFER: usize = 2048;
const TX_BUFFER: usize = 2048;
/// The IP MTU the stack sends with (the workers' frames are Ethernet, 1500-byte payloads).
const MTU: usize = 1500;

/// The stack's device: the two queues shared with the workers.
struct QueueDevice {
    queues: Arc<StackQueues>,
    pool: Arc<Pool>,
}

struct QueueRx<'a> {
    m: Mbuf,
    pool: &'a Pool,
}

struct QueueTx<'a> {
    dev: &'a QueueDevice,
}

impl RxToken for QueueRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(self.m.get(STACK_L2..).unwrap_or_default());
        self.pool.put(self.m);
        r
    }
}

impl TxToken for QueueTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self.dev.pool.get() {
            Some(mut m) if STACK_L2 + len <= MBUF_SIZE => {
                m.set_len(STACK_L2 + len);
                m[..STACK_L2].fill(0);
                let r = f(&mut m[STACK_L2..]);
                if let Err(m) = self.dev.queues.send(m) {
                    self.dev.pool.put(m);
                }
                r
            }
            other => {
                if let Some(m) = other {
                    self.dev.pool.put(m);
                }
                self.dev.queues.count_send_dropped();
                f(&mut vec![0; len])
            }
        }
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = QueueRx<'a>;
    type TxToken<'a> = QueueTx<'a>;

    fn receive(&mut self, _now: SInstant) -> Option<(QueueRx<'_>, QueueTx<'_>)> {
        let m = self.queues.receive()?;
        Some((
            QueueRx {
                m,
                pool: &self.pool,
            },
            QueueTx { dev: self },
        ))
    }

    fn transmit(&mut self, _now: SInstant) -> Option<QueueTx<'_>> {
        self.queues.can_send().then_some(QueueTx { dev: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// One accepted connection.
struct Conn {
    port: u16,
    request: Vec<u8>,
    answered: bool,
    deadline: SInstant,
}

/// What answers a request on a health-check port: given the port and the request, the bytes
/// of the answer, or `None` to close the connection without one (the port is no Service's any
/// more).
pub trait Answer {
    fn answer(&mut self, port: u16, request: &Request) -> Option<Vec<u8>>;
    /// The answer to a request that is not HTTP/1.x (`Parsed::Bad`, `Parsed::TooLarge`).
    fn refuse(&mut self, response: Response) -> Vec<u8>;
}

/// The stack: its interface, device and sockets.
pub struct HostStack {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    /// Every socket of each port, listening or connected.
    ports: BTreeMap<u16, Vec<SocketHandle>>,
    conns: HashMap<SocketHandle, Conn>,
    address: Option<Ipv4Addr>,
}

impl HostStack {
    /// A stack over `queues`, taking buffers for what it sends from `pool` (the workers' pool)
    /// and giving back the ones it received.
    /// `now` is the stack's clock (any monotonic origin), `seed` randomises its initial
    /// sequence numbers.
    pub fn new(queues: Arc<StackQueues>, pool: Arc<Pool>, now: Instant, seed: u64) -> HostStack {
        let mut device = QueueDevice { queues, pool };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smol(now));
        iface.set_any_ip(true);
        HostStack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            ports: BTreeMap::new(),
            conns: HashMap::new(),
            address: None,
        }
    }

    /// Follows the tables: the node address the interface holds (any address is accepted, but
    /// smoltcp routes through one of its own) and the health-check ports listened on. A port
    /// that is gone loses its connections.
    pub fn sync(&mut self, tables: &Tables) {
        let address = tables.local.first().copied();
        if address != self.address {
            self.address = address;
            let routes = self.iface.routes_mut();
            routes.remove_default_ipv4_route();
            self.iface.update_ip_addrs(|addrs| {
                addrs.clear();
                if let Some(a) = address {
                    let _ = addrs.push(IpCidr::new(a.into(), 32));
                }
            });
            if let Some(a) = address {
                let _ = self.iface.routes_mut().add_default_ipv4_route(a);
            }
        }
        let gone: Vec<u16> = self
            .ports
            .keys()
            .copied()
            .filter(|p| tables.health.lookup(*p).is_none())
            .collect();
        for port in gone {
            for h in self.ports.remove(&port).unwrap_or_default() {
                self.sockets.get_mut::<tcp::Socket>(h).abort();
                self.sockets.remove(h);
                self.conns.remove(&h);
            }
        }
        for c in tables.health.iter() {
            self.ports.entry(c.port).or_default();
        }
        self.replenish();
    }

    /// The ports listened on.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.keys().copied().collect()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Keeps [`LISTENERS`] listening sockets on every port.
    fn replenish(&mut self) {
        for (&port, handles) in &mut self.ports {
            let listening = handles
                .iter()
                .filter(|h| self.sockets.get::<tcp::Socket>(**h).is_listening())
                .count();
            for _ in listening..LISTENERS {
                if handles.len() >= MAX_SOCKETS_PER_PORT {
                    break;
                }
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
                );
                s.set_timeout(Some(CONN_TIMEOUT));
                if s.listen(port).is_ok() {
                    handles.push(self.sockets.add(s));
                }
            }
        }
    }

    /// Receives what the workers queued, serves the connections, sends what is due. Returns
    /// whether anything happened (frames moved or connections changed).
    pub fn poll(&mut self, now: Instant, answer: &mut dyn Answer) -> bool {
        let now = smol(now);
        let mut busy = self.iface.poll(now, &mut self.device, &mut self.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        let handles: Vec<(u16, SocketHandle)> = self
            .ports
            .iter()
            .flat_map(|(p, hs)| hs.iter().map(move |h| (*p, *h)))
            .collect();
        let mut closed = Vec::new();
        for (port, h) in handles {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            match s.state() {
                tcp::State::Listen => {
                    // Back to listening (a reset half-open connection): forget it.
                    self.conns.remove(&h);
                    continue;
                }
                tcp::State::Closed | tcp::State::TimeWait => {
                    closed.push((port, h));
                    continue;
                }
                _ => {}
            }
            let conn = self.conns.entry(h).or_insert_with(|| Conn {
                port,
                request: Vec::new(),
                answered: false,
                deadline: now + CONN_TIMEOUT,
            });
            if now >= conn.deadline {
                s.abort();
                busy = true;
                continue;
            }
            if conn.answered {
                continue;
            }
            while s.can_recv() && conn.request.len() <= MAX_REQUEST_HEAD {
                let mut buf = [0u8; 1024];
                match s.recv_slice(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => conn.request.extend_from_slice(&buf[..n]),
                }
            }
            // The client has closed its side (FIN received) and will send no more.
            let finished = matches!(
                s.state(),
                tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing
            );
            let reply = match parse_request(&conn.request) {
                Parsed::Incomplete if !finished => continue,
                // The client stopped sending before a whole request: nothing to answer.
                Parsed::Incomplete => None,
                Parsed::Request(req) => answer.answer(conn.port, &req),
                Parsed::Bad => Some(answer.refuse(Response::bad_request())),
                Parsed::TooLarge => Some(answer.refuse(Response::too_large())),
            };
            conn.answered = true;
            busy = true;
            match reply {
                Some(bytes) if s.send_slice(&bytes) == Ok(bytes.len()) => s.close(),
                _ => s.abort(),
            }
        }
        for (port, h) in closed {
            self.sockets.remove(h);
            self.conns.remove(&h);
            if let Some(hs) = self.ports.get_mut(&port) {
                hs.retain(|x| *x != h);
            }
            busy = true;
        }
        self.replenish();
        // Send the answers (and the FINs, RSTs) now rather than at the next poll.
        if busy {
            self.iface.poll(now, &mut self.device, &mut self.sockets);
        }
        busy
    }

    /// How long the stack may sleep before its next poll is due (TCP timers), if anything is.
    pub fn poll_delay(&mut self, now: Instant) -> Option<std::time::Duration> {
        self.iface
            .poll_delay(smol(now), &self.sockets)
            .map(|d| std::time::Duration::from_micros(d.total_micros()))
    }
}

/// smoltcp's instant for ours.
fn smol(t: Instant) -> SInstant {
    SInstant::from_micros((t.as_nanos() / 1000) as i64)
}
