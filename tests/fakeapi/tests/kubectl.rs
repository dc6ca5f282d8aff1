//! The real `kubectl` against the fake API: discovery, Tables, client-side and server-side
//! apply (with the server's strict field validation), get -o json, delete, get --watch.
//!
//! `kubectl` is taken from `$KUBECTL`, else from `PATH`. The one on our machines is Google
//! Cloud SDK's dispatcher: it reads `/version` and runs the kubectl release matching the
//! server (1.33 by default, 1.32 in `kubectl_1_32_...`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fakeapi::{FakeApi, Options, Verb};
use serde_json::{json, Value};

fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "kubectl not found: these tests drive the real kubectl. Install it (Debian: \
             `apt-get install kubectl` from the Google Cloud SDK repository, as on our \
             machines) or point $KUBECTL at one."
        )
    })
}

/// A kubectl with its kubeconfig and discovery cache in a temporary directory.
struct Kubectl {
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl Kubectl {
    fn new(api: &FakeApi) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        api.write_kubeconfig(dir.path().join("kubeconfig")).unwrap();
        Kubectl {
            dir,
            binary: kubectl_binary(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.binary.display()))
    }

    /// Runs kubectl, which must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, which must fail; returns its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path: &Path = self.dir.path();
        std::fs::write(path.join(name), text).unwrap();
        name.to_string()
    }
}

const MANIFEST: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
- addresses: [\"10.244.1.5\"]
  conditions: {ready: true}
  nodeName: node-a
";

/// Splits `kubectl get` output into rows of whitespace-separated cells.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn kubectl_get_apply_delete() {
    let api = FakeApi::start();
    let k = Kubectl::new(&api);

    let out = k.run(&["get", "svc", "-A"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found"
    );

    let namespaces = rows(&k.ok(&["get", "namespaces"]));
    assert_eq!(namespaces[0], ["NAME", "STATUS", "AGE"]);
    assert_eq!(namespaces[1][..2], ["default", "Active"]);

    // Client-side apply, with kubectl's default (strict) validation done by the server.
    let file = k.write("web.yaml", MANIFEST);
    let applied = k.ok(&["apply", "-f", &file]);
    assert_eq!(
        applied,
        "service/web created\nendpointslice.discovery.k8s.io/web-abc12 created\n"
    );

    let services = rows(&k.ok(&["get", "svc", "-A"]));
    assert_eq!(
        services[0],
        [
            "NAMESPACE",
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(
        services[1][..6],
        [
            "default",
            "web",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "80/TCP"
        ]
    );
    let slices = rows(&k.ok(&["get", "endpointslices", "-A"]));
    assert_eq!(
        slices[0],
        [
            "NAMESPACE",
            "NAME",
            "ADDRESSTYPE",
            "PORTS",
            "ENDPOINTS",
            "AGE"
        ]
    );
    assert_eq!(
        slices[1][..5],
        ["default", "web-abc12", "IPv4", "8080", "10.244.1.5"]
    );

    let svc: Value = serde_json::from_str(&k.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}])
    );
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    let rv: u64 = svc["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > 0 && rv <= api.resource_version());
    assert!(
        svc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // A changed file is patched (strategic merge patch); the same file again changes nothing.
    let changed = k.write(
        "web2.yaml",
        &MANIFEST
            .replace("targetPort: 8080", "targetPort: 8081")
            .replace("[\"10.244.1.5\"]", "[\"10.244.1.5\", \"10.244.2.7\"]"),
    );
    assert_eq!(
        k.ok(&["apply", "-f", &changed]),
        "service/web configured\nendpointslice.discovery.k8s.io/web-abc12 configured\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", &changed]),
        "service/web unchanged\nendpointslice.discovery.k8s.io/web-abc12 unchanged\n"
    );
    assert_eq!(
        api.get("svc", "default", "web").unwrap()["spec"]["ports"][0]["targetPort"],
        8081
    );
    assert_eq!(
        api.get("endpointslices", "default", "web-abc12").unwrap()["endpoints"][0]["addresses"],
        json!(["10.244.1.5", "10.244.2.7"])
    );
    assert!(api.count(Verb::Patch, "services") >= 1);

    // An unknown field is refused by the server's strict validation.
    let typo = k.write(
        "typo.yaml",
        &MANIFEST.replace("targetPort: 8080", "targetPrt: 8080"),
    );
    let err = k.fails(&["apply", "-f", &typo]);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.ports[0].targetPrt\""),
        "{err}"
    );

    // Server-side apply.
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", &file]),
        "service/web serverside-applied\nendpointslice.discovery.k8s.io/web-abc12 serverside-applied\n"
    );
    assert_eq!(
        api.get("svc", "default", "web").unwrap()["spec"]["ports"][0]["targetPort"],
        8080
    );

    assert_eq!(k.ok(&["delete", "svc", "web"]), "service \"web\" deleted\n");
    let err = k.fails(&["get", "svc", "web"]);
    assert!(
        err.contains("Error from server (NotFound): services \"web\" not found"),
        "{err}"
    );
    assert!(rows(&k.ok(&["get", "endpointslices", "-A"]))[1][1] == "web-abc12");
}

#[test]
fn kubectl_get_nodes_and_label_selectors() {
    let api = FakeApi::start();
    api.apply(&json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-a", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
            "nodeInfo": {
                "kubeletVersion": "v1.33.1", "architecture": "amd64", "bootID": "",
                "containerRuntimeVersion": "", "kernelVersion": "", "kubeProxyVersion": "",
                "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""
            }
        }
    }))
    .unwrap();
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}}))
        .unwrap();
    let k = Kubectl::new(&api);
    let nodes = rows(&k.ok(&["get", "nodes", "-o", "wide"]));
    assert_eq!(
        nodes[0],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    );
    assert_eq!(nodes[1][..3], ["node-a", "Ready", "control-plane"]);
    assert_eq!(nodes[1][4..], ["v1.33.1", "192.0.2.10"]);
    assert_eq!(nodes[2][..3], ["node-b", "Unknown", "<none>"]);

    let selected = rows(&k.ok(&[
        "get",
        "nodes",
        "-l",
        "node-role.kubernetes.io/control-plane",
    ]));
    assert_eq!(selected.len(), 2);
    let names = k.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(names, "node/node-a\nnode/node-b\n");
}

#[test]
fn kubectl_get_watch_prints_changes_as_they_happen() {
    let api = FakeApi::start();
    let k = Kubectl::new(&api);
    let mut child = k
        .command(&["get", "svc", "--watch", "--output-watch-events", "-A"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(3)
            .collect::<Vec<String>>()
    });
    assert!(
        api.wait_for(Duration::from_secs(20), |a| a.open_watches() == 1),
        "kubectl never opened its watch"
    );
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "late", "namespace": "default"},
        "spec": {"ports": [{"port": 53, "protocol": "UDP"}]},
    });
    api.apply(&svc).unwrap();
    api.delete("svc", "default", "late").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !lines.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = rows(&lines.join().unwrap().join("\n"));
    assert_eq!(lines[0][..3], ["EVENT", "NAMESPACE", "NAME"]);
    assert_eq!(lines[1][..4], ["ADDED", "default", "late", "ClusterIP"]);
    assert_eq!(lines[1][6], "53/UDP");
    assert_eq!(lines[2][..3], ["DELETED", "default", "late"]);
}

#[test]
fn kubectl_1_32_works_too() {
    let api = FakeApi::start_with(Options {
        kubernetes_version: (1, 32),
        ..Options::default()
    });
    let k = Kubectl::new(&api);
    let version: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(version["serverVersion"]["minor"], "32");
    // The dispatcher picked the matching release (the real kubectl 1.32, which our task names).
    if std::env::var_os("KUBECTL").is_none() {
        let client = version["clientVersion"]["gitVersion"].as_str().unwrap();
        assert!(client.starts_with("v1.32."), "kubectl {client}");
    }
    let file = k.write("web.yaml", MANIFEST);
    assert_eq!(
        k.ok(&["apply", "-f", &file]),
        "service/web created\nendpointslice.discovery.k8s.io/web-abc12 created\n"
    );
    let services = rows(&k.ok(&["get", "svc"]));
    assert_eq!(services[1][..2], ["web", "ClusterIP"]);
    assert_eq!(
        k.ok(&["delete", "-f", &file]),
        "service \"web\" deleted\nendpointslice.discovery.k8s.io \"web-abc12\" deleted\n"
    );
    assert!(api.get("svc", "default", "web").is_none());
}
