//! Shared pieces of the network-namespace tests: namespaces and links removed on drop, command
//! helpers that fail with the reason, and the bulk TCP transfer.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub use nodegate::netns::{must, sh, Link, Netns};

/// Fails the test with a clear reason unless it runs as root with every tool in `tools`.
pub fn preflight(tools: &[&str]) {
    let uid = sh(&["id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (network namespaces, veth, XDP)"
    );
    for tool in tools {
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

/// The Service the bulk transfer goes through: ClusterIP 10.96.0.20:80 to 192.0.2.2:8000.
pub const BULK_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: bulk, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{port: 80, protocol: TCP, targetPort: 8000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: bulk-1, namespace: default, labels: {kubernetes.io/service-name: bulk}}
addressType: IPv4
ports: [{name: "", port: 8000, protocol: TCP}]
endpoints:
  - {addresses: ["192.0.2.2"], conditions: {ready: true}, nodeName: node-b}
"#;

/// A TCP server sending 20 MiB of random bytes (printing their SHA-256 first) and a client that
/// fetches them through the ClusterIP and prints the SHA-256 and length it received.
const BULK_SERVER: &str = "import socket,os,hashlib,sys\nd=os.urandom(20*1024*1024)\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',8000))\ns.listen(1)\nprint(hashlib.sha256(d).hexdigest(),flush=True)\ns.settimeout(30)\nc,a=s.accept()\nc.sendall(d)\nc.close()\n";
const BULK_CLIENT: &str = "import socket,hashlib\ns=socket.create_connection(('10.96.0.20',80),timeout=30)\nh=hashlib.sha256()\nn=0\nwhile True:\n    b=s.recv(65536)\n    if not b: break\n    h.update(b); n+=len(b)\nprint(h.hexdigest(), n)\n";

/// Runs the bulk transfer inside namespace `ns` (server and client both there, so the flow is
/// hairpinned: DNAT and SNAT); asserts the client received every byte unchanged.
pub fn bulk_transfer(ns: &str) {
    let mut server = nodegate::netns::exec(ns)
        .args(["python3", "-c", BULK_SERVER])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 for the TCP server");
    let mut sent_hash = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut sent_hash)
        .unwrap();
    let client = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "timeout",
        "60",
        "python3",
        "-c",
        BULK_CLIENT,
    ]);
    let _ = server.wait();
    let got = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "transfer failed: {got}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(
        got.trim(),
        format!("{} {}", sent_hash.trim(), 20 * 1024 * 1024)
    );
}

/// A `nodegate run --config nodegate.yaml --stats-json stats.json` process started in a
/// directory; killed on drop if it is still running (a failed test never leaves it behind).
pub struct Running {
    child: std::process::Child,
    /// What it logged up to its `ready` line.
    pub log: String,
    /// What it logged after, read as it comes by a thread (so that nodegate never blocks on a
    /// full pipe).
    later: std::sync::Arc<std::sync::Mutex<String>>,
    dir: std::path::PathBuf,
}

impl Running {
    /// Starts the run and waits (at most 20 s) for its `ready` line.
    pub fn start(dir: &std::path::Path) -> Running {
        Running::start_in(dir, None)
    }

    /// The same, with nodegate inside network namespace `ns` (`ip netns exec` execs it, so the
    /// process is still our child).
    pub fn start_in(dir: &std::path::Path, ns: Option<&str>) -> Running {
        Running::start_with(dir, ns, &[])
    }

    /// The same, with more arguments for `nodegate run`.
    pub fn start_with(dir: &std::path::Path, ns: Option<&str>, extra: &[&str]) -> Running {
        let bin = env!("CARGO_BIN_EXE_nodegate");
        let mut run = vec![
            "run",
            "--config",
            "nodegate.yaml",
            "--stats-json",
            "stats.json",
        ];
        run.extend_from_slice(extra);
        let cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]).args(run);
                c
            }
            None => {
                let mut c = Command::new(bin);
                c.args(run);
                c
            }
        };
        Running::start_command(dir, cmd)
    }

    /// `nodegate run --config nodegate.yaml --stats-json stats.json [extra]` as the arguments
    /// of a wrapper: `wrapper` then the binary then those arguments.
    pub fn start_wrapped(dir: &std::path::Path, wrapper: &[&str], extra: &[&str]) -> Running {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(env!("CARGO_BIN_EXE_nodegate"))
            .args([
                "run",
                "--config",
                "nodegate.yaml",
                "--stats-json",
                "stats.json",
            ])
            .args(extra);
        Running::start_command(dir, cmd)
    }

    /// Starts `cmd` (a nodegate run, maybe wrapped) in `dir` and waits for its `ready` line.
    pub fn start_command(dir: &std::path::Path, mut cmd: Command) -> Running {
        let mut child = cmd
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nodegate");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !log.contains("nodegate::run: ready") {
            let mut line = String::new();
            if std::time::Instant::now() > deadline || stderr.read_line(&mut line).unwrap_or(0) == 0
            {
                let _ = child.kill();
                panic!("nodegate did not get ready:\n{log}");
            }
            log.push_str(&line);
        }
        let later = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = later.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Running {
            child,
            log,
            later,
            dir: dir.to_path_buf(),
        }
    }

    /// The process id (of nodegate itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged after its `ready` line, so far.
    pub fn log_after_ready(&self) -> String {
        self.later.lock().unwrap().clone()
    }

    /// Waits at most `timeout` for a line logged after `ready`, from the `skip`th byte on,
    /// that contains every one of `needles`; returns that line.
    pub fn wait_for_line(
        &self,
        skip: usize,
        needles: &[&str],
        timeout: std::time::Duration,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let found = {
                let log = self.later.lock().unwrap();
                log.get(skip..)
                    .unwrap_or_default()
                    .lines()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                    .map(str::to_string)
            };
            if found.is_some() || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits at most `timeout` for the process to exit by itself; panics if it does not.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(std::time::Duration::from_millis(200));
                return status;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "nodegate still running after {timeout:?}:\n{}",
                    self.log_after_ready()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM, asserts a clean exit (status 0) and returns the counters it wrote.
    pub fn stop(mut self) -> serde_json::Value {
        must(&["kill", "-TERM", &self.child.id().to_string()]);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit status {status:?}");
        let text = std::fs::read_to_string(self.dir.join("stats.json")).expect("stats.json");
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Three pings from namespace `ns` to `addr`; panics with ping's output when they fail.
pub fn ping(ns: &str, addr: &str) {
    let out = sh(&[
        "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", addr,
    ]);
    assert!(
        out.status.success(),
        "ping {addr} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A UDP Service for [`udp_request`]: ClusterIP 10.96.0.10:5353 to 192.0.2.2:7777.
pub const UDP_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 5353, protocol: UDP, targetPort: 7777}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: "", port: 7777, protocol: UDP}]
endpoints:
  - {addresses: ["192.0.2.2"], conditions: {ready: true}, nodeName: node-b}
"#;

/// A UDP echo server and a client, run by the namespace's own Python.
const UDP_SERVER: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',7777))\ns.settimeout(10)\nd,a=s.recvfrom(2048)\ns.sendto(d+b' from '+a[0].encode(),a)\n";

/// One UDP request through the ClusterIP of [`UDP_SERVICE`] from namespace `ns` (server and
/// client both there: hairpinned, so DNAT and SNAT); asserts the answer says the server saw the
/// node's address 192.0.2.1 and came back from the Service address.
pub fn udp_request(ns: &str) {
    udp_exchange(ns, "10.96.0.10", 5353, 5).unwrap_or_else(|e| panic!("{e}"));
}

/// The same to any Service address whose endpoint is 192.0.2.2:7777: `Err` with the reason when
/// no answer comes within two seconds or it is not the expected one.
pub fn udp_request_at(ns: &str, addr: &str, port: u16) -> Result<(), String> {
    udp_exchange(ns, addr, port, 2)
}

fn udp_exchange(ns: &str, addr: &str, port: u16, timeout_secs: u32) -> Result<(), String> {
    let mut server = nodegate::netns::exec(ns)
        .args(["python3", "-c", UDP_SERVER])
        .spawn()
        .expect("python3 for the UDP server");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = format!("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout({timeout_secs})\ns.sendto(b'hello',('{addr}',{port}))\nd,a=s.recvfrom(2048)\nprint(d.decode(), a[0], a[1])\n");
    let client = sh(&["ip", "netns", "exec", ns, "python3", "-c", &client]);
    let _ = server.kill();
    let _ = server.wait();
    let answer = String::from_utf8_lossy(&client.stdout);
    if !client.status.success() {
        return Err(format!(
            "UDP through {addr}:{port} failed: {answer}{}",
            String::from_utf8_lossy(&client.stderr)
        ));
    }
    let expected = format!("hello from 192.0.2.1 {addr} {port}");
    if answer.trim() != expected {
        return Err(format!(
            "UDP through {addr}:{port}: {answer:?}, not {expected:?}"
        ));
    }
    Ok(())
}

/// What every namespace test that pinged the node and moved traffic through a Service expects
/// of the final counters: ARP and echo answered, and nothing lost to a full ring, an empty
/// pool, a full flow table or a broken header.
pub fn assert_forwarded_cleanly(stats: &serde_json::Value) {
    assert!(
        stats["total"]["arp_replies"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["total"]["icmp_sent"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    for reason in [
        "tx-full",
        "no-buffer",
        "ct-full",
        "l4-malformed",
        "ip4-bad-checksum",
    ] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
}

/// A namespace `{host_prefix}{tag}{id}` with a veth pair: `host` (`{host_prefix}{tag}{id}`) in
/// the test's namespace for nodegate, the peer (`{peer_prefix}{tag}{id}`) with 192.0.2.2/24 and
/// 192.0.2.3/24 (two endpoints), a route to the ClusterIP range via nodegate (192.0.2.1), TX
/// checksum offload off.
pub fn veth_pair(host_prefix: &str, peer_prefix: &str, tag: &str) -> (Netns, Link, String) {
    veth_pair_with_queues(host_prefix, peer_prefix, tag, 1)
}

/// The same with `queues` RX and TX queues on both veth ends.
pub fn veth_pair_with_queues(
    host_prefix: &str,
    peer_prefix: &str,
    tag: &str,
    queues: usize,
) -> (Netns, Link, String) {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("{host_prefix}{tag}{id}"));
    let (host, peer) = (
        format!("{host_prefix}{tag}{id}"),
        format!("{peer_prefix}{tag}{id}"),
    );
    must(&["ip", "netns", "add", &ns.0]);
    add_veth(None, &host, &peer, queues);
    let link = Link(host.clone());
    must(&["ip", "link", "set", &peer, "netns", &ns.0]);
    must(&["ip", "link", "set", &host, "up"]);
    for cmd in [
        vec!["addr", "add", "192.0.2.2/24", "dev", &peer],
        vec!["addr", "add", "192.0.2.3/24", "dev", &peer],
        vec!["link", "set", &peer, "up"],
        vec!["link", "set", "lo", "up"],
        vec!["route", "add", "10.96.0.0/16", "via", "192.0.2.1"],
    ] {
        let mut args = vec!["ip", "-n", &ns.0];
        args.extend(cmd);
        must(&args);
    }
    // veth hands frames on with partial checksums unless the sender computes them.
    must(&[
        "ip", "netns", "exec", &ns.0, "ethtool", "-K", &peer, "tx", "off",
    ]);
    (ns, link, host)
}

/// `ip [-n ns] link add a ... type veth peer name b ...`, `queues` queues each way on both ends.
pub fn add_veth(ns: Option<&str>, a: &str, b: &str, queues: usize) {
    nodegate::netns::add_veth(ns, a, b, queues).unwrap_or_else(|e| panic!("{e} (needs root)"));
}

/// The TCP Service of the endpoint tests: ClusterIP 10.96.0.20:80 and NodePort 30080 to port
/// 8000 of `endpoints` (all ready).
pub fn tcp_service(endpoints: &[&str]) -> String {
    let eps: Vec<(&str, bool)> = endpoints.iter().map(|e| (*e, true)).collect();
    tcp_service_with(&eps)
}

/// The same with each endpoint's `ready` condition given.
pub fn tcp_service_with(endpoints: &[(&str, bool)]) -> String {
    let eps: String = endpoints
        .iter()
        .map(|(e, ready)| {
            format!(
                "  - {{addresses: [\"{e}\"], conditions: {{ready: {ready}}}, nodeName: node-b}}\n"
            )
        })
        .collect();
    let eps = if eps.is_empty() {
        " []\n".to_string()
    } else {
        format!("\n{eps}")
    };
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: tcp, namespace: default}}
spec:
  type: NodePort
  clusterIP: 10.96.0.20
  ports: [{{port: 80, protocol: TCP, targetPort: 8000, nodePort: 30080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: tcp-1, namespace: default, labels: {{kubernetes.io/service-name: tcp}}}}
addressType: IPv4
ports: [{{name: "", port: 8000, protocol: TCP}}]
endpoints:{eps}"#
    )
}

/// A threaded TCP server on port 8000 of every address of the namespace: `hello` is answered
/// with the address it reached (the endpoint), `bulk N` with N bytes (`i % 251`) sent in 64 KiB
/// pieces 20 ms apart. Killed on drop.
pub struct TcpServer(std::process::Child);

const TCP_SERVER: &str = r#"
import socketserver, time
PATTERN = bytes(i % 251 for i in range(65536 + 251))
class H(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode().split()
        if line and line[0] == 'bulk':
            n = int(line[1]); sent = 0
            while sent < n:
                k = min(65536, n - sent)
                self.wfile.write(PATTERN[sent % 251:sent % 251 + k]); sent += k
                time.sleep(0.02)
        else:
            self.wfile.write(('ep ' + self.request.getsockname()[0] + '\n').encode())
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
s = socketserver.ThreadingTCPServer(('0.0.0.0', 8000), H)
print('listening', flush=True)
s.serve_forever()
"#;

impl TcpServer {
    pub fn start(ns: &str) -> TcpServer {
        let mut child = nodegate::netns::exec(ns)
            .args(["python3", "-c", TCP_SERVER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the TCP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
        TcpServer(child)
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `hello` through the ClusterIP of [`tcp_service`] from the namespace: the endpoint that
/// answered, or why not (within about a second). The client is the endpoint 192.0.2.2 itself,
/// so the flow is hairpinned (DNAT and SNAT).
pub fn tcp_hello(ns: &str) -> Result<String, String> {
    hello_at(ns, "10.96.0.20", 80)
}

/// The same through the NodePort, 192.0.2.1:30080 (policy Cluster: SNAT to the node address,
/// so an endpoint in the client's own namespace, 192.0.2.3, answers through nodegate too).
pub fn nodeport_hello(ns: &str) -> Result<String, String> {
    hello_at(ns, "192.0.2.1", 30080)
}

/// One `hello` to `addr:port` from namespace `ns` (see [`TcpServer`]).
pub fn hello_at(ns: &str, addr: &str, port: u16) -> Result<String, String> {
    let client = format!("import socket\ns=socket.create_connection(('{addr}',{port}),timeout=1)\ns.settimeout(2)\ns.sendall(b'hello\\n')\nprint(s.makefile().readline().split()[1])\n");
    let out = sh(&["ip", "netns", "exec", ns, "python3", "-c", &client]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A long transfer through the ClusterIP of [`tcp_service`]: `bulk SIZE` asked of the
/// [`TcpServer`] from namespace `ns`, about 3 MiB/s, so 32 MiB take about ten seconds.
pub struct SlowTransfer {
    child: Option<std::process::Child>,
    size: usize,
}

impl SlowTransfer {
    pub fn start(ns: &str, size: usize) -> SlowTransfer {
        let client = format!(
            "import socket,hashlib\ns=socket.create_connection(('10.96.0.20',80),timeout=5)\ns.settimeout(20)\ns.sendall(b'bulk {size}\\n')\nh=hashlib.sha256();n=0\nwhile True:\n    b=s.recv(65536)\n    if not b: break\n    h.update(b); n+=len(b)\nprint(s.getpeername()[0], n, h.hexdigest())\n"
        );
        let child = nodegate::netns::exec(ns)
            .args(["python3", "-c", &client])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 for the transfer's client");
        SlowTransfer {
            child: Some(child),
            size,
        }
    }

    /// Still running.
    pub fn running(&mut self) -> bool {
        let child = self.child.as_mut().expect("not waited for yet");
        child.try_wait().unwrap().is_none()
    }

    /// Waits for the end; asserts that every byte came, unchanged, from the Service address.
    pub fn assert_complete(mut self) {
        let size = self.size;
        let child = self.child.take().expect("not waited for yet");
        let out = child.wait_with_output().unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "transfer failed: {got}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let digest = sha256_hex(&expected);
        assert_eq!(got.trim(), format!("10.96.0.20 {size} {digest}"));
    }
}

impl Drop for SlowTransfer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A "node" namespace and a "client" namespace (`{prefix}n{id}`, `{prefix}c{id}`) joined by a
/// veth pair that lives and dies with them: `wire` in the node namespace (no address: the data
/// plane owns it), `peer` in the client namespace with `client_addr`, TX checksum offload off
/// (veth passes partial checksums on unless the sender computes them). Both ends and both
/// loopbacks are up.
pub struct NodeAndClient {
    pub node: Netns,
    pub client: Netns,
    pub wire: String,
    pub peer: String,
}

pub fn node_and_client(prefix: &str, client_addr: &str) -> NodeAndClient {
    let id = std::process::id() % 100_000;
    let node = Netns(format!("{prefix}n{id}"));
    let client = Netns(format!("{prefix}c{id}"));
    let (wire, peer) = (format!("{prefix}v{id}"), format!("{prefix}w{id}"));
    must(&["ip", "netns", "add", &node.0]);
    must(&["ip", "netns", "add", &client.0]);
    must(&[
        "ip", "-n", &node.0, "link", "add", &wire, "type", "veth", "peer", "name", &peer, "netns",
        &client.0,
    ]);
    for (ns, dev) in [(&node.0, &wire), (&client.0, &peer)] {
        must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    must(&[
        "ip",
        "-n",
        &client.0,
        "addr",
        "add",
        client_addr,
        "dev",
        &peer,
    ]);
    must(&[
        "ip", "netns", "exec", &client.0, "ethtool", "-K", &peer, "tx", "off",
    ]);
    NodeAndClient {
        node,
        client,
        wire,
        peer,
    }
}

/// Connections to the NodePort of [`tcp_service`] until `expected` endpoints have all answered
/// (at most 40); asserts they did.
pub fn nodeport_reaches(ns: &str, expected: &[&str]) {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(nodeport_hello(ns).expect("hello"));
        if seen.len() == expected.len() {
            break;
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        expected,
        "new connections use every endpoint"
    );
}
