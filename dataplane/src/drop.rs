//! Why frames are dropped: one list, grouped by the stage that raises each reason (VPP's
//! `ip4_error.h`). A reason doubles as the index into each worker's plain counter array, and its
//! name is what counters, traces and the stats file print.

macro_rules! stages {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, [$($file:literal),+]), )*) => {
        /// A stage of the pipeline, by the name docs, counters and traces use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Stage {
            $( $(#[$doc])* $variant, )*
        }

        impl Stage {
            /// Every stage, in pipeline order.
            pub const ALL: &'static [Stage] = &[$(Stage::$variant,)*];

            /// The stage's name (`ip4-input`).
            pub const fn name(self) -> &'static str {
                match self { $(Stage::$variant => $name,)* }
            }

            /// The files that hold it, under `dataplane/src/`.
            pub const fn files(self) -> &'static [&'static str] {
                match self { $(Stage::$variant => &[$($file),+],)* }
            }
        }
    };
}

stages! {
    EthInput = ("eth-input", ["pipeline/eth_input.rs"]),
    ArpInput = ("arp-input", ["pipeline/arp_input.rs"]),
    NdInput = ("nd-input", ["pipeline/nd_input.rs"]),
    Ip4Input = ("ip4-input", ["pipeline/ip4_input.rs"]),
    Ip6Input = ("ip6-input", ["pipeline/ip6_input.rs"]),
    /// The step both input stages share: the transport header and the flow tuple.
    IpInput = ("ip-input", ["pipeline/ip4_input.rs", "pipeline/ip6_input.rs"]),
    Steer = ("steer", ["pipeline/service.rs"]),
    CtLookup = ("ct-lookup", ["pipeline/service.rs", "conntrack.rs"]),
    FragmentHome = ("fragment-home", ["pipeline/service.rs"]),
    SvcLookup = ("svc-lookup", ["pipeline/service.rs"]),
    Reject = ("reject", ["pipeline/service.rs"]),
    CtCreate = ("ct-create", ["pipeline/service.rs", "conntrack.rs"]),
    Nat44 = ("nat44", ["pipeline/service.rs", "nat.rs"]),
    Nat66 = ("nat66", ["pipeline/service.rs", "nat66.rs"]),
    Ip4Local = ("ip4-local", ["pipeline/ip4_input.rs"]),
    Ip6Local = ("ip6-local", ["pipeline/ip6_input.rs"]),
    Ip4Forward = ("ip4-forward", ["pipeline/ip4_input.rs"]),
    Ip6Forward = ("ip6-forward", ["pipeline/ip6_input.rs"]),
    IcmpError = ("icmp-error", ["pipeline/icmp.rs"]),
    IpOutput = ("ip-output", ["pipeline/neighbour.rs"]),
    Neighbour = ("neighbour", ["pipeline/neighbour.rs"]),
    HostInput = ("host-input", ["pipeline/host.rs"]),
    StackInput = ("stack-input", ["pipeline/host.rs"]),
    HostPunt = ("host-punt", ["pipeline/host.rs"]),
    Timers = ("timers", ["pipeline/timers.rs"]),
    Tx = ("tx", ["pipeline/mod.rs"]),
    /// The worker's own needs (buffers), outside any one stage.
    Worker = ("worker", ["pipeline/mod.rs"]),
}

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = ($stage:ident, $name:literal, $desc:literal), )*) => {
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

            /// The stage that raises it.
            pub const fn stage(self) -> Stage {
                match self { $(DropReason::$variant => Stage::$stage,)* }
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
    EthMalformed = (EthInput, "eth-malformed", "Ethernet header truncated"),
    EthNotForUs = (EthInput, "eth-not-for-us", "destination MAC is neither ours nor broadcast"),
    EthVlanTagged = (EthInput, "eth-vlan-tagged", "802.1Q-tagged frame on an untagged port"),
    EthUnknownType = (EthInput, "eth-unknown-type", "EtherType not handled (not IPv4, IPv6 or ARP)"),
    EthSourceIsOurs = (EthInput, "eth-src-is-ours", "source MAC is our own (looped frame)"),
    // arp-input
    ArpMalformed = (ArpInput, "arp-malformed", "ARP packet malformed or not Ethernet/IPv4"),
    ArpNotForUs = (ArpInput, "arp-not-for-us", "ARP for an address that is not ours"),
    ArpBadOpcode = (ArpInput, "arp-bad-opcode", "ARP operation neither request nor reply"),
    ArpBadSender = (ArpInput, "arp-bad-sender", "ARP sender not learnable: off the port's prefixes, ours, broadcast, multicast or zero"),
    // ip4-input
    Ip4Malformed = (Ip4Input, "ip4-malformed", "IPv4 header malformed or truncated"),
    Ip4BadChecksum = (Ip4Input, "ip4-bad-checksum", "IPv4 header checksum wrong"),
    Ip4BadSource = (Ip4Input, "ip4-bad-source", "IPv4 source is multicast, broadcast or ours"),
    Ip4TtlExceeded = (Ip4Forward, "ip4-ttl-exceeded", "IPv4 TTL reached zero (ICMP time exceeded sent)"),
    Ip4Fragment = (FragmentHome, "ip4-fragment", "IPv4 fragment nodegate cannot translate (a later fragment of a Service datagram with no flow, a fragment of a protocol other than TCP and UDP), or local without host_interface (no reassembly)"),
    Ip4NoRoute = (IpOutput, "ip4-no-route", "no route to the IPv4 destination"),
    Ip4Local = (Ip4Local, "ip4-local", "addressed to the node, not a Service, and the port has no host_interface"),
    L4Malformed = (IpInput, "l4-malformed", "TCP, UDP, SCTP or ICMP header malformed or truncated"),
    // ip6-input
    Ip6Malformed = (Ip6Input, "ip6-malformed", "IPv6 header malformed or truncated"),
    Ip6HopLimitExceeded = (Ip6Forward, "ip6-hop-limit-exceeded", "IPv6 hop limit reached zero (ICMPv6 sent)"),
    Ip6NoRoute = (IpOutput, "ip6-no-route", "no route to the IPv6 destination"),
    Ip6Fragment = (FragmentHome, "ip6-fragment", "later IPv6 fragment of a Service datagram with no flow (its first fragment was refused or expired)"),
    Ip6Local = (Ip6Local, "ip6-local", "IPv6 addressed to the node, not handled, and the port has no host_interface"),
    Ip6BadSource = (Ip6Input, "ip6-bad-source", "IPv6 source is multicast, unspecified or ours"),
    Ip6Multicast = (Ip6Input, "ip6-multicast", "IPv6 multicast destination that is not neighbour discovery"),
    Ip6LinkLocal = (Ip6Forward, "ip6-link-local", "link-local IPv6 source or destination; not forwarded"),
    Ip6NdpInvalid = (NdInput, "ip6-ndp-invalid", "neighbour solicitation/advertisement fails RFC 4861 checks"),
    Ip6NsNotForUs = (NdInput, "ip6-ns-not-for-us", "neighbour solicitation for an address that is not ours"),
    // svc-lookup
    SvcRejected = (Reject, "svc-rejected", "Service has no endpoints (TCP RST / ICMP unreachable sent)"),
    SvcNoLocalEndpoint = (SvcLookup, "svc-no-local-endpoint", "traffic policy Local and no local endpoint"),
    SvcSourceNotAllowed = (SvcLookup, "svc-source-not-allowed", "client outside the load balancer's loadBalancerSourceRanges"),
    // ct
    CtFull = (CtCreate, "ct-full", "flow table full of live flows; new flow refused"),
    CtInvalid = (CtCreate, "ct-invalid", "packet cannot start a flow (e.g. a TCP RST without state)"),
    SnatExhausted = (CtCreate, "snat-exhausted", "no free SNAT port for this destination"),
    // neighbour
    NeighUnresolved = (Neighbour, "neigh-unresolved", "next hop unresolved and its hold queue is full"),
    NeighTimeout = (Neighbour, "neigh-timeout", "next hop did not answer ARP or neighbour solicitation in time"),
    // worker
    HandoffFull = (Steer, "handoff-full", "owning worker's handoff queue full"),
    NoBuffer = (Worker, "no-buffer", "buffer pool empty"),
    TxFull = (Tx, "tx-full", "transmit ring full"),
    IcmpRateLimited = (IcmpError, "icmp-rate-limited", "ICMP error not sent: rate limit"),
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_stage_has_its_files_and_a_row_in_the_architecture_page() {
        // The page's stage table: a newcomer finds each stage's files from its name.
        let doc = include_str!("../../docs/architecture.md");
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .filter(|l| l.starts_with("| "))
            .map(|l| l.split('|').map(str::trim).collect())
            .collect();
        for st in Stage::ALL {
            for f in st.files() {
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("src")
                    .join(f);
                assert!(path.is_file(), "{}: {} missing", st.name(), path.display());
            }
            let row = rows
                .iter()
                .find(|r| r.len() > 2 && r[1].split(", ").any(|n| n == st.name()))
                .unwrap_or_else(|| panic!("docs/architecture.md has no row for {}", st.name()));
            for f in st.files() {
                let base = f.rsplit('/').next().unwrap();
                assert!(
                    row[2].contains(&format!("`{base}`")),
                    "the row of {} does not name {base}",
                    st.name()
                );
            }
        }
    }

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
