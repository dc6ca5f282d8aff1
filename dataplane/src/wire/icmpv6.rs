//! Internet Control Message Protocol for IPv6 (RFC 4443) and the Neighbor
//! Discovery messages used for address resolution (RFC 4861).
//!
//! The view's buffer is taken to be exactly the ICMPv6 message (build it from
//! `Ipv6Packet::payload()`); the checksum covers the IPv6 pseudo header and
//! the whole buffer.

use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::MacAddr;
use super::{Error, IpProtocol, Result};

/// ICMPv6 message types (RFC 4443, RFC 4861).
pub mod msg_type {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

/// Codes of destination unreachable (RFC 4443 section 3.1).
pub mod msg_code {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDR_UNREACHABLE: u8 = 3;
    pub const PORT_UNREACHABLE: u8 = 4;
}

/// Flag bits of a neighbor advertisement (RFC 4861 section 4.4).
pub mod ndisc_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// NDP option types (RFC 4861 section 4.6).
pub mod ndisc_option {
    pub const SOURCE_LINK_LAYER_ADDR: u8 = 1;
    pub const TARGET_LINK_LAYER_ADDR: u8 = 2;
}

/// Whether `msg_type` is an error message (RFC 4443 section 2.1: types
/// 0..=127).
pub fn is_error(msg_type: u8) -> bool {
    msg_type < msg_type::ECHO_REQUEST
}

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Flags of a neighbor advertisement (first byte after the checksum).
    pub const NDISC_FLAGS: usize = 4;
    pub const DATA: usize = 8;
    /// Target address of NS / NA / redirect.
    pub const NDISC_TARGET: Range<usize> = 8..24;
    /// Options start of RS, RA, NS/NA and redirect messages.
    pub const RS_OPTIONS: usize = 8;
    pub const RA_OPTIONS: usize = 16;
    pub const NS_NA_OPTIONS: usize = 24;
    pub const REDIRECT_OPTIONS: usize = 40;
    /// Option layout: type, length in units of 8 octets, data.
    pub const OPT_TYPE: usize = 0;
    pub const OPT_LEN: usize = 1;
    pub const OPT_UNIT: usize = 8;
    /// Link-layer address inside a link-layer address option.
    pub const OPT_LL_ADDR: Range<usize> = 2..8;
}

/// Length of the ICMPv6 header.
pub const HEADER_LEN: usize = field::DATA;
/// Length of a neighbor solicitation / advertisement without options.
pub const NDISC_NS_NA_LEN: usize = field::NS_NA_OPTIONS;
/// Length of an Ethernet link-layer address option.
pub const NDISC_LL_OPTION_LEN: usize = field::OPT_UNIT;

/// One raw NDP option: its type and the whole option (type and length bytes
/// included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdiscOption<'a> {
    pub kind: u8,
    pub bytes: &'a [u8],
}

/// Iterator over the NDP options of a message. Yields `Err(Error)` once for a
/// zero-length or truncated option and then stops.
#[derive(Debug, Clone)]
pub struct NdiscOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdiscOptionIter<'a> {
    type Item = Result<NdiscOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        if rest.len() <= field::OPT_LEN {
            return Some(Err(Error));
        }
        let len = usize::from(rest[field::OPT_LEN]) * field::OPT_UNIT;
        if len == 0 || len > rest.len() {
            return Some(Err(Error));
        }
        let (bytes, tail) = rest.split_at(len);
        self.rest = tail;
        Some(Ok(NdiscOption {
            kind: bytes[field::OPT_TYPE],
            bytes,
        }))
    }
}

/// A read/write wrapper around an ICMPv6 message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Length of the ICMPv6 header (8).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer and validates it with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the buffer holds the 8-byte header, and for neighbor
    /// solicitations / advertisements also the 16-byte target address.
    /// Options are validated lazily by [`Self::ndisc_options`].
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        match self.msg_type() {
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT if len < NDISC_NS_NA_LEN => {
                Err(Error)
            }
            _ => Ok(()),
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

    /// Message code.
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

    /// Bytes after the 8-byte header (echo data; for errors the quoted
    /// packet; for NDP the target address and options).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// Target address of a neighbor solicitation / advertisement (or
    /// redirect). Never panics: on a message too short to hold it (possible
    /// only for other types, or with `new_unchecked`) it returns `::`.
    pub fn ndisc_target(&self) -> Ipv6Addr {
        match self.buffer.as_ref().get(field::NDISC_TARGET) {
            Some(d) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(d);
                Ipv6Addr::from(octets)
            }
            None => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// Flags byte of a neighbor advertisement (see [`ndisc_flags`]).
    pub fn ndisc_flags(&self) -> u8 {
        self.buffer.as_ref()[field::NDISC_FLAGS]
    }

    fn ndisc_options_start(&self) -> Option<usize> {
        match self.msg_type() {
            msg_type::ROUTER_SOLICIT => Some(field::RS_OPTIONS),
            msg_type::ROUTER_ADVERT => Some(field::RA_OPTIONS),
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => Some(field::NS_NA_OPTIONS),
            msg_type::REDIRECT => Some(field::REDIRECT_OPTIONS),
            _ => None,
        }
    }

    /// Iterates over the NDP options (RFC 4861 section 4.6) of an RS, RA,
    /// NS, NA or redirect message; empty for other types or when the fixed
    /// part is truncated. A zero-length or overlong option yields one
    /// `Err(Error)` and ends the iteration.
    pub fn ndisc_options(&self) -> NdiscOptionIter<'_> {
        let data = self.buffer.as_ref();
        let rest = self
            .ndisc_options_start()
            .and_then(|start| data.get(start..))
            .unwrap_or(&[]);
        NdiscOptionIter { rest }
    }

    /// The Ethernet address of the first link-layer address option of the
    /// given `kind` ([`ndisc_option::SOURCE_LINK_LAYER_ADDR`] = 1 or
    /// [`ndisc_option::TARGET_LINK_LAYER_ADDR`] = 2). `None` when absent,
    /// when the option is not 8 bytes long (not Ethernet), or when a
    /// malformed option is met before it.
    pub fn ndisc_link_layer_option(&self, kind: u8) -> Option<MacAddr> {
        for option in self.ndisc_options() {
            let option = option.ok()?;
            if option.kind == kind && option.bytes.len() == NDISC_LL_OPTION_LEN {
                return Some(MacAddr::from_bytes(&option.bytes[field::OPT_LL_ADDR]));
            }
        }
        None
    }

    fn compute(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, data.len() as u32);
        checksum::combine(&[pseudo, checksum::data(data)])
    }

    /// Whether the checksum (IPv6 pseudo header + message) is correct.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.compute(src, dst) == !0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Sets the four bytes after the checksum (MTU of "packet too big",
    /// pointer of "parameter problem", zero for unused/reserved).
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::ECHO_IDENT.start..field::DATA]
            .copy_from_slice(&value.to_be_bytes())
    }

    /// Mutable bytes after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Sets the NA flags byte and clears the 3 reserved bytes after it.
    pub fn set_ndisc_flags(&mut self, value: u8) {
        let d = &mut self.buffer.as_mut()[field::NDISC_FLAGS..field::DATA];
        d.fill(0);
        d[0] = value;
    }

    /// Sets the NS/NA target address (buffer must hold 24 bytes).
    pub fn set_ndisc_target(&mut self, value: &Ipv6Addr) {
        self.buffer.as_mut()[field::NDISC_TARGET].copy_from_slice(&value.octets())
    }

    /// Writes an Ethernet link-layer address option of `kind` as the first
    /// option of an NS/NA (bytes 24..32; the buffer must hold them).
    pub fn set_ndisc_link_layer_option(&mut self, kind: u8, addr: MacAddr) {
        let start = field::NS_NA_OPTIONS;
        let opt = &mut self.buffer.as_mut()[start..start + NDISC_LL_OPTION_LEN];
        opt[field::OPT_TYPE] = kind;
        opt[field::OPT_LEN] = (NDISC_LL_OPTION_LEN / field::OPT_UNIT) as u8;
        opt[field::OPT_LL_ADDR].copy_from_slice(&addr.0);
    }

    /// Computes and stores the checksum.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let sum = self.compute(src, dst);
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn src() -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)
    }

    fn dst() -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)
    }

    #[rustfmt::skip]
    static ECHO_BYTES: [u8; 12] = [
        // type echo request, code 0, checksum
        0x80, 0x00, 0x00, 0x00,
        // identifier 0x1234, sequence 0xabcd
        0x12, 0x34, 0xab, 0xcd,
        // data
        0xaa, 0x00, 0x00, 0xff,
    ];

    #[rustfmt::skip]
    static NA_BYTES: [u8; 32] = [
        // type neighbor advertisement, code 0, checksum
        0x88, 0x00, 0x00, 0x00,
        // flags: solicited | override, reserved
        0x60, 0x00, 0x00, 0x00,
        // target address fe80::1
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // option: target link-layer address, length 1 (8 bytes), 02:00:00:00:00:01
        0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    #[rustfmt::skip]
    static NS_BYTES: [u8; 48] = [
        // type neighbor solicitation, code 0, checksum
        0x87, 0x00, 0x00, 0x00,
        // reserved
        0x00, 0x00, 0x00, 0x00,
        // target address fe80::2
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        // option: nonce (type 14), length 1
        0x0e, 0x01, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
        // option: source link-layer address, length 1, 02:00:00:00:00:02
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
        // option: unknown (type 200), length 0: malformed
        0xc8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn test_echo() {
        let mut bytes = ECHO_BYTES;
        let mut packet = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(packet.msg_code(), 0);
        assert_eq!(packet.echo_ident(), 0x1234);
        assert_eq!(packet.echo_seq_no(), 0xabcd);
        assert_eq!(packet.data(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(!packet.verify_checksum(&src(), &dst()));
        packet.fill_checksum(&src(), &dst());
        assert!(packet.verify_checksum(&src(), &dst()));
        // not an NDP message: no options, no target
        assert_eq!(packet.ndisc_options().count(), 0);
        assert_eq!(packet.ndisc_target(), Ipv6Addr::UNSPECIFIED);
        assert!(!is_error(packet.msg_type()));
    }

    #[test]
    fn test_echo_construct() {
        let mut bytes = vec![0xa5; ECHO_BYTES.len()];
        let mut packet = Icmpv6Packet::new_unchecked(&mut bytes);
        packet.set_msg_type(msg_type::ECHO_REQUEST);
        packet.set_msg_code(0);
        packet.set_checksum(0);
        packet.set_echo_ident(0x1234);
        packet.set_echo_seq_no(0xabcd);
        packet.data_mut().copy_from_slice(&[0xaa, 0x00, 0x00, 0xff]);
        assert_eq!(&packet.into_inner()[..], &ECHO_BYTES[..]);
    }

    #[test]
    fn test_na_deconstruct() {
        let packet = Icmpv6Packet::new_checked(&NA_BYTES[..]).unwrap();
        assert_eq!(packet.msg_type(), msg_type::NEIGHBOR_ADVERT);
        assert_eq!(
            packet.ndisc_flags(),
            ndisc_flags::SOLICITED | ndisc_flags::OVERRIDE
        );
        assert_eq!(packet.ndisc_target(), src());
        assert_eq!(
            packet.ndisc_link_layer_option(ndisc_option::TARGET_LINK_LAYER_ADDR),
            Some(MacAddr([2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            packet.ndisc_link_layer_option(ndisc_option::SOURCE_LINK_LAYER_ADDR),
            None
        );
    }

    #[test]
    fn test_na_construct() {
        let mut bytes = vec![0xa5; NA_BYTES.len()];
        let mut packet = Icmpv6Packet::new_unchecked(&mut bytes);
        packet.set_msg_type(msg_type::NEIGHBOR_ADVERT);
        packet.set_msg_code(0);
        packet.set_checksum(0);
        packet.set_ndisc_flags(ndisc_flags::SOLICITED | ndisc_flags::OVERRIDE);
        packet.set_ndisc_target(&src());
        packet.set_ndisc_link_layer_option(
            ndisc_option::TARGET_LINK_LAYER_ADDR,
            MacAddr([2, 0, 0, 0, 0, 1]),
        );
        assert_eq!(&bytes[..], &NA_BYTES[..]);
        let mut packet = Icmpv6Packet::new_unchecked(&mut bytes);
        packet.fill_checksum(&dst(), &src());
        assert!(packet.verify_checksum(&dst(), &src()));
    }

    #[test]
    fn test_ns_options() {
        let packet = Icmpv6Packet::new_checked(&NS_BYTES[..]).unwrap();
        assert_eq!(packet.ndisc_target(), dst());
        let options: Vec<_> = packet.ndisc_options().collect();
        assert_eq!(options.len(), 3);
        assert_eq!(options[0].unwrap().kind, 14);
        assert_eq!(
            options[1].unwrap().kind,
            ndisc_option::SOURCE_LINK_LAYER_ADDR
        );
        assert_eq!(options[2], Err(Error));
        assert_eq!(
            packet.ndisc_link_layer_option(ndisc_option::SOURCE_LINK_LAYER_ADDR),
            Some(MacAddr([2, 0, 0, 0, 0, 2]))
        );
        // the target option would come after the malformed one
        assert_eq!(
            packet.ndisc_link_layer_option(ndisc_option::TARGET_LINK_LAYER_ADDR),
            None
        );
    }

    #[test]
    fn test_zero_length_option_first() {
        let mut bytes = NS_BYTES;
        bytes[25] = 0;
        let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.ndisc_options().collect::<Vec<_>>(), vec![Err(Error)]);
        assert_eq!(
            packet.ndisc_link_layer_option(ndisc_option::SOURCE_LINK_LAYER_ADDR),
            None
        );
    }

    #[test]
    fn test_overlong_option() {
        let packet = Icmpv6Packet::new_checked(&NA_BYTES[..30]).unwrap();
        assert_eq!(packet.ndisc_options().collect::<Vec<_>>(), vec![Err(Error)]);
        assert_eq!(
            packet.ndisc_link_layer_option(ndisc_option::TARGET_LINK_LAYER_ADDR),
            None
        );
        let packet = Icmpv6Packet::new_checked(&NA_BYTES[..25]).unwrap();
        assert_eq!(packet.ndisc_options().collect::<Vec<_>>(), vec![Err(Error)]);
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            Icmpv6Packet::new_checked(&ECHO_BYTES[..7]).err(),
            Some(Error)
        );
        assert_eq!(
            Icmpv6Packet::new_checked(&NA_BYTES[..23]).err(),
            Some(Error)
        );
        assert!(Icmpv6Packet::new_checked(&NA_BYTES[..24]).is_ok());
    }

    #[test]
    fn test_is_error() {
        assert!(is_error(msg_type::DST_UNREACHABLE));
        assert!(is_error(msg_type::TIME_EXCEEDED));
        assert!(!is_error(msg_type::NEIGHBOR_SOLICIT));
    }
}
