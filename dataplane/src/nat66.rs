//! NAT66 for IPv6 Services: the IPv6 flow tuple and its in-place rewrite.
//!
//! The same design as [`crate::nat`] (NAT44): a flow is a pair of conntrack keys, every packet is
//! rewritten from the tuple it carries to the reverse of the other direction's key, and the
//! TCP/UDP checksum is patched with one addition of a delta precomputed when the flow was created.
//! IPv6 has no header checksum, so the delta only covers the L4 checksum (addresses in the pseudo
//! header, and ports) and the hop limit is simply written. SCTP's CRC32c is recomputed.
//!
//! As with kube-proxy's ip6tables rules, translation is stateful NAT66 between addresses of the
//! same family: an IPv6 frontend only ever has IPv6 endpoints.

use crate::conntrack::{Dir, Flow, Tuple};
use crate::hash::mix64;
use crate::nat::Delta;
use crate::service::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use crate::wire::checksum;
use crate::wire::{icmpv6, Icmpv6Packet, Ipv6Packet, SctpPacket, TcpPacket, UdpPacket};
use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
const IP6: usize = 40;

/// An IPv6 flow tuple (TCP, UDP or SCTP: IPv6 Services carry nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl FlowKey6 {
    pub fn reverse(&self) -> FlowKey6 {
        FlowKey6 {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

impl core::fmt::Display for FlowKey6 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} [{}]:{} -> [{}]:{}",
            crate::service::proto_name(self.proto),
            self.src,
            self.sport,
            self.dst,
            self.dport
        )
    }
}

/// The two halves of an address, for hashing.
#[inline]
fn halves(a: Ipv6Addr) -> (u64, u64) {
    let x = u128::from(a);
    ((x >> 64) as u64, x as u64)
}

impl Tuple for FlowKey6 {
    const EMPTY: FlowKey6 = FlowKey6 {
        src: Ipv6Addr::UNSPECIFIED,
        dst: Ipv6Addr::UNSPECIFIED,
        sport: 0,
        dport: 0,
        proto: 0,
    };

    #[inline]
    fn reverse(&self) -> FlowKey6 {
        FlowKey6::reverse(self)
    }

    #[inline]
    fn with_dport(&self, port: u16) -> FlowKey6 {
        FlowKey6 {
            dport: port,
            ..*self
        }
    }

    #[inline]
    fn proto(&self) -> u8 {
        self.proto
    }

    #[inline]
    fn hash_seeded(&self, seed: u64) -> u64 {
        let (sh, sl) = halves(self.src);
        let (dh, dl) = halves(self.dst);
        let ports =
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto);
        // Chained finalisers: every word passes through a full mix before the next joins, so a
        // change in any bit of either address reaches the bucket and the signature bits.
        let h = mix64(sh ^ seed);
        let h = mix64(h ^ sl);
        let h = mix64(h ^ dh);
        mix64(h ^ dl ^ ports.rotate_left(23))
    }

    #[inline]
    fn delta(from: &FlowKey6, to: &FlowKey6) -> Delta {
        Delta::new6(from, to)
    }
}

/// The sum of `~old + new` over the eight words of two addresses.
fn addr_change(old: Ipv6Addr, new: Ipv6Addr) -> u32 {
    old.segments()
        .iter()
        .zip(new.segments())
        .map(|(&o, n)| u32::from(!o) + u32::from(n))
        .sum()
}

impl Delta {
    /// The delta for rewriting IPv6 tuple `from` into `to`: `ip` stays 0 (no header checksum),
    /// `l4` covers the pseudo header's addresses and the ports.
    pub fn new6(from: &FlowKey6, to: &FlowKey6) -> Delta {
        let mut l4 = 0u32;
        if from.src != to.src {
            l4 += addr_change(from.src, to.src);
        }
        if from.dst != to.dst {
            l4 += addr_change(from.dst, to.dst);
        }
        if from.sport != to.sport {
            l4 += u32::from(!from.sport) + u32::from(to.sport);
        }
        if from.dport != to.dport {
            l4 += u32::from(!from.dport) + u32::from(to.dport);
        }
        Delta {
            ip: 0,
            l4: checksum::fold(l4),
        }
    }
}

/// A stored checksum after adding a precomputed delta.
#[inline]
fn adjust(c: u16, delta: u16) -> u16 {
    !checksum::fold(u32::from(!c) + u32::from(delta))
}

/// Translates an IPv6 packet of a flow (`ip` starts at the IPv6 header, the L4 header at `l4`,
/// after any extension headers; the pipeline checked both) from tuple `from` to `to` with the
/// flow's precomputed `delta`, and decrements the hop limit (which must be at least 2).
#[inline]
pub fn forward_with(ip: &mut [u8], l4: usize, from: &FlowKey6, to: &FlowKey6, delta: Delta) {
    let total = forward_addresses(ip, to);
    let l4 = &mut ip[l4..total];
    match from.proto {
        PROTO_TCP => {
            let mut t = TcpPacket::new_unchecked(l4);
            t.set_src_port(to.sport);
            t.set_dst_port(to.dport);
            let c = t.checksum();
            t.set_checksum(adjust(c, delta.l4));
        }
        PROTO_UDP => {
            let mut u = UdpPacket::new_unchecked(l4);
            u.set_src_port(to.sport);
            u.set_dst_port(to.dport);
            let c = adjust(u.checksum(), delta.l4);
            // The UDP checksum is mandatory over IPv6; a computed zero is sent as 0xffff.
            u.set_checksum(if c == 0 { 0xffff } else { c });
        }
        PROTO_SCTP => {
            let mut s = SctpPacket::new_unchecked(&mut *l4);
            s.set_src_port(to.sport);
            s.set_dst_port(to.dport);
            s.fill_checksum();
        }
        _ => {}
    }
}

/// Writes `to`'s addresses into the IPv6 header and decrements the hop limit (at least 2):
/// all a later fragment of a flow's datagram needs (its first fragment carried the ports and
/// the L4 checksum, patched for the whole datagram). Returns the packet's length.
pub fn forward_addresses(ip: &mut [u8], to: &FlowKey6) -> usize {
    let mut p = Ipv6Packet::new_unchecked(&mut *ip);
    let hop = p.hop_limit();
    p.set_hop_limit(hop - 1);
    p.set_src_addr(&to.src);
    p.set_dst_addr(&to.dst);
    IP6 + usize::from(p.payload_len())
}

/// What the IPv6 pipeline needs of a packet to look it up as a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed6 {
    /// The tuple; for a later fragment the ports are 0 (it carries none).
    pub key: FlowKey6,
    /// TCP flags (0 for other protocols and later fragments).
    pub flags: u8,
    /// Where the L4 header starts, from the IPv6 header (40 without extension headers).
    pub l4: usize,
    /// For a fragment: the datagram's identification, and whether this is a later fragment.
    pub fragment: Option<(u32, bool)>,
}

/// Next-header numbers of the extension headers a Service packet may carry.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTIONS: u8 = 60;

/// Why [`flow_key`] found no tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoFlow6 {
    /// Not a flow the Service path handles (ICMPv6, ESP/AH, a routing header still routing, a
    /// chain or an L4 header cut short): routed, not load balanced.
    Other,
    /// A whole TCP or UDP packet whose own lengths do not fit (a TCP data offset under 20 or
    /// past the segment, a UDP length under 8 or past the payload): dropped as
    /// `l4-malformed`, as IPv4 drops it.
    Malformed,
}

/// The tuple of a TCP, UDP or SCTP packet, after the extension headers a host may put in front
/// of them (hop-by-hop and destination options, a routing header with no segments left, a
/// fragment header); see [`NoFlow6`] for what has none.
pub fn flow_key(ip: &[u8]) -> Result<Parsed6, NoFlow6> {
    flow_key_inner(ip).ok_or(NoFlow6::Other)?
}

fn flow_key_inner(ip: &[u8]) -> Option<Result<Parsed6, NoFlow6>> {
    let p = Ipv6Packet::new_checked(ip).ok()?;
    let total = IP6 + usize::from(p.payload_len());
    let body = ip.get(..total)?;
    let (mut proto, mut at) = (u8::from(p.next_header()), IP6);
    let mut fragment = None;
    // A bound on the chain: no legitimate packet has this many extension headers.
    for _ in 0..8 {
        match proto {
            HOP_BY_HOP | DEST_OPTIONS | ROUTING => {
                let h = body.get(at..at + 8)?;
                if proto == HOP_BY_HOP && at != IP6 {
                    return None;
                }
                if proto == ROUTING && h[3] != 0 {
                    return None; // segments left: not our packet's last hop yet
                }
                proto = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            FRAGMENT => {
                let h = body.get(at..at + 8)?;
                let offset = u16::from_be_bytes([h[2], h[3]]) >> 3;
                let ident = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                proto = h[0];
                at += 8;
                fragment = Some((ident, offset != 0));
                if offset != 0 {
                    break;
                }
            }
            _ => break,
        }
    }
    let min = match proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        PROTO_SCTP => 12,
        _ => return None,
    };
    let key = |sport, dport| FlowKey6 {
        src: p.src_addr(),
        dst: p.dst_addr(),
        sport,
        dport,
        proto,
    };
    if let Some((_, true)) = fragment {
        return Some(Ok(Parsed6 {
            key: key(0, 0),
            flags: 0,
            l4: at,
            fragment,
        }));
    }
    let l4 = body.get(at..)?;
    if l4.len() < min {
        return None;
    }
    // A whole segment must hold the header it announces (a first fragment holds only part of
    // its datagram, so its lengths cannot be checked here).
    if fragment.is_none() {
        let fits = match proto {
            PROTO_TCP => crate::wire::TcpPacket::new_checked(l4).is_ok(),
            PROTO_UDP => crate::wire::UdpPacket::new_checked(l4).is_ok(),
            _ => true,
        };
        if !fits {
            return Some(Err(NoFlow6::Malformed));
        }
    }
    Some(Ok(Parsed6 {
        key: key(
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        flags: if proto == PROTO_TCP { l4[13] } else { 0 },
        l4: at,
        fragment,
    }))
}

/// ICMPv6's next-header number.
const PROTO_ICMPV6: u8 = 58;

/// For an ICMPv6 error (destination unreachable, packet too big, time exceeded, parameter
/// problem) whose quote is a TCP, UDP or SCTP packet: the tuple its quote carries. `ip` starts
/// at the outer IPv6 header. The quote needs its fixed header and the first 8 bytes of L4.
pub fn icmp_error_quote(ip: &[u8]) -> Option<FlowKey6> {
    let p = Ipv6Packet::new_checked(ip).ok()?;
    if u8::from(p.next_header()) != PROTO_ICMPV6 {
        return None;
    }
    let total = IP6 + usize::from(p.payload_len());
    let icmp = ip.get(IP6..total)?;
    if icmp.len() < 8 || !icmpv6::is_error(icmp[0]) {
        return None;
    }
    let quote = &icmp[8..];
    if quote.len() < IP6 + 8 || quote[0] >> 4 != 6 {
        return None;
    }
    let q = Ipv6Packet::new_unchecked(quote);
    let proto = u8::from(q.next_header());
    if !matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP) {
        return None;
    }
    let l4 = &quote[IP6..];
    Some(FlowKey6 {
        src: q.src_addr(),
        dst: q.dst_addr(),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        proto,
    })
}

/// Translates an ICMPv6 error travelling in direction `dir` of `flow` (looked up by the reverse
/// of its quote's tuple), as [`crate::nat::translate_icmp_error`] does for IPv4: the outer
/// addresses where they are the flow's own (a router's stays), the quote back into the packet
/// the far side sent (addresses, ports, its L4 checksum when quoted), the hop limit decremented
/// (at least 2, checked by the caller), and the ICMPv6 checksum recomputed. Returns the new
/// outer destination.
pub fn translate_icmp_error(ip: &mut [u8], flow: &Flow<FlowKey6>, dir: Dir) -> Ipv6Addr {
    let inbound = flow.key(dir);
    let out = flow.translated(dir);
    let (total, src, dst) = {
        let mut p = Ipv6Packet::new_unchecked(&mut *ip);
        let hop = p.hop_limit();
        p.set_hop_limit(hop - 1);
        (
            IP6 + usize::from(p.payload_len()),
            p.src_addr(),
            p.dst_addr(),
        )
    };
    let new_src = if src == inbound.src { out.src } else { src };
    let new_dst = if dst == inbound.dst { out.dst } else { dst };
    {
        let mut p = Ipv6Packet::new_unchecked(&mut *ip);
        p.set_src_addr(&new_src);
        p.set_dst_addr(&new_dst);
    }
    // The quote was the other direction's translated packet, the reverse of `inbound`; it
    // becomes the reverse of `out`.
    let (q_from, q_to) = (inbound.reverse(), out.reverse());
    let quote = &mut ip[IP6 + 8..total];
    {
        let mut q = Ipv6Packet::new_unchecked(&mut *quote);
        q.set_src_addr(&q_to.src);
        q.set_dst_addr(&q_to.dst);
    }
    let delta = Delta::new6(&q_from, &q_to).l4;
    let l4 = &mut quote[IP6..];
    l4[0..2].copy_from_slice(&q_to.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&q_to.dport.to_be_bytes());
    // The quoted L4 checksum, when the quote reaches it (SCTP's CRC covers what may be cut).
    let at = match q_from.proto {
        PROTO_UDP => Some(6),
        PROTO_TCP => Some(16),
        _ => None,
    };
    if let Some(at) = at.filter(|&at| l4.len() >= at + 2) {
        let c = u16::from_be_bytes([l4[at], l4[at + 1]]);
        l4[at..at + 2].copy_from_slice(&adjust(c, delta).to_be_bytes());
    }
    Icmpv6Packet::new_unchecked(&mut ip[IP6..total]).fill_checksum(&new_src, &new_dst);
    new_dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Tuple;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn packet(proto: u8, src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv6(ip(src).octets(), ip(dst).octets(), 9);
        let mut out = Vec::new();
        match proto {
            PROTO_TCP => {
                let b = b.tcp(sport, dport, 1000, 512).ack(7).psh();
                b.write(&mut out, payload).unwrap();
            }
            PROTO_UDP => b.udp(sport, dport).write(&mut out, payload).unwrap(),
            _ => unreachable!(),
        }
        out
    }

    fn checksum_ok(pkt: &[u8]) -> bool {
        let p = Ipv6Packet::new_checked(pkt).unwrap();
        let (s, d) = (p.src_addr(), p.dst_addr());
        match u8::from(p.next_header()) {
            PROTO_TCP => TcpPacket::new_unchecked(p.payload()).verify_checksum_v6(&s, &d),
            PROTO_UDP => UdpPacket::new_unchecked(p.payload()).verify_checksum_v6(&s, &d),
            _ => unreachable!(),
        }
    }

    #[test]
    fn test_forward_rewrites_tuple_with_valid_checksums() {
        for proto in [PROTO_TCP, PROTO_UDP] {
            let mut pkt = packet(proto, "fd00:1::5", "fd00:96::10", 40000, 80, b"hello six");
            let parsed = flow_key(&pkt).unwrap();
            let (from, flags) = (parsed.key, parsed.flags);
            assert_eq!((parsed.l4, parsed.fragment), (IP6, None));
            assert_eq!(from.proto, proto);
            assert_eq!((from.sport, from.dport), (40000, 80));
            assert_eq!(flags != 0, proto == PROTO_TCP);
            let to = FlowKey6 {
                src: ip("fd00:2::1"),
                dst: ip("fd00:10:244::7"),
                sport: 20001,
                dport: 8080,
                proto,
            };
            forward_with(&mut pkt, IP6, &from, &to, FlowKey6::delta(&from, &to));
            assert_eq!(flow_key(&pkt).unwrap().key, to);
            assert_eq!(Ipv6Packet::new_checked(&pkt[..]).unwrap().hop_limit(), 8);
            assert!(checksum_ok(&pkt), "{proto}: checksum after NAT66");
            // And back: the reply direction restores the original tuple.
            let back = from;
            forward_with(&mut pkt, IP6, &to, &back, FlowKey6::delta(&to, &back));
            assert!(checksum_ok(&pkt));
            assert_eq!(flow_key(&pkt).unwrap().key, from);
        }
    }

    #[test]
    fn test_not_a_flow() {
        // ICMPv6 echo: routed, no tuple.
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv6(ip("fd00::1").octets(), ip("fd00::2").octets(), 9)
            .icmpv6_echo_request(1, 1)
            .write(&mut out, b"x")
            .unwrap();
        assert!(flow_key(&out).is_err());
        // A TCP header cut short.
        let pkt = packet(PROTO_TCP, "fd00::1", "fd00::2", 1, 2, b"");
        assert!(flow_key(&pkt[..IP6 + 10]).is_err());
        assert!(flow_key(&[0u8; 3]).is_err());
    }

    /// `pkt` (an IPv6 packet without extension headers) with `ext` (next header, bytes)
    /// inserted after the fixed header.
    fn with_ext(pkt: &[u8], ext: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = pkt[..IP6].to_vec();
        let l4_proto = out[6];
        let mut chain = Vec::new();
        for (i, (kind, body)) in ext.iter().enumerate() {
            let next = ext.get(i + 1).map_or(l4_proto, |e| e.0);
            let mut h = body.clone();
            h[0] = next;
            chain.extend(h);
            let _ = kind;
        }
        out[6] = ext[0].0;
        out.extend(&chain);
        out.extend(&pkt[IP6..]);
        let len = (out.len() - IP6) as u16;
        out[4..6].copy_from_slice(&len.to_be_bytes());
        out
    }

    #[test]
    fn test_extension_headers_and_fragments_are_walked_to_the_ports() {
        let pkt = packet(PROTO_UDP, "fd00:1::5", "fd00:96::10", 40000, 53, b"query");
        // Hop-by-hop (8 bytes), destination options (16 bytes), then UDP.
        let hbh = vec![0, 0, 1, 4, 0, 0, 0, 0];
        let mut dst_opts = vec![0, 1, 1, 12];
        dst_opts.extend([0u8; 12]);
        let p = with_ext(&pkt, &[(HOP_BY_HOP, hbh.clone()), (DEST_OPTIONS, dst_opts)]);
        let parsed = flow_key(&p).unwrap();
        assert_eq!(parsed.l4, IP6 + 24);
        assert_eq!((parsed.key.sport, parsed.key.dport), (40000, 53));
        assert_eq!(parsed.fragment, None);
        // NAT through the options keeps the checksum right.
        let mut q = p.clone();
        let to = FlowKey6 {
            dst: ip("fd00:10:244::7"),
            dport: 5353,
            ..parsed.key
        };
        forward_with(
            &mut q,
            parsed.l4,
            &parsed.key,
            &to,
            FlowKey6::delta(&parsed.key, &to),
        );
        let after = flow_key(&q).unwrap();
        assert_eq!(after.key, to);
        let l4 = &q[after.l4..];
        assert!(UdpPacket::new_unchecked(l4).verify_checksum_v6(&to.src, &to.dst));
        // A first fragment carries the ports; a later one (offset 1448) only the identity.
        let first = with_ext(
            &pkt,
            &[(FRAGMENT, vec![0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef])],
        );
        let parsed = flow_key(&first).unwrap();
        assert_eq!(parsed.fragment, Some((0xdead_beef, false)));
        assert_eq!(
            (parsed.key.sport, parsed.key.dport, parsed.l4),
            (40000, 53, IP6 + 8)
        );
        let off = (1448u16 / 8) << 3;
        let [a, b] = off.to_be_bytes();
        let later = with_ext(
            &pkt,
            &[(FRAGMENT, vec![0, 0, a, b, 0xde, 0xad, 0xbe, 0xef])],
        );
        let parsed = flow_key(&later).unwrap();
        assert_eq!(parsed.fragment, Some((0xdead_beef, true)));
        assert_eq!(
            (parsed.key.sport, parsed.key.dport, parsed.key.proto),
            (0, 0, PROTO_UDP)
        );
        // A routing header still routing, or a hop-by-hop header not first: not ours.
        let routing = with_ext(&pkt, &[(ROUTING, vec![0, 0, 0, 1, 0, 0, 0, 0])]);
        assert_eq!(flow_key(&routing), Err(NoFlow6::Other));
        let done = with_ext(&pkt, &[(ROUTING, vec![0, 0, 0, 0, 0, 0, 0, 0])]);
        assert_eq!(flow_key(&done).unwrap().key.dport, 53);
        let late_hbh = with_ext(&pkt, &[(DEST_OPTIONS, vec![0; 8]), (HOP_BY_HOP, hbh)]);
        assert_eq!(flow_key(&late_hbh), Err(NoFlow6::Other));
        // A chain that runs past the packet.
        let mut cut = with_ext(&pkt, &[(DEST_OPTIONS, vec![0, 200, 0, 0, 0, 0, 0, 0])]);
        cut.truncate(IP6 + 16);
        let len = (cut.len() - IP6) as u16;
        cut[4..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(flow_key(&cut), Err(NoFlow6::Other));
    }

    #[test]
    fn test_whole_segments_whose_lengths_do_not_fit_are_malformed() {
        // A TCP data offset past the segment (the frame that once panicked a worker), or under
        // the fixed header.
        for offset in [0xf0u8, 0x40] {
            let mut tcp = packet(PROTO_TCP, "fd00::7", "fd00:96::1", 40000, 80, b"x");
            tcp[IP6 + 12] = offset;
            assert_eq!(flow_key(&tcp), Err(NoFlow6::Malformed));
        }
        // A UDP length that is not the payload's.
        let mut udp = packet(PROTO_UDP, "fd00::7", "fd00:96::1", 40000, 53, b"query");
        udp[IP6 + 4..IP6 + 6].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(flow_key(&udp), Err(NoFlow6::Malformed));
        // A first fragment holds only part of its datagram: not checked here.
        let mut tcp = packet(PROTO_TCP, "fd00::7", "fd00:96::1", 40000, 80, b"x");
        tcp[IP6 + 12] = 0xf0;
        let first = with_ext(&tcp, &[(FRAGMENT, vec![0, 0, 0, 1, 0, 0, 0, 9])]);
        assert_eq!(flow_key(&first).unwrap().key.dport, 80);
    }

    #[test]
    fn test_hash_spreads_and_depends_on_every_field() {
        let k = FlowKey6 {
            src: ip("fd00::1"),
            dst: ip("fd00:96::1"),
            sport: 1000,
            dport: 80,
            proto: PROTO_TCP,
        };
        let h = k.hash_seeded(7);
        let variants = [
            FlowKey6 {
                src: ip("fd00::2"),
                ..k
            },
            FlowKey6 {
                src: ip("fd01::1"),
                ..k
            },
            FlowKey6 {
                dst: ip("fd00:96::2"),
                ..k
            },
            FlowKey6 { sport: 1001, ..k },
            FlowKey6 { dport: 81, ..k },
            FlowKey6 {
                proto: PROTO_UDP,
                ..k
            },
        ];
        for v in variants {
            assert_ne!(v.hash_seeded(7), h, "{v}");
        }
        assert_ne!(k.hash_seeded(8), h);
        assert_eq!(k.reverse().reverse(), k);
    }
}
