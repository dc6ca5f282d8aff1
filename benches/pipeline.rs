//! The whole pipeline (parse, conntrack, NAT, checksums, route, rewrite) on 64-byte frames,
//! one worker, against a `macswap` baseline (receive, swap MACs, transmit) measured in the same
//! run. See docs/benchmarks.md for how to read the numbers.

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

fn established(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    flows: u32,
) {
    let (mut w, mut ports) = make_worker(flows as usize * 2, 120);
    let syns: Vec<[u8; 64]> = (0..flows).map(|f| common::frame(f, 0x02)).collect();
    let acks: Vec<[u8; 64]> = (0..flows).map(|f| common::frame(f, 0x10)).collect();
    let mut rx = Vec::with_capacity(BURST);
    let all: Vec<u32> = (0..flows).collect();
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &syns, chunk, &mut rx, Instant::ZERO);
    }
    assert_eq!(w.flows().len(), flows as usize, "every flow created");
    // Complete every handshake: SYN-ACK from the endpoint, then the ACKs below.
    let synacks = common::syn_acks(w.flows());
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &synacks, chunk, &mut rx, Instant::ZERO);
    }
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &acks, chunk, &mut rx, Instant::ZERO);
    }
    let established = w
        .flows()
        .iter()
        .filter(|f| f.tcp == dataplane::conntrack::TcpState::Established)
        .count();
    assert_eq!(established, flows as usize, "every flow established");
    let visit = common::order(flows, RING);
    let mut pos = 0usize;
    c.bench_function(format!("established/{flows}"), |b| {
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

    established(&mut g, 10_000);
    established(&mut g, 1_000_000);

    // Every frame a new flow: SYNs from ever-new client tuples, flows expiring after 1 s of
    // data plane time (1 ms per burst), so the table stays bounded in steady state.
    {
        let (mut w, mut ports) = make_worker(1 << 17, 1);
        let span = 1u32 << 22;
        let syns: Vec<[u8; 64]> = (0..span).map(|f| common::frame(f, 0x02)).collect();
        let mut rx = Vec::with_capacity(BURST);
        let mut next = 0u32;
        let mut t = 0u64;
        g.bench_function("new_connections", |b| {
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
        let refused = w.flows().stats().refused_full;
        let created = w.flows().stats().created;
        assert!(created > 0);
        eprintln!("new_connections: {created} flows created, {refused} refused (table full)");
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
