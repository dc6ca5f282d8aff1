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

/// A worker with `flows` established flows of one family (`frame` builds its frames, `flows_of`
/// reads its flow table's length, `syn_acks` answers its SYNs), and the SYNs and ACKs for the
/// measured bursts.
struct Setup<F> {
    w: Worker,
    ports: Vec<Box<dyn Port>>,
    syns: Vec<F>,
    acks: Vec<F>,
    rx: Vec<Mbuf>,
}

fn setup<F: AsRef<[u8]>>(
    flows: u32,
    bursts: u32,
    frame: fn(u32, u8) -> F,
    flows_of: fn(&Worker) -> usize,
    syn_acks: fn(&Worker) -> Vec<F>,
) -> Setup<F> {
    let (cfg, tables) = common::tables(4 * flows as usize + 2 * (bursts as usize * BURST), 120);
    let publisher = TablePublisher::new(tables);
    let wcfg = nodegate::node::worker_configs(&cfg).remove(0);
    let w = Worker::new(
        wcfg,
        publisher.reader(),
        Pool::new(4096),
        Fabric::new(1, 64),
        1,
    );
    let total = flows + bursts * BURST as u32;
    let mut s = Setup {
        w,
        ports: vec![Box::new(common::Sink)],
        syns: (0..total).map(|f| frame(f, 0x02)).collect(),
        acks: (0..flows).map(|f| frame(f, 0x10)).collect(),
        rx: Vec::with_capacity(BURST),
    };
    let each = |s: &mut Setup<F>, frames: &[F]| {
        for b in 0..flows.div_ceil(BURST as u32) {
            run(
                &mut s.w,
                &mut s.ports,
                frames,
                &mut s.rx,
                b * BURST as u32,
                Instant::ZERO,
            );
        }
    };
    let syns = core::mem::take(&mut s.syns);
    each(&mut s, &syns[..flows as usize]);
    s.syns = syns;
    assert_eq!(flows_of(&s.w), flows as usize);
    let synacks = syn_acks(&s.w);
    each(&mut s, &synacks);
    let acks = core::mem::take(&mut s.acks);
    each(&mut s, &acks);
    s.acks = acks;
    s
}

/// Sets up `flows` established flows, then runs `bursts` bursts of each measured kind.
fn drive(flows: u32, bursts: u32) -> Worker {
    let Setup {
        mut w,
        mut ports,
        syns,
        acks,
        mut rx,
    } = setup(
        flows,
        bursts,
        common::frame,
        |w| w.flows().len(),
        |w| common::syn_acks(w.flows()),
    );
    measured_macswap(&mut w, &mut ports, &acks, &mut rx, bursts);
    measured_established(&mut w, &mut ports, &acks, &mut rx, bursts);
    measured_new(&mut w, &mut ports, &syns, &mut rx, flows, bursts);
    assert_eq!(w.flows().len(), syns.len(), "every SYN made a flow");
    w
}

/// The same over IPv6 (an IPv6 ClusterIP Service, 74-byte frames): the `*measured6*`
/// functions, for comparing instructions per frame with IPv4's.
fn drive6(flows: u32, bursts: u32) -> Worker {
    let Setup {
        mut w,
        mut ports,
        syns,
        acks,
        mut rx,
    } = setup(
        flows,
        bursts,
        common::frame6,
        |w| w.flows6().len(),
        |w| common::syn_acks6(w.flows6()),
    );
    measured6_established(&mut w, &mut ports, &acks, &mut rx, bursts);
    measured6_new(&mut w, &mut ports, &syns, &mut rx, flows, bursts);
    assert_eq!(w.flows6().len(), syns.len(), "every SYN made a flow");
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
