//! A real node with real pods: nodegate on the node's uplink (`af_packet` and `af_xdp`) with its
//! host interface, and pods attached to the node namespace's kernel by the real CNI plugins
//! (Debian's `containernetworking-plugins`: `bridge` with `host-local` IPAM), invoked as the
//! kubelet invokes them: the CNI environment and the network configuration on stdin.
//!
//! ```text
//!  pod "client" 10.244.1.2 ─┐                                  ┌ "wire" namespace: node-b 192.0.2.2
//!  pod "web"    10.244.1.3 ─┼─ cni0 ─ node kernel ─ TAP ═ nodegate ═ uplink ─ veth ┤  (its pod 10.244.2.5),
//!  pod "dns"    10.244.1.4 ─┘   (10.244.1.1)  192.0.2.1                          │  the router and outside
//!                                                                              └  client 192.0.2.254, a load balancer
//! ```
//!
//! Checked, each with the address the endpoint saw: a pod reaches ClusterIPs whose endpoint is
//! on its node (SNAT to the service loopback address) and on the other node (its own address
//! kept); cluster DNS (dnsmasq behind a kube-dns ClusterIP) answers `dig` over UDP and TCP and
//! `getent hosts` through the pod's resolv.conf; the node itself reaches a ClusterIP and a
//! NodePort; an outside client reaches the web pod through a Local NodePort and a Local load
//! balancer IP with its address kept; a pod reaches a Local load balancer IP whose endpoints are
//! all on the other node (short-circuit) while the outside cannot; traffic to an `ipMode: Proxy`
//! address goes to the load balancer; 20 MiB pod to ClusterIP arrive intact; the node's own
//! SSH-like server is still reached from outside.
//!
//! Needs root, iproute2, ethtool, python3, curl, dig (bind9-dnsutils), dnsmasq and the CNI
//! plugins in /usr/lib/cni; fails with the reason when one is missing, never skips.

mod netns;
use netns::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const NODE_IP: &str = "192.0.2.1";
const NODE_B: &str = "192.0.2.2";
const ROUTER: &str = "192.0.2.254";
const NODE_B_POD: &str = "10.244.2.5";
const PROXY_LB: &str = "203.0.113.12";
const CNI_PATH: &str = "/usr/lib/cni";

/// An HTTP-less TCP server for both families on `PORT`: answers each connection with
/// `ep ADDRESS-REACHED from PEER` (the endpoint and the client address it saw); a connection
/// that sends `bulk` gets 20 MiB instead, after their SHA-256 on a line of their own.
const SERVER: &str = r#"
import socketserver, socket, sys, os, hashlib
PORT = int(sys.argv[1])
BLOB = os.urandom(20 * 1024 * 1024)
SHA = hashlib.sha256(BLOB).hexdigest()
def plain(a):
    return a[7:] if a.startswith('::ffff:') else a
class H(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        if line.strip() == b'bulk':
            self.wfile.write((SHA + '\n').encode())
            self.wfile.write(BLOB)
            return
        me = plain(self.request.getsockname()[0])
        peer = plain(self.request.getpeername()[0])
        self.wfile.write(('ep %s from %s\n' % (me, peer)).encode())
class S(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
s = S(('::', PORT), H)
print('listening', flush=True)
s.serve_forever()
"#;

/// One request to `addr:port` (`hello`, or `bulk`: then the SHA-256 of what arrived is checked
/// against the announced one and `bulk LEN ok` printed).
const CLIENT: &str = r#"
import socket, sys, hashlib
addr, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
src = sys.argv[4] if len(sys.argv) > 4 else None
s = socket.create_connection((addr, port), timeout=3, source_address=(src, 0) if src else None)
s.settimeout(30)
s.sendall(what.encode() + b'\n')
f = s.makefile('rb')
if what == 'bulk':
    sha = f.readline().strip().decode()
    h = hashlib.sha256(); n = 0
    while True:
        b = f.read(65536)
        if not b: break
        h.update(b); n += len(b)
    assert h.hexdigest() == sha, (h.hexdigest(), sha)
    print('bulk %d ok' % n)
else:
    print(f.readline().decode().strip())
"#;

fn services(dns: &str, web: &str) -> String {
    let svc =
        |name: &str, spec: &str, status: &str, port: u16, proto: &str, ep: &str, node: &str| {
            format!(
                r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
{spec}
status:
{status}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: "", port: {port}, protocol: {proto}}}]
endpoints:
  - {{addresses: ["{ep}"], conditions: {{ready: true}}, nodeName: {node}}}
"#
            )
        };
    let mut out = String::new();
    // kube-dns: both protocols on one ClusterIP, to the dnsmasq pod of this node.
    out += &format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system}}
spec:
  clusterIP: 10.96.0.10
  ports: [{{name: dns, port: 53, protocol: UDP}}, {{name: dns-tcp, port: 53, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: kube-dns-1, namespace: kube-system, labels: {{kubernetes.io/service-name: kube-dns}}}}
addressType: IPv4
ports: [{{name: dns, port: 53, protocol: UDP}}, {{name: dns-tcp, port: 53, protocol: TCP}}]
endpoints:
  - {{addresses: ["{dns}"], conditions: {{ready: true}}, nodeName: node-a}}
"#
    );
    let cluster_ip = |ip: &str| {
        format!("  clusterIP: {ip}\n  ports: [{{port: 80, protocol: TCP, targetPort: 8080}}]")
    };
    out += &svc(
        "web",
        &cluster_ip("10.96.0.40"),
        "  {}",
        8080,
        "TCP",
        web,
        "node-a",
    );
    out += &svc(
        "remote",
        &cluster_ip("10.96.0.41"),
        "  {}",
        8080,
        "TCP",
        NODE_B_POD,
        "node-b",
    );
    out += &svc(
        "bulk",
        &cluster_ip("10.96.0.20"),
        "  {}",
        8080,
        "TCP",
        web,
        "node-a",
    );
    let lb = |ip: &str, np: u16, mode: &str, port: u16| {
        (
            format!("  type: LoadBalancer\n  clusterIP: 10.96.0.{}\n  externalTrafficPolicy: Local\n  ports: [{{port: {port}, protocol: TCP, targetPort: 8080, nodePort: {np}}}]", np - 30000),
            format!("  loadBalancer:\n    ingress: [{{ip: {ip}, ipMode: {mode}}}]"),
        )
    };
    let (spec, status) = lb("203.0.113.10", 30081, "VIP", 80);
    out += &svc("web-local", &spec, &status, 8080, "TCP", web, "node-a");
    let (spec, status) = lb("203.0.113.11", 30082, "VIP", 80);
    out += &svc(
        "remote-local",
        &spec,
        &status,
        8080,
        "TCP",
        NODE_B_POD,
        "node-b",
    );
    let (spec, status) = lb(PROXY_LB, 30083, "Proxy", 8080);
    out += &svc("web-proxy", &spec, &status, 8080, "TCP", web, "node-a");
    out
}

/// A child process killed on drop.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

fn sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let out = in_ns(ns, &["sh", "-c", &format!("echo {value} > {path}")]);
    assert!(
        out.status.success(),
        "setting {key}={value} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod: its network namespace, attached to the node namespace's kernel by the CNI `bridge`
/// plugin; detached (CNI DEL) and removed on drop, with its `/etc/netns` files.
struct Pod {
    ns: Netns,
    node: String,
    id: String,
    config: String,
    ip: String,
}

impl Pod {
    /// CNI ADD for a new pod namespace `name`, run in `node` as the kubelet runs the plugin.
    fn add(node: &str, name: &str, config: &str) -> Pod {
        let ns = Netns(name.to_string());
        must(&["ip", "netns", "add", name]);
        must(&["ip", "-n", name, "link", "set", "lo", "up"]);
        let mut pod = Pod {
            ns,
            node: node.to_string(),
            id: format!("{name}-sandbox"),
            config: config.to_string(),
            ip: String::new(),
        };
        let result = pod.cni("ADD");
        let result: serde_json::Value = serde_json::from_str(&result)
            .unwrap_or_else(|e| panic!("the bridge plugin's result is not JSON ({e}): {result}"));
        let ip = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in the CNI result: {result}"));
        pod.ip = ip.split('/').next().unwrap().to_string();
        pod
    }

    fn cni(&self, command: &str) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node, &format!("{CNI_PATH}/bridge")])
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.id)
            .env("CNI_NETNS", format!("/var/run/netns/{}", self.ns.0))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
                    self.ns.0, self.id
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the CNI bridge plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.config.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if command == "ADD" {
            assert!(
                out.status.success(),
                "CNI ADD failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stdout
    }

    /// The pod's resolv.conf, as the kubelet writes it for `dnsPolicy: ClusterFirst`
    /// (`ip netns exec` mounts `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`).
    fn resolv_conf(&self, nameserver: &str) {
        let dir = format!("/etc/netns/{}", self.ns.0);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            format!("{dir}/resolv.conf"),
            format!("nameserver {nameserver}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:2\n"),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        in_ns(&self.ns.0, args)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.cni("DEL");
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns.0));
    }
}

/// `CLIENT` from namespace `ns`: the server's line, or why there was none.
fn request(
    ns: &str,
    addr: &str,
    port: u16,
    what: &str,
    src: Option<&str>,
) -> Result<String, String> {
    let port = port.to_string();
    let mut args = vec!["timeout", "60", "python3", "-c", CLIENT, addr, &port, what];
    if let Some(src) = src {
        args.push(src);
    }
    let out = in_ns(ns, &args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn expect(ns: &str, addr: &str, port: u16, src: Option<&str>, want: &str, what: &str) {
    match request(ns, addr, port, "hello", src) {
        Ok(got) => assert_eq!(got, want, "{what}"),
        Err(e) => panic!("{what}: {e}"),
    }
}

fn server(ns: &str, port: u16) -> Kill {
    let mut child = nodegate::netns::exec(ns)
        .args(["python3", "-c", SERVER, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 for the test server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening", "the server in {ns} did not start");
    Kill(child)
}

fn preflight_cni() {
    preflight(&[
        "ip", "ethtool", "python3", "curl", "dig", "dnsmasq", "getent", "timeout",
    ]);
    for plugin in ["bridge", "host-local"] {
        assert!(
            std::path::Path::new(CNI_PATH).join(plugin).exists(),
            "this test needs the CNI `{plugin}` plugin in {CNI_PATH} (Debian: containernetworking-plugins)"
        );
    }
}

#[test]
fn pods_of_the_bridge_cni_plugin_reach_services_through_nodegate_on_af_packet() {
    node_with_pods("af_packet", "p");
}

#[test]
fn pods_of_the_bridge_cni_plugin_reach_services_through_nodegate_on_af_xdp() {
    node_with_pods("af_xdp", "x");
}

fn node_with_pods(driver: &str, tag: &str) {
    preflight_cni();
    let id = std::process::id() % 100_000;
    let NodeAndClient {
        node,
        client: wire_ns,
        wire,
        peer,
    } = node_and_client(&format!("ngk{tag}"), &format!("{NODE_B}/24"));
    let tap = format!("ngk{tag}t{id}");
    let n = node.0.clone();
    let w = wire_ns.0.clone();
    if driver == "af_packet" {
        // af_packet does not take frames from the node's kernel: keep its stack off the wire.
        sysctl(&n, &format!("net.ipv4.conf.{wire}.arp_ignore"), "8");
        sysctl(&n, &format!("net.ipv4.conf.{wire}.rp_filter"), "1");
        sysctl(&n, &format!("net.ipv6.conf.{wire}.disable_ipv6"), "1");
    }
    // The node forwards for its pods, as every Kubernetes node does.
    sysctl(&n, "net.ipv4.ip_forward", "1");

    // The far side: node-b (and its pod), the router and outside client, a proxying load
    // balancer; routes to this node's pod CIDR and its load balancer IPs.
    let router = format!("{ROUTER}/24");
    must(&["ip", "-n", &w, "addr", "add", &router, "dev", &peer]);
    for a in [NODE_B_POD, PROXY_LB] {
        must(&[
            "ip",
            "-n",
            &w,
            "addr",
            "add",
            &format!("{a}/32"),
            "dev",
            "lo",
        ]);
    }
    for prefix in ["10.244.1.0/24", "203.0.113.10/32", "203.0.113.11/32"] {
        must(&["ip", "-n", &w, "route", "add", prefix, "via", NODE_IP]);
    }

    // The pods, made by the real bridge plugin with host-local IPAM.
    let ipam_dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"cniVersion": "1.0.0", "name": "ngtest", "type": "bridge", "bridge": "ngcni{tag}{id}",
            "isGateway": true, "ipMasq": false, "hairpinMode": true,
            "ipam": {{"type": "host-local", "dataDir": "{}",
                     "ranges": [[{{"subnet": "10.244.1.0/24"}}]],
                     "routes": [{{"dst": "0.0.0.0/0"}}]}}}}"#,
        ipam_dir.path().display()
    );
    let client = Pod::add(&n, &format!("ngk{tag}pc{id}"), &config);
    let web = Pod::add(&n, &format!("ngk{tag}pw{id}"), &config);
    let dns = Pod::add(&n, &format!("ngk{tag}pd{id}"), &config);
    assert!(client.ip.starts_with("10.244.1."), "{}", client.ip);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"{NODE_IP}\"], pod_cidrs: [\"10.244.1.0/24\"], cluster_cidrs: [\"10.244.0.0/16\"]}}\nworkers: 2\nports:\n  - {{name: eth0, driver: {driver}, interface: {wire}, host_interface: {tap}, mac: \"02:00:00:00:00:01\", addresses: [\"{NODE_IP}/24\"]}}\nroutes:\n  - {{prefix: \"10.244.2.0/24\", via: \"{NODE_B}\"}}\n  - {{prefix: \"0.0.0.0/0\", via: \"{ROUTER}\"}}\nkubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(
        dir.path().join("manifests/services.yaml"),
        services(&dns.ip, &web.ip),
    )
    .unwrap();
    let run = Running::start_in(dir.path(), Some(&n));

    // The operator's part (docs/configuration.md): the node address on the TAP and the node's
    // default route through it, which also carries the Service ranges and the service loopback
    // address back to nodegate. For NodePorts on the node's own address, the node's own
    // traffic to the NodePort range is routed to the TAP before local delivery, and the TAP
    // accepts the answers from that address.
    must(&[
        "ip",
        "-n",
        &n,
        "addr",
        "add",
        &format!("{NODE_IP}/24"),
        "dev",
        &tap,
    ]);
    must(&[
        "ip", "-n", &n, "route", "add", "default", "via", ROUTER, "dev", &tap,
    ]);
    sysctl(&n, &format!("net.ipv4.conf.{tap}.accept_local"), "1");
    must(&[
        "ip", "-n", &n, "rule", "add", "pref", "100", "lookup", "local",
    ]);
    must(&["ip", "-n", &n, "rule", "del", "pref", "0"]);
    must(&[
        "ip",
        "-n",
        &n,
        "rule",
        "add",
        "pref",
        "50",
        "iif",
        "lo",
        "to",
        NODE_IP,
        "ipproto",
        "tcp",
        "dport",
        "30000-32767",
        "lookup",
        "100",
    ]);
    must(&[
        "ip", "-n", &n, "route", "add", "default", "via", ROUTER, "dev", &tap, "table", "100",
    ]);

    // The servers: the web pod, node-b's pod and the load balancer, the node's own SSH-like
    // server, and cluster DNS.
    let _web_server = server(&web.ns.0, 8080);
    let _far_server = server(&w, 8080);
    let _node_server = server(&n, 2222);
    let _dnsmasq = Kill(
        nodegate::netns::exec(&dns.ns.0)
            .args([
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--pid-file=",
                "--bind-interfaces",
                &format!("--listen-address={}", dns.ip),
                "--local=/cluster.local/",
                "--address=/kubernetes.default.svc.cluster.local/10.96.0.1",
                "--host-record=web.default.svc.cluster.local,10.96.0.40",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq"),
    );
    client.resolv_conf("10.96.0.10");

    let c = &client.ns.0;
    let web_ip = &web.ip;
    // A pod to a ClusterIP whose endpoint is on its node: SNATed to the service loopback
    // address, or the endpoint's answer would go straight back over the bridge.
    expect(
        c,
        "10.96.0.40",
        80,
        None,
        &format!("ep {web_ip} from 169.254.42.1"),
        "pod to a ClusterIP on its node",
    );
    // ... and on the other node: the pod's own address is kept (it is in the cluster CIDR).
    expect(
        c,
        "10.96.0.41",
        80,
        None,
        &format!("ep {NODE_B_POD} from {}", client.ip),
        "pod to a ClusterIP on the other node",
    );

    // Cluster DNS from the pod, UDP and TCP, with a real resolver.
    for transport in ["+notcp", "+tcp"] {
        let out = client.run(&[
            "dig",
            "@10.96.0.10",
            transport,
            "+short",
            "+time=2",
            "+tries=2",
            "kubernetes.default.svc.cluster.local",
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "10.96.0.1",
            "dig {transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // glibc's resolver through the pod's resolv.conf, search list included.
    let out = client.run(&["getent", "hosts", "web"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("10.96.0.40 "), "getent hosts web: {text}");

    // The node itself (hostNetwork): a ClusterIP and a NodePort on its own address.
    expect(
        &n,
        "10.96.0.40",
        80,
        None,
        &format!("ep {web_ip} from 169.254.42.1"),
        "the node to a ClusterIP",
    );
    expect(
        &n,
        NODE_IP,
        30081,
        None,
        &format!("ep {web_ip} from 169.254.42.1"),
        "the node to its NodePort",
    );

    // An outside client through a Local NodePort and a Local load balancer IP: the pod sees the
    // client's address.
    for (addr, port) in [(NODE_IP, 30081), ("203.0.113.10", 80)] {
        expect(
            &w,
            addr,
            port,
            Some(ROUTER),
            &format!("ep {web_ip} from {ROUTER}"),
            &format!("outside client to {addr}:{port}"),
        );
    }
    // A Local load balancer IP whose endpoints are all on node-b: the pod is short-circuited
    // to them, an outside client is dropped here (no local endpoint).
    expect(
        c,
        "203.0.113.11",
        80,
        None,
        &format!("ep {NODE_B_POD} from {}", client.ip),
        "pod to a Local LB IP (short-circuit)",
    );
    assert!(
        request(&w, "203.0.113.11", 80, "hello", Some(ROUTER)).is_err(),
        "an outside client of a Local LB IP without local endpoints is dropped"
    );
    // ipMode Proxy: the pod's traffic to that address goes to the load balancer, not to the web
    // pod behind the Service.
    expect(
        c,
        PROXY_LB,
        8080,
        None,
        &format!("ep {PROXY_LB} from {}", client.ip),
        "pod to an ipMode Proxy address",
    );

    // 20 MiB pod to ClusterIP, intact.
    assert_eq!(
        request(c, "10.96.0.20", 80, "bulk", None),
        Ok(format!("bulk {} ok", 20 * 1024 * 1024))
    );
    // The node's own server is still reached from outside (through the exception path).
    expect(
        &w,
        NODE_IP,
        2222,
        Some(ROUTER),
        &format!("ep {NODE_IP} from {ROUTER}"),
        "the node's own server",
    );

    let stats = run.stop();
    assert_eq!(
        stats["total"]["workers_panicked"].as_u64().unwrap_or(0),
        0,
        "{stats}"
    );
    drop((client, web, dns));
}
