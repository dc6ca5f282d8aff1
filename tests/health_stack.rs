//! Health checks answered on the data-plane ports: a lockstep node whose workers have the host
//! stack's port, the host stack (smoltcp) polled by the test, and a TCP client played by hand
//! from outside (203.0.113.7, through the gateway on eth0). Every frame the node sends is
//! checked (checksums recomputed) and must leave by eth0 towards the gateway.

mod support;

use control::health::{answer_health_check, ProxyHealth};
use control::hoststack::{Answer, HostStack};
use control::http::{Request, Response};
use dataplane::drop::DropReason;
use dataplane::hoststack::StackQueues;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use support::*;

const HC_WEB: u16 = 32000;
const HC_OTHER: u16 = 32001;

/// `web` (health check 32000) has a ready endpoint on this node when `web_local`, and one on
/// node-b; `other` (32001) only has one on node-b. Both are LoadBalancers with policy Local.
fn manifests(web_local: bool) -> String {
    let lb = |hc: u16| {
        format!("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: {hc}")
    };
    let web_node = if web_local { "node-a" } else { "node-b" };
    [
        service(
            "web",
            "10.96.0.40",
            "TCP",
            80,
            8080,
            Some(30040),
            &lb(HC_WEB),
            "",
        ),
        slice(
            "web",
            "a",
            "TCP",
            8080,
            &[ready("10.2.0.5", web_node), ready("10.1.0.6", "node-b")],
        ),
        service(
            "other",
            "10.96.0.41",
            "TCP",
            80,
            8080,
            Some(30041),
            &lb(HC_OTHER),
            "",
        ),
        slice("other", "a", "TCP", 8080, &[ready("10.1.0.7", "node-b")]),
    ]
    .concat()
}

struct Answers(Arc<ProxyHealth>);

impl Answer for Answers {
    fn answer(&mut self, port: u16, request: &Request) -> Option<Vec<u8>> {
        answer_health_check(&self.0, port, request, SystemTime::now())
    }
    fn refuse(&mut self, response: Response) -> Vec<u8> {
        response.encode(SystemTime::now(), false)
    }
}

struct Rig {
    h: Harness,
    queues: Arc<StackQueues>,
    stack: HostStack,
    answers: Answers,
    /// The stack's clock, in milliseconds.
    ms: u64,
}

impl Rig {
    fn new(workers: usize) -> Rig {
        let (h, queues) = Harness::with_host_stack(workers, &manifests(true));
        let health = Arc::new(ProxyHealth::new(
            h.node.publisher().clone(),
            Duration::from_secs(60),
            SystemTime::now(),
        ));
        let mut stack = HostStack::new(
            queues.clone(),
            h.node.pool().clone(),
            dataplane::time::Instant::ZERO,
            7,
        );
        stack.sync(&h.node.publisher().current());
        Rig {
            h,
            queues,
            stack,
            answers: Answers(health),
            ms: 0,
        }
    }

    /// Offers `frame` on eth0, then runs node and stack in turn for a while (40 ms of the
    /// stack's time); returns every frame the node sent, checked and parsed.
    fn exchange(&mut self, frame: Option<&[u8]>) -> Vec<Out> {
        if let Some(f) = frame {
            self.h.inject(ETH0, f);
        }
        let mut out = Vec::new();
        for _ in 0..8 {
            self.h.run();
            let now = dataplane::time::Instant::from_micros(self.ms * 1000);
            self.stack.poll(now, &mut self.answers);
            self.h.run();
            for s in self.h.sent() {
                assert_eq!(s.port, ETH0, "answers leave by eth0");
                let o = check(&s.bytes);
                assert_eq!(o.eth.destination, GW_MAC, "through the gateway");
                assert_eq!(o.eth.source, MAC0);
                out.push(o);
            }
            self.ms += 5;
        }
        out
    }
}

/// Connects from CLIENT:`sport` to the node's `port`, sends `request`, and returns the whole
/// answer (every payload byte, in order) once the stack has closed its side.
fn fetch(rig: &mut Rig, sport: u16, port: u16, request: &[u8]) -> String {
    let syn = Pkt::tcp(CLIENT, sport, NODE_IP, port, SYN).seq_ack(1000, 0);
    let out = rig.exchange(Some(&syn.bytes()));
    assert_eq!(out.len(), 1, "one SYN-ACK: {out:?}");
    let (h, _) = out[0].tcp();
    assert!(h.syn && h.ack, "{h:?}");
    assert_eq!((out[0].src(), out[0].dst()), (NODE_IP, CLIENT));
    assert_eq!((h.source_port, h.destination_port), (port, sport));
    assert_eq!(h.acknowledgment_number, 1001);
    assert_eq!(out[0].ip.time_to_live, 64);
    let their_isn = h.sequence_number;

    let req = Pkt::tcp(CLIENT, sport, NODE_IP, port, ACK | PSH)
        .seq_ack(1001, their_isn.wrapping_add(1))
        .payload(request);
    let out = rig.exchange(Some(&req.bytes()));
    let mut answer = Vec::new();
    let mut next = their_isn.wrapping_add(1);
    let mut fin = false;
    for o in &out {
        let (h, payload) = o.tcp();
        assert!(!h.rst, "reset: {h:?}");
        if !payload.is_empty() {
            assert_eq!(h.sequence_number, next, "in order, no gap");
            answer.extend_from_slice(&payload);
            next = next.wrapping_add(payload.len() as u32);
        }
        if h.fin {
            fin = true;
            next = next.wrapping_add(1);
        }
    }
    assert!(fin, "the stack closes after its answer: {out:?}");
    // Acknowledge the answer and the FIN, and close our side.
    let bye = Pkt::tcp(CLIENT, sport, NODE_IP, port, ACK | FIN)
        .seq_ack(1001 + request.len() as u32, next)
        .payload(b"");
    rig.exchange(Some(&bye.bytes()));
    String::from_utf8(answer).unwrap()
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn health_checks_are_answered_on_the_data_plane_ports() {
    for workers in [1, 2] {
        let mut rig = Rig::new(workers);
        assert_eq!(rig.stack.ports(), vec![HC_WEB, HC_OTHER]);

        let a = fetch(
            &mut rig,
            40000,
            HC_WEB,
            b"GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n",
        );
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert_eq!(header(&a, "Content-Type"), Some("application/json"));
        assert_eq!(header(&a, "X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(header(&a, "X-Load-Balancing-Endpoint-Weight"), Some("1"));
        assert_eq!(header(&a, "Connection"), Some("close"));
        assert_eq!(
            body(&a),
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}"
        );
        assert_eq!(
            header(&a, "Content-Length"),
            Some(body(&a).len().to_string().as_str())
        );

        // Any path, any method; no local endpoint: 503 and 0.
        let a = fetch(&mut rig, 40001, HC_OTHER, b"POST /x?y=1 HTTP/1.0\r\n\r\n");
        assert!(a.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{a}");
        assert_eq!(header(&a, "X-Load-Balancing-Endpoint-Weight"), Some("0"));
        assert!(body(&a).contains("\"name\": \"other\""), "{a}");
        assert!(body(&a).contains("\"localEndpoints\": 0,"), "{a}");

        // The endpoint moves away: the next answer says so, with no restart of anything.
        rig.h.publish(&manifests(false));
        let a = fetch(&mut rig, 40002, HC_WEB, b"GET / HTTP/1.1\r\n\r\n");
        assert!(a.starts_with("HTTP/1.1 503 "), "{a}");
        assert!(body(&a).contains("\"localEndpoints\": 0,"), "{a}");

        // Garbage gets 400.
        let a = fetch(&mut rig, 40003, HC_WEB, b"hello\r\n\r\n");
        assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");

        // Every connection was closed and forgotten; the ports still listen.
        rig.exchange(None);
        assert_eq!(rig.stack.connections(), 0);
        let c = rig.queues.counters();
        assert!(c.to_stack >= 12 && c.from_stack >= 12, "{c:?}");
        assert_eq!((c.to_stack_dropped, c.from_stack_dropped), (0, 0));
        assert_eq!(rig.h.flows(), 0, "the stack's traffic creates no flow");
        assert_eq!(rig.h.total().dropped, 0, "{:?}", rig.h.total());
    }
}

#[test]
fn only_health_check_ports_reach_the_stack() {
    let mut rig = Rig::new(1);
    // Another port of the node: ip4-local as before (no host interface here: dropped).
    let syn = Pkt::tcp(CLIENT, 41000, NODE_IP, 32002, SYN).bytes();
    assert!(rig.exchange(Some(&syn)).is_empty());
    assert_eq!(rig.h.drops(DropReason::Ip4Local), 1);
    // UDP to a health-check port is not a health check.
    let udp = Pkt::udp(CLIENT, 41001, NODE_IP, HC_WEB).bytes();
    assert!(rig.exchange(Some(&udp)).is_empty());
    assert_eq!(rig.h.drops(DropReason::Ip4Local), 2);
    assert_eq!(rig.queues.counters().to_stack, 0);
    // The Service's NodePort on the same address is still the data plane's (DNAT, SNAT-free
    // with policy Local: the local endpoint 10.2.0.5 on eth1).
    let syn = Pkt::tcp(CLIENT, 41002, NODE_IP, 30040, SYN).bytes();
    let out = rig.h.send(&syn);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, ETH1);
    assert_eq!(check(&out[0].bytes).dst(), ip("10.2.0.5"));
    // A health check port that is gone is closed on the stack and no longer steered.
    rig.h
        .publish(&manifests(true).replace("healthCheckNodePort: 32001", ""));
    rig.stack.sync(&rig.h.node.publisher().current());
    assert_eq!(rig.stack.ports(), vec![HC_WEB]);
    let syn = Pkt::tcp(CLIENT, 41003, NODE_IP, HC_OTHER, SYN).bytes();
    assert!(rig.exchange(Some(&syn)).is_empty());
    assert_eq!(rig.h.drops(DropReason::Ip4Local), 3);
}
