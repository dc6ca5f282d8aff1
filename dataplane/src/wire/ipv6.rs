//! Internet Protocol version 6 (RFC 8200) fixed header and IPv6 CIDR
//! prefixes. Extension headers are not interpreted: `next_header` and
//! `payload` describe whatever follows the fixed header.

use core::fmt;
use core::str::FromStr;
use std::net::Ipv6Addr;

use super::ipv4::{split_cidr, CidrError};
use super::{Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
    pub const PAYLOAD: usize = 40;
    pub const VERSION_SHIFT: u32 = 28;
    pub const VERSION_MASK: u32 = 0xf;
    pub const TC_SHIFT: u32 = 20;
    pub const TC_MASK: u32 = 0xff;
    pub const FLOW_MASK: u32 = 0x000f_ffff;
    pub const VERSION: u8 = 6;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A read/write wrapper around an IPv6 packet buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed IPv6 header (40).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures: buffer >= 40 bytes, version == 6 and
    /// 40 + payload_len <= buffer length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN
            || self.version() != field::VERSION
            || HEADER_LEN + usize::from(self.payload_len()) > len
        {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    fn read_addr(&self, range: core::ops::Range<usize>) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.buffer.as_ref()[range]);
        Ipv6Addr::from(octets)
    }

    /// Version field (6 for a valid packet).
    pub fn version(&self) -> u8 {
        (self.first_word() >> field::VERSION_SHIFT) as u8
    }

    /// Traffic class (DSCP << 2 | ECN).
    pub fn traffic_class(&self) -> u8 {
        ((self.first_word() >> field::TC_SHIFT) & field::TC_MASK) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & field::FLOW_MASK
    }

    /// Payload length (everything after the fixed header, extension headers
    /// included).
    pub fn payload_len(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Next header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        self.read_addr(field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        self.read_addr(field::DST_ADDR)
    }

    /// Payload, bounded by `payload_len` (trailing padding excluded).
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[field::PAYLOAD..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_first_word(&mut self, value: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the version field.
    pub fn set_version(&mut self, value: u8) {
        let w = self.first_word() & !(field::VERSION_MASK << field::VERSION_SHIFT);
        self.set_first_word(w | ((u32::from(value) & field::VERSION_MASK) << field::VERSION_SHIFT))
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let w = self.first_word() & !(field::TC_MASK << field::TC_SHIFT);
        self.set_first_word(w | (u32::from(value) << field::TC_SHIFT))
    }

    /// Sets the flow label (low 20 bits of `value`).
    pub fn set_flow_label(&mut self, value: u32) {
        let w = self.first_word() & !field::FLOW_MASK;
        self.set_first_word(w | (value & field::FLOW_MASK))
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into()
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets())
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets())
    }

    /// Mutable payload, bounded by `payload_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// High-level representation of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Parses the fixed header (runs `check_len`; traffic class and flow
    /// label are not represented).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Ipv6Packet<&T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Length of the emitted header (40).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header (traffic class and flow label 0) into a
    /// buffer of at least 40 bytes; `payload_len` must be <= 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_first_word(0);
        packet.set_version(field::VERSION);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
    }
}

/// An IPv6 address with a prefix length (the host bits are kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv6Cidr {
    address: Ipv6Addr,
    prefix_len: u8,
}

impl Ipv6Cidr {
    /// Creates a prefix; `prefix_len` must be <= 128.
    pub const fn new(address: Ipv6Addr, prefix_len: u8) -> core::result::Result<Self, CidrError> {
        if prefix_len > 128 {
            Err(CidrError::InvalidPrefixLen)
        } else {
            Ok(Ipv6Cidr {
                address,
                prefix_len,
            })
        }
    }

    /// The address, host bits included.
    pub const fn address(&self) -> Ipv6Addr {
        self.address
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn mask_bits(&self) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The netmask, e.g. ffff:ffff:: for /32.
    pub fn netmask(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.mask_bits())
    }

    /// The prefix with host bits cleared.
    pub fn network(&self) -> Ipv6Cidr {
        Ipv6Cidr {
            address: Ipv6Addr::from(u128::from(self.address) & self.mask_bits()),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `addr` lies inside the prefix.
    pub fn contains_addr(&self, addr: &Ipv6Addr) -> bool {
        let mask = self.mask_bits();
        u128::from(*addr) & mask == u128::from(self.address) & mask
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = CidrError;

    /// Parses `addr/len`, e.g. `fd00::1/64`.
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let (addr, len) = split_cidr(s, 128)?;
        let address = addr.parse().map_err(|_| CidrError::InvalidAddress)?;
        Ipv6Cidr::new(address, len)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 46] = [
        // version 6, traffic class 0xb8, flow label 0x12345
        0x6b, 0x81, 0x23, 0x45,
        // payload length 4, next header UDP, hop limit 64
        0x00, 0x04, 0x11, 0x40,
        // source fe80::1
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // destination ff02::1
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // payload
        0xaa, 0xbb, 0xcc, 0xdd,
        // trailing padding
        0x00, 0x00,
    ];

    fn src() -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)
    }

    fn dst() -> Ipv6Addr {
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
    }

    fn packet_repr() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: src(),
            dst_addr: dst(),
            next_header: IpProtocol::Udp,
            payload_len: 4,
            hop_limit: 64,
        }
    }

    #[test]
    fn test_deconstruct() {
        let packet = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xb8);
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload_len(), 4);
        assert_eq!(packet.next_header(), IpProtocol::Udp);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.src_addr(), src());
        assert_eq!(packet.dst_addr(), dst());
        assert_eq!(packet.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; 46];
        let mut packet = Ipv6Packet::new_unchecked(&mut bytes);
        packet.set_version(6);
        packet.set_traffic_class(0xb8);
        packet.set_flow_label(0x12345);
        packet.set_payload_len(4);
        packet.set_next_header(IpProtocol::Udp);
        packet.set_hop_limit(64);
        packet.set_src_addr(&src());
        packet.set_dst_addr(&dst());
        packet
            .payload_mut()
            .copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let bytes = packet.into_inner();
        bytes[44..].fill(0);
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn test_parse() {
        let packet = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&packet), Ok(packet_repr()));
    }

    #[test]
    fn test_emit() {
        let repr = packet_repr();
        let mut bytes = vec![0xa5; repr.buffer_len() + 6];
        let mut packet = Ipv6Packet::new_unchecked(&mut bytes);
        repr.emit(&mut packet);
        packet
            .payload_mut()
            .copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        bytes[44..].fill(0);
        let mut expected = PACKET_BYTES;
        expected[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET_BYTES[..39]).err(),
            Some(Error)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET_BYTES[..43]).err(),
            Some(Error)
        );
        assert!(Ipv6Packet::new_checked(&PACKET_BYTES[..44]).is_ok());
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x4b;
        assert_eq!(Ipv6Packet::new_checked(&bytes[..]).err(), Some(Error));
        let packet = Ipv6Packet::new_unchecked(&bytes[..]);
        assert_eq!(Ipv6Repr::parse(&packet), Err(Error));
    }

    #[test]
    fn test_cidr() {
        let cidr: Ipv6Cidr = "fd00:1:2::5/48".parse().unwrap();
        assert_eq!(cidr.to_string(), "fd00:1:2::5/48");
        assert_eq!(
            cidr.netmask(),
            "ffff:ffff:ffff::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(cidr.network().to_string(), "fd00:1:2::/48");
        assert!(cidr.contains_addr(&"fd00:1:2:ffff::1".parse().unwrap()));
        assert!(!cidr.contains_addr(&"fd00:1:3::".parse().unwrap()));
        let all = Ipv6Cidr::new(Ipv6Addr::LOCALHOST, 0).unwrap();
        assert!(all.contains_addr(&dst()));
        assert_eq!(all.netmask(), Ipv6Addr::UNSPECIFIED);
        assert!(Ipv6Cidr::new(Ipv6Addr::LOCALHOST, 128)
            .unwrap()
            .contains_addr(&Ipv6Addr::LOCALHOST));
        assert_eq!(
            Ipv6Cidr::new(Ipv6Addr::LOCALHOST, 129),
            Err(CidrError::InvalidPrefixLen)
        );
        assert_eq!(
            "fd00::1".parse::<Ipv6Cidr>(),
            Err(CidrError::MissingPrefixLen)
        );
        assert_eq!(
            "fd00:::1/64".parse::<Ipv6Cidr>(),
            Err(CidrError::InvalidAddress)
        );
        assert_eq!(
            "fd00::1/129".parse::<Ipv6Cidr>(),
            Err(CidrError::InvalidPrefixLen)
        );
    }
}
