//! `health:` and `metrics:` — the health-check and metrics servers.
//!
//! ```yaml
//! health: { bind: "0.0.0.0:10256", timeout_secs: 60, node_port_address: "0.0.0.0", host_stack: true }
//! metrics: { bind: "127.0.0.1:10249" }
//! ```

use super::*;

/// `health:` — what kube-proxy's health servers do, nodegate's do (live runs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Where the proxy health server (`/healthz`, `/livez`) listens, on the node's kernel;
    /// kube-proxy's `--healthz-bind-address`. `None` (`bind: ""`): not served.
    pub bind: Option<SocketAddr>,
    /// How long a table change may wait to be in effect in every worker before the proxy is
    /// unhealthy; kube-proxy's is twice its sync period, 2 x 30 s.
    pub timeout_secs: u32,
    /// Where the node's kernel listens on each Service's `healthCheckNodePort` (kube-proxy:
    /// every address, or its `--nodeport-addresses`). `None` (`node_port_address: ""`): only the
    /// data-plane ports answer.
    pub node_port_address: Option<IpAddr>,
    /// Whether the data-plane ports answer health checks themselves (the host stack).
    pub host_stack: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            bind: Some(SocketAddr::from(([0, 0, 0, 0], 10256))),
            timeout_secs: 60,
            node_port_address: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            host_stack: true,
        }
    }
}

/// `metrics:` — kube-proxy's metrics server (`/metrics`, `/proxyMode`, `/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// kube-proxy's `--metrics-bind-address`; `None` (`bind: ""`): not served.
    pub bind: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 10249))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    bind: Option<String>,
    timeout_secs: Option<u32>,
    node_port_address: Option<String>,
    host_stack: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    bind: Option<String>,
}

pub(super) fn validate(
    raw_health: Option<RawHealth>,
    raw_metrics: Option<RawMetrics>,
) -> Result<(HealthConfig, MetricsConfig), Invalid> {
    let mut health = HealthConfig::default();
    if let Some(raw) = raw_health {
        if let Some(b) = raw.bind {
            health.bind = parse_bind(&b).map_err(|r| ("health.bind".to_string(), r))?;
        }
        if let Some(t) = raw.timeout_secs {
            if !(1..=3600).contains(&t) {
                return invalid(
                    "health.timeout_secs",
                    format!("{t} is out of range 1..=3600"),
                );
            }
            health.timeout_secs = t;
        }
        if let Some(a) = raw.node_port_address {
            health.node_port_address = if a.is_empty() {
                None
            } else {
                Some(a.parse().map_err(|_| {
                    (
                        "health.node_port_address".to_string(),
                        format!(
                            "invalid IP address `{a}` (expected e.g. `0.0.0.0`, or \"\" for none)"
                        ),
                    )
                })?)
            };
        }
        health.host_stack = raw.host_stack.unwrap_or(health.host_stack);
    }
    let mut metrics = MetricsConfig::default();
    if let Some(b) = raw_metrics.and_then(|m| m.bind) {
        metrics.bind = parse_bind(&b).map_err(|r| ("metrics.bind".to_string(), r))?;
    }
    if let (Some(h), Some(m)) = (health.bind, metrics.bind) {
        if h.port() == m.port()
            && (h.ip() == m.ip() || h.ip().is_unspecified() || m.ip().is_unspecified())
        {
            return invalid("metrics.bind", format!("{m} collides with health.bind {h}"));
        }
    }
    Ok((health, metrics))
}

/// A server's `ADDRESS:PORT` (`[::]:10256` for IPv6), or `""` for no server.
fn parse_bind(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("`{s}` has port 0; give the port to listen on")),
        Ok(a) => Ok(Some(a)),
        Err(_) => Err(format!(
            "invalid address `{s}` (expected ADDRESS:PORT such as `0.0.0.0:10256` or `[::]:10256`, \
             or \"\" for no server)"
        )),
    }
}
