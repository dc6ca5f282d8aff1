//! `nodegate pktgen`: a traffic generator on nodegate's own port drivers (af_xdp, af_packet,
//! tap, pcap output), for line-rate benchmarks of nodegate and of what it replaces.
//!
//! A pinned thread sends bursts of IPv4 or IPv6 UDP or TCP frames over a set of flows (ranges of
//! source and destination addresses and ports) at a given rate or as fast as the port takes
//! them, and, when a receive port is given, counts what comes back and how late. On af_xdp
//! ports, several such threads (lanes, [`generate_lanes`]) can share the work, one per queue. Each flow's
//! headers are built once, before the clock starts; sending a frame copies its flow's headers
//! into a pool buffer and writes a 16-byte stamp (magic, sequence number, send time) at the
//! start of the payload, so a receiver recognises its own frames after any NAT and measures
//! their latency. UDP frames over IPv4 carry no checksum (IPv4 allows it, and the payload is then
//! never copied); TCP frames, and UDP over IPv6 (where it is mandatory), have their checksum
//! patched for the stamp (RFC 1624).
//!
//! Latency goes into an HDR-style histogram (log-linear buckets, under 1 % relative error) and is
//! reported as percentiles. Runs are bounded: a duration (at most [`MAX_DURATION`]) or a count
//! is required.

use crate::pcap::{PcapTxPort, PcapWriter, ReplayClock};
use dataplane::mbuf::{Mbuf, Pool, PoolCache};
use dataplane::port::Port;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest run the generator accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// The most flows (each has its headers prebuilt, 64 bytes).
pub const MAX_FLOWS: usize = 4 << 20;
/// "ngpg": marks the generator's frames.
const MAGIC: u32 = 0x6e67_7067;
const STAMP: usize = 16;
const ETH: usize = 14;
const IP: usize = 20;
const IP6: usize = 40;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// Bytes of each flow's prebuilt headers (Ethernet, IPv4, TCP, stamp fit in 70; UDP in 58).
const HEADER_MAX: usize = 80;

/// An inclusive range of addresses or ports, `a` or `a-b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<T> {
    pub first: T,
    pub count: u32,
}

impl std::str::FromStr for Range<IpAddr> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |t: &str| {
            t.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("`{t}` is not an IPv4 or IPv6 address"))
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(s)?, parse(s)?),
        };
        let (lo, hi) = match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return Err(format!("`{s}`: both ends must be of one address family")),
        };
        if hi < lo {
            return Err(format!("`{s}`: the range ends before it starts"));
        }
        let count =
            u32::try_from(hi - lo + 1).map_err(|_| format!("`{s}`: more than 2^32 addresses"))?;
        Ok(Range { first: a, count })
    }
}

impl Range<IpAddr> {
    /// The `i`-th address of the range.
    fn nth(&self, i: u32) -> IpAddr {
        match self.first {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + i)),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) + u128::from(i))),
        }
    }
}

impl std::str::FromStr for Range<u16> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{t}` is not a port (0-65535)"))
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(s)?, parse(s)?),
        };
        if b < a {
            return Err(format!("`{s}`: the range ends before it starts"));
        }
        Ok(Range {
            first: a,
            count: u32::from(b - a) + 1,
        })
    }
}

/// The L4 protocol of the generated frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(Proto::Udp),
            "tcp" => Ok(Proto::Tcp),
            _ => Err(format!("unknown protocol `{s}`, expected `udp` or `tcp`")),
        }
    }
}

/// How fast to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as the port takes frames.
    Max,
    /// Frames per second.
    Pps(f64),
    /// Line rate of a link of this many bits per second (20 bytes of preamble and gap per
    /// frame counted, as on Ethernet).
    Bits(f64),
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("bad rate `{s}`: expected `max`, frames per second (`500000`, `1.5M`) or a line rate (`10G`, `25Gbit`)")
        };
        if s == "max" {
            return Ok(Rate::Max);
        }
        let t = s.trim_end_matches("bit").trim_end_matches("pps");
        let (num, mult, bits) = match t.chars().last() {
            Some('k') | Some('K') => (&t[..t.len() - 1], 1e3, false),
            Some('M') => (&t[..t.len() - 1], 1e6, false),
            Some('G') => (&t[..t.len() - 1], 1e9, true),
            _ => (t, 1.0, false),
        };
        let v: f64 = num.parse().map_err(|_| bad())?;
        if !(v > 0.0 && v.is_finite()) {
            return Err(bad());
        }
        // `G` is only meaningful as a line rate; `k`/`M` with `bit` are line rates too.
        if bits || s.ends_with("bit") {
            Ok(Rate::Bits(v * mult))
        } else {
            Ok(Rate::Pps(v * mult))
        }
    }
}

impl Rate {
    /// Frames per second for frames of `size` bytes on the wire, `None` for [`Rate::Max`].
    pub fn pps(self, size: usize) -> Option<f64> {
        match self {
            Rate::Max => None,
            Rate::Pps(p) => Some(p),
            Rate::Bits(b) => Some(b / (((size + 20) * 8) as f64)),
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Source and destination addresses: both IPv4 or both IPv6.
    pub src: Range<IpAddr>,
    pub dst: Range<IpAddr>,
    pub sport: Range<u16>,
    pub dport: Range<u16>,
    pub proto: Proto,
    /// Frame size on the wire, FCS included (64..=1518); the frame handed to the port is 4
    /// bytes shorter.
    pub size: usize,
}

impl Traffic {
    /// Number of distinct flows (the product of the four ranges).
    pub fn flows(&self) -> u64 {
        u64::from(self.src.count)
            * u64::from(self.dst.count)
            * u64::from(self.sport.count)
            * u64::from(self.dport.count)
    }

    fn header_len(&self) -> usize {
        ETH + self.ip_len() + self.l4_len()
    }

    fn ip_len(&self) -> usize {
        if self.src.first.is_ipv6() {
            IP6
        } else {
            IP
        }
    }

    fn l4_len(&self) -> usize {
        match self.proto {
            Proto::Udp => 8,
            Proto::Tcp => 20,
        }
    }

    /// Checks the sizes; the reason otherwise.
    pub fn check(&self) -> Result<(), String> {
        if self.src.first.is_ipv6() != self.dst.first.is_ipv6() {
            return Err("--src and --dst must be of one address family".into());
        }
        if !(64..=1518).contains(&self.size) {
            return Err(format!(
                "frame size {} is outside 64..=1518 (bytes on the wire, FCS included)",
                self.size
            ));
        }
        if self.header_len() + STAMP > self.size - 4 {
            return Err(format!(
                "frame size {} leaves no room for the {STAMP}-byte stamp after the headers \
                 (at least {} here)",
                self.size,
                self.header_len() + STAMP + 4
            ));
        }
        if self.flows() as usize > MAX_FLOWS {
            return Err(format!(
                "{} flows is more than {MAX_FLOWS}; narrow the address or port ranges",
                self.flows()
            ));
        }
        Ok(())
    }
}

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Every flow's headers, built once: `flows × HEADER_MAX` bytes.
pub struct Templates {
    headers: Vec<u8>,
    flows: usize,
    len: usize,
    header_len: usize,
    /// Where the L4 checksum is when the stamp must be added to it (TCP, and UDP over IPv6,
    /// where the checksum is mandatory); UDP over IPv4 goes without one.
    checksum_at: Option<usize>,
    proto: Proto,
}

impl Templates {
    pub fn build(t: &Traffic) -> Templates {
        let flows = t.flows() as usize;
        let len = t.size - 4;
        let header_len = t.header_len();
        let mut headers = vec![0u8; flows * HEADER_MAX];
        for (i, h) in headers.chunks_mut(HEADER_MAX).enumerate() {
            // Mixed radix: source port fastest, then destination port, source, destination.
            let mut k = i as u64;
            let mut next = |n: u32| {
                let v = (k % u64::from(n)) as u32;
                k /= u64::from(n);
                v
            };
            let sport = t.sport.first + next(t.sport.count) as u16;
            let dport = t.dport.first + next(t.dport.count) as u16;
            let src = t.src.nth(next(t.src.count));
            let dst = t.dst.nth(next(t.dst.count));
            write_headers(h, t, len, src, dst, sport, dport);
        }
        let l4 = ETH + t.ip_len();
        Templates {
            headers,
            flows,
            len,
            header_len,
            checksum_at: match (t.proto, t.src.first.is_ipv6()) {
                (Proto::Tcp, _) => Some(l4 + 16),
                (Proto::Udp, true) => Some(l4 + 6),
                (Proto::Udp, false) => None,
            },
            proto: t.proto,
        }
    }

    pub fn flows(&self) -> usize {
        self.flows
    }

    /// Writes frame `seq` (flow `seq % flows`) stamped with `ts` into `m`.
    #[inline]
    pub fn fill(&self, m: &mut Mbuf, seq: u64, ts: u64) {
        let flow = (seq % self.flows as u64) as usize;
        let h = &self.headers[flow * HEADER_MAX..flow * HEADER_MAX + self.header_len];
        m.set_len(self.len);
        let buf = m.buffer_mut();
        buf[..self.header_len].copy_from_slice(h);
        let at = self.header_len;
        let mut stamp = [0u8; STAMP];
        stamp[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        stamp[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        stamp[8..16].copy_from_slice(&ts.to_be_bytes());
        buf[at..at + STAMP].copy_from_slice(&stamp);
        if let Some(c) = self.checksum_at {
            // The template's checksum covers a zero payload: add the stamp's words.
            buf[at + STAMP..self.len].fill(0);
            let old = u16::from_be_bytes([buf[c], buf[c + 1]]);
            let mut new = !fold(u32::from(!old) + sum16(&stamp));
            if new == 0 && self.proto == Proto::Udp {
                new = 0xffff; // a computed zero is sent as all ones (zero means "none")
            }
            buf[c..c + 2].copy_from_slice(&new.to_be_bytes());
        }
    }
}

/// Ethernet, IPv4 or IPv6, and UDP/TCP headers of one flow for a frame of `len` bytes with a
/// zero payload.
fn write_headers(
    h: &mut [u8],
    t: &Traffic,
    len: usize,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
) {
    h[0..6].copy_from_slice(&t.dst_mac);
    h[6..12].copy_from_slice(&t.src_mac);
    let proto = match t.proto {
        Proto::Udp => PROTO_UDP,
        Proto::Tcp => PROTO_TCP,
    };
    let ip_len = t.ip_len();
    let l4_len = len - ETH - ip_len;
    // The pseudo header's sum (RFC 768/793 for IPv4, RFC 8200 §8.1 for IPv6).
    let mut pseudo = u32::from(proto) + l4_len as u32;
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut h[ETH..ETH + IP];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((len - ETH) as u16).to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let c = !fold(sum16(ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            pseudo += sum16(&src.octets()) + sum16(&dst.octets());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            h[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let ip = &mut h[ETH..ETH + IP6];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            pseudo += sum16(&src.octets()) + sum16(&dst.octets());
        }
        _ => unreachable!("Traffic::check: one address family"),
    }
    let l4 = &mut h[ETH + ip_len..];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    match t.proto {
        Proto::Udp => {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            if src.is_ipv6() {
                // Mandatory over IPv6: pseudo header + header (the payload is zero).
                let c = !fold(pseudo + sum16(&l4[..8]));
                l4[6..8].copy_from_slice(&c.to_be_bytes());
            } // IPv4: checksum 0, none.
        }
        Proto::Tcp => {
            l4[4..8].copy_from_slice(&1u32.to_be_bytes()); // sequence
            l4[12] = 5 << 4;
            l4[13] = 0x10; // ACK: the frames of an established flow
            l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
            let c = !fold(pseudo + sum16(&l4[..20]));
            l4[16..18].copy_from_slice(&c.to_be_bytes());
        }
    }
}

/// Reads the stamp of one of our frames (IPv4 or IPv6, UDP or TCP, after any NAT): (sequence,
/// send time). `None` for anything else.
#[inline]
pub fn read_stamp(frame: &[u8]) -> Option<(u32, u64)> {
    let (l4, proto) = match frame.get(12..14)? {
        [0x08, 0x00] => (
            ETH + usize::from(*frame.get(ETH)? & 0x0f) * 4,
            *frame.get(ETH + 9)?,
        ),
        [0x86, 0xdd] => (ETH + IP6, *frame.get(ETH + 6)?),
        _ => return None,
    };
    let l4_len = match proto {
        PROTO_UDP => 8,
        PROTO_TCP => usize::from(*frame.get(l4 + 12)? >> 4) * 4,
        _ => return None,
    };
    let s = frame.get(l4 + l4_len..l4 + l4_len + STAMP)?;
    if s[0..4] != MAGIC.to_be_bytes() {
        return None;
    }
    Some((
        u32::from_be_bytes([s[4], s[5], s[6], s[7]]),
        u64::from_be_bytes([s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]]),
    ))
}

/// An HDR-style histogram of nanosecond values: for each power of two, 128 linear sub-buckets
/// (under 1 % relative error), no allocation after construction.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (64 - SUB_BITS as usize + 1) * SUB],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let top = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = top - (SUB_BITS - 1) - 1;
        let sub = (v >> shift) as usize & (SUB - 1);
        (top - SUB_BITS + 1) as usize * SUB + sub
    }

    /// The upper end of bucket `i`'s range (what a percentile reports).
    fn value_of(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let shift = (i / SUB) as u32 - 1;
        let sub = (i % SUB) as u64;
        ((SUB as u64 + sub + 1) << shift) - 1
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The value below which `q` (0..=1) of the recorded values lie (within the bucket's
    /// precision); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let want = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(Self::value_of(i).min(self.max));
            }
        }
        Some(self.max)
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Adds `other`'s values to this one's.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }
}

/// How long and how fast.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub rate: Rate,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Frames per transmit call.
    pub burst: usize,
    /// How long the receiver keeps counting after the last frame was sent.
    pub drain: Duration,
}

impl Schedule {
    pub fn check(&self) -> Result<(), String> {
        if self.duration.is_none() && self.count.is_none() {
            return Err("give --duration or --count: the generator never runs unbounded".into());
        }
        if self
            .duration
            .is_some_and(|d| d > MAX_DURATION || d.is_zero())
        {
            return Err(format!(
                "--duration must be between 1 ms and {} s",
                MAX_DURATION.as_secs()
            ));
        }
        if !(1..=256).contains(&self.burst) {
            return Err("--burst must be 1..=256".into());
        }
        Ok(())
    }
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub flows: u64,
    pub frame_size: usize,
    pub sent: u64,
    /// Frames the transmit port did not take when offered (counted, not retried).
    pub tx_busy: u64,
    pub received: u64,
    /// Frames on the receive port that were not ours.
    pub received_other: u64,
    pub seconds: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub loss: u64,
    pub loss_ratio: f64,
    pub latency_ns: Option<Latency>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Sends `traffic` on `tx` as `schedule` says and counts what `rx` receives meanwhile (and
/// during the drain). Single-threaded: transmit and receive alternate burst by burst, so the
/// receive side costs the generator's own core.
pub fn generate(
    traffic: &Traffic,
    schedule: &Schedule,
    tx: &mut dyn Port,
    rx: Option<&mut dyn Port>,
    pool: &mut PoolCache,
    clock: Option<&ReplayClock>,
) -> Report {
    let templates = Templates::build(traffic);
    let share = Share { index: 0, of: 1 };
    let tally = run_lane(
        &templates,
        schedule,
        share,
        Instant::now(),
        tx,
        rx,
        pool,
        clock,
    );
    report(traffic, [tally])
}

/// One thread's ports for [`generate_lanes`]: a queue of the transmit port, a queue of the
/// receive port, and the CPU to pin the thread to.
pub struct Lane {
    pub tx: Box<dyn Port>,
    pub rx: Option<Box<dyn Port>>,
    pub cpu: Option<usize>,
}

/// [`generate`] on several threads at once, one per lane (a queue of each port; on a
/// multi-queue link, queue `q` of the sender is queue `q` of the receiver), all with frames from
/// `pool`. Lane `i` of `n` sends flows `i, i + n, ...` at `1/n` of the rate (and of the count);
/// stamps share one clock, so latency and loss are those of the whole run.
pub fn generate_lanes(
    traffic: &Traffic,
    schedule: &Schedule,
    lanes: Vec<Lane>,
    pool: &Arc<Pool>,
) -> Result<Report, String> {
    let templates = Templates::build(traffic);
    let of = lanes.len().max(1);
    let barrier = std::sync::Barrier::new(of);
    let epoch = std::sync::OnceLock::new();
    // Every lane pinned and ready, then one epoch for all of them, taken as they start: a
    // frame may come back on another lane's queue, and its stamp must mean the same there.
    let start = || {
        if barrier.wait().is_leader() {
            let _ = epoch.set(Instant::now());
        }
        barrier.wait();
        *epoch.get().expect("set by the barrier's leader")
    };
    let tallies: Vec<Result<Tally, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = lanes
            .into_iter()
            .enumerate()
            .map(|(index, mut lane)| {
                let (templates, start) = (&templates, &start);
                let mut cache = PoolCache::new(pool.clone());
                s.spawn(move || {
                    if let Some(cpu) = lane.cpu {
                        if !ffi::pin_current_thread(cpu) {
                            // Still take part in the start, so the others do not wait forever.
                            start();
                            return Err(format!("cannot pin lane {index} to CPU {cpu}"));
                        }
                    }
                    let epoch = start();
                    Ok(run_lane(
                        templates,
                        schedule,
                        Share { index, of },
                        epoch,
                        lane.tx.as_mut(),
                        lane.rx.as_mut().map(|r| r.as_mut() as &mut dyn Port),
                        &mut cache,
                        None,
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a lane panicked".into())))
            .collect()
    });
    let tallies: Vec<Tally> = tallies.into_iter().collect::<Result<_, _>>()?;
    Ok(report(traffic, tallies))
}

/// Lane `index` of `of`.
#[derive(Clone, Copy)]
struct Share {
    index: usize,
    of: usize,
}

/// What one lane did.
struct Tally {
    /// Whether the lane had a receive port (without one, nothing counts as lost).
    receiving: bool,
    sent: u64,
    busy: u64,
    received: u64,
    other: u64,
    seconds: f64,
    hist: Histogram,
}

/// The loop of one lane: its share of the frames, stamped with the time since `start`.
#[allow(clippy::too_many_arguments)]
fn run_lane(
    templates: &Templates,
    schedule: &Schedule,
    share: Share,
    start: Instant,
    tx: &mut dyn Port,
    mut rx: Option<&mut dyn Port>,
    pool: &mut PoolCache,
    clock: Option<&ReplayClock>,
) -> Tally {
    let of = share.of as u64;
    let index = share.index as u64;
    let pps = schedule.rate.pps(templates.len + 4).map(|p| p / of as f64);
    let mut hist = Histogram::default();
    let (mut sent, mut busy, mut received, mut other) = (0u64, 0u64, 0u64, 0u64);
    let mut out: Vec<Mbuf> = Vec::with_capacity(schedule.burst);
    let mut inb: Vec<Mbuf> = Vec::with_capacity(256);
    let limit = schedule
        .count
        .map_or(u64::MAX, |c| c / of + u64::from(index < c % of));
    let deadline = schedule.duration.map(|d| start + d);
    let mut receive = |rx: &mut Option<&mut dyn Port>, pool: &mut PoolCache, now_ns: u64| {
        let Some(rx) = rx.as_deref_mut() else {
            return;
        };
        if rx.rx_burst(pool, &mut inb, 256) == 0 {
            return;
        }
        for m in inb.drain(..) {
            match read_stamp(&m[..]) {
                Some((_, ts)) => {
                    received += 1;
                    hist.record(now_ns.saturating_sub(ts));
                }
                None => other += 1,
            }
            pool.free(m);
        }
    };
    loop {
        let now = Instant::now();
        let elapsed = now.duration_since(start);
        if sent + busy >= limit || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let mut want = schedule.burst as u64;
        if let Some(pps) = pps {
            let due = (elapsed.as_secs_f64() * pps) as u64;
            want = want.min(due.saturating_sub(sent + busy));
        }
        want = want.min(limit - sent - busy);
        let ts = elapsed.as_nanos() as u64;
        for i in 0..want {
            let Some(mut m) = pool.alloc() else { break };
            templates.fill(&mut m, index + (sent + busy + i) * of, ts);
            out.push(m);
        }
        if !out.is_empty() {
            if let Some(c) = clock {
                c.set(dataplane::time::Instant::from_nanos(ts));
            }
            let offered = out.len() as u64;
            tx.tx_burst(pool, &mut out);
            let left = out.len() as u64;
            sent += offered - left;
            busy += left;
            for m in out.drain(..) {
                pool.free(m);
            }
        }
        receive(
            &mut rx,
            pool,
            Instant::now().duration_since(start).as_nanos() as u64,
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    // Flush what the transmit side holds, then let the last frames arrive.
    let mut empty = Vec::new();
    tx.tx_burst(pool, &mut empty);
    let drain_end = Instant::now() + schedule.drain;
    while rx.is_some() && Instant::now() < drain_end {
        receive(
            &mut rx,
            pool,
            Instant::now().duration_since(start).as_nanos() as u64,
        );
        tx.tx_burst(pool, &mut empty);
    }
    Tally {
        receiving: rx.is_some(),
        sent,
        busy,
        received,
        other,
        seconds,
        hist,
    }
}

/// The report of a run from its lanes' tallies.
fn report(traffic: &Traffic, tallies: impl IntoIterator<Item = Tally>) -> Report {
    let mut hist = Histogram::default();
    let (mut sent, mut busy, mut received, mut other, mut seconds) = (0, 0, 0, 0, 0f64);
    let mut loss = 0;
    for t in tallies {
        sent += t.sent;
        busy += t.busy;
        received += t.received;
        other += t.other;
        seconds = seconds.max(t.seconds);
        if t.receiving {
            loss += t.sent.saturating_sub(t.received);
        }
        hist.merge(&t.hist);
    }
    let latency_ns = (!hist.is_empty()).then(|| Latency {
        p50: hist.quantile(0.5).unwrap_or(0),
        p90: hist.quantile(0.9).unwrap_or(0),
        p99: hist.quantile(0.99).unwrap_or(0),
        p999: hist.quantile(0.999).unwrap_or(0),
        max: hist.max(),
    });
    Report {
        flows: traffic.flows(),
        frame_size: traffic.size,
        sent,
        tx_busy: busy,
        received,
        received_other: other,
        seconds,
        tx_pps: sent as f64 / seconds.max(1e-9),
        rx_pps: received as f64 / seconds.max(1e-9),
        loss,
        loss_ratio: if sent > 0 {
            loss as f64 / sent as f64
        } else {
            0.0
        },
        latency_ns,
    }
}

/// A port named on the command line: `af_xdp:IFACE[:MODE]`, `af_packet:IFACE`, `tap:IFACE`
/// or `pcap:FILE` (transmit only).
#[derive(Debug, Clone, PartialEq)]
pub enum PortSpec {
    AfXdp { interface: String, mode: String },
    AfPacket { interface: String },
    Tap { interface: String },
    Pcap { path: PathBuf },
}

/// As written on the command line.
impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::AfXdp { interface, mode } => write!(f, "af_xdp:{interface}:{mode}"),
            PortSpec::AfPacket { interface } => write!(f, "af_packet:{interface}"),
            PortSpec::Tap { interface } => write!(f, "tap:{interface}"),
            PortSpec::Pcap { path } => write!(f, "pcap:{}", path.display()),
        }
    }
}

impl std::str::FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (driver, rest) = s.split_once(':').ok_or_else(|| {
            format!("`{s}`: expected DRIVER:INTERFACE (af_xdp, af_packet, tap) or pcap:FILE")
        })?;
        if rest.is_empty() {
            return Err(format!("`{s}`: the interface or file is missing"));
        }
        match driver {
            "af_xdp" => {
                let (interface, mode) = rest.split_once(':').unwrap_or((rest, "auto"));
                Ok(PortSpec::AfXdp {
                    interface: interface.into(),
                    mode: mode.into(),
                })
            }
            "af_packet" => Ok(PortSpec::AfPacket {
                interface: rest.into(),
            }),
            "tap" => Ok(PortSpec::Tap {
                interface: rest.into(),
            }),
            "pcap" => Ok(PortSpec::Pcap { path: rest.into() }),
            other => Err(format!(
                "unknown driver `{other}`, expected af_xdp, af_packet, tap or pcap"
            )),
        }
    }
}

impl PortSpec {
    pub fn interface(&self) -> Option<&str> {
        match self {
            PortSpec::AfXdp { interface, .. }
            | PortSpec::AfPacket { interface }
            | PortSpec::Tap { interface } => Some(interface),
            PortSpec::Pcap { .. } => None,
        }
    }
}

/// An opened port (one `Port` per queue) and what must live as long as it.
pub struct Opened {
    pub ports: Vec<Box<dyn Port>>,
    _program: Option<ffi::af_xdp::XdpProgram>,
}

/// Opens queues `0..queues` of a port of `spec` with `pool` (a frame region, for af_xdp).
/// Several queues are for af_xdp only (one socket per queue).
pub fn open(
    spec: &PortSpec,
    queues: u16,
    pool: &Arc<Pool>,
    clock: &ReplayClock,
) -> std::io::Result<Opened> {
    if queues != 1 && !matches!(spec, PortSpec::AfXdp { .. }) {
        return Err(std::io::Error::other(
            "several queues need an af_xdp port (one socket per queue)",
        ));
    }
    let one = |port: Box<dyn Port>| Opened {
        ports: vec![port],
        _program: None,
    };
    Ok(match spec {
        PortSpec::AfXdp { interface, mode } => {
            let mode = mode
                .parse::<control::config::XdpMode>()
                .map_err(std::io::Error::other)?;
            let q = usize::from(queues);
            let opened = crate::af_xdp::open(interface, queues, mode, q, pool)?;
            Opened {
                ports: opened.ports,
                _program: Some(opened.program),
            }
        }
        PortSpec::AfPacket { interface } => {
            one(Box::new(crate::af_packet::AfPacketPort::open(interface)?))
        }
        PortSpec::Tap { interface } => one(Box::new(crate::tap::TapPort::open(interface)?)),
        PortSpec::Pcap { path } => one(Box::new(PcapTxPort::new(
            "pktgen",
            Some(PcapWriter::create(path)?),
            clock.clone(),
            false,
            crate::pcap::WriteError::default(),
        ))),
    })
}

/// Prints a report as people read it.
pub fn print(r: &Report) {
    let m = |pps: f64| pps / 1e6;
    println!(
        "sent     {:>12} frames  {:>8.3} Mpps  ({} flows, {}-byte frames, {:.2} s{})",
        r.sent,
        m(r.tx_pps),
        r.flows,
        r.frame_size,
        r.seconds,
        if r.tx_busy > 0 {
            format!(", {} not taken by the port", r.tx_busy)
        } else {
            String::new()
        }
    );
    println!(
        "received {:>12} frames  {:>8.3} Mpps  loss {} ({:.3} %){}",
        r.received,
        m(r.rx_pps),
        r.loss,
        r.loss_ratio * 100.0,
        if r.received_other > 0 {
            format!(", {} other frames", r.received_other)
        } else {
            String::new()
        }
    );
    if let Some(l) = &r.latency_ns {
        println!(
            "latency  p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
            l.p50 as f64 / 1e3,
            l.p90 as f64 / 1e3,
            l.p99 as f64 / 1e3,
            l.p999 as f64 / 1e3,
            l.max as f64 / 1e3
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(proto: Proto, size: usize) -> Traffic {
        Traffic {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "198.18.1.2-198.18.1.3".parse().unwrap(),
            dst: "10.96.0.10".parse().unwrap(),
            sport: "1024-1123".parse().unwrap(),
            dport: "80".parse().unwrap(),
            proto,
            size,
        }
    }

    /// Builds `t`'s frames for 400 sequence numbers, over garbage buffers (no checksum may
    /// depend on what was there), and checks each with etherparse: length, IPv4 header
    /// checksum, L4 checksum (none for UDP over IPv4, mandatory over IPv6), the stamp. Returns
    /// how many flows the frames covered.
    fn check_frames(t: &Traffic) -> usize {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        let tpl = Templates::build(t);
        let mut seen = std::collections::HashSet::new();
        for seq in 0..400u64 {
            let mut m = Mbuf::new();
            m.buffer_mut().fill(0xa5);
            let ts = 7 + seq * 1_000_003;
            tpl.fill(&mut m, seq, ts);
            let f = &m[..];
            assert_eq!(f.len(), t.size - 4);
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let flow = match (&p.net, &p.transport) {
                (Some(NetSlice::Ipv4(ip)), Some(l4)) => {
                    let h = ip.header().to_header();
                    assert_eq!(usize::from(h.total_len), t.size - 4 - 14);
                    assert_eq!(h.header_checksum, h.calc_header_checksum());
                    let sport = match l4 {
                        TransportSlice::Udp(u) => {
                            assert_eq!(u.checksum(), 0, "none over IPv4");
                            u.source_port()
                        }
                        TransportSlice::Tcp(tcp) => {
                            let want = tcp.to_header().calc_checksum_ipv4(&h, tcp.payload());
                            assert_eq!(tcp.checksum(), want.unwrap(), "TCP, seq {seq}");
                            tcp.source_port()
                        }
                        _ => panic!("UDP or TCP"),
                    };
                    (IpAddr::from(h.source), sport)
                }
                (Some(NetSlice::Ipv6(ip)), Some(l4)) => {
                    let h = ip.header().to_header();
                    assert_eq!(usize::from(h.payload_length), t.size - 4 - 14 - 40);
                    let sport = match l4 {
                        TransportSlice::Udp(u) => {
                            let want = u.to_header().calc_checksum_ipv6(&h, u.payload());
                            assert_eq!(u.checksum(), want.unwrap(), "UDP, seq {seq}");
                            assert_ne!(u.checksum(), 0, "mandatory over IPv6");
                            u.source_port()
                        }
                        TransportSlice::Tcp(tcp) => {
                            let want = tcp.to_header().calc_checksum_ipv6(&h, tcp.payload());
                            assert_eq!(tcp.checksum(), want.unwrap(), "TCP, seq {seq}");
                            tcp.source_port()
                        }
                        _ => panic!("UDP or TCP"),
                    };
                    (IpAddr::from(h.source), sport)
                }
                _ => panic!("an IP packet with a transport header"),
            };
            seen.insert(flow);
            assert_eq!(read_stamp(f), Some((seq as u32, ts)));
        }
        seen.len()
    }

    #[test]
    fn test_frames_are_valid_and_stamped_for_every_flow() {
        assert!(traffic(Proto::Tcp, 64)
            .check()
            .unwrap_err()
            .contains("stamp"));
        for (proto, size) in [(Proto::Udp, 64), (Proto::Tcp, 74), (Proto::Tcp, 1518)] {
            let t = traffic(proto, size);
            assert_eq!(t.flows(), 200);
            t.check().unwrap();
            assert_eq!(check_frames(&t), 200, "every flow is sent");
        }
    }

    #[test]
    fn test_ipv6_frames_are_valid_and_stamped() {
        let mut t = traffic(Proto::Udp, 64);
        t.src = "2001:db8::1-2001:db8::2".parse().unwrap();
        t.dst = "fd00:96::10".parse().unwrap();
        // 14 + 40 + 8 + 16 + 4: a 64-byte IPv6 frame has no room for the stamp.
        assert!(t.check().unwrap_err().contains("at least 82"));
        let mut mixed = t.clone();
        mixed.dst = "10.96.0.10".parse().unwrap();
        assert!(mixed.check().unwrap_err().contains("one address family"));
        for (proto, size) in [(Proto::Udp, 82), (Proto::Tcp, 94), (Proto::Udp, 1518)] {
            t.proto = proto;
            t.size = size;
            t.check().unwrap();
            assert_eq!(check_frames(&t), 200, "every flow is sent");
        }
    }

    #[test]
    fn test_ranges_rates_and_specs_parse_with_reasons() {
        let r: Range<u16> = "1024-2047".parse().unwrap();
        assert_eq!((r.first, r.count), (1024, 1024));
        assert!("9-8".parse::<Range<u16>>().is_err());
        assert!("70000".parse::<Range<u16>>().is_err());
        let a: Range<IpAddr> = "10.0.0.1-10.0.1.0".parse().unwrap();
        assert_eq!(a.count, 256);
        let six: Range<IpAddr> = "2001:db8::1-2001:db8::1:0".parse().unwrap();
        assert_eq!(six.count, 0x1_0000);
        assert_eq!(six.nth(0xffff), "2001:db8::1:0".parse::<IpAddr>().unwrap());
        assert!("10.0.0.1-2001:db8::1"
            .parse::<Range<IpAddr>>()
            .unwrap_err()
            .contains("one address family"));
        assert!("2001:db8::-2001:db9::"
            .parse::<Range<IpAddr>>()
            .unwrap_err()
            .contains("2^32"));
        assert_eq!("max".parse::<Rate>().unwrap(), Rate::Max);
        assert_eq!("1.5M".parse::<Rate>().unwrap(), Rate::Pps(1.5e6));
        assert_eq!("500000".parse::<Rate>().unwrap(), Rate::Pps(5e5));
        let line = "10G".parse::<Rate>().unwrap();
        assert_eq!(line, Rate::Bits(1e10));
        // 64-byte frames at 10 Gbit/s: 14.88 Mpps.
        assert!((line.pps(64).unwrap() - 14_880_952.4).abs() < 1.0);
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!(
            "af_xdp:veth0".parse::<PortSpec>().unwrap(),
            PortSpec::AfXdp {
                interface: "veth0".into(),
                mode: "auto".into()
            }
        );
        assert!("veth0".parse::<PortSpec>().unwrap_err().contains("DRIVER"));
        assert!("dpdk:x".parse::<PortSpec>().is_err());
        let mut t = traffic(Proto::Udp, 63);
        assert!(t.check().unwrap_err().contains("64..=1518"));
        t.size = 64;
        t.sport = "0-65535".parse().unwrap();
        t.src = "10.0.0.0-10.0.0.255".parse().unwrap();
        assert!(t.check().unwrap_err().contains("flows"));
        let s = Schedule {
            rate: Rate::Max,
            duration: None,
            count: None,
            burst: 64,
            drain: Duration::ZERO,
        };
        assert!(s.check().unwrap_err().contains("unbounded"));
    }

    #[test]
    fn test_histogram_percentiles_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(h.len(), 100_000);
        let mut small = Histogram::default();
        small.record(3);
        assert_eq!(small.quantile(0.5), Some(3));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn test_a_pcap_run_writes_every_frame_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pcap");
        let clock = ReplayClock::default();
        let pool = Pool::new(1024);
        let mut opened = open(&PortSpec::Pcap { path: path.clone() }, 1, &pool, &clock).unwrap();
        let mut cache = PoolCache::new(pool);
        let s = Schedule {
            rate: Rate::Pps(200_000.0),
            duration: Some(Duration::from_secs(5)),
            count: Some(5_000),
            burst: 32,
            drain: Duration::ZERO,
        };
        let r = generate(
            &traffic(Proto::Udp, 64),
            &s,
            opened.ports[0].as_mut(),
            None,
            &mut cache,
            Some(&clock),
        );
        drop(opened);
        assert_eq!(r.sent, 5_000);
        // 5000 frames at 200 kpps take 25 ms at least.
        assert!(r.seconds >= 0.024, "{r:?}");
        let data = std::fs::read(&path).unwrap();
        let frames = etherparse_pcap_count(&data);
        assert_eq!(frames, 5_000);
    }

    /// Records in a little-endian pcap file.
    fn etherparse_pcap_count(data: &[u8]) -> usize {
        let mut at = 24;
        let mut n = 0;
        while at + 16 <= data.len() {
            let incl = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
            at += 16 + incl;
            n += 1;
        }
        n
    }
}
