//! Transmission Control Protocol header (RFC 9293).
//!
//! TCP has no length field: the view's buffer is taken to be exactly the
//! segment (build it from `Ipv4Packet::payload()` / `Ipv6Packet::payload()`),
//! and the checksum covers the whole buffer.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset (upper 4 bits) and reserved bits.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS: usize = 20;
    pub const DATA_OFF_SHIFT: u32 = 4;
    pub const DATA_OFF_UNIT: usize = 4;
    /// Reserved bits and the (historic) NS flag below the data offset.
    pub const RESERVED_MASK: u8 = 0x0f;
}

/// Flag bits of the TCP flags byte (byte 13), RFC 9293 / RFC 3168.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::OPTIONS;

/// A read/write wrapper around a TCP segment buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a TCP header without options (20).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures: buffer >= 20 bytes and 20 <= header_len <= buffer length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
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

    fn read_u32(&self, range: core::ops::Range<usize>) -> u32 {
        let d = &self.buffer.as_ref()[range];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ_NUM)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> field::DATA_OFF_SHIFT)
            * field::DATA_OFF_UNIT
    }

    /// The raw flags byte (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    fn flag(&self, bit: u8) -> bool {
        self.flags() & bit != 0
    }

    /// FIN flag.
    pub fn fin(&self) -> bool {
        self.flag(flags::FIN)
    }

    /// SYN flag.
    pub fn syn(&self) -> bool {
        self.flag(flags::SYN)
    }

    /// RST flag.
    pub fn rst(&self) -> bool {
        self.flag(flags::RST)
    }

    /// PSH flag.
    pub fn psh(&self) -> bool {
        self.flag(flags::PSH)
    }

    /// ACK flag.
    pub fn ack(&self) -> bool {
        self.flag(flags::ACK)
    }

    /// URG flag.
    pub fn urg(&self) -> bool {
        self.flag(flags::URG)
    }

    /// ECE flag (RFC 3168).
    pub fn ece(&self) -> bool {
        self.flag(flags::ECE)
    }

    /// CWR flag (RFC 3168).
    pub fn cwr(&self) -> bool {
        self.flag(flags::CWR)
    }

    /// Window size.
    pub fn window_len(&self) -> u16 {
        self.read_u16(field::WIN_SIZE)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        self.read_u16(field::URGENT)
    }

    /// Options (bytes 20..header_len), not interpreted; empty when the header length does
    /// not fit the buffer (only possible without [`Self::check_len`]).
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::OPTIONS..self.header_len())
            .unwrap_or(&[])
    }

    /// Payload (everything after the header); empty when the header length does not fit the
    /// buffer (only possible without [`Self::check_len`]).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    fn segment_len(&self) -> u32 {
        self.buffer.as_ref().len() as u32
    }

    /// Whether the checksum is correct for an IPv4 pseudo header.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp, self.segment_len());
        checksum::combine(&[pseudo, checksum::data(self.buffer.as_ref())]) == !0
    }

    /// Whether the checksum is correct for an IPv6 pseudo header.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Tcp, self.segment_len());
        checksum::combine(&[pseudo, checksum::data(self.buffer.as_ref())]) == !0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the raw flags byte.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value
    }

    /// Sets the header length in bytes (multiple of 4, 20..=60); keeps the
    /// reserved bits.
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        let words = (value / field::DATA_OFF_UNIT) as u8;
        *b = (*b & field::RESERVED_MASK) | (words << field::DATA_OFF_SHIFT);
    }

    /// Sets the window size.
    pub fn set_window_len(&mut self, value: u16) {
        self.write_u16(field::WIN_SIZE, value)
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        self.write_u16(field::URGENT, value)
    }

    /// Mutable options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and stores the checksum for an IPv4 pseudo header.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp, self.segment_len());
        let sum = checksum::combine(&[pseudo, checksum::data(self.buffer.as_ref())]);
        self.set_checksum(!sum)
    }

    /// Computes and stores the checksum for an IPv6 pseudo header.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Tcp, self.segment_len());
        let sum = checksum::combine(&[pseudo, checksum::data(self.buffer.as_ref())]);
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
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
    static PACKET_BYTES: [u8; 28] = [
        // source port 48896, destination port 80
        0xbf, 0x00, 0x00, 0x50,
        // sequence number
        0x01, 0x23, 0x45, 0x67,
        // acknowledgment number
        0x89, 0xab, 0xcd, 0xef,
        // data offset 6 (24 bytes), flags PSH|ACK|FIN
        0x60, 0x19,
        // window 0x0123
        0x01, 0x23,
        // checksum
        0x0e, 0xd5,
        // urgent pointer
        0x02, 0x01,
        // options: NOP NOP NOP EOL
        0x01, 0x01, 0x01, 0x00,
        // payload
        0xaa, 0x00, 0x00, 0xff,
    ];

    #[test]
    fn test_deconstruct() {
        let packet = TcpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.src_port(), 48896);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), 0x0123_4567);
        assert_eq!(packet.ack_number(), 0x89ab_cdef);
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.flags(), flags::PSH | flags::ACK | flags::FIN);
        assert!(packet.fin());
        assert!(!packet.syn());
        assert!(!packet.rst());
        assert!(packet.psh());
        assert!(packet.ack());
        assert!(!packet.urg());
        assert!(!packet.ece());
        assert!(!packet.cwr());
        assert_eq!(packet.window_len(), 0x0123);
        assert_eq!(packet.urgent_at(), 0x0201);
        assert_eq!(packet.options(), &[0x01, 0x01, 0x01, 0x00]);
        assert_eq!(packet.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(packet.verify_checksum_v4(SRC, DST));
        assert!(!packet.verify_checksum_v4(SRC, Ipv4Addr::new(192, 168, 1, 3)));
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; PACKET_BYTES.len()];
        let mut packet = TcpPacket::new_unchecked(&mut bytes);
        packet.set_src_port(48896);
        packet.set_dst_port(80);
        packet.set_seq_number(0x0123_4567);
        packet.set_ack_number(0x89ab_cdef);
        packet.set_header_len(24);
        packet.buffer[field::DATA_OFF] &= 0xf0;
        packet.set_flags(flags::PSH | flags::ACK | flags::FIN);
        packet.set_window_len(0x0123);
        packet.set_urgent_at(0x0201);
        packet
            .options_mut()
            .copy_from_slice(&[0x01, 0x01, 0x01, 0x00]);
        packet
            .payload_mut()
            .copy_from_slice(&[0xaa, 0x00, 0x00, 0xff]);
        packet.fill_checksum_v4(SRC, DST);
        assert_eq!(&packet.into_inner()[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn test_checksum_v6() {
        let src = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        let mut bytes = PACKET_BYTES;
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.fill_checksum_v6(&src, &dst);
        assert!(packet.verify_checksum_v6(&src, &dst));
        assert!(!packet.verify_checksum_v6(&dst, &dst));
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            TcpPacket::new_checked(&PACKET_BYTES[..19]).err(),
            Some(Error)
        );
        assert_eq!(
            TcpPacket::new_checked(&PACKET_BYTES[..23]).err(),
            Some(Error)
        );
        assert!(TcpPacket::new_checked(&PACKET_BYTES[..24]).is_ok());
        let mut bytes = PACKET_BYTES;
        bytes[field::DATA_OFF] = 0x40; // data offset 4 = 16 bytes
        assert_eq!(TcpPacket::new_checked(&bytes[..]).err(), Some(Error));
    }
}
