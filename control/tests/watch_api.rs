//! The API server source (`control::watch::api`) against scripted answers, without a cluster:
//! a kube `Client` over an in-process service that replays what an API server would say
//! (lists, watch streams, `410 Gone`, errors), and a real client over plain HTTP on loopback.
//! The source's updates are applied to a `SyncState`, as the control loop does.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::model::Node;
use control::sync::{Resource, SyncState, Update, WatchEvent};
use fakeapi::tls::{self, Credentials, TlsProxy};
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const NODES: &str = "/api/v1/nodes";

/// One scripted answer.
#[derive(Clone)]
enum Reply {
    /// Status code and body.
    Http(u16, String),
    /// Never answers (a watch with nothing to say).
    Hang,
}

/// Answers per (path, is-a-watch), in order.
type Replies = HashMap<(String, bool), VecDeque<Reply>>;

/// Scripted answers per (path, is-a-watch), taken in order; a request without one hangs.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<Replies>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn push(&self, path: &str, watch: bool, reply: Reply) -> &Script {
        self.replies
            .lock()
            .unwrap()
            .entry((path.to_string(), watch))
            .or_default()
            .push_back(reply);
        self
    }

    fn list(&self, path: &str, kind: &str, rv: &str, items: Vec<Value>) -> &Script {
        let body = json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": rv}, "items": items});
        self.push(path, false, Reply::Http(200, body.to_string()))
    }

    fn watch(&self, path: &str, events: Vec<Value>) -> &Script {
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        self.push(path, true, Reply::Http(200, body))
    }

    fn requests(&self, path: &str, watch: bool) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(&format!("{path}?")) && r.contains("watch=true") == watch)
            .cloned()
            .collect()
    }

    fn client(&self) -> Client {
        let script = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let script = script.clone();
            async move {
                let uri = req.uri().clone();
                script.requests.lock().unwrap().push(uri.to_string());
                let watch = uri.query().is_some_and(|q| q.contains("watch=true"));
                let reply = script
                    .replies
                    .lock()
                    .unwrap()
                    .get_mut(&(uri.path().to_string(), watch))
                    .and_then(VecDeque::pop_front)
                    .unwrap_or(Reply::Hang);
                match reply {
                    Reply::Http(code, body) => Ok::<_, Infallible>(
                        Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Body::from(body.into_bytes()))
                            .unwrap(),
                    ),
                    Reply::Hang => std::future::pending().await,
                }
            }
        });
        Client::new(service, "default")
    }
}

fn service(name: &str, ip: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        "spec": {"clusterIP": ip, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    })
}

fn slice(service: &str, ip: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abc"), "namespace": "default", "resourceVersion": rv,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP", "name": ""}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}, "nodeName": "node-b"}]
    })
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

fn gone() -> Value {
    event(
        "ERROR",
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": "too old resource version: 10 (25)", "reason": "Expired", "code": 410}),
    )
}

fn status(code: u16) -> Reply {
    Reply::Http(
        code,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": "etcdserver: leader changed", "reason": "InternalError", "code": code})
        .to_string(),
    )
}

fn names(st: &SyncState) -> Vec<String> {
    st.merged()
        .services
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

/// Runs the API source on `client`, applying its updates to a state until `done` says so
/// (panics after 30 s). Returns the state and every update seen.
async fn drive(client: Client, done: impl Fn(&SyncState) -> bool) -> (SyncState, Vec<Update>) {
    let (tx, mut rx) = mpsc::channel(256);
    let source = tokio::spawn(control::watch::api::watch(client, "node-a".into(), tx));
    let mut st = SyncState::new("node-a", Duration::from_secs(1), Default::default(), None);
    let mut seen = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(30), async {
        while !done(&st) {
            let u = rx.recv().await.expect("the source ended");
            seen.push(u.clone());
            st.apply(u);
        }
    })
    .await;
    source.abort();
    assert!(
        result.is_ok(),
        "no convergence; services {:?}, updates {seen:#?}",
        names(&st)
    );
    (st, seen)
}

#[tokio::test(start_paused = true)]
async fn relists_after_410_gone_and_converges() {
    let script = Script::default();
    script
        .list(SERVICES, "ServiceList", "10", vec![service("web", "10.96.0.1", "5")])
        .watch(
            SERVICES,
            vec![event("ADDED", service("extra", "10.96.0.2", "11")), gone()],
        )
        // While the watch was gone, web and extra were deleted and after created.
        .list(SERVICES, "ServiceList", "25", vec![service("after", "10.96.0.3", "21")])
        .list(SLICES, "EndpointSliceList", "10", vec![slice("web", "10.1.0.5", "7")])
        .list(
            NODES,
            "NodeList",
            "3",
            vec![json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "node-a", "resourceVersion": "2",
                             "labels": {"topology.kubernetes.io/zone": "zone-b"},
                             "deletionTimestamp": "2025-01-01T00:00:00Z"},
                "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}
            })],
        );
    let saw_extra = Arc::new(Mutex::new(false));
    let flag = saw_extra.clone();
    let (st, seen) = drive(script.client(), move |st| {
        let n = names(st);
        if n.contains(&"extra".to_string()) {
            *flag.lock().unwrap() = true;
        }
        n == ["after"] && st.merged().node.is_some()
    })
    .await;
    assert!(*saw_extra.lock().unwrap(), "the watch's ADDED was applied");
    assert_eq!(
        st.merged().node,
        Some(Node {
            name: "node-a".into(),
            zone: Some("zone-b".into()),
            deleting: true,
            to_be_deleted: true,
            pod_cidrs: vec![],
        })
    );
    assert!(seen.contains(&Update::WatchFailed(Resource::Service)));
    // Listed twice: at start and after 410 Gone.
    let lists = script.requests(SERVICES, false);
    assert_eq!(lists.len(), 2, "{lists:?}");
    // kube-proxy's selector, served from the watch cache.
    for q in &lists {
        assert!(q.contains("labelSelector=%21service.kubernetes.io%2Fservice-proxy-name%2C%21service.kubernetes.io%2Fheadless"), "{q}");
        assert!(q.contains("resourceVersion=0"), "{q}");
    }
    let watches = script.requests(SERVICES, true);
    assert!(watches[0].contains("resourceVersion=10"), "{watches:?}");
    let node_lists = script.requests(NODES, false);
    assert!(
        node_lists[0].contains("fieldSelector=metadata.name%3Dnode-a"),
        "{node_lists:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_lists_are_retried_with_backoff() {
    let script = Script::default();
    script
        .push(SERVICES, false, status(500))
        .push(SERVICES, false, status(503))
        .push(SERVICES, false, status(503))
        .list(
            SERVICES,
            "ServiceList",
            "10",
            vec![service("web", "10.96.0.1", "5")],
        )
        .list(
            SLICES,
            "EndpointSliceList",
            "10",
            vec![slice("web", "10.1.0.5", "7")],
        );
    let start = tokio::time::Instant::now();
    let (st, seen) = drive(script.client(), |st| st.api_synced()).await;
    assert_eq!(names(&st), ["web"]);
    let failures = seen
        .iter()
        .filter(|u| **u == Update::WatchFailed(Resource::Service))
        .count();
    assert_eq!(failures, 3);
    assert_eq!(script.requests(SERVICES, false).len(), 4);
    // Growing delays, as client-go's: 0.8 s, 1.6 s, 3.2 s, each plus up to as much again of
    // jitter. (kube's own reset on the `Init` before each list would keep them at 0.8 s.)
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(5600) && waited <= Duration::from_millis(11200),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn watch_events_update_and_delete_and_a_closed_watch_resumes() {
    let script = Script::default();
    let mut changed = service("web", "10.96.0.1", "12");
    changed["spec"]["ports"][0]["port"] = json!(8080);
    script
        .list(
            SERVICES,
            "ServiceList",
            "10",
            vec![
                service("web", "10.96.0.1", "5"),
                service("old", "10.96.0.9", "6"),
            ],
        )
        // The server ends this watch (its timeout); the watcher resumes from version 12.
        .watch(
            SERVICES,
            vec![
                event("MODIFIED", changed),
                event("DELETED", service("old", "10.96.0.9", "12")),
            ],
        )
        .watch(
            SERVICES,
            vec![event("ADDED", service("new", "10.96.0.4", "13"))],
        )
        .list(SLICES, "EndpointSliceList", "10", vec![]);
    let (st, _) = drive(script.client(), |st| names(st) == ["new", "web"]).await;
    let web = st
        .merged()
        .services
        .into_iter()
        .find(|s| s.name == "web")
        .unwrap();
    assert_eq!(web.ports[0].port, 8080);
    let watches = script.requests(SERVICES, true);
    assert!(watches[1].contains("resourceVersion=12"), "{watches:?}");
    assert_eq!(
        script.requests(SERVICES, false).len(),
        1,
        "no relist needed"
    );
}

/// A real client (the one `nodegate run` makes from a kubeconfig) over plain HTTP: nothing
/// listening is an error retried, and a server that answers is listed.
#[tokio::test]
async fn plain_http_client_retries_a_closed_port_and_lists_a_server() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let source = tokio::spawn(control::watch::api::watch(client, "node-a".into(), tx));
    let mut failed = std::collections::HashSet::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while failed.len() < 3 {
            if let Some(Update::WatchFailed(r)) = rx.recv().await {
                failed.insert(r);
            }
        }
    })
    .await
    .expect("each watch reports the refused connection");
    source.abort();

    // An HTTP/1.1 server answering lists (empty) and holding watches open.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve_http(conn));
        }
    });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let (st, _) = drive(Client::try_from(config).unwrap(), |st| st.api_synced()).await;
    assert!(names(&st).is_empty());
}

/// Answers each request on `conn`: a list gets an empty list, a watch gets headers and then
/// nothing.
fn serve_http(mut conn: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        if request.contains("watch=true") {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let body = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}).to_string();
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}

/// An HTTPS API server (TLS terminated by the real `socat`, which also demands a client
/// certificate signed by the CA) reached through a kubeconfig with a CA file and a client
/// certificate, as `nodegate run --kubeconfig` makes its client: it lists. The same server
/// behind a kubeconfig trusting another CA is a TLS failure, reported and retried.
#[tokio::test]
async fn https_kubeconfig_with_client_certificate_lists_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    tls::certificates(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve_http(conn));
        }
    });
    let proxy = TlsProxy::start(dir.path(), plain, true);
    let server = proxy.url();

    let good = tls::kubeconfig(dir.path(), &server, "ca", Credentials::ClientCertificate);
    let client = control::watch::api::client(&control::config::ApiSource::Kubeconfig(good))
        .await
        .unwrap()
        .unwrap();
    let (st, _) =
        tokio::time::timeout(Duration::from_secs(20), drive(client, |st| st.api_synced()))
            .await
            .expect("lists over HTTPS with a client certificate");
    assert!(names(&st).is_empty());

    let bad = tls::kubeconfig(
        dir.path(),
        &server,
        "other-ca",
        Credentials::ClientCertificate,
    );
    let client = control::watch::api::client(&control::config::ApiSource::Kubeconfig(bad))
        .await
        .unwrap()
        .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let source = tokio::spawn(control::watch::api::watch(client, "node-a".into(), tx));
    let failed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Some(Update::WatchFailed(r)) => return r,
                Some(
                    Update::Services(WatchEvent::InitDone)
                    | Update::EndpointSlices(WatchEvent::InitDone)
                    | Update::Nodes(WatchEvent::InitDone),
                ) => panic!("listed through an untrusted certificate"),
                Some(_) => {}
                None => panic!("source ended"),
            }
        }
    })
    .await
    .expect("the untrusted server certificate is a reported failure");
    source.abort();
    assert!(matches!(
        failed,
        Resource::Service | Resource::EndpointSlice | Resource::Node
    ));
}
