//! The kube crate against the fake API: a client from the written kubeconfig (plain http),
//! discovery, and `kube::runtime::watcher` / `reflector` through changes, a 410 Gone after
//! compaction, and the API server going away and coming back.

use std::time::Duration;

use fakeapi::{FakeApi, Options, Verb};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{reflector, WatchStreamExt};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

fn service(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"ports": [{"port": 80}]},
    })
}

/// A client built the way a deployment would build it: from a kubeconfig file.
async fn client(api: &FakeApi) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    api.write_kubeconfig(&path).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// A watcher event in a few words: `Init`, `InitApply a`, `InitDone`, `Apply a`, `Delete a`,
/// or `Error 410`.
fn describe(item: Result<Event<Service>, watcher::Error>) -> String {
    match item {
        Ok(Event::Init) => "Init".into(),
        Ok(Event::InitApply(s)) => format!("InitApply {}", s.name_any()),
        Ok(Event::InitDone) => "InitDone".into(),
        Ok(Event::Apply(s)) => format!("Apply {}", s.name_any()),
        Ok(Event::Delete(s)) => format!("Delete {}", s.name_any()),
        Err(watcher::Error::WatchError(status)) => format!("Error {}", status.code),
        Err(e) => format!("Error {e}"),
    }
}

/// Runs a watcher stream in its own task (so it keeps reconnecting while the test waits) and
/// hands its events over as words.
fn spawn<S>(stream: S) -> mpsc::UnboundedReceiver<String>
where
    S: Stream<Item = Result<Event<Service>, watcher::Error>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if tx.send(describe(item)).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next(events: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("a watcher event within 20 s")
        .expect("the watcher stream does not end")
}

async fn expect(events: &mut mpsc::UnboundedReceiver<String>, wanted: &[&str]) {
    for want in wanted {
        assert_eq!(next(events).await, *want);
    }
}

async fn until(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_kube_client_from_the_kubeconfig_speaks_plain_http() {
    let api = FakeApi::start();
    let client = client(&api).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.has_group("discovery.k8s.io"));
    let (slices, _) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
        ))
        .expect("EndpointSlices are discovered");
    assert_eq!(slices.plural, "endpointslices");

    let services: Api<Service> = Api::default_namespaced(client);
    let created = services
        .create(
            &Default::default(),
            &serde_json::from_value(service("web")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        created.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.0.10")
    );
    let conflict = services
        .create(
            &Default::default(),
            &serde_json::from_value(service("web")).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{conflict:?}"
    );
}

#[tokio::test]
async fn the_watcher_sees_added_modified_deleted() {
    let api = FakeApi::start();
    api.apply(&service("existing")).unwrap();
    let services: Api<Service> = Api::all(client(&api).await);
    let mut stream = spawn(watcher(services, watcher::Config::default()));
    expect(&mut stream, &["Init", "InitApply existing", "InitDone"]).await;

    let list_rv = api.requests()[0].param("resourceVersion");
    assert!(list_rv.is_none(), "the first list is a consistent read");
    let mut web = service("web");
    api.apply(&web).unwrap();
    expect(&mut stream, &["Apply web"]).await;
    web["spec"]["ports"][0]["port"] = json!(8080);
    api.apply(&web).unwrap();
    expect(&mut stream, &["Apply web"]).await;
    api.delete("svc", "default", "web").unwrap();
    expect(&mut stream, &["Delete web"]).await;

    assert_eq!(api.count(Verb::List, "services"), 1);
    assert_eq!(api.count(Verb::Watch, "services"), 1);
    let watch = api
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Watch)
        .unwrap();
    assert_eq!(watch.param("allowWatchBookmarks").as_deref(), Some("true"));
    assert_eq!(watch.param("resourceVersion"), Some("5".into()));
}

fn watcher(
    api: Api<Service>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<Service>, watcher::Error>> + Send {
    kube::runtime::watcher(api, config)
}

#[tokio::test]
async fn the_watcher_relists_after_410_gone() {
    // No periodic bookmarks: the watcher must not learn the newer resourceVersion.
    let api = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_secs(3600),
        ..Options::default()
    });
    api.apply(&service("a")).unwrap();
    let services: Api<Service> = Api::all(client(&api).await);
    let mut stream = spawn(watcher(services, watcher::Config::default()).default_backoff());
    expect(&mut stream, &["Init", "InitApply a", "InitDone"]).await;
    let watched_from = api.resource_version();
    until(|| api.open_watches() == 1).await;

    // Another kind moves the resourceVersion on, etcd compacts, the watch is cut.
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
        .unwrap();
    api.compact();
    api.disconnect_watches();

    // The watcher resumes from where it was, is told 410, and lists again.
    expect(
        &mut stream,
        &["Error 410", "Init", "InitApply a", "InitDone"],
    )
    .await;
    let watches: Vec<Option<String>> = api
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Watch)
        .map(|r| r.param("resourceVersion"))
        .collect();
    assert_eq!(
        watches[..2],
        [
            Some(watched_from.to_string()),
            Some(watched_from.to_string())
        ]
    );
    assert_eq!(api.count(Verb::List, "services"), 2);

    api.apply(&service("b")).unwrap();
    expect(&mut stream, &["Apply b"]).await;
}

#[tokio::test]
async fn the_reflector_catches_up_after_the_api_server_returns() {
    let api = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_secs(3600),
        ..Options::default()
    });
    api.apply(&service("a")).unwrap();
    api.apply(&service("b")).unwrap();
    let services: Api<Service> = Api::all(client(&api).await);
    let (store, writer) = reflector::store();
    let mut stream =
        spawn(reflector(writer, watcher(services, watcher::Config::default())).default_backoff());
    expect(
        &mut stream,
        &["Init", "InitApply a", "InitApply b", "InitDone"],
    )
    .await;
    let mut names: Vec<String> = store.state().iter().map(|s| s.name_any()).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);

    // The API server dies; the cluster changes meanwhile and etcd compacts.
    api.stop();
    api.delete("svc", "default", "a").unwrap();
    api.apply(&service("c")).unwrap();
    api.compact();
    // The watcher fails to reconnect and backs off.
    let failure = next(&mut stream).await;
    assert!(failure.starts_with("Error"), "{failure}");

    api.restart();
    // Back: the resumed watch is too old, so the watcher relists.
    let mut seen = Vec::new();
    loop {
        let event = next(&mut stream).await;
        let done = event == "InitDone";
        seen.push(event);
        if done {
            break;
        }
    }
    assert!(seen.contains(&"Error 410".to_string()), "{seen:?}");
    assert_eq!(
        seen[seen.len() - 3..],
        ["InitApply b", "InitApply c", "InitDone"]
    );
    let mut names: Vec<String> = store.state().iter().map(|s| s.name_any()).collect();
    names.sort();
    assert_eq!(names, ["b", "c"]);
}

#[tokio::test]
async fn streaming_lists_and_label_selectors() {
    let api = FakeApi::start();
    api.apply(&service("web")).unwrap();
    api.apply(&service("db")).unwrap();
    let services: Api<Service> = Api::namespaced(client(&api).await, "default");
    let config = watcher::Config::default()
        .streaming_lists()
        .labels("app=web");
    let mut stream = spawn(watcher(services, config));
    expect(&mut stream, &["Init", "InitApply web", "InitDone"]).await;
    api.apply(&service("db2")).unwrap();
    let mut web = service("web");
    web["metadata"]["labels"]["app"] = json!("retired");
    api.apply(&web).unwrap();
    // Leaving the selector is a deletion for this watch.
    expect(&mut stream, &["Delete web"]).await;

    assert_eq!(api.count(Verb::List, "services"), 0);
    let watch = api.requests().into_iter().find(|r| r.verb == Verb::Watch);
    let watch = watch.unwrap();
    assert_eq!(watch.param("sendInitialEvents").as_deref(), Some("true"));
    assert_eq!(watch.param("labelSelector").as_deref(), Some("app=web"));
}
