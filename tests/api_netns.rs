//! `nodegate run` kept in step by a real list/watch API server (the `fakeapi` crate, on
//! 127.0.0.1) while traffic flows through it: Services and EndpointSlices created and deleted
//! through the API are served and withdrawn within seconds; the API server going away does not
//! stop forwarding, the watchers back off with growing delays and the tables converge on what
//! changed meanwhile when it returns (a relist, as its watch cache was compacted); a `410 Gone`
//! after compaction makes nodegate relist and converge; a burst of 10,000 Service updates costs a
//! few rebuilds; a long TCP transfer survives its own endpoint being marked not ready and
//! removed; a dual-stack Service is served on both families; and the in-cluster and `infer`
//! configurations reach the API server over HTTPS (in-cluster in a private mount namespace with
//! a service account's token and CA; `openssl` and `socat` make and terminate the TLS).
//!
//! Layout: nodegate runs in the test's (root) network namespace, so that it reaches the fake API
//! server on loopback, with an AF_XDP port on a veth whose peer (192.0.2.2 and 192.0.2.3, the
//! endpoints and the clients) is in a fresh namespace, removed on drop. The tests of this file
//! run one at a time (their timings, backoff intervals and rebuild counts, should not depend on
//! the others' load; they would also share the health and metrics ports). Needs root,
//! iproute2, ethtool and python3; fails with the reason otherwise.

mod netns;
use netns::*;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fakeapi::{FakeApi, Options, Verb};
use serde_json::{json, Value};

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the other tests of this file off until the caller is done (a failed test does not
/// block the others).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn topology(tag: &str) -> (Netns, Link, String) {
    preflight(&["ip", "ping", "ethtool", "python3"]);
    veth_pair("nga", "ngb", tag)
}

/// The runs' `health.timeout_secs`: short, so that an outage outlasts it.
const HEALTH_TIMEOUT_SECS: u64 = 2;

/// `/healthz` and `/livez` of the run (in this namespace) answer 200 and say healthy.
fn assert_proxy_healthy(when: &str) {
    for path in ["healthz", "livez"] {
        let out = sh(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-w",
            " %{http_code}",
            &format!("http://127.0.0.1:10256/{path}"),
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            text.ends_with(" 200") && text.contains("\"healthy\":true"),
            "/{path} {when}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Writes `nodegate.yaml` (`workers` af_xdp workers on `host`, no manifests) and a kubeconfig
/// for `api` in `dir`, and starts `nodegate run --kubeconfig kubeconfig`.
fn start(dir: &std::path::Path, api: &FakeApi, host: &str, workers: usize) -> Running {
    std::fs::write(
        dir.join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: {workers}\nports:\n  - {{name: eth0, driver: af_xdp, interface: {host}, addresses: [\"192.0.2.1/24\"]}}\nhealth: {{timeout_secs: {HEALTH_TIMEOUT_SECS}}}\n"
        ),
    )
    .unwrap();
    api.write_kubeconfig(dir.join("kubeconfig")).unwrap();
    let run = Running::start_with(dir, None, &["--kubeconfig", "kubeconfig"]);
    assert!(
        run.log.contains(&format!("server={}/", api.url())),
        "{}",
        run.log
    );
    run
}

/// Waits for both watchers that make the API server's objects count to have listed.
fn wait_listed(run: &Running) {
    for resource in ["Service", "EndpointSlice"] {
        let needle = format!("resource={resource}");
        // The list may land before the `ready` line, in the start-up log.
        if run
            .log
            .lines()
            .any(|l| l.contains("API server listed") && l.contains(&needle))
        {
            continue;
        }
        run.wait_for_line(
            0,
            &["API server listed", &format!("resource={resource}")],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| {
            panic!(
                "{resource}s were never listed:\n{}{}",
                run.log,
                run.log_after_ready()
            )
        });
    }
}

/// Creates or replaces every object of a multi-document YAML text through the API.
fn apply_yaml(api: &FakeApi, yaml: &str) {
    for doc in yaml.split("\n---\n") {
        let object: Value = serde_yaml::from_str(doc).unwrap();
        api.apply(&object)
            .unwrap_or_else(|e| panic!("apply {object}: {e:?}"));
    }
}

/// [`UDP_SERVICE`] with its Service port changed.
fn udp_service_on(port: u16) -> String {
    UDP_SERVICE.replace("port: 5353", &format!("port: {port}"))
}

/// Retries `attempt` until it succeeds; returns how long that took. Panics after `timeout` with
/// the last error and nodegate's log.
fn eventually(
    run: &Running,
    timeout: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Result<(), String>,
) -> Duration {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > timeout => panic!(
                "{what}: not within {timeout:?}: {e}\nnodegate's log:\n{}",
                run.log_after_ready()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The time of day, in seconds, a log line starts with (`2026-01-01T12:34:56.789012Z ...`;
/// colour codes, if any, skipped).
fn log_time(line: &str) -> Option<f64> {
    let t = line.find('T')?;
    let hms: String = line[t + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':' || *c == '.')
        .collect();
    let mut parts = hms.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The `attempt=N` of a log line.
fn attempt_of(line: &str) -> Option<u64> {
    let at = line.find("attempt=")? + "attempt=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// How many `tables published` lines nodegate logged from byte `mark` of its later log, and
/// the last one.
fn rebuilds_since(run: &Running, mark: usize) -> (usize, Option<String>) {
    let log = run.log_after_ready();
    let published: Vec<&str> = log[mark..]
        .lines()
        .filter(|l| l.contains("tables published"))
        .collect();
    (published.len(), published.last().map(|l| l.to_string()))
}

/// Services and EndpointSlices created through the API server are served within seconds, with
/// no manifests at all; a deleted Service stops answering.
#[test]
fn services_created_through_the_api_are_served_and_deleted_ones_stop() {
    let _serial = one_at_a_time();
    let (ns, _link, host) = topology("d");
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path(), &api, &host, 2);
    wait_listed(&run);
    ping(&ns.0, "192.0.2.1");
    assert!(
        udp_request_at(&ns.0, "10.96.0.10", 5353).is_err(),
        "no Service yet"
    );

    apply_yaml(&api, UDP_SERVICE);
    apply_yaml(&api, BULK_SERVICE);
    let took = eventually(&run, Duration::from_secs(15), "the UDP Service", || {
        udp_request_at(&ns.0, "10.96.0.10", 5353)
    });
    assert!(took < Duration::from_secs(5), "served after {took:?}");
    run.wait_for_line(
        0,
        &["tables published", "services=2", "endpoint_slices=2"],
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("no rebuild with both:\n{}", run.log_after_ready()));
    bulk_transfer(&ns.0);

    // The UDP Service is deleted (its EndpointSlice stays, as until the controller removes it).
    let mark = run.log_after_ready().len();
    api.delete("Service", "default", "echo").unwrap();
    run.wait_for_line(
        mark,
        &["tables published", "services=1"],
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("the deletion was not published:\n{}", run.log_after_ready()));
    let e = udp_request_at(&ns.0, "10.96.0.10", 5353).expect_err("a deleted Service answered");
    assert!(e.contains("timed out"), "{e}");
    bulk_transfer(&ns.0);

    let stats = run.stop();
    assert_forwarded_cleanly(&stats);
    assert_eq!(api.count(Verb::List, "services"), 1, "no relist was needed");
}

/// The API server goes away: forwarding goes on with the last tables, every watcher retries
/// with growing delays; the cluster changes meanwhile and the API server comes back with a
/// compacted history (a restarted API server's watch cache starts at the current revision): the
/// watchers resume, are told `410 Gone`, relist, and the tables converge without a restart.
#[test]
fn api_server_loss_keeps_forwarding_and_the_tables_converge_when_it_returns() {
    let _serial = one_at_a_time();
    let (ns, _link, host) = topology("l");
    let api = FakeApi::start();
    apply_yaml(&api, UDP_SERVICE);
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path(), &api, &host, 1);
    wait_listed(&run);
    eventually(&run, Duration::from_secs(10), "the UDP Service", || {
        udp_request_at(&ns.0, "10.96.0.10", 5353)
    });
    assert_eq!(api.count(Verb::List, "services"), 1);
    assert_eq!(api.count(Verb::List, "endpointslices"), 1);

    let mark = run.log_after_ready().len();
    let stopped = Instant::now();
    api.stop();
    // Forwarding goes on.
    ping(&ns.0, "192.0.2.1");
    udp_request(&ns.0);
    // Every watcher fails, retries, fails again later and later.
    for resource in ["Service", "EndpointSlice", "Node"] {
        run.wait_for_line(
            mark,
            &[
                "API server watch failed",
                &format!("resource={resource}"),
                "attempt=3",
            ],
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| {
            panic!(
                "{resource}: no third attempt within 15 s:\n{}",
                run.log_after_ready()
            )
        });
        let log = run.log_after_ready();
        let failures: Vec<(u64, f64, &str)> = log[mark..]
            .lines()
            .filter(|l| {
                l.contains("API server watch failed")
                    && l.contains(&format!("resource={resource} "))
            })
            .map(|l| (attempt_of(l).unwrap(), log_time(l).unwrap(), l))
            .collect();
        let attempts: Vec<u64> = failures.iter().map(|f| f.0).collect();
        assert_eq!(attempts[..3], [1, 2, 3], "{resource}: {failures:#?}");
        for (_, _, line) in &failures[1..3] {
            assert!(
                line.contains("Connection refused") && line.contains("retrying with backoff"),
                "{line}"
            );
        }
        // kube's backoff: 0.8 s doubling, with up to as much again of jitter, so each delay is
        // longer than the one before.
        let first = failures[1].1 - failures[0].1;
        let second = failures[2].1 - failures[1].1;
        assert!(
            (0.7..1.8).contains(&first) && second > first && second >= 1.5,
            "{resource}: retried after {first:.2} s, then {second:.2} s: {failures:#?}"
        );
    }

    // An unreachable API server changes nothing in the tables: the proxy stays healthy past
    // its timeout (kube-proxy queues only changes it has to apply).
    // (The retries above usually take that long, but their jitter can make them quicker:
    // wait out the rest of the horizon.)
    let horizon = Duration::from_secs(HEALTH_TIMEOUT_SECS + 1);
    std::thread::sleep(horizon.saturating_sub(stopped.elapsed()));
    assert!(stopped.elapsed() >= horizon);
    assert_proxy_healthy("while the API server is down");

    // The cluster changes while nodegate cannot see it: the UDP Service moves to another port,
    // a TCP Service appears; then the history is compacted away.
    apply_yaml(&api, &udp_service_on(5354));
    apply_yaml(&api, BULK_SERVICE);
    api.compact();
    // Still the last tables.
    udp_request(&ns.0);
    assert!(udp_request_at(&ns.0, "10.96.0.10", 5354).is_err());

    api.clear_requests();
    let mark = run.log_after_ready().len();
    api.restart();
    let outage = stopped.elapsed();
    let returned = Instant::now();
    // Each watcher comes back at its own next attempt (the delays are jittered), at most
    // 12.8 s after the restart here; the tables follow within min_sync.
    for resource in ["Service", "EndpointSlice"] {
        relisted(&run, mark, resource, Duration::from_secs(40));
    }
    // The two relists may be rebuilt separately (each within min_sync): wait for tables that
    // hold both, or the TCP Service can still be without its slice (rejected) for a moment.
    run.wait_for_line(
        mark,
        &["tables published", "services=2", "endpoint_slices=2"],
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("no rebuild with both:\n{}", run.log_after_ready()));
    eventually(
        &run,
        Duration::from_secs(5),
        "the moved UDP Service",
        || udp_request_at(&ns.0, "10.96.0.10", 5354),
    );
    eprintln!(
        "outage {outage:?}; converged {:?} after the API server returned",
        returned.elapsed()
    );
    bulk_transfer(&ns.0);
    assert!(
        udp_request_at(&ns.0, "10.96.0.10", 5353).is_err(),
        "the old port must be gone"
    );
    std::thread::sleep(Duration::from_secs(HEALTH_TIMEOUT_SECS + 1));
    assert_proxy_healthy("after the API server returned and its changes were applied");
    // Each watcher resumed from where it was, was told 410 Gone, and relisted.
    for resource in ["services", "endpointslices"] {
        let calls: Vec<(Verb, Option<String>)> = api
            .requests()
            .iter()
            .filter(|r| r.resource.as_deref() == Some(resource))
            .map(|r| (r.verb, r.param("resourceVersion")))
            .collect();
        assert!(calls.len() >= 3, "{resource}: {calls:?}");
        assert_eq!(calls[0].0, Verb::Watch, "{resource}: {calls:?}");
        assert_ne!(calls[0].1.as_deref(), Some("0"), "{resource}: {calls:?}");
        assert_eq!(
            calls[1],
            (Verb::List, Some("0".to_string())),
            "{resource}: {calls:?}"
        );
        assert_eq!(calls[2].0, Verb::Watch, "{resource}: {calls:?}");
    }
    let stats = run.stop();
    assert_forwarded_cleanly(&stats);
}

/// A `410 Gone` while running: etcd compacts and the watches are cut; the watchers resume from
/// versions that are gone, relist, and the tables converge on a change made meanwhile.
#[test]
fn gone_after_compaction_makes_nodegate_relist_and_converge() {
    let _serial = one_at_a_time();
    let (ns, _link, host) = topology("g");
    // No periodic bookmarks: the watchers must not learn a resourceVersion newer than their
    // last event, or compaction would not make them too old.
    let api = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_secs(3600),
        ..Options::default()
    });
    apply_yaml(&api, UDP_SERVICE);
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path(), &api, &host, 1);
    wait_listed(&run);
    eventually(&run, Duration::from_secs(10), "the UDP Service", || {
        udp_request_at(&ns.0, "10.96.0.10", 5353)
    });
    assert!(api.wait_for(Duration::from_secs(5), |a| a.open_watches() == 3));

    api.clear_requests();
    let mark = run.log_after_ready().len();
    // A write nodegate does not watch moves the resourceVersion on; etcd compacts; the watch
    // streams are cut; then the Service changes.
    api.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}))
        .unwrap();
    api.compact();
    api.disconnect_watches();
    apply_yaml(&api, &udp_service_on(5354));

    eventually(
        &run,
        Duration::from_secs(15),
        "the moved UDP Service",
        || udp_request_at(&ns.0, "10.96.0.10", 5354),
    );
    for (resource, kind) in [
        ("services", "Service"),
        ("endpointslices", "EndpointSlice"),
        ("nodes", "Node"),
    ] {
        assert!(
            api.wait_for(Duration::from_secs(10), |a| a.count(Verb::List, resource)
                == 1
                && a.open_watches() == 3),
            "{resource}: {:?}",
            api.requests()
        );
        run.wait_for_line(
            mark,
            &[
                "API server watch failed",
                &format!("resource={kind} "),
                "too old resource version",
                "Expired",
            ],
            Duration::from_secs(1),
        )
        .unwrap_or_else(|| panic!("{kind}: no 410 Gone logged:\n{}", run.log_after_ready()));
        relisted(&run, mark, kind, Duration::from_secs(1));
    }
    assert!(udp_request_at(&ns.0, "10.96.0.10", 5353).is_err());
    let stats = run.stop();
    for reason in ["tx-full", "no-buffer", "ct-full", "l4-malformed"] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
}

/// 10,000 Service updates as fast as the API server takes them (100 Services, each changed 100
/// times) cost a few rebuilds, not 10,000, and the tables end with the last version of each.
#[test]
fn a_burst_of_10000_service_updates_is_coalesced() {
    let _serial = one_at_a_time();
    let (ns, _link, host) = topology("c");
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path(), &api, &host, 1);
    wait_listed(&run);
    // The first Service's endpoint is the UDP echo server.
    api.apply(&json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "s0-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "s0"}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 7777, "protocol": "UDP"}],
        "endpoints": [{"addresses": ["192.0.2.2"], "conditions": {"ready": true}}],
    }))
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let mark = run.log_after_ready().len();
    let started = Instant::now();
    for round in 0..100u16 {
        for i in 0..100u16 {
            api.apply(&json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": format!("s{i}"), "namespace": "default"},
                "spec": {
                    "clusterIP": format!("10.96.1.{}", i + 1),
                    "ports": [{"port": 1000 + round, "protocol": "UDP", "targetPort": 7777}],
                },
            }))
            .unwrap();
        }
    }
    let burst = started.elapsed();
    let took = eventually(&run, Duration::from_secs(20), "s0 at its last port", || {
        udp_request_at(&ns.0, "10.96.1.1", 1099)
    });
    // Let any last rebuild happen (min_sync is 1 s).
    std::thread::sleep(Duration::from_millis(2500));
    let (rebuilds, last) = rebuilds_since(&run, mark);
    eprintln!(
        "10,000 updates in {burst:?}, served {took:?} later, {rebuilds} rebuilds; last: {last:?}"
    );
    assert!(
        (1..=20).contains(&rebuilds),
        "{rebuilds} rebuilds for 10,000 updates:\n{}",
        run.log_after_ready()
    );
    let last = last.unwrap();
    assert!(
        last.contains("services=100 ") && last.contains("frontends=100 "),
        "{last}"
    );
    assert!(udp_request_at(&ns.0, "10.96.1.1", 1098).is_err());
    let stats = run.stop();
    assert!(
        stats["tables"]["generation"].as_u64().unwrap() <= 22,
        "{stats}"
    );
}

/// A long transfer through the ClusterIP while, through the API server, an endpoint is added,
/// then the transfer's own endpoint is marked not ready, then removed from the EndpointSlice:
/// new connections follow the tables, the transfer keeps its endpoint and completes intact.
#[test]
fn established_transfer_survives_endpoint_changes_from_the_api() {
    let _serial = one_at_a_time();
    let (ns, _link, host) = topology("e");
    let api = FakeApi::start();
    apply_yaml(&api, &tcp_service(&["192.0.2.2"]));
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path(), &api, &host, 1);
    wait_listed(&run);
    let _server = TcpServer::start(&ns.0);
    eventually(
        &run,
        Duration::from_secs(10),
        "the TCP Service",
        || match tcp_hello(&ns.0)?.as_str() {
            "192.0.2.2" => Ok(()),
            other => Err(other.to_string()),
        },
    );

    // 48 MiB at about 3 MiB/s: the transfer runs for about fifteen seconds.
    let mut transfer = SlowTransfer::start(&ns.0, 48 * 1024 * 1024);
    std::thread::sleep(Duration::from_millis(500));

    let published = |mark: usize, what: &str| {
        run.wait_for_line(mark, &["tables published"], Duration::from_secs(4))
            .unwrap_or_else(|| panic!("{what} was not published:\n{}", run.log_after_ready()));
    };

    // An endpoint is added: new connections spread over both.
    let mark = run.log_after_ready().len();
    apply_yaml(&api, &tcp_service(&["192.0.2.2", "192.0.2.3"]));
    published(mark, "the new endpoint");
    nodeport_reaches(&ns.0, &["192.0.2.2", "192.0.2.3"]);
    assert!(
        transfer.running(),
        "the transfer must survive a new endpoint"
    );

    // The transfer's endpoint is marked not ready: new connections go to the other.
    let mark = run.log_after_ready().len();
    apply_yaml(
        &api,
        &tcp_service_with(&[("192.0.2.2", false), ("192.0.2.3", true)]),
    );
    published(mark, "the not-ready endpoint");
    for _ in 0..5 {
        assert_eq!(nodeport_hello(&ns.0).as_deref(), Ok("192.0.2.3"));
    }
    assert!(
        transfer.running(),
        "the transfer must survive its endpoint turning not ready"
    );

    // And removed from the EndpointSlice.
    let mark = run.log_after_ready().len();
    apply_yaml(&api, &tcp_service(&["192.0.2.3"]));
    published(mark, "the removal");
    for _ in 0..5 {
        assert_eq!(nodeport_hello(&ns.0).as_deref(), Ok("192.0.2.3"));
    }
    assert!(
        transfer.running(),
        "the transfer must survive its endpoint's removal"
    );

    transfer.assert_complete();
    let stats = run.stop();
    for reason in ["tx-full", "no-buffer", "ct-full", "l4-malformed"] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
}

/// Waits (at most `timeout`) for nodegate to log, after log position `mark`, that the watcher
/// of `resource` recovered by relisting.
fn relisted(run: &Running, mark: usize, resource: &str, timeout: Duration) {
    run.wait_for_line(
        mark,
        &[
            "API server watch recovered: relisted",
            &format!("resource={resource}"),
        ],
        timeout,
    )
    .unwrap_or_else(|| panic!("{resource}: no relist logged:\n{}", run.log_after_ready()));
}

/// Mounts a fresh `/run` in a private mount namespace (the host's stays untouched), puts a
/// service account's token and CA where a pod has them (`/var/run/secrets/...`, `/var/run`
/// being `/run`), then runs the rest of the command line. `$0` is the directory holding `token`
/// and `ca.pem`.
const POD_SECRETS: &str = "set -e\n\
    mount --make-rprivate /\n\
    mount -t tmpfs tmpfs /run\n\
    sa=/run/secrets/kubernetes.io/serviceaccount\n\
    mkdir -p $sa\n\
    cp \"$0/token\" $sa/token\n\
    cp \"$0/ca.pem\" $sa/ca.crt\n\
    echo default > $sa/namespace\n\
    exec \"$@\"\n";

/// The requests of a list of `resource` and the Authorization headers they carried.
fn list_authorizations(api: &FakeApi, resource: &str) -> Vec<Option<String>> {
    api.requests()
        .into_iter()
        .filter(|r| r.verb == Verb::List && r.resource.as_deref() == Some(resource))
        .map(|r| r.authorization)
        .collect()
}

/// Writes a config with `kubernetes` as its `kubernetes:` section for an af_xdp port on `host`.
fn write_config(dir: &std::path::Path, host: &str, kubernetes: &str) {
    std::fs::write(
        dir.join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nports:\n  - {{name: eth0, driver: af_xdp, interface: {host}, addresses: [\"192.0.2.1/24\"]}}\nkubernetes: {kubernetes}\n"
        ),
    )
    .unwrap();
}

/// Run in a pod (no kubeconfig, `KUBERNETES_SERVICE_HOST`/`_PORT` set, the service account's
/// token and CA mounted): nodegate uses the in-cluster configuration, HTTPS with the mounted CA
/// and the token as bearer, and serves what the API server says.
#[test]
fn in_cluster_configuration_is_used_in_a_pod() {
    let _serial = one_at_a_time();
    preflight(&["unshare", "mount", "openssl", "socat"]);
    let (ns, _link, host) = topology("i");
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    fakeapi::tls::certificates(dir.path());
    let proxy = fakeapi::tls::TlsProxy::start(dir.path(), api.addr(), false);
    std::fs::write(dir.path().join("token"), "in-cluster-token").unwrap();
    write_config(dir.path(), &host, "{api: auto}");
    let port = proxy.port().to_string();
    let host_env = "KUBERNETES_SERVICE_HOST=127.0.0.1".to_string();
    let port_env = format!("KUBERNETES_SERVICE_PORT={port}");
    let d = dir.path().to_str().unwrap();
    let run = Running::start_wrapped(
        dir.path(),
        &[
            "env",
            &host_env,
            &port_env,
            "unshare",
            "-m",
            "sh",
            "-c",
            POD_SECRETS,
            d,
        ],
        &[],
    );
    serves_what_the_api_says(
        run,
        &api,
        &ns.0,
        &format!("https://127.0.0.1:{port}"),
        "in-cluster-token",
    );
}

/// `run` uses the API server at `server` (its log says so), lists, serves a Service created
/// through `api` to namespace `ns`, and every list it made carried `token` as its bearer.
fn serves_what_the_api_says(run: Running, api: &FakeApi, ns: &str, server: &str, token: &str) {
    assert!(
        run.log.contains(&format!("server={server}/")),
        "{}",
        run.log
    );
    wait_listed(&run);
    apply_yaml(api, UDP_SERVICE);
    eventually(&run, Duration::from_secs(15), "the UDP Service", || {
        udp_request_at(ns, "10.96.0.10", 5353)
    });
    let auth = list_authorizations(api, "services");
    let bearer = format!("Bearer {token}");
    assert!(
        !auth.is_empty() && auth.iter().all(|a| a.as_deref() == Some(bearer.as_str())),
        "{auth:?}"
    );
    run.stop();
}

/// `kubernetes.api: infer` with `$KUBECONFIG` naming an HTTPS kubeconfig (CA file, token):
/// kube's inference reads it, and nodegate serves what the API server says.
#[test]
fn infer_uses_the_kubeconfig_environment_over_https() {
    let _serial = one_at_a_time();
    preflight(&["openssl", "socat"]);
    let (ns, _link, host) = topology("j");
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    fakeapi::tls::certificates(dir.path());
    let proxy = fakeapi::tls::TlsProxy::start(dir.path(), api.addr(), false);
    let kubeconfig = fakeapi::tls::kubeconfig(
        dir.path(),
        &proxy.url(),
        "ca",
        fakeapi::tls::Credentials::Token("inferred-token"),
    );
    write_config(dir.path(), &host, "{api: infer}");
    let env = format!("KUBECONFIG={}", kubeconfig.display());
    let run = Running::start_wrapped(dir.path(), &["env", &env], &[]);
    serves_what_the_api_says(run, &api, &ns.0, &proxy.url(), "inferred-token");
}

/// A dual-stack UDP Service made through the API: ClusterIPs 10.96.0.40 and fd00:96::40, port
/// 5353, to port 7777 of 192.0.2.2 and fd00:2::2 (an `IPv4` and an `IPv6` EndpointSlice).
const DUAL_STACK_UDP: &str = r#"apiVersion: v1
kind: Service
metadata: {name: echo2, namespace: default}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIP: 10.96.0.40
  clusterIPs: [10.96.0.40, "fd00:96::40"]
  ports: [{port: 5353, protocol: UDP, targetPort: 7777}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo2-v4, namespace: default, labels: {kubernetes.io/service-name: echo2}}
addressType: IPv4
ports: [{name: "", port: 7777, protocol: UDP}]
endpoints:
  - {addresses: ["192.0.2.2"], conditions: {ready: true}, nodeName: node-b}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo2-v6, namespace: default, labels: {kubernetes.io/service-name: echo2}}
addressType: IPv6
ports: [{name: "", port: 7777, protocol: UDP}]
endpoints:
  - {addresses: ["fd00:2::2"], conditions: {ready: true}, nodeName: node-b}"#;

/// One datagram to `addr`:5353 from namespace `ns` (a connected socket, so an ICMP port
/// unreachable shows as "refused"), answered by a server on port 7777 of both families there:
/// (who the server saw, where the answer came from), or why not.
fn udp6_exchange(ns: &str, addr: &str) -> Result<(String, String), String> {
    let server = "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.bind(('::',7777))\ns.settimeout(5)\nd,a=s.recvfrom(2048)\ns.sendto(a[0].encode(),a)\n";
    let mut server = nodegate::netns::exec(ns)
        .args(["python3", "-c", server])
        .spawn()
        .expect("python3 for the UDP server");
    std::thread::sleep(Duration::from_millis(300));
    let family = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let client = format!("import socket\ns=socket.socket(socket.{family},socket.SOCK_DGRAM)\ns.settimeout(2)\ns.connect(('{addr}',5353))\ns.send(b'hi')\nd,a=s.recvfrom(2048)\nprint(d.decode(), a[0])\n");
    let out = sh(&["ip", "netns", "exec", ns, "python3", "-c", &client]);
    let _ = server.kill();
    let _ = server.wait();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    match (words.next(), words.next()) {
        (Some(seen), Some(from)) => Ok((
            seen.trim_start_matches("::ffff:").to_string(),
            from.to_string(),
        )),
        _ => Err(format!("unexpected answer `{text}`")),
    }
}

/// A dual-stack Service created through the API is served on both families: each ClusterIP
/// balances over the endpoints of its own family (hairpinned here: the client is the endpoint,
/// so the endpoint sees the node's address of that family), and deleting the IPv6 slice
/// leaves the IPv6 ClusterIP rejecting while IPv4 goes on.
#[test]
fn dual_stack_service_from_the_api_is_served_on_both_families() {
    let _serial = one_at_a_time();
    let (ns, _link, host) = topology("s");
    let peer = format!("ngbs{}", std::process::id() % 100_000);
    must(&[
        "ip",
        "-n",
        &ns.0,
        "-6",
        "addr",
        "add",
        "fd00:2::2/64",
        "dev",
        &peer,
        "nodad",
    ]);
    must(&[
        "ip",
        "-n",
        &ns.0,
        "-6",
        "route",
        "add",
        "fd00:96::/64",
        "via",
        "fd00:2::1",
    ]);
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: 2\nports:\n  - {{name: eth0, driver: af_xdp, interface: {host}, addresses: [\"192.0.2.1/24\", \"fd00:2::1/64\"]}}\n"
        ),
    )
    .unwrap();
    api.write_kubeconfig(dir.path().join("kubeconfig")).unwrap();
    let run = Running::start_with(dir.path(), None, &["--kubeconfig", "kubeconfig"]);
    wait_listed(&run);
    apply_yaml(&api, DUAL_STACK_UDP);
    let mut six = None;
    eventually(&run, Duration::from_secs(15), "the IPv6 ClusterIP", || {
        six = Some(udp6_exchange(&ns.0, "fd00:96::40")?);
        Ok(())
    });
    assert_eq!(
        six.unwrap(),
        ("fd00:2::1".to_string(), "fd00:96::40".to_string())
    );
    // The IPv4 slice is a separate object: the sync that brought the IPv6 one may not have
    // brought it yet (seen once in CI under load: the IPv4 ClusterIP still had no endpoint and
    // answered port unreachable).
    let mut four = None;
    eventually(&run, Duration::from_secs(15), "the IPv4 ClusterIP", || {
        four = Some(udp6_exchange(&ns.0, "10.96.0.40")?);
        Ok(())
    });
    assert_eq!(
        four.unwrap(),
        ("192.0.2.1".to_string(), "10.96.0.40".to_string())
    );

    // The IPv6 slice goes: the IPv6 ClusterIP has no endpoint of its family (rejected with
    // ICMPv6 port unreachable), IPv4 is untouched.
    let mark = run.log_after_ready().len();
    api.delete("EndpointSlice", "default", "echo2-v6").unwrap();
    run.wait_for_line(mark, &["tables published"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no rebuild:\n{}", run.log_after_ready()));
    let e = udp6_exchange(&ns.0, "fd00:96::40").expect_err("answered without an endpoint");
    assert!(e.contains("refused"), "{e}");
    assert!(udp6_exchange(&ns.0, "10.96.0.40").is_ok());
    let stats = run.stop();
    assert!(
        stats["total"]["drops"]["svc-rejected"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}
