//! The node stays a node: `nodegate run` on an `af_packet` (and an `af_xdp`) port with a
//! `host_interface`, in a "node" namespace joined to a "client" namespace by a veth pair. The kernel of the node
//! namespace holds the node address on the host TAP (as an operator would, linux-cp style) and
//! runs an SSH-like TCP server; from the client, line round trips and a 1 MiB transfer (SHA-256
//! compared) reach it through nodegate's exception path, the kernel pings the client itself,
//! and nodegate keeps serving a ClusterIP (20 MiB, hairpin NAT) and a NodePort on the same
//! address meanwhile. The node's kernel itself reaches a ClusterIP through the TAP. The TAP is
//! gone when nodegate exits.
//!
//! Needs root, iproute2, iputils ping, ethtool, python3 and curl; fails with the reason when one
//! is missing, never skips.

mod netns;
use netns::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const NODE_IP: &str = "192.0.2.1";
const CLIENT_IP: &str = "192.0.2.2";
const NODEPORT: u16 = 30080;

/// A NodePort on the node address, to a web server in the client namespace (hairpin: DNAT and
/// SNAT to the node address).
const NODEPORT_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.30
  ports: [{port: 80, protocol: TCP, targetPort: 8081, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: "", port: 8081, protocol: TCP}]
endpoints:
  - {addresses: ["192.0.2.2"], conditions: {ready: true}, nodeName: node-b}
"#;

/// The node's own SSH-like server (port 2222): answers each line with `echo: LINE`; the line
/// `blob` gets `SHA256 LEN` and then LEN random bytes. Prints `ready`, then the SHA-256 of every
/// blob it sent.
const NODE_SERVER: &str = r#"
import socket, os, hashlib, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('192.0.2.1', 2222))
s.listen(4)
s.settimeout(60)
print('ready', flush=True)
c, a = s.accept()
c.settimeout(30)
f = c.makefile('rb')
for line in f:
    line = line.strip()
    if line == b'blob':
        d = os.urandom(1024 * 1024)
        h = hashlib.sha256(d).hexdigest()
        c.sendall(('%s %d\n' % (h, len(d))).encode() + d)
        print(h, flush=True)
    elif line == b'bye':
        c.sendall(b'bye\n')
        break
    else:
        c.sendall(b'echo: ' + line + b'\n')
c.close()
"#;

/// The client: five round trips, the blob (its SHA-256 checked against the announced one), bye.
/// Prints `round-trips 5` and `blob SHA256 LEN`.
const CLIENT: &str = r#"
import socket, hashlib, sys
s = socket.create_connection(('192.0.2.1', 2222), timeout=30)
f = s.makefile('rb')
for i in range(5):
    msg = b'hello %d from the client' % i
    s.sendall(msg + b'\n')
    got = f.readline()
    assert got == b'echo: ' + msg + b'\n', got
print('round-trips 5', flush=True)
s.sendall(b'blob\n')
h, n = f.readline().split()
d = f.read(int(n))
assert len(d) == int(n), len(d)
got = hashlib.sha256(d).hexdigest()
assert got == h.decode(), (got, h)
print('blob', got, len(d), flush=True)
s.sendall(b'bye\n')
assert f.readline() == b'bye\n'
"#;

/// Fails the test with a clear reason unless it runs as root with every tool it needs.
fn preflight() {
    let uid = sh(&["id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (network namespaces, veth, TAP)"
    );
    for tool in ["ip", "ping", "ethtool", "python3", "curl", "timeout"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "this test needs `{tool}` (install iproute2, iputils-ping, ethtool, python3, curl)"
        );
    }
}

/// A child process killed on drop, so that a failing test leaves no server behind.
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

#[test]
fn ssh_like_tcp_to_the_node_reaches_the_kernel_while_services_are_served() {
    exception_path("af_packet", "p");
}

/// The same on AF_XDP, where the XDP program takes every frame away from the kernel: the
/// exception path is the kernel's only way in, and no sysctl is needed on the wire.
#[test]
fn exception_path_on_af_xdp() {
    exception_path("af_xdp", "x");
}

fn exception_path(driver: &str, tag: &str) {
    preflight();
    let NodeAndClient {
        node, client, wire, ..
    } = node_and_client(&format!("ngh{tag}"), &format!("{CLIENT_IP}/24"));
    let tap = format!("ngh{tag}t{}", std::process::id() % 100_000);
    // af_packet does not take frames away from the node's kernel: keep its stack off the wire
    // (no address there, no ARP answers, strict reverse path, no IPv6), so that the kernel only
    // sees what nodegate punts to the TAP.
    if driver == "af_packet" {
        sysctl(&node.0, &format!("net.ipv4.conf.{wire}.arp_ignore"), "8");
        sysctl(&node.0, &format!("net.ipv4.conf.{wire}.rp_filter"), "1");
        sysctl(&node.0, &format!("net.ipv6.conf.{wire}.disable_ipv6"), "1");
    }
    must(&[
        "ip",
        "-n",
        &client.0,
        "route",
        "add",
        "10.96.0.0/16",
        "via",
        NODE_IP,
    ]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"{NODE_IP}\"]}}\nworkers: 2\nports:\n  - {{name: eth0, driver: {driver}, interface: {wire}, host_interface: {tap}, mac: \"02:00:00:00:00:01\", addresses: [\"{NODE_IP}/24\"]}}\nkubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/bulk.yaml"), BULK_SERVICE).unwrap();
    std::fs::write(dir.path().join("manifests/web.yaml"), NODEPORT_SERVICE).unwrap();
    let run = Running::start_in(dir.path(), Some(&node.0));
    assert!(run.log.contains("host interface up"), "{}", run.log);

    // nodegate made the TAP, with the port's MAC, up; the operator gives it the node address.
    let link = in_ns(&node.0, &["ip", "link", "show", &tap]);
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(link.contains("02:00:00:00:00:01"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    must(&[
        "ip",
        "-n",
        &node.0,
        "addr",
        "add",
        &format!("{NODE_IP}/24"),
        "dev",
        &tap,
    ]);

    // The node's own server, in the node namespace's kernel.
    let mut server = Kill(
        nodegate::netns::exec(&node.0)
            .args(["python3", "-c", NODE_SERVER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the node's server"),
    );
    let mut server_out = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    server_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the node's server did not start");

    // A web server behind the NodePort, in the client namespace.
    let web_dir = tempfile::tempdir().unwrap();
    std::fs::write(web_dir.path().join("index.html"), "served by a NodePort\n").unwrap();
    let _web = Kill(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &client.0,
                "python3",
                "-m",
                "http.server",
                "8081",
                "--bind",
                CLIENT_IP,
            ])
            .current_dir(web_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 for the web server"),
    );

    // The Service traffic runs meanwhile: 20 MiB through the ClusterIP (DNAT + hairpin SNAT to
    // the node address).
    let bulk_ns = client.0.clone();
    let bulk = std::thread::spawn(move || bulk_transfer(&bulk_ns));

    // SSH-like traffic to the node address reaches the kernel, and its answers come back.
    let out = in_ns(&client.0, &["timeout", "60", "python3", "-c", CLIENT]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the SSH-like session to the node failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sent = String::new();
    server_out.read_line(&mut sent).unwrap();
    assert!(text.contains("round-trips 5"), "{text}");
    assert!(
        text.contains(&format!("blob {} {}", sent.trim(), 1024 * 1024)),
        "the client's SHA-256 must be the server's: {text} vs {sent}"
    );
    let _ = server.0.wait();

    // The kernel originates traffic of its own (ARP, then echo) through the TAP.
    ping(&node.0, CLIENT_IP);
    // nodegate still answers echo for the node address itself ...
    ping(&client.0, NODE_IP);
    // ... and serves the NodePort on that same address.
    let curl = in_ns(
        &client.0,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            &format!("http://{NODE_IP}:{NODEPORT}/index.html"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "served by a NodePort\n",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    bulk.join().expect("the ClusterIP transfer failed");

    // The node's kernel is a Service client too: its packets to the ClusterIP follow its route
    // for the Service range (here via the client as the uplink router, as a node's default
    // route would) out of the TAP, where nodegate DNATs them to the endpoint; the answers are
    // translated back and go up the TAP to the kernel.
    must(&[
        "ip",
        "-n",
        &node.0,
        "route",
        "add",
        "10.96.0.0/16",
        "via",
        CLIENT_IP,
        "dev",
        &tap,
    ]);
    let curl = in_ns(
        &node.0,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "http://10.96.0.30/index.html",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "served by a NodePort\n",
        "the node's own request to the ClusterIP: {}",
        String::from_utf8_lossy(&curl.stderr)
    );

    let stats = run.stop();
    let port = &stats["ports"][0];
    // 1 MiB and the handshakes from the kernel, requests and ARP replies to it.
    assert!(port["from_host"].as_u64().unwrap() > 700, "{stats}");
    assert!(port["punted"].as_u64().unwrap() > 10, "{stats}");
    assert_eq!(
        stats["total"]["flows_created"], 3,
        "ClusterIP and NodePort from the client, ClusterIP from the node: {stats}"
    );
    for reason in ["tx-full", "no-buffer", "ip4-local", "l4-malformed"] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
    // Not persistent: closing its queues removed the TAP.
    let gone = in_ns(&node.0, &["ip", "link", "show", &tap]);
    assert!(
        !gone.status.success(),
        "{tap} still exists after nodegate exited"
    );
}
