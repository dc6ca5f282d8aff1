//! Ethernet II frames (IEEE 802.3) with optional IEEE 802.1Q VLAN and
//! IEEE 802.1ad ("QinQ") tags.

use core::fmt;
use core::str::FromStr;

use super::{Error, EtherType, Result};

/// A six-octet Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Builds an address from the first six bytes of `data`; panics if
    /// `data` is shorter.
    pub fn from_bytes(data: &[u8]) -> MacAddr {
        let mut bytes = [0; 6];
        bytes.copy_from_slice(&data[..6]);
        MacAddr(bytes)
    }

    /// The address as bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit (I/G, LSB of the first octet) is set. The
    /// broadcast address is also multicast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Error returned when parsing a [`MacAddr`] from text fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseMacAddrError;

impl fmt::Display for ParseMacAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address syntax, expected six colon-separated hex octets like 02:00:00:00:00:01")
    }
}

impl std::error::Error for ParseMacAddrError {}

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    /// Parses `xx:xx:xx:xx:xx:xx` or `xx-xx-xx-xx-xx-xx` (hex digits, either case, one or
    /// two per octet; one kind of separator).
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut parts = s.split(sep);
        for byte in bytes.iter_mut() {
            let part = parts.next().ok_or(ParseMacAddrError)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseMacAddrError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacAddrError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacAddrError);
        }
        Ok(MacAddr(bytes))
    }
}

mod field {
    use core::ops::Range;

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Length of one 802.1Q / 802.1ad tag (TCI + next EtherType).
    pub const TAG_LEN: usize = 4;
    /// Tag control information of the outermost tag.
    pub const TAG_TCI: Range<usize> = 14..16;
    pub const VID_MASK: u16 = 0x0fff;
    pub const PAYLOAD: usize = 14;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

fn is_tag(ethertype: u16) -> bool {
    matches!(
        EtherType::from(ethertype),
        EtherType::Vlan | EtherType::QinQ
    )
}

/// A read/write wrapper around an Ethernet II frame buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of an untagged Ethernet II header.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Ensures the buffer holds the 14-byte header and every VLAN tag that
    /// the EtherType fields announce (at most two tags are examined).
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error);
        }
        let mut count = 0;
        while count < 2 && is_tag(self.read_u16(field::ETHERTYPE.start + count * field::TAG_LEN)) {
            count += 1;
            if data.len() < HEADER_LEN + count * field::TAG_LEN {
                return Err(Error);
            }
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, at: usize) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[at], data[at + 1]])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Source address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The outer EtherType (a tag protocol identifier if the frame is tagged).
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(self.read_u16(field::ETHERTYPE.start))
    }

    /// Number of VLAN tags (0, 1 or 2; further tags are not examined).
    pub fn tag_count(&self) -> usize {
        let mut count = 0;
        let mut ethertype = self.read_u16(field::ETHERTYPE.start);
        while count < 2 && is_tag(ethertype) {
            count += 1;
            ethertype = self.read_u16(field::ETHERTYPE.start + count * field::TAG_LEN);
        }
        count
    }

    /// Header length: 14, 18 or 22 bytes depending on the number of tags.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.tag_count() * field::TAG_LEN
    }

    /// The VLAN identifier of the outermost tag, if any.
    pub fn vlan_id(&self) -> Option<u16> {
        if self.tag_count() == 0 {
            None
        } else {
            Some(self.read_u16(field::TAG_TCI.start) & field::VID_MASK)
        }
    }

    /// The EtherType of the payload, after skipping up to two tags.
    pub fn payload_ethertype(&self) -> EtherType {
        let at = field::ETHERTYPE.start + self.tag_count() * field::TAG_LEN;
        EtherType::from(self.read_u16(at))
    }

    /// The payload, starting after the tags.
    pub fn payload(&self) -> &[u8] {
        let start = self.header_len();
        &self.buffer.as_ref()[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    fn write_u16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0)
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0)
    }

    /// Sets the outer EtherType.
    pub fn set_ethertype(&mut self, value: EtherType) {
        self.write_u16(field::ETHERTYPE.start, value.into())
    }

    /// Sets the VID of the outermost tag, keeping PCP/DEI; does nothing if
    /// the frame is untagged.
    pub fn set_vlan_id(&mut self, vid: u16) {
        if self.tag_count() > 0 {
            let tci = self.read_u16(field::TAG_TCI.start);
            let tci = (tci & !field::VID_MASK) | (vid & field::VID_MASK);
            self.write_u16(field::TAG_TCI.start, tci);
        }
    }

    /// Mutable payload, starting after the tags.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// High-level representation of an untagged Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    /// For parsed tagged frames this is the outer (tag) EtherType, so that
    /// emit(parse(x)) writes the same 14 bytes.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Parses the 14-byte header of a frame (validated with `check_len`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &EthernetFrame<&T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the emitted header (14).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the untagged header into `frame` (at least 14 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[rustfmt::skip]
    static FRAME_BYTES: [u8; 18] = [
        // destination
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
        // source
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        // ethertype IPv4
        0x08, 0x00,
        // payload
        0xaa, 0x00, 0x00, 0xff,
    ];

    #[rustfmt::skip]
    static QINQ_BYTES: [u8; 24] = [
        // destination
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        // source
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        // S-tag TPID 0x88a8, TCI: PCP 5, VID 100
        0x88, 0xa8, 0xa0, 0x64,
        // C-tag TPID 0x8100, TCI: VID 4095
        0x81, 0x00, 0x0f, 0xff,
        // ethertype IPv6
        0x86, 0xdd,
        // payload
        0xde, 0xad,
    ];

    #[rustfmt::skip]
    static DOT1Q_BYTES: [u8; 19] = [
        // destination
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
        // source
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        // C-tag TPID 0x8100, TCI: VID 10
        0x81, 0x00, 0x00, 0x0a,
        // ethertype ARP
        0x08, 0x06,
        // payload
        0x01,
    ];

    #[test]
    fn test_deconstruct() {
        let frame = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(
            frame.dst_addr(),
            MacAddr([0x01, 0x02, 0x03, 0x04, 0x05, 0x06])
        );
        assert_eq!(
            frame.src_addr(),
            MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16])
        );
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.payload_ethertype(), EtherType::Ipv4);
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.payload(), &[0xaa, 0x00, 0x00, 0xff]);
    }

    #[test]
    fn test_deconstruct_qinq() {
        let frame = EthernetFrame::new_checked(&QINQ_BYTES[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::QinQ);
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(frame.header_len(), 22);
        assert_eq!(frame.payload_ethertype(), EtherType::Ipv6);
        assert_eq!(frame.payload(), &[0xde, 0xad]);
        assert!(frame.dst_addr().is_broadcast());
    }

    #[test]
    fn test_deconstruct_dot1q() {
        let frame = EthernetFrame::new_checked(&DOT1Q_BYTES[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Vlan);
        assert_eq!(frame.vlan_id(), Some(10));
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload_ethertype(), EtherType::Arp);
        assert_eq!(frame.payload(), &[0x01]);
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME_BYTES[..13]).err(),
            Some(Error)
        );
        assert!(EthernetFrame::new_checked(&FRAME_BYTES[..14]).is_ok());
        assert_eq!(
            EthernetFrame::new_checked(&DOT1Q_BYTES[..17]).err(),
            Some(Error)
        );
        assert!(EthernetFrame::new_checked(&DOT1Q_BYTES[..18]).is_ok());
        assert_eq!(
            EthernetFrame::new_checked(&QINQ_BYTES[..21]).err(),
            Some(Error)
        );
        assert!(EthernetFrame::new_checked(&QINQ_BYTES[..22]).is_ok());
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; 18];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes);
        frame.set_dst_addr(MacAddr([0x01, 0x02, 0x03, 0x04, 0x05, 0x06]));
        frame.set_src_addr(MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]));
        frame.set_ethertype(EtherType::Ipv4);
        frame.payload_mut().copy_from_slice(&FRAME_BYTES[14..]);
        assert_eq!(&frame.into_inner()[..], &FRAME_BYTES[..]);
    }

    #[test]
    fn test_set_vlan_id() {
        let mut bytes = QINQ_BYTES;
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_vlan_id(7);
        assert_eq!(frame.vlan_id(), Some(7));
        assert_eq!(bytes[14], 0xa0);
    }

    #[test]
    fn test_parse_emit() {
        let frame = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(repr.ethertype, EtherType::Ipv4);
        let mut bytes = vec![0; repr.buffer_len() + 4];
        let mut out = EthernetFrame::new_unchecked(&mut bytes[..]);
        repr.emit(&mut out);
        out.payload_mut().copy_from_slice(&FRAME_BYTES[14..]);
        assert_eq!(&bytes[..], &FRAME_BYTES[..]);
    }

    #[test]
    fn test_mac_addr() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(mac.to_string(), "02:00:00:00:00:01");
        assert!(mac.is_unicast());
        assert!(MacAddr([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert_eq!(
            "AA:bb:0c:1:2:3".parse::<MacAddr>().unwrap().to_string(),
            "aa:bb:0c:01:02:03"
        );
        assert_eq!(
            "AA-bb-0c-1-2-3".parse::<MacAddr>(),
            "aa:bb:0c:01:02:03".parse::<MacAddr>()
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:1g",
            "002:00:00:00:00:01",
            "02::00:00:00:01",
            "02-00:00:00:00:01",
            "+2:00:00:00:00:01",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(ParseMacAddrError), "{bad}");
        }
    }
}
