//! Golden tests of the node's exception path: with host ports (the kernel's TAP side of each
//! data port, `host_interface` in the configuration), frames for the node that the data plane
//! does not handle itself are punted to the host port unchanged, and what the kernel sends on a
//! host port leaves by its data port unchanged. Services, flows, echo and ARP requests stay the
//! data plane's. Topology as in `support`, plus:
//!
//! ```text
//!   port 2: host port of eth0        port 3: host port of eth1
//! ```

mod support;

use dataplane::drop::DropReason;
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;
use support::*;

const HOST0: usize = 2;
const HOST1: usize = 3;
const PAIRS: &[(u16, u16)] = &[(ETH0 as u16, HOST0 as u16), (ETH1 as u16, HOST1 as u16)];

const NODEPORT_SVC: &str = "10.96.0.11";
const NODEPORT: u16 = 30081;
const ENDPOINT: &str = "10.1.0.11";

fn manifests() -> String {
    [
        service(
            NODEPORT_SVC,
            NODEPORT_SVC,
            "TCP",
            80,
            8080,
            Some(NODEPORT),
            "  type: NodePort",
            "",
        ),
        slice(NODEPORT_SVC, "a", "TCP", 8080, &[ready(ENDPOINT, "node-b")]),
    ]
    .concat()
}

fn host_harness(workers: usize) -> Harness {
    Harness::with_host_ports(config(workers, ""), &manifests(), PAIRS)
}

fn stats(h: &Harness) -> nodegate::stats::Stats {
    nodegate::stats::Stats::gather(h.node.workers(), &h.node.publisher().current())
}

/// Expects exactly `frame`, unchanged, on `port` and nothing else.
fn expect_only(out: &[Sent], port: usize, frame: &[u8]) {
    assert_eq!(
        out.iter().map(|s| s.port).collect::<Vec<_>>(),
        vec![port],
        "expected one frame on port {port}"
    );
    assert_eq!(out[0].bytes, frame, "the frame must pass unchanged");
}

#[test]
fn tcp_syn_to_the_node_is_punted_unchanged_to_the_host_port() {
    let mut h = host_harness(1);
    // SSH to the node address on eth0, and to the address on no port (arriving on eth0).
    for (i, dst) in [NODE_IP, NODE_EXTRA_IP].into_iter().enumerate() {
        let syn = Pkt::tcp(CLIENT, 40000 + i as u16, dst, 22, SYN).bytes();
        let out = h.send(&syn);
        expect_only(&out, HOST0, &syn);
    }
    // kubelet on eth1's address, from a pod: to eth1's host port.
    let syn = Pkt::tcp(POD_CLIENT, 41000, ETH1_IP, 10250, SYN).bytes();
    expect_only(&h.send(&syn), HOST1, &syn);
    // The rest of the connection too (no flow is created for it), and UDP and other protocols.
    let data = Pkt::tcp(CLIENT, 40000, NODE_IP, 22, ACK | PSH)
        .payload(b"SSH-2.0-client\r\n")
        .bytes();
    expect_only(&h.send(&data), HOST0, &data);
    let udp = Pkt::udp(CLIENT, 5000, NODE_IP, 4789).bytes();
    expect_only(&h.send(&udp), HOST0, &udp);
    let ospf = raw_ipv4(GW_MAC, MAC0, GW, NODE_IP, 89, 1, &[2, 1, 0, 44]);
    expect_only(&h.send_on(ETH0, &ospf), HOST0, &ospf);
    // IPv4 broadcast (a DHCP offer) and multicast (VRRP) are the kernel's as well.
    let mut dhcp = Vec::new();
    PacketBuilder::ethernet2(GW_MAC, BROADCAST)
        .ipv4(GW.octets(), [255; 4], 64)
        .udp(67, 68)
        .write(&mut dhcp, &[2; 240])
        .unwrap();
    expect_only(&h.send_on(ETH0, &dhcp), HOST0, &dhcp);
    let vrrp = raw_ipv4(
        [0, 0, 0x5e, 0, 1, 7],
        [1, 0, 0x5e, 0, 0, 18],
        NODE_B,
        Ipv4Addr::new(224, 0, 0, 18),
        112,
        255,
        &[0x21, 7, 100, 1, 0, 1, 0, 0, 10, 0, 0, 100],
    );
    expect_only(&h.send_on(ETH0, &vrrp), HOST0, &vrrp);

    assert_eq!(h.flows(), 0, "punted traffic creates no flow");
    assert_eq!(h.drops(DropReason::Ip4Local), 0);
    let s = stats(&h);
    assert_eq!((s.ports[ETH0].punted, s.ports[ETH1].punted), (7, 1));
    assert_eq!(s.total.punted, 8);
    assert_eq!(s.total.dropped, 0);
}

#[test]
fn services_flows_and_echo_win_over_punting() {
    let mut h = host_harness(1);
    // A NodePort on the node address is DNATed (and SNATed), never punted.
    let syn = Pkt::tcp(CLIENT, 40000, NODE_IP, NODEPORT, SYN).bytes();
    let out = h.send_one(&syn);
    assert_eq!(out.port, ETH0);
    let o = expect_out(&out, 63);
    assert_eq!(o.dst(), ip(ENDPOINT));
    assert_eq!(o.src(), NODE_IP, "SNAT to the node address");
    assert_eq!(o.ports().1, 8080);
    // The endpoint's reply comes to the node address on a SNAT port: a conntrack hit, not the
    // kernel's.
    let synack = reply_to(
        &o,
        L4::Tcp {
            flags: SYN | ACK,
            seq: 0,
            ack: 0,
        },
    )
    .bytes();
    let back = h.send_one(&synack);
    let b = expect_out(&back, 63);
    assert_eq!(
        (b.src(), b.ports().0, b.dst(), b.ports().1),
        (NODE_IP, NODEPORT, CLIENT, 40000)
    );
    // Echo requests are answered by the data plane.
    let o = expect_out(&h.send_one(&Pkt::echo(CLIENT, NODE_IP, 7).bytes()), 64);
    assert_eq!((o.src(), o.dst(), o.icmp()), (NODE_IP, CLIENT, (0, 0)));
    // Transit traffic is forwarded as before.
    let t = Pkt::udp(CLIENT, 1000, ip("10.2.0.20"), 53).bytes();
    assert_eq!(h.send_one(&t).port, ETH1);
    assert_eq!(stats(&h).total.punted, 0);
}

#[test]
fn arp_replies_to_the_node_are_learned_and_copied_requests_answered_only() {
    let mut h = host_harness(1);
    // A request for the node address is answered by the data plane and not punted (the kernel
    // would answer too).
    let req = arp(1, GW_MAC, BROADCAST, GW_MAC, GW, [0; 6], NODE_IP);
    let out = h.send_on(ETH0, &req);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, ETH0);
    assert_eq!(&out[0].bytes[20..22], &[0, 2], "an ARP reply");
    // A frame to an unresolved pod is held and resolved with ARP ...
    let p = Pkt::udp(CLIENT, 1000, UNRESOLVED_POD, 2000).bytes();
    let out = h.send(&p);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].port, &out[0].bytes[20..22]), (ETH1, &[0u8, 1][..]));
    // ... and the reply both releases it and reaches the kernel, unchanged, on eth1's host port.
    let pod_mac = [2, 0, 0, 2, 0, 200];
    let reply = arp(2, pod_mac, MAC1, pod_mac, UNRESOLVED_POD, MAC1, ETH1_IP);
    let out = h.send_on(ETH1, &reply);
    let mut ports: Vec<usize> = out.iter().map(|s| s.port).collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![ETH1, HOST1]);
    let held = out.iter().find(|s| s.port == ETH1).unwrap();
    assert_eq!(
        &held.bytes[..6],
        &pod_mac,
        "held frame released to the learned MAC"
    );
    let copied = out.iter().find(|s| s.port == HOST1).unwrap();
    assert_eq!(copied.bytes, reply);
    // A reply to someone else's address is neither ours nor the kernel's.
    let other = arp(2, GW_MAC, MAC0, GW_MAC, GW, NODE_B_MAC, NODE_B);
    assert!(h.send_on(ETH0, &other).is_empty());
    let s = stats(&h);
    assert_eq!(s.total.arp_replies, 1);
    assert_eq!((s.ports[ETH0].punted, s.ports[ETH1].punted), (0, 1));
}

#[test]
fn frames_from_the_kernel_leave_by_the_paired_port_unchanged() {
    let mut h = host_harness(1);
    // The kernel's SSH server answers; its ARP request; a connection it opens from eth1.
    let synack = Pkt::tcp(NODE_IP, 22, CLIENT, 40000, SYN | ACK);
    let synack = Pkt {
        smac: MAC0,
        dmac: GW_MAC,
        ..synack
    }
    .bytes();
    let who_has = arp(1, MAC0, BROADCAST, MAC0, NODE_IP, [0; 6], GW);
    for f in [&synack, &who_has] {
        expect_only(&h.send_on(HOST0, f), ETH0, f);
    }
    let mut conn = Pkt::tcp(ETH1_IP, 45000, POD_CLIENT, 8080, SYN);
    conn.smac = MAC1;
    conn.dmac = pod_mac(POD_CLIENT);
    let conn = conn.bytes();
    expect_only(&h.send_on(HOST1, &conn), ETH1, &conn);
    // Not looked at: even what the data plane itself would have dropped goes out as it is.
    let odd = vec![0xab; 20];
    expect_only(&h.send_on(HOST0, &odd), ETH0, &odd);
    assert_eq!(h.flows(), 0);
    let s = stats(&h);
    assert_eq!((s.ports[ETH0].from_host, s.ports[ETH1].from_host), (3, 1));
    assert_eq!(s.total.dropped, 0);
}

#[test]
fn two_workers_punt_each_frame_once() {
    let mut h = host_harness(2);
    for i in 0..8u16 {
        let syn = Pkt::tcp(
            ip(&format!("203.0.113.{}", 10 + i)),
            40000 + i,
            NODE_IP,
            22,
            SYN,
        )
        .bytes();
        expect_only(&h.send_rr(&syn), HOST0, &syn);
    }
    // An ARP reply is copied to every worker to learn from, but to the kernel once.
    let reply = arp(2, GW_MAC, MAC0, GW_MAC, GW, MAC0, NODE_IP);
    let out = h.send_rr(&reply);
    expect_only(&out, HOST0, &reply);
    let s = stats(&h);
    assert_eq!(s.total.punted, 9);
    let synack = Pkt {
        smac: MAC0,
        dmac: GW_MAC,
        ..Pkt::tcp(NODE_IP, 22, CLIENT, 40000, SYN | ACK)
    }
    .bytes();
    expect_only(&h.send_on(HOST0, &synack), ETH0, &synack);
}

#[test]
fn without_a_host_port_local_traffic_is_dropped_as_before() {
    let mut h = Harness::new(1, "", &manifests());
    let syn = Pkt::tcp(CLIENT, 40000, NODE_IP, 22, SYN).bytes();
    assert!(h.send(&syn).is_empty());
    assert_eq!(h.drops(DropReason::Ip4Local), 1);
    let reply = arp(2, GW_MAC, MAC0, GW_MAC, GW, MAC0, NODE_IP);
    assert!(h.send_on(ETH0, &reply).is_empty());
    let mut dhcp = Vec::new();
    PacketBuilder::ethernet2(GW_MAC, BROADCAST)
        .ipv4(GW.octets(), [255; 4], 64)
        .udp(67, 68)
        .write(&mut dhcp, &[2; 240])
        .unwrap();
    assert!(h.send_on(ETH0, &dhcp).is_empty());
    assert_eq!(h.drops(DropReason::Ip4Local), 2);
    // The NodePort is served the same.
    let o = expect_out(
        &h.send_one(&Pkt::tcp(CLIENT, 40000, NODE_IP, NODEPORT, SYN).bytes()),
        63,
    );
    assert_eq!(o.dst(), ip(ENDPOINT));
    assert_eq!(stats(&h).total.punted, 0);
}
