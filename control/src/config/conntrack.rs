//! `conntrack:` and `snat:` — flow table sizes and timeouts, and the node's SNAT port range.
//!
//! ```yaml
//! conntrack: { max_flows: 1048576, max_flows6: 262144, timeouts: { tcp_established: 432000, udp: 30 }, affinity_max: 65536 }
//! snat: { ports: "20000-29999" }
//! ```

use super::*;

/// TCP connection-tracking timeouts in seconds (Linux nf_conntrack defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimeouts {
    pub syn_sent: u32,
    pub syn_recv: u32,
    pub established: u32,
    pub fin_wait: u32,
    pub close_wait: u32,
    pub last_ack: u32,
    pub time_wait: u32,
    pub close: u32,
    pub unacknowledged: u32,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        TcpTimeouts {
            syn_sent: 120,
            syn_recv: 60,
            established: 432_000,
            fin_wait: 120,
            close_wait: 60,
            last_ack: 30,
            time_wait: 120,
            close: 10,
            unacknowledged: 300,
        }
    }
}

/// `conntrack:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Capacity of the flow table, >= 16 (default 1_048_576).
    pub max_flows: usize,
    /// Capacity of the IPv6 flow table (IPv6 Services), >= 16 (default a quarter of
    /// `max_flows`: an IPv6 flow takes 128 bytes, an IPv4 one 64).
    pub max_flows6: usize,
    pub tcp: TcpTimeouts,
    /// UDP flow seen in one direction only (default 30).
    pub udp_secs: u32,
    /// UDP flow seen in both directions (default 120).
    pub udp_stream_secs: u32,
    /// ICMP (default 30).
    pub icmp_secs: u32,
    /// SCTP, one generic established-like timeout (default 3600).
    pub sctp_secs: u32,
    /// Capacity of the session-affinity table, >= 1 (default 65536).
    pub affinity_max: usize,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_flows: 1_048_576,
            max_flows6: 262_144,
            tcp: TcpTimeouts::default(),
            udp_secs: 30,
            udp_stream_secs: 120,
            icmp_secs: 30,
            sctp_secs: 3600,
            affinity_max: 65_536,
        }
    }
}

/// `snat:` — source ports used when masquerading, inclusive range.
///
/// The default, 20000-29999, stays out of the kernel's ephemeral ports (Linux's
/// `ip_local_port_range`, 32768-60999 by default) and of the NodePort range (30000-32767): the
/// node's kernel shares the node addresses through its `host_interface`, and a reply to one of
/// its own connections on a port that is also a live SNAT port would be taken for the SNATed
/// flow's. (Calico's eBPF data plane picks the same range for the same reason.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnatConfig {
    pub port_min: u16,
    pub port_max: u16,
}

impl Default for SnatConfig {
    fn default() -> Self {
        SnatConfig {
            port_min: 20000,
            port_max: 29999,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    max_flows: Option<usize>,
    max_flows6: Option<usize>,
    timeouts: Option<RawTimeouts>,
    affinity_max: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    tcp_syn_sent: Option<u32>,
    tcp_syn_recv: Option<u32>,
    tcp_established: Option<u32>,
    tcp_fin_wait: Option<u32>,
    tcp_close_wait: Option<u32>,
    tcp_last_ack: Option<u32>,
    tcp_time_wait: Option<u32>,
    tcp_close: Option<u32>,
    tcp_unacknowledged: Option<u32>,
    udp: Option<u32>,
    udp_stream: Option<u32>,
    icmp: Option<u32>,
    sctp: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSnat {
    ports: Option<String>,
}

pub(super) fn validate(raw: Option<RawConntrack>) -> Result<ConntrackConfig, Invalid> {
    let mut conntrack = ConntrackConfig::default();
    if let Some(c) = raw {
        if let Some(m) = c.max_flows {
            if m < 16 {
                return invalid(
                    "conntrack.max_flows",
                    format!("{m} is below the minimum 16"),
                );
            }
            conntrack.max_flows = m;
            conntrack.max_flows6 = (m / 4).max(16);
        }
        if let Some(m) = c.max_flows6 {
            if m < 16 {
                return invalid(
                    "conntrack.max_flows6",
                    format!("{m} is below the minimum 16"),
                );
            }
            conntrack.max_flows6 = m;
        }
        if let Some(m) = c.affinity_max {
            if m < 1 {
                return invalid("conntrack.affinity_max", "must be at least 1");
            }
            conntrack.affinity_max = m;
        }
        if let Some(t) = c.timeouts {
            let tcp = &mut conntrack.tcp;
            let slots: [(&str, Option<u32>, &mut u32); 13] = [
                ("tcp_syn_sent", t.tcp_syn_sent, &mut tcp.syn_sent),
                ("tcp_syn_recv", t.tcp_syn_recv, &mut tcp.syn_recv),
                ("tcp_established", t.tcp_established, &mut tcp.established),
                ("tcp_fin_wait", t.tcp_fin_wait, &mut tcp.fin_wait),
                ("tcp_close_wait", t.tcp_close_wait, &mut tcp.close_wait),
                ("tcp_last_ack", t.tcp_last_ack, &mut tcp.last_ack),
                ("tcp_time_wait", t.tcp_time_wait, &mut tcp.time_wait),
                ("tcp_close", t.tcp_close, &mut tcp.close),
                (
                    "tcp_unacknowledged",
                    t.tcp_unacknowledged,
                    &mut tcp.unacknowledged,
                ),
                ("udp", t.udp, &mut conntrack.udp_secs),
                ("udp_stream", t.udp_stream, &mut conntrack.udp_stream_secs),
                ("icmp", t.icmp, &mut conntrack.icmp_secs),
                ("sctp", t.sctp, &mut conntrack.sctp_secs),
            ];
            for (name, value, slot) in slots {
                if let Some(v) = value {
                    if v == 0 {
                        return invalid(
                            format!("conntrack.timeouts.{name}"),
                            "a timeout must be at least 1 second",
                        );
                    }
                    *slot = v;
                }
            }
        }
    }
    Ok(conntrack)
}

/// `node_port_range`: the SNAT range must stay out of it.
pub(super) fn validate_snat(
    raw: Option<RawSnat>,
    node_port_range: (u16, u16),
) -> Result<SnatConfig, Invalid> {
    let mut snat = SnatConfig::default();
    if let Some(ports) = raw.and_then(|s| s.ports) {
        snat = parse_port_range(&ports).map_err(|r| ("snat.ports".to_string(), r))?;
    }
    let (np_min, np_max) = node_port_range;
    if snat.port_min <= np_max && np_min <= snat.port_max {
        return invalid(
            "snat.ports",
            format!(
                "{}-{} overlaps the NodePort range {np_min}-{np_max} (kubernetes.node_port_range): \
                 a new connection to a NodePort could be taken for the reply of a SNATed flow; \
                 choose ports outside it (the default is 20000-29999)",
                snat.port_min, snat.port_max
            ),
        );
    }
    Ok(snat)
}

fn parse_port_range(s: &str) -> Result<SnatConfig, String> {
    let (port_min, port_max) = parse_range(s, "20000-29999")?;
    if port_min < 1024 {
        return Err(format!(
            "range `{s}` starts below 1024; SNAT ports must be 1024..=65535"
        ));
    }
    Ok(SnatConfig { port_min, port_max })
}
