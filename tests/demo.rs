//! `nodegate demo` end to end: the "Using Source IP" experiments through two nodegate processes
//! on veth interfaces in network namespaces (once on `af_xdp`, once on `af_packet`), with real
//! curl and a real HTTP backend, and the Local LoadBalancer's health check on both nodes. Needs root, iproute2, ethtool, curl and python3 (CI installs
//! them); without them it fails with the reason.

use std::process::Command;

fn demo(driver: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["demo", "--driver", driver])
        .env("NO_COLOR", "1")
        .output()
        .expect("run nodegate demo");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo on {driver} failed:\n{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |what: &str, via: &str| {
        table
            .lines()
            .find(|l| l.starts_with(what) && l.contains(via) && !l.contains("localEndpoints"))
            .unwrap_or_else(|| panic!("no row {what} / {via} in\n{table}"))
            .to_string()
    };
    assert!(row("ClusterIP", "node-a").contains("10.2.0.9"));
    assert!(row("NodePort, Cluster", "node-a").contains(" 10.0.0.1 "));
    assert!(row("NodePort, Cluster", "node-b").contains(" 10.1.0.1 "));
    assert!(row("NodePort, Local", "node-a").contains("(no answer)"));
    assert!(row("NodePort, Local", "node-b").contains("10.0.0.100"));
    assert!(row("LoadBalancer, Cluster", "node-a").contains(" 10.0.0.1 "));
    assert!(row("LoadBalancer, Local", "node-a").contains("(no answer)"));
    assert!(row("LoadBalancer, Local", "node-b").contains("10.0.0.100"));
    // What a load balancer's health check sees on the Local LoadBalancer's healthCheckNodePort.
    let health = |via: &str| {
        table
            .lines()
            .find(|l| {
                l.starts_with("LoadBalancer, Local")
                    && l.contains(via)
                    && l.contains("localEndpoints")
            })
            .unwrap_or_else(|| panic!("no health check row through {via} in\n{table}"))
            .to_string()
    };
    assert!(
        health("node-a").contains(" 503 localEndpoints=0 "),
        "{table}"
    );
    assert!(
        health("node-b").contains(" 200 localEndpoints=1 "),
        "{table}"
    );
    assert_eq!(table.matches(" ok").count(), 11, "{table}");
    assert!(!table.contains("DIFFERENT"), "{table}");
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("ngdemo"),
        "the demo left namespaces behind"
    );
}

/// One test for both drivers: the two runs use the same namespace names, so they must not
/// overlap.
#[test]
fn demo_reproduces_the_source_ip_page_on_af_xdp_and_af_packet() {
    demo("af_xdp");
    demo("af_packet");
}

#[test]
fn demo_refuses_a_driver_it_cannot_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["demo", "--driver", "pcap"])
        .output()
        .expect("run nodegate demo");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`af_xdp` or `af_packet`"));
}

#[test]
fn demo_names_a_kubeconfig_it_cannot_read() {
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["demo", "--kubeconfig", "/nonexistent/ngdemo.kubeconfig"])
        .output()
        .expect("run nodegate demo");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubeconfig /nonexistent/ngdemo.kubeconfig:") && !err.contains("root"),
        "{err}"
    );
}
