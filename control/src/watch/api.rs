//! The API server as a source: kube watchers for v1 Services, discovery.k8s.io/v1
//! EndpointSlices and this node's v1 Node.
//!
//! Each resource has one `kube::runtime::watcher` with kube's default backoff parameters
//! (client-go's reflector: 0.8 s doubling to 30 s with jitter, back to 0.8 s after two minutes
//! without a failure) but not its reset on every successful item ([`WatchBackoff`]). The
//! watcher lists, then watches from the list's resource version; a watch the server ends is
//! resumed from the last version seen, and a `410 Gone` (the version was compacted away; API
//! servers send it as an event of a started watch, kube-rs#1042) or a failed list starts a
//! fresh list, whose objects replace the old ones when it completes ([`crate::sync`]). Every
//! error is retried, none ends the watch: an API server that is down at start or goes away
//! later only delays the next change, and the tables keep what was seen last.
//!
//! As kube-proxy, Services and EndpointSlices labelled `service.kubernetes.io/service-proxy-name`
//! or `service.kubernetes.io/headless` are filtered out by the server (label selector), and
//! lists are those of client-go's reflector: `resourceVersion=0`, unpaginated, served from the
//! API server's watch cache rather than etcd, which is what thousands of nodes restarting at
//! once need. Only the Node named `node.name` is watched (field selector).

use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, watcher, DefaultBackoff, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::error_chain;
use crate::config::ApiSource;
use crate::manifests::{
    node_from_object, service_from_object, slice_from_object, LABEL_HEADLESS,
    LABEL_SERVICE_PROXY_NAME,
};
use crate::sync::{Converted, ObjectKey, Resource, Update, WatchEvent};

/// Why no client could be made: the configuration named is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// The API server client for `source` (`None` for [`ApiSource::None`]). It does not connect:
/// an unreachable server shows as watch errors later, retried. Must run inside a tokio runtime
/// (the client's connection pool is a task).
pub async fn client(source: &ApiSource) -> Result<Option<Client>, ClientError> {
    let Some(config) = client_config(source).await? else {
        return Ok(None);
    };
    tracing::info!(server = %config.cluster_url, "API server");
    Client::try_from(config)
        .map(Some)
        .map_err(|e| ClientError(error_chain(&e)))
}

/// Checks, before anything starts, that a client configuration can be made from `source`:
/// the kubeconfig reads and has a current context with a server, or the in-cluster
/// environment and credentials are there. Nothing connects.
pub fn check(source: &ApiSource) -> Result<(), ClientError> {
    if *source == ApiSource::None {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(client_config(source)).map(drop)
}

/// The client configuration `source` names.
async fn client_config(source: &ApiSource) -> Result<Option<kube::Config>, ClientError> {
    Ok(Some(match source {
        ApiSource::None => return Ok(None),
        ApiSource::Kubeconfig(path) => {
            let fail = |e: &dyn std::error::Error| {
                ClientError(format!("{}: {}", path.display(), error_chain(e)))
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(&e))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| fail(&e))?
        }
        ApiSource::InCluster => kube::Config::incluster()
            .map_err(|e| ClientError(format!("in-cluster configuration: {}", error_chain(&e))))?,
        ApiSource::Infer => kube::Config::infer()
            .await
            .map_err(|e| ClientError(error_chain(&e)))?,
    }))
}

/// kube-proxy's selector: objects of other proxies and of headless Services are not ours.
pub fn proxy_label_selector() -> String {
    format!("!{LABEL_SERVICE_PROXY_NAME},!{LABEL_HEADLESS}")
}

/// kube's [`DefaultBackoff`] without the reset that `StreamBackoff` applies after every item
/// that is not an error. The watcher emits `Init` before each list attempt, so with that reset
/// a list that keeps failing (API server down) would be retried every 0.8 to 1.6 s forever, by
/// every node; with it taken out the delays grow to 30 s, and [`DefaultBackoff`]'s own timer
/// brings them back to 0.8 s two minutes after the last failure (client-go's reflector does
/// exactly this).
#[derive(Default)]
pub struct WatchBackoff(DefaultBackoff);

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        self.0.next()
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {}
}

/// The watcher configuration of every resource: lists as client-go's reflector makes them
/// (`resourceVersion=0`, from the watch cache, unpaginated: kube leaves `resourceVersion` out
/// when a page size is set).
fn watcher_config() -> watcher::Config {
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    config
}

/// Watches Services, EndpointSlices and the Node `node_name` until `tx` closes, sending every
/// event to the control loop.
pub async fn watch(client: Client, node_name: String, tx: mpsc::Sender<Update>) {
    let selector = proxy_label_selector();
    let services = watch_resource(
        Api::<core::Service>::all(client.clone()),
        watcher_config().labels(&selector),
        Resource::Service,
        service_from_object,
        Update::Services,
        tx.clone(),
    );
    let slices = watch_resource(
        Api::<discovery::EndpointSlice>::all(client.clone()),
        watcher_config().labels(&selector),
        Resource::EndpointSlice,
        slice_from_object,
        Update::EndpointSlices,
        tx.clone(),
    );
    let nodes = watch_resource(
        Api::<core::Node>::all(client),
        watcher_config().fields(&format!("metadata.name={node_name}")),
        Resource::Node,
        |n| node_from_object(n).map(Some),
        Update::Nodes,
        tx,
    );
    tokio::join!(services, slices, nodes);
}

/// What is worth saying about a watcher's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    /// The first list is complete.
    Listed,
    /// A relist after failures (a lost connection, `410 Gone`) is complete: the objects are
    /// the API server's again.
    Relisted { after_failures: u64 },
    /// A resumed watch delivers events again after failures.
    Recovered { after_failures: u64 },
}

/// A watcher's failures since its last good event, and whether it has listed once.
#[derive(Debug, Default)]
struct Progress {
    failures: u64,
    listed: bool,
}

impl Progress {
    /// Counts a failure; returns the attempt number (failures in a row).
    fn failed(&mut self) -> u64 {
        self.failures += 1;
        self.failures
    }

    /// Takes an event in; what to say about it. A relist is a recovery when it completes, not
    /// at its first object (the objects of a relist only count at `InitDone`).
    fn event<T>(&mut self, event: &WatchEvent<T>) -> Option<Note> {
        let after_failures = self.failures;
        let note = match event {
            WatchEvent::Init | WatchEvent::InitApply(..) => return None,
            WatchEvent::InitDone => {
                let first = !std::mem::replace(&mut self.listed, true);
                if after_failures > 0 {
                    Some(Note::Relisted { after_failures })
                } else {
                    first.then_some(Note::Listed)
                }
            }
            WatchEvent::Apply(..) | WatchEvent::Delete(_) => {
                (after_failures > 0).then_some(Note::Recovered { after_failures })
            }
        };
        self.failures = 0;
        note
    }
}

/// One resource's watch loop. Errors are logged (each retry, with the attempt number) and
/// reported; the first success after errors is logged too.
async fn watch_resource<K, T>(
    api: Api<K>,
    config: watcher::Config,
    resource: Resource,
    convert: fn(K) -> Converted<T>,
    wrap: fn(WatchEvent<T>) -> Update,
    tx: mpsc::Sender<Update>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let key = |o: &K| ObjectKey::new(o.namespace().unwrap_or_default(), o.name_any());
    let stream = watcher(api, config).backoff(WatchBackoff::default());
    let mut stream = std::pin::pin!(stream);
    let mut progress = Progress::default();
    while let Some(item) = stream.next().await {
        let update = match item {
            Ok(event) => {
                let event = match event {
                    Event::Init => WatchEvent::Init,
                    Event::InitApply(o) => WatchEvent::InitApply(key(&o), convert(o)),
                    Event::InitDone => WatchEvent::InitDone,
                    Event::Apply(o) => WatchEvent::Apply(key(&o), convert(o)),
                    Event::Delete(o) => WatchEvent::Delete(key(&o)),
                };
                match progress.event(&event) {
                    Some(Note::Listed) => tracing::info!(%resource, "API server listed"),
                    Some(Note::Relisted { after_failures }) => tracing::info!(
                        %resource,
                        after_failures,
                        "API server watch recovered: relisted"
                    ),
                    Some(Note::Recovered { after_failures }) => tracing::info!(
                        %resource,
                        after_failures,
                        "API server watch recovered"
                    ),
                    None => {}
                }
                wrap(event)
            }
            Err(e) => {
                let attempt = progress.failed();
                tracing::warn!(
                    %resource,
                    attempt,
                    "API server watch failed: {}; retrying with backoff (the tables keep what was seen last)",
                    error_chain(&e)
                );
                Update::WatchFailed(resource)
            }
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    #[test]
    fn test_first_list_is_listed() {
        let mut p = Progress::default();
        assert_eq!(p.event::<()>(&WatchEvent::Init), None);
        assert_eq!(
            p.event(&WatchEvent::InitApply(key("a"), Ok(Some(())))),
            None
        );
        assert_eq!(p.event::<()>(&WatchEvent::InitDone), Some(Note::Listed));
        assert_eq!(p.event(&WatchEvent::Apply(key("a"), Ok(Some(())))), None);
        // A relist without failures (the watcher's own) is nothing to report.
        assert_eq!(p.event::<()>(&WatchEvent::Init), None);
        assert_eq!(p.event::<()>(&WatchEvent::InitDone), None);
    }

    /// After a `410 Gone` the watcher relists: the relist's objects come before it is
    /// complete, and the recovery is reported once, as a relist, when it is.
    #[test]
    fn test_relist_after_failures_is_reported_when_complete() {
        let mut p = Progress::default();
        p.event::<()>(&WatchEvent::Init);
        p.event::<()>(&WatchEvent::InitDone);
        assert_eq!(p.failed(), 1);
        p.event::<()>(&WatchEvent::Init);
        assert_eq!(p.failed(), 2, "a list that fails counts on");
        assert_eq!(p.event::<()>(&WatchEvent::Init), None);
        assert_eq!(
            p.event(&WatchEvent::InitApply(key("a"), Ok(Some(())))),
            None
        );
        assert_eq!(
            p.event(&WatchEvent::InitApply(key("b"), Ok(Some(())))),
            None
        );
        assert_eq!(
            p.event::<()>(&WatchEvent::InitDone),
            Some(Note::Relisted { after_failures: 2 })
        );
        assert_eq!(p.event(&WatchEvent::Apply(key("a"), Ok(Some(())))), None);
        assert_eq!(p.failed(), 1, "the count starts again");
    }

    /// A watch resumed after a lost connection (no relist) recovers at its first event.
    #[test]
    fn test_resumed_watch_recovers_at_its_first_event() {
        let mut p = Progress::default();
        p.event::<()>(&WatchEvent::Init);
        p.event::<()>(&WatchEvent::InitDone);
        p.failed();
        assert_eq!(
            p.event::<()>(&WatchEvent::Delete(key("a"))),
            Some(Note::Recovered { after_failures: 1 })
        );
        assert_eq!(p.event::<()>(&WatchEvent::Delete(key("b"))), None);
    }
}
