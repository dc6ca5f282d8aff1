//! Why frames are dropped: one list, grouped by the stage that raises each reason (VPP's
//! `ip4_error.h`). A reason doubles as the index into each worker's plain counter array, and its
//! name is what counters, traces and the stats file print.

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, $desc:literal), )*) => {
        /// A reason a frame was dropped (or refused service).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons: the length of a counter array.
            pub const COUNT: usize = Self::ALL.len();

            /// Short `stage-reason` name used in counters and traces.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One-line human description.
            pub const fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $desc,)* }
            }
        }
    };
}

drop_reasons! {
    // eth-input
    EthMalformed = ("eth-malformed", "Ethernet header truncated"),
    EthNotForUs = ("eth-not-for-us", "destination MAC is neither ours nor broadcast"),
    EthVlanTagged = ("eth-vlan-tagged", "802.1Q-tagged frame on an untagged port"),
    EthUnknownType = ("eth-unknown-type", "EtherType not handled (not IPv4, IPv6 or ARP)"),
    EthSourceIsOurs = ("eth-src-is-ours", "source MAC is our own (looped frame)"),
    // arp-input
    ArpMalformed = ("arp-malformed", "ARP packet malformed or not Ethernet/IPv4"),
    ArpNotForUs = ("arp-not-for-us", "ARP for an address that is not ours"),
    ArpBadOpcode = ("arp-bad-opcode", "ARP operation neither request nor reply"),
    ArpBadSender = ("arp-bad-sender", "ARP sender not learnable: off the port's prefixes, ours, broadcast, multicast or zero"),
    // ip4-input
    Ip4Malformed = ("ip4-malformed", "IPv4 header malformed or truncated"),
    Ip4BadChecksum = ("ip4-bad-checksum", "IPv4 header checksum wrong"),
    Ip4BadSource = ("ip4-bad-source", "IPv4 source is multicast, broadcast or ours"),
    Ip4TtlExceeded = ("ip4-ttl-exceeded", "IPv4 TTL reached zero (ICMP time exceeded sent)"),
    Ip4Fragment = ("ip4-fragment", "IPv4 fragment nodegate cannot translate (a later fragment of a Service datagram with no flow, a fragment of a protocol other than TCP and UDP), or local without host_interface (no reassembly)"),
    Ip4NoRoute = ("ip4-no-route", "no route to the IPv4 destination"),
    Ip4Local = ("ip4-local", "addressed to the node, not a Service, and the port has no host_interface"),
    L4Malformed = ("l4-malformed", "TCP, UDP, SCTP or ICMP header malformed or truncated"),
    // ip6-input
    Ip6Malformed = ("ip6-malformed", "IPv6 header malformed or truncated"),
    Ip6HopLimitExceeded = ("ip6-hop-limit-exceeded", "IPv6 hop limit reached zero (ICMPv6 sent)"),
    Ip6NoRoute = ("ip6-no-route", "no route to the IPv6 destination"),
    Ip6Fragment = ("ip6-fragment", "later IPv6 fragment of a Service datagram with no flow (its first fragment was refused or expired)"),
    Ip6Local = ("ip6-local", "IPv6 addressed to the node, not handled, and the port has no host_interface"),
    Ip6BadSource = ("ip6-bad-source", "IPv6 source is multicast, unspecified or ours"),
    Ip6Multicast = ("ip6-multicast", "IPv6 multicast destination that is not neighbour discovery"),
    Ip6LinkLocal = ("ip6-link-local", "link-local IPv6 source or destination; not forwarded"),
    Ip6NdpInvalid = ("ip6-ndp-invalid", "neighbour solicitation/advertisement fails RFC 4861 checks"),
    Ip6NsNotForUs = ("ip6-ns-not-for-us", "neighbour solicitation for an address that is not ours"),
    // svc-lookup
    SvcRejected = ("svc-rejected", "Service has no endpoints (TCP RST / ICMP unreachable sent)"),
    SvcNoLocalEndpoint = ("svc-no-local-endpoint", "traffic policy Local and no local endpoint"),
    SvcSourceNotAllowed = ("svc-source-not-allowed", "client outside the load balancer's loadBalancerSourceRanges"),
    // ct
    CtFull = ("ct-full", "flow table full of live flows; new flow refused"),
    CtInvalid = ("ct-invalid", "packet cannot start a flow (e.g. a TCP RST without state)"),
    SnatExhausted = ("snat-exhausted", "no free SNAT port for this destination"),
    // neighbour
    NeighUnresolved = ("neigh-unresolved", "next hop unresolved and its hold queue is full"),
    NeighTimeout = ("neigh-timeout", "next hop did not answer ARP or neighbour solicitation in time"),
    // worker
    HandoffFull = ("handoff-full", "owning worker's handoff queue full"),
    NoBuffer = ("no-buffer", "buffer pool empty"),
    TxFull = ("tx-full", "transmit ring full"),
    IcmpRateLimited = ("icmp-rate-limited", "ICMP error not sent: rate limit"),
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_names_are_unique_and_indexes_dense() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
