//! Shared pieces of the network-namespace tests: namespaces and links removed on drop, command
//! helpers that fail with the reason, and the bulk TCP transfer.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

/// A network namespace deleted on drop, even when the test fails.
pub struct Netns(pub String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A link in the test's own namespace deleted on drop.
pub struct Link(pub String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

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

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {args:?}: {e} (install iproute2, iputils-ping, ethtool, python3)")
        })
}

pub fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed (this test needs root and iproute2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let mut server = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", BULK_SERVER])
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
        let mut cmd = match ns {
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
const UDP_CLIENT: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(5)\ns.sendto(b'hello',('10.96.0.10',5353))\nd,a=s.recvfrom(2048)\nprint(d.decode(), a[0], a[1])\n";

/// One UDP request through the ClusterIP of [`UDP_SERVICE`] from namespace `ns` (server and
/// client both there: hairpinned, so DNAT and SNAT); asserts the answer says the server saw the
/// node's address 192.0.2.1 and came back from the Service address.
pub fn udp_request(ns: &str) {
    let mut server = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", UDP_SERVER])
        .spawn()
        .expect("python3 for the UDP server");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = sh(&["ip", "netns", "exec", ns, "python3", "-c", UDP_CLIENT]);
    let _ = server.kill();
    let _ = server.wait();
    let answer = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "UDP through the ClusterIP failed: {answer}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(answer.trim(), "hello from 192.0.2.1 10.96.0.10 5353");
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
