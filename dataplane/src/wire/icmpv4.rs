//! Internet Control Message Protocol for IPv4 (RFC 792; RFC 1191 for the
//! next-hop MTU of "fragmentation needed").
//!
//! The view's buffer is taken to be exactly the ICMP message (build it from
//! `Ipv4Packet::payload()`); the checksum covers the whole buffer.

use super::checksum;
use super::{Error, Result};

/// ICMPv4 message types (RFC 792).
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// ICMPv4 message codes (RFC 792, RFC 1191).
pub mod msg_code {
    /// Destination unreachable: network unreachable.
    pub const NET_UNREACHABLE: u8 = 0;
    /// Destination unreachable: host unreachable.
    pub const HOST_UNREACHABLE: u8 = 1;
    /// Destination unreachable: protocol unreachable.
    pub const PROTO_UNREACHABLE: u8 = 2;
    /// Destination unreachable: port unreachable.
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Destination unreachable: fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
    /// Time exceeded: fragment reassembly time exceeded.
    pub const FRAG_REASSEMBLY_EXCEEDED: u8 = 1;
}

/// Whether `msg_type` is an error message (one that quotes the offending
/// datagram and must never be answered with another error, RFC 1122
/// section 3.2.2).
pub fn is_error(msg_type: u8) -> bool {
    matches!(
        msg_type,
        msg_type::DST_UNREACHABLE
            | msg_type::SOURCE_QUENCH
            | msg_type::REDIRECT
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// "Rest of header": echo identifier + sequence, unused, next-hop MTU,
    /// pointer or gateway address depending on the type.
    pub const REST_OF_HEADER: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Next-hop MTU of "fragmentation needed" (RFC 1191).
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the ICMPv4 header.
pub const HEADER_LEN: usize = field::DATA;

/// A read/write wrapper around an ICMPv4 message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Length of the ICMPv4 header (8).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the buffer holds the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[range];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Message type (see [`msg_type`]).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code (see [`msg_code`]).
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Echo identifier (echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request/reply).
    pub fn echo_seq_no(&self) -> u16 {
        self.read_u16(field::ECHO_SEQNO)
    }

    /// The four "rest of header" bytes as a big-endian word.
    pub fn rest_of_header(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::REST_OF_HEADER];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        self.read_u16(field::NEXT_HOP_MTU)
    }

    /// Bytes after the 8-byte header: echo data, or for error messages the
    /// quoted IPv4 header plus at least 8 bytes of its payload.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// Whether the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == !0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        self.write_u16(field::ECHO_IDENT, value)
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.write_u16(field::ECHO_SEQNO, value)
    }

    /// Sets the four "rest of header" bytes (e.g. `0` for "unused", or the
    /// next-hop MTU in the low 16 bits for "fragmentation needed").
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the next-hop MTU (RFC 1191); the preceding unused bytes are not
    /// touched.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.write_u16(field::NEXT_HOP_MTU, value)
    }

    /// Mutable bytes after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes and stores the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[rustfmt::skip]
    static ECHO_BYTES: [u8; 12] = [
        // type echo request, code 0, checksum
        0x08, 0x00, 0x8e, 0xfe,
        // identifier 0x1234, sequence 0xabcd
        0x12, 0x34, 0xab, 0xcd,
        // data
        0xaa, 0x00, 0x00, 0xff,
    ];

    #[rustfmt::skip]
    static FRAG_NEEDED_BYTES: [u8; 36] = [
        // type destination unreachable, code fragmentation needed, checksum
        0x03, 0x04, 0x00, 0x00,
        // unused, next-hop MTU 1400
        0x00, 0x00, 0x05, 0x78,
        // quoted IPv4 header: version/IHL, DSCP/ECN, total length 1500
        0x45, 0x00, 0x05, 0xdc,
        // identification, flags DF
        0x00, 0x00, 0x40, 0x00,
        // TTL, protocol TCP, checksum
        0x40, 0x06, 0x00, 0x00,
        // source, destination
        0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02,
        // first 8 bytes of the quoted payload: ports, sequence number
        0x30, 0x39, 0x00, 0x50,
        0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn test_echo_deconstruct() {
        let packet = Icmpv4Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(packet.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(packet.msg_code(), 0);
        assert_eq!(packet.checksum(), 0x8efe);
        assert_eq!(packet.echo_ident(), 0x1234);
        assert_eq!(packet.echo_seq_no(), 0xabcd);
        assert_eq!(packet.rest_of_header(), 0x1234_abcd);
        assert_eq!(packet.data(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(packet.verify_checksum());
        assert!(!is_error(packet.msg_type()));
    }

    #[test]
    fn test_echo_construct() {
        let mut bytes = vec![0xa5; ECHO_BYTES.len()];
        let mut packet = Icmpv4Packet::new_unchecked(&mut bytes);
        packet.set_msg_type(msg_type::ECHO_REQUEST);
        packet.set_msg_code(0);
        packet.set_echo_ident(0x1234);
        packet.set_echo_seq_no(0xabcd);
        packet.data_mut().copy_from_slice(&[0xaa, 0x00, 0x00, 0xff]);
        packet.fill_checksum();
        assert_eq!(&packet.into_inner()[..], &ECHO_BYTES[..]);
    }

    #[test]
    fn test_frag_needed() {
        let mut bytes = vec![0xa5; FRAG_NEEDED_BYTES.len()];
        let mut packet = Icmpv4Packet::new_unchecked(&mut bytes);
        packet.set_msg_type(msg_type::DST_UNREACHABLE);
        packet.set_msg_code(msg_code::FRAG_NEEDED);
        packet.set_rest_of_header(0);
        packet.set_next_hop_mtu(1400);
        packet.data_mut().copy_from_slice(&FRAG_NEEDED_BYTES[8..]);
        packet.fill_checksum();
        assert!(packet.verify_checksum());
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(is_error(packet.msg_type()));
        assert_eq!(packet.msg_code(), msg_code::FRAG_NEEDED);
        assert_eq!(packet.next_hop_mtu(), 1400);
        assert_eq!(packet.rest_of_header(), 1400);
        assert_eq!(&bytes[4..], &FRAG_NEEDED_BYTES[4..]);
        let quoted = super::super::ipv4::Ipv4Packet::new_unchecked(packet.data());
        assert_eq!(quoted.src_addr(), std::net::Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn test_is_error() {
        for t in [3, 4, 5, 11, 12] {
            assert!(is_error(t));
        }
        for t in [0, 8, 13, 14, 255] {
            assert!(!is_error(t));
        }
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            Icmpv4Packet::new_checked(&ECHO_BYTES[..7]).err(),
            Some(Error)
        );
        let packet = Icmpv4Packet::new_checked(&ECHO_BYTES[..8]).unwrap();
        assert_eq!(packet.data(), &[] as &[u8]);
    }
}
