//! Hot functions one by one: header parsing, incremental checksum update, flow-table lookup at
//! 1k / 100k / 1M flows, and the Maglev pick.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::conntrack::{FlowKey, FlowTable, Timeouts};
use dataplane::service::{Backend, BackendSet};
use dataplane::time::Instant;
use dataplane::wire::{checksum, EthernetFrame, Ipv4Packet, TcpPacket};
use std::net::Ipv4Addr;

mod common;

fn parse(c: &mut Criterion) {
    let frame = common::frame(7, 0x10);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("eth_ipv4_tcp", |b| {
        b.iter(|| {
            let f = black_box(&frame[..]);
            let eth = EthernetFrame::new_checked(f).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let ok = ip.verify_checksum();
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            (
                ok,
                tcp.src_port(),
                tcp.dst_port(),
                ip.src_addr(),
                tcp.flags(),
            )
        })
    });
    g.bench_function("checksum_update32", |b| {
        b.iter(|| {
            checksum::update32(
                black_box(0x1234),
                black_box([10, 0, 0, 1]),
                black_box([10, 1, 2, 3]),
            )
        })
    });
    g.finish();
}

fn key(i: u32) -> FlowKey {
    FlowKey {
        src: Ipv4Addr::from(0x6400_0000 + i),
        dst: Ipv4Addr::new(10, 96, 0, 10),
        sport: 1024 + (i % 50_000) as u16,
        dport: 80,
        proto: 6,
    }
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_lookup");
    g.throughput(Throughput::Elements(1));
    for n in [1_000u32, 100_000, 1_000_000] {
        let mut t = FlowTable::new(n as usize, Timeouts::default());
        for i in 0..n {
            let k = key(i);
            let r = FlowKey {
                src: Ipv4Addr::new(10, 1, 0, 5),
                dst: k.src,
                sport: 8080,
                dport: k.sport,
                proto: 6,
            };
            t.insert(k, r, 0, 0x02, Instant::ZERO).unwrap();
        }
        let mut x = 12345u32;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                t.lookup(black_box(&key(x % n)), Instant::ZERO)
            })
        });
    }
    g.finish();
}

fn maglev(c: &mut Criterion) {
    let backends: Vec<Backend> = (0..16)
        .map(|i| Backend {
            addr: Ipv4Addr::new(10, 1, 0, i),
            port: 8080,
            local: false,
        })
        .collect();
    let set = BackendSet::new(backends).unwrap();
    let mut g = c.benchmark_group("maglev");
    g.throughput(Throughput::Elements(1));
    let mut h = 0u64;
    g.bench_function("pick16", |b| {
        b.iter(|| {
            h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
            set.pick(dataplane::hash::mix64(black_box(h))).port
        })
    });
    g.finish();
}

criterion_group!(benches, parse, lookup, maglev);
criterion_main!(benches);
