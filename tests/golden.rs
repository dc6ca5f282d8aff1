//! Golden integration tests: whole frames in, whole frames out, through a lockstep [`Node`]
//! built from a YAML configuration and Kubernetes manifests. Every output frame is parsed with
//! etherparse and every checksum recomputed (see `support::check`).
//!
//! [`Node`]: nodegate::node::Node

mod support;

use dataplane::conntrack::TcpState;
use dataplane::drop::DropReason;
use etherparse::{IpNumber, Ipv4Header, UdpHeader};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;
use support::*;

const WEB: &str = "10.96.0.10";
const REMOTE: &str = "10.96.0.11";
const LOCAL_LB: &str = "10.96.0.12";
const LOCAL_NONE: &str = "10.96.0.13";
const ITP: &str = "10.96.0.14";
const ITP_NONE: &str = "10.96.0.15";
const EMPTY: &str = "10.96.0.16";
const EMPTY_UDP: &str = "10.96.0.17";
const DNS: &str = "10.96.0.53";
const SCTP: &str = "10.96.0.60";

const SNAT_RANGE: std::ops::RangeInclusive<u16> = 20000..=29999;

/// The Services most tests share.
fn base() -> String {
    let local_spec = |lb: &str, ext: &str| {
        format!(
            "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  externalIPs: [\"{ext}\"]\n"
        ) + &format!("  # lb {lb}\n")
    };
    let lb_status = |lb: &str| format!("status:\n  loadBalancer:\n    ingress:\n    - ip: {lb}\n");
    [
        service(
            WEB,
            WEB,
            "TCP",
            80,
            8080,
            Some(30080),
            "  type: NodePort\n  externalTrafficPolicy: Cluster",
            "",
        ),
        slice(
            WEB,
            "a",
            "TCP",
            8080,
            &[ready("10.1.0.10", "node-b"), ready("10.2.0.10", "node-a")],
        ),
        service(
            REMOTE,
            REMOTE,
            "TCP",
            80,
            8080,
            Some(30081),
            "  type: NodePort",
            "",
        ),
        slice(REMOTE, "a", "TCP", 8080, &[ready("10.1.0.11", "node-b")]),
        service(
            LOCAL_LB,
            LOCAL_LB,
            "TCP",
            80,
            8080,
            Some(30082),
            &local_spec("198.51.100.10", "198.51.100.20"),
            &lb_status("198.51.100.10"),
        ),
        slice(
            LOCAL_LB,
            "a",
            "TCP",
            8080,
            &[ready("10.2.0.12", "node-a"), ready("10.1.0.12", "node-b")],
        ),
        service(
            LOCAL_NONE,
            LOCAL_NONE,
            "TCP",
            80,
            8080,
            Some(30083),
            &local_spec("198.51.100.11", "198.51.100.21"),
            &lb_status("198.51.100.11"),
        ),
        slice(
            LOCAL_NONE,
            "a",
            "TCP",
            8080,
            &[ready("10.1.0.13", "node-b")],
        ),
        service(
            ITP,
            ITP,
            "TCP",
            80,
            8080,
            None,
            "  internalTrafficPolicy: Local",
            "",
        ),
        slice(
            ITP,
            "a",
            "TCP",
            8080,
            &[ready("10.2.0.14", "node-a"), ready("10.1.0.14", "node-b")],
        ),
        service(
            ITP_NONE,
            ITP_NONE,
            "TCP",
            80,
            8080,
            None,
            "  internalTrafficPolicy: Local",
            "",
        ),
        slice(ITP_NONE, "a", "TCP", 8080, &[ready("10.1.0.15", "node-b")]),
        service(EMPTY, EMPTY, "TCP", 80, 8080, None, "", ""),
        slice(EMPTY, "a", "TCP", 8080, &[]),
        service(EMPTY_UDP, EMPTY_UDP, "UDP", 53, 53, None, "", ""),
        service(
            DNS,
            DNS,
            "UDP",
            53,
            5353,
            Some(30053),
            "  type: NodePort",
            "",
        ),
        slice(DNS, "a", "UDP", 5353, &[ready("10.1.0.53", "node-b")]),
        service(SCTP, SCTP, "SCTP", 9999, 9000, None, "", ""),
        slice(SCTP, "a", "SCTP", 9000, &[ready("10.2.0.60", "node-a")]),
    ]
    .concat()
}

fn harness() -> Harness {
    Harness::new(1, "", &base())
}

fn tcp_flags(o: &Out) -> u8 {
    let (t, _) = o.tcp();
    u8::from(t.fin)
        | u8::from(t.syn) << 1
        | u8::from(t.rst) << 2
        | u8::from(t.psh) << 3
        | u8::from(t.ack) << 4
}

// ---- 1. ClusterIP -----------------------------------------------------------------------------

#[test]
fn clusterip_from_pod_is_dnated_without_snat_and_reply_is_reversed() {
    let mut h = harness();
    let syn = Pkt::tcp(POD_CLIENT, 40000, ip(WEB), 80, SYN);
    let o = expect_out(&h.send_one(&syn.bytes()), 63);
    let ep = o.dst();
    assert!([ip("10.1.0.10"), ip("10.2.0.10")].contains(&ep), "{ep}");
    assert_eq!(
        o.src(),
        POD_CLIENT,
        "ClusterIP traffic keeps the client address"
    );
    assert_eq!(o.ports(), (40000, 8080));
    let (t, _) = o.tcp();
    assert!(t.syn && !t.ack);
    assert_eq!(t.sequence_number, 1000 + 40000);

    let synack = reply_to(
        &o,
        L4::Tcp {
            flags: SYN | ACK,
            seq: 0,
            ack: 0,
        },
    );
    let r = expect_out(&h.send_one(&synack.bytes()), 63);
    assert_eq!((r.src(), r.dst()), (ip(WEB), POD_CLIENT));
    assert_eq!(r.ports(), (80, 40000));
    assert_eq!(tcp_flags(&r), SYN | ACK);

    // Data both ways keeps the same translation.
    let data =
        Pkt::tcp(POD_CLIENT, 40000, ip(WEB), 80, ACK | PSH).payload(b"GET / HTTP/1.1\r\n\r\n");
    let d = expect_out(&h.send_one(&data.bytes()), 63);
    assert_eq!(
        (d.src(), d.dst(), d.ports()),
        (POD_CLIENT, ep, (40000, 8080))
    );
    assert_eq!(d.tcp().1, b"GET / HTTP/1.1\r\n\r\n");
    let back = reply_to(
        &d,
        L4::Tcp {
            flags: ACK | PSH,
            seq: 0,
            ack: 0,
        },
    )
    .payload(b"200 OK");
    let b = expect_out(&h.send_one(&back.bytes()), 63);
    assert_eq!(
        (b.src(), b.dst(), b.ports()),
        (ip(WEB), POD_CLIENT, (80, 40000))
    );
    assert_eq!(b.tcp().1, b"200 OK");
    assert_eq!(h.flows(), 1);
}

// ---- 2. NodePort, policy Cluster ----------------------------------------------------------------

#[test]
fn nodeport_cluster_policy_snats_on_every_node_address_and_restores_replies() {
    let mut h = harness();
    for (i, addr) in [NODE_IP, NODE_EXTRA_IP, ETH1_IP].into_iter().enumerate() {
        let sport = 50000 + i as u16;
        let syn = Pkt::tcp(CLIENT, sport, addr, 30081, SYN);
        let o = expect_out(&h.send_one(&syn.bytes()), 63);
        // The only endpoint is on node-b: reached through node-b's MAC on eth0, SNATed to
        // eth0's address.
        assert_eq!(o.dst(), ip("10.1.0.11"));
        assert_eq!(o.eth.destination, NODE_B_MAC);
        assert_eq!(o.src(), NODE_IP, "SNAT to the egress port's address");
        let (snat_port, dport) = o.ports();
        assert_eq!(dport, 8080);
        assert!(SNAT_RANGE.contains(&snat_port), "{snat_port}");

        let reply = reply_to(
            &o,
            L4::Tcp {
                flags: SYN | ACK,
                seq: 0,
                ack: 0,
            },
        );
        let r = expect_out(&h.send_one(&reply.bytes()), 63);
        assert_eq!(
            (r.src(), r.dst()),
            (addr, CLIENT),
            "reply restored to the client"
        );
        assert_eq!(r.ports(), (30081, sport));
        assert_eq!(r.eth.destination, GW_MAC);
    }

    // Two endpoints, one per port: the SNAT address follows the port the frame leaves by.
    let mut seen = BTreeMap::new();
    for sport in 1000..1100u16 {
        let syn = Pkt::tcp(CLIENT, sport, NODE_IP, 30080, SYN);
        let o = expect_out(&h.send_one(&syn.bytes()), 63);
        let want_src = if o.dst() == ip("10.2.0.10") {
            ETH1_IP
        } else {
            NODE_IP
        };
        assert_eq!(o.src(), want_src);
        *seen.entry(o.dst()).or_insert(0) += 1;
        let r = expect_out(
            &h.send_one(
                &reply_to(
                    &o,
                    L4::Tcp {
                        flags: SYN | ACK,
                        seq: 0,
                        ack: 0,
                    },
                )
                .bytes(),
            ),
            63,
        );
        assert_eq!(
            (r.src(), r.dst(), r.ports()),
            (NODE_IP, CLIENT, (30080, sport))
        );
    }
    assert_eq!(seen.len(), 2, "both endpoints used: {seen:?}");
}

// ---- 3. externalTrafficPolicy Local -----------------------------------------------------------

#[test]
fn external_policy_local_uses_local_endpoints_keeps_client_or_drops() {
    let mut h = harness();
    let frontends = [
        (NODE_IP, 30082u16),
        (NODE_EXTRA_IP, 30082),
        (ip("198.51.100.10"), 80),
        (ip("198.51.100.20"), 80),
    ];
    for (i, (addr, port)) in frontends.into_iter().enumerate() {
        for k in 0..8u16 {
            let sport = 2000 + 100 * i as u16 + k;
            let o = expect_out(
                &h.send_one(&Pkt::tcp(CLIENT, sport, addr, port, SYN).bytes()),
                63,
            );
            assert_eq!(
                o.dst(),
                ip("10.2.0.12"),
                "only the local endpoint via {addr}:{port}"
            );
            assert_eq!(o.src(), CLIENT, "client address kept");
            assert_eq!(o.ports(), (sport, 8080));
            let r = expect_out(
                &h.send_one(
                    &reply_to(
                        &o,
                        L4::Tcp {
                            flags: SYN | ACK,
                            seq: 0,
                            ack: 0,
                        },
                    )
                    .bytes(),
                ),
                63,
            );
            assert_eq!((r.src(), r.dst(), r.ports()), (addr, CLIENT, (port, sport)));
        }
    }

    // The same Service shape with only a remote endpoint: silently dropped.
    let none = [
        (NODE_IP, 30083u16),
        (NODE_EXTRA_IP, 30083),
        (ip("198.51.100.11"), 80),
        (ip("198.51.100.21"), 80),
    ];
    for (addr, port) in none {
        let out = h.send(&Pkt::tcp(CLIENT, 3000, addr, port, SYN).bytes());
        assert!(out.is_empty(), "nothing sent for {addr}:{port}");
    }
    assert_eq!(h.drops(DropReason::SvcNoLocalEndpoint), 4);
    assert_eq!(h.total().tcp_resets_sent, 0);
    // Its ClusterIP is internal traffic and still reaches the remote endpoint.
    let o = expect_out(
        &h.send_one(&Pkt::tcp(POD_CLIENT, 3001, ip(LOCAL_NONE), 80, SYN).bytes()),
        63,
    );
    assert_eq!((o.src(), o.dst()), (POD_CLIENT, ip("10.1.0.13")));
}

#[test]
fn load_balancer_source_ranges_admit_only_listed_clients_on_the_lb_ip() {
    const LB: &str = "198.51.100.30";
    let manifests = service(
        "fw",
        "10.96.0.30",
        "TCP",
        80,
        8080,
        Some(30090),
        "  type: LoadBalancer\n  loadBalancerSourceRanges: [\" 203.0.113.0/28\", \"2001:db8::/32\"]",
        &format!("status:\n  loadBalancer:\n    ingress:\n    - ip: {LB}\n"),
    ) + &slice("fw", "a", "TCP", 8080, &[ready("10.1.0.30", "node-b")]);
    let mut h = Harness::new(1, "", &manifests);
    // CLIENT (203.0.113.7) is inside the range: DNATed.
    let o = expect_out(
        &h.send_one(&Pkt::tcp(CLIENT, 5000, ip(LB), 80, SYN).bytes()),
        63,
    );
    assert_eq!(o.dst(), ip("10.1.0.30"));
    // Another client is not: dropped, counted, nothing sent.
    let other = ip("192.0.2.99");
    assert!(h
        .send(&Pkt::tcp(other, 5001, ip(LB), 80, SYN).bytes())
        .is_empty());
    assert_eq!(h.drops(DropReason::SvcSourceNotAllowed), 1);
    // The ranges guard the load balancer IP only: the same client reaches the NodePort and
    // the ClusterIP.
    let o = expect_out(
        &h.send_one(&Pkt::tcp(other, 5002, NODE_IP, 30090, SYN).bytes()),
        63,
    );
    assert_eq!(o.dst(), ip("10.1.0.30"));
    let o = expect_out(
        &h.send_one(&Pkt::tcp(POD_CLIENT, 5003, ip("10.96.0.30"), 80, SYN).bytes()),
        63,
    );
    assert_eq!(o.dst(), ip("10.1.0.30"));
    assert_eq!(h.drops(DropReason::SvcSourceNotAllowed), 1);
}

#[test]
fn udp_flows_to_an_endpoint_that_left_are_flushed_tcp_flows_keep_theirs() {
    let two = |udp: &[Ep], tcp: &[Ep]| {
        service("u", "10.96.0.40", "UDP", 53, 5353, None, "", "")
            + &slice("u", "a", "UDP", 5353, udp)
            + &service("t", "10.96.0.41", "TCP", 80, 8080, None, "", "")
            + &slice("t", "a", "TCP", 8080, tcp)
    };
    let (a, b) = (ready("10.1.0.40", "node-b"), ready("10.1.0.41", "node-b"));
    let mut h = Harness::new(
        1,
        "",
        &two(&[a.clone(), b.clone()], &[a.clone(), b.clone()]),
    );
    let dgram = Pkt::udp(POD_CLIENT, 7000, ip("10.96.0.40"), 53).payload(b"q");
    let first = expect_out(&h.send_one(&dgram.bytes()), 63).dst();
    let syn = Pkt::tcp(POD_CLIENT, 7001, ip("10.96.0.41"), 80, SYN);
    let tcp_first = expect_out(&h.send_one(&syn.bytes()), 63).dst();
    // The endpoints each flow uses leave their Services.
    let keep = |gone: Ipv4Addr| if gone == a.addr { b.clone() } else { a.clone() };
    h.publish(&two(&[keep(first)], &[keep(tcp_first)]));
    h.run();
    assert_eq!(h.total().udp_flows_flushed, 1);
    // The next datagram of the same UDP flow is balanced anew, to the endpoint that is left.
    let again = expect_out(&h.send_one(&dgram.bytes()), 63).dst();
    assert_eq!(again, keep(first).addr);
    // The TCP connection keeps its endpoint until it ends.
    let ack = Pkt::tcp(POD_CLIENT, 7001, ip("10.96.0.41"), 80, ACK);
    assert_eq!(expect_out(&h.send_one(&ack.bytes()), 63).dst(), tcp_first);
    // A table change that leaves the UDP translation in place flushes nothing.
    h.publish(&two(&[keep(first)], &[a.clone(), b.clone()]));
    h.run();
    assert_eq!(h.total().udp_flows_flushed, 1);
    assert_eq!(expect_out(&h.send_one(&dgram.bytes()), 63).dst(), again);
}

/// kube-proxy's rule for which UDP flows a table change keeps: those to an endpoint that still
/// serves the Service port, whatever the policies, topology hints or terminating status now
/// say about new flows; those of a port left without any serving endpoint; none of a frontend
/// that is gone (the Service deleted or its ClusterIP changed).
#[test]
fn udp_flows_stay_while_their_endpoint_serves_and_end_with_their_frontend() {
    const VIP: &str = "10.96.0.42";
    let svc = |vip: &str, extra: &str, eps: &[Ep]| {
        service("u", vip, "UDP", 53, 5353, Some(30053), extra, "")
            + &slice("u", "a", "UDP", 5353, eps)
    };
    let (local, remote) = (ready("10.1.0.42", "node-a"), ready("10.1.0.43", "node-b"));
    let both = [local.clone(), remote.clone()];
    let cluster = "  type: NodePort\n  externalTrafficPolicy: Cluster";
    let mut h = Harness::new(1, "", &svc(VIP, cluster, &both));
    // One flow per endpoint from pods to the ClusterIP, and flows from outside to the NodePort.
    let to = |h: &mut Harness, dst: Ipv4Addr, dport: u16, src: Ipv4Addr, sport: u16| {
        let d = Pkt::udp(src, sport, dst, dport).payload(b"q");
        expect_out(&h.send_one(&d.bytes()), 63).dst()
    };
    let mut by_endpoint: std::collections::HashMap<Ipv4Addr, u16> = Default::default();
    for sport in 7000..7064u16 {
        let ep = to(&mut h, ip(VIP), 53, POD_CLIENT, sport);
        by_endpoint.entry(ep).or_insert(sport);
    }
    let (on_local, on_remote) = (by_endpoint[&local.addr], by_endpoint[&remote.addr]);
    let mut np_by_endpoint: std::collections::HashMap<Ipv4Addr, u16> = Default::default();
    for sport in 8000..8064u16 {
        let ep = to(&mut h, NODE_IP, 30053, CLIENT, sport);
        np_by_endpoint.entry(ep).or_insert(sport);
    }
    let np_remote = np_by_endpoint[&remote.addr];

    // The local endpoint turns terminating but still serves, and the NodePort turns
    // externalTrafficPolicy Local (the remote endpoint is no longer offered to outside
    // clients): no flow ends, and each goes on to its endpoint.
    let local_terminating = Ep {
        ready: false,
        terminating: true,
        ..local.clone()
    };
    let policy_local = "  type: NodePort\n  externalTrafficPolicy: Local";
    h.publish(&svc(
        VIP,
        policy_local,
        &[local_terminating.clone(), remote.clone()],
    ));
    h.run();
    assert_eq!(
        h.total().udp_flows_flushed,
        0,
        "every endpoint still serves"
    );
    assert_eq!(to(&mut h, ip(VIP), 53, POD_CLIENT, on_local), local.addr);
    assert_eq!(to(&mut h, NODE_IP, 30053, CLIENT, np_remote), remote.addr);
    // New pod flows avoid the terminating endpoint while a ready one exists.
    for sport in 7100..7132u16 {
        assert_eq!(to(&mut h, ip(VIP), 53, POD_CLIENT, sport), remote.addr);
    }
    let flows = h.flows();

    // The local endpoint stops serving: its flows end (the first, and none of the remote's).
    let stopped = Ep {
        serving: false,
        ready: false,
        ..local_terminating
    };
    h.publish(&svc(VIP, policy_local, &[stopped, remote.clone()]));
    h.run();
    let flushed = h.total().udp_flows_flushed;
    assert!(
        flushed >= 1,
        "the flow to the endpoint that stopped serving ends"
    );
    assert_eq!(h.flows(), flows - flushed as usize);
    assert_eq!(to(&mut h, ip(VIP), 53, POD_CLIENT, on_local), remote.addr);
    assert_eq!(to(&mut h, ip(VIP), 53, POD_CLIENT, on_remote), remote.addr);

    // No serving endpoint left at all: kube-proxy keeps the flows (nothing could serve them
    // anew), while new flows are rejected.
    let before = h.total().udp_flows_flushed;
    h.publish(&svc(VIP, policy_local, &[]));
    h.run();
    assert_eq!(h.total().udp_flows_flushed, before);
    assert_eq!(to(&mut h, ip(VIP), 53, POD_CLIENT, on_remote), remote.addr);

    // The ClusterIP changes: the old frontend is gone, so are its flows; the NodePort's stay.
    h.publish(&svc(VIP, cluster, &both));
    h.run();
    let before = h.total().udp_flows_flushed;
    h.publish(&svc("10.96.0.43", cluster, &both));
    h.run();
    let after_change = h.total().udp_flows_flushed;
    assert!(after_change > before, "flows to the old ClusterIP end");
    assert_eq!(to(&mut h, NODE_IP, 30053, CLIENT, np_remote), remote.addr);
    let d = Pkt::udp(POD_CLIENT, on_remote, ip(VIP), 53).payload(b"q");
    let out = h.send(&d.bytes());
    assert!(
        out.iter().all(|f| check(&f.bytes).dst() != remote.addr),
        "nothing reaches the endpoint through the old ClusterIP"
    );

    // The Service is deleted: every flow of it ends.
    h.publish("");
    h.run();
    assert!(h.total().udp_flows_flushed > after_change);
    assert_eq!(h.flows(), 0, "no flow of a deleted Service is left");
}

// ---- 4. internalTrafficPolicy Local -----------------------------------------------------------

#[test]
fn internal_policy_local_on_clusterip() {
    let mut h = harness();
    for sport in 4000..4032u16 {
        let o = expect_out(
            &h.send_one(&Pkt::tcp(POD_CLIENT, sport, ip(ITP), 80, SYN).bytes()),
            63,
        );
        assert_eq!(o.dst(), ip("10.2.0.14"));
        assert_eq!(o.src(), POD_CLIENT);
    }
    let out = h.send(&Pkt::tcp(POD_CLIENT, 4100, ip(ITP_NONE), 80, SYN).bytes());
    assert!(out.is_empty());
    assert_eq!(h.drops(DropReason::SvcNoLocalEndpoint), 1);
}

// ---- 5. No endpoints: REJECT ------------------------------------------------------------------

#[test]
fn service_without_endpoints_rejects_with_rst_and_port_unreachable() {
    let mut h = harness();
    // SYN: RST|ACK, seq 0, ack = seq + 1 (RFC 9293 3.10.7.1).
    let syn = Pkt::tcp(POD_CLIENT, 41000, ip(EMPTY), 80, SYN).seq_ack(777, 0);
    let o = expect_out(&h.send_one(&syn.bytes()), 64);
    assert_eq!(
        (o.src(), o.dst(), o.ports()),
        (ip(EMPTY), POD_CLIENT, (80, 41000))
    );
    let (t, payload) = o.tcp();
    assert!(t.rst && t.ack && !t.syn);
    assert_eq!((t.sequence_number, t.acknowledgment_number), (0, 778));
    assert!(payload.is_empty());

    // A segment with ACK: RST with seq = its ack, no ACK bit.
    let seg = Pkt::tcp(POD_CLIENT, 41001, ip(EMPTY), 80, ACK | PSH).seq_ack(5, 9_999);
    let o = expect_out(&h.send_one(&seg.bytes()), 64);
    let (t, _) = o.tcp();
    assert!(t.rst && !t.ack);
    assert_eq!(t.sequence_number, 9_999);
    // Data without ACK: ack = seq + payload length (+1 for FIN).
    let seg = Pkt::tcp(POD_CLIENT, 41002, ip(EMPTY), 80, FIN)
        .seq_ack(100, 0)
        .payload(b"abc");
    let (t, _) = expect_out(&h.send_one(&seg.bytes()), 64).tcp();
    assert!(t.rst && t.ack);
    assert_eq!((t.sequence_number, t.acknowledgment_number), (0, 104));
    // A RST is never answered.
    assert!(h
        .send(&Pkt::tcp(POD_CLIENT, 41003, ip(EMPTY), 80, RST).bytes())
        .is_empty());
    assert_eq!(h.total().tcp_resets_sent, 3);

    // UDP: ICMP port unreachable from the Service address quoting the datagram as sent.
    let dgram = Pkt::udp(POD_CLIENT, 5000, ip(EMPTY_UDP), 53).payload(b"query");
    let bytes = dgram.bytes();
    let o = expect_out(&h.send_one(&bytes), 64);
    assert_eq!((o.src(), o.dst()), (ip(EMPTY_UDP), POD_CLIENT));
    assert_eq!(o.icmp(), (3, 3));
    assert_eq!(
        &o.l4[8..],
        &bytes[14..],
        "the whole original datagram is quoted"
    );
    assert_eq!(h.drops(DropReason::SvcRejected), 5);
    assert_eq!(h.flows(), 0);
}

// ---- 6. Terminating endpoints -----------------------------------------------------------------

fn term_manifests(ready_too: bool) -> String {
    let mut eps = vec![
        terminating("10.2.0.30", "node-a"),
        Ep {
            ready: false,
            serving: false,
            terminating: true,
            ..ready("10.2.0.31", "node-a")
        },
    ];
    if ready_too {
        eps.push(ready("10.2.0.32", "node-a"));
    }
    service("term", "10.96.0.30", "TCP", 80, 8080, None, "", "")
        + &slice("term", "a", "TCP", 8080, &eps)
}

#[test]
fn terminating_endpoints_are_a_fallback_only() {
    let mut h = Harness::new(1, "", &term_manifests(false));
    for sport in 100..132u16 {
        let o = expect_out(
            &h.send_one(&Pkt::tcp(POD_CLIENT, sport, ip("10.96.0.30"), 80, SYN).bytes()),
            63,
        );
        assert_eq!(
            o.dst(),
            ip("10.2.0.30"),
            "serving+terminating used when nothing is ready"
        );
    }
    h.publish(&term_manifests(true));
    for sport in 200..232u16 {
        let o = expect_out(
            &h.send_one(&Pkt::tcp(POD_CLIENT, sport, ip("10.96.0.30"), 80, SYN).bytes()),
            63,
        );
        assert_eq!(
            o.dst(),
            ip("10.2.0.32"),
            "only ready endpoints once one exists"
        );
    }
    // A flow opened on the terminating endpoint keeps it.
    let o = expect_out(
        &h.send_one(&Pkt::tcp(POD_CLIENT, 100, ip("10.96.0.30"), 80, ACK).bytes()),
        63,
    );
    assert_eq!(o.dst(), ip("10.2.0.30"));
}

// ---- 7. UDP and SCTP --------------------------------------------------------------------------

#[test]
fn udp_and_sctp_services_translate_with_valid_checksums() {
    let mut h = harness();
    // UDP ClusterIP.
    let q = Pkt::udp(POD_CLIENT, 6000, ip(DNS), 53).payload(b"dns query");
    let o = expect_out(&h.send_one(&q.bytes()), 63);
    assert_eq!(
        (o.src(), o.dst(), o.ports()),
        (POD_CLIENT, ip("10.1.0.53"), (6000, 5353))
    );
    assert_eq!(o.udp().1, b"dns query");
    let r = expect_out(&h.send_one(&reply_to(&o, L4::Udp).bytes()), 63);
    assert_eq!(
        (r.src(), r.dst(), r.ports()),
        (ip(DNS), POD_CLIENT, (53, 6000))
    );
    // UDP NodePort (SNAT).
    let q = Pkt::udp(CLIENT, 6001, NODE_EXTRA_IP, 30053);
    let o = expect_out(&h.send_one(&q.bytes()), 63);
    assert_eq!((o.src(), o.dst()), (NODE_IP, ip("10.1.0.53")));
    assert!(SNAT_RANGE.contains(&o.ports().0));
    let r = expect_out(&h.send_one(&reply_to(&o, L4::Udp).bytes()), 63);
    assert_eq!(
        (r.src(), r.dst(), r.ports()),
        (NODE_EXTRA_IP, CLIENT, (30053, 6001))
    );
    // A datagram without checksum keeps none.
    let mut bytes = Pkt::udp(POD_CLIENT, 6002, ip(DNS), 53).bytes();
    bytes[14 + 20 + 6..14 + 20 + 8].fill(0);
    let o = expect_out(&h.send_one(&bytes), 63);
    assert_eq!(o.udp().0.checksum, 0);

    // SCTP: the CRC32c must verify after NAT (checked by `check`).
    let s = Pkt::sctp(POD_CLIENT, 7000, ip(SCTP), 9999).payload(b"sctp data!!!");
    let o = expect_out(&h.send_one(&s.bytes()), 63);
    assert_eq!(o.ip.protocol, IpNumber(132));
    assert_eq!(
        (o.src(), o.dst(), o.ports()),
        (POD_CLIENT, ip("10.2.0.60"), (7000, 9000))
    );
    let r = expect_out(&h.send_one(&reply_to(&o, L4::Sctp { vtag: 0 }).bytes()), 63);
    assert_eq!(
        (r.src(), r.dst(), r.ports()),
        (ip(SCTP), POD_CLIENT, (9999, 7000))
    );
}

// ---- 8. Session affinity ----------------------------------------------------------------------

fn sticky_manifests(eps: &[&str]) -> String {
    let spec = "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 60";
    let eps: Vec<Ep> = eps.iter().map(|a| ready(a, "node-a")).collect();
    service("sticky", "10.96.0.18", "TCP", 80, 8080, None, spec, "")
        + &slice("sticky", "a", "TCP", 8080, &eps)
}

const STICKY_EPS: [&str; 4] = ["10.2.0.20", "10.2.0.21", "10.2.0.22", "10.2.0.23"];

/// The endpoint a fresh node (no affinity state) picks for a tuple.
fn fresh_pick(manifests: &str, sport: u16) -> Ipv4Addr {
    let mut h = Harness::new(1, "", manifests);
    expect_out(
        &h.send_one(&Pkt::tcp(POD_CLIENT, sport, ip("10.96.0.18"), 80, SYN).bytes()),
        63,
    )
    .dst()
}

/// A SYN from the pod client to the sticky Service.
fn sticky_syn(sport: u16) -> Vec<u8> {
    Pkt::tcp(POD_CLIENT, sport, ip("10.96.0.18"), 80, SYN).bytes()
}

/// A node on `m` whose client has opened one connection (source port 10000): the harness, the
/// endpoint it was given, and `n` source ports whose hash alone would pick another endpoint.
fn sticky_client(m: &str, n: usize) -> (Harness, Ipv4Addr, Vec<u16>) {
    let mut h = Harness::new(1, "", m);
    let first = expect_out(&h.send_one(&sticky_syn(10_000)), 63).dst();
    let others = (10_100..10_400)
        .filter(|&p| fresh_pick(m, p) != first)
        .take(n)
        .collect();
    (h, first, others)
}

#[test]
fn session_affinity_survives_an_unrelated_service_that_sorts_earlier() {
    let m = sticky_manifests(&STICKY_EPS);
    let (mut h, first, others) = sticky_client(&m, 6);
    let syn = sticky_syn;
    // A Service added (`aaa` sorts before `sticky`), then removed: the client stays pinned,
    // also on ports whose hash alone would pick another endpoint.
    let aaa = service("aaa", "10.96.0.19", "TCP", 80, 8080, None, "", "")
        + &slice("aaa", "a", "TCP", 8080, &[ready("10.2.0.30", "node-a")]);
    h.publish(&(aaa + &m));
    for &sport in &others[..3] {
        assert_eq!(expect_out(&h.send_one(&syn(sport)), 63).dst(), first);
    }
    h.publish(&m);
    for &sport in &others[3..] {
        assert_eq!(expect_out(&h.send_one(&syn(sport)), 63).dst(), first);
    }
}

#[test]
fn session_affinity_pins_client_until_timeout() {
    let m = sticky_manifests(&STICKY_EPS);
    let (mut h, first, others) = sticky_client(&m, 3);
    let syn = sticky_syn;
    assert_eq!(others.len(), 3);
    for sport in 10_001..10_040u16 {
        assert_eq!(expect_out(&h.send_one(&syn(sport)), 63).dst(), first);
    }
    h.advance(Duration::from_secs(30));
    assert_eq!(
        expect_out(&h.send_one(&syn(others[0])), 63).dst(),
        first,
        "within the timeout"
    );
    // 61 s after the last use the entry has expired: the hash decides again.
    h.advance(Duration::from_secs(61));
    let second = expect_out(&h.send_one(&syn(others[1])), 63).dst();
    assert_eq!(second, fresh_pick(&m, others[1]));
    assert_ne!(second, first);

    // The remembered endpoint disappears: never used again, a new one is remembered.
    let remaining: Vec<&str> = STICKY_EPS
        .iter()
        .copied()
        .filter(|a| ip(a) != second)
        .collect();
    h.publish(&sticky_manifests(&remaining));
    let third = expect_out(&h.send_one(&syn(others[2])), 63).dst();
    assert_ne!(third, second);
    for sport in 11_000..11_020u16 {
        assert_eq!(expect_out(&h.send_one(&syn(sport)), 63).dst(), third);
    }
}

// ---- 9. Maglev --------------------------------------------------------------------------------

fn big_manifests(n: u8) -> String {
    let addrs: Vec<String> = (1..=n).map(|i| format!("10.1.1.{i}")).collect();
    let eps: Vec<Ep> = addrs.iter().map(|a| ready(a, "node-b")).collect();
    service("big", "10.96.0.19", "TCP", 80, 8080, None, "", "")
        + &slice("big", "a", "TCP", 8080, &eps)
}

fn flow_client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(198, 18, (i / 200) as u8, (i % 200) as u8 + 1),
        20_000 + (i % 1000) as u16,
    )
}

fn picks(h: &mut Harness, range: std::ops::Range<u32>, flags: u8) -> Vec<Ipv4Addr> {
    range
        .map(|i| {
            let (c, p) = flow_client(i);
            expect_out(
                &h.send_one(&Pkt::tcp(c, p, ip("10.96.0.19"), 80, flags).bytes()),
                63,
            )
            .dst()
        })
        .collect()
}

#[test]
fn maglev_spreads_flows_and_minimises_disruption() {
    let cfg = "conntrack:\n  max_flows: 8192\n";
    let mut a = Harness::new(1, cfg, &big_manifests(16));
    let before = picks(&mut a, 0..2000, SYN);
    let mut per: HashMap<Ipv4Addr, usize> = HashMap::new();
    for e in &before {
        *per.entry(*e).or_default() += 1;
    }
    assert_eq!(per.len(), 16, "every endpoint used");
    assert!(per.values().all(|&n| n >= 2000 / 16 / 2), "spread: {per:?}");

    // The same tuples, as new flows, against 17 endpoints.
    let mut b = Harness::new(1, cfg, &big_manifests(17));
    let after = picks(&mut b, 0..2000, SYN);
    let moved: Vec<usize> = (0..2000).filter(|&i| before[i] != after[i]).collect();
    assert!(
        moved.len() < 2000 / 5,
        "{} of 2000 flows moved",
        moved.len()
    );
    let to_new = moved
        .iter()
        .filter(|&&i| after[i] == ip("10.1.1.17"))
        .count();
    assert!(
        to_new * 2 > moved.len(),
        "most moved flows go to the new endpoint"
    );

    // Established flows on the old node keep their endpoint after the new table is published;
    // new flows there follow the new table.
    a.publish(&big_manifests(17));
    let kept = picks(&mut a, 0..2000, ACK);
    assert_eq!(kept, before, "tracked flows keep their endpoint");
    let fresh = picks(&mut a, 2000..2500, SYN);
    let fresh_b = picks(&mut b, 2000..2500, SYN);
    assert_eq!(fresh, fresh_b);
}

// ---- 10. ICMP errors --------------------------------------------------------------------------

/// An ICMP error from `src` to `dst` quoting `quoted` (an IPv4 packet).
fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut icmp = vec![ty, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let c = !ones_sum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let (_, smac, dmac) = ingress_of(src);
    raw_ipv4(smac, dmac, src, dst, 1, 64, &icmp)
}

fn check_quote_is(o: &Out, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) {
    let (q, l4) = o.quote();
    assert_eq!(
        q.header_checksum,
        q.calc_header_checksum(),
        "inner IPv4 checksum"
    );
    assert_eq!(
        (Ipv4Addr::from(q.source), Ipv4Addr::from(q.destination)),
        (src, dst)
    );
    let (u, payload) = UdpHeader::from_slice(&l4).unwrap();
    assert_eq!((u.source_port, u.destination_port), (sport, dport));
    // The whole datagram is quoted, so its checksum can be verified too.
    assert_eq!(
        u.checksum,
        u.calc_checksum_ipv4(&q, payload).unwrap(),
        "inner UDP checksum"
    );
}

#[test]
fn icmp_errors_are_translated_back_to_the_client() {
    let mut h = harness();
    let q = Pkt::udp(CLIENT, 5555, NODE_EXTRA_IP, 30053).payload(b"query");
    let sent = expect_out(&h.send_one(&q.bytes()), 63);
    assert_eq!((sent.src(), sent.dst()), (NODE_IP, ip("10.1.0.53")));
    let quoted = &h_bytes(&sent)[..];

    // The endpoint answers with port unreachable.
    let err = icmp_error(ip("10.1.0.53"), NODE_IP, 3, 3, quoted);
    let o = expect_out(&h.send_one(&err), 63);
    assert_eq!(
        (o.src(), o.dst()),
        (NODE_EXTRA_IP, CLIENT),
        "outer addresses translated"
    );
    assert_eq!(o.icmp(), (3, 3));
    check_quote_is(&o, CLIENT, NODE_EXTRA_IP, 5555, 30053);

    // A router on the way (node-b) reports time exceeded: its address is kept.
    let err = icmp_error(NODE_B, NODE_IP, 11, 0, quoted);
    let o = expect_out(&h.send_one(&err), 63);
    assert_eq!((o.src(), o.dst()), (NODE_B, CLIENT));
    assert_eq!(o.icmp(), (11, 0));
    check_quote_is(&o, CLIENT, NODE_EXTRA_IP, 5555, 30053);

    // Without SNAT (ClusterIP from a pod): only the quote's destination changes back.
    let q = Pkt::udp(POD_CLIENT, 5556, ip(DNS), 53).payload(b"query");
    let sent = expect_out(&h.send_one(&q.bytes()), 63);
    let err = icmp_error(ip("10.1.0.53"), POD_CLIENT, 3, 3, &h_bytes(&sent));
    let o = expect_out(&h.send_one(&err), 63);
    assert_eq!((o.src(), o.dst()), (ip(DNS), POD_CLIENT));
    check_quote_is(&o, POD_CLIENT, ip(DNS), 5556, 53);
}

/// The IPv4 packet of a frame.
fn h_bytes(o: &Out) -> Vec<u8> {
    let mut v = Vec::new();
    o.ip.write(&mut v).unwrap();
    v.extend_from_slice(&o.l4);
    v
}

// ---- 11. TTL ----------------------------------------------------------------------------------

#[test]
fn ttl_is_decremented_and_expiry_answered_with_time_exceeded() {
    let mut h = harness();
    let p = Pkt::udp(CLIENT, 1234, ip("10.2.0.10"), 4321);
    let o = expect_out(&h.send_one(&p.bytes()), 63);
    assert_eq!(
        (o.src(), o.dst(), o.ports()),
        (CLIENT, ip("10.2.0.10"), (1234, 4321))
    );
    let o = expect_out(&h.send_one(&p.clone().ttl(2).bytes()), 1);
    assert_eq!(o.dst(), ip("10.2.0.10"));

    let expired = p.clone().ttl(1).bytes();
    let o = expect_out(&h.send_one(&expired), 64);
    assert_eq!((o.src(), o.dst()), (NODE_IP, CLIENT));
    assert_eq!(o.icmp(), (11, 0));
    assert_eq!(
        &o.l4[8..],
        &expired[14..],
        "quotes the packet as it arrived"
    );
    assert_eq!(h.drops(DropReason::Ip4TtlExceeded), 1);

    // Same for Service traffic.
    let expired = Pkt::tcp(POD_CLIENT, 999, ip(WEB), 80, SYN).ttl(1).bytes();
    let o = expect_out(&h.send_one(&expired), 64);
    assert_eq!((o.src(), o.dst(), o.icmp()), (ETH1_IP, POD_CLIENT, (11, 0)));
    assert_eq!(h.drops(DropReason::Ip4TtlExceeded), 2);

    // And for a NodePort (a node address, forwarded after DNAT): answered, no flow left behind.
    let expired = Pkt::tcp(CLIENT, 998, NODE_EXTRA_IP, 30081, SYN)
        .ttl(1)
        .bytes();
    let o = expect_out(&h.send_one(&expired), 64);
    assert_eq!((o.dst(), o.icmp()), (CLIENT, (11, 0)));
    assert_eq!(&o.l4[8..], &expired[14..]);
    assert_eq!(h.drops(DropReason::Ip4TtlExceeded), 3);
    assert_eq!(h.flows(), 0);
    // TTL 1 to the node itself is not forwarded: still answered.
    let o = expect_out(
        &h.send_one(&Pkt::echo(CLIENT, NODE_IP, 9).ttl(1).bytes()),
        64,
    );
    assert_eq!(o.icmp(), (0, 0));
    // A later fragment that expires is dropped without an error (RFC 1122 §3.2.2: only the
    // first fragment may be answered; the others carry no header to quote).
    let mut later = p.clone().ttl(1).payload(&[9; 40]).bytes();
    later[20..22].copy_from_slice(&0x0004u16.to_be_bytes()); // offset 32 bytes, last fragment
    later[24..26].copy_from_slice(&[0, 0]);
    let c = !ones_sum(&later[14..34]);
    later[24..26].copy_from_slice(&c.to_be_bytes());
    let out = h.send(&later);
    assert!(out.is_empty(), "no ICMP about a later fragment: {out:?}");
    assert_eq!(h.drops(DropReason::Ip4TtlExceeded), 4);
}

// ---- 12. The node's own addresses -------------------------------------------------------------

#[test]
fn node_answers_ping_and_arp_for_its_addresses_only() {
    let mut h = harness();
    for addr in [NODE_IP, NODE_EXTRA_IP] {
        let req = Pkt::echo(CLIENT, addr, 0x4242).payload(b"ping payload");
        let o = expect_out(&h.send_one(&req.bytes()), 64);
        assert_eq!((o.src(), o.dst()), (addr, CLIENT));
        assert_eq!(o.icmp(), (0, 0));
        assert_eq!(
            &o.l4[4..8],
            &[0x42, 0x42, 0, 1],
            "identifier and sequence kept"
        );
        assert_eq!(&o.l4[8..], b"ping payload");
    }
    assert_eq!(h.total().icmp_sent, 2);

    let req = arp(1, GW_MAC, BROADCAST, GW_MAC, GW, [0; 6], NODE_IP);
    let out = h.send_on(ETH0, &req);
    assert_eq!(out.len(), 1);
    let r = &out[0].bytes;
    assert_eq!(out[0].port, ETH0);
    assert_eq!(&r[0..6], &GW_MAC);
    assert_eq!(&r[6..12], &MAC0);
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    assert_eq!(
        &r[14..22],
        &[0, 1, 8, 0, 6, 4, 0, 2],
        "Ethernet/IPv4 ARP reply"
    );
    assert_eq!(&r[22..28], &MAC0);
    assert_eq!(&r[28..32], &NODE_IP.octets());
    assert_eq!(&r[32..38], &GW_MAC);
    assert_eq!(&r[38..42], &GW.octets());

    let other = arp(1, GW_MAC, BROADCAST, GW_MAC, GW, [0; 6], ip("10.0.0.77"));
    assert!(h.send_on(ETH0, &other).is_empty());
    assert_eq!(h.total().arp_replies, 1);
    assert_eq!(h.drops(DropReason::ArpNotForUs), 1);
}

// ---- 13. Neighbour resolution -----------------------------------------------------------------

fn check_arp_request(s: &Sent, port: usize, mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) {
    let r = &s.bytes;
    assert_eq!(s.port, port);
    assert_eq!(&r[0..6], &BROADCAST);
    assert_eq!(&r[6..12], &mac);
    assert_eq!(&r[12..22], &[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    assert_eq!(&r[22..28], &mac);
    assert_eq!(&r[28..32], &sender.octets());
    assert_eq!(&r[38..42], &target.octets());
}

#[test]
fn unresolved_next_hop_is_held_resolved_by_arp_or_dropped_after_3s() {
    let mut h = harness();
    let p = Pkt::udp(CLIENT, 1000, UNRESOLVED_POD, 2000).payload(b"held");
    let out = h.send(&p.bytes());
    assert_eq!(out.len(), 1);
    check_arp_request(&out[0], ETH1, MAC1, ETH1_IP, UNRESOLVED_POD);

    let learned = [2, 0, 0, 9, 9, 9];
    let reply = arp(2, learned, MAC1, learned, UNRESOLVED_POD, MAC1, ETH1_IP);
    let out = h.send_on(ETH1, &reply);
    assert_eq!(out.len(), 1, "the held frame leaves");
    let o = check(&out[0].bytes);
    assert_eq!(out[0].port, ETH1);
    assert_eq!((o.eth.destination, o.eth.source), (learned, MAC1));
    assert_eq!(
        (o.src(), o.dst(), o.ip.time_to_live),
        (CLIENT, UNRESOLVED_POD, 63)
    );
    assert_eq!(o.udp().1, b"held");
    // Now known: the next frame goes straight out.
    let out = h.send(&p.bytes());
    assert_eq!(out.len(), 1);
    assert_eq!(check(&out[0].bytes).eth.destination, learned);

    // Nobody answers for 10.2.0.201: retried after 1 s, dropped after 3 s.
    let silent = ip("10.2.0.201");
    let out = h.send(&Pkt::udp(CLIENT, 1000, silent, 2000).bytes());
    assert_eq!(out.len(), 1);
    check_arp_request(&out[0], ETH1, MAC1, ETH1_IP, silent);
    h.advance(Duration::from_millis(1500));
    h.run();
    let out = h.sent();
    assert_eq!(out.len(), 1, "one retry");
    check_arp_request(&out[0], ETH1, MAC1, ETH1_IP, silent);
    h.advance(Duration::from_millis(1600));
    h.run();
    assert!(
        h.sent().iter().all(|s| s.bytes[12..14] == [8, 6]),
        "never the held frame"
    );
    assert_eq!(h.drops(DropReason::NeighTimeout), 1);
}

/// Learns UNRESOLVED_POD at `mac` the way a real neighbour is learned: a frame is held, the ARP
/// request goes out, the pod answers.
fn learn_pod(h: &mut Harness, workers_seen: usize, mac: [u8; 6]) {
    for i in 0..workers_seen {
        let p = Pkt::udp(CLIENT, 1000 + i as u16, UNRESOLVED_POD, 2000).payload(b"held");
        let _ = h.send(&p.bytes());
        let reply = arp(2, mac, MAC1, mac, UNRESOLVED_POD, MAC1, ETH1_IP);
        let _ = h.send_on(ETH1, &reply);
    }
}

/// Where a frame to UNRESOLVED_POD goes now: the MAC it is sent to, or `None` when it is held
/// (an ARP request goes out instead).
fn pod_mac_now(h: &mut Harness, sport: u16) -> Option<[u8; 6]> {
    let out = h.send(&Pkt::udp(CLIENT, sport, UNRESOLVED_POD, 2000).bytes());
    assert_eq!(out.len(), 1);
    if out[0].bytes[12..14] == [8, 6] {
        return None;
    }
    let mut m = [0; 6];
    m.copy_from_slice(&out[0].bytes[..6]);
    Some(m)
}

#[test]
fn spoofed_arp_cannot_poison_the_neighbour_table() {
    let real = [2, 0, 0, 9, 9, 9];
    let evil = [2, 0, 0, 6, 6, 6];
    for workers in [1, 2] {
        let mut h = Harness::new(workers, "", &base());
        learn_pod(&mut h, workers, real);
        assert_eq!(pod_mac_now(&mut h, 3000), Some(real));
        // Unknown opcodes with the pod's address and the attacker's MAC, to the node: ignored.
        for op in [0u16, 3, 8, 65535] {
            let f = arp(op, evil, MAC1, evil, UNRESOLVED_POD, [0; 6], ETH1_IP);
            assert!(h.send_on(ETH1, &f).is_empty(), "opcode {op} answered");
        }
        assert_eq!(h.drops(DropReason::ArpBadOpcode), 4, "counted once each");
        for sport in 3001..3005 {
            assert_eq!(pod_mac_now(&mut h, sport), Some(real), "{workers} workers");
        }
        // Senders that are never learned: off the port's prefix, the node's own address, the
        // prefix's broadcast, a multicast or zero MAC. Requests for us from them.
        let before = h.drops(DropReason::ArpBadSender);
        let bad: [([u8; 6], Ipv4Addr); 5] = [
            (evil, ip("10.9.9.9")),
            (evil, ETH1_IP),
            (evil, ip("10.2.0.255")),
            ([0x01, 0, 0x5e, 0, 0, 1], ip("10.2.0.222")),
            ([0; 6], ip("10.2.0.223")),
        ];
        for (mac, sender) in bad {
            let f = arp(1, evil, MAC1, mac, sender, [0; 6], ETH1_IP);
            let out = h.send_on(ETH1, &f);
            // An off-prefix sender gets its answer (as from Linux) but is not learned.
            assert_eq!(out.len(), usize::from(sender == ip("10.9.9.9")), "{sender}");
        }
        assert_eq!(h.drops(DropReason::ArpBadSender) - before, 4);
        let off_prefix = Pkt::udp(CLIENT, 3100, ip("10.2.0.222"), 2000).bytes();
        let out = h.send(&off_prefix);
        assert_eq!(out[0].bytes[12..14], [8, 6], "10.2.0.222 not learned");
        // A reply nobody asked for, and a gratuitous ARP for an address not known: not learned.
        let unasked = ip("10.2.0.224");
        let _ = h.send_on(ETH1, &arp(2, evil, MAC1, evil, unasked, MAC1, ETH1_IP));
        let _ = h.send_on(
            ETH1,
            &arp(1, evil, BROADCAST, evil, unasked, [0; 6], unasked),
        );
        let out = h.send(&Pkt::udp(CLIENT, 3101, unasked, 2000).bytes());
        assert_eq!(out[0].bytes[12..14], [8, 6], "held: resolved anew");
        // A gratuitous ARP for a known neighbour moves it (a failover, as Linux does).
        let moved = [2, 0, 0, 9, 9, 10];
        let garp = arp(
            1,
            moved,
            BROADCAST,
            moved,
            UNRESOLVED_POD,
            [0; 6],
            UNRESOLVED_POD,
        );
        for _ in 0..workers {
            let _ = h.send_on(ETH1, &garp);
        }
        for sport in 3200..3204 {
            assert_eq!(pod_mac_now(&mut h, sport), Some(moved));
        }
    }
}

// ---- 14. Conntrack ----------------------------------------------------------------------------

fn only_flow(h: &Harness) -> dataplane::conntrack::Flow {
    let flows: Vec<_> = h
        .node
        .workers()
        .iter()
        .flat_map(|w| w.flows().iter().copied())
        .collect();
    assert_eq!(flows.len(), 1);
    flows[0]
}

#[test]
fn tcp_handshake_and_teardown_are_tracked() {
    let mut h = Harness::new(
        1,
        "conntrack:\n  max_flows: 256\n  timeouts:\n    tcp_time_wait: 5\n",
        &base(),
    );
    let c = |flags| Pkt::tcp(POD_CLIENT, 42000, ip(REMOTE), 80, flags).bytes();
    let o = expect_out(&h.send_one(&c(SYN)), 63);
    assert_eq!(only_flow(&h).tcp, TcpState::SynSent);
    let s = |flags| {
        reply_to(
            &o,
            L4::Tcp {
                flags,
                seq: 0,
                ack: 0,
            },
        )
        .bytes()
    };
    let steps: [(bool, u8, TcpState); 5] = [
        (false, SYN | ACK, TcpState::SynRecv),
        (true, ACK, TcpState::Established),
        (true, FIN | ACK, TcpState::FinWait),
        (false, FIN | ACK, TcpState::LastAck),
        (true, ACK, TcpState::TimeWait),
    ];
    for (from_client, flags, state) in steps {
        let out = if from_client {
            let d = expect_out(&h.send_one(&c(flags)), 63);
            assert_eq!(
                (d.src(), d.dst(), d.ports()),
                (POD_CLIENT, ip("10.1.0.11"), (42000, 8080))
            );
            d
        } else {
            let d = expect_out(&h.send_one(&s(flags)), 63);
            assert_eq!(
                (d.src(), d.dst(), d.ports()),
                (ip(REMOTE), POD_CLIENT, (80, 42000))
            );
            d
        };
        assert_eq!(tcp_flags(&out), flags);
        assert_eq!(only_flow(&h).tcp, state, "after {flags:#x}");
    }
    // TIME_WAIT expires; the timers reclaim the flow.
    h.advance(Duration::from_secs(6));
    h.send(&Pkt::echo(CLIENT, NODE_IP, 1).bytes());
    assert_eq!(h.flows(), 0);
}

#[test]
fn udp_flow_expires_after_its_timeout() {
    let mut h = Harness::new(
        1,
        "conntrack:\n  max_flows: 256\n  timeouts:\n    udp: 5\n",
        &base(),
    );
    let q = Pkt::udp(CLIENT, 7777, NODE_IP, 30053).bytes();
    let first = expect_out(&h.send_one(&q), 63);
    assert_eq!(h.flows(), 1);
    h.advance(Duration::from_secs(4));
    h.send(&Pkt::echo(CLIENT, NODE_IP, 1).bytes());
    assert_eq!(h.flows(), 1, "still live at 4 s");
    h.advance(Duration::from_secs(2));
    h.send(&Pkt::echo(CLIENT, NODE_IP, 1).bytes());
    assert_eq!(h.flows(), 0, "expired after 5 s");
    // A late reply to the old SNAT binding is not translated to the client.
    let late = reply_to(&first, L4::Udp).bytes();
    for s in h.send(&late) {
        assert_ne!(check(&s.bytes).dst(), CLIENT);
    }
    // The client starts over: a new flow.
    expect_out(&h.send_one(&q), 63);
    assert_eq!(h.flows(), 1);
}

#[test]
fn full_flow_table_drops_half_open_flows_early_and_refuses_only_when_all_are_established() {
    let mut h = Harness::new(1, "conntrack:\n  max_flows: 16\n", &base());
    let cap = h.node.workers()[0].flows().capacity();
    let syn = |sport| Pkt::tcp(POD_CLIENT, sport, ip(REMOTE), 80, SYN).bytes();
    let tcp = |o: &Out, flags| {
        reply_to(
            o,
            L4::Tcp {
                flags,
                seq: 0,
                ack: 0,
            },
        )
        .bytes()
    };
    // Completes the handshake of the flow whose SYN came out as `o`.
    let establish = |h: &mut Harness, o: &Out, sport: u16| {
        expect_out(&h.send_one(&tcp(o, SYN | ACK)), 63);
        let ack = Pkt::tcp(POD_CLIENT, sport, ip(REMOTE), 80, ACK).bytes();
        expect_out(&h.send_one(&ack), 63);
    };
    let first = expect_out(&h.send_one(&syn(30_000)), 63);
    establish(&mut h, &first, 30_000);
    let mut half_open = Vec::new();
    for sport in 30_001..30_000 + cap as u16 {
        half_open.push((sport, expect_out(&h.send_one(&syn(sport)), 63)));
        h.advance(Duration::from_millis(10));
    }
    assert_eq!(h.flows(), cap);
    // Full, but of half-open flows: the new one takes the slot of the least recently seen.
    let newest = expect_out(&h.send_one(&syn(31_000)), 63);
    assert_eq!(h.drops(DropReason::CtFull), 0);
    assert_eq!(h.total().flows_early_dropped, 1);
    assert_eq!(h.flows(), cap);
    let oldest = Pkt::tcp(POD_CLIENT, 30_001, ip(REMOTE), 80, ACK).bytes();
    // Its flow is gone: the ACK is picked up mid-stream as a new flow (taking the slot of
    // the next least recently seen, 30002).
    let picked_up = expect_out(&h.send_one(&oldest), 63);
    assert_eq!(h.total().flows_early_dropped, 2);
    // Every flow completes its handshake: all assured now, and a new flow is refused.
    establish(&mut h, &newest, 31_000);
    for (sport, o) in &half_open[2..] {
        establish(&mut h, o, *sport);
    }
    // The flow picked up mid-stream is assured once it sees a reply.
    expect_out(&h.send_one(&tcp(&picked_up, ACK)), 63);
    assert!(h.send(&syn(31_001)).is_empty(), "refused");
    assert_eq!(h.drops(DropReason::CtFull), 1);
    // The established flow still goes both ways.
    let o = expect_out(
        &h.send_one(&Pkt::tcp(POD_CLIENT, 30_000, ip(REMOTE), 80, ACK).bytes()),
        63,
    );
    assert_eq!(o.dst(), ip("10.1.0.11"));
    let r = expect_out(&h.send_one(&tcp(&o, ACK)), 63);
    assert_eq!((r.src(), r.dst()), (ip(REMOTE), POD_CLIENT));
}

// ---- 15. Malformed input ----------------------------------------------------------------------

#[test]
fn malformed_frames_are_counted_by_reason() {
    let mut h = harness();
    let good = Pkt::tcp(CLIENT, 1, ip("10.2.0.10"), 2, ACK).bytes();
    let fix = |f: &mut Vec<u8>| {
        f[24..26].fill(0);
        let c = !ones_sum(&f[14..14 + usize::from(f[14] & 0xf) * 4]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    };
    let mut cases: Vec<(&str, Vec<u8>, DropReason)> = Vec::new();
    cases.push((
        "truncated Ethernet",
        good[..10].to_vec(),
        DropReason::EthMalformed,
    ));
    cases.push((
        "truncated IPv4",
        good[..24].to_vec(),
        DropReason::Ip4Malformed,
    ));
    let mut f = good.clone();
    f[24] ^= 0xff;
    cases.push(("bad IPv4 checksum", f, DropReason::Ip4BadChecksum));
    let mut f = good.clone();
    f[14] = 0x44;
    fix(&mut f);
    cases.push(("IHL < 5", f, DropReason::Ip4Malformed));
    let mut f = good.clone();
    f[16..18].copy_from_slice(&1500u16.to_be_bytes());
    fix(&mut f);
    cases.push(("total length > frame", f, DropReason::Ip4Malformed));
    let mut f = good[..14 + 20 + 10].to_vec();
    f[16..18].copy_from_slice(&30u16.to_be_bytes());
    fix(&mut f);
    cases.push(("truncated TCP header", f, DropReason::L4Malformed));
    let mut f = good[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    f.extend_from_slice(&good[12..]);
    cases.push(("VLAN tag", f, DropReason::EthVlanTagged));
    let mut f = good.clone();
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    cases.push(("unknown EtherType", f, DropReason::EthUnknownType));

    for (what, frame, reason) in cases {
        let before = h.drops(reason);
        let out = h.send_on(ETH0, &frame);
        assert!(out.is_empty(), "{what}: nothing sent");
        assert_eq!(
            h.drops(reason),
            before + 1,
            "{what}: counted as {}",
            reason.name()
        );
    }
    let t = h.total();
    assert_eq!(t.rx, 8);
    assert_eq!(t.dropped, 8);
    assert_eq!(t.tx, 0);
    // Still forwarding.
    expect_out(&h.send_one(&good), 63);
}

/// Frames the node gives no account of in its counters: ARP replies it learns from.
fn is_arp_reply_for_us(f: &[u8]) -> bool {
    f.len() >= 42
        && (f[0..6] == MAC0 || f[0] & 1 == 1)
        && f[6..12] != MAC0
        && f[12..14] == [8, 6]
        && f[20..22] == [0, 2]
}

/// Runs frames through a one-worker node and checks the accounting invariant:
/// every received frame is transmitted, dropped (counted once) or consumed as an ARP reply.
/// Frames the node originates (ARP requests) or turns into an answer while counting the
/// original as dropped (ICMP errors, RSTs) are taken out, and a rate-limited ICMP error counts
/// the frame a second time.
fn account(frames: &[Vec<u8>]) {
    let mut h = Harness::new(1, "conntrack:\n  max_flows: 64\n", &base());
    for f in frames {
        if f.len() > 2048 {
            continue;
        }
        h.inject(ETH0, f);
        h.run();
    }
    // Inputs may carry wrong L4 checksums, which NAT's incremental updates keep wrong (as
    // Linux does): outputs are not checked here.
    let mut out = h.sent_unchecked();
    h.advance(Duration::from_secs(4));
    h.run();
    out.extend(h.sent_unchecked());
    let s = h.node.workers()[0].stats().clone();
    let rx: u64 = s.rx.iter().sum();
    let tx: u64 = s.tx.iter().sum();
    let drops: u64 = s.drops.iter().sum();
    assert_eq!(tx as usize, out.len());
    // Answers the node generated about a frame it counted as dropped: RSTs and ICMP errors
    // (`icmp_sent` also counts echo replies, recognised as type 0 from a node address).
    let local = h.node.publisher().current().local.clone();
    let echo_replies = out
        .iter()
        .filter(|o| {
            let b = &o.bytes;
            b.len() > 34
                && b[12..14] == [8, 0]
                && b[23] == 1
                && b[34] == 0
                && local.contains(&Ipv4Addr::new(b[26], b[27], b[28], b[29]))
        })
        .count() as u64;
    let answers = s.tcp_resets_sent + s.icmp_sent - echo_replies;
    let originated = s.arp_requests;
    let double = s.drops[DropReason::IcmpRateLimited as usize];
    let consumed = (rx + originated + answers + double) as i64 - (tx + drops) as i64;
    let arp_replies = frames.iter().filter(|f| is_arp_reply_for_us(f)).count() as i64;
    assert!(
        (0..=arp_replies).contains(&consumed),
        "rx {rx} tx {tx} drops {drops} answers {answers} arp requests {originated}: {consumed} unaccounted"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn valid_frames() -> Vec<Vec<u8>> {
        vec![
            Pkt::tcp(CLIENT, 1000, NODE_IP, 30080, SYN).bytes(),
            Pkt::tcp(CLIENT, 1001, ip(EMPTY), 80, SYN).bytes(),
            Pkt::udp(CLIENT, 1002, NODE_EXTRA_IP, 30053).bytes(),
            Pkt::udp(CLIENT, 1003, ip("10.2.0.10"), 53).ttl(1).bytes(),
            Pkt::sctp(CLIENT, 1004, ip(SCTP), 9999).bytes(),
            Pkt::echo(CLIENT, NODE_IP, 7).bytes(),
            arp(1, GW_MAC, BROADCAST, GW_MAC, GW, [0; 6], NODE_IP),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic_and_are_accounted(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..40)
        ) {
            // Half of them addressed to us so they get past the MAC check.
            let frames: Vec<Vec<u8>> = frames
                .into_iter()
                .enumerate()
                .map(|(i, mut f)| {
                    if i % 2 == 0 && f.len() >= 14 {
                        f[..6].copy_from_slice(&MAC0);
                        f[12..14].copy_from_slice(&[8, 0]);
                    }
                    f
                })
                .collect();
            account(&frames);
        }

        #[test]
        fn mutated_valid_frames_never_panic_and_are_accounted(
            picks in proptest::collection::vec(
                (0usize..7, proptest::collection::vec((0usize..128, any::<u8>()), 1..4), 0usize..130),
                1..40,
            )
        ) {
            let valid = valid_frames();
            let frames: Vec<Vec<u8>> = picks
                .into_iter()
                .map(|(which, muts, cut)| {
                    let mut f = valid[which].clone();
                    for (at, v) in muts {
                        if at < f.len() {
                            f[at] = v;
                        }
                    }
                    if cut < f.len() && cut % 3 == 0 {
                        f.truncate(cut);
                    }
                    f
                })
                .collect();
            account(&frames);
        }
    }
}

// ---- 16. Multi-worker -------------------------------------------------------------------------

/// Nothing dropped over a run (the reasons that were are shown).
fn assert_no_drops(t: &nodegate::stats::WorkerReport) {
    assert_eq!(
        t.dropped,
        0,
        "{:?}",
        t.drops
            .iter()
            .filter(|(_, &n)| n > 0)
            .collect::<BTreeSet<_>>()
    );
}

/// Source address, source port, destination address, destination port.
type Tuple = (Ipv4Addr, u16, Ipv4Addr, u16);

fn multi_worker(workers: usize) {
    let mut h = Harness::new(workers, "", &base());
    // flow id -> (client tuple, translated tuple)
    let mut translated: HashMap<Tuple, Tuple> = HashMap::new();
    let mut clients = Vec::new();
    for i in 0..150u32 {
        // External clients to the NodePort (SNAT), on two node addresses.
        let c = Ipv4Addr::new(198, 18, 1, (i % 250) as u8 + 1);
        let addr = if i % 2 == 0 { NODE_IP } else { NODE_EXTRA_IP };
        clients.push((c, 20_000 + i as u16, addr, 30080u16));
    }
    for i in 0..150u32 {
        // Pods to the ClusterIP (no SNAT).
        let c = Ipv4Addr::new(10, 2, 0, 50 + (i % 50) as u8);
        clients.push((c, 30_000 + i as u16, ip(WEB), 80u16));
    }
    for round in 0..3 {
        for &(c, sport, dst, dport) in &clients {
            let flags = if round == 0 { SYN } else { ACK };
            let out = h.send_rr(&Pkt::tcp(c, sport, dst, dport, flags).bytes());
            assert_eq!(out.len(), 1);
            let o = expect_out(&out[0], 63);
            let t = (o.src(), o.ports().0, o.dst(), o.ports().1);
            if dport == 80 {
                assert_eq!((t.0, t.1), (c, sport), "ClusterIP keeps the client");
            } else {
                assert_ne!(t.0, c, "NodePort is SNATed");
            }
            let prev = translated.entry((c, sport, dst, dport)).or_insert(t);
            assert_eq!(*prev, t, "same translation for every packet of a flow");
            // The endpoint's reply reaches the right client with the Service tuple.
            let reply = reply_to(
                &o,
                L4::Tcp {
                    flags: if round == 0 { SYN | ACK } else { ACK },
                    seq: 0,
                    ack: 0,
                },
            );
            let out = h.send_rr(&reply.bytes());
            assert_eq!(out.len(), 1);
            let r = expect_out(&out[0], 63);
            assert_eq!(
                (r.src(), r.ports().0, r.dst(), r.ports().1),
                (dst, dport, c, sport)
            );
        }
    }
    // Every translation is distinct (no two flows share an endpoint-side tuple).
    let outs: HashSet<_> = translated.values().collect();
    assert_eq!(outs.len(), clients.len());
    // Each flow lives in exactly one worker.
    let mut owner: HashMap<_, usize> = HashMap::new();
    for w in h.node.workers() {
        for f in w.flows().iter() {
            for k in [f.orig, f.reply] {
                assert!(owner.insert(k, w.id()).is_none(), "{k} tracked twice");
            }
        }
    }
    assert_eq!(h.flows(), clients.len());
    let t = h.total();
    assert!(
        t.handoff_out > 0 && t.handoff_in == t.handoff_out,
        "{} / {}",
        t.handoff_out,
        t.handoff_in
    );
    assert_no_drops(&t);
    let per_worker: Vec<usize> = h.node.workers().iter().map(|w| w.flows().len()).collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "flows spread over workers: {per_worker:?}"
    );
}

#[test]
fn two_workers_track_each_flow_once_and_translate_consistently() {
    multi_worker(2);
}

#[test]
fn three_workers_track_each_flow_once_and_translate_consistently() {
    multi_worker(3);
}

#[test]
fn header_helpers_agree_with_etherparse() {
    // Sanity of the test's own tools: a frame built by etherparse passes `check`.
    let f = Pkt::udp(CLIENT, 1, NODE_IP, 2).bytes();
    let o = check(&f);
    assert_eq!(o.ip.protocol, IpNumber::UDP);
    let (h, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn hairpin_pod_reaching_itself_through_its_service_is_snated() {
    let mut h = harness();
    // 10.2.0.10 is an endpoint of WEB; find a port that makes it pick itself.
    let me = ip("10.2.0.10");
    let mut found = None;
    for sport in 50_000..50_100u16 {
        let o = expect_out(
            &h.send_one(&Pkt::tcp(me, sport, ip(WEB), 80, SYN).bytes()),
            63,
        );
        if o.dst() == me {
            found = Some((sport, o));
            break;
        }
    }
    let (sport, o) = found.expect("some flow picks the client itself");
    assert_eq!(
        o.src(),
        ETH1_IP,
        "hairpin traffic is SNATed to the port address"
    );
    assert!(SNAT_RANGE.contains(&o.ports().0));
    let r = expect_out(
        &h.send_one(
            &reply_to(
                &o,
                L4::Tcp {
                    flags: SYN | ACK,
                    seq: 0,
                    ack: 0,
                },
            )
            .bytes(),
        ),
        63,
    );
    assert_eq!((r.src(), r.dst(), r.ports()), (ip(WEB), me, (80, sport)));
}

#[test]
fn icmp_error_from_the_client_is_translated_towards_the_endpoint() {
    let mut h = harness();
    let q = Pkt::udp(CLIENT, 5557, NODE_EXTRA_IP, 30053).payload(b"query");
    let sent = expect_out(&h.send_one(&q.bytes()), 63);
    let reply = expect_out(&h.send_one(&reply_to(&sent, L4::Udp).bytes()), 63);
    assert_eq!((reply.src(), reply.dst()), (NODE_EXTRA_IP, CLIENT));
    // The client's host no longer listens: port unreachable about the reply it got.
    let err = icmp_error(CLIENT, NODE_EXTRA_IP, 3, 3, &h_bytes(&reply));
    let o = expect_out(&h.send_one(&err), 63);
    assert_eq!((o.src(), o.dst()), (NODE_IP, ip("10.1.0.53")));
    let (snat_port, _) = sent.ports();
    check_quote_is(&o, ip("10.1.0.53"), NODE_IP, 5353, snat_port);
}

// ---- IPv4 fragments -----------------------------------------------------------------------------

/// `frame` (Ethernet, a 20-byte IPv4 header, L4) cut into IPv4 fragments of `chunk` L4 bytes
/// (a multiple of 8), all with identification `ident`.
fn fragments(frame: &[u8], ident: u16, chunk: usize) -> Vec<Vec<u8>> {
    let (eth, ip, l4) = (&frame[..14], &frame[14..34], &frame[34..]);
    l4.chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut h = ip.to_vec();
            h[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&ident.to_be_bytes());
            let more = (i + 1) * chunk < l4.len();
            let field = (i * chunk / 8) as u16 | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&field.to_be_bytes());
            h[10..12].fill(0);
            let c = !ones_sum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            [eth, &h[..], part].concat()
        })
        .collect()
}

/// The datagram carried by fragments that left the node: each IPv4 header checked (checksum,
/// TTL 63, one identification, offsets in order, the egress port and MACs of its
/// destination); returns (source, destination, L4 bytes) with the UDP length and checksum
/// verified over the whole datagram.
fn reassembled(out: &[Sent]) -> (Ipv4Addr, Ipv4Addr, Vec<u8>) {
    let mut l4 = Vec::new();
    let mut first: Option<Ipv4Header> = None;
    for s in out {
        let (ip, rest) = Ipv4Header::from_slice(&s.bytes[14..]).expect("IPv4 header");
        assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "{ip:?}");
        assert_eq!(ip.time_to_live, 63);
        let (port, smac, dmac) = egress_of(Ipv4Addr::from(ip.destination));
        assert_eq!(
            (s.port, &s.bytes[6..12], &s.bytes[..6]),
            (port, &smac[..], &dmac[..])
        );
        assert_eq!(
            usize::from(ip.fragment_offset.value()) * 8,
            l4.len(),
            "in order"
        );
        if let Some(f) = &first {
            assert_eq!(
                (ip.source, ip.destination, ip.identification),
                (f.source, f.destination, f.identification),
                "one datagram"
            );
        }
        l4.extend_from_slice(&rest[..usize::from(ip.total_len) - ip.header_len()]);
        first.get_or_insert(ip);
    }
    let ip = first.expect("fragments out");
    let (src, dst) = (Ipv4Addr::from(ip.source), Ipv4Addr::from(ip.destination));
    assert_eq!(
        usize::from(u16::from_be_bytes([l4[4], l4[5]])),
        l4.len(),
        "UDP length"
    );
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&l4);
    assert_eq!(ones_sum(&pseudo), 0xffff, "UDP checksum over the datagram");
    (src, dst, l4)
}

/// Sends every fragment (to the workers in turn, as RSS would spread them) and collects
/// what left.
fn send_fragments(h: &mut Harness, frags: &[Vec<u8>]) -> Vec<Sent> {
    let mut out = Vec::new();
    for f in frags {
        let port = port_of_frame(f);
        let mut v = vec![h.node.frame(f).expect("pool has buffers")];
        h.node.inject(port as u16, &mut v, h.now);
        out.extend(h.sent_unchecked());
    }
    out
}

fn fragmented_udp_both_ways(workers: usize) {
    let mut h = Harness::new(workers, "", &base());
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    for (client, sport, vip, vport, ident) in [
        // ClusterIP from a pod: DNAT only.
        (POD_CLIENT, 6000, ip(DNS), 53, 0x1234),
        // NodePort from outside: DNAT and SNAT.
        (CLIENT, 6001, NODE_EXTRA_IP, 30053, 0x1235),
    ] {
        let q = Pkt::udp(client, sport, vip, vport)
            .payload(&payload)
            .bytes();
        let frags = fragments(&q, ident, 1480);
        assert_eq!(frags.len(), 3);
        let out = send_fragments(&mut h, &frags);
        assert_eq!(
            out.len(),
            3,
            "{workers} workers, {vip}: every fragment forwarded"
        );
        let (src, dst, l4) = reassembled(&out);
        assert_eq!(dst, ip("10.1.0.53"), "to the endpoint");
        let sport_out = u16::from_be_bytes([l4[0], l4[1]]);
        if vip == ip(DNS) {
            assert_eq!((src, sport_out), (client, sport), "the client is kept");
        } else {
            assert_eq!(src, NODE_IP, "SNAT to the node");
            assert!(SNAT_RANGE.contains(&sport_out));
        }
        assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), 5353);
        assert_eq!(&l4[8..], &payload[..], "the payload is untouched");

        // The endpoint's fragmented answer goes back as the Service.
        let answer = Pkt::udp(dst, 5353, src, sport_out)
            .payload(&payload[..2500])
            .bytes();
        let out = send_fragments(&mut h, &fragments(&answer, 0x4321, 1200));
        assert_eq!(
            out.len(),
            3,
            "{workers} workers, {vip}: every reply fragment"
        );
        let (rsrc, rdst, rl4) = reassembled(&out);
        assert_eq!((rsrc, rdst), (vip, client));
        assert_eq!(
            (
                u16::from_be_bytes([rl4[0], rl4[1]]),
                u16::from_be_bytes([rl4[2], rl4[3]])
            ),
            (vport, sport)
        );
        assert_eq!(&rl4[8..], &payload[..2500]);
    }
    assert_eq!(h.flows(), 2, "one flow per datagram's 5-tuple");
    let t = h.total();
    assert_eq!(t.fragments_unmatched, 0);
    assert_no_drops(&t);
    if workers > 1 {
        assert!(t.handoff_in > 0, "fragments crossed workers");
    }
}

#[test]
fn fragmented_udp_follows_its_first_fragment_both_ways() {
    fragmented_udp_both_ways(1);
}

#[test]
fn fragmented_udp_follows_its_first_fragment_across_workers() {
    fragmented_udp_both_ways(2);
    fragmented_udp_both_ways(3);
}

#[test]
fn fragments_without_their_first_or_of_untracked_protocols_are_not_translated() {
    let mut h = harness();
    let payload = [0x5au8; 2000];
    let q = Pkt::udp(POD_CLIENT, 6100, ip(DNS), 53)
        .payload(&payload)
        .bytes();
    let frags = fragments(&q, 0x777, 1480);
    // The second fragment alone: no ports known, so no flow; it is not translated.
    let out = send_fragments(&mut h, &frags[1..]);
    assert!(
        out.iter().all(|s| s.bytes[30..34] == ip(DNS).octets()),
        "not translated"
    );
    assert_eq!(h.total().fragments_unmatched, 1);
    assert_eq!(h.flows(), 0);
    // A first fragment after the timeout does not lend its ports to an old later one.
    let out = send_fragments(&mut h, &frags[..1]);
    assert_eq!(out.len(), 1);
    h.advance(Duration::from_secs(3));
    let out = send_fragments(&mut h, &frags[1..]);
    assert!(out.iter().all(|s| s.bytes[30..34] == ip(DNS).octets()));
    assert_eq!(h.total().fragments_unmatched, 2);
    // SCTP fragments of a Service are dropped (its CRC cannot be patched fragment by fragment).
    let s = Pkt::sctp(POD_CLIENT, 7000, ip(SCTP), 9999)
        .payload(&[1u8; 64])
        .bytes();
    let frags = fragments(&s, 0x99, 40);
    assert_eq!(frags.len(), 3);
    let out = send_fragments(&mut h, &frags);
    assert!(out.len() < 3, "the first fragment is dropped");
    assert!(
        out.iter().all(|s| s.bytes[30..34] == ip(SCTP).octets()),
        "nothing translated"
    );
    assert_eq!(h.drops(DropReason::Ip4Fragment), 1);
}
