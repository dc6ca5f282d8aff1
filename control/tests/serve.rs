//! The kernel-side servers of `control::serve` on the loopback interface: the proxy health
//! server, the metrics server and the listeners of the health-check ports, following the
//! published tables.

use control::health::ProxyHealth;
use control::metrics::Metrics;
use control::serve::{ServeConfig, Servers};
use dataplane::service::{HealthCheck, HealthChecks};
use dataplane::tables::{TablePublisher, Tables};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tables(checks: &[(&str, u16, u32)]) -> Tables {
    let (health, dups) = HealthChecks::new(
        checks
            .iter()
            .map(|(name, port, n)| HealthCheck {
                namespace: "default".into(),
                name: (*name).into(),
                port: *port,
                local_endpoints: *n,
            })
            .collect(),
    );
    assert!(dups.is_empty());
    Tables {
        health,
        ..Tables::default()
    }
}

/// Sends `request` to `port` on 127.0.0.1 and reads the answer to its end; `None` when the
/// connection is refused.
fn get(port: u16, request: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    Some(out)
}

/// Retries `f` for up to 5 s until it gives `Some`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn servers_answer_like_kube_proxy_and_follow_the_tables() {
    let (health_port, metrics_port, hc) = (free_port(), free_port(), free_port());
    let publisher = TablePublisher::new(tables(&[("web", hc, 1)]));
    let mut worker = publisher.reader();
    let health = Arc::new(ProxyHealth::new(
        publisher.clone(),
        Duration::from_secs(1),
        SystemTime::now(),
    ));
    let metrics = Arc::new(Metrics::new(health.metrics(), None));
    let cfg = ServeConfig {
        health_bind: Some(SocketAddr::from(([127, 0, 0, 1], health_port))),
        metrics_bind: Some(SocketAddr::from(([127, 0, 0, 1], metrics_port))),
        node_port_address: Some("127.0.0.1".parse().unwrap()),
    };
    let servers = Servers::start(&cfg, health.clone(), metrics, None).unwrap();

    // Proxy health.
    worker.heartbeat(); // the worker polls
    let a = eventually("the health server", || {
        get(health_port, "GET /healthz HTTP/1.1\r\n\r\n")
    });
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert!(a.contains("\r\nContent-Type: application/json\r\n"), "{a}");
    assert!(a.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{a}");
    let b = body(&a);
    assert!(b.starts_with("{\"lastUpdated\":\""), "{b}");
    assert!(
        b.contains("\"nodeEligible\":true,\"healthy\":true,\"status\":{\"IPv4\":"),
        "{b}"
    );
    worker.heartbeat(); // the worker polls
    let a = get(health_port, "HEAD /livez HTTP/1.1\r\n\r\n").unwrap();
    assert!(
        a.starts_with("HTTP/1.1 200 OK\r\n") && body(&a).is_empty(),
        "{a}"
    );
    worker.heartbeat(); // the worker polls
    let a = get(health_port, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 404 Not Found\r\n"), "{a}");
    assert_eq!(body(&a), "404 page not found\n");

    // Metrics.
    worker.heartbeat(); // the worker polls
    let a = eventually("the metrics server", || {
        get(metrics_port, "GET /proxyMode HTTP/1.1\r\n\r\n")
    });
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert_eq!(body(&a), "nodegate");
    worker.heartbeat(); // the worker polls
    let a = get(metrics_port, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(
        a.contains(
            "\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{a}"
    );
    assert!(
        body(&a).contains("kubeproxy_proxy_healthz_total{code=\"200\"} 1\n"),
        "{a}"
    );
    assert!(body(&a).contains("# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram\n"));

    // The health-check port on the kernel: 200 with one local endpoint.
    worker.heartbeat(); // the worker polls
    let a = eventually("the health check port", || {
        get(hc, "GET / HTTP/1.1\r\n\r\n")
    });
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert!(
        a.contains("\r\nX-Load-Balancing-Endpoint-Weight: 1\r\n"),
        "{a}"
    );
    assert!(body(&a).contains("\t\"localEndpoints\": 1,\n"), "{a}");

    // The endpoint goes: the next answer says 503 and 0 (the worker switches at once).
    publisher.publish(tables(&[("web", hc, 0)]));
    worker.refresh();
    worker.heartbeat(); // the worker polls
    let a = get(hc, "GET /x HTTP/1.1\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{a}");
    assert!(body(&a).contains("\t\"localEndpoints\": 0,\n\t\"serviceProxyHealthy\": true\n}"));

    // A worker that does not switch: after the timeout (1 s) the proxy is unhealthy, on
    // /healthz, /livez and in every health check's answer.
    publisher.publish(tables(&[("web", hc, 2)]));
    std::thread::sleep(Duration::from_millis(1200));
    worker.heartbeat(); // the worker polls
    let a = get(health_port, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 503 "), "{a}");
    assert!(body(&a).contains("\"healthy\":false"), "{a}");
    worker.heartbeat(); // the worker polls
    let a = get(hc, "GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 503 "), "{a}");
    assert!(body(&a).contains("\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": false\n}"));
    worker.refresh();
    worker.heartbeat(); // the worker polls
    let a = get(health_port, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 200 "), "{a}");

    // The node is being deleted: /healthz fails, /livez does not.
    health.set_node_eligible(false);
    worker.heartbeat(); // the worker polls
    let a = get(health_port, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 503 "), "{a}");
    assert!(
        body(&a).contains("\"nodeEligible\":false,\"healthy\":true"),
        "{a}"
    );
    worker.heartbeat(); // the worker polls
    let a = get(health_port, "GET /livez HTTP/1.1\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 200 "), "{a}");

    // Garbage gets 400.
    worker.heartbeat(); // the worker polls
    let a = get(health_port, "hello\r\n\r\n").unwrap();
    assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");

    // The Service loses its health check: the port closes.
    publisher.publish(Tables::default());
    worker.refresh();
    eventually("the health check port to close", || {
        TcpStream::connect(("127.0.0.1", hc)).is_err().then_some(())
    });
    servers.stop();
    assert!(TcpStream::connect(("127.0.0.1", health_port)).is_err());
}

#[test]
fn a_taken_port_is_retried_not_fatal() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let publisher = TablePublisher::new(Tables::default());
    let health = Arc::new(ProxyHealth::new(
        publisher,
        Duration::from_secs(60),
        SystemTime::now(),
    ));
    let metrics = Arc::new(Metrics::new(health.metrics(), None));
    let cfg = ServeConfig {
        health_bind: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        ..ServeConfig::default()
    };
    let servers = Servers::start(&cfg, health, metrics, None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    servers.stop();
    drop(taken);
}
