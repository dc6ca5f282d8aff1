//! **icmp-error**: the ICMP and ICMPv6 errors the node sends about a packet (time exceeded,
//! port unreachable), under one rate limit per worker.
//!
//! Reads the packet and the reason it cannot go on (`ip4-forward`/`ip6-forward` at the last
//! hop, a Service flow at the last hop, `reject` for a Service without endpoints). Sets the
//! frame to the error, quoting the packet, from the node's address towards the source (or
//! from the Service address), and counts the reason. Next: `ip4-output`/`ip6-output` back to
//! the source; nothing when the limit is reached (`icmp-rate-limited`), when the packet is
//! itself an ICMP error, or when it is a later fragment (RFC 1122 §3.2.2, RFC 4443 §2.4 (e)).
//!
//! The limit ([`IcmpLimiter`]) is one token bucket for both families: a worker sends at most
//! `icmp_rate` errors a second, IPv4 and IPv6 together, in bursts of a tenth of that.

use super::family::V4;
use super::ip6_input::{HOP_LIMIT, IP6};
use super::{Action, Ip4Meta, Worker, L2};
use crate::drop::DropReason;
use crate::ip6::ICMP6_QUOTE_MAX;
use crate::mbuf::Mbuf;
use crate::nat::PROTO_ICMP;
use crate::port::PortId;
use crate::tables::Tables;
use crate::time::Instant;
use crate::wire::{icmpv4, icmpv6, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::{Ipv6Packet, Ipv6Repr};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes of the offending packet quoted in an ICMP error (RFC 1812 §4.3.2.3: up to 576 total).
const ICMP_QUOTE_MAX: usize = 576 - 28;

/// A token bucket: `rate` tokens a second, at most a tenth of that (and at least one) saved up.
#[derive(Debug, Clone)]
pub struct IcmpLimiter {
    rate: u32,
    tokens: u32,
    refill: Instant,
}

impl IcmpLimiter {
    /// A full bucket.
    pub fn new(rate: u32) -> IcmpLimiter {
        IcmpLimiter {
            rate,
            tokens: (rate / 10).max(1),
            refill: Instant::ZERO,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let burst = (self.rate / 10).max(1);
        let elapsed = now.saturating_since(self.refill);
        let add = elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000;
        let add = u32::try_from(add).unwrap_or(u32::MAX);
        if add > 0 {
            self.tokens = self.tokens.saturating_add(add).min(burst);
            self.refill = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Worker {
    /// Turns the frame into an ICMP error `kind` (type, code) about itself, sent from the
    /// node's address towards its source (or `port`'s); `reason` is counted as its drop reason.
    pub(super) fn icmp_error(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip4Meta,
        kind: (u8, u8),
        reason: DropReason,
    ) -> Action {
        let src = t
            .routes
            .lookup(meta.src)
            .map(|h| h.src)
            .or_else(|| t.port_address(port));
        match src {
            Some(src) => self.icmp_error_from(t, m, meta, src, kind, Some(reason)),
            None => Action::Drop(reason),
        }
    }

    /// Turns the frame into an ICMP error about itself, sent from `src` back to its source.
    /// `reason`, if given, is counted as the original frame's drop reason.
    pub(super) fn icmp_error_from(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        meta: &Ip4Meta,
        src: Ipv4Addr,
        (ty, code): (u8, u8),
        reason: Option<DropReason>,
    ) -> Action {
        if let Some(r) = reason {
            self.count(r);
        }
        // Never an error about an error, nor about a non-first fragment (RFC 1122 §3.2.2; its
        // bytes are mid-datagram payload, not a header).
        if meta.later_fragment {
            return Action::Free;
        }
        if meta.proto == PROTO_ICMP {
            let is_err = Icmpv4Packet::new_checked(&m[meta.l4..])
                .is_ok_and(|p| icmpv4::is_error(p.msg_type()));
            if is_err {
                return Action::Free;
            }
        }
        if !self.icmp.allow(self.now) {
            return Action::Drop(DropReason::IcmpRateLimited);
        }
        let quote_len = (m.len() - L2).min(ICMP_QUOTE_MAX);
        let mut quote = [0u8; ICMP_QUOTE_MAX];
        quote[..quote_len].copy_from_slice(&m[L2..L2 + quote_len]);
        let repr = Ipv4Repr {
            src_addr: src,
            dst_addr: meta.src,
            next_header: IpProtocol::Icmp,
            payload_len: 8 + quote_len,
            hop_limit: 64,
        };
        m.set_len(L2 + 20 + 8 + quote_len);
        let buf = &mut m[L2..];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut *buf));
        {
            let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[20..]);
            icmp.set_msg_type(ty);
            icmp.set_msg_code(code);
            icmp.set_rest_of_header(0);
            icmp.data_mut()[..quote_len].copy_from_slice(&quote[..quote_len]);
            icmp.fill_checksum();
        }
        self.stats.icmp_sent += 1;
        self.route_output::<V4>(t, m, meta.src)
    }

    /// Turns the frame into an ICMPv6 error about itself, sent back to its source `src` from
    /// `from` (a Service address) or the node's address towards it; `reason` is counted as the
    /// original frame's drop reason, as for IPv4.
    pub(super) fn icmp6_error(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        (src, from): (Ipv6Addr, Option<Ipv6Addr>),
        (ty, code): (u8, u8),
        reason: Option<DropReason>,
    ) -> Action {
        let from = from.or_else(|| {
            t.ip6
                .routes
                .lookup(src)
                .map(|h| h.src)
                .or_else(|| t.ip6.port_address(in_port))
        });
        let Some(from) = from else {
            return reason.map_or(Action::Free, Action::Drop);
        };
        if let Some(r) = reason {
            self.count(r);
        }
        // Never an error about an error (RFC 4443 §2.4 (e)), nor about what we cannot inspect.
        if !may_answer_with_error(&m[L2..]) {
            return Action::Free;
        }
        if !self.icmp.allow(self.now) {
            return Action::Drop(DropReason::IcmpRateLimited);
        }
        let quote_len = (m.len() - L2).min(ICMP6_QUOTE_MAX);
        let icmp_len = 8 + quote_len;
        m.set_len(L2 + IP6 + icmp_len);
        m.buffer_mut().copy_within(L2..L2 + quote_len, L2 + IP6 + 8);
        let repr = Ipv6Repr {
            src_addr: from,
            dst_addr: src,
            next_header: IpProtocol::Icmpv6,
            payload_len: icmp_len,
            hop_limit: HOP_LIMIT,
        };
        let buf = &mut m[L2..];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut *buf));
        let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[IP6..]);
        icmp.set_msg_type(ty);
        icmp.set_msg_code(code);
        icmp.set_rest_of_header(0);
        icmp.fill_checksum(&from, &src);
        self.stats.icmp_sent += 1;
        self.ip6_output_local(t, m, in_port, src)
    }
}

/// Whether an ICMPv6 error may be sent about this IPv6 packet: not when it is itself an ICMPv6
/// error (RFC 4443 §2.4 (e)), nor when its upper layer cannot be found (a non-first fragment,
/// truncated or too many extension headers).
fn may_answer_with_error(pkt: &[u8]) -> bool {
    let Some(&first) = pkt.get(6) else {
        return false;
    };
    let mut next = first;
    let mut off = IP6;
    for _ in 0..8 {
        match IpProtocol::from(next) {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let (Some(&n), Some(&len)) = (pkt.get(off), pkt.get(off + 1)) else {
                    return false;
                };
                next = n;
                off += (usize::from(len) + 1) * 8;
            }
            IpProtocol::Ipv6Frag => {
                let (Some(&n), Some(&hi), Some(&lo)) =
                    (pkt.get(off), pkt.get(off + 2), pkt.get(off + 3))
                else {
                    return false;
                };
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    return false;
                }
                next = n;
                off += 8;
            }
            IpProtocol::Icmpv6 => {
                return pkt.get(off).is_some_and(|&ty| !icmpv6::is_error(ty));
            }
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod test {
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig};
    use super::IcmpLimiter;
    use crate::drop::DropReason;
    use crate::time::Instant;

    #[test]
    fn limiter_refills_at_its_rate_up_to_a_tenth_of_a_second() {
        let mut l = IcmpLimiter::new(100);
        let t0 = Instant::from_secs(1);
        // A full bucket of 10, then nothing until time passes.
        assert_eq!((0..20).filter(|_| l.allow(t0)).count(), 10);
        assert!(!l.allow(t0));
        assert!(l.allow(t0 + core::time::Duration::from_millis(10)));
        assert!(!l.allow(t0 + core::time::Duration::from_millis(10)));
        // A long pause saves up no more than the burst.
        let later = t0 + core::time::Duration::from_secs(60);
        assert_eq!((0..50).filter(|_| l.allow(later)).count(), 10);
        // A rate under 10 still allows one.
        let mut l = IcmpLimiter::new(5);
        assert!(l.allow(t0));
        assert!(!l.allow(t0));
    }

    /// Both families draw from one bucket: a worker sends at most `icmp_rate` errors a second
    /// in all (each family had its own bucket, so twice the rate could go out).
    #[test]
    fn ipv4_and_ipv6_errors_share_one_rate_limit() {
        let mut rig = Rig::new(WorkerConfig {
            icmp_rate: 20, // a burst of 2
            ..WorkerConfig::new(0, 1)
        });
        rig.w
            .neigh
            .learn([10, 0, 0, 99].into(), HOST, Instant::ZERO);
        rig.w.neigh6.learn((0, ip("fd00::99")), HOST, Instant::ZERO);
        let v4 = udp4_frame(MAC0, [10, 0, 0, 99], [10, 1, 0, 7], 1, b"ttl 1");
        let v6 = udp6_frame(MAC0, "fd00::99", "fd10::7", 1, 30);
        let t = Instant::from_secs(1);
        assert_eq!(rig.input(&v4, 0, t).0, Action::Tx(0), "IPv4 time exceeded");
        assert_eq!(rig.input(&v6, 0, t).0, Action::Tx(0), "IPv6 time exceeded");
        // The burst is spent, for both families.
        let limited = Action::Drop(DropReason::IcmpRateLimited);
        assert_eq!(rig.input(&v4, 0, t).0, limited);
        assert_eq!(rig.input(&v6, 0, t).0, limited);
        // 50 ms later one token (20/s) is back: one error, of either family.
        let t = t + core::time::Duration::from_millis(50);
        assert_eq!(rig.input(&v6, 0, t).0, Action::Tx(0));
        assert_eq!(rig.input(&v4, 0, t).0, limited);
        assert_eq!(rig.w.stats.icmp_sent, 3);
        assert_eq!(rig.drops(DropReason::Ip4TtlExceeded), 3);
        assert_eq!(rig.drops(DropReason::Ip6HopLimitExceeded), 3);
    }
}
