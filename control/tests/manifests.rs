//! Tests of `control::manifests`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use control::manifests::{load_dir, load_file, parse_str, ManifestError};
use control::model::{
    ClusterState, Endpoint, EndpointPort, Protocol, Service, ServicePort, ServiceType, TargetPort,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn service<'a>(state: &'a ClusterState, ns: &str, name: &str) -> &'a Service {
    state
        .services
        .iter()
        .find(|s| s.namespace == ns && s.name == name)
        .unwrap_or_else(|| panic!("no Service {ns}/{name}"))
}

fn parse(text: &str) -> Result<ClusterState, ManifestError> {
    let mut state = ClusterState::default();
    parse_str(text, Path::new("test.yaml"), &mut state)?;
    Ok(state)
}

#[test]
fn kubectl_list_output() {
    let mut state = ClusterState::default();
    load_file(&fixtures().join("kubectl-list.yaml"), &mut state).unwrap();

    let names: Vec<String> = state
        .services
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    // ExternalName and other-proxy Services are skipped; order is file order.
    assert_eq!(
        names,
        [
            "shop/web",
            "shop/ingress",
            "shop/cache",
            "default/sticky",
            "shop/db"
        ]
    );

    // NodePort, multi-port, named targetPort.
    let web = service(&state, "shop", "web");
    assert_eq!(
        *web,
        Service {
            namespace: "shop".into(),
            name: "web".into(),
            service_type: ServiceType::NodePort,
            cluster_ips: vec![ip("10.96.10.10").into()],
            ports: vec![
                ServicePort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: Some(30080),
                    target_port: TargetPort::Number(8080),
                },
                ServicePort {
                    name: "metrics".into(),
                    protocol: Protocol::Tcp,
                    port: 9090,
                    node_port: Some(30090),
                    target_port: TargetPort::Name("metrics".into()),
                },
            ],
            external_ips: vec![],
            load_balancer_ips: vec![],
            external_policy_local: false,
            internal_policy_local: false,
            affinity_timeout_secs: None,
            health_check_node_port: None,
            load_balancer_source_ranges: vec![],
        }
    );

    // LoadBalancer, dual stack (both families kept), status ingress (hostname ignored), Local
    // policy.
    let lb = service(&state, "shop", "ingress");
    assert_eq!(lb.service_type, ServiceType::LoadBalancer);
    assert_eq!(
        lb.cluster_ips,
        vec![
            IpAddr::from(ip("10.96.20.20")),
            "fd00:10:96::20".parse::<IpAddr>().unwrap()
        ]
    );
    assert_eq!(
        lb.external_ips,
        vec![
            IpAddr::from(ip("192.0.2.50")),
            "2001:db8::50".parse::<IpAddr>().unwrap()
        ]
    );
    assert_eq!(
        lb.load_balancer_ips,
        vec![
            IpAddr::from(ip("203.0.113.10")),
            "2001:db8::10".parse::<IpAddr>().unwrap()
        ]
    );
    assert!(lb.external_policy_local);
    assert!(!lb.internal_policy_local);
    assert_eq!(lb.health_check_node_port, Some(32000));
    assert_eq!(lb.ports.len(), 2);
    assert_eq!(lb.ports[1].protocol, Protocol::Udp);
    assert_eq!(lb.ports[1].node_port, Some(30443));

    // ClusterIP with ClientIP affinity, protocol defaults, targetPort default, SCTP.
    let cache = service(&state, "shop", "cache");
    assert_eq!(cache.service_type, ServiceType::ClusterIp);
    assert_eq!(cache.cluster_ips, vec![ip("10.96.30.30")]);
    assert_eq!(cache.affinity_timeout_secs, Some(600));
    assert!(cache.internal_policy_local);
    assert_eq!(
        cache.ports,
        vec![
            ServicePort {
                name: "redis".into(),
                protocol: Protocol::Tcp,
                port: 6379,
                node_port: None,
                target_port: TargetPort::Number(6379),
            },
            ServicePort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53,
                node_port: None,
                target_port: TargetPort::Number(5353),
            },
            ServicePort {
                name: "sig".into(),
                protocol: Protocol::Sctp,
                port: 2905,
                node_port: None,
                target_port: TargetPort::Number(2905),
            },
        ]
    );

    // Namespace and type defaults, default affinity timeout, unnamed port.
    let sticky = service(&state, "default", "sticky");
    assert_eq!(sticky.service_type, ServiceType::ClusterIp);
    assert_eq!(sticky.affinity_timeout_secs, Some(10_800));
    assert_eq!(sticky.ports[0].name, "");

    // Headless.
    let db = service(&state, "shop", "db");
    assert!(db.cluster_ips.is_empty());
    assert_eq!(db.ports.len(), 1);

    // Slices: the IPv6 slice is read (dual stack); the one without a service-name label is
    // skipped.
    let slices: Vec<&str> = state
        .endpoint_slices
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        slices,
        ["web-x7k2p", "ingress-v6", "ingress-v4", "cache-empty"]
    );
    let v6 = &state.endpoint_slices[1];
    assert_eq!(
        v6.endpoints[0].addresses,
        vec!["fd00:10:244::10".parse::<IpAddr>().unwrap()]
    );

    let web = &state.endpoint_slices[0];
    assert_eq!(web.namespace, "shop");
    assert_eq!(web.service_name, "web");
    assert_eq!(
        web.ports,
        vec![
            EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080
            },
            EndpointPort {
                name: "metrics".into(),
                protocol: Protocol::Tcp,
                port: 9100
            },
        ]
    );
    let ep =
        |a: &str, ready, serving, terminating, node: Option<&str>, zone: Option<&str>| Endpoint {
            addresses: vec![ip(a).into()],
            ready,
            serving,
            terminating,
            node_name: node.map(String::from),
            zone: zone.map(String::from),
            zone_hints: vec![],
            node_hints: vec![],
        };
    assert_eq!(
        web.endpoints,
        vec![
            ep(
                "10.244.1.10",
                true,
                true,
                false,
                Some("node-a"),
                Some("zone-1")
            ),
            // Terminating but still serving.
            ep(
                "10.244.2.11",
                false,
                true,
                true,
                Some("node-b"),
                Some("zone-2")
            ),
            // serving defaults to ready.
            ep("10.244.2.12", false, false, false, Some("node-b"), None),
            // Empty conditions: ready, serving, not terminating.
            ep("10.244.3.13", true, true, false, None, None),
            // No conditions at all: the same.
            ep("10.244.3.14", true, true, false, None, None),
        ]
    );

    // Protocol default, port with null number skipped.
    let ingress = &state.endpoint_slices[2];
    assert_eq!(ingress.service_name, "ingress");
    assert_eq!(
        ingress.ports,
        vec![
            EndpointPort {
                name: "https".into(),
                protocol: Protocol::Tcp,
                port: 8443
            },
            EndpointPort {
                name: "quic".into(),
                protocol: Protocol::Udp,
                port: 8443
            },
        ]
    );

    let empty = &state.endpoint_slices[3];
    assert!(empty.ports.is_empty());
    assert!(empty.endpoints.is_empty());
}

#[test]
fn directory_of_files() {
    let state = load_dir(&fixtures().join("cluster")).unwrap();
    let names: Vec<String> = state
        .services
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    assert_eq!(names, ["default/api", "kube-system/dns"]);
    let api = service(&state, "default", "api");
    assert_eq!(api.ports[0].target_port, TargetPort::Number(6443));

    let slices: Vec<String> = state
        .endpoint_slices
        .iter()
        .map(|s| format!("{}/{}->{}", s.namespace, s.name, s.service_name))
        .collect();
    // Sorted by path: 20-slices.json before nested/30-api-slice.yml.
    assert_eq!(slices, ["kube-system/dns-abcde->dns", "default/api-1->api"]);
    let dns = &state.endpoint_slices[0];
    assert_eq!(dns.ports.len(), 2);
    assert_eq!(dns.ports[0].protocol, Protocol::Udp);
    assert_eq!(dns.endpoints[0].node_name.as_deref(), Some("node-a"));
}

#[test]
fn load_dir_is_deterministic() {
    let a = load_dir(&fixtures().join("cluster")).unwrap();
    let b = load_dir(&fixtures().join("cluster")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn whole_fixture_tree_loads() {
    let state = load_dir(&fixtures()).unwrap();
    assert_eq!(state.services.len(), 7);
    // Including the IPv6 slice of the dual-stack Service.
    assert_eq!(state.endpoint_slices.len(), 6);
}

#[test]
fn empty_and_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load_dir(dir.path()).unwrap(), ClusterState::default());

    let missing = dir.path().join("nope");
    let e = load_dir(&missing).unwrap_err();
    assert_eq!(e.file, missing);
    assert_eq!(e.field, "(directory)");
    assert!(e.reason.contains("No such file"), "{}", e.reason);

    let file = dir.path().join("file.yaml");
    std::fs::write(&file, "").unwrap();
    let e = load_dir(&file).unwrap_err();
    assert_eq!(e.reason, "not a directory");

    // An empty file is fine.
    assert_eq!(load_dir(dir.path()).unwrap(), ClusterState::default());
}

#[test]
fn multi_document_and_empty_documents() {
    let state = parse(
        "---\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n\
         spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: x}\nspec: {ports: [{port: 81}]}\n...\n",
    )
    .unwrap();
    assert_eq!(state.services.len(), 2);
    assert_eq!(state.services[1].namespace, "x");
    assert!(state.services[1].cluster_ips.is_empty());
    assert!(parse("").unwrap().services.is_empty());
}

#[test]
fn typed_lists_and_other_kinds() {
    let state = parse(
        r#"
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: a}
  spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: p}}
- {apiVersion: serving.knative.dev/v1, kind: Service, metadata: {name: knative}}
- {apiVersion: discovery.k8s.io/v1beta1, kind: EndpointSlice, metadata: {name: old}}
- {apiVersion: v1, kind: Service, metadata: {name: b}, spec: {clusterIP: 10.96.0.2}}
---
apiVersion: v1
kind: List
items: []
"#,
    )
    .unwrap();
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn legacy_only_local_and_headless_label() {
    let state = parse(
        r#"
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  clusterIP: 10.96.0.5
  externalTrafficPolicy: OnlyLocal
  ports: [{port: 80, nodePort: 30000, targetPort: 0}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: headless-abc
  labels: {kubernetes.io/service-name: db, service.kubernetes.io/headless: ""}
addressType: IPv4
endpoints: [{addresses: ["10.244.0.9"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: fqdn
  labels: {kubernetes.io/service-name: ext}
addressType: FQDN
endpoints: [{addresses: ["db.example.com"]}]
"#,
    )
    .unwrap();
    assert!(state.services[0].external_policy_local);
    assert_eq!(
        state.services[0].ports[0].target_port,
        TargetPort::Number(80)
    );
    assert!(state.endpoint_slices.is_empty());
}

#[test]
fn duplicate_service_across_files_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {clusterIP: 10.96.0.1}\n";
    std::fs::write(dir.path().join("a.yaml"), svc).unwrap();
    std::fs::write(dir.path().join("b.yaml"), format!("---\n{svc}")).unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert_eq!(e.file, dir.path().join("b.yaml"));
    assert_eq!(e.field, "document 1 (Service shop/web)");
    assert!(
        e.reason.contains(&format!(
            "already defined in {}",
            dir.path().join("a.yaml").display()
        )),
        "{}",
        e.reason
    );

    // Through parse_str into a state that already has it.
    let mut state = parse(svc).unwrap();
    let e = parse_str(svc, Path::new("again.yaml"), &mut state).unwrap_err();
    assert!(
        e.reason.contains("duplicate Service shop/web"),
        "{}",
        e.reason
    );

    // Same slice twice in one file.
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\n";
    let e = parse(&format!("{slice}---\n{slice}")).unwrap_err();
    assert_eq!(e.field, "document 2 (EndpointSlice default/s)");
    assert!(
        e.reason.contains("duplicate EndpointSlice default/s"),
        "{}",
        e.reason
    );
}

/// Each case: manifest text, expected field, fragment of the reason.
#[test]
fn endpoint_hints_are_kept() {
    let state = parse(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n- addresses: [10.1.0.1]\n  zone: zone-a\n  hints: {forZones: [{name: zone-a}, {name: zone-b}], forNodes: [{name: node-a}]}\n- addresses: [10.1.0.2]\n",
    )
    .unwrap();
    let eps = &state.endpoint_slices[0].endpoints;
    assert_eq!(eps[0].zone_hints, ["zone-a", "zone-b"]);
    assert_eq!(eps[0].node_hints, ["node-a"]);
    assert!(eps[1].zone_hints.is_empty() && eps[1].node_hints.is_empty());
}

#[test]
fn load_balancer_source_ranges_are_trimmed_normalised_of_both_families() {
    let state = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: fw, namespace: default}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.3\n  ports: [{port: 80}]\n  loadBalancerSourceRanges: [\" 203.0.113.7/24 \", \"2001:db8::/32\", \"203.0.113.0/24\", \"198.51.100.1/32\"]\n",
    )
    .unwrap();
    assert_eq!(
        service(&state, "default", "fw").load_balancer_source_ranges,
        vec![
            (ip("203.0.113.0").into(), 24),
            ("2001:db8::".parse().unwrap(), 32),
            (ip("198.51.100.1").into(), 32)
        ]
    );
}

#[test]
fn errors_name_file_field_and_reason() {
    let svc = |spec: &str| {
        format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {{name: p}}\n\
             - apiVersion: v1\n  kind: Service\n  metadata: {{name: web, namespace: shop}}\n  spec: {spec}\n"
        )
    };
    let slice = |body: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: x}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n{body}\n"
        )
    };
    const LOC: &str = "document 1: items[1] (Service shop/web)";
    const SLICE: &str = "document 2 (EndpointSlice default/web-1)";
    let cases: Vec<(String, String, &str)> = vec![
        (
            svc("{clusterIP: 10.96.0.300}"),
            format!("{LOC}: spec.clusterIP"),
            "invalid IP address `10.96.0.300`",
        ),
        (
            svc("{clusterIP: 10.96.0.3, type: LoadBalancer, loadBalancerSourceRanges: [10.0.0.0/8, 10.1.0.0]}"),
            format!("{LOC}: spec.loadBalancerSourceRanges[1]"),
            "invalid CIDR `10.1.0.0`",
        ),
        (
            svc("{clusterIPs: [10.96.0.1, bogus]}"),
            format!("{LOC}: spec.clusterIPs[1]"),
            "invalid IP address `bogus`",
        ),
        (
            svc("{externalIPs: [1.2.3]}"),
            format!("{LOC}: spec.externalIPs[0]"),
            "invalid IP address",
        ),
        (
            format!(
                "{}  status: {{loadBalancer: {{ingress: [{{ip: 1.2.3.4}}, {{ip: nope}}]}}}}\n",
                svc("{type: LoadBalancer}")
            ),
            format!("{LOC}: status.loadBalancer.ingress[1].ip"),
            "invalid IP address `nope`",
        ),
        (
            svc("{ports: [{port: 80}, {port: 53, protocol: ICMP}]}"),
            format!("{LOC}: spec.ports[1].protocol"),
            "unsupported protocol `ICMP`",
        ),
        // Typos are refused, as kubectl's strict field validation refuses them, instead of
        // leaving the field at its default.
        (
            svc("{externalTraficPolicy: Local, ports: [{port: 80}]}"),
            format!("{LOC}: spec.externalTraficPolicy"),
            "unknown field `externalTraficPolicy`: did you mean `externalTrafficPolicy`?",
        ),
        (
            svc("{ports: [{port: 80}, {port: 81, targetport: 8081}]}"),
            format!("{LOC}: spec.ports[1].targetport"),
            "unknown field `targetport`: did you mean `targetPort`?",
        ),
        (
            svc("{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeout: 5}}}"),
            format!("{LOC}: spec.sessionAffinityConfig.clientIP.timeout"),
            "unknown field `timeout`, expected one of `timeoutSeconds`",
        ),
        (
            slice("addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {redy: true}}]"),
            format!("{SLICE}: endpoints[0].conditions.redy"),
            "unknown field `redy`: did you mean `ready`?",
        ),
        (
            slice("adressType: IPv4\nendpoints: []"),
            format!("{SLICE}: adressType"),
            "did you mean `addressType`?",
        ),
        (
            svc("{ports: [{port: 70000}]}"),
            format!("{LOC}: spec.ports[0].port"),
            "70000 is out of range 1..=65535",
        ),
        (
            svc("{ports: [{port: 0}]}"),
            format!("{LOC}: spec.ports[0].port"),
            "out of range",
        ),
        (
            svc("{ports: [{name: a}]}"),
            format!("{LOC}: spec.ports[0].port"),
            "out of range",
        ),
        (
            svc("{ports: [{port: 80, nodePort: 99999}]}"),
            format!("{LOC}: spec.ports[0].nodePort"),
            "out of range",
        ),
        (
            svc("{ports: [{port: 80, targetPort: -1}]}"),
            format!("{LOC}: spec.ports[0].targetPort"),
            "out of range",
        ),
        (
            svc("{ports: [{port: \"80\"}]}"),
            format!("{LOC}: spec.ports[0].port"),
            "invalid type: string \"80\", expected i32",
        ),
        (
            svc("{ports: {port: 80}}"),
            format!("{LOC}: spec.ports"),
            "invalid type",
        ),
        (
            svc("{ports: [{port: 80}, {port: 80}]}"),
            format!("{LOC}: spec.ports[1]"),
            "duplicate of spec.ports[0]",
        ),
        (
            svc("{type: Magic}"),
            format!("{LOC}: spec.type"),
            "unknown Service type `Magic`",
        ),
        (
            svc("{externalTrafficPolicy: Nearest}"),
            format!("{LOC}: spec.externalTrafficPolicy"),
            "unknown policy `Nearest`",
        ),
        (
            svc("{internalTrafficPolicy: Nearest}"),
            format!("{LOC}: spec.internalTrafficPolicy"),
            "unknown policy",
        ),
        (
            svc("{sessionAffinity: Cookie}"),
            format!("{LOC}: spec.sessionAffinity"),
            "unknown session affinity `Cookie`",
        ),
        (
            svc("{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}}"),
            format!("{LOC}: spec.sessionAffinityConfig.clientIP.timeoutSeconds"),
            "86401 is out of range 1..=86400",
        ),
        (
            svc("{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}"),
            format!("{LOC}: spec.sessionAffinityConfig.clientIP.timeoutSeconds"),
            "out of range",
        ),
        (
            svc("{healthCheckNodePort: 65536}"),
            format!("{LOC}: spec.healthCheckNodePort"),
            "out of range",
        ),
        (
            svc("{selector: [a, b]}"),
            format!("{LOC}: spec.selector"),
            "invalid type",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n".to_string(),
            "document 1: metadata.name".to_string(),
            "required field is missing",
        ),
        (
            "apiVersion: v1\nmetadata: {name: x}\n".to_string(),
            "document 1: kind".to_string(),
            "required field is missing",
        ),
        (
            "apiVersion: v1\nkind: 5\n".to_string(),
            "document 1: kind".to_string(),
            "expected a string",
        ),
        (
            "- a\n- b\n".to_string(),
            "document 1".to_string(),
            "expected a Kubernetes object (a mapping), found a sequence",
        ),
        (
            "apiVersion: v1\nkind: List\nitems: {a: 1}\n".to_string(),
            "document 1: items".to_string(),
            "expected a sequence",
        ),
        (
            "apiVersion: v1\nkind: List\nitems: [5]\n".to_string(),
            "document 1: items[0]".to_string(),
            "found a number",
        ),
        (
            "apiVersion: v1\nkind: List\nitems: [{metadata: {name: a}}]\n".to_string(),
            "document 1: items[0]: kind".to_string(),
            "required field is missing",
        ),
        // EndpointSlices.
        (
            slice("addressType: IPv4\nendpoints: [{addresses: [10.0.0.1, 10.0.0.256]}]"),
            format!("{SLICE}: endpoints[0].addresses[1]"),
            "invalid IPv4 address `10.0.0.256`",
        ),
        (
            slice("addressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]"),
            format!("{SLICE}: endpoints[0].addresses[0]"),
            "invalid IPv4 address",
        ),
        (
            slice("addressType: IPv6\nendpoints: [{addresses: [\"fd00::1\", 10.0.0.1]}]"),
            format!("{SLICE}: endpoints[0].addresses[1]"),
            "invalid IPv6 address `10.0.0.1` (addressType is IPv6)",
        ),
        (
            slice("addressType: IPv4\nports: [{port: 80, protocol: tcp}]"),
            format!("{SLICE}: ports[0].protocol"),
            "unsupported protocol `tcp`",
        ),
        (
            slice("addressType: IPv4\nports: [{port: 80}, {port: 65536}]"),
            format!("{SLICE}: ports[1].port"),
            "out of range",
        ),
        (
            slice("addressType: IPv4\nendpoints: [{addresses: 10.0.0.1}]"),
            format!("{SLICE}: endpoints[0].addresses"),
            "invalid type",
        ),
        (
            slice("addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: yes}}]"),
            format!("{SLICE}: endpoints[0].conditions.ready"),
            "invalid type",
        ),
        (
            slice("endpoints: []"),
            format!("{SLICE}: addressType"),
            "required field is missing",
        ),
        (
            slice("addressType: IPv4\nendpoints: [{conditions: {}}]"),
            format!("{SLICE}: endpoints[0].addresses"),
            "at least one address",
        ),
    ];
    let file = Path::new("/m/svc.yaml");
    let mut failures = Vec::new();
    for (text, field, reason) in &cases {
        let mut state = ClusterState::default();
        match parse_str(text, file, &mut state) {
            Ok(()) => failures.push(format!("accepted, expected {field}: {reason}\n{text}")),
            Err(e) => {
                assert_eq!(e.file, file);
                if e.field != *field || !e.reason.contains(reason) {
                    failures.push(format!(
                        "expected `{field}: ...{reason}...`, got `{}: {}`",
                        e.field, e.reason
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_display() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}}\n\
                - apiVersion: v1\n  kind: Service\n  metadata: {name: web}\n  spec: {ports: [{port: 1}, {port: 99999}]}\n";
    let mut state = ClusterState::default();
    let e = parse_str(text, Path::new("/m/a.yaml"), &mut state).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/m/a.yaml: document 1: items[1] (Service default/web): spec.ports[1].port: \
         99999 is out of range 1..=65535"
    );
    let _: &dyn std::error::Error = &e;
}

#[test]
fn yaml_syntax_error() {
    let mut state = ClusterState::default();
    let e = parse_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: [Service\nmetadata: {}\n",
        Path::new("test.yaml"),
        &mut state,
    )
    .unwrap_err();
    // Nothing of the file is kept.
    assert_eq!(state, ClusterState::default());
    assert_eq!(e.file, PathBuf::from("test.yaml"));
    assert_eq!(e.field, "document 2");
    assert!(e.reason.contains("line"), "{}", e.reason);
    assert!(e.reason.contains("column"), "{}", e.reason);

    let e = parse("a: 1\n  b: 2\n").unwrap_err();
    assert_eq!(e.field, "document 1");
    assert!(e.reason.contains("line 2"), "{}", e.reason);
}

#[test]
fn errors_in_directories_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        "{\"kind\": \"Service\", \"apiVersion\": \"v1\",\n \"metadata\": {\"name\": \"b\"},\n}",
    )
    .unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert_eq!(e.file, dir.path().join("b.json"));
    assert_eq!(e.field, "document 1");
    assert!(e.reason.contains("line 3"), "{}", e.reason);

    std::fs::write(
        dir.path().join("b.json"),
        r#"{"kind": "Service", "apiVersion": "v1", "metadata": {"name": "b"}, "spec": {"ports": [{"port": "x"}]}}"#,
    )
    .unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert_eq!(e.file, dir.path().join("b.json"));
    assert_eq!(
        e.field,
        "document 1 (Service default/b): spec.ports[0].port"
    );
    assert!(e.reason.contains("invalid type"), "{}", e.reason);
}

/// Objects as the API server sends them go through the same conversion as manifests.
#[test]
fn watched_objects_convert_like_manifests() {
    use control::manifests::{node_from_object, service_from_object, slice_from_object};
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}
    }))
    .unwrap();
    let s = service_from_object(svc).unwrap().unwrap();
    assert_eq!((s.namespace.as_str(), s.name.as_str()), ("shop", "web"));
    assert_eq!(s.service_type, ServiceType::NodePort);
    assert_eq!(s.ports[0].node_port, Some(30080));

    let bad: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "QUIC"}]}
    }))
    .unwrap();
    let e = service_from_object(bad).unwrap_err();
    assert_eq!(e.field, "spec.ports[0].protocol");
    assert!(e.reason.contains("unsupported protocol `QUIC`"), "{e}");

    let external: k8s_openapi::api::core::v1::Service = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "x", "namespace": "a"}, "spec": {"type": "ExternalName"}}),
    )
    .unwrap();
    assert_eq!(service_from_object(external).unwrap(), None);

    let slice: k8s_openapi::api::discovery::v1::EndpointSlice =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["10.1.0.5"], "nodeName": "node-a", "zone": "z1"}]
        }))
        .unwrap();
    let sl = slice_from_object(slice).unwrap().unwrap();
    assert_eq!(sl.service_name, "web");
    assert_eq!(sl.endpoints[0].zone.as_deref(), Some("z1"));

    let node = |v: serde_json::Value| -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(v).unwrap()
    };
    let n = node_from_object(node(serde_json::json!({
        "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z1"},
                     "deletionTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"}]}
    })))
    .unwrap();
    assert_eq!(n.name, "node-a");
    assert_eq!(n.zone.as_deref(), Some("z1"));
    assert!(n.deleting && n.to_be_deleted);
    let n = node_from_object(node(serde_json::json!({
        "metadata": {"name": "node-b"},
        "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}
    })))
    .unwrap();
    assert_eq!(n.zone, None);
    assert!(!n.deleting && !n.to_be_deleted);
}

/// The directory stamp changes with every edit a reload would see, and only then.
#[test]
fn dir_stamp_sees_edits_additions_removals_and_renames() {
    use control::manifests::dir_stamp;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.yaml"), "kind: Service\n").unwrap();
    std::fs::write(d.join("notes.txt"), "not a manifest").unwrap();
    let s0 = dir_stamp(d).unwrap();
    assert_eq!(s0.len(), 1);
    assert_eq!(dir_stamp(d).unwrap(), s0, "nothing changed");
    std::fs::write(d.join("notes.txt"), "still not a manifest").unwrap();
    assert_eq!(dir_stamp(d).unwrap(), s0, "other files do not count");
    // The same size, written again.
    std::fs::write(d.join("a.yaml"), "kind: Servicf\n").unwrap();
    let s1 = dir_stamp(d).unwrap();
    assert_ne!(s1, s0);
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/b.yml"), "").unwrap();
    let s2 = dir_stamp(d).unwrap();
    assert_eq!(s2.len(), 2);
    // Replaced by rename (what editors and ConfigMap volumes do).
    std::fs::write(d.join(".tmp"), "kind: Service\n").unwrap();
    std::fs::rename(d.join(".tmp"), d.join("a.yaml")).unwrap();
    let s3 = dir_stamp(d).unwrap();
    assert_ne!(s3, s2);
    std::fs::remove_file(d.join("sub/b.yml")).unwrap();
    assert_eq!(dir_stamp(d).unwrap().len(), 1);
    assert!(dir_stamp(&d.join("missing")).is_err());
}
