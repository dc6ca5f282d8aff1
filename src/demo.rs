//! `nodegate demo`: the Kubernetes "Using Source IP" walkthrough, run for real.
//!
//! Builds, in network namespaces, a client outside the cluster, two nodes (each its own
//! namespace) running `nodegate run` on veth interfaces with the `af_xdp` driver (or
//! `af_packet`), a backend pod behind node-b that answers HTTP with the client address it sees,
//! and a client pod behind node-a. Then it runs the page's experiments with `curl` (ClusterIP
//! from a pod; NodePort and LoadBalancer, each with `externalTrafficPolicy` Cluster and Local,
//! through both nodes) and prints what the backend saw, then asks each node's health check
//! port of the `Local` LoadBalancer what a cloud load balancer would (`/healthz`: 503 and no
//! local endpoint on node-a, 200 and one on node-b). Everything is removed at the end, also on
//! failure.
//!
//! The nodes take their Services and EndpointSlices from a manifests directory ([`objects`],
//! written out), or, with [`Source::Api`], from an API server named by a kubeconfig, which the
//! caller fills with [`objects`]. The nodes' `nodegate run` is in the node's namespace, where
//! the caller's `127.0.0.1` is not reachable: each node namespace gets a management link
//! (`api0`, 10.255.77.2 and .3) to a bridge in the root namespace (`ngdemo-api`, 10.255.77.1),
//! where the demo relays TCP to the kubeconfig's server; the nodes get a copy of the kubeconfig
//! naming the relay (with `tls-server-name` set to the original host for https).
//!
//! ```text
//!  client 10.0.0.100 ──┐                    ┌── node-a 10.0.0.1 ── pods-a 10.2.0.0/24 ── pod-a 10.2.0.9
//!                      └── lan bridge ──────┤
//!                                           └── node-b 10.0.0.2 ── pods-b 10.1.0.0/24 ── pod-b 10.1.0.5:8080
//!  (API mode: node-a, node-b ── api0 ── root namespace ngdemo-api 10.255.77.1 ── relay ── API server)
//! ```

use crate::netns;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PREFIX: &str = "ngdemo";
const NAMESPACES: [&str; 6] = ["lan", "client", "poda", "podb", "nodea", "nodeb"];
/// The root namespace's bridge of the management links (API mode) and its address.
const API_BRIDGE: &str = "ngdemo-api";
const API_GATEWAY: &str = "10.255.77.1";

/// Where the nodes take their Services and EndpointSlices from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A manifests directory holding [`objects`], written by the demo.
    Manifests,
    /// The API server of this kubeconfig (its current context), which must hold [`objects`].
    Api(PathBuf),
}

/// The Services. Only the `Local` LoadBalancer has a `healthCheckNodePort`: the API server
/// allocates one for no other type (and refuses one set on a NodePort Service), and kube-proxy
/// serves none for them either.
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
  spec: {type: NodePort, clusterIP: 10.96.0.12, externalTrafficPolicy: Local, ports: [{port: 80, targetPort: 8080, nodePort: 30081, protocol: TCP}]}
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

/// The demo's Kubernetes objects: five Services (ClusterIP, NodePort and LoadBalancer with
/// both traffic policies) and one EndpointSlice each, all pointing at the backend pod on
/// node-b. With [`Source::Api`], the API server must hold them.
pub fn objects() -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for list in [MANIFESTS.to_string(), slices()] {
        let list: serde_json::Value =
            serde_yaml::from_str(&list).expect("the demo's manifests are valid YAML");
        if let Some(items) = list["items"].as_array() {
            out.extend(items.iter().cloned());
        }
    }
    out
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
    let mut all = vec!["ip"];
    all.extend(args);
    netns::run(&all).map(drop)
}

/// The demo's topology, running (see [`Lab::start`]); everything it created is removed on
/// drop.
pub struct Lab {
    children: Vec<Child>,
    dir: PathBuf,
    /// The API relay's address and stop flag (API mode).
    relay: Option<(SocketAddr, Arc<AtomicBool>)>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some((addr, stop)) = &self.relay {
            stop.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees the flag.
            let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
        }
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
        netns::delete_netns(&ns(n));
    }
    // The management links' root ends went with their namespaces; the bridge stays otherwise.
    netns::delete_link(API_BRIDGE);
}

fn node_config(
    name: &str,
    driver: &str,
    up_addr: &str,
    pods_addr: &str,
    route: &str,
    api: bool,
) -> String {
    let short = &name[name.len() - 1..];
    let kubernetes = if api {
        "kubernetes: {kubeconfig: api.kubeconfig}"
    } else {
        "kubernetes: {manifests: manifests}"
    };
    format!(
        "node: {{name: {name}, addresses: [\"{up}\"]}}\nworkers: 1\nports:\n  - {{name: uplink, driver: {driver}, interface: up{short}, addresses: [\"{up_addr}\"]}}\n  - {{name: pods, driver: {driver}, interface: pods{short}, addresses: [\"{pods_addr}\"]}}\nroutes:\n  - {route}\n{kubernetes}\n",
        up = up_addr.split('/').next().unwrap_or_default(),
    )
}

/// The kubeconfig's current server URL, the file parsed as YAML.
fn kubeconfig_server(config: &serde_yaml::Value) -> Result<String, String> {
    let current = config["current-context"]
        .as_str()
        .ok_or("it has no current-context")?;
    let named = |list: &str, name: &str| -> Option<serde_yaml::Value> {
        config[list]
            .as_sequence()?
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .cloned()
    };
    let context = named("contexts", current).ok_or(format!("no context `{current}`"))?;
    let cluster = context["context"]["cluster"]
        .as_str()
        .ok_or(format!("context `{current}` names no cluster"))?;
    let cluster = named("clusters", cluster).ok_or(format!("no cluster `{cluster}`"))?;
    cluster["cluster"]["server"]
        .as_str()
        .map(str::to_string)
        .ok_or(format!("cluster of context `{current}` has no server"))
}

/// Splits `scheme://host[:port][/path]` into (scheme, host, port, path).
fn split_url(url: &str) -> Result<(String, String, u16, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or(format!("`{url}` is no URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let bad_port = |p: &str| p.parse().map_err(|_| format!("bad port in `{url}`"));
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: `[addr]` or `[addr]:port`.
        Some(v6) => {
            let (addr, rest) = v6.split_once(']').ok_or(format!("bad host in `{url}`"))?;
            let port = match rest.strip_prefix(':') {
                Some(p) => bad_port(p)?,
                None if rest.is_empty() => default,
                None => return Err(format!("bad host in `{url}`")),
            };
            (format!("[{addr}]"), port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), bad_port(p)?),
            None => (authority.to_string(), default),
        },
    };
    Ok((scheme.to_string(), host, port, path.to_string()))
}

/// The kubeconfig, parsed, and the server of its current context.
fn read_kubeconfig(path: &Path) -> Result<(serde_yaml::Value, String), String> {
    let what = |e: String| format!("kubeconfig {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| what(e.to_string()))?;
    let config: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| what(e.to_string()))?;
    let server = kubeconfig_server(&config).map_err(what)?;
    Ok((config, server))
}

/// Reads the caller's kubeconfig, starts a TCP relay on the management bridge's address to its
/// server, and writes `api.kubeconfig` into `dir`, the same with the relay as server. Returns
/// the relay's address and stop flag.
fn relay_api(kubeconfig: &Path, dir: &Path) -> Result<(SocketAddr, Arc<AtomicBool>), String> {
    let what = |e: String| format!("kubeconfig {}: {e}", kubeconfig.display());
    let (mut config, server) = read_kubeconfig(kubeconfig)?;
    let (_, host, port, _) = split_url(&server).map_err(what)?;
    let target: Vec<SocketAddr> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| what(format!("cannot resolve {host}: {e}")))?
        .collect();
    let listener = TcpListener::bind((API_GATEWAY, 0))
        .map_err(|e| format!("cannot listen on {API_GATEWAY} for the API relay: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let Ok(inbound) = conn else { continue };
            let Ok(outbound) = TcpStream::connect(&target[..]) else {
                continue;
            };
            pipe(inbound, outbound);
        }
    });
    let base = kubeconfig.parent().unwrap_or(Path::new("."));
    relayed_kubeconfig(&mut config, &server, addr, base)?;
    let text = serde_yaml::to_string(&config).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("api.kubeconfig"), text).map_err(|e| format!("api.kubeconfig: {e}"))?;
    Ok((addr, stop))
}

/// Rewrites a kubeconfig for the nodes: the clusters whose server is `server` get the relay at
/// `relay` instead (with `tls-server-name` set to the original host for https, so the
/// certificate is still checked against it), and the relative file names kube resolves against
/// the kubeconfig's directory are made absolute against `base`, as the copy lives elsewhere.
fn relayed_kubeconfig(
    config: &mut serde_yaml::Value,
    server: &str,
    relay: SocketAddr,
    base: &Path,
) -> Result<(), String> {
    let (scheme, host, _, path) = split_url(server)?;
    let relayed = format!("{scheme}://{relay}{path}");
    let absolute = |v: &mut serde_yaml::Value, key: &str, only_with_separator: bool| {
        if let Some(file) = v.get(key).and_then(serde_yaml::Value::as_str) {
            let relative = Path::new(file).is_relative()
                && (!only_with_separator || file.contains(std::path::MAIN_SEPARATOR));
            if relative {
                v[key] = base.join(file).to_string_lossy().into_owned().into();
            }
        }
    };
    if let Some(clusters) = config["clusters"].as_sequence_mut() {
        for c in clusters {
            let cluster = &mut c["cluster"];
            absolute(cluster, "certificate-authority", false);
            if cluster["server"].as_str() == Some(server) {
                cluster["server"] = relayed.clone().into();
                if scheme == "https" && cluster.get("tls-server-name").is_none() {
                    cluster["tls-server-name"] = host.trim_matches(['[', ']']).into();
                }
            }
        }
    }
    if let Some(users) = config["users"].as_sequence_mut() {
        for u in users {
            let user = &mut u["user"];
            for key in ["client-certificate", "client-key", "tokenFile"] {
                absolute(user, key, false);
            }
            absolute(&mut user["exec"], "command", true);
        }
    }
    Ok(())
}

/// Copies bytes both ways between two connections until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let one_way = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            // Either side gone ends the whole connection (and the other direction's thread).
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    };
    if let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) {
        one_way(a, b2);
        one_way(b, a2);
    }
}

/// The management link of a node namespace: a veth from the root namespace's bridge, `api0`
/// with `addr` in the node namespace.
fn management_link(node_ns: &str, short: &str, addr: &str) -> Result<(), String> {
    let root_end = format!("{API_BRIDGE}{short}");
    ip(&[
        "link", "add", &root_end, "type", "veth", "peer", "name", "api0", "netns", node_ns,
    ])?;
    ip(&["link", "set", &root_end, "master", API_BRIDGE])?;
    ip(&["link", "set", &root_end, "up"])?;
    ip(&["-n", node_ns, "addr", "add", addr, "dev", "api0"])?;
    ip(&["-n", node_ns, "link", "set", "api0", "up"])?;
    Ok(())
}

/// A veth pair with one end in each namespace (named `a` and `b` there), both up, and the TX
/// checksum offload of both ends off: a frame leaving a veth otherwise carries a partial
/// checksum that only the kernel's own stack would complete.
fn veth(ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), String> {
    netns::veth_between(ns_a, a, ns_b, b)
}

/// Starts one node's `nodegate run` and waits for its `ready` line.
fn start_node(exe: &Path, dir: &Path, name: &str, netns: &str) -> Result<Child, String> {
    use std::io::{BufRead, BufReader};
    let mut child = netns::exec(netns)
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

fn build(exe: &Path, driver: &str, source: &Source) -> Result<Lab, String> {
    remove_namespaces();
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("manifests")).map_err(|e| e.to_string())?;
    let mut lab = Lab {
        children: Vec::new(),
        dir: dir.clone(),
        relay: None,
    };
    let write = |file: &str, text: &str| {
        std::fs::write(dir.join(file), text).map_err(|e| format!("{file}: {e}"))
    };
    let api = matches!(source, Source::Api(_));
    if !api {
        write("manifests/services.yaml", MANIFESTS)?;
        write("manifests/endpointslices.yaml", &slices())?;
    }
    write(
        "node-a.yaml",
        &node_config(
            "node-a",
            driver,
            "10.0.0.1/24",
            "10.2.0.1/24",
            "{prefix: \"10.1.0.0/24\", via: \"10.0.0.2\"}",
            api,
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
            api,
        ),
    )?;

    for n in NAMESPACES {
        ip(&["netns", "add", &ns(n)])?;
        ip(&["-n", &ns(n), "link", "set", "lo", "up"])?;
    }
    if let Source::Api(kubeconfig) = source {
        ip(&["link", "add", API_BRIDGE, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{API_GATEWAY}/24"),
            "dev",
            API_BRIDGE,
        ])?;
        ip(&["link", "set", API_BRIDGE, "up"])?;
        lab.relay = Some(relay_api(kubeconfig, &dir)?);
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
    for (node, pod_ns, pod_addr, gw, mgmt) in [
        (
            "node-a",
            "poda",
            "10.2.0.9/24",
            "10.2.0.1",
            "10.255.77.2/24",
        ),
        (
            "node-b",
            "podb",
            "10.1.0.5/24",
            "10.1.0.1",
            "10.255.77.3/24",
        ),
    ] {
        let short = &node[node.len() - 1..];
        let node_ns = ns(&format!("node{short}"));
        if api {
            management_link(&node_ns, short, mgmt)?;
        }
        veth(&node_ns, &format!("up{short}"), &lan, node)?;
        ip(&["-n", &lan, "link", "set", node, "master", "br0"])?;
        let pn = ns(pod_ns);
        veth(&node_ns, &format!("pods{short}"), &pn, "eth0")?;
        ip(&["-n", &pn, "addr", "add", pod_addr, "dev", "eth0"])?;
        ip(&["-n", &pn, "route", "add", "default", "via", gw])?;
        lab.children.push(start_node(exe, &dir, node, &node_ns)?);
    }
    // The backend pod's HTTP server.
    let server = netns::exec(&ns("podb"))
        .args(["python3", "-c", SERVER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the backend (python3): {e}"))?;
    lab.children.push(server);
    Ok(lab)
}

use crate::preflight::{CAP_NET_ADMIN, CAP_SYS_ADMIN};

/// The tools the demo runs, with the Debian package of each.
const TOOLS: &[(&str, &str, &str)] = &[
    ("ip", "iproute2", "to make the namespaces and veth pairs"),
    ("curl", "curl", "for the experiments"),
    ("python3", "python3", "for the backend pod's HTTP server"),
];

/// What the demo needs before it touches anything: each missing tool named with its package,
/// and the privileges it lacks.
fn prerequisites() -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |tool: &str| {
        std::env::split_paths(&path).any(|dir| {
            let f = dir.join(tool);
            f.metadata().is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    };
    let missing: Vec<&(&str, &str, &str)> =
        TOOLS.iter().filter(|(tool, ..)| !found(tool)).collect();
    if !missing.is_empty() {
        let named: Vec<String> = missing
            .iter()
            .map(|(tool, package, why)| format!("`{tool}` {why} (Debian package {package})"))
            .collect();
        let packages: Vec<&str> = missing.iter().map(|(_, package, _)| *package).collect();
        return Err(format!(
            "the demo needs {}, not found on the PATH; install with `apt-get install {}`",
            named.join(", "),
            packages.join(" ")
        ));
    }
    let lacks: Vec<&str> = [
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN (network namespaces)"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN (veth pairs, addresses, XDP)"),
    ]
    .iter()
    .filter(|(cap, _)| !crate::preflight::has_capability(*cap))
    .map(|(_, name)| *name)
    .collect();
    if !lacks.is_empty() {
        return Err(format!(
            "the demo builds its network in namespaces and needs {}, which this process lacks: run it as root (`sudo`)",
            lacks.join(" and ")
        ));
    }
    Ok(())
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

/// `curl -s --max-time 2 [extra] url` from namespace `from`; its standard output.
fn curl_output(from: &str, extra: &[&str], url: &str) -> Result<String, String> {
    let out = netns::exec(&ns(from))
        .args(["curl", "-s", "--max-time", "2"])
        .args(extra)
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the backend saw, or `None` when nothing answered.
fn curl(from: &str, url: &str) -> Result<Option<String>, String> {
    let body = curl_output(from, &[], url)?;
    Ok(body
        .trim()
        .strip_prefix("client_address=")
        .map(str::to_string))
}

/// What a load balancer's health check gets from `url` from a namespace: the status code and
/// `localEndpoints` of the answer, as `"503 localEndpoints=0"`, or `None` when nothing answered.
fn health(from: &str, url: &str) -> Result<Option<String>, String> {
    let text = curl_output(from, &["-w", "\n%{http_code}"], url)?;
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim();
    if code.is_empty() || code == "000" {
        return Ok(None);
    }
    let endpoints = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["localEndpoints"].as_u64())
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    Ok(Some(format!("{code} localEndpoints={endpoints}")))
}

/// One health check experiment: a load balancer asking a node's `healthCheckNodePort`.
struct HealthExperiment {
    what: &'static str,
    via: &'static str,
    url: &'static str,
    expect: &'static str,
}

const HEALTH_EXPERIMENTS: &[HealthExperiment] = &[
    HealthExperiment {
        what: "LoadBalancer, Local",
        via: "node-a",
        url: "http://10.0.0.1:32101/healthz",
        expect: "503 localEndpoints=0 (no local pod)",
    },
    HealthExperiment {
        what: "LoadBalancer, Local",
        via: "node-b",
        url: "http://10.0.0.2:32101/healthz",
        expect: "200 localEndpoints=1 (pod runs here)",
    },
];

/// One row of the result table.
pub struct Row {
    pub what: &'static str,
    pub via: &'static str,
    /// What the backend saw (the client address), or, for a health check row, the answer's
    /// status code and `localEndpoints`.
    pub seen: Option<String>,
    pub expect: &'static str,
    /// A health check row (`healthCheckNodePort`, `/healthz` from the client).
    pub health: bool,
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

/// Runs the demo with the nodes on `driver` (`af_xdp` or `af_packet`), their Services and
/// EndpointSlices from `source`; returns the table (or why it could not run).
pub fn run(exe: &Path, driver: &str, source: &Source) -> Result<Vec<Row>, String> {
    let lab = Lab::start(exe, driver, source)?;
    let mut rows = lab.experiments()?;
    rows.extend(lab.health_checks()?);
    Ok(rows)
}

impl Lab {
    /// Builds the topology and starts the nodes (`exe` is the `nodegate` executable), the
    /// backend, and waits until both nodes serve the Cluster NodePort (at most 30 s: after
    /// that the experiments will show what does not answer). Everything is removed when the
    /// `Lab` is dropped. Needs root; only one `Lab` can exist at a time (fixed namespace
    /// names).
    pub fn start(exe: &Path, driver: &str, source: &Source) -> Result<Lab, String> {
        if !matches!(driver, "af_xdp" | "af_packet") {
            return Err(format!(
                "the demo runs the nodes on `af_xdp` or `af_packet`, not `{driver}`"
            ));
        }
        prerequisites()?;
        if let Source::Api(kubeconfig) = source {
            read_kubeconfig(kubeconfig)?;
        }
        let lab = build(exe, driver, source)?;
        // Wait for the backend to listen, then let the neighbours resolve once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while curl("podb", "http://127.0.0.1:8080/")?.is_none() {
            if Instant::now() > deadline {
                return Err(
                    "the backend pod's HTTP server (python3, in its namespace) did not answer on 127.0.0.1:8080 within 10 s"
                        .into(),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Both nodes serve the Services once they have them (at once from manifests; from an
        // API server, once their watchers have listed): wait for a Cluster NodePort through
        // each.
        let deadline = Instant::now() + Duration::from_secs(30);
        let _ = curl("poda", "http://10.96.0.10/");
        while curl("client", "http://10.0.0.1:30080/")?.is_none()
            || curl("client", "http://10.0.0.2:30080/")?.is_none()
        {
            if Instant::now() > deadline {
                break; // the rows will say what does not answer
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(lab)
    }

    /// The page's curl experiments, one row each: what the backend saw.
    pub fn experiments(&self) -> Result<Vec<Row>, String> {
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
                health: false,
            });
        }
        Ok(rows)
    }

    /// The Local LoadBalancer's health check on each node, from the client, as a load
    /// balancer asks it; the expectations are the demo's objects' (the pod on node-b).
    pub fn health_checks(&self) -> Result<Vec<Row>, String> {
        HEALTH_EXPERIMENTS
            .iter()
            .map(|h| {
                Ok(Row {
                    what: h.what,
                    via: h.via,
                    seen: health("client", h.url)?,
                    expect: h.expect,
                    health: true,
                })
            })
            .collect()
    }
}

/// The table as printed: the curl experiments, then the health checks.
pub fn table(rows: &[Row]) -> String {
    let line = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        format!(
            "{}\n",
            format!("{a:<24} {b:<8} {c:<22} {d:<36} {e}").trim_end()
        )
    };
    let mut s = line(
        "experiment",
        "through",
        "backend saw client",
        "Kubernetes docs say",
        "",
    );
    let mut health_header = false;
    for r in rows {
        if r.health && !health_header {
            health_header = true;
            s.push('\n');
            s.push_str(&line(
                "health check (LB's view)",
                "node",
                "GET :32101/healthz",
                "Kubernetes docs say",
                "",
            ));
        }
        s.push_str(&line(
            r.what,
            r.via,
            r.seen.as_deref().unwrap_or("(no answer)"),
            r.expect,
            if r.as_expected() { "ok" } else { "DIFFERENT" },
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        let s = |u| split_url(u).unwrap();
        assert_eq!(
            s("http://127.0.0.1:6443"),
            ("http".into(), "127.0.0.1".into(), 6443, String::new())
        );
        assert_eq!(
            s("https://api.example:8443/k8s"),
            ("https".into(), "api.example".into(), 8443, "/k8s".into())
        );
        assert_eq!(
            s("https://api.example"),
            ("https".into(), "api.example".into(), 443, String::new())
        );
        assert_eq!(
            s("http://[::1]:80"),
            ("http".into(), "[::1]".into(), 80, String::new())
        );
        assert_eq!(
            s("https://[::1]"),
            ("https".into(), "[::1]".into(), 443, String::new())
        );
        assert!(split_url("127.0.0.1:6443").is_err());
    }

    #[test]
    fn the_nodes_kubeconfig_names_the_relay_and_absolute_files() {
        let mut config: serde_yaml::Value = serde_yaml::from_str(
            "current-context: c\n\
             contexts: [{name: c, context: {cluster: k, user: u}}]\n\
             clusters:\n\
             - {name: k, cluster: {server: \"https://kube.example:6443\", certificate-authority: ca.crt}}\n\
             - {name: other, cluster: {server: \"http://elsewhere:80\"}}\n\
             users: [{name: u, user: {client-key: keys/u.key, tokenFile: /abs/token, exec: {command: ./bin/auth}}}]\n",
        )
        .unwrap();
        let server = kubeconfig_server(&config).unwrap();
        assert_eq!(server, "https://kube.example:6443");
        let relay: SocketAddr = "10.255.77.1:4000".parse().unwrap();
        relayed_kubeconfig(&mut config, &server, relay, Path::new("/home/me/.kube")).unwrap();
        let k = &config["clusters"][0]["cluster"];
        assert_eq!(k["server"], "https://10.255.77.1:4000");
        assert_eq!(k["tls-server-name"], "kube.example");
        assert_eq!(k["certificate-authority"], "/home/me/.kube/ca.crt");
        assert_eq!(
            config["clusters"][1]["cluster"]["server"],
            "http://elsewhere:80"
        );
        let u = &config["users"][0]["user"];
        assert_eq!(u["client-key"], "/home/me/.kube/keys/u.key");
        assert_eq!(u["tokenFile"], "/abs/token");
        assert_eq!(u["exec"]["command"], "/home/me/.kube/./bin/auth");
    }

    #[test]
    fn the_objects_are_the_five_services_and_their_slices() {
        let objects = objects();
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.iter().filter(|k| **k == "Service").count(), 5);
        assert_eq!(kinds.iter().filter(|k| **k == "EndpointSlice").count(), 5);
        let with_health: Vec<_> = objects
            .iter()
            .filter(|o| !o["spec"]["healthCheckNodePort"].is_null())
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap(),
                    o["spec"]["healthCheckNodePort"].as_u64(),
                )
            })
            .collect();
        assert_eq!(with_health, [("loadbalancer-local", Some(32101))]);
    }
}
