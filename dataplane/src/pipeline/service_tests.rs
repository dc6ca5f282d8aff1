//! The Service path's unit tests: hand-built IPv4 frames through one worker.

use super::super::test_rig::*;
use super::super::{Action, WorkerConfig};
use crate::drop::DropReason;
use crate::time::Instant;
use crate::wire::{icmpv4, Icmpv4Packet, Ipv4Packet};
use core::time::Duration;

const CLIENT: [u8; 4] = [10, 0, 0, 99];
const POD: [u8; 4] = [10, 1, 0, 7];
const VIP: [u8; 4] = [10, 96, 0, 10];
const POD_MAC: crate::wire::MacAddr = crate::wire::MacAddr([2, 0, 0, 0, 1, 7]);

fn rig(endpoint: Option<[u8; 4]>) -> Rig {
    let mut rig = Rig::with_tables(WorkerConfig::new(0, 1), tables_with_service(endpoint));
    rig.w.neigh.learn(POD.into(), POD_MAC, Instant::ZERO);
    rig.w.neigh.learn(CLIENT.into(), HOST, Instant::ZERO);
    rig
}

fn addrs(m: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    // The ports by hand: a first fragment holds only part of its UDP datagram.
    let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
    let l4 = ip.payload();
    (
        ip.src_addr().octets(),
        u16::from_be_bytes([l4[0], l4[1]]),
        ip.dst_addr().octets(),
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

#[test]
fn a_new_flow_is_balanced_and_its_replies_translated_back() {
    let mut rig = rig(Some(POD));
    let t0 = Instant::ZERO;
    let q = udp4_ports(MAC0, (CLIENT, 5000), (VIP, 53), 64, b"query");
    let (a, m) = rig.input(&q, 0, t0);
    assert_eq!(a, Action::Tx(1), "svc-lookup, ct-create, DNAT, ip-output");
    assert_eq!(
        addrs(&m),
        (CLIENT, 5000, POD, 53),
        "DNAT only (no SNAT for ClusterIP)"
    );
    assert_eq!(&m[..6], &POD_MAC.0, "to the endpoint's MAC");
    let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
    assert_eq!(ip.hop_limit(), 63);
    assert!(ip.verify_checksum());
    rig.free(m);
    assert_eq!(rig.w.flows().len(), 1, "one flow created");

    // The same client again: ct-lookup hits; the flow is not created twice.
    let (a, m) = rig.input(&q, 0, t0 + Duration::from_millis(1));
    assert_eq!((a, addrs(&m)), (Action::Tx(1), (CLIENT, 5000, POD, 53)));
    rig.free(m);
    assert_eq!(rig.w.flows().len(), 1);

    // The endpoint's reply comes back from the Service address.
    let r = udp4_ports(MAC1, (POD, 53), (CLIENT, 5000), 64, b"answer");
    let (a, m) = rig.input(&r, 1, t0 + Duration::from_millis(2));
    assert_eq!(a, Action::Tx(0));
    assert_eq!(addrs(&m), (VIP, 53, CLIENT, 5000), "un-DNAT");
    rig.free(m);
    rig.free_all();
}

#[test]
fn a_service_without_endpoints_is_rejected_with_port_unreachable() {
    let mut rig = rig(None);
    let q = udp4_ports(MAC0, (CLIENT, 5000), (VIP, 53), 64, b"query");
    let (a, m) = rig.input(&q, 0, Instant::ZERO);
    assert_eq!(a, Action::Tx(0), "the error goes back to the client");
    let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
    assert_eq!(ip.src_addr().octets(), VIP, "from the Service address");
    assert_eq!(ip.dst_addr().octets(), CLIENT);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.msg_code()),
        (icmpv4::msg_type::DST_UNREACHABLE, 3)
    );
    assert_eq!(rig.drops(DropReason::SvcRejected), 1);
    assert_eq!(rig.w.flows().len(), 0);
    rig.free(m);
    rig.free_all();
}

#[test]
fn no_hop_left_is_answered_time_exceeded_and_creates_no_flow() {
    let mut rig = rig(Some(POD));
    let q = udp4_ports(MAC0, (CLIENT, 5000), (VIP, 53), 1, b"query");
    let (a, m) = rig.input(&q, 0, Instant::ZERO);
    assert_eq!(a, Action::Tx(0));
    let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), icmpv4::msg_type::TIME_EXCEEDED);
    assert_eq!(rig.drops(DropReason::Ip4TtlExceeded), 1);
    assert_eq!(
        rig.w.flows().len(),
        0,
        "no flow for a packet that was not sent"
    );
    rig.free(m);
    rig.free_all();
}

/// A UDP datagram of `len` payload bytes to the Service, split in two at 64 bytes.
fn fragments(ident: u16) -> (Vec<u8>, Vec<u8>) {
    let whole = udp4_ports(MAC0, (CLIENT, 5000), (VIP, 53), 64, &[7; 100]);
    let split = L2 + 20 + 64;
    let mut first = whole[..split].to_vec();
    let mut later = whole[..L2 + 20].to_vec();
    later.extend_from_slice(&whole[split..]);
    for (f, off, more) in [(&mut first, 0, true), (&mut later, 64, false)] {
        let len = (f.len() - L2) as u16;
        let mut ip = Ipv4Packet::new_unchecked(&mut f[L2..]);
        ip.set_ident(ident);
        ip.set_more_frags(more);
        ip.set_frag_offset(off);
        ip.set_total_len(len);
        ip.fill_checksum();
    }
    (first, later)
}

#[test]
fn fragments_follow_their_datagrams_flow() {
    let mut rig = rig(Some(POD));
    let (first, later) = fragments(42);
    let (a, m) = rig.input(&first, 0, Instant::ZERO);
    assert_eq!((a, addrs(&m)), (Action::Tx(1), (CLIENT, 5000, POD, 53)));
    rig.free(m);
    // The later fragment has no ports: it gets the first one's flow from fragment-home.
    let (a, m) = rig.input(&later, 0, Instant::ZERO);
    assert_eq!(a, Action::Tx(1));
    let ip = Ipv4Packet::new_checked(&m[L2..]).unwrap();
    assert_eq!(
        ip.dst_addr().octets(),
        POD,
        "DNATed like its first fragment"
    );
    assert!(ip.verify_checksum());
    rig.free(m);

    // A later fragment of a datagram whose first fragment was never seen has no tuple:
    // it is routed like any packet (here: nowhere), and counted.
    let (_, orphan) = fragments(43);
    let (a, m) = rig.input(&orphan, 0, Instant::ZERO);
    assert_eq!(a, Action::Drop(DropReason::Ip4NoRoute));
    assert_eq!(rig.w.stats.fragments_unmatched, 1);
    rig.free(m);
    rig.free_all();
}

#[test]
fn traffic_no_service_claims_goes_back_to_the_input_stage() {
    let mut rig = rig(Some(POD));
    // Another port of the Service address: routed as any packet (10.96/12 has no route).
    let q = udp4_ports(MAC0, (CLIENT, 5000), (VIP, 54), 64, b"query");
    assert_eq!(
        rig.input(&q, 0, Instant::ZERO).0,
        Action::Drop(DropReason::Ip4NoRoute)
    );
    // To the pod directly: forwarded unchanged.
    let q = udp4_ports(MAC0, (CLIENT, 5000), (POD, 53), 64, b"query");
    let (a, m) = rig.input(&q, 0, Instant::ZERO);
    assert_eq!((a, addrs(&m)), (Action::Tx(1), (CLIENT, 5000, POD, 53)));
    assert_eq!(rig.w.flows().len(), 0);
    rig.free(m);
    rig.free_all();
}
