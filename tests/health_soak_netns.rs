//! Health that never lies, on a live run left alone past its health timeout: `nodegate run` on
//! an AF_XDP port in a "node" namespace with a manifests directory and `health.timeout_secs: 2`.
//! Idle, after no-op changes (files touched, rewritten with the same content), after a broken
//! manifest and its fix, after a real change, `/healthz`, `/livez` and a Local LoadBalancer's
//! `healthCheckNodePort` keep answering healthy; a worker that stops polling turns them 503
//! with nothing pending; a worker that panics stops the run in order (XDP program detached)
//! with exit status 70, for its supervisor to restart it.
//!
//! Each case runs well under a minute. Needs root, iproute2, ethtool and curl; fails with the
//! reason when one is missing, never skips. Namespaces are removed on drop.

mod netns;
use netns::*;
use std::time::{Duration, Instant};

const NODE_IP: &str = "192.0.2.1";
const CLIENT_IP: &str = "192.0.2.2";
const TIMEOUT_SECS: u64 = 2;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.50
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{port: 80, protocol: TCP, targetPort: 8080, nodePort: 30050}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
  - {addresses: ["10.244.1.5"], conditions: {ready: true}, nodeName: node-a}
"#;

struct Lab {
    topo: NodeAndClient,
    dir: tempfile::TempDir,
}

fn lab(prefix: &str, workers: usize) -> Lab {
    preflight(&["ip", "ethtool", "curl"]);
    let topo = node_and_client(prefix, &format!("{CLIENT_IP}/24"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"{NODE_IP}\"]}}\nworkers: {workers}\nports:\n  - {{name: eth0, driver: af_xdp, interface: {}, mac: \"02:00:00:00:00:01\", addresses: [\"{NODE_IP}/24\"]}}\nkubernetes: {{manifests: manifests, min_sync_ms: 100}}\nhealth: {{timeout_secs: {TIMEOUT_SECS}}}\n",
            topo.wire
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/services.yaml"), SERVICES).unwrap();
    Lab { topo, dir }
}

/// `curl` from `ns`: (status code, body).
fn get(ns: &str, url: &str) -> (u16, String) {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
        url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Every health answer a load balancer or a liveness probe reads says healthy.
fn assert_healthy(lab: &Lab, when: &str) {
    let (node, client) = (&lab.topo.node.0, &lab.topo.client.0);
    for path in ["healthz", "livez"] {
        let (code, body) = get(node, &format!("http://127.0.0.1:10256/{path}"));
        assert_eq!(code, 200, "/{path} {when}: {body}");
        assert!(body.contains("\"healthy\":true"), "/{path} {when}: {body}");
    }
    // Through the data plane, as the cloud load balancer asks it.
    let (code, body) = get(client, &format!("http://{NODE_IP}:32000/healthz"));
    assert_eq!(code, 200, "healthCheckNodePort {when}: {body}");
    assert!(
        body.contains("\"serviceProxyHealthy\": true"),
        "healthCheckNodePort {when}: {body}"
    );
}

/// Waits past the health timeout (the rule's horizon), then checks.
fn past_timeout_still_healthy(lab: &Lab, when: &str) {
    std::thread::sleep(Duration::from_millis(TIMEOUT_SECS * 1000 + 1500));
    assert_healthy(lab, when);
}

#[test]
fn health_stays_true_idle_after_no_op_changes_and_after_a_fixed_manifest() {
    let lab = lab("ngsk", 2);
    let run = Running::start_in(lab.dir.path(), Some(&lab.topo.node.0));
    assert_healthy(&lab, "at start");
    // Idle, three times the timeout.
    for round in 0..3 {
        past_timeout_still_healthy(&lab, &format!("idle, round {round}"));
    }
    let file = lab.dir.path().join("manifests/services.yaml");
    // No-op changes: the same bytes written again, a new empty file, a comment.
    std::fs::write(&file, SERVICES).unwrap();
    std::fs::write(lab.dir.path().join("manifests/empty.yaml"), "").unwrap();
    std::fs::write(&file, format!("# edited\n{SERVICES}")).unwrap();
    past_timeout_still_healthy(&lab, "after no-op changes");
    // A broken manifest: logged, the last good tables stay, nothing queued.
    let mark = run.log_after_ready().len();
    std::fs::write(&file, SERVICES.replace("port: 80,", "port: eighty,")).unwrap();
    run.wait_for_line(mark, &["last good manifests stay"], Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "the broken file was not reported:\n{}",
                run.log_after_ready()
            )
        });
    past_timeout_still_healthy(&lab, "with a broken manifest");
    // Fixed as it was: nothing to apply.
    std::fs::write(&file, SERVICES).unwrap();
    past_timeout_still_healthy(&lab, "after the fix");
    // A real change: published and applied by every worker well within the timeout.
    let mark = run.log_after_ready().len();
    std::fs::write(&file, SERVICES.replace("10.244.1.5", "10.244.1.6")).unwrap();
    run.wait_for_line(mark, &["tables published"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the change was not published:\n{}", run.log_after_ready()));
    past_timeout_still_healthy(&lab, "after a real change");
    let log = run.log_after_ready();
    assert!(!log.contains("stopped polling"), "{log}");
    run.stop();
}

/// The run of `lab` in its node namespace with `NODEGATE_TEST_WORKER_FAULT=fault`.
fn start_with_fault(lab: &Lab, fault: &str) -> Running {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &lab.topo.node.0])
        .arg(env!("CARGO_BIN_EXE_nodegate"))
        .args([
            "run",
            "--config",
            "nodegate.yaml",
            "--stats-json",
            "stats.json",
        ])
        .env("NODEGATE_TEST_WORKER_FAULT", fault);
    Running::start_command(lab.dir.path(), cmd)
}

#[test]
fn a_worker_that_stops_polling_turns_health_503_with_nothing_pending() {
    let lab = lab("ngst", 2);
    let run = start_with_fault(&lab, "1:stall:1500");
    assert_healthy(&lab, "before the stall");
    let stalled = Instant::now();
    let node = &lab.topo.node.0;
    loop {
        let (code, body) = get(node, "http://127.0.0.1:10256/livez");
        if code == 503 {
            assert!(body.contains("\"healthy\":false"), "{body}");
            break;
        }
        assert!(
            stalled.elapsed() < Duration::from_secs(15),
            "still {code} 15 s after worker 1 stalled: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _) = get(node, "http://127.0.0.1:10256/healthz");
    assert_eq!(code, 503);
    let line = run
        .wait_for_line(0, &["workers stopped polling"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("not logged:\n{}", run.log_after_ready()));
    assert!(line.contains("workers=1 "), "{line}");
}

#[test]
fn a_worker_that_panics_stops_the_run_in_order_with_status_70() {
    let lab = lab("ngpw", 2);
    let mut run = start_with_fault(&lab, "0:panic:1000");
    let status = run.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(70), "{}", run.log_after_ready());
    let log = run.log_after_ready();
    for needle in [
        "injected a panic",
        "a worker thread died",
        "worker 0 stopped: panicked",
        "supervisor restarts",
    ] {
        assert!(log.contains(needle), "no `{needle}` in:\n{log}");
    }
    // Nothing left on the interface: the next start (a supervisor's restart) finds it clean.
    let link = sh(&["ip", "-n", &lab.topo.node.0, "link", "show", &lab.topo.wire]);
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("xdp"), "XDP program left attached:\n{link}");
    let again = Running::start_in(lab.dir.path(), Some(&lab.topo.node.0));
    assert_healthy(&lab, "after the restart");
    again.stop();
}
