//! Packet wire formats: zero-copy views over byte buffers and small
//! high-level representations, in the style of smoltcp's `wire` module.
//!
//! Every protocol lives in its own module and offers a view type
//! `XxxPacket<T: AsRef<[u8]>>` plus, where useful, an `XxxRepr`.
//!
//! # Panic rules
//!
//! * Bytes that come from the network (or any other untrusted source) must
//!   enter through `XxxPacket::new_checked`. It calls `check_len`, which
//!   validates every length the accessors rely on; after it succeeds **no
//!   getter panics**, whatever the bytes are (this is property-tested in
//!   `proptests`).
//! * `new_unchecked` performs no validation; getters on such a view may panic
//!   on short buffers. Use it only on buffers you have sized yourself.
//! * Setters may panic when the buffer is too short for the field they write,
//!   and setters that change a length field (`set_header_len`, `set_total_len`,
//!   `set_payload_len`, `set_len`, ...) can make a previously checked view fail
//!   `check_len`; call `check_len` again before trusting such a view.
//! * `XxxRepr::emit` writes into a buffer that must be at least
//!   `XxxRepr::buffer_len()` bytes long (plus the payload where the repr
//!   describes one); emitting into a shorter buffer panics.
//! * `XxxRepr::parse` never panics: it re-runs `check_len` itself.

use core::fmt;

/// The single error type of the wire layer: the bytes do not form a packet
/// this module can interpret (too short, inconsistent lengths, wrong version,
/// unsupported variant, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed packet")
    }
}

impl std::error::Error for Error {}

/// Result type of the wire layer.
pub type Result<T> = core::result::Result<T, Error>;

/// Declares an "open" enum: named variants for the values we know plus an
/// `Unknown(raw)` variant, with lossless conversions from and to the raw
/// integer. `Display` prints the variant name, or the raw value in hex for
/// `Unknown`.
macro_rules! enum_with_unknown {
    (
        $( #[$enum_attr:meta] )*
        pub enum $name:ident($ty:ty) {
            $(
                $( #[$variant_attr:meta] )*
                $variant:ident = $value:literal
            ),+ $(,)?
        }
    ) => {
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy, Hash)]
        $( #[$enum_attr] )*
        pub enum $name {
            $(
                $( #[$variant_attr] )*
                $variant,
            )+
            /// A value without a named variant.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match *self {
                    $( $name::$variant => f.write_str(stringify!($variant)), )+
                    $name::Unknown(other) => write!(f, "{:#x}", other),
                }
            }
        }
    };
}

enum_with_unknown! {
    /// EtherType values (IEEE 802 numbers, as registered with IANA).
    pub enum EtherType(u16) {
        /// Internet Protocol version 4.
        Ipv4 = 0x0800,
        /// Address Resolution Protocol.
        Arp = 0x0806,
        /// IEEE 802.1Q VLAN tag (C-tag).
        Vlan = 0x8100,
        /// IEEE 802.1ad service tag (S-tag, "QinQ").
        QinQ = 0x88a8,
        /// Internet Protocol version 6.
        Ipv6 = 0x86dd,
    }
}

enum_with_unknown! {
    /// IP protocol numbers / IPv6 next-header values (IANA registry).
    pub enum IpProtocol(u8) {
        /// IPv6 Hop-by-Hop Options (RFC 8200).
        HopByHop = 0,
        /// ICMP (RFC 792).
        Icmp = 1,
        /// TCP (RFC 9293).
        Tcp = 6,
        /// UDP (RFC 768).
        Udp = 17,
        /// IPv6 Routing header (RFC 8200).
        Ipv6Route = 43,
        /// IPv6 Fragment header (RFC 8200).
        Ipv6Frag = 44,
        /// ICMPv6 (RFC 4443).
        Icmpv6 = 58,
        /// IPv6 "no next header" (RFC 8200).
        Ipv6NoNxt = 59,
        /// IPv6 Destination Options (RFC 8200).
        Ipv6Opts = 60,
        /// SCTP (RFC 9260).
        Sctp = 132,
    }
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod offload;
pub mod sctp;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod crosscheck;
#[cfg(test)]
mod proptests;

pub use self::arp::{ArpOperation, ArpPacket, ArpRepr};
pub use self::ethernet::{EthernetFrame, EthernetRepr, MacAddr, ParseMacAddrError};
pub use self::icmpv4::Icmpv4Packet;
pub use self::icmpv6::Icmpv6Packet;
pub use self::ipv4::{CidrError, Ipv4Cidr, Ipv4Packet, Ipv4Repr};
pub use self::ipv6::{Ipv6Cidr, Ipv6Packet, Ipv6Repr};
pub use self::sctp::SctpPacket;
pub use self::tcp::TcpPacket;
pub use self::udp::UdpPacket;

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_enum_roundtrip() {
        assert_eq!(EtherType::from(0x0800u16), EtherType::Ipv4);
        assert_eq!(EtherType::from(0x1234u16), EtherType::Unknown(0x1234));
        assert_eq!(u16::from(EtherType::QinQ), 0x88a8);
        assert_eq!(u16::from(EtherType::Unknown(0x1234)), 0x1234);
        assert_eq!(IpProtocol::from(132u8), IpProtocol::Sctp);
        assert_eq!(u8::from(IpProtocol::HopByHop), 0);
        assert_eq!(IpProtocol::from(250u8), IpProtocol::Unknown(250));
        for raw in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(raw)), raw);
        }
    }

    #[test]
    fn test_display() {
        assert_eq!(EtherType::Ipv6.to_string(), "Ipv6");
        assert_eq!(EtherType::Unknown(0x1234).to_string(), "0x1234");
        assert_eq!(IpProtocol::Unknown(0xfe).to_string(), "0xfe");
        assert_eq!(Error.to_string(), "malformed packet");
    }
}
