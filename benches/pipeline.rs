//! The whole pipeline (parse, conntrack, NAT, checksums, route, rewrite) on 64-byte IPv4 frames
//! and 74-byte IPv6 ones, one worker, against a `macswap` baseline (receive, swap MACs, transmit)
//! measured in the same run. See docs/benchmarks.md for how to read the numbers.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::mbuf::{Mbuf, Pool};
use dataplane::pipeline::{Fabric, Worker};
use dataplane::port::{Port, BURST};
use dataplane::tables::TablePublisher;
use dataplane::time::Instant;

mod common;

/// Flows are 64-byte frames; a flow id picks its client address and port.
fn make_worker(max_flows: usize, syn_timeout: u32) -> (Worker, Vec<Box<dyn Port>>) {
    let (cfg, tables) = common::tables(max_flows, syn_timeout);
    let publisher = TablePublisher::new(tables);
    let pool = Pool::new(4096);
    let fabric = Fabric::new(1, 64);
    let wcfg = nodegate::node::worker_configs(&cfg).remove(0);
    let w = Worker::new(wcfg, publisher.reader(), pool, fabric, 1);
    let ports: Vec<Box<dyn Port>> = vec![Box::new(common::Sink)];
    (w, ports)
}

/// Frames in the receive ring the benchmarks cycle through (4 MiB of 64-byte frames).
const RING: usize = 1 << 16;

/// What differs between the address families' benchmarks: the frames and where their flows are.
struct Family<F> {
    /// Appended to the benchmark names ("" for IPv4, "6" for IPv6).
    suffix: &'static str,
    frame: fn(u32, u8) -> F,
    syn_acks: fn(&Worker) -> Vec<F>,
    flows: fn(&Worker) -> usize,
    established: fn(&Worker) -> usize,
}

const V4: Family<[u8; 64]> = Family {
    suffix: "",
    frame: common::frame,
    syn_acks: |w| common::syn_acks(w.flows()),
    flows: |w| w.flows().len(),
    established: |w| {
        w.flows()
            .iter()
            .filter(|f| f.tcp == dataplane::conntrack::TcpState::Established)
            .count()
    },
};

const V6: Family<[u8; 74]> = Family {
    suffix: "6",
    frame: common::frame6,
    syn_acks: |w| common::syn_acks6(w.flows6()),
    flows: |w| w.flows6().len(),
    established: |w| {
        w.flows6()
            .iter()
            .filter(|f| f.tcp == dataplane::conntrack::TcpState::Established)
            .count()
    },
};

fn established<F: AsRef<[u8]>>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    fam: &Family<F>,
    flows: u32,
) {
    let (mut w, mut ports) = make_worker(flows as usize * 2, 120);
    let syns: Vec<F> = (0..flows).map(|f| (fam.frame)(f, 0x02)).collect();
    let acks: Vec<F> = (0..flows).map(|f| (fam.frame)(f, 0x10)).collect();
    let mut rx = Vec::with_capacity(BURST);
    let all: Vec<u32> = (0..flows).collect();
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &syns, chunk, &mut rx, Instant::ZERO);
    }
    assert_eq!((fam.flows)(&w), flows as usize, "every flow created");
    // Complete every handshake: SYN-ACK from the endpoint, then the ACKs below.
    let synacks = (fam.syn_acks)(&w);
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &synacks, chunk, &mut rx, Instant::ZERO);
    }
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &acks, chunk, &mut rx, Instant::ZERO);
    }
    assert_eq!(
        (fam.established)(&w),
        flows as usize,
        "every flow established"
    );
    let visit = common::order(flows, RING);
    let mut pos = 0usize;
    c.bench_function(format!("established{}/{flows}", fam.suffix), |b| {
        b.iter(|| {
            let ids = &visit[pos..pos + BURST];
            pos = (pos + BURST) % (visit.len() - BURST);
            common::burst(
                &mut w,
                &mut ports,
                &acks,
                black_box(ids),
                &mut rx,
                Instant::from_secs(1),
            );
        })
    });
    assert_eq!(w.stats().tx[0], w.stats().rx[0], "nothing dropped");
}

/// Every frame a new flow: SYNs from ever-new client tuples, flows expiring after 1 s of data
/// plane time (1 ms per burst), so the table stays bounded in steady state.
fn new_connections<F: AsRef<[u8]>>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    fam: &Family<F>,
) {
    let (mut w, mut ports) = make_worker(1 << 17, 1);
    let span = 1u32 << 22;
    let syns: Vec<F> = (0..span).map(|f| (fam.frame)(f, 0x02)).collect();
    let mut rx = Vec::with_capacity(BURST);
    let mut next = 0u32;
    let mut t = 0u64;
    c.bench_function(format!("new_connections{}", fam.suffix), |b| {
        b.iter_batched_ref(
            || (),
            |_| {
                let ids: [u32; BURST] = core::array::from_fn(|i| (next + i as u32) % span);
                next = next.wrapping_add(BURST as u32);
                t += 1_000_000;
                let now = Instant::from_nanos(t);
                common::burst(&mut w, &mut ports, &syns, &ids, &mut rx, now);
                w.timers(now);
            },
            BatchSize::SmallInput,
        )
    });
    let created = (fam.flows)(&w);
    assert!(created > 0, "flows were created");
    let drops: u64 = w.stats().drops.iter().sum();
    eprintln!(
        "new_connections{}: {} flows in the table at the end, {drops} frames dropped",
        fam.suffix, created
    );
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST as u64));

    // Baseline: the same frames copied in from the same ring and transmitted, with only a MAC
    // swap in between: what the harness and the buffer handling cost without the pipeline.
    {
        let pool = Pool::new(1024);
        let mut cache = dataplane::mbuf::PoolCache::new(pool);
        let ring: Vec<[u8; 64]> = common::order(10_000, RING)
            .iter()
            .map(|&f| common::frame(f, 0x10))
            .collect();
        let mut sink = common::Sink;
        let mut rx: Vec<Mbuf> = Vec::with_capacity(BURST);
        let mut pos = 0usize;
        g.bench_function("macswap", |b| {
            b.iter(|| {
                for f in &ring[pos..pos + BURST] {
                    let mut m = cache.alloc().expect("pool");
                    m.copy_from(black_box(f));
                    rx.push(m);
                }
                pos = (pos + BURST) % (RING - BURST);
                for m in rx.iter_mut() {
                    let (d, s) = m.split_at_mut(6);
                    d.swap_with_slice(&mut s[..6]);
                }
                sink.tx_burst(&mut cache, &mut rx);
            })
        });
    }

    established(&mut g, &V4, 10_000);
    established(&mut g, &V4, 1_000_000);
    new_connections(&mut g, &V4);
    // IPv6 Services through the same worker, measured in the same run (docs/benchmarks.md
    // compares their time per frame with IPv4's).
    established(&mut g, &V6, 10_000);
    new_connections(&mut g, &V6);
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
