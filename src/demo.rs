//! `nodegate demo`: the Kubernetes "Using Source IP" walkthrough, run for real.
//!
//! Builds, in network namespaces, a client outside the cluster, two nodes (each its own
//! namespace) running `nodegate run` on veth interfaces with the `af_xdp` driver (or
//! `af_packet`), a backend pod behind node-b that answers HTTP with the client address it sees,
//! and a client pod behind node-a. Then it runs the page's experiments with `curl` (ClusterIP
//! from a pod; NodePort and LoadBalancer, each with `externalTrafficPolicy` Cluster and Local,
//! through both nodes) and prints what the backend saw. Everything is removed at the end, also
//! on failure.
//!
//! ```text
//!  client 10.0.0.100 ──┐                    ┌── node-a 10.0.0.1 ── pods-a 10.2.0.0/24 ── pod-a 10.2.0.9
//!                      └── lan bridge ──────┤
//!                                           └── node-b 10.0.0.2 ── pods-b 10.1.0.0/24 ── pod-b 10.1.0.5:8080
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "ngdemo";
const NAMESPACES: [&str; 6] = ["lan", "client", "poda", "podb", "nodea", "nodeb"];

const MANIFESTS: &str = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: clusterip, namespace: default}
  spec: {type: ClusterIP, clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 8080, protocol: TCP}]}
- apiVersion: v1
  kind: Service
  metadata: {name: nodeport, namespace: default}
  spec: {type: NodePort, clusterIP: 10.96.0.11, externalTrafficPolicy: Cluster, ports: [{port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}]}
- apiVersion: v1
  kind: Service
  metadata: {name: nodeport-local, namespace: default}
  spec: {type: NodePort, clusterIP: 10.96.0.12, externalTrafficPolicy: Local, healthCheckNodePort: 32100, ports: [{port: 80, targetPort: 8080, nodePort: 30081, protocol: TCP}]}
- apiVersion: v1
  kind: Service
  metadata: {name: loadbalancer, namespace: default}
  spec: {type: LoadBalancer, clusterIP: 10.96.0.13, externalTrafficPolicy: Cluster, ports: [{port: 80, targetPort: 8080, nodePort: 30082, protocol: TCP}]}
  status: {loadBalancer: {ingress: [{ip: 192.0.2.200}]}}
- apiVersion: v1
  kind: Service
  metadata: {name: loadbalancer-local, namespace: default}
  spec: {type: LoadBalancer, clusterIP: 10.96.0.14, externalTrafficPolicy: Local, healthCheckNodePort: 32101, ports: [{port: 80, targetPort: 8080, nodePort: 30083, protocol: TCP}]}
  status: {loadBalancer: {ingress: [{ip: 192.0.2.201}]}}
"#;

/// One EndpointSlice per Service, all pointing at the pod on node-b.
fn slices() -> String {
    let mut s = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for svc in [
        "clusterip",
        "nodeport",
        "nodeport-local",
        "loadbalancer",
        "loadbalancer-local",
    ] {
        s.push_str(&format!(
            "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata: {{name: {svc}-x, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\n  addressType: IPv4\n  ports: [{{name: \"\", port: 8080, protocol: TCP}}]\n  endpoints: [{{addresses: [10.1.0.5], conditions: {{ready: true}}, nodeName: node-b}}]\n"
        ));
    }
    s
}

/// The backend: answers every GET with the address the connection came from.
const SERVER: &str = r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("client_address=%s\n" % self.client_address[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"#;

fn ns(name: &str) -> String {
    format!("{PREFIX}-{name}")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Everything the demo created; removed on drop.
struct Lab {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_namespaces();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn remove_namespaces() {
    for n in NAMESPACES {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns(n)])
            .stderr(Stdio::null())
            .status();
    }
}

fn node_config(name: &str, driver: &str, up_addr: &str, pods_addr: &str, route: &str) -> String {
    let short = &name[name.len() - 1..];
    format!(
        "node: {{name: {name}, addresses: [\"{up}\"]}}\nworkers: 1\nports:\n  - {{name: uplink, driver: {driver}, interface: up{short}, addresses: [\"{up_addr}\"]}}\n  - {{name: pods, driver: {driver}, interface: pods{short}, addresses: [\"{pods_addr}\"]}}\nroutes:\n  - {route}\nkubernetes: {{manifests: manifests}}\n",
        up = up_addr.split('/').next().unwrap_or_default(),
    )
}

/// A veth pair with one end in each namespace (named `a` and `b` there), both up, and the TX
/// checksum offload of both ends off: a frame leaving a veth otherwise carries a partial
/// checksum that only the kernel's own stack would complete.
fn veth(ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), String> {
    let tmp = format!("{PREFIX}t{}", std::process::id() % 100_000);
    ip(&[
        "link",
        "add",
        &tmp,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{tmp}p"),
    ])?;
    ip(&["link", "set", &tmp, "netns", ns_a])?;
    ip(&["link", "set", &format!("{tmp}p"), "netns", ns_b])?;
    ip(&["-n", ns_a, "link", "set", &tmp, "name", a])?;
    ip(&["-n", ns_b, "link", "set", &format!("{tmp}p"), "name", b])?;
    for (n, dev) in [(ns_a, a), (ns_b, b)] {
        ip(&["-n", n, "link", "set", dev, "up"])?;
        let out = Command::new("ip")
            .args(["netns", "exec", n, "ethtool", "-K", dev, "tx", "off"])
            .output()
            .map_err(|e| format!("cannot run ethtool (install ethtool): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ethtool -K {dev} tx off: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Starts one node's `nodegate run` and waits for its `ready` line.
fn start_node(exe: &Path, dir: &Path, name: &str, netns: &str) -> Result<Child, String> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(exe)
        .args(["run", "--config", &format!("{name}.yaml")])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start nodegate for {name}: {e}"))?;
    let mut log = BufReader::new(child.stderr.take().expect("piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if log.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            return Err(format!(
                "nodegate for {name} exited before it was ready:\n{seen}"
            ));
        }
        seen.push_str(&line);
        if line.contains("nodegate::run: ready") {
            break;
        }
    }
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while log.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    Ok(child)
}

fn build(exe: &Path, driver: &str) -> Result<Lab, String> {
    remove_namespaces();
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("manifests")).map_err(|e| e.to_string())?;
    let mut lab = Lab {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let write = |file: &str, text: &str| {
        std::fs::write(dir.join(file), text).map_err(|e| format!("{file}: {e}"))
    };
    write("manifests/services.yaml", MANIFESTS)?;
    write("manifests/endpointslices.yaml", &slices())?;
    write(
        "node-a.yaml",
        &node_config(
            "node-a",
            driver,
            "10.0.0.1/24",
            "10.2.0.1/24",
            "{prefix: \"10.1.0.0/24\", via: \"10.0.0.2\"}",
        ),
    )?;
    write(
        "node-b.yaml",
        &node_config(
            "node-b",
            driver,
            "10.0.0.2/24",
            "10.1.0.1/24",
            "{prefix: \"10.2.0.0/24\", via: \"10.0.0.1\"}",
        ),
    )?;

    for n in NAMESPACES {
        ip(&["netns", "add", &ns(n)])?;
        ip(&["-n", &ns(n), "link", "set", "lo", "up"])?;
    }
    let lan = ns("lan");
    ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &lan, "link", "set", "br0", "up"])?;
    // The client, on the LAN.
    let client = ns("client");
    veth(&client, "eth0", &lan, "client")?;
    ip(&["-n", &lan, "link", "set", "client", "master", "br0"])?;
    ip(&["-n", &client, "addr", "add", "10.0.0.100/24", "dev", "eth0"])?;

    // The nodes: an uplink on the LAN and a port to their pods, both owned by nodegate (the
    // node's kernel has no address on them).
    for (node, pod_ns, pod_addr, gw) in [
        ("node-a", "poda", "10.2.0.9/24", "10.2.0.1"),
        ("node-b", "podb", "10.1.0.5/24", "10.1.0.1"),
    ] {
        let short = &node[node.len() - 1..];
        let node_ns = ns(&format!("node{short}"));
        veth(&node_ns, &format!("up{short}"), &lan, node)?;
        ip(&["-n", &lan, "link", "set", node, "master", "br0"])?;
        let pn = ns(pod_ns);
        veth(&node_ns, &format!("pods{short}"), &pn, "eth0")?;
        ip(&["-n", &pn, "addr", "add", pod_addr, "dev", "eth0"])?;
        ip(&["-n", &pn, "route", "add", "default", "via", gw])?;
        lab.children.push(start_node(exe, &dir, node, &node_ns)?);
    }
    // The backend pod's HTTP server.
    let server = Command::new("ip")
        .args(["netns", "exec", &ns("podb"), "python3", "-c", SERVER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the backend (python3): {e}"))?;
    lab.children.push(server);
    Ok(lab)
}

/// One experiment: from a namespace, `curl` a URL, with extra routes for the client.
struct Experiment {
    what: &'static str,
    via: &'static str,
    from: &'static str,
    url: &'static str,
    route: Option<(&'static str, &'static str)>,
    expect: &'static str,
}

const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        what: "ClusterIP (from pod-a)",
        via: "node-a",
        from: "poda",
        url: "http://10.96.0.10/",
        route: None,
        expect: "10.2.0.9 (pod IP kept)",
    },
    Experiment {
        what: "NodePort, Cluster",
        via: "node-a",
        from: "client",
        url: "http://10.0.0.1:30080/",
        route: None,
        expect: "10.0.0.1 (SNAT to node-a)",
    },
    Experiment {
        what: "NodePort, Cluster",
        via: "node-b",
        from: "client",
        url: "http://10.0.0.2:30080/",
        route: None,
        expect: "10.1.0.1 (SNAT to node-b)",
    },
    Experiment {
        what: "NodePort, Local",
        via: "node-a",
        from: "client",
        url: "http://10.0.0.1:30081/",
        route: None,
        expect: "no answer (no local endpoint)",
    },
    Experiment {
        what: "NodePort, Local",
        via: "node-b",
        from: "client",
        url: "http://10.0.0.2:30081/",
        route: None,
        expect: "10.0.0.100 (client IP kept)",
    },
    Experiment {
        what: "LoadBalancer, Cluster",
        via: "node-a",
        from: "client",
        url: "http://192.0.2.200/",
        route: Some(("192.0.2.200/32", "10.0.0.1")),
        expect: "10.0.0.1 (SNAT to node-a)",
    },
    Experiment {
        what: "LoadBalancer, Cluster",
        via: "node-b",
        from: "client",
        url: "http://192.0.2.200/",
        route: Some(("192.0.2.200/32", "10.0.0.2")),
        expect: "10.1.0.1 (SNAT to node-b)",
    },
    Experiment {
        what: "LoadBalancer, Local",
        via: "node-a",
        from: "client",
        url: "http://192.0.2.201/",
        route: Some(("192.0.2.201/32", "10.0.0.1")),
        expect: "no answer (no local endpoint)",
    },
    Experiment {
        what: "LoadBalancer, Local",
        via: "node-b",
        from: "client",
        url: "http://192.0.2.201/",
        route: Some(("192.0.2.201/32", "10.0.0.2")),
        expect: "10.0.0.100 (client IP kept)",
    },
];

/// What the backend saw, or `None` when nothing answered.
fn curl(from: &str, url: &str) -> Result<Option<String>, String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns(from),
            "curl",
            "-s",
            "--max-time",
            "2",
            url,
        ])
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let body = String::from_utf8_lossy(&out.stdout);
    Ok(body
        .trim()
        .strip_prefix("client_address=")
        .map(str::to_string))
}

/// One row of the result table.
pub struct Row {
    pub what: &'static str,
    pub via: &'static str,
    pub seen: Option<String>,
    pub expect: &'static str,
}

impl Row {
    /// Whether the backend saw what the Kubernetes page says it should.
    pub fn as_expected(&self) -> bool {
        match &self.seen {
            Some(ip) => self.expect.starts_with(ip.as_str()),
            None => self.expect.starts_with("no answer"),
        }
    }
}

/// Runs the demo; returns the table (or why it could not run).
/// Runs the demo with the nodes on `driver` (`af_xdp` or `af_packet`); returns the table (or
/// why it could not run).
pub fn run(exe: &Path, driver: &str) -> Result<Vec<Row>, String> {
    if !matches!(driver, "af_xdp" | "af_packet") {
        return Err(format!(
            "the demo runs the nodes on `af_xdp` or `af_packet`, not `{driver}`"
        ));
    }
    let probe = Command::new("ip").args(["netns", "list"]).output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        return Err("the demo needs iproute2 (`ip`)".into());
    }
    let lab = build(exe, driver).map_err(|e| {
        format!("{e}\nthe demo creates network namespaces and veth pairs: run it as root")
    })?;
    // Wait for the backend to listen, then let the neighbours resolve once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl("podb", "http://127.0.0.1:8080/")?.is_none() {
        if Instant::now() > deadline {
            return Err("the backend HTTP server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = curl("client", "http://10.0.0.2:30080/");
    let _ = curl("poda", "http://10.96.0.10/");
    let mut rows = Vec::new();
    for e in EXPERIMENTS {
        if let Some((prefix, via)) = e.route {
            ip(&["-n", &ns(e.from), "route", "replace", prefix, "via", via])?;
        }
        rows.push(Row {
            what: e.what,
            via: e.via,
            seen: curl(e.from, e.url)?,
            expect: e.expect,
        });
    }
    drop(lab);
    Ok(rows)
}

/// The table as printed.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<24} {:<8} {:<22} {:<32} {}\n",
        "experiment", "through", "backend saw client", "Kubernetes docs say", ""
    );
    for r in rows {
        s.push_str(&format!(
            "{:<24} {:<8} {:<22} {:<32} {}\n",
            r.what,
            r.via,
            r.seen.as_deref().unwrap_or("(no answer)"),
            r.expect,
            if r.as_expected() { "ok" } else { "DIFFERENT" }
        ));
    }
    s
}
