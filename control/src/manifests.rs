//! Kubernetes Service and EndpointSlice manifests from disk into [`ClusterState`].
//!
//! Accepts what `kubectl get svc,endpointslices -A -o yaml` (or `-o json`) prints: single
//! objects, multi-document YAML (`---`), and `List` / `ServiceList` / `EndpointSliceList`
//! objects whose `items` are Services or EndpointSlices. Other kinds are skipped. Each object is
//! deserialised into the `k8s-openapi` type, then converted with kube-proxy's semantics into
//! the [`crate::model`] values.
//!
//! Like kube-proxy, objects labelled `service.kubernetes.io/service-proxy-name` (owned by
//! another proxy) or `service.kubernetes.io/headless` are ignored, `ExternalName` Services are
//! ignored, and FQDN EndpointSlices are skipped. Services are dual-stack: addresses of both
//! families are kept, and `IPv4` and `IPv6` EndpointSlices are both read.
//!
//! The same conversion serves objects watched on the API server ([`service_from_object`],
//! [`slice_from_object`], [`node_from_object`]).
//!
//! Errors name the file, the place of the offending field and the reason, e.g.
//! `svc.yaml: document 2: items[3] (Service default/web): spec.ports[0].port: 70000 is out of
//! range 1..=65535`. Document numbers count from 1, list indices from 0.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::Value;

use crate::config::path_error;
use crate::model::{
    ClusterState, Endpoint, EndpointPort, EndpointSlice, Node, Protocol, Service, ServicePort,
    ServiceType, TargetPort,
};

/// Label naming the proxy that owns a Service; kube-proxy ignores objects carrying it.
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// Label set on the endpoints of headless Services; kube-proxy ignores objects carrying it.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Label of an EndpointSlice naming its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECS: u32 = 10_800;
/// Largest allowed `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const MAX_AFFINITY_TIMEOUT_SECS: u32 = 86_400;

/// Directory nesting followed by [`load_dir`] (guards against symlink loops).
const MAX_DEPTH: usize = 16;

/// A manifest that could not be read, parsed or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    /// Where in the file: `document 2: items[3] (Service default/web): spec.ports[0].port`;
    /// `(file)` / `(directory)` for I/O errors.
    pub field: String,
    pub reason: String,
}

/// Loads every `*.yaml`, `*.yml` and `*.json` file under `dir` (recursively, in path order,
/// hidden files and directories skipped) into one [`ClusterState`]. An empty directory gives an
/// empty state; a missing one is an error. A Service or EndpointSlice defined twice is an error.
pub fn load_dir(dir: &Path) -> Result<ClusterState, ManifestError> {
    let mut files = Vec::new();
    collect_files(dir, 0, &mut files)?;
    files.sort();
    let mut loader = Loader::default();
    let mut state = ClusterState::default();
    for file in &files {
        loader.load_file(file, &mut state)?;
    }
    tracing::debug!(
        dir = %dir.display(),
        files = files.len(),
        services = state.services.len(),
        endpoint_slices = state.endpoint_slices.len(),
        "loaded manifests"
    );
    Ok(state)
}

/// What identifies the content of a manifests directory without reading it: every manifest
/// file [`load_dir`] would read, with its size, inode, and modification and change times.
/// Equal stamps mean nothing a reload would see has changed (an edit in place, a file
/// replaced by rename, added or removed, a ConfigMap volume's `..data` link swapped all change
/// it).
pub type DirStamp = Vec<(PathBuf, FileStamp)>;

/// One file of a [`DirStamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub len: u64,
    pub inode: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// The [`DirStamp`] of `dir`: cheap (metadata only), for polling a directory for changes.
pub fn dir_stamp(dir: &Path) -> Result<DirStamp, ManifestError> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    collect_files(dir, 0, &mut files)?;
    files.sort();
    let mut stamp = Vec::with_capacity(files.len());
    for file in files {
        let meta = std::fs::metadata(&file).map_err(|e| ManifestError {
            file: file.clone(),
            field: "(file)".to_string(),
            reason: e.to_string(),
        })?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        stamp.push((
            file,
            FileStamp {
                len: meta.len(),
                inode: meta.ino(),
                mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            },
        ));
    }
    Ok(stamp)
}

/// Why one Kubernetes object cannot be used: the field inside it and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ObjectError {
    /// Path inside the object, e.g. `spec.ports[0].port`.
    pub field: String,
    pub reason: String,
}

impl From<Invalid> for ObjectError {
    fn from((field, reason): Invalid) -> ObjectError {
        ObjectError { field, reason }
    }
}

/// Converts a Service as the API server sends it, with the rules manifests are read with;
/// `Ok(None)` when kube-proxy would ignore it (headless, `ExternalName`, another proxy's).
pub fn service_from_object(svc: core::Service) -> Result<Option<Service>, ObjectError> {
    let (namespace, name) = object_name(&svc.metadata)?;
    let loc = format!("Service {namespace}/{name}");
    Ok(convert_service(svc, &namespace, &name, &loc)?)
}

/// Converts an EndpointSlice as the API server sends it, with the rules manifests are read
/// with; `Ok(None)` when kube-proxy would ignore it (not IPv4, no Service label, another
/// proxy's, a headless Service's).
pub fn slice_from_object(
    slice: discovery::EndpointSlice,
) -> Result<Option<EndpointSlice>, ObjectError> {
    let (namespace, name) = object_name(&slice.metadata)?;
    let loc = format!("EndpointSlice {namespace}/{name}");
    Ok(convert_slice(slice, &namespace, &name, &loc)?)
}

/// Label of a Node naming its zone.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// Taint the cluster autoscaler puts on a Node it is about to remove.
pub const TAINT_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";

/// Converts a Node as the API server sends it: its zone label, whether it is being deleted,
/// and whether the cluster autoscaler is draining it.
pub fn node_from_object(node: core::Node) -> Result<Node, ObjectError> {
    let Some(name) = node.metadata.name.filter(|n| !n.is_empty()) else {
        return Err(ObjectError {
            field: "metadata.name".to_string(),
            reason: "required field is missing".to_string(),
        });
    };
    let zone = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_ZONE))
        .filter(|z| !z.is_empty())
        .cloned();
    let spec = node.spec.unwrap_or_default();
    let to_be_deleted = spec
        .taints
        .unwrap_or_default()
        .iter()
        .any(|t| t.key == TAINT_TO_BE_DELETED);
    let mut pod_cidrs = Vec::new();
    for (i, c) in spec.pod_cidrs.unwrap_or_default().iter().enumerate() {
        let net = parse_cidr(c).map_err(|reason| ObjectError {
            field: format!("spec.podCIDRs[{i}]"),
            reason,
        })?;
        if !pod_cidrs.contains(&net) {
            pod_cidrs.push(net);
        }
    }
    Ok(Node {
        name,
        zone,
        deleting: node.metadata.deletion_timestamp.is_some(),
        to_be_deleted,
        pod_cidrs,
    })
}

/// Namespace (default `default`) and name (required) of an object.
fn object_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(String, String), ObjectError> {
    match meta.name.as_deref() {
        Some(name) if !name.is_empty() => Ok((
            namespace_or_default(meta.namespace.as_deref()),
            name.to_string(),
        )),
        _ => Err(ObjectError {
            field: "metadata.name".to_string(),
            reason: "required field is missing".to_string(),
        }),
    }
}

/// Loads one manifest file (YAML, or JSON when named `*.json`) into `state`. On error `state`
/// is left unchanged.
pub fn load_file(path: &Path, state: &mut ClusterState) -> Result<(), ManifestError> {
    let mut updated = state.clone();
    Loader::default().load_file(path, &mut updated)?;
    *state = updated;
    Ok(())
}

/// Parses multi-document YAML `text` (JSON is accepted too) and adds its Services and
/// EndpointSlices to `state`; `file` names the text in errors. A Service or EndpointSlice
/// already in `state` is an error. On error `state` is left unchanged.
pub fn parse_str(text: &str, file: &Path, state: &mut ClusterState) -> Result<(), ManifestError> {
    let mut updated = state.clone();
    Loader::default().parse_yaml(text, file, &mut updated)?;
    *state = updated;
    Ok(())
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let io_err = |e: std::io::Error| ManifestError {
        file: dir.to_path_buf(),
        field: "(directory)".to_string(),
        reason: e.to_string(),
    };
    if depth > MAX_DEPTH {
        return Err(ManifestError {
            file: dir.to_path_buf(),
            field: "(directory)".to_string(),
            reason: format!("directories nested deeper than {MAX_DEPTH} levels (symlink loop?)"),
        });
    }
    let meta = std::fs::metadata(dir).map_err(io_err)?;
    if !meta.is_dir() {
        return Err(ManifestError {
            file: dir.to_path_buf(),
            field: "(directory)".to_string(),
            reason: "not a directory".to_string(),
        });
    }
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::debug!(path = %entry.path().display(), "skipping non-UTF-8 file name");
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks (Kubernetes ConfigMap volumes are made of them).
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                return Err(ManifestError {
                    file: path,
                    field: "(file)".to_string(),
                    reason: e.to_string(),
                })
            }
        };
        if meta.is_dir() {
            collect_files(&path, depth + 1, out)?;
        } else if meta.is_file() && has_manifest_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn has_manifest_extension(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum ObjKind {
    Service,
    EndpointSlice,
}

impl ObjKind {
    fn as_str(self) -> &'static str {
        match self {
            ObjKind::Service => "Service",
            ObjKind::EndpointSlice => "EndpointSlice",
        }
    }
}

/// Remembers which file defined each object, to report duplicates.
#[derive(Default)]
struct Loader {
    origins: HashMap<(ObjKind, String, String), PathBuf>,
    /// The file being parsed.
    current: PathBuf,
}

/// Where an object sits in a file: document number, list index, identity.
struct Loc {
    doc: usize,
    item: Option<usize>,
    ident: Option<String>,
}

impl Loc {
    fn render(&self, path: &str) -> String {
        let mut s = format!("document {}", self.doc);
        if let Some(i) = self.item {
            let _ = write!(s, ": items[{i}]");
        }
        if let Some(id) = &self.ident {
            let _ = write!(s, " ({id})");
        }
        if !path.is_empty() {
            let _ = write!(s, ": {path}");
        }
        s
    }
}

type Invalid = (String, String);

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Invalid> {
    Err((field.into(), reason.into()))
}

impl Loader {
    fn load_file(&mut self, path: &Path, state: &mut ClusterState) -> Result<(), ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            field: "(file)".to_string(),
            reason: e.to_string(),
        })?;
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            self.parse_json(&text, path, state)
        } else {
            self.parse_yaml(&text, path, state)
        }
    }

    fn parse_json(
        &mut self,
        text: &str,
        file: &Path,
        state: &mut ClusterState,
    ) -> Result<(), ManifestError> {
        self.current = file.to_path_buf();
        if text.trim().is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(text).map_err(|e| ManifestError {
            file: file.to_path_buf(),
            field: "document 1".to_string(),
            reason: e.to_string(),
        })?;
        self.document(value, 1, file, state)
    }

    fn parse_yaml(
        &mut self,
        text: &str,
        file: &Path,
        state: &mut ClusterState,
    ) -> Result<(), ManifestError> {
        self.current = file.to_path_buf();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let n = i + 1;
            let value = Value::deserialize(doc).map_err(|e| ManifestError {
                file: file.to_path_buf(),
                field: format!("document {n}"),
                reason: e.to_string(),
            })?;
            self.document(value, n, file, state)?;
        }
        Ok(())
    }

    fn document(
        &mut self,
        value: Value,
        doc: usize,
        file: &Path,
        state: &mut ClusterState,
    ) -> Result<(), ManifestError> {
        let err = |field: String, reason: String| ManifestError {
            file: file.to_path_buf(),
            field,
            reason,
        };
        let doc_loc = Loc {
            doc,
            item: None,
            ident: None,
        };
        let mut obj = match value {
            Value::Null => return Ok(()),
            Value::Object(map) => map,
            other => {
                return Err(err(
                    doc_loc.render(""),
                    format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        json_type(&other)
                    ),
                ))
            }
        };
        let kind = match obj.get("kind") {
            Some(Value::String(k)) => k.clone(),
            Some(other) => {
                return Err(err(
                    doc_loc.render("kind"),
                    format!("expected a string, found {}", json_type(other)),
                ))
            }
            None => {
                return Err(err(
                    doc_loc.render("kind"),
                    "required field is missing (not a Kubernetes object?)".to_string(),
                ))
            }
        };
        let item_kind = match kind.as_str() {
            "List" => None,
            "ServiceList" => Some(("Service", "v1")),
            "EndpointSliceList" => Some(("EndpointSlice", "discovery.k8s.io/v1")),
            _ => {
                return self
                    .object(Value::Object(obj), doc, None, state)
                    .map_err(|(f, r)| err(f, r));
            }
        };
        let items = match obj.remove("items") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(err(
                    doc_loc.render("items"),
                    format!("expected a sequence, found {}", json_type(&other)),
                ))
            }
        };
        for (i, mut item) in items.into_iter().enumerate() {
            // Items of typed lists read from the API server carry no kind/apiVersion.
            if let (Some((k, v)), Value::Object(map)) = (item_kind, &mut item) {
                map.entry("kind")
                    .or_insert_with(|| Value::String(k.to_string()));
                map.entry("apiVersion")
                    .or_insert_with(|| Value::String(v.to_string()));
            }
            self.object(item, doc, Some(i), state)
                .map_err(|(f, r)| err(f, r))?;
        }
        Ok(())
    }

    /// Handles one object (a document or a List item). Errors carry the rendered location.
    fn object(
        &mut self,
        value: Value,
        doc: usize,
        item: Option<usize>,
        state: &mut ClusterState,
    ) -> Result<(), Invalid> {
        let mut loc = Loc {
            doc,
            item,
            ident: None,
        };
        let Value::Object(map) = &value else {
            return invalid(
                loc.render(""),
                format!(
                    "expected a Kubernetes object (a mapping), found {}",
                    json_type(&value)
                ),
            );
        };
        let kind = match map.get("kind") {
            Some(Value::String(k)) => k.clone(),
            Some(other) => {
                return invalid(
                    loc.render("kind"),
                    format!("expected a string, found {}", json_type(other)),
                )
            }
            None => return invalid(loc.render("kind"), "required field is missing"),
        };
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let meta = map.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let namespace = namespace_or_default(
            meta.and_then(|m| m.get("namespace"))
                .and_then(Value::as_str),
        );
        if let Some(name) = &name {
            loc.ident = Some(format!("{kind} {namespace}/{name}"));
        }
        let at = |path: &str| loc.render(path);

        let obj_kind = match (kind.as_str(), api_version.as_str()) {
            ("Service", "v1") => ObjKind::Service,
            ("EndpointSlice", "discovery.k8s.io/v1") => ObjKind::EndpointSlice,
            _ => {
                tracing::debug!(
                    location = %at(""),
                    kind = %kind,
                    api_version = %api_version,
                    "skipping object that is not a v1 Service or discovery.k8s.io/v1 EndpointSlice"
                );
                return Ok(());
            }
        };
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return invalid(at("metadata.name"), "required field is missing");
        };

        match obj_kind {
            ObjKind::Service => {
                let svc: core::Service = deserialize_known(value, obj_kind, &at)?;
                let svc = convert_service(svc, &namespace, &name, &at(""))
                    .map_err(|(f, r)| (at(&f), r))?;
                self.add(
                    &mut state.services,
                    svc,
                    obj_kind,
                    &namespace,
                    &name,
                    &at,
                    |s| (s.namespace.as_str(), s.name.as_str()),
                )
            }
            ObjKind::EndpointSlice => {
                let slice: discovery::EndpointSlice = deserialize_known(value, obj_kind, &at)?;
                let slice = convert_slice(slice, &namespace, &name, &at(""))
                    .map_err(|(f, r)| (at(&f), r))?;
                self.add(
                    &mut state.endpoint_slices,
                    slice,
                    obj_kind,
                    &namespace,
                    &name,
                    &at,
                    |s| (s.namespace.as_str(), s.name.as_str()),
                )
            }
        }
    }

    /// Adds a converted object (`None`: one kube-proxy ignores) unless one of the same
    /// namespace and name is already there, which is an error naming both places.
    #[allow(clippy::too_many_arguments)]
    fn add<T>(
        &mut self,
        list: &mut Vec<T>,
        object: Option<T>,
        kind: ObjKind,
        namespace: &str,
        name: &str,
        at: &dyn Fn(&str) -> String,
        key: impl Fn(&T) -> (&str, &str),
    ) -> Result<(), Invalid> {
        let Some(object) = object else {
            return Ok(());
        };
        if list.iter().any(|o| key(o) == (namespace, name)) {
            return invalid(at(""), self.duplicate(kind, namespace, name));
        }
        self.remember(kind, namespace, name);
        list.push(object);
        Ok(())
    }

    fn duplicate(&self, kind: ObjKind, namespace: &str, name: &str) -> String {
        let key = (kind, namespace.to_string(), name.to_string());
        match self.origins.get(&key) {
            Some(file) => format!(
                "duplicate {} {namespace}/{name}: already defined in {}",
                kind.as_str(),
                file.display()
            ),
            None => format!(
                "duplicate {} {namespace}/{name}: already loaded",
                kind.as_str()
            ),
        }
    }

    fn remember(&mut self, kind: ObjKind, namespace: &str, name: &str) {
        self.origins
            .entry((kind, namespace.to_string(), name.to_string()))
            .or_insert_with(|| self.current.clone());
    }
}

fn namespace_or_default(ns: Option<&str>) -> String {
    match ns {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => "default".to_string(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn parse_protocol(field: String, p: Option<&str>) -> Result<Protocol, Invalid> {
    match p {
        None | Some("") | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => invalid(
            field,
            format!("unsupported protocol `{other}`, expected `TCP`, `UDP` or `SCTP`"),
        ),
    }
}

fn port_number(field: String, n: i32) -> Result<u16, Invalid> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => invalid(field, format!("{n} is out of range 1..=65535")),
    }
}

/// Parses an IP address: `Some` for IPv4, `None` for IPv6 (dropped), error otherwise.
fn parse_ip(field: String, s: &str) -> Result<Option<IpAddr>, Invalid> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(Some(ip)),
        Err(_) => invalid(field, format!("invalid IP address `{s}`")),
    }
}

/// A CIDR of either family, reduced to its network address (`10.0.0.1/8` => `10.0.0.0/8`).
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = |why: &str| {
        format!("invalid CIDR `{s}`: {why} (expected e.g. `10.0.0.0/8` or `2001:db8::/32`)")
    };
    let (addr, len) = s.split_once('/').ok_or_else(|| bad("no prefix length"))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    if u32::from(len) > bits {
        return Err(bad("prefix length too long for the family"));
    }
    let net = match addr {
        IpAddr::V4(a) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    };
    Ok((net, len))
}

fn has_label(labels: &Option<std::collections::BTreeMap<String, String>>, key: &str) -> bool {
    labels.as_ref().is_some_and(|l| l.contains_key(key))
}

/// Converts a Service; `Ok(None)` when kube-proxy would ignore it. Error paths are relative to
/// the object.
fn convert_service(
    svc: core::Service,
    namespace: &str,
    name: &str,
    loc: &str,
) -> Result<Option<Service>, Invalid> {
    let labels = &svc.metadata.labels;
    for label in [LABEL_SERVICE_PROXY_NAME, LABEL_HEADLESS] {
        if has_label(labels, label) {
            tracing::debug!(location = %loc, label, "skipping Service with label");
            return Ok(None);
        }
    }
    let spec = svc.spec.unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        None | Some("") | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => {
            tracing::debug!(location = %loc, "skipping ExternalName Service");
            return Ok(None);
        }
        Some(other) => {
            return invalid(
                "spec.type",
                format!(
                    "unknown Service type `{other}`, expected `ClusterIP`, `NodePort`, \
                     `LoadBalancer` or `ExternalName`"
                ),
            )
        }
    };

    // Cluster IPs: clusterIPs wins over clusterIP; "None" means headless.
    let mut cluster_ips = Vec::new();
    let ip_list: Vec<(String, String)> = match &spec.cluster_ips {
        Some(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("spec.clusterIPs[{i}]"), s.clone()))
            .collect(),
        _ => spec
            .cluster_ip
            .iter()
            .map(|s| ("spec.clusterIP".to_string(), s.clone()))
            .collect(),
    };
    for (field, s) in ip_list {
        if s.is_empty() || s == "None" {
            continue;
        }
        if let Some(ip) = parse_ip(field, &s)? {
            if !cluster_ips.contains(&ip) {
                cluster_ips.push(ip);
            }
        }
    }

    let mut ports: Vec<ServicePort> = Vec::new();
    for (i, p) in spec.ports.unwrap_or_default().into_iter().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        let port = port_number(at("port"), p.port)?;
        let protocol = parse_protocol(at("protocol"), p.protocol.as_deref())?;
        let node_port = match p.node_port {
            None | Some(0) => None,
            Some(n) => Some(port_number(at("nodePort"), n)?),
        };
        let target_port = match p.target_port {
            None => TargetPort::Number(port),
            Some(IntOrString::Int(0)) => TargetPort::Number(port),
            Some(IntOrString::Int(n)) => TargetPort::Number(port_number(at("targetPort"), n)?),
            Some(IntOrString::String(s)) if s.is_empty() => TargetPort::Number(port),
            Some(IntOrString::String(s)) => TargetPort::Name(s),
        };
        let name = p.name.unwrap_or_default();
        if let Some(j) = ports
            .iter()
            .position(|q| q.name == name && q.protocol == protocol && q.port == port)
        {
            return invalid(
                format!("spec.ports[{i}]"),
                format!("duplicate of spec.ports[{j}]"),
            );
        }
        ports.push(ServicePort {
            name,
            protocol,
            port,
            node_port,
            target_port,
        });
    }

    let mut external_ips = Vec::new();
    for (i, s) in spec.external_ips.iter().flatten().enumerate() {
        if let Some(ip) = parse_ip(format!("spec.externalIPs[{i}]"), s)? {
            if !external_ips.contains(&ip) {
                external_ips.push(ip);
            }
        }
    }

    // As kube-proxy: status.loadBalancer.ingress only counts for LoadBalancer Services.
    let mut load_balancer_ips = Vec::new();
    if service_type == ServiceType::LoadBalancer {
        let ingress = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default();
        for (i, ing) in ingress.iter().enumerate() {
            let Some(s) = ing.ip.as_deref().filter(|s| !s.is_empty()) else {
                continue; // hostname-only ingress
            };
            // `ipMode: Proxy` (or anything but `VIP`): the load balancer proxies, so traffic
            // to its IP goes to it, in-cluster traffic included; kube-proxy's `IsVIPMode`
            // skips such an address the same way.
            if ing.ip_mode.as_deref().is_some_and(|m| m != "VIP") {
                continue;
            }
            if let Some(ip) = parse_ip(format!("status.loadBalancer.ingress[{i}].ip"), s)? {
                if !load_balancer_ips.contains(&ip) {
                    load_balancer_ips.push(ip);
                }
            }
        }
    }

    let external_policy_local = match spec.external_traffic_policy.as_deref() {
        None | Some("") | Some("Cluster") | Some("Global") => false,
        Some("Local") | Some("OnlyLocal") => true,
        Some(other) => {
            return invalid(
                "spec.externalTrafficPolicy",
                format!("unknown policy `{other}`, expected `Cluster` or `Local`"),
            )
        }
    };
    let internal_policy_local = match spec.internal_traffic_policy.as_deref() {
        None | Some("") | Some("Cluster") => false,
        Some("Local") => true,
        Some(other) => {
            return invalid(
                "spec.internalTrafficPolicy",
                format!("unknown policy `{other}`, expected `Cluster` or `Local`"),
            )
        }
    };

    let affinity_timeout_secs = match spec.session_affinity.as_deref() {
        None | Some("") | Some("None") => None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => Some(DEFAULT_AFFINITY_TIMEOUT_SECS),
                Some(t) if (1..=MAX_AFFINITY_TIMEOUT_SECS as i32).contains(&t) => Some(t as u32),
                Some(t) => {
                    return invalid(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        format!("{t} is out of range 1..={MAX_AFFINITY_TIMEOUT_SECS}"),
                    )
                }
            }
        }
        Some(other) => {
            return invalid(
                "spec.sessionAffinity",
                format!("unknown session affinity `{other}`, expected `None` or `ClientIP`"),
            )
        }
    };

    // kube-proxy trims each range and ignores the other family's.
    let mut load_balancer_source_ranges = Vec::new();
    for (i, r) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        let net =
            parse_cidr(r.trim()).map_err(|e| (format!("spec.loadBalancerSourceRanges[{i}]"), e))?;
        if !load_balancer_source_ranges.contains(&net) {
            load_balancer_source_ranges.push(net);
        }
    }

    let health_check_node_port = match spec.health_check_node_port {
        None | Some(0) => None,
        Some(n) => Some(port_number("spec.healthCheckNodePort".to_string(), n)?),
    };

    Ok(Some(Service {
        namespace: namespace.to_string(),
        name: name.to_string(),
        service_type,
        cluster_ips,
        ports,
        external_ips,
        load_balancer_ips,
        external_policy_local,
        internal_policy_local,
        affinity_timeout_secs,
        health_check_node_port,
        load_balancer_source_ranges,
    }))
}

/// Converts an EndpointSlice; `Ok(None)` when kube-proxy would ignore it. Error paths are
/// relative to the object.
fn convert_slice(
    slice: discovery::EndpointSlice,
    namespace: &str,
    name: &str,
    loc: &str,
) -> Result<Option<EndpointSlice>, Invalid> {
    let labels = &slice.metadata.labels;
    for label in [LABEL_SERVICE_PROXY_NAME, LABEL_HEADLESS] {
        if has_label(labels, label) {
            tracing::debug!(location = %loc, label, "skipping EndpointSlice with label");
            return Ok(None);
        }
    }
    let ipv6 = match slice.address_type.as_str() {
        "IPv4" => false,
        "IPv6" => true,
        "" => return invalid("addressType", "required field is missing"),
        other => {
            tracing::debug!(location = %loc, address_type = other, "skipping EndpointSlice that is not IPv4 or IPv6");
            return Ok(None);
        }
    };
    let service_name = labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
        .filter(|s| !s.is_empty())
        .cloned();
    let Some(service_name) = service_name else {
        tracing::debug!(
            location = %loc,
            "skipping EndpointSlice without the {LABEL_SERVICE_NAME} label"
        );
        return Ok(None);
    };

    let mut ports = Vec::new();
    for (i, p) in slice.ports.unwrap_or_default().into_iter().enumerate() {
        let Some(n) = p.port else {
            tracing::debug!(location = %loc, index = i, "skipping EndpointSlice port without a port number");
            continue;
        };
        ports.push(EndpointPort {
            name: p.name.unwrap_or_default(),
            protocol: parse_protocol(format!("ports[{i}].protocol"), p.protocol.as_deref())?,
            port: port_number(format!("ports[{i}].port"), n)?,
        });
    }

    let mut endpoints = Vec::with_capacity(slice.endpoints.len());
    for (i, ep) in slice.endpoints.into_iter().enumerate() {
        if ep.addresses.is_empty() {
            return invalid(
                format!("endpoints[{i}].addresses"),
                "an endpoint needs at least one address",
            );
        }
        let mut addresses = Vec::with_capacity(ep.addresses.len());
        for (j, a) in ep.addresses.iter().enumerate() {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            let ip: IpAddr = a
                .parse()
                .ok()
                .filter(|ip: &IpAddr| ip.is_ipv6() == ipv6)
                .ok_or_else(|| {
                    (
                        format!("endpoints[{i}].addresses[{j}]"),
                        format!("invalid {family} address `{a}` (addressType is {family})"),
                    )
                })?;
            addresses.push(ip);
        }
        let c = ep.conditions.unwrap_or_default();
        let ready = c.ready.unwrap_or(true);
        let serving = c.serving.unwrap_or(ready);
        let terminating = c.terminating.unwrap_or(false);
        endpoints.push(Endpoint {
            addresses,
            ready,
            serving,
            terminating,
            node_name: ep.node_name.filter(|s| !s.is_empty()),
            zone: ep.zone.filter(|s| !s.is_empty()),
            zone_hints: ep
                .hints
                .as_ref()
                .and_then(|h| h.for_zones.as_ref())
                .map(|z| z.iter().map(|z| z.name.clone()).collect())
                .unwrap_or_default(),
            node_hints: ep
                .hints
                .as_ref()
                .and_then(|h| h.for_nodes.as_ref())
                .map(|n| n.iter().map(|n| n.name.clone()).collect())
                .unwrap_or_default(),
        });
    }

    Ok(Some(EndpointSlice {
        namespace: namespace.to_string(),
        name: name.to_string(),
        service_name,
        ports,
        endpoints,
    }))
}

/// Deserialises a Kubernetes object read from disk, refusing fields its schema does not have
/// ([`crate::fields`]); an error names the field at its full location.
fn deserialize_known<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: Value,
    kind: ObjKind,
    at: &dyn Fn(&str) -> String,
) -> Result<T, (String, String)> {
    let written = value.clone();
    let typed: T = deserialize_at(value, at)?;
    let again = serde_json::to_value(&typed).map_err(|e| (at(""), e.to_string()))?;
    match crate::fields::first_unknown(kind.as_str(), &written, &again) {
        Some((field, reason)) => Err((at(&field), reason)),
        None => Ok(typed),
    }
}

/// Deserialises a Kubernetes object; an error names the field at its full location.
fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: Value,
    at: &dyn Fn(&str) -> String,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let (f, r) = path_error(e.path(), e.inner().to_string());
        (at(&f), r)
    })
}
