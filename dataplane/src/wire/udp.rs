//! User Datagram Protocol header (RFC 768; IPv6 rules from RFC 8200 section
//! 8.1).
//!
//! Checksum rules: a transmitted checksum of `0` means "no checksum". Over
//! IPv4 such a datagram verifies; over IPv6 it does not (RFC 8200 section
//! 8.1 requires receivers to discard it). A computed checksum of `0` is
//! transmitted as `0xffff`. When updating a UDP checksum incrementally with
//! [`super::checksum::update16`], leave a stored `0` alone and map a result
//! of `0` to `0xffff`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A read/write wrapper around a UDP datagram buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header (8).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures: buffer >= 8 bytes and 8 <= len <= buffer length.
    pub fn check_len(&self) -> Result<()> {
        let buf_len = self.buffer.as_ref().len();
        if buf_len < HEADER_LEN {
            return Err(Error);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN || len > buf_len {
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

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    fn sum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Udp, u32::from(self.len()));
        checksum::combine(&[pseudo, checksum::data(self.datagram())])
    }

    fn sum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Udp, u32::from(self.len()));
        checksum::combine(&[pseudo, checksum::data(self.datagram())])
    }

    /// Whether the checksum is correct for an IPv4 pseudo header; a stored
    /// `0` ("no checksum") verifies.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.sum_v4(src, dst) == !0
    }

    /// Whether the checksum is correct for an IPv6 pseudo header; a stored
    /// `0` does **not** verify (RFC 8200 section 8.1).
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() != 0 && self.sum_v6(src, dst) == !0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        self.write_u16(field::SRC_PORT, value)
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        self.write_u16(field::DST_PORT, value)
    }

    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        self.write_u16(field::LENGTH, value)
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    /// Mutable payload, bounded by the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }

    fn store(&mut self, sum: u16) {
        let csum = !sum;
        self.set_checksum(if csum == 0 { 0xffff } else { csum })
    }

    /// Computes and stores the checksum for an IPv4 pseudo header (a
    /// computed `0` is stored as `0xffff`).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let sum = self.sum_v4(src, dst);
        self.store(sum)
    }

    /// Computes and stores the checksum for an IPv6 pseudo header (a
    /// computed `0` is stored as `0xffff`).
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let sum = self.sum_v6(src, dst);
        self.store(sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 14] = [
        // source port 48896, destination port 53
        0xbf, 0x00, 0x00, 0x35,
        // length 12, checksum
        0x00, 0x0c, 0x12, 0x4d,
        // payload
        0xaa, 0x00, 0x00, 0xff,
        // trailing bytes beyond the length field
        0x01, 0x02,
    ];

    #[test]
    fn test_deconstruct() {
        let packet = UdpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.src_port(), 48896);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.len(), 12);
        assert!(!packet.is_empty());
        assert_eq!(packet.checksum(), 0x124d);
        assert_eq!(packet.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(packet.verify_checksum_v4(SRC, DST));
        assert!(!packet.verify_checksum_v4(DST, DST));
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; 14];
        let mut packet = UdpPacket::new_unchecked(&mut bytes);
        packet.set_src_port(48896);
        packet.set_dst_port(53);
        packet.set_len(12);
        packet
            .payload_mut()
            .copy_from_slice(&[0xaa, 0x00, 0x00, 0xff]);
        packet.fill_checksum_v4(SRC, DST);
        let bytes = packet.into_inner();
        bytes[12..].copy_from_slice(&[0x01, 0x02]);
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn test_zero_checksum() {
        let mut bytes = PACKET_BYTES;
        let mut packet = UdpPacket::new_unchecked(&mut bytes[..]);
        packet.set_checksum(0);
        assert!(packet.verify_checksum_v4(SRC, DST));
        let v6 = Ipv6Addr::LOCALHOST;
        assert!(!packet.verify_checksum_v6(&v6, &v6));
        packet.fill_checksum_v6(&v6, &v6);
        assert!(packet.verify_checksum_v6(&v6, &v6));
    }

    #[test]
    fn test_computed_zero_sent_as_ffff() {
        // Choose the payload so that the computed checksum is 0.
        let mut bytes = [0u8; 10];
        let mut packet = UdpPacket::new_unchecked(&mut bytes[..]);
        packet.set_src_port(1);
        packet.set_dst_port(2);
        packet.set_len(10);
        packet.fill_checksum_v4(SRC, DST);
        let needed = packet.checksum();
        packet.payload_mut().copy_from_slice(&needed.to_be_bytes());
        packet.fill_checksum_v4(SRC, DST);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            UdpPacket::new_checked(&PACKET_BYTES[..7]).err(),
            Some(Error)
        );
        assert_eq!(
            UdpPacket::new_checked(&PACKET_BYTES[..11]).err(),
            Some(Error)
        );
        assert!(UdpPacket::new_checked(&PACKET_BYTES[..12]).is_ok());
        let mut bytes = PACKET_BYTES;
        bytes[5] = 7; // length 7 < header
        assert_eq!(UdpPacket::new_checked(&bytes[..]).err(), Some(Error));
    }
}
