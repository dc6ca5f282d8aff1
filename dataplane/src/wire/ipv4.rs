//! Internet Protocol version 4 (RFC 791) and IPv4 CIDR prefixes.

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

use super::checksum;
use super::{Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
    pub const OPTIONS: usize = 20;
    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const FRAG_OFF_MASK: u16 = 0x1fff;
    /// Fragment offsets are expressed in 8-octet units.
    pub const FRAG_UNIT: usize = 8;
    /// The IHL is expressed in 4-octet words.
    pub const IHL_UNIT: usize = 4;
    pub const IHL_MASK: u8 = 0x0f;
    pub const VERSION_SHIFT: u32 = 4;
    pub const ECN_MASK: u8 = 0x03;
    pub const DSCP_SHIFT: u32 = 2;
    pub const VERSION: u8 = 4;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::OPTIONS;

/// A read/write wrapper around an IPv4 packet buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of an IPv4 header without options (20).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures: buffer >= 20 bytes, version == 4, IHL >= 5 and
    /// header_len <= total_len <= buffer length. Does not verify the checksum.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || self.version() != field::VERSION {
            return Err(Error);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || total_len < header_len || total_len > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[range];
        u16::from_be_bytes([d[0], d[1]])
    }

    fn read_addr(&self, range: core::ops::Range<usize>) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[range];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Version field (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> field::VERSION_SHIFT
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & field::IHL_MASK) * field::IHL_UNIT
    }

    /// Differentiated services code point (RFC 2474).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> field::DSCP_SHIFT
    }

    /// Explicit congestion notification bits (RFC 3168).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & field::ECN_MASK
    }

    /// Total length (header + payload) in bytes.
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    /// "Don't fragment" flag.
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF) & field::FLAG_DF != 0
    }

    /// "More fragments" flag.
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF) & field::FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLG_OFF) & field::FRAG_OFF_MASK) * field::FRAG_UNIT as u16
    }

    /// Time to live.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        self.read_addr(field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.read_addr(field::DST_ADDR)
    }

    /// Header options (bytes 20..header_len).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The header bytes (0..header_len).
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// Whether the header checksum is correct (RFC 791, RFC 1071).
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.header()) == !0
    }

    /// Payload, bounded by `total_len` (trailing link-layer padding is
    /// excluded).
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the version field.
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & field::IHL_MASK) | (value << field::VERSION_SHIFT);
    }

    /// Sets the header length in bytes (must be a multiple of 4, <= 60).
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & !field::IHL_MASK) | ((value / field::IHL_UNIT) as u8 & field::IHL_MASK);
    }

    /// Sets the DSCP.
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & field::ECN_MASK) | (value << field::DSCP_SHIFT);
    }

    /// Sets the ECN bits.
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & !field::ECN_MASK) | (value & field::ECN_MASK);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        self.write_u16(field::LENGTH, value)
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        self.write_u16(field::IDENT, value)
    }

    /// Clears the flags and fragment offset.
    pub fn clear_flags(&mut self) {
        let raw = self.read_u16(field::FLG_OFF) & field::FRAG_OFF_MASK;
        self.write_u16(field::FLG_OFF, raw)
    }

    /// Sets the "don't fragment" flag.
    pub fn set_dont_frag(&mut self, value: bool) {
        let raw = self.read_u16(field::FLG_OFF) & !field::FLAG_DF;
        let raw = if value { raw | field::FLAG_DF } else { raw };
        self.write_u16(field::FLG_OFF, raw)
    }

    /// Sets the "more fragments" flag.
    pub fn set_more_frags(&mut self, value: bool) {
        let raw = self.read_u16(field::FLG_OFF) & !field::FLAG_MF;
        let raw = if value { raw | field::FLAG_MF } else { raw };
        self.write_u16(field::FLG_OFF, raw)
    }

    /// Sets the fragment offset in bytes (must be a multiple of 8).
    pub fn set_frag_offset(&mut self, value: u16) {
        let raw = self.read_u16(field::FLG_OFF) & !field::FRAG_OFF_MASK;
        let raw = raw | ((value / field::FRAG_UNIT as u16) & field::FRAG_OFF_MASK);
        self.write_u16(field::FLG_OFF, raw)
    }

    /// Sets the time to live.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value
    }

    /// Sets the protocol.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into()
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets())
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets())
    }

    /// Mutable header options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.header());
        self.set_checksum(!sum)
    }

    /// Mutable payload, bounded by `total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// High-level representation of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub next_header: IpProtocol,
    /// Payload length in bytes (total_len - header_len).
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv4Repr {
    /// Parses a header. Runs `check_len`; does **not** verify the checksum
    /// (use [`Ipv4Packet::verify_checksum`]); options, DSCP/ECN and
    /// fragmentation fields are not represented and are ignored.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Ipv4Packet<&T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Length of the emitted header (20).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header: version 4, IHL 5, DSCP/ECN 0, ident 0, DF
    /// set, `total_len = 20 + payload_len`, and a filled checksum. The buffer
    /// must hold at least 20 bytes; `payload_len` must be <= 65515.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version(field::VERSION);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp(0);
        packet.set_ecn(0);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(0);
        packet.clear_flags();
        packet.set_dont_frag(true);
        packet.set_frag_offset(0);
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

/// Error from building or parsing an [`Ipv4Cidr`] or
/// [`super::ipv6::Ipv6Cidr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrError {
    /// The text has no `/` separating address and prefix length.
    MissingPrefixLen,
    /// The address part is not a valid address.
    InvalidAddress,
    /// The prefix length is not a number or exceeds the address width.
    InvalidPrefixLen,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CidrError::MissingPrefixLen => "invalid CIDR: expected ADDRESS/PREFIX_LEN",
            CidrError::InvalidAddress => "invalid CIDR: bad address",
            CidrError::InvalidPrefixLen => "invalid CIDR: prefix length out of range",
        })
    }
}

impl std::error::Error for CidrError {}

/// Splits `addr/len` and parses the prefix length (decimal digits only).
pub(super) fn split_cidr(s: &str, max: u8) -> core::result::Result<(&str, u8), CidrError> {
    let (addr, len) = s.split_once('/').ok_or(CidrError::MissingPrefixLen)?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|c| c.is_ascii_digit()) {
        return Err(CidrError::InvalidPrefixLen);
    }
    let len: u8 = len.parse().map_err(|_| CidrError::InvalidPrefixLen)?;
    if len > max {
        return Err(CidrError::InvalidPrefixLen);
    }
    Ok((addr, len))
}

/// An IPv4 address with a prefix length (the host bits are kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    address: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// Creates a prefix; `prefix_len` must be <= 32.
    pub const fn new(address: Ipv4Addr, prefix_len: u8) -> core::result::Result<Self, CidrError> {
        if prefix_len > 32 {
            Err(CidrError::InvalidPrefixLen)
        } else {
            Ok(Ipv4Cidr {
                address,
                prefix_len,
            })
        }
    }

    /// The address, host bits included.
    pub const fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask, e.g. 255.255.0.0 for /16.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    fn mask_bits(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The prefix with host bits cleared.
    pub fn network(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            address: Ipv4Addr::from(u32::from(self.address) & self.mask_bits()),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `addr` lies inside the prefix.
    pub fn contains_addr(&self, addr: &Ipv4Addr) -> bool {
        let mask = self.mask_bits();
        u32::from(*addr) & mask == u32::from(self.address) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    /// Parses `a.b.c.d/len`.
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let (addr, len) = split_cidr(s, 32)?;
        let address = addr.parse().map_err(|_| CidrError::InvalidAddress)?;
        Ipv4Cidr::new(address, len)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 30] = [
        // version 4, IHL 6 (24 bytes), DSCP 46 (EF), ECN 1
        0x46, 0xb9,
        // total length 28
        0x00, 0x1c,
        // identification 0x0102
        0x01, 0x02,
        // flags: MF, fragment offset 0x20 (256 bytes)
        0x20, 0x20,
        // TTL 64, protocol UDP
        0x40, 0x11,
        // checksum
        0x41, 0xf3,
        // source 10.0.0.1
        0x0a, 0x00, 0x00, 0x01,
        // destination 10.0.0.2
        0x0a, 0x00, 0x00, 0x02,
        // options: NOP NOP NOP EOL
        0x01, 0x01, 0x01, 0x00,
        // payload
        0xaa, 0xbb, 0xcc, 0xdd,
        // Ethernet padding
        0x00, 0x00,
    ];

    #[rustfmt::skip]
    static REPR_BYTES: [u8; 24] = [
        // version 4, IHL 5, DSCP/ECN 0
        0x45, 0x00,
        // total length 24
        0x00, 0x18,
        // identification 0
        0x00, 0x00,
        // flags: DF, offset 0
        0x40, 0x00,
        // TTL 64, protocol TCP
        0x40, 0x06,
        // checksum
        0x26, 0xde,
        // source 10.0.0.1
        0x0a, 0x00, 0x00, 0x01,
        // destination 10.0.0.2
        0x0a, 0x00, 0x00, 0x02,
        // payload
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn packet_repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            next_header: IpProtocol::Tcp,
            payload_len: 4,
            hop_limit: 64,
        }
    }

    #[test]
    fn test_deconstruct() {
        let packet = Ipv4Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.dscp(), 46);
        assert_eq!(packet.ecn(), 1);
        assert_eq!(packet.total_len(), 28);
        assert_eq!(packet.ident(), 0x0102);
        assert!(!packet.dont_frag());
        assert!(packet.more_frags());
        assert_eq!(packet.frag_offset(), 256);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.next_header(), IpProtocol::Udp);
        assert_eq!(packet.checksum(), 0x41f3);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(packet.options(), &[0x01, 0x01, 0x01, 0x00]);
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; 30];
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes);
        packet.set_version(4);
        packet.set_header_len(24);
        packet.set_dscp(46);
        packet.set_ecn(1);
        packet.set_total_len(28);
        packet.set_ident(0x0102);
        packet.clear_flags();
        packet.set_more_frags(true);
        packet.set_dont_frag(false);
        packet.set_frag_offset(256);
        packet.set_hop_limit(64);
        packet.set_next_header(IpProtocol::Udp);
        packet.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        packet.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        packet
            .options_mut()
            .copy_from_slice(&[0x01, 0x01, 0x01, 0x00]);
        packet.fill_checksum();
        packet
            .payload_mut()
            .copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let bytes = packet.into_inner();
        bytes[28..].fill(0);
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn test_bad_checksum() {
        let mut bytes = PACKET_BYTES;
        bytes[8] = 63;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum());
        // parse does not check the checksum
        assert!(Ipv4Repr::parse(&packet).is_ok());
    }

    #[test]
    fn test_parse() {
        let packet = Ipv4Packet::new_checked(&REPR_BYTES[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Ok(packet_repr()));
    }

    #[test]
    fn test_emit() {
        let repr = packet_repr();
        let mut bytes = vec![0xa5; repr.buffer_len() + repr.payload_len];
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes);
        repr.emit(&mut packet);
        packet
            .payload_mut()
            .copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(packet.verify_checksum());
        assert_eq!(&bytes[..], &REPR_BYTES[..]);
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            Ipv4Packet::new_checked(&PACKET_BYTES[..19]).err(),
            Some(Error)
        );
        // total_len 28 > 27 bytes of buffer
        assert_eq!(
            Ipv4Packet::new_checked(&PACKET_BYTES[..27]).err(),
            Some(Error)
        );
        assert!(Ipv4Packet::new_checked(&PACKET_BYTES[..28]).is_ok());
    }

    #[test]
    fn test_check_len_fields() {
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x66; // version 6
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]).err(), Some(Error));
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x44; // IHL 4
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]).err(), Some(Error));
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x48; // IHL 8 = 32 bytes > total_len 28
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]).err(), Some(Error));
        let packet = Ipv4Packet::new_unchecked(&bytes[..]);
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error));
    }

    #[test]
    fn test_cidr() {
        let cidr: Ipv4Cidr = "10.0.0.1/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.0.0.1/16");
        assert_eq!(cidr.address(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(cidr.prefix_len(), 16);
        assert_eq!(cidr.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(cidr.network().to_string(), "10.0.0.0/16");
        assert!(cidr.contains_addr(&Ipv4Addr::new(10, 0, 255, 255)));
        assert!(!cidr.contains_addr(&Ipv4Addr::new(10, 1, 0, 0)));
        let all: Ipv4Cidr = "1.2.3.4/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains_addr(&Ipv4Addr::new(255, 1, 1, 1)));
        let host = Ipv4Cidr::new(Ipv4Addr::new(1, 2, 3, 4), 32).unwrap();
        assert!(host.contains_addr(&Ipv4Addr::new(1, 2, 3, 4)));
        assert!(!host.contains_addr(&Ipv4Addr::new(1, 2, 3, 5)));
        assert_eq!(
            Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 33),
            Err(CidrError::InvalidPrefixLen)
        );
        assert_eq!(
            "10.0.0.1".parse::<Ipv4Cidr>(),
            Err(CidrError::MissingPrefixLen)
        );
        assert_eq!(
            "10.0.0/8".parse::<Ipv4Cidr>(),
            Err(CidrError::InvalidAddress)
        );
        assert_eq!(
            "10.0.0.1/33".parse::<Ipv4Cidr>(),
            Err(CidrError::InvalidPrefixLen)
        );
        assert_eq!(
            "10.0.0.1/+8".parse::<Ipv4Cidr>(),
            Err(CidrError::InvalidPrefixLen)
        );
        assert_eq!(
            "10.0.0.1/".parse::<Ipv4Cidr>(),
            Err(CidrError::InvalidPrefixLen)
        );
    }
}
