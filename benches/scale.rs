//! Scale curves (docs/benchmarks.md, "Scale"): one worker's pipeline against the number of
//! flows (1k to 4M) and of Services (10 to 50k), the time from a Service change to the data
//! plane using it (1k and 50k Services), and memory per flow. Every rate is given next to the
//! `macswap` baseline measured in the same process (receive, swap MACs, transmit), as a ratio,
//! because these machines are shared and noisy.
//!
//! `cargo bench --bench scale` (add `-- --quick` for a shorter run up to 1M flows and 10k
//! Services; `-- --json FILE` writes the rows). Under `cargo test` it runs the smallest point of
//! each curve once, as a check that the set-ups work.

use control::config::Config;
use control::model::ClusterState;
use dataplane::mbuf::{Mbuf, Pool, PoolCache};
use dataplane::pipeline::{Fabric, Worker};
use dataplane::port::{Port, BURST};
use dataplane::tables::TablePublisher;
use dataplane::time::Instant as DpInstant;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn worker_for(
    cfg: &Config,
    publisher: &TablePublisher,
    pool: usize,
) -> (Worker, Vec<Box<dyn Port>>) {
    let wcfg = nodegate::node::worker_configs(cfg).remove(0);
    let w = Worker::new(
        wcfg,
        publisher.reader(),
        Pool::new(pool),
        Fabric::new(1, 64),
        1,
    );
    (w, vec![Box::new(common::Sink)])
}

/// Nanoseconds per frame of `f` (which handles one burst per call), over `time`.
fn per_frame(time: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up.
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut bursts = 0u64;
    while start.elapsed() < time {
        for _ in 0..256 {
            f();
        }
        bursts += 256;
    }
    start.elapsed().as_nanos() as f64 / (bursts * BURST as u64) as f64
}

/// The baseline: frames copied in from a ring, MACs swapped, transmitted.
fn macswap(time: Duration) -> f64 {
    let mut cache = PoolCache::new(Pool::new(1024));
    let ring: Vec<[u8; 64]> = common::order(10_000, 1 << 16)
        .iter()
        .map(|&f| common::frame(f, 0x10))
        .collect();
    let mut sink = common::Sink;
    let mut rx: Vec<Mbuf> = Vec::with_capacity(BURST);
    let mut pos = 0usize;
    per_frame(time, || {
        for f in &ring[pos..pos + BURST] {
            let mut m = cache.alloc().expect("pool");
            m.copy_from(std::hint::black_box(f));
            rx.push(m);
        }
        pos = (pos + BURST) % (ring.len() - BURST);
        for m in rx.iter_mut() {
            let (d, s) = m.split_at_mut(6);
            d.swap_with_slice(&mut s[..6]);
        }
        sink.tx_burst(&mut cache, &mut rx);
    })
}

#[derive(Debug, Clone, serde::Serialize)]
struct Point {
    curve: &'static str,
    x: u64,
    ns_per_frame: f64,
    mpps: f64,
    x_macswap: f64,
    /// Flows: bytes of resident memory per flow of table capacity (slots and index; at small
    /// sizes the worker's fixed tables dominate).
    bytes_per_flow: Option<f64>,
    /// Services: time to build the tables.
    build_ms: Option<f64>,
}

/// Established TCP flows: ns per ACK with `flows` flows, and resident bytes per flow.
fn flows_point(flows: u32, time: Duration, base: f64) -> Point {
    let syns: Vec<[u8; 64]> = (0..flows).map(|f| common::frame(f, 0x02)).collect();
    let acks: Vec<[u8; 64]> = (0..flows).map(|f| common::frame(f, 0x10)).collect();
    let visit = common::order(flows, 1 << 16);
    // Capacity twice the flows: the table at half load, as `max_flows` sized with headroom.
    let capacity = flows as usize * 2;
    let (cfg, tables) = common::tables(capacity, 120);
    let publisher = TablePublisher::new(tables);
    // The worker's tables are allocated and touched (every slot and index bucket written) when
    // it is made: what that adds to the resident set, per flow of capacity.
    let before = rss();
    let (mut w, mut ports) = worker_for(&cfg, &publisher, 4096);
    let bytes = (rss().saturating_sub(before)) as f64 / capacity as f64;
    let mut rx = Vec::with_capacity(BURST);
    let all: Vec<u32> = (0..flows).collect();
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &syns, chunk, &mut rx, DpInstant::ZERO);
    }
    let synacks = common::syn_acks(w.flows());
    for chunk in all.chunks(BURST) {
        common::burst(
            &mut w,
            &mut ports,
            &synacks,
            chunk,
            &mut rx,
            DpInstant::ZERO,
        );
    }
    drop(synacks);
    for chunk in all.chunks(BURST) {
        common::burst(&mut w, &mut ports, &acks, chunk, &mut rx, DpInstant::ZERO);
    }
    assert_eq!(w.flows().len(), flows as usize, "every flow created");
    let mut pos = 0usize;
    let ns = per_frame(time, || {
        let ids = &visit[pos..pos + BURST];
        pos = (pos + BURST) % (visit.len() - BURST);
        common::burst(
            &mut w,
            &mut ports,
            &acks,
            ids,
            &mut rx,
            DpInstant::from_secs(1),
        );
    });
    assert_eq!(w.stats().tx[0], w.stats().rx[0], "nothing dropped");
    Point {
        curve: "flows",
        x: u64::from(flows),
        ns_per_frame: ns,
        mpps: 1e3 / ns,
        x_macswap: ns / base,
        bytes_per_flow: Some(bytes),
        build_ms: None,
    }
}

/// A configuration and `n` ClusterIP Services (10.96.0.0/16 upwards), each with 4 endpoints.
fn services(n: u32) -> (Config, ClusterState) {
    let yaml = "node: {name: node-a, addresses: [\"10.0.0.1\"]}\nworkers: 1\nports:\n  - {name: eth0, driver: memory, mac: \"02:00:00:00:00:01\", addresses: [\"10.0.0.1/16\"]}\nroutes:\n  - {prefix: \"0.0.0.0/0\", via: \"10.0.0.2\"}\nneighbors:\n  - {address: \"10.0.0.2\", mac: \"02:00:00:00:00:02\"}\nconntrack: {max_flows: 262144, timeouts: {tcp_syn_sent: 1}}\n";
    let cfg = Config::parse(yaml, Path::new("/bench/scale.yaml")).expect("config");
    let mut text = String::new();
    for i in 0..n {
        let vip = vip(i);
        let eps: String = (0..4)
            .map(|e| {
                format!(
                    "  - {{addresses: [\"10.{}.{}.{}\"], nodeName: node-b}}\n",
                    64 + (i >> 14),
                    (i >> 6) & 0xff,
                    ((i & 0x3f) << 2) | e
                )
            })
            .collect();
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec:\n  clusterIP: {vip}\n  ports: [{{port: 80, protocol: TCP, targetPort: 8080}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nports: [{{name: \"\", port: 8080, protocol: TCP}}]\nendpoints:\n{eps}---\n"
        ));
    }
    let mut state = ClusterState::default();
    control::manifests::parse_str(&text, Path::new("/bench/services.yaml"), &mut state)
        .expect("manifests");
    (cfg, state)
}

fn vip(i: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) + i)
}

/// New connections spread over `n` Services: ns per SYN (Service lookup, Maglev, flow
/// creation), and the time to build the tables.
fn services_point(n: u32, time: Duration, base: f64) -> Point {
    let (cfg, state) = services(n);
    let started = Instant::now();
    let (tables, _) = control::snapshot::build(&cfg, &state).expect("tables");
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(tables.services.len(), n as usize);
    let publisher = TablePublisher::new(tables);
    let (mut w, mut ports) = worker_for(&cfg, &publisher, 4096);
    // Clients spread over the Services: frame k goes to Service k % n.
    let span = 1u32 << 20;
    let syns: Vec<[u8; 64]> = (0..span)
        .map(|f| {
            let src = std::net::Ipv4Addr::from(0x6400_0000 + f);
            common::tcp_frame(src, vip(f % n), 1024 + (f & 0x3fff) as u16, 80, 0x02)
        })
        .collect();
    let mut rx = Vec::with_capacity(BURST);
    let (mut next, mut t) = (0u32, 0u64);
    let ns = per_frame(time, || {
        let ids: [u32; BURST] = core::array::from_fn(|i| (next + i as u32) % span);
        next = next.wrapping_add(BURST as u32);
        // 1 ms per burst; SYN flows expire after 1 s: the table stays at its steady state.
        t += 1_000_000;
        let now = DpInstant::from_nanos(t);
        common::burst(&mut w, &mut ports, &syns, &ids, &mut rx, now);
        w.timers(now);
    });
    assert!(w.flows().stats().created > 0);
    Point {
        curve: "services",
        x: u64::from(n),
        ns_per_frame: ns,
        mpps: 1e3 / ns,
        x_macswap: ns / base,
        bytes_per_flow: None,
        build_ms: Some(build_ms),
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct Change {
    services: u32,
    /// Rebuilding the tables from the changed state.
    build_ms: f64,
    /// From `publish` to a worker thread (polling a memory port with traffic) running it.
    apply_us: f64,
    total_ms: f64,
}

/// One endpoint added to one of `n` Services: rebuild, publish, and the time until a running
/// worker uses the new tables (best of three).
fn change_point(n: u32) -> Change {
    let (cfg, mut state) = services(n);
    // As the control thread does: the last build's backend sets are reused.
    let mut cache = control::snapshot::BuildCache::default();
    let (tables, _) = control::snapshot::build_cached(&cfg, &state, &mut cache).expect("tables");
    let publisher = TablePublisher::new(tables);
    let (mut w, mut ports) = worker_for(&cfg, &publisher, 4096);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let frames: Vec<[u8; 64]> = (0..1024).map(|f| common::frame(f, 0x10)).collect();
            let ids: Vec<u32> = (0..BURST as u32).collect();
            let mut rx = Vec::with_capacity(BURST);
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = DpInstant::from_nanos(start.elapsed().as_nanos() as u64);
                common::burst(&mut w, &mut ports, &frames, &ids, &mut rx, now);
                w.timers(now);
            }
        })
    };
    let mut best: Option<Change> = None;
    for round in 0..3u32 {
        let slice = &mut state.endpoint_slices[(n / 2) as usize];
        let mut ep = slice.endpoints[0].clone();
        ep.addresses = vec![std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            10,
            200,
            0,
            round as u8,
        ))];
        slice.endpoints.push(ep);
        let t0 = Instant::now();
        let (tables, _) =
            control::snapshot::build_cached(&cfg, &state, &mut cache).expect("tables");
        let built = t0.elapsed();
        let generation = publisher.publish(tables);
        let t1 = Instant::now();
        while publisher.applied().iter().any(|&g| g < generation) {
            assert!(
                t1.elapsed() < Duration::from_secs(5),
                "the worker never switched"
            );
            std::hint::spin_loop();
        }
        let applied = t1.elapsed();
        let c = Change {
            services: n,
            build_ms: built.as_secs_f64() * 1e3,
            apply_us: applied.as_secs_f64() * 1e6,
            total_ms: (built + applied).as_secs_f64() * 1e3,
        };
        if best.as_ref().is_none_or(|b| c.total_ms < b.total_ms) {
            best = Some(c);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().unwrap();
    best.unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned());
    if !bench {
        // `cargo test`: each set-up once, small.
        let base = macswap(Duration::from_millis(20));
        let p = flows_point(1000, Duration::from_millis(20), base);
        assert!(p.ns_per_frame > 0.0 && p.bytes_per_flow.unwrap() >= 0.0);
        let p = services_point(10, Duration::from_millis(20), base);
        assert_eq!(p.x, 10);
        let c = change_point(10);
        assert!(c.total_ms > 0.0);
        return;
    }
    let time = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    let flows: &[u32] = if quick {
        &[1_000, 10_000, 100_000, 1_000_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000, 4_000_000]
    };
    let services_n: &[u32] = if quick {
        &[10, 100, 1_000, 10_000]
    } else {
        &[10, 100, 1_000, 10_000, 50_000]
    };
    let base = macswap(time);
    println!("macswap baseline: {base:.1} ns/frame");
    let mut points = Vec::new();
    println!("\n| flows | ns/frame | Mpps per core | × macswap | bytes per flow (capacity) |\n| --- | --- | --- | --- | --- |");
    for &n in flows {
        let p = flows_point(n, time, base);
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.0} |",
            n,
            p.ns_per_frame,
            p.mpps,
            p.x_macswap,
            p.bytes_per_flow.unwrap()
        );
        points.push(p);
    }
    println!("\n| Services | new connections ns/frame | M/s per core | × macswap | tables built in ms |\n| --- | --- | --- | --- | --- |");
    for &n in services_n {
        let p = services_point(n, time, base);
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.1} |",
            n,
            p.ns_per_frame,
            p.mpps,
            p.x_macswap,
            p.build_ms.unwrap()
        );
        points.push(p);
    }
    println!("\n| Services | rebuild ms | publish → worker µs | change → data plane ms |\n| --- | --- | --- | --- |");
    let mut changes = Vec::new();
    for &n in if quick {
        &[1_000u32][..]
    } else {
        &[1_000u32, 50_000][..]
    } {
        let c = change_point(n);
        println!(
            "| {} | {:.1} | {:.0} | {:.1} |",
            c.services, c.build_ms, c.apply_us, c.total_ms
        );
        changes.push(c);
    }
    if let Some(path) = json {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&serde_json::json!({
                "macswap_ns": base,
                "points": points,
                "changes": changes,
            }))
            .unwrap(),
        )
        .expect("write the JSON file");
    }
}
