//! Internet checksum (RFC 1071), incremental update (RFC 1624) and CRC32c
//! (Castagnoli, used by SCTP, RFC 9260 appendix A).
//!
//! Conventions: [`sum`] returns an *unfolded* ones'-complement running sum,
//! [`fold`], [`data`], [`combine`] and the pseudo-header helpers return a
//! *folded but not inverted* 16-bit value. A checksum field stores the
//! inverted fold: `!combine(&[pseudo, data(bytes_with_zeroed_field)])`.
//! A buffer whose checksum field is correct sums (folded) to `0xffff`.
//!
//! # Positive and negative zero
//!
//! Ones'-complement arithmetic has two zeros, `0x0000` and `0xffff`. Folding
//! a non-zero running sum always yields a value in `1..=0xffff`, so a full
//! computation over data that is not all zero stores a checksum in
//! `0..=0xfffe` and never `0xffff`. [`update16`] / [`update32`] implement RFC
//! 1624 eqn. 3 (`HC' = ~(~HC + ~m + m')`), which keeps that property: when the
//! old checksum came from a full computation (any value but `0xffff`), the
//! incrementally updated value is bit-for-bit equal to a full recomputation.
//! Only for an input of `0xffff` (which a full computation never produces,
//! but UDP transmits for a computed `0`, RFC 768) can the result be `0xffff`
//! where a recomputation gives `0x0000`; both verify, since they are the two
//! representations of zero. UDP users must additionally map a result of `0`
//! to `0xffff` and leave a stored `0` ("no checksum") untouched.

use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::IpProtocol;

/// Unfolded ones'-complement sum of `data` taken as big-endian 16-bit words;
/// an odd trailing byte is padded with a zero byte (RFC 1071).
///
/// The result is kept within `u32` with end-around carries, so it is
/// congruent (mod `0xffff`) to the true sum for any input length.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for word in &mut chunks {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Folds a running sum into 16 bits with end-around carry (not inverted).
#[inline]
pub fn fold(sum: u32) -> u16 {
    // Two end-around carries always suffice for a 32-bit sum: the first leaves at most
    // 0xffff + 0xffff = 0x1fffe, the second at most 0xfffe + 1.
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Folded (not inverted) ones'-complement sum of `data`.
pub fn data(data: &[u8]) -> u16 {
    fold(sum(data))
}

/// Ones'-complement sum of already folded partial sums (not inverted).
pub fn combine(parts: &[u16]) -> u16 {
    let total: u32 = parts.iter().map(|&p| u32::from(p)).sum();
    fold(total)
}

/// Folded sum of the IPv4 pseudo header (RFC 9293 section 3.1, RFC 768):
/// source, destination, zero + protocol, and the upper-layer `length`.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, length: u32) -> u16 {
    let mut acc = sum(&src.octets()) + sum(&dst.octets());
    acc += u32::from(u8::from(proto));
    acc += (length >> 16) + (length & 0xffff);
    fold(acc)
}

/// Folded sum of the IPv6 pseudo header (RFC 8200 section 8.1): source,
/// destination, 32-bit upper-layer `length`, zero + next header.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: IpProtocol, length: u32) -> u16 {
    let mut acc = sum(&src.octets()) + sum(&dst.octets());
    acc += u32::from(u8::from(proto));
    acc += (length >> 16) + (length & 0xffff);
    fold(acc)
}

/// RFC 1624 eqn. 3 incremental update of a stored (inverted) checksum field
/// value when one 16-bit word of the covered data changes from `old` to `new`:
/// `HC' = ~(~HC + ~m + m')`. See the module docs for the `0`/`0xffff` rules.
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// Like [`update16`] for a 32-bit, 16-bit aligned field (e.g. an IPv4
/// address, in network byte order).
pub fn update32(checksum: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let mut acc = u32::from(!checksum);
    acc += u32::from(!u16::from_be_bytes([old[0], old[1]]));
    acc += u32::from(!u16::from_be_bytes([old[2], old[3]]));
    acc += u32::from(u16::from_be_bytes([new[0], new[1]]));
    acc += u32::from(u16::from_be_bytes([new[2], new[3]]));
    !fold(acc)
}

/// The reflected Castagnoli polynomial (0x1EDC6F41 bit-reversed).
const CRC32C_POLY: u32 = 0x82f6_3b78;

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc32c_table();

fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC32c (Castagnoli) of `data` (RFC 9260 appendix A; RFC 3720 test
/// vectors): initial value `!0`, reflected, final complement.
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_update(!0, data)
}

/// CRC32c of `data` computed as if the bytes in `zero_range` were zero (used
/// for SCTP, whose checksum field is zero while the CRC is computed). The
/// range is clamped to the data, so this never panics.
pub fn crc32c_with_zeroed(data: &[u8], zero_range: Range<usize>) -> u32 {
    let end = zero_range.end.min(data.len());
    let start = zero_range.start.min(end);
    let mut crc = crc32c_update(!0, &data[..start]);
    for _ in start..end {
        crc = crc32c_update(crc, &[0]);
    }
    !crc32c_update(crc, &data[end..])
}

#[cfg(test)]
mod test {
    use super::*;

    #[rustfmt::skip]
    static IPV4_HEADER: [u8; 20] = [
        // version/IHL, DSCP/ECN, total length
        0x45, 0x00, 0x00, 0x73,
        // identification, flags/fragment offset
        0x00, 0x00, 0x40, 0x00,
        // TTL, protocol (UDP), checksum
        0x40, 0x11, 0xb8, 0x61,
        // source 192.168.0.1
        0xc0, 0xa8, 0x00, 0x01,
        // destination 192.168.0.199
        0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn test_known_header() {
        assert_eq!(data(&IPV4_HEADER), 0xffff);
        let mut zeroed = IPV4_HEADER;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(!data(&zeroed), 0xb861);
    }

    #[test]
    fn test_rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
    }

    #[test]
    fn test_odd_length() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn test_long_input_no_overflow() {
        let big = vec![0xffu8; 1 << 20];
        assert_eq!(data(&big), 0xffff);
    }

    #[test]
    fn test_combine() {
        assert_eq!(combine(&[0xffff, 0x0001]), 0x0001);
        assert_eq!(combine(&[0x1234, 0x4321]), 0x5555);
    }

    #[test]
    fn test_update16() {
        let mut hdr = IPV4_HEADER;
        // decrement TTL 0x40 -> 0x3f: word 8..10 changes 0x4011 -> 0x3f11
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] = 0x3f;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        let csum = update16(0xb861, old, new);
        hdr[10..12].copy_from_slice(&csum.to_be_bytes());
        assert_eq!(data(&hdr), 0xffff);
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(!data(&hdr), csum);
    }

    #[test]
    fn test_update32() {
        let mut hdr = IPV4_HEADER;
        let old = [hdr[12], hdr[13], hdr[14], hdr[15]];
        let new = [10, 1, 2, 3];
        hdr[12..16].copy_from_slice(&new);
        let csum = update32(0xb861, old, new);
        hdr[10..12].copy_from_slice(&csum.to_be_bytes());
        assert_eq!(data(&hdr), 0xffff);
    }

    #[test]
    fn test_update16_minus_zero() {
        // RFC 1624 section 3 example: eqn. 3 gives 0x0000, never 0xffff, for
        // a header whose recomputed checksum is 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn test_pseudo_header() {
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 0, 199);
        let expected = combine(&[data(&src.octets()), data(&dst.octets()), 17, 0x5f]);
        assert_eq!(pseudo_header_v4(src, dst, IpProtocol::Udp, 0x5f), expected);
        let s6 = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let d6 = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let expected = combine(&[data(&s6.octets()), data(&d6.octets()), 1, 58, 0x20]);
        assert_eq!(
            pseudo_header_v6(&s6, &d6, IpProtocol::Icmpv6, 0x1_0020),
            expected
        );
    }

    #[test]
    fn test_crc32c() {
        // RFC 3720 B.4 / common check value
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let mut buf = *b"123456789";
        let zeroed = crc32c_with_zeroed(&buf, 2..5);
        buf[2..5].fill(0);
        assert_eq!(zeroed, crc32c(&buf));
        assert_eq!(crc32c_with_zeroed(&buf, 7..100), {
            let mut b = buf;
            b[7..].fill(0);
            crc32c(&b)
        });
    }
}
