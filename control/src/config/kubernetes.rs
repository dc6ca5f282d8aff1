//! `kubernetes:` — where Services and EndpointSlices come from (manifests, an API server) and
//! how often the tables follow them.
//!
//! ```yaml
//! kubernetes: { manifests: manifests, kubeconfig: /etc/nodegate/kubeconfig, min_sync_ms: 1000, node_port_range: "30000-32767" }
//! ```

use super::*;

/// kube-proxy's `minSyncPeriod` default: at most one table rebuild per second.
pub const DEFAULT_MIN_SYNC_MS: u64 = 1000;

/// Longest `kubernetes.min_sync_ms` accepted (one minute).
pub const MAX_MIN_SYNC_MS: u64 = 60_000;

/// `kubernetes:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// Directory of Service / EndpointSlice manifests, resolved against the config file's
    /// directory.
    pub manifests: Option<PathBuf>,
    /// Kubeconfig file for the API server, resolved against the config file's directory
    /// (`--kubeconfig` overrides it).
    pub kubeconfig: Option<PathBuf>,
    /// Whether and how to find the API server when no kubeconfig is named.
    pub api: ApiMode,
    /// Least time between two table rebuilds (kube-proxy's `minSyncPeriod`): changes arriving
    /// meanwhile are applied together by the next one.
    pub min_sync: std::time::Duration,
    /// The cluster's NodePort range (the API server's `--service-node-port-range`), inclusive:
    /// `snat.ports` must stay out of it.
    pub node_port_range: (u16, u16),
}

/// The API server's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            manifests: None,
            kubeconfig: None,
            api: ApiMode::Auto,
            min_sync: std::time::Duration::from_millis(DEFAULT_MIN_SYNC_MS),
            node_port_range: DEFAULT_NODE_PORT_RANGE,
        }
    }
}

/// `kubernetes.api`: where the API server's address and credentials come from when no
/// kubeconfig is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMode {
    /// A named kubeconfig, else the in-cluster configuration when running in a pod
    /// (`KUBERNETES_SERVICE_HOST` set), else no API server (manifests only).
    Auto,
    /// What kubectl would use: `$KUBECONFIG` or `~/.kube/config`, else the in-cluster
    /// configuration (kube's `Config::infer`).
    Infer,
    /// Never watch the API server, even in a pod: a clusterless node served by manifests.
    Off,
}

/// Where the API server watchers get their client configuration, as decided by
/// [`KubernetesConfig::api_source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    /// No API server: the tables come from the manifests only.
    None,
    /// This kubeconfig file, its current context.
    Kubeconfig(PathBuf),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA under
    /// `/var/run/secrets/kubernetes.io/serviceaccount`).
    InCluster,
    /// kube's `Config::infer`: `$KUBECONFIG` or `~/.kube/config`, else in-cluster.
    Infer,
}

impl std::fmt::Display for ApiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiSource::None => f.write_str("none"),
            ApiSource::Kubeconfig(path) => write!(f, "kubeconfig {}", path.display()),
            ApiSource::InCluster => f.write_str("in-cluster service account"),
            ApiSource::Infer => f.write_str("inferred ($KUBECONFIG, ~/.kube/config or in-cluster)"),
        }
    }
}

impl KubernetesConfig {
    /// Decides where the API server comes from: `cli_kubeconfig` (`--kubeconfig`) first, then
    /// `kubeconfig`, then `api`; `in_pod` says whether the in-cluster environment
    /// (`KUBERNETES_SERVICE_HOST`) is there. A kubeconfig with `api: off` is a contradiction and
    /// an error naming the field.
    pub fn api_source(
        &self,
        file: &Path,
        cli_kubeconfig: Option<&Path>,
        in_pod: bool,
    ) -> Result<ApiSource, ConfigError> {
        let kubeconfig = cli_kubeconfig
            .map(Path::to_path_buf)
            .or(self.kubeconfig.clone());
        match (self.api, kubeconfig) {
            (ApiMode::Off, Some(k)) => Err(ConfigError {
                file: file.to_path_buf(),
                field: "kubernetes.api".to_string(),
                reason: format!(
                    "`off` does not watch the API server, but a kubeconfig ({}) is given",
                    k.display()
                ),
            }),
            (ApiMode::Off, None) => Ok(ApiSource::None),
            (_, Some(k)) => Ok(ApiSource::Kubeconfig(k)),
            (ApiMode::Infer, None) => Ok(ApiSource::Infer),
            (ApiMode::Auto, None) if in_pod => Ok(ApiSource::InCluster),
            (ApiMode::Auto, None) => Ok(ApiSource::None),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    manifests: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    api: Option<String>,
    min_sync_ms: Option<u64>,
    node_port_range: Option<String>,
}

pub(super) fn validate(
    raw: Option<RawKubernetes>,
    base: &Path,
) -> Result<KubernetesConfig, Invalid> {
    let mut kubernetes = KubernetesConfig::default();
    if let Some(k) = raw {
        kubernetes.manifests = k.manifests.map(|m| resolve(base, m));
        if let Some(path) = k.kubeconfig {
            if path.as_os_str().is_empty() {
                return invalid("kubernetes.kubeconfig", "must not be empty");
            }
            kubernetes.kubeconfig = Some(resolve(base, path));
        }
        if let Some(api) = k.api {
            kubernetes.api = match api.as_str() {
                "auto" => ApiMode::Auto,
                "infer" => ApiMode::Infer,
                "off" => ApiMode::Off,
                other => {
                    return invalid(
                        "kubernetes.api",
                        format!("unknown mode `{other}`, expected `auto`, `infer` or `off`"),
                    )
                }
            };
        }
        if let Some(ms) = k.min_sync_ms {
            if ms > MAX_MIN_SYNC_MS {
                return invalid(
                    "kubernetes.min_sync_ms",
                    format!("{ms} is above the maximum {MAX_MIN_SYNC_MS} (one minute)"),
                );
            }
            kubernetes.min_sync = std::time::Duration::from_millis(ms);
        }
        if let Some(range) = k.node_port_range {
            kubernetes.node_port_range = parse_range(&range, "30000-32767")
                .map_err(|r| ("kubernetes.node_port_range".to_string(), r))?;
        }
    }
    if kubernetes.api == ApiMode::Off {
        if let Some(k) = &kubernetes.kubeconfig {
            return invalid(
                "kubernetes.api",
                format!(
                    "`off` does not watch the API server, but kubernetes.kubeconfig is {}",
                    k.display()
                ),
            );
        }
    }
    Ok(kubernetes)
}
