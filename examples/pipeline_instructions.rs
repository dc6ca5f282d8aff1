//! A noise-free companion to `benches/pipeline.rs`: runs established and new-connection bursts
//! through one worker so that `valgrind --tool=callgrind` can count the instructions the
//! pipeline executes per frame (instruction counts do not depend on what else the machine
//! does). See docs/benchmarks.md:
//!
//!     cargo build --release --example pipeline_instructions
//!     valgrind --tool=callgrind --toggle-collect='*measured*' \
//!         target/release/examples/pipeline_instructions

use dataplane::mbuf::{Mbuf, Pool};
use dataplane::pipeline::{Fabric, Worker};
use dataplane::port::{Port, BURST};
use dataplane::tables::TablePublisher;
use dataplane::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;

const FLOWS: u32 = 10_000;
const BURSTS: u32 = 1_000;

fn run(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    frames: &[impl AsRef<[u8]>],
    rx: &mut Vec<Mbuf>,
    first: u32,
    now: Instant,
) {
    for i in 0..BURST as u32 {
        let mut m = w.pool().alloc().expect("pool");
        m.copy_from(frames[((first + i) % frames.len() as u32) as usize].as_ref());
        rx.push(m);
    }
    w.process_rx(0, rx, now);
    w.flush(ports);
}

#[inline(always)]
fn established_bursts(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    acks: &[impl AsRef<[u8]>],
    rx: &mut Vec<Mbuf>,
    bursts: u32,
) {
    for b in 0..bursts {
        run(
            w,
            ports,
            acks,
            rx,
            b * BURST as u32 * 7,
            Instant::from_secs(1),
        );
    }
}

#[inline(never)]
fn measured_established(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    acks: &[[u8; 64]],
    rx: &mut Vec<Mbuf>,
    bursts: u32,
) {
    established_bursts(w, ports, acks, rx, bursts);
}

/// The harness alone: the same frames copied in and transmitted, MACs swapped.
#[inline(never)]
fn measured_macswap(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    acks: &[[u8; 64]],
    rx: &mut Vec<Mbuf>,
    bursts: u32,
) {
    for b in 0..bursts {
        let first = b * BURST as u32 * 7;
        for i in 0..BURST as u32 {
            let mut m = w.pool().alloc().expect("pool");
            m.copy_from(&acks[((first + i) % acks.len() as u32) as usize]);
            let (d, s) = m.split_at_mut(6);
            d.swap_with_slice(&mut s[..6]);
            rx.push(m);
        }
        ports[0].tx_burst(w.pool(), rx);
    }
}

#[inline(always)]
fn new_bursts(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    syns: &[impl AsRef<[u8]>],
    rx: &mut Vec<Mbuf>,
    flows: u32,
    bursts: u32,
) {
    for b in 0..bursts {
        run(
            w,
            ports,
            syns,
            rx,
            flows + b * BURST as u32,
            Instant::from_secs(2),
        );
    }
}

#[inline(never)]
fn measured_new(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    syns: &[[u8; 64]],
    rx: &mut Vec<Mbuf>,
    flows: u32,
    bursts: u32,
) {
    new_bursts(w, ports, syns, rx, flows, bursts);
}

/// Sets up `flows` established flows, then runs `bursts` bursts of each measured kind.
fn drive(flows: u32, bursts: u32) -> Worker {
    let (cfg, tables) = common::tables(4 * flows as usize + 2 * (bursts as usize * BURST), 120);
    let publisher = TablePublisher::new(tables);
    let wcfg = nodegate::node::worker_configs(&cfg).remove(0);
    let mut w = Worker::new(
        wcfg,
        publisher.reader(),
        Pool::new(4096),
        Fabric::new(1, 64),
        1,
    );
    let mut ports: Vec<Box<dyn Port>> = vec![Box::new(common::Sink)];
    let total = flows + bursts * BURST as u32;
    let syns: Vec<[u8; 64]> = (0..total).map(|f| common::frame(f, 0x02)).collect();
    let acks: Vec<[u8; 64]> = (0..flows).map(|f| common::frame(f, 0x10)).collect();
    let mut rx = Vec::with_capacity(BURST);
    let setup = |w: &mut Worker,
                 ports: &mut Vec<Box<dyn Port>>,
                 frames: &[[u8; 64]],
                 rx: &mut Vec<Mbuf>| {
        for b in 0..flows.div_ceil(BURST as u32) {
            run(w, ports, frames, rx, b * BURST as u32, Instant::ZERO);
        }
    };
    setup(&mut w, &mut ports, &syns[..flows as usize], &mut rx);
    assert_eq!(w.flows().len(), flows as usize);
    let synacks = common::syn_acks(w.flows());
    setup(&mut w, &mut ports, &synacks, &mut rx);
    setup(&mut w, &mut ports, &acks, &mut rx);
    measured_macswap(&mut w, &mut ports, &acks, &mut rx, bursts);
    measured_established(&mut w, &mut ports, &acks, &mut rx, bursts);
    measured_new(&mut w, &mut ports, &syns, &mut rx, flows, bursts);
    assert_eq!(w.flows().len(), total as usize, "every SYN made a flow");
    w
}

/// The same over IPv6 (an IPv6 ClusterIP Service, 74-byte frames): the `*measured6*`
/// functions, for comparing instructions per frame with IPv4's.
fn drive6(flows: u32, bursts: u32) -> Worker {
    let (cfg, tables) = common::tables(4 * flows as usize + 2 * (bursts as usize * BURST), 120);
    let publisher = TablePublisher::new(tables);
    let wcfg = nodegate::node::worker_configs(&cfg).remove(0);
    let mut w = Worker::new(
        wcfg,
        publisher.reader(),
        Pool::new(4096),
        Fabric::new(1, 64),
        1,
    );
    let mut ports: Vec<Box<dyn Port>> = vec![Box::new(common::Sink)];
    let total = flows + bursts * BURST as u32;
    let syns: Vec<[u8; 74]> = (0..total).map(|f| common::frame6(f, 0x02)).collect();
    let acks: Vec<[u8; 74]> = (0..flows).map(|f| common::frame6(f, 0x10)).collect();
    let mut rx = Vec::with_capacity(BURST);
    for b in 0..flows.div_ceil(BURST as u32) {
        run(
            &mut w,
            &mut ports,
            &syns[..flows as usize],
            &mut rx,
            b * BURST as u32,
            Instant::ZERO,
        );
    }
    assert_eq!(w.flows6().len(), flows as usize);
    let synacks = common::syn_acks6(w.flows6());
    for b in 0..flows.div_ceil(BURST as u32) {
        run(
            &mut w,
            &mut ports,
            &synacks,
            &mut rx,
            b * BURST as u32,
            Instant::ZERO,
        );
        run(
            &mut w,
            &mut ports,
            &acks,
            &mut rx,
            b * BURST as u32,
            Instant::ZERO,
        );
    }
    measured6_established(&mut w, &mut ports, &acks, &mut rx, bursts);
    measured6_new(&mut w, &mut ports, &syns, &mut rx, flows, bursts);
    assert_eq!(w.flows6().len(), total as usize, "every SYN made a flow");
    w
}

#[inline(never)]
fn measured6_established(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    acks: &[[u8; 74]],
    rx: &mut Vec<Mbuf>,
    bursts: u32,
) {
    established_bursts(w, ports, acks, rx, bursts);
}

#[inline(never)]
fn measured6_new(
    w: &mut Worker,
    ports: &mut [Box<dyn Port>],
    syns: &[[u8; 74]],
    rx: &mut Vec<Mbuf>,
    flows: u32,
    bursts: u32,
) {
    new_bursts(w, ports, syns, rx, flows, bursts);
}

fn main() {
    drive(FLOWS, BURSTS);
    drive6(FLOWS, BURSTS);
    let frames = u64::from(BURSTS) * BURST as u64;
    println!("{frames} established and {frames} new-connection frames processed");
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn drives_ipv6_established_and_new_flows_without_drops() {
        let w = drive6(256, 8);
        let s = w.stats();
        assert_eq!(s.drops.iter().sum::<u64>(), 0, "nothing dropped");
        assert_eq!(s.rx[0], s.tx[0]);
        let established = w
            .flows6()
            .iter()
            .filter(|f| f.tcp == dataplane::conntrack::TcpState::Established)
            .count();
        assert_eq!(established, 256, "the handshakes completed");
    }

    #[test]
    fn drives_established_and_new_flows_without_drops() {
        let w = drive(256, 8);
        let s = w.stats();
        assert_eq!(s.drops.iter().sum::<u64>(), 0, "nothing dropped");
        assert_eq!(s.rx[0], s.tx[0]);
        let established = w
            .flows()
            .iter()
            .filter(|f| f.tcp == dataplane::conntrack::TcpState::Established)
            .count();
        assert_eq!(established, 256, "the handshakes completed");
    }
}
