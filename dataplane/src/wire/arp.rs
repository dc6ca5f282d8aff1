//! Address Resolution Protocol (RFC 826), Ethernet/IPv4 only.
//!
//! The view's address accessors assume the Ethernet/IPv4 layout (hardware
//! length 6, protocol length 4); [`ArpRepr::parse`] rejects any other
//! hardware or protocol type with [`Error`].

use std::net::Ipv4Addr;

use super::ethernet::MacAddr;
use super::{Error, EtherType, Result};

enum_with_unknown! {
    /// ARP operation code (RFC 826).
    pub enum ArpOperation(u16) {
        /// ares_op$REQUEST
        Request = 1,
        /// ares_op$REPLY
        Reply = 2,
    }
}

/// Hardware type value for Ethernet (RFC 826 / IANA).
pub const HARDWARE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    // Ethernet/IPv4 layout
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
    pub const ETH_HLEN: u8 = 6;
    pub const IPV4_PLEN: u8 = 4;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// A read/write wrapper around an ARP packet buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet (28).
    pub const PACKET_LEN: usize = PACKET_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the buffer holds the 28 bytes of an Ethernet/IPv4 ARP packet
    /// (trailing bytes, e.g. Ethernet padding, are allowed).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
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

    fn read_ipv4(&self, range: core::ops::Range<usize>) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[range];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        self.read_u16(field::HTYPE)
    }

    /// Protocol type (an EtherType; 0x0800 = IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(self.read_u16(field::PTYPE))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation code.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.read_u16(field::OPER))
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        self.read_ipv4(field::SPA)
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        self.read_ipv4(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&u16::from(value).to_be_bytes())
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value
    }

    /// Sets the operation code.
    pub fn set_operation(&mut self, value: ArpOperation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(value).to_be_bytes())
    }

    /// Sets the sender hardware address.
    pub fn set_source_hardware_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value.0)
    }

    /// Sets the sender protocol address.
    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&value.octets())
    }

    /// Sets the target hardware address.
    pub fn set_target_hardware_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value.0)
    }

    /// Sets the target protocol address.
    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&value.octets())
    }
}

/// High-level representation of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_hardware_addr: MacAddr,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: MacAddr,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an Ethernet/IPv4 ARP packet; any other hardware/protocol type
    /// or address length is an [`Error`]. Unknown operations are kept.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &ArpPacket<&T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != EtherType::Ipv4
            || packet.hardware_len() != field::ETH_HLEN
            || packet.protocol_len() != field::IPV4_PLEN
        {
            return Err(Error);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Length of the emitted packet (28).
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into `packet` (at least 28 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(field::ETH_HLEN);
        packet.set_protocol_len(field::IPV4_PLEN);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 28] = [
        // hardware type Ethernet, protocol type IPv4
        0x00, 0x01, 0x08, 0x00,
        // hlen 6, plen 4, operation request
        0x06, 0x04, 0x00, 0x01,
        // sender hardware address
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        // sender protocol address 10.0.0.1
        0x0a, 0x00, 0x00, 0x01,
        // target hardware address
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // target protocol address 10.0.0.2
        0x0a, 0x00, 0x00, 0x02,
    ];

    fn packet_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn test_deconstruct() {
        let packet = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), EtherType::Ipv4);
        assert_eq!(packet.hardware_len(), 6);
        assert_eq!(packet.protocol_len(), 4);
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(
            packet.source_hardware_addr(),
            MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16])
        );
        assert_eq!(packet.source_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(packet.target_hardware_addr(), MacAddr([0; 6]));
        assert_eq!(packet.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; 28];
        let mut packet = ArpPacket::new_unchecked(&mut bytes);
        packet.set_hardware_type(1);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(ArpOperation::Request);
        packet.set_source_hardware_addr(MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]));
        packet.set_source_protocol_addr(Ipv4Addr::new(10, 0, 0, 1));
        packet.set_target_hardware_addr(MacAddr([0; 6]));
        packet.set_target_protocol_addr(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(&packet.into_inner()[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn test_parse() {
        let packet = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Ok(packet_repr()));
    }

    #[test]
    fn test_parse_rejects_other_types() {
        let mut bytes = PACKET_BYTES;
        bytes[1] = 6; // IEEE 802 hardware type
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Err(Error));
        let mut bytes = PACKET_BYTES;
        bytes[5] = 16; // protocol length
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Err(Error));
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            ArpPacket::new_checked(&PACKET_BYTES[..27]).err(),
            Some(Error)
        );
        let packet = ArpPacket::new_unchecked(&PACKET_BYTES[..20]);
        assert_eq!(ArpRepr::parse(&packet), Err(Error));
    }

    #[test]
    fn test_emit() {
        let repr = packet_repr();
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut bytes));
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }
}
