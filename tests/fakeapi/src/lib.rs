//! A Kubernetes API server for tests.
//!
//! `FakeApi::start()` serves, on `127.0.0.1` and a free port, the parts of the apiserver that
//! a list/watch client and `kubectl` use, for four kinds: v1 Namespaces, Nodes and Services,
//! and discovery.k8s.io/v1 EndpointSlices. The protocol is the real one: discovery (legacy and
//! aggregated), one global `resourceVersion` stamped on every write, paginated lists
//! (`limit`/`continue`), label and field selectors, chunked watch streams with bookmarks and
//! `sendInitialEvents`, a history window whose older resourceVersions get `410 Gone`, 409s on
//! conflicts, merge / strategic-merge (approximated: see `patch.rs`) / server-side-apply
//! patches and `kubectl get`'s Tables. Objects are checked and pruned against the k8s-openapi
//! types, and Services get the apiserver's defaults (cluster IP, node ports, protocol).
//!
//! The server runs on its own tokio runtime thread, so every method here is a plain function,
//! usable from `#[test]` and `#[tokio::test]` alike. Hooks change the cluster without HTTP
//! ([`FakeApi::apply`], [`FakeApi::delete`]) and break it the ways a real one breaks
//! ([`FakeApi::compact`], [`FakeApi::disconnect_watches`], [`FakeApi::stop`] and
//! [`FakeApi::restart`]); [`FakeApi::requests`] and [`FakeApi::count`] show what the client
//! did. Kube clients connect with `kube::Config::new(api.url().parse()?)` or through
//! [`FakeApi::write_kubeconfig`] (plain http, no credentials).
//!
//! Not served: other kinds, subresources (`/status`), JSON patches (`json-patch+json`),
//! OpenAPI documents, finalizers and graceful deletion, managedFields and apply conflicts,
//! authentication. Status is writable through the main resource.

mod patch;
mod resources;
mod selector;
mod server;
mod store;
pub mod tls;
mod watch;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

pub use store::ApiError;
use store::{Store, WriteOptions};

/// How the server behaves; `Options::default()` is what [`FakeApi::start`] uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events kept for watches and exact lists; writes beyond it compact the oldest away
    /// (etcd's compaction, the watch cache's window). Default 10 000.
    pub history_limit: usize,
    /// How often a watch that allows bookmarks gets one. Default 1 s (the apiserver's is
    /// about a minute; tests want to see them).
    pub bookmark_interval: Duration,
    /// What `/version` reports, (major, minor). Default (1, 33), matching the k8s-openapi
    /// schema the server checks objects with. The `kubectl` on our machines is a dispatcher
    /// that runs the kubectl release matching this version.
    pub kubernetes_version: (u32, u32),
}

impl Default for Options {
    fn default() -> Options {
        Options {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            kubernetes_version: (1, 33),
        }
    }
}

/// What a request asked for, as the apiserver's audit log would name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// `/version`, `/api`, `/apis`, the group and group-version documents, `/openapi/v3`.
    Discovery,
    /// Anything else (unknown paths, OpenAPI, health checks, unsupported methods).
    Other,
}

/// One request the server received, logged before it is served.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub verb: Verb,
    /// The resource's plural (`services`), for resource requests.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The `Authorization` header (the server accepts any, like an apiserver with
    /// anonymous access; tests check what the client sent).
    pub authorization: Option<String>,
}

impl Request {
    /// A query parameter, percent-decoded (`resourceVersion`, `labelSelector`, ...).
    pub fn param(&self, name: &str) -> Option<String> {
        server::Params::parse(&self.query)
            .get(name)
            .map(str::to_string)
    }
}

/// A running (or stopped) fake API server. Dropping it stops it.
#[derive(Debug)]
pub struct FakeApi {
    shared: Arc<server::Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    listening: Mutex<Option<Listening>>,
}

#[derive(Debug)]
struct Listening {
    shutdown: tokio::sync::oneshot::Sender<()>,
    done: std::sync::mpsc::Receiver<()>,
}

impl FakeApi {
    /// Starts a server with default [`Options`] on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// If no thread, runtime or loopback port can be had: a test cannot go on without them.
    pub fn start() -> FakeApi {
        FakeApi::start_with(Options::default())
    }

    /// Starts a server with the given options.
    ///
    /// # Panics
    /// As [`FakeApi::start`].
    pub fn start_with(options: Options) -> FakeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fakeapi")
            .enable_all()
            .build()
            .expect("fakeapi: tokio runtime");
        let listener = StdListener::bind("127.0.0.1:0").expect("fakeapi: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fakeapi: local address");
        let shared = Arc::new(server::Shared {
            store: Mutex::new(Store::new(options.history_limit)),
            log: Mutex::new(Vec::new()),
            disconnect: tokio::sync::watch::channel(0).0,
            bookmark_now: tokio::sync::watch::channel(0).0,
            open_watches: Default::default(),
            options,
            addr,
        });
        let api = FakeApi {
            shared,
            runtime: Some(runtime),
            listening: Mutex::new(None),
        };
        api.serve(listener);
        api
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A kubeconfig for this server (plain http, no credentials, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fakeapi\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: fakeapi\n  user: {{}}\n\
             contexts:\n\
             - name: fakeapi\n  context:\n    cluster: fakeapi\n    user: fakeapi\n    namespace: default\n\
             current-context: fakeapi\n\
             preferences: {{}}\n",
            url = self.url()
        )
    }

    /// Writes [`FakeApi::kubeconfig`] to `path` (for `KUBECONFIG=path kubectl ...`).
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Creates or replaces an object, as a client's create or unconditional update would
    /// (watches see ADDED or MODIFIED; an identical object writes nothing). `object` is any
    /// serialisable Kubernetes object (a k8s-openapi type or a `serde_json::Value`) with
    /// `apiVersion` and `kind`; a namespaced one without a namespace goes to `default`, and
    /// a missing namespace is created. Returns the stored object.
    pub fn apply(&self, object: &impl Serialize) -> Result<Value, ApiError> {
        let mut body = serde_json::to_value(object)
            .map_err(|e| ApiError::bad_request(format!("not serialisable: {e}")))?;
        let (api_version, kind) = (
            body["apiVersion"].as_str().unwrap_or(""),
            body["kind"].as_str().unwrap_or(""),
        );
        let res = resources::by_api_version_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("no resource for {api_version:?} {kind:?}"))
        })?;
        let ns = if resources::RESOURCES[res].namespaced {
            match body["metadata"]["namespace"].as_str() {
                Some(ns) if !ns.is_empty() => Some(ns.to_string()),
                _ => Some("default".to_string()),
            }
        } else {
            None
        };
        let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let opts = WriteOptions {
            create_namespace: true,
            ..WriteOptions::default()
        };
        let mut store = self.shared.store();
        let stored = if store.get(res, ns.as_deref().unwrap_or(""), &name).is_some() {
            store.update(res, ns.as_deref(), &name, body, opts)?
        } else {
            store.create(res, ns.as_deref(), body, opts)?
        };
        Ok(stored.as_ref().clone())
    }

    /// Deletes an object. `kind` is a kind, plural or short name (`Service`, `services`,
    /// `svc`); `namespace` is ignored for cluster-scoped kinds. Returns the deleted object.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let res = resources::by_any_name(kind)
            .ok_or_else(|| ApiError::bad_request(format!("no resource named {kind:?}")))?;
        let ns = resources::RESOURCES[res].namespaced.then_some(namespace);
        let deleted =
            self.shared
                .store()
                .delete(res, ns, name, &Value::Null, WriteOptions::default())?;
        Ok(deleted.as_ref().clone())
    }

    /// The stored object, if any (`kind` as for [`FakeApi::delete`]).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = resources::by_any_name(kind)?;
        let ns = if resources::RESOURCES[res].namespaced {
            namespace
        } else {
            ""
        };
        self.shared
            .store()
            .get(res, ns, name)
            .map(|o| o.as_ref().clone())
    }

    /// The newest resourceVersion (of the last write, to any kind).
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Drops the whole history: a watch or exact list from any earlier resourceVersion now
    /// gets 410 Gone (reason Expired), as after an etcd compaction. Open watches go on.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Ends every open watch stream cleanly, as an apiserver restart or a load balancer's
    /// idle timeout would; clients resume from their last resourceVersion.
    pub fn disconnect_watches(&self) {
        self.shared.disconnect.send_modify(|n| *n += 1);
    }

    /// Makes every open watch that allows bookmarks send one now.
    pub fn send_bookmarks(&self) {
        self.shared.bookmark_now.send_modify(|n| *n += 1);
    }

    /// How many watch streams are open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every connection (open watches end without a final chunk,
    /// as when an apiserver dies). The objects and resourceVersions are kept, as etcd keeps
    /// them. Stopping a stopped server does nothing.
    pub fn stop(&self) {
        let listening = self
            .listening
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(listening) = listening {
            let _ = listening.shutdown.send(());
            let _ = listening.done.recv();
        }
    }

    /// Listens again on the same port (stopping first if running), with the same objects.
    ///
    /// # Panics
    /// If the port cannot be bound again within five seconds.
    pub fn restart(&self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match StdListener::bind(self.shared.addr) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("fakeapi: rebinding {}: {e}", self.shared.addr),
            }
        };
        self.serve(listener);
    }

    pub fn is_running(&self) -> bool {
        self.listening
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests of this verb were made on this resource (plural, e.g. `services`).
    pub fn count(&self, verb: Verb, resource: &str) -> usize {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.verb == verb && r.resource.as_deref() == Some(resource))
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes; true if it held.
    /// This blocks the calling thread: from async code, poll with the runtime's sleep
    /// instead, or a client running on the same thread would never get to run.
    pub fn wait_for(&self, timeout: Duration, condition: impl Fn(&FakeApi) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }

    /// Accepts connections on `listener` until [`FakeApi::stop`].
    fn serve(&self, listener: StdListener) {
        listener
            .set_nonblocking(true)
            .expect("fakeapi: non-blocking listener");
        let (shutdown, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        self.runtime().spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("fakeapi: tokio listener");
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut shutdown_rx => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                server::handle(shared.clone(), req)
                            });
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            drop(listener);
            connections.shutdown().await;
            let _ = done_tx.send(());
        });
        *self.listening.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Listening { shutdown, done });
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
