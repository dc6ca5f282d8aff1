//! The control thread of a live `nodegate run` (AF_XDP on a veth pair into a fresh namespace)
//! keeping the tables in step while traffic flows: a Service whose manifest appears while
//! nodegate runs is served within seconds, a broken manifest is logged with its file and field
//! while the Services keep working, a removed Service stops; a TCP transfer keeps its endpoint
//! while endpoints are added and removed; and an API server that cannot be reached (a
//! kubeconfig pointing at a closed port) does not keep nodegate from forwarding. Needs root,
//! iproute2 and python3.

mod netns;
use netns::*;

use std::process::Command;
use std::time::{Duration, Instant};

fn topology(tag: &str) -> (Netns, Link, String) {
    veth_pair("ngs", "ngt", tag)
}

/// `nodegate.yaml` for one af_xdp worker on `host`, `extra` appended under `kubernetes:`, and a
/// manifests directory holding `manifests`.
fn write_config(dir: &std::path::Path, host: &str, kubernetes: &str, manifests: &[(&str, &str)]) {
    std::fs::write(
        dir.join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: 1\nports:\n  - {{name: eth0, driver: af_xdp, interface: {host}, addresses: [\"192.0.2.1/24\"]}}\nkubernetes:\n  manifests: manifests\n{kubernetes}"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    for (name, text) in manifests {
        write_manifest(dir, name, text);
    }
}

/// Replaces a manifest by rename, as editors and ConfigMap volumes do.
fn write_manifest(dir: &std::path::Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("manifests").join(name)).unwrap();
}

/// Retries [`tcp_hello`] until it answers; returns how long it took (panics after 15 s).
fn tcp_hello_within(ns: &str) -> Duration {
    let start = Instant::now();
    loop {
        match tcp_hello(ns) {
            Ok(_) => return start.elapsed(),
            Err(e) if start.elapsed() > Duration::from_secs(15) => {
                panic!("the new Service never answered: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn manifests_directory_changes_reach_the_data_plane() {
    let (ns, _link, host) = topology("m");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, &host, "", &[("udp.yaml", UDP_SERVICE)]);
    let run = Running::start(d);
    ping(&ns.0, "192.0.2.1");
    udp_request(&ns.0);
    let _server = TcpServer::start(&ns.0);
    assert!(tcp_hello(&ns.0).is_err(), "no TCP Service yet");

    // A second Service appears.
    let mark = run.log_after_ready().len();
    write_manifest(d, "tcp.yaml", &tcp_service(&["192.0.2.2"]));
    let took = tcp_hello_within(&ns.0);
    assert!(took < Duration::from_secs(5), "served after {took:?}");
    run.wait_for_line(
        mark,
        &["tables published", "services=2"],
        Duration::from_secs(1),
    )
    .expect("the rebuild is logged");

    // A broken manifest: logged with file and field; the tables stay and keep forwarding.
    let mark = run.log_after_ready().len();
    write_manifest(
        d,
        "udp.yaml",
        &UDP_SERVICE.replace("port: 5353", "port: 70000"),
    );
    let error = run
        .wait_for_line(
            mark,
            &[
                "udp.yaml",
                "document 1",
                "(Service default/echo): spec.ports[0].port",
                "70000 is out of range",
            ],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no error logged:\n{}", run.log_after_ready()));
    assert!(error.contains("the last good manifests stay"), "{error}");
    udp_request(&ns.0);
    tcp_hello(&ns.0).expect("the TCP Service keeps working");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !run.log_after_ready()[mark..].contains("tables published"),
        "a bad manifest must not rebuild:\n{}",
        run.log_after_ready()
    );

    // Fixed, and the TCP Service removed: it stops, the UDP one goes on.
    let mark = run.log_after_ready().len();
    write_manifest(d, "udp.yaml", UDP_SERVICE);
    std::fs::remove_file(d.join("manifests/tcp.yaml")).unwrap();
    run.wait_for_line(
        mark,
        &["tables published", "services=1", "frontends=1"],
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("no rebuild:\n{}", run.log_after_ready()));
    let e = tcp_hello(&ns.0).expect_err("the removed Service must not answer");
    assert!(e.contains("timed out") || e.contains("refused"), "{e}");
    udp_request(&ns.0);

    let stats = run.stop();
    assert_forwarded_cleanly(&stats);
    assert!(
        stats["tables"]["generation"].as_u64().unwrap() >= 2,
        "{stats}"
    );
}

/// A long transfer through the ClusterIP while the Service's endpoints change under it: an
/// endpoint is added (new connections spread over both), then the transfer's own endpoint is
/// removed (new connections can only go to the other). Its flow keeps the endpoint it was given
/// and the transfer completes intact; as with kube-proxy, removing an endpoint does not cut the
/// TCP connections it has.
#[test]
fn established_transfer_keeps_its_endpoint_while_endpoints_change() {
    let (ns, _link, host) = topology("e");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, &host, "", &[("tcp.yaml", &tcp_service(&["192.0.2.2"]))]);
    let run = Running::start(d);
    let _server = TcpServer::start(&ns.0);
    assert_eq!(tcp_hello(&ns.0).as_deref(), Ok("192.0.2.2"));

    // 32 MiB at about 3 MiB/s: the transfer runs for about ten seconds.
    let mut transfer = SlowTransfer::start(&ns.0, 32 * 1024 * 1024);
    std::thread::sleep(Duration::from_millis(500));

    // An endpoint is added.
    let mark = run.log_after_ready().len();
    write_manifest(d, "tcp.yaml", &tcp_service(&["192.0.2.2", "192.0.2.3"]));
    run.wait_for_line(mark, &["tables published"], Duration::from_secs(4))
        .expect("the new endpoint is published");
    nodeport_reaches(&ns.0, &["192.0.2.2", "192.0.2.3"]);
    assert!(
        transfer.running(),
        "the transfer must still run when the tables change"
    );

    // The transfer's endpoint is removed.
    let mark = run.log_after_ready().len();
    write_manifest(d, "tcp.yaml", &tcp_service(&["192.0.2.3"]));
    run.wait_for_line(mark, &["tables published"], Duration::from_secs(4))
        .expect("the removal is published");
    for _ in 0..5 {
        assert_eq!(nodeport_hello(&ns.0).as_deref(), Ok("192.0.2.3"));
    }
    assert!(
        transfer.running(),
        "the transfer must still run when its endpoint is removed"
    );

    transfer.assert_complete();
    let stats = run.stop();
    for reason in ["tx-full", "no-buffer", "ct-full", "l4-malformed"] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
}

/// The API server is configured (`--kubeconfig`) but nothing listens: nodegate starts with the
/// manifests, forwards, and keeps retrying with backoff, saying so.
#[test]
fn unreachable_api_server_at_start_does_not_stop_forwarding() {
    let (ns, _link, host) = topology("k");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, &host, "", &[("udp.yaml", UDP_SERVICE)]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::fs::write(
        d.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let run = Running::start_with(d, None, &["--kubeconfig", "kubeconfig"]);
    assert!(
        run.log
            .contains(&format!("server=http://127.0.0.1:{port}/")),
        "{}",
        run.log
    );
    ping(&ns.0, "192.0.2.1");
    udp_request(&ns.0);
    for resource in ["Service", "EndpointSlice", "Node"] {
        let retry = run
            .wait_for_line(
                0,
                &[
                    "API server watch failed",
                    "Connection refused",
                    "retrying with backoff",
                    &format!("resource={resource}"),
                    "attempt=2",
                ],
                Duration::from_secs(10),
            )
            .unwrap_or_else(|| {
                panic!(
                    "no retry logged for {resource}:\n{}{}",
                    run.log,
                    run.log_after_ready()
                )
            });
        assert!(retry.contains("WARN"), "{retry}");
    }
    udp_request(&ns.0);
    let stats = run.stop();
    assert_forwarded_cleanly(&stats);
}

/// A kubeconfig that cannot be read is a configuration error: nothing starts, not even the
/// ports (the interface here does not exist, and that is not what is reported).
#[test]
fn unreadable_kubeconfig_is_rejected_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "ngnothere0", "  kubeconfig: missing-kubeconfig\n", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["run", "--config", "nodegate.yaml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: nodegate.yaml: kubernetes.kubeconfig: missing-kubeconfig:"),
        "{err}"
    );
    // The same file given with --kubeconfig is named as such.
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args([
            "run",
            "--config",
            "nodegate.yaml",
            "--kubeconfig",
            "nodegate.yaml",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: nodegate.yaml: (kubeconfig from --kubeconfig):"),
        "{err}"
    );
}
