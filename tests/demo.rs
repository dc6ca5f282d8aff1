//! `nodegate demo` end to end: the "Using Source IP" experiments through two nodegate processes
//! on veth interfaces in network namespaces (once on `af_xdp`, once on `af_packet`), with real
//! curl and a real HTTP backend. Needs root, iproute2, ethtool, curl and python3 (CI installs
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
            .find(|l| l.starts_with(what) && l.contains(via))
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
    assert_eq!(table.matches(" ok").count(), 9, "{table}");
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
