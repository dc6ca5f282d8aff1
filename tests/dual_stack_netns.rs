//! Dual-stack Services end to end: `nodegate run` on af_xdp with two workers in a node
//! namespace, a client namespace and a pod namespace, real `curl` over IPv4 and IPv6.
//!
//! ```text
//!  client ns                       node ns (nodegate, af_xdp, 2 workers)        pod ns
//!  192.168.10.2/24  ── veth ──  c: 192.168.10.1/24  p: 10.244.1.1/24  ── veth ──  10.244.1.2/24
//!  fd00:c::2/64                    fd00:c::1/64       fd00:244::1/64                fd00:244::2/64
//! ```
//!
//! One dual-stack Service (ClusterIPs 10.96.0.30 and fd00:96::30, NodePort 30090, policy
//! Cluster) with an IPv4 and an IPv6 EndpointSlice; one dual-stack Service without endpoints
//! (reject); one IPv6 NodePort with policy Local and no endpoint on this node (drop); a
//! dual-stack UDP Service whose datagrams are larger than the links (fragments, both families).
//! The pod runs an HTTP server that answers with the client address it sees, and a UDP echo. Needs root, iproute2,
//! ethtool, curl and python3; fails with the reason otherwise.

mod netns;
use netns::*;

use std::time::{Duration, Instant};

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  clusterIP: fd00:96::30
  clusterIPs: [fd00:96::30, 10.96.0.30]
  ports: [{port: 80, protocol: TCP, targetPort: 8080, nodePort: 30090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v4, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
  - {addresses: ["10.244.1.2"], conditions: {ready: true}, nodeName: node-b}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
  - {addresses: ["fd00:244::2"], conditions: {ready: true}, nodeName: node-b}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  ipFamilyPolicy: PreferDualStack
  clusterIPs: [fd00:96::31, 10.96.0.31]
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  ipFamilies: [IPv6]
  clusterIPs: [fd00:96::32]
  ports: [{port: 80, protocol: TCP, targetPort: 8080, nodePort: 30091}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-v6, namespace: default, labels: {kubernetes.io/service-name: local}}
addressType: IPv6
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
  - {addresses: ["fd00:244::2"], conditions: {ready: true}, nodeName: node-b}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [fd00:96::33, 10.96.0.33]
  ports: [{port: 53, protocol: UDP, targetPort: 5353}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-v4, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: "", port: 5353, protocol: UDP}]
endpoints:
  - {addresses: ["10.244.1.2"], conditions: {ready: true}, nodeName: node-b}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-v6, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv6
ports: [{name: "", port: 5353, protocol: UDP}]
endpoints:
  - {addresses: ["fd00:244::2"], conditions: {ready: true}, nodeName: node-b}
"#;

/// A UDP echo on port 5353 of both families, for datagrams up to 64 KiB; 40 at most.
const UDP_ECHO: &str = r#"
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', 5353))
s.settimeout(30)
for _ in range(40):
    d, a = s.recvfrom(65536)
    s.sendto(d, a)
"#;

/// From the client: 10 datagrams of 4000 bytes to each family's ClusterIP of the echo Service
/// (each one fragmented by the client's kernel on the 1500-byte link, and the answers by the
/// pod's), every answer the datagram sent, byte for byte, from the Service address.
const UDP_FRAGMENTED_CLIENT: &str = r#"
import socket
for fam, addr in ((socket.AF_INET6, 'fd00:96::33'), (socket.AF_INET, '10.96.0.33')):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    for i in range(10):
        d = bytes((i * 31 + j * 7) % 256 for j in range(4000))
        s.sendto(d, (addr, 53))
        r, a = s.recvfrom(65536)
        assert r == d, (addr, i, len(r))
        assert a[0] == addr and a[1] == 53, a
print('ok')
"#;

/// Answers `GET /` with `client=ADDR server=ADDR` and `GET /bulk/N` with N bytes (`i % 251`),
/// on port 8080 of both families.
const HTTP_SERVER: &str = r#"
import http.server, socket
PATTERN = bytes(i % 251 for i in range(65536 + 251))
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        plain = lambda a: a[7:] if a.startswith('::ffff:') else a
        if self.path.startswith('/bulk/'):
            n = int(self.path[6:])
            self.send_response(200)
            self.send_header('Content-Length', str(n))
            self.end_headers()
            sent = 0
            while sent < n:
                k = min(65536, n - sent)
                self.wfile.write(PATTERN[sent % 251:sent % 251 + k]); sent += k
            return
        body = ('client=%s server=%s\n' % (plain(self.client_address[0]), plain(self.request.getsockname()[0]))).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = S(('::', 8080), H)
print('listening', flush=True)
s.serve_forever()
"#;

/// `curl` from namespace `ns`: (exit code, body).
fn curl(ns: &str, url: &str, max_secs: u32) -> (i32, String) {
    let m = max_secs.to_string();
    let out = sh(&[
        "ip", "netns", "exec", ns, "curl", "-sS", "-g", "-m", &m, url,
    ]);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ok(ns: &str, url: &str) -> String {
    let (code, body) = curl(ns, url, 5);
    assert_eq!(code, 0, "curl {url}: {body}");
    body.trim().to_string()
}

#[test]
fn dual_stack_services_over_ipv4_and_ipv6() {
    preflight(&["ip", "ethtool", "curl", "python3", "sha256sum"]);
    let id = std::process::id() % 100_000;
    let NodeAndClient {
        node,
        client,
        wire,
        peer,
    } = node_and_client("ngds", "192.168.10.2/24");
    // The pod namespace on a second veth pair from the node.
    let pods = Netns(format!("ngdsp{id}"));
    let (pwire, ppeer) = (format!("ngdsq{id}"), format!("ngdsr{id}"));
    must(&["ip", "netns", "add", &pods.0]);
    must(&[
        "ip", "-n", &node.0, "link", "add", &pwire, "type", "veth", "peer", "name", &ppeer,
        "netns", &pods.0,
    ]);
    must(&["ip", "-n", &node.0, "link", "set", &pwire, "up"]);
    for args in [
        vec!["link", "set", &ppeer, "up"],
        vec!["link", "set", "lo", "up"],
        vec!["addr", "add", "10.244.1.2/24", "dev", &ppeer],
        vec![
            "-6",
            "addr",
            "add",
            "fd00:244::2/64",
            "dev",
            &ppeer,
            "nodad",
        ],
        vec!["route", "add", "default", "via", "10.244.1.1"],
        vec!["-6", "route", "add", "default", "via", "fd00:244::1"],
    ] {
        let mut a = vec!["ip", "-n", &pods.0];
        a.extend(args);
        must(&a);
    }
    must(&[
        "ip", "netns", "exec", &pods.0, "ethtool", "-K", &ppeer, "tx", "off",
    ]);
    for args in [
        vec!["-6", "addr", "add", "fd00:c::2/64", "dev", &peer, "nodad"],
        vec!["route", "add", "10.96.0.0/16", "via", "192.168.10.1"],
        vec!["-6", "route", "add", "fd00:96::/64", "via", "fd00:c::1"],
    ] {
        let mut a = vec!["ip", "-n", &client.0];
        a.extend(args);
        must(&a);
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.168.10.1\"]}}\nworkers: 2\nports:\n  \
             - {{name: c, driver: af_xdp, interface: {wire}, mac: \"02:00:00:00:00:01\", addresses: [\"192.168.10.1/24\", \"fd00:c::1/64\"]}}\n  \
             - {{name: p, driver: af_xdp, interface: {pwire}, mac: \"02:00:00:00:00:02\", addresses: [\"10.244.1.1/24\", \"fd00:244::1/64\"]}}\n\
             kubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/services.yaml"), SERVICES).unwrap();

    let mut server = nodegate::netns::exec(&pods.0)
        .args(["python3", "-c", HTTP_SERVER])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 for the HTTP server");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
    }
    let mut echo = nodegate::netns::exec(&pods.0)
        .args(["python3", "-c", UDP_ECHO])
        .spawn()
        .expect("python3 for the UDP echo");
    let run = Running::start_in(dir.path(), Some(&node.0));

    // ClusterIP over IPv6: DNAT only, the pod sees the client's own address.
    assert_eq!(
        ok(&client.0, "http://[fd00:96::30]/"),
        "client=fd00:c::2 server=fd00:244::2"
    );
    // The IPv4 ClusterIP of the same Service, to the IPv4 endpoint.
    assert_eq!(
        ok(&client.0, "http://10.96.0.30/"),
        "client=192.168.10.2 server=10.244.1.2"
    );
    // NodePort with policy Cluster on the node's IPv6 address: SNAT to the node's address on
    // the pod side, as for IPv4.
    assert_eq!(
        ok(&client.0, "http://[fd00:c::1]:30090/"),
        "client=fd00:244::1 server=fd00:244::2"
    );
    assert_eq!(
        ok(&client.0, "http://192.168.10.1:30090/"),
        "client=10.244.1.1 server=10.244.1.2"
    );
    // Many connections over IPv6 (client ports spread over both workers' steering).
    for _ in 0..10 {
        assert_eq!(
            ok(&client.0, "http://[fd00:96::30]/"),
            "client=fd00:c::2 server=fd00:244::2"
        );
    }

    // 8 MiB through the IPv6 ClusterIP, byte for byte (NAT66 checksums on every segment).
    let n = 8 * 1024 * 1024;
    let pattern: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &client.0,
        "sh",
        "-c",
        &format!("curl -sS -g -m 30 http://[fd00:96::30]/bulk/{n} | sha256sum"),
    ]);
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got.split_whitespace().next(),
        Some(sha256_hex(&pattern).as_str()),
        "{got}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Datagrams larger than the link, fragmented by the hosts, through both ClusterIPs.
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &client.0,
        "python3",
        "-c",
        UDP_FRAGMENTED_CLIENT,
    ]);
    let _ = echo.kill();
    let _ = echo.wait();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // No endpoints at all: refused at once (TCP RST from the Service address), both families.
    for url in ["http://[fd00:96::31]/", "http://10.96.0.31/"] {
        let t = Instant::now();
        let (code, body) = curl(&client.0, url, 5);
        assert_eq!(code, 7, "{url}: expected connection refused, got {body}");
        assert!(t.elapsed() < Duration::from_secs(3), "{url}: refused late");
    }
    // Policy Local without an endpoint on this node: dropped (the connection times out).
    let (code, body) = curl(&client.0, "http://[fd00:c::1]:30091/", 2);
    assert_eq!(code, 28, "expected a timeout, got {body}");

    let stats = run.stop();
    let _ = server.kill();
    let _ = server.wait();
    let drops = &stats["total"]["drops"];
    assert!(
        drops["svc-no-local-endpoint"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(drops["svc-rejected"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(stats["total"]["fragments_unmatched"], 0, "{stats}");
    for reason in [
        "tx-full",
        "no-buffer",
        "ct-full",
        "l4-malformed",
        "ip6-no-route",
        "ip4-fragment",
        "ip6-fragment",
    ] {
        assert_eq!(drops[reason], 0, "{reason}: {stats}");
    }
}
