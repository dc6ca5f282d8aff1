//! Stream Control Transmission Protocol common header (RFC 9260 section 3.1).
//!
//! The checksum is CRC32c (RFC 9260 appendix A) over the whole packet with
//! the checksum field zeroed; the view's buffer is taken to be exactly the
//! SCTP packet. The CRC value is stored least significant byte first, as the
//! reference code of RFC 9260 appendix A does, so [`SctpPacket::checksum`]
//! reads the field as little-endian.

use super::checksum;
use super::{Error, Result};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const VERIFICATION_TAG: Range<usize> = 4..8;
    pub const CHECKSUM: Range<usize> = 8..12;
    pub const CHUNKS: usize = 12;
}

/// Length of the SCTP common header.
pub const HEADER_LEN: usize = field::CHUNKS;

/// A read/write wrapper around an SCTP packet buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    /// Length of the SCTP common header (12).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> SctpPacket<T> {
        SctpPacket { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<SctpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the buffer holds the 12-byte common header. Chunks are not
    /// validated.
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

    fn read_raw32(&self, range: core::ops::Range<usize>) -> [u8; 4] {
        let d = &self.buffer.as_ref()[range];
        [d[0], d[1], d[2], d[3]]
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Verification tag.
    pub fn verification_tag(&self) -> u32 {
        u32::from_be_bytes(self.read_raw32(field::VERIFICATION_TAG))
    }

    /// CRC32c checksum as stored (field read little-endian).
    pub fn checksum(&self) -> u32 {
        u32::from_le_bytes(self.read_raw32(field::CHECKSUM))
    }

    /// The chunks following the common header (not interpreted).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHUNKS..]
    }

    fn compute_checksum(&self) -> u32 {
        checksum::crc32c_with_zeroed(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the stored CRC32c matches the packet.
    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute_checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SctpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the verification tag.
    pub fn set_verification_tag(&mut self, value: u32) {
        self.buffer.as_mut()[field::VERIFICATION_TAG].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the checksum field (written little-endian).
    pub fn set_checksum(&mut self, value: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_le_bytes())
    }

    /// Mutable chunks.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::CHUNKS..]
    }

    /// Computes and stores the CRC32c.
    pub fn fill_checksum(&mut self) {
        let crc = self.compute_checksum();
        self.set_checksum(crc)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for SctpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    // An SCTP packet carrying an INIT chunk, checksum field zeroed.
    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 32] = [
        // source port 5000, destination port 36412
        0x13, 0x88, 0x8e, 0x3c,
        // verification tag 0 (INIT)
        0x00, 0x00, 0x00, 0x00,
        // checksum (CRC32c, least significant byte first)
        0x00, 0x00, 0x00, 0x00,
        // chunk: type INIT, flags 0, length 20
        0x01, 0x00, 0x00, 0x14,
        // initiate tag
        0x12, 0x34, 0x56, 0x78,
        // a_rwnd
        0x00, 0x01, 0x00, 0x00,
        // outbound streams 10, inbound streams 65535
        0x00, 0x0a, 0xff, 0xff,
        // initial TSN
        0x01, 0x02, 0x03, 0x04,
    ];

    #[test]
    fn test_deconstruct() {
        let packet = SctpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.src_port(), 5000);
        assert_eq!(packet.dst_port(), 36412);
        assert_eq!(packet.verification_tag(), 0);
        assert_eq!(packet.checksum(), 0);
        assert_eq!(packet.payload(), &PACKET_BYTES[12..]);
    }

    #[test]
    fn test_checksum() {
        let mut bytes = PACKET_BYTES;
        let mut packet = SctpPacket::new_unchecked(&mut bytes[..]);
        assert!(!packet.verify_checksum());
        packet.fill_checksum();
        assert!(packet.verify_checksum());
        let crc = checksum::crc32c(&PACKET_BYTES);
        assert_eq!(packet.checksum(), crc);
        // little-endian on the wire
        assert_eq!(&bytes[8..12], &crc.to_le_bytes());
        bytes[20] ^= 1;
        assert!(!SctpPacket::new_unchecked(&bytes[..]).verify_checksum());
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; PACKET_BYTES.len()];
        let mut packet = SctpPacket::new_unchecked(&mut bytes);
        packet.set_src_port(5000);
        packet.set_dst_port(36412);
        packet.set_verification_tag(0);
        packet.set_checksum(0);
        packet.payload_mut().copy_from_slice(&PACKET_BYTES[12..]);
        assert_eq!(&packet.into_inner()[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            SctpPacket::new_checked(&PACKET_BYTES[..11]).err(),
            Some(Error)
        );
        assert!(SctpPacket::new_checked(&PACKET_BYTES[..12]).is_ok());
    }
}
