//! `nodegate demo --kubeconfig`: the "Using Source IP" experiments with the nodes' `nodegate
//! run` watching an API server (the fake one) instead of a manifests directory. The demo's
//! objects go into the API server through `FakeApi::apply`, and one of them through the real
//! `kubectl apply -f`, the path a user takes. The nodes reach the API server on 127.0.0.1 of
//! the root namespace through the demo's management links and relay.
//!
//! Needs root, iproute2, ethtool, curl, python3 and kubectl (`$KUBECTL` or `PATH`); without
//! them it fails with the reason.
//!
//! A second phase keeps the lab up through `demo::Lab` and moves the Local LoadBalancer's
//! endpoint to node-a in the API server: the health checks of both nodes follow.

use std::path::PathBuf;
use std::process::Command;

use fakeapi::{FakeApi, Verb};

fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("kubectl"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!("kubectl not found: this test applies an object with the real kubectl; install it or set $KUBECTL")
        })
}

fn preflight() {
    // The demo needs CAP_NET_ADMIN; `id -u` says whether we are root.
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test builds network namespaces and veth pairs: run it as root"
    );
    for tool in ["ip", "ethtool", "curl", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "this test needs `{tool}` on PATH");
    }
}

#[test]
fn demo_driven_by_the_api_server_reproduces_the_source_ip_page() {
    preflight();
    let kubectl = kubectl_binary();
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();

    // The LoadBalancer with policy Local goes in with `kubectl apply -f`, the rest directly.
    let objects = nodegate::demo::objects();
    assert_eq!(objects.len(), 10, "five Services and five EndpointSlices");
    let (by_kubectl, rest): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|o| o["kind"] == "Service" && o["metadata"]["name"] == "loadbalancer-local");
    let file = dir.path().join("loadbalancer-local.json");
    std::fs::write(&file, serde_json::to_string_pretty(&by_kubectl[0]).unwrap()).unwrap();
    let out = Command::new(&kubectl)
        .arg("apply")
        .arg("-f")
        .arg(&file)
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBECACHEDIR", dir.path().join("cache"))
        .env("HOME", dir.path())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kubectl.display()));
    assert!(
        out.status.success(),
        "kubectl apply failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = api
        .get("services", "default", "loadbalancer-local")
        .expect("kubectl created the Service");
    assert_eq!(stored["spec"]["healthCheckNodePort"], 32101);
    assert_eq!(
        stored["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.201"
    );
    for o in &rest {
        api.apply(o).unwrap_or_else(|e| panic!("apply {o}: {e:?}"));
    }

    api.clear_requests();
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["demo", "--driver", "af_xdp", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nodegate demo");
    let table = String::from_utf8_lossy(&out.stdout);
    println!("{table}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo with the API server failed:\n{table}\n{stderr}"
    );
    // Both nodes listed and watched the API server (they had no manifests at all).
    for resource in ["services", "endpointslices", "nodes"] {
        assert!(
            api.count(Verb::List, resource) >= 2,
            "two nodes should have listed {resource}: {:?}",
            api.requests()
        );
    }

    let row = |what: &str, via: &str, health: bool| {
        table
            .lines()
            .find(|l| {
                l.starts_with(what) && l.contains(via) && l.contains("localEndpoints") == health
            })
            .unwrap_or_else(|| panic!("no row {what} / {via} in\n{table}"))
            .to_string()
    };
    assert!(row("ClusterIP", "node-a", false).contains("10.2.0.9"));
    assert!(row("NodePort, Cluster", "node-a", false).contains(" 10.0.0.1 "));
    assert!(row("NodePort, Cluster", "node-b", false).contains(" 10.1.0.1 "));
    assert!(row("NodePort, Local", "node-a", false).contains("(no answer)"));
    assert!(row("NodePort, Local", "node-b", false).contains("10.0.0.100"));
    assert!(row("LoadBalancer, Cluster", "node-a", false).contains(" 10.0.0.1 "));
    assert!(row("LoadBalancer, Cluster", "node-b", false).contains(" 10.1.0.1 "));
    assert!(row("LoadBalancer, Local", "node-a", false).contains("(no answer)"));
    assert!(row("LoadBalancer, Local", "node-b", false).contains("10.0.0.100"));
    assert!(row("LoadBalancer, Local", "node-a", true).contains(" 503 localEndpoints=0 "));
    assert!(row("LoadBalancer, Local", "node-b", true).contains(" 200 localEndpoints=1 "));
    assert_eq!(table.matches(" ok").count(), 11, "{table}");
    assert!(!table.contains("DIFFERENT"), "{table}");

    // Second phase, with the lab kept up (library API): the API server moves the Local
    // LoadBalancer's endpoint to node-a (the EndpointSlice's nodeName), and the health checks
    // follow within seconds: node-a passes with one local endpoint, node-b fails with none.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_nodegate"));
    let source = nodegate::demo::Source::Api(kubeconfig.clone());
    let lab = nodegate::demo::Lab::start(exe, "af_xdp", &source).expect("start the lab");
    let answers = |lab: &nodegate::demo::Lab| -> Vec<(String, Option<String>)> {
        lab.health_checks()
            .expect("health checks")
            .into_iter()
            .map(|r| (r.via.to_string(), r.seen))
            .collect()
    };
    let pair = |a: &str, b: &str| {
        vec![
            ("node-a".to_string(), Some(a.to_string())),
            ("node-b".to_string(), Some(b.to_string())),
        ]
    };
    assert_eq!(
        answers(&lab),
        pair("503 localEndpoints=0", "200 localEndpoints=1")
    );
    let mut slice = api
        .get("endpointslices", "default", "loadbalancer-local-x")
        .expect("the Local LoadBalancer's EndpointSlice");
    slice["endpoints"][0]["nodeName"] = "node-a".into();
    api.apply(&slice).expect("move the endpoint to node-a");
    let moved = std::time::Instant::now();
    let want = pair("200 localEndpoints=1", "503 localEndpoints=0");
    let mut seen = answers(&lab);
    while seen != want && moved.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        seen = answers(&lab);
    }
    assert_eq!(
        seen,
        want,
        "health checks {:?} after the endpoint moved to node-a",
        moved.elapsed()
    );
    println!(
        "endpoint moved to node-a: health checks followed within {:?}",
        moved.elapsed()
    );
    drop(lab);

    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("ngdemo"),
        "the demo left namespaces behind"
    );
    let link = Command::new("ip")
        .args(["link", "show", "ngdemo-api"])
        .output()
        .unwrap();
    assert!(!link.status.success(), "the demo left its bridge behind");
}
