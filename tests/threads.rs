//! The threaded runtime: one poll-mode thread per worker, each with its own port queues, frames
//! spread round-robin over the workers' receive queues (so most reach the wrong worker and are
//! handed to the flow's owner). Checks that no flow is translated two ways and that every frame
//! is accounted for.

mod support;

use dataplane::drop::DropReason;
use dataplane::mbuf::Pool;
use dataplane::pipeline::{Fabric, Worker};
use dataplane::port::{MemoryPeer, MemoryPort, Port};
use dataplane::tables::TablePublisher;
use nodegate::node::{spawn_workers, worker_configs, IdlePolicy};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};
use support::*;

const WORKERS: usize = 3;
const FLOWS: u32 = 1500;

struct Rig {
    /// `peers[worker][port]`.
    peers: Vec<Vec<MemoryPeer>>,
    pool: Arc<Pool>,
    next: usize,
}

impl Rig {
    /// Injects a frame on `port` of the next worker in turn, waiting if its ring is full.
    fn inject(&mut self, port: usize, frame: &[u8], deadline: StdInstant) {
        let w = self.next;
        self.next = (self.next + 1) % self.peers.len();
        let mut m = loop {
            if let Some(m) = self.pool.get() {
                break m;
            }
            assert!(StdInstant::now() < deadline, "pool exhausted");
            std::thread::sleep(Duration::from_micros(100));
        };
        assert!(m.copy_from(frame));
        loop {
            match self.peers[w][port].inject(m) {
                Ok(()) => return,
                Err(back) => {
                    m = back;
                    assert!(StdInstant::now() < deadline, "rx ring stuck full");
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }

    /// Collects transmitted frames until `want` have arrived or the deadline passes.
    fn collect(&mut self, want: usize, deadline: StdInstant) -> Vec<Sent> {
        let mut out = Vec::new();
        while out.len() < want && StdInstant::now() < deadline {
            let mut got = false;
            for peers in &self.peers {
                for (port, peer) in peers.iter().enumerate() {
                    while let Some(m) = peer.collect() {
                        got = true;
                        out.push(Sent {
                            port,
                            bytes: m.to_vec(),
                        });
                        self.pool.put(m);
                    }
                }
            }
            if !got {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        out
    }
}

fn manifests() -> String {
    [
        service(
            "web",
            "10.96.0.10",
            "TCP",
            80,
            8080,
            Some(30080),
            "  type: NodePort",
            "",
        ),
        slice(
            "web",
            "a",
            "TCP",
            8080,
            &[
                ready("10.1.0.10", "node-b"),
                ready("10.1.0.11", "node-b"),
                ready("10.2.0.10", "node-a"),
                ready("10.2.0.11", "node-a"),
            ],
        ),
    ]
    .concat()
}

type Tuple = (Ipv4Addr, u16, Ipv4Addr, u16);

fn tuple(o: &Out) -> Tuple {
    let (s, d) = o.ports();
    (o.src(), s, o.dst(), d)
}

#[test]
fn threaded_workers_hand_off_and_translate_each_flow_once() {
    let deadline = StdInstant::now() + Duration::from_secs(10);
    let cfg = config(WORKERS, "conntrack:\n  max_flows: 65536\n");
    let publisher = TablePublisher::new(tables(&cfg, &manifests()));
    let pool = Pool::new(16_384);
    let fabric = Fabric::new(WORKERS, 4096);
    let n_ports = 2;
    let workers: Vec<Worker> = worker_configs(&cfg)
        .into_iter()
        .map(|c| Worker::new(c, publisher.reader(), pool.clone(), fabric.clone(), n_ports))
        .collect();
    let mut ports: Vec<Vec<Box<dyn Port>>> = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..WORKERS {
        let mut ps: Vec<Box<dyn Port>> = Vec::new();
        let mut pe = Vec::new();
        for _ in 0..n_ports {
            let (p, peer) = MemoryPort::pair(4096);
            ps.push(Box::new(p));
            pe.push(peer);
        }
        ports.push(ps);
        peers.push(pe);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handles = spawn_workers(
        workers,
        ports,
        None,
        IdlePolicy::default(),
        stop.clone(),
        None,
    );
    let mut rig = Rig {
        peers,
        pool: pool.clone(),
        next: 0,
    };

    // Half the flows from external clients to the NodePort (SNAT), half from local pods to the
    // ClusterIP; two packets each (SYN, then ACK), which may be handled by different workers.
    let clients: Vec<Tuple> = (0..FLOWS)
        .map(|i| {
            if i % 2 == 0 {
                let c = Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250) as u8 + 1);
                (c, 10_000 + i as u16, NODE_IP, 30080)
            } else {
                let c = Ipv4Addr::new(10, 2, 0, 50 + (i % 100) as u8);
                (c, 10_000 + i as u16, ip("10.96.0.10"), 80)
            }
        })
        .collect();
    let mut injected = 0usize;
    for flags in [SYN, ACK] {
        for &(c, sport, dst, dport) in &clients {
            let f = Pkt::tcp(c, sport, dst, dport, flags).bytes();
            rig.inject(port_of_frame(&f), &f, deadline);
            injected += 1;
        }
    }
    let out = rig.collect(injected, deadline);
    assert_eq!(out.len(), injected, "every forward packet transmitted");

    // Each flow has exactly one translation.
    let mut by_client: HashMap<Tuple, Tuple> = HashMap::new();
    let mut replies = Vec::new();
    for s in &out {
        let o = expect_out(s, 63);
        replies.push(o);
    }
    let distinct: std::collections::HashSet<Tuple> = replies.iter().map(tuple).collect();
    assert_eq!(
        distinct.len(),
        clients.len(),
        "one translated tuple per flow (no flow translated two ways)"
    );

    // Replies from the endpoints, once per translated tuple, spread the same way.
    let mut sent_replies = 0;
    for t in &distinct {
        let (src, sport, dst, dport) = *t;
        let f = Pkt::tcp(dst, dport, src, sport, SYN | ACK).bytes();
        rig.inject(port_of_frame(&f), &f, deadline);
        sent_replies += 1;
    }
    let back = rig.collect(sent_replies, deadline);
    assert_eq!(back.len(), sent_replies, "every reply transmitted");
    for s in &back {
        let o = expect_out(s, 63);
        let (src, sport, dst, dport) = tuple(&o);
        // Reply tuple is the reverse of a client tuple.
        let client = (dst, dport, src, sport);
        assert!(
            clients.contains(&client),
            "reply to an unknown client: {client:?}"
        );
        assert!(
            by_client.insert(client, client).is_none(),
            "a client got two replies: {client:?}"
        );
    }
    assert_eq!(by_client.len(), clients.len(), "every client got its reply");

    stop.store(true, Ordering::Relaxed);
    let workers: Vec<Worker> = handles.into_iter().map(|h| h.join().unwrap().0).collect();
    assert!(StdInstant::now() < deadline + Duration::from_secs(2));

    let mut owner = HashMap::new();
    for w in &workers {
        for f in w.flows().iter() {
            for k in [f.orig, f.reply] {
                assert!(owner.insert(k, w.id()).is_none(), "{k} tracked twice");
            }
        }
    }
    let flows: usize = workers.iter().map(|w| w.flows().len()).sum();
    assert_eq!(flows, clients.len());
    let rx: u64 = workers.iter().flat_map(|w| w.stats().rx.iter()).sum();
    let tx: u64 = workers.iter().flat_map(|w| w.stats().tx.iter()).sum();
    let drops: u64 = workers.iter().flat_map(|w| w.stats().drops.iter()).sum();
    let hand_out: u64 = workers.iter().map(|w| w.stats().handoff_out).sum();
    let hand_in: u64 = workers.iter().map(|w| w.stats().handoff_in).sum();
    assert_eq!(rx as usize, injected + sent_replies);
    assert_eq!(tx + drops, rx, "nothing lost beyond counted drops");
    assert_eq!(
        drops,
        0,
        "{:?}",
        DropReason::ALL
            .iter()
            .map(|r| (
                r.name(),
                workers
                    .iter()
                    .map(|w| w.stats().drop_count(*r))
                    .sum::<u64>()
            ))
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>()
    );
    assert!(hand_out > 0);
    assert_eq!(hand_in, hand_out);
}
