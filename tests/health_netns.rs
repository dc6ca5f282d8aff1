//! kube-proxy's health and metrics servers, for real: `nodegate run` on an AF_XDP port inside
//! a "node" namespace joined to a "client" namespace by a veth pair, with two LoadBalancer
//! Services of `externalTrafficPolicy: Local`. From the client, `curl` reaches each Service's
//! `healthCheckNodePort` on the node address through the data plane's host stack (the node's
//! kernel never sees those frames: XDP takes them all): 200 and one local endpoint for the
//! Service whose endpoint runs on this node, 503 and none for the other. Inside the node
//! namespace, the kernel's listeners answer the same on 127.0.0.1, and `/healthz`, `/livez`
//! (port 10256), `/metrics` and `/proxyMode` (port 10249) answer like kube-proxy's.
//!
//! Needs root, iproute2, ethtool and curl; fails with the reason when one is missing, never
//! skips. Namespaces are removed on drop, also when the test fails.

mod netns;
use netns::*;

const NODE_IP: &str = "192.0.2.1";
const CLIENT_IP: &str = "192.0.2.2";

/// `web`: health check 32000, its endpoint on this node (node-a). `other`: health check 32001,
/// its endpoint on node-b.
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.50
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{port: 80, protocol: TCP, targetPort: 8080, nodePort: 30050}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
  - {addresses: ["10.244.1.5"], conditions: {ready: true}, nodeName: node-a}
  - {addresses: ["10.244.2.5"], conditions: {ready: true}, nodeName: node-b}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.51
  externalTrafficPolicy: Local
  healthCheckNodePort: 32001
  ports: [{port: 80, protocol: TCP, targetPort: 8080, nodePort: 30051}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other-1, namespace: shop, labels: {kubernetes.io/service-name: other}}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
  - {addresses: ["10.244.2.6"], conditions: {ready: true}, nodeName: node-b}
"#;

/// `curl -sS -i URL` inside `ns`: the status line, headers and body; panics when curl fails.
fn curl(ns: &str, url: &str) -> String {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "curl",
        "-sS",
        "-i",
        "--max-time",
        "10",
        url,
    ]);
    assert!(
        out.status.success(),
        "curl {url} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn service_body(name: &str, n: u32, healthy: bool) -> String {
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"{name}\"\n\t}},\n\t\"localEndpoints\": {n},\n\t\"serviceProxyHealthy\": {healthy}\n}}"
    )
}

#[test]
fn health_checks_and_metrics_answer_like_kube_proxy() {
    preflight(&["ip", "ethtool", "curl"]);
    let NodeAndClient {
        node, client, wire, ..
    } = node_and_client("nghh", &format!("{CLIENT_IP}/24"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"{NODE_IP}\"]}}\nworkers: 2\nports:\n  - {{name: eth0, driver: af_xdp, interface: {wire}, mac: \"02:00:00:00:00:01\", addresses: [\"{NODE_IP}/24\"]}}\nkubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/services.yaml"), SERVICES).unwrap();
    let run = Running::start_in(dir.path(), Some(&node.0));
    assert!(run.log.contains("servers started"), "{}", run.log);

    // From the network, on the data-plane port: the host stack answers.
    let a = curl(&client.0, &format!("http://{NODE_IP}:32000/"));
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert!(a.contains("\r\nContent-Type: application/json\r\n"), "{a}");
    assert!(a.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{a}");
    assert!(
        a.contains("\r\nX-Load-Balancing-Endpoint-Weight: 1\r\n"),
        "{a}"
    );
    assert_eq!(body(&a), service_body("web", 1, true));
    let a = curl(&client.0, &format!("http://{NODE_IP}:32001/any/path"));
    assert!(a.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{a}");
    assert!(
        a.contains("\r\nX-Load-Balancing-Endpoint-Weight: 0\r\n"),
        "{a}"
    );
    assert_eq!(body(&a), service_body("other", 0, true));

    // From the node itself, on its kernel: the same answers.
    let a = curl(&node.0, "http://127.0.0.1:32000/healthz");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert_eq!(body(&a), service_body("web", 1, true));
    let a = curl(&node.0, "http://127.0.0.1:32001/");
    assert!(a.starts_with("HTTP/1.1 503 "), "{a}");

    // Proxy health.
    let a = curl(&node.0, "http://127.0.0.1:10256/healthz");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    let b = body(&a);
    assert!(b.starts_with("{\"lastUpdated\":\""), "{b}");
    assert!(
        b.contains(
            "\",\"nodeEligible\":true,\"healthy\":true,\"status\":{\"IPv4\":{\"lastUpdated\":\""
        ),
        "{b}"
    );
    let a = curl(&node.0, "http://127.0.0.1:10256/livez");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert!(!body(&a).contains("nodeEligible"), "{a}");
    let a = curl(&node.0, "http://127.0.0.1:10256/other");
    assert!(a.starts_with("HTTP/1.1 404 Not Found\r\n"), "{a}");

    // Metrics (the workers copy their counters every 100 ms).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let a = curl(&node.0, "http://127.0.0.1:10249/metrics");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    let m = body(&a);
    let value = |prefix: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{m}"))
    };
    // Two connections of at least three frames each came in on eth0 and went to the stack.
    assert!(
        value("nodegate_port_rx_frames_total{port=\"eth0\"}") >= 6,
        "{m}"
    );
    assert!(
        value("nodegate_port_tx_frames_total{port=\"eth0\"}") >= 6,
        "{m}"
    );
    assert!(
        value("nodegate_host_stack_frames_total{direction=\"in\"}") >= 6,
        "{m}"
    );
    assert!(
        value("nodegate_host_stack_frames_total{direction=\"out\"}") >= 6,
        "{m}"
    );
    assert_eq!(
        value("nodegate_host_stack_dropped_frames_total{direction=\"in\"}"),
        0
    );
    assert_eq!(value("nodegate_flows"), 0, "health checks create no flow");
    assert_eq!(value("nodegate_health_check_local_endpoints{namespace=\"shop\",service=\"web\",port=\"32000\"}"), 1);
    assert_eq!(value("kubeproxy_proxy_healthz_total{code=\"200\"}"), 1);
    for name in [
        "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
        "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
        "# TYPE kubeproxy_network_programming_duration_seconds histogram",
        "# TYPE nodegate_worker_dropped_frames counter",
        "nodegate_worker_table_generation{worker=\"1\"} 0",
    ] {
        assert!(m.lines().any(|l| l == name), "no `{name}` in:\n{m}");
    }
    let a = curl(&node.0, "http://127.0.0.1:10249/proxyMode");
    assert_eq!(body(&a), "nodegate");

    let stats = run.stop();
    for reason in [
        "tx-full",
        "no-buffer",
        "ip4-local",
        "l4-malformed",
        "ip4-bad-checksum",
    ] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
}
