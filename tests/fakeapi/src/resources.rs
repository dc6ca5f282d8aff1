//! The four kinds the server knows: their names and paths (for discovery and routing), how a
//! body is checked (a round trip through the k8s-openapi type, which also prunes unknown
//! fields as the real apiserver does), the defaults the apiserver would fill in, and the
//! columns `kubectl get` prints.

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Map, Value};

/// One resource type of the API (a kind and where it lives).
#[derive(Debug)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The path segment, e.g. `services`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services`, or `endpointslices.discovery.k8s.io`: the name error messages use.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every resource type served. A resource's index in this table is its id in the store.
pub static RESOURCES: [ResourceType; 4] = [
    ResourceType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
    },
];

/// Store id of namespaces (cascading deletes and namespace checks use it).
pub const NAMESPACES: usize = 0;

pub fn by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

/// A kind, plural, singular or short name, case-insensitive (for the test hooks).
pub fn by_any_name(name: &str) -> Option<usize> {
    let name = name.to_ascii_lowercase();
    RESOURCES.iter().position(|r| {
        r.kind.eq_ignore_ascii_case(&name)
            || r.plural == name
            || r.singular == name
            || r.short_names.contains(&name.as_str())
    })
}

/// The API groups served under `/apis` (the core group is `/api`).
pub fn named_groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    groups
}

/// Legacy discovery: the `APIResourceList` of one group version.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": VERBS,
                "shortNames": r.short_names,
                "categories": r.categories,
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): one `APIGroupDiscovery` per group, for
/// the core group (`/api`) or the named groups (`/apis`).
pub fn aggregated_discovery(core: bool) -> Value {
    let groups: Vec<&str> = if core { vec![""] } else { named_groups() };
    let items: Vec<Value> = groups
        .iter()
        .map(|group| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == *group)
                .map(|r| {
                    json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": VERBS,
                        "shortNames": r.short_names,
                        "categories": r.categories,
                    })
                })
                .collect();
            json!({
                "metadata": {"name": group, "creationTimestamp": null},
                "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `api/v1` or `apis/GROUP/VERSION`: a group version's path, as OpenAPI v3 names it.
fn group_version_path(r: &ResourceType) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

/// `/openapi/v3`: where each group version's document is.
pub fn openapi_v3_index() -> Value {
    let paths: Map<String, Value> = RESOURCES
        .iter()
        .map(|r| {
            let gv = group_version_path(r);
            let url = json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash=fakeapi")});
            (gv, url)
        })
        .collect();
    json!({"paths": paths})
}

/// A group version's OpenAPI v3 document, reduced to what kubectl reads from it: the PATCH
/// operation of each kind and its query parameters. Seeing `fieldValidation` there, kubectl
/// leaves validation to the server (`fieldValidation=Strict`) instead of downloading schemas.
/// There are no schemas: kubectl then computes apply patches from its built-in types.
pub fn openapi_v3_document(gv_path: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| group_version_path(r) == gv_path)
    {
        let object_path = if r.namespaced {
            format!("/{gv_path}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("/{gv_path}/{}/{{name}}", r.plural)
        };
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        let patch = json!({
            "operationId": format!("patch{}", r.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
            "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(object_path, json!({"patch": patch}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (fakeapi)", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// Checks a body against the kind's schema by deserialising it into the k8s-openapi type and
/// serialising it back. Fields the type does not know are dropped (the apiserver prunes them
/// too); with `strict`, they are an error, as with `fieldValidation=Strict`.
pub fn normalize(res: usize, body: &Value, strict: bool) -> Result<Value, String> {
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        body: &Value,
    ) -> Result<Value, String> {
        let typed: T = serde_json::from_value(body.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    let out = match RESOURCES[res].kind {
        "Namespace" => round_trip::<Namespace>(body),
        "Node" => round_trip::<Node>(body),
        "Service" => round_trip::<Service>(body),
        "EndpointSlice" => round_trip::<EndpointSlice>(body),
        kind => unreachable!("no schema for {kind}"),
    }?;
    if strict {
        let mut unknown = Vec::new();
        unknown_fields(body, &out, "", &mut unknown);
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(format!("strict decoding error: {}", list.join(", ")));
        }
    }
    Ok(out)
}

/// Paths present (and not null) in `input` but missing from `pruned`.
fn unknown_fields(input: &Value, pruned: &Value, prefix: &str, out: &mut Vec<String>) {
    match (input, pruned) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match b.get(k) {
                    None if !v.is_null() => out.push(path),
                    Some(w) => unknown_fields(v, w, &path, out),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                unknown_fields(v, w, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks a name the way the apiserver does for this kind: Services are DNS-1035 labels,
/// everything else DNS-1123 subdomains (Namespaces: labels).
pub fn validate_name(res: usize, name: &str) -> Result<(), String> {
    let label = matches!(RESOURCES[res].kind, "Service" | "Namespace");
    let max = if label { 63 } else { 253 };
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.'));
    let first_ok = match name.chars().next() {
        Some(c) if RESOURCES[res].kind == "Service" => c.is_ascii_lowercase(),
        Some(c) => c.is_ascii_lowercase() || c.is_ascii_digit(),
        None => false,
    };
    let last_ok = name
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() <= max && ok_chars && first_ok && last_ok {
        Ok(())
    } else {
        Err(format!(
            "metadata.name: Invalid value: \"{name}\": must be a lowercase RFC 1123 {} \
             (at most {max} characters)",
            if label { "label" } else { "subdomain" }
        ))
    }
}

/// Addresses and ports handed out to Services, as the apiserver's allocators would.
#[derive(Debug)]
pub struct Allocator {
    next_ip: u32,
    next_node_port: u16,
}

impl Default for Allocator {
    fn default() -> Self {
        // 10.96.0.0/12 is kubeadm's default Service range; .1 is the `kubernetes` Service.
        Allocator {
            next_ip: u32::from_be_bytes([10, 96, 0, 10]),
            next_node_port: 30000,
        }
    }
}

impl Allocator {
    fn cluster_ip(&mut self) -> String {
        let ip = std::net::Ipv4Addr::from(self.next_ip);
        self.next_ip += 1;
        ip.to_string()
    }

    fn node_port(&mut self) -> u16 {
        let port = self.next_node_port;
        self.next_node_port = if port >= 32767 { 30000 } else { port + 1 };
        port
    }
}

/// Fills in what the apiserver defaults or allocates. `old` is the stored object on an
/// update: allocated values (cluster IPs, node ports) carry over from it when the new body
/// leaves them out.
pub fn apply_defaults(res: usize, obj: &mut Value, old: Option<&Value>, alloc: &mut Allocator) {
    match RESOURCES[res].kind {
        "Namespace" => {
            let name = obj["metadata"]["name"].clone();
            let labels = obj["metadata"]
                .as_object_mut()
                .expect("metadata is an object")
                .entry("labels")
                .or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = name;
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"]["phase"] = json!("Active");
        }
        "Service" => service_defaults(obj, old, alloc),
        "EndpointSlice" => {
            if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports {
                    default(port, "protocol", json!("TCP"));
                }
            }
        }
        _ => {}
    }
}

fn default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        let slot = map.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

fn service_defaults(obj: &mut Value, old: Option<&Value>, alloc: &mut Allocator) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let old_spec = old.map(|o| &o["spec"]);
    let spec = &mut obj["spec"];
    default(spec, "type", json!("ClusterIP"));
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind == "ExternalName" {
        return;
    }
    default(spec, "sessionAffinity", json!("None"));
    default(spec, "internalTrafficPolicy", json!("Cluster"));
    if kind == "NodePort" || kind == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(old_spec) = old_spec {
        for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if !old_spec[key].is_null() {
                default(spec, key, old_spec[key].clone());
            }
        }
    }
    if spec["clusterIP"].is_null() {
        spec["clusterIP"] = match spec["clusterIPs"].get(0) {
            Some(ip) => ip.clone(),
            None => json!(alloc.cluster_ip()),
        };
    }
    let cluster_ip = spec["clusterIP"].clone();
    default(spec, "clusterIPs", json!([cluster_ip]));
    default(spec, "ipFamilies", json!(["IPv4"]));
    default(spec, "ipFamilyPolicy", json!("SingleStack"));
    let wants_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            default(port, "protocol", json!("TCP"));
            let number = port["port"].clone();
            default(port, "targetPort", number);
            if wants_node_ports && port["nodePort"].is_null() {
                let previous = old_spec
                    .and_then(|s| s["ports"].as_array())
                    .and_then(|ps| ps.iter().find(|p| p["port"] == port["port"]))
                    .map(|p| p["nodePort"].clone())
                    .filter(|p| !p.is_null());
                port["nodePort"] = previous.unwrap_or_else(|| json!(alloc.node_port()));
            }
        }
    }
}

/// Column definitions of the Table `kubectl get` asks for (the same as the apiserver's).
pub fn table_columns(res: usize) -> Vec<Value> {
    let col = |name: &str, ty: &str, priority: u32| {
        json!({
            "name": name,
            "type": ty,
            "format": if name == "Name" { "name" } else { "" },
            "description": "",
            "priority": priority,
        })
    };
    match RESOURCES[res].kind {
        "Namespace" => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Age", "string", 0),
        ],
        "Node" => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Roles", "string", 0),
            col("Age", "string", 0),
            col("Version", "string", 0),
            col("Internal-IP", "string", 1),
        ],
        "Service" => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            col("Age", "string", 0),
            col("Selector", "string", 1),
        ],
        "EndpointSlice" => vec![
            col("Name", "string", 0),
            col("AddressType", "string", 0),
            col("Ports", "string", 0),
            col("Endpoints", "string", 0),
            col("Age", "string", 0),
        ],
        kind => unreachable!("no table for {kind}"),
    }
}

/// The cells of one object's row, in the order of [`table_columns`].
pub fn table_cells(res: usize, obj: &Value, now: k8s_openapi::jiff::Timestamp) -> Vec<Value> {
    let name = obj["metadata"]["name"].clone();
    let age = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| human_age(now.as_second() - t.as_second()))
        .unwrap_or_else(|| "<unknown>".into());
    let none = || "<none>".to_string();
    match RESOURCES[res].kind {
        "Namespace" => vec![name, obj["status"]["phase"].clone(), json!(age)],
        "Node" => {
            let ready = obj["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let roles: Vec<&str> = obj["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            let internal_ip = obj["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                .and_then(|a| a["address"].as_str())
                .map(str::to_string)
                .unwrap_or_else(none);
            vec![
                name,
                json!(ready),
                json!(if roles.is_empty() {
                    none()
                } else {
                    roles.join(",")
                }),
                json!(age),
                json!(obj["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or("")),
                json!(internal_ip),
            ]
        }
        "Service" => {
            let spec = &obj["spec"];
            let external: Vec<String> = spec["externalIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(
                    obj["status"]["loadBalancer"]["ingress"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|i| &i["ip"]),
                )
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let external = match (spec["type"].as_str(), external.is_empty()) {
                (Some("ExternalName"), _) => spec["externalName"].as_str().unwrap_or("").into(),
                (Some("LoadBalancer"), true) => "<pending>".into(),
                (_, true) => none(),
                (_, false) => external.join(","),
            };
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect();
            let selector = spec["selector"]
                .as_object()
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(none);
            vec![
                name,
                spec["type"].clone(),
                json!(spec["clusterIP"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(none)),
                json!(external),
                json!(if ports.is_empty() {
                    none()
                } else {
                    ports.join(",")
                }),
                json!(age),
                json!(selector),
            ]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = obj["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64().map(|p| p.to_string()))
                .collect();
            let addresses: Vec<&str> = obj["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            let endpoints = match addresses.len() {
                0 => "<unset>".to_string(),
                n if n > 3 => format!("{} + {} more...", addresses[..3].join(","), n - 3),
                _ => addresses.join(","),
            };
            vec![
                name,
                obj["addressType"].clone(),
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(endpoints),
                json!(age),
            ]
        }
        kind => unreachable!("no table for {kind}"),
    }
}

/// kubectl's short ages: `45s`, `3m20s`, `12m`, `5h`, `3d`.
fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 if s % 60 != 0 => format!("{}m{}s", s / 60, s % 60),
        120..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `metadata` of an object as a `Map` (every stored object has one).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("just made an object")
}
