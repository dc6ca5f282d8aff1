//! The list/watch protocol, spoken by hand over plain HTTP/1.1.

mod support;

use std::time::Duration;

use fakeapi::{FakeApi, Options, Verb};
use serde_json::{json, Value};
use support::{get, patch, request, send_json, End, Watch};

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn service(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
    })
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .parse()
        .expect("a numeric resourceVersion")
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[test]
fn discovery_documents_legacy_and_aggregated() {
    let api = FakeApi::start();
    let version = get(api.addr(), "/version").json();
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("33"))
    );

    let core = get(api.addr(), "/api").json();
    assert_eq!(core["kind"], "APIVersions");
    assert_eq!(core["versions"], json!(["v1"]));

    let v1 = get(api.addr(), "/api/v1").json();
    let resources: Vec<&str> = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(resources, ["namespaces", "nodes", "services"]);
    assert_eq!(v1["resources"][2]["shortNames"], json!(["svc"]));

    let groups = get(api.addr(), "/apis").json();
    assert_eq!(groups["groups"][0]["name"], "discovery.k8s.io");
    let group = get(api.addr(), "/apis/discovery.k8s.io").json();
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "discovery.k8s.io/v1"
    );
    let slices = get(api.addr(), "/apis/discovery.k8s.io/v1").json();
    assert_eq!(slices["resources"][0]["kind"], "EndpointSlice");
    assert_eq!(slices["resources"][0]["namespaced"], true);

    // kubectl's Accept header gets aggregated discovery, with its media type.
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                  application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                  application/json";
    let aggregated = request(api.addr(), "GET", "/apis", &[("Accept", accept)], b"");
    assert!(aggregated
        .header("content-type")
        .unwrap()
        .contains("as=APIGroupDiscoveryList"));
    let aggregated = aggregated.json();
    assert_eq!(aggregated["kind"], "APIGroupDiscoveryList");
    let resource = &aggregated["items"][0]["versions"][0]["resources"][0];
    assert_eq!(resource["resource"], "endpointslices");
    assert_eq!(resource["scope"], "Namespaced");

    let missing = get(api.addr(), "/apis/apps/v1/deployments");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["kind"], "Status");
}

#[test]
fn create_stamps_metadata_and_defaults_and_a_second_create_is_409() {
    let api = FakeApi::start();
    let before = api.resource_version();
    let created = send_json(api.addr(), "POST", SERVICES, &service("web", json!({})));
    assert_eq!(created.status, 201);
    let svc = created.json();
    assert_eq!(rv(&svc), before + 1);
    let meta = &svc["metadata"];
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(meta["generation"], 1);
    // The apiserver's defaults and allocations.
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);

    let again = send_json(api.addr(), "POST", SERVICES, &service("web", json!({})));
    assert_eq!(again.status, 409);
    let status = again.json();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("AlreadyExists"))
    );
    assert_eq!(status["message"], "services \"web\" already exists");

    let fetched = get(api.addr(), &format!("{SERVICES}/web")).json();
    assert_eq!(fetched, svc);
    let missing = get(api.addr(), &format!("{SERVICES}/nope"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["reason"], "NotFound");

    // A namespace that does not exist is 404, as on a real cluster.
    let elsewhere = send_json(
        api.addr(),
        "POST",
        "/api/v1/namespaces/nowhere/services",
        &json!({"metadata": {"name": "x"}, "spec": {}}),
    );
    assert_eq!(elsewhere.status, 404);
    assert_eq!(
        elsewhere.json()["message"],
        "namespaces \"nowhere\" not found"
    );
}

#[test]
fn lists_carry_the_resource_version_and_paginate_over_one_snapshot() {
    let api = FakeApi::start();
    for name in ["a", "b", "c", "d", "e"] {
        api.apply(&service(name, json!({}))).unwrap();
    }
    let all = get(api.addr(), SERVICES).json();
    assert_eq!(all["kind"], "ServiceList");
    assert_eq!(names(&all), ["a", "b", "c", "d", "e"]);
    assert_eq!(
        all["metadata"]["resourceVersion"],
        api.resource_version().to_string()
    );
    // As from the apiserver, list items carry no kind.
    assert!(all["items"][0].get("kind").is_none());

    let page1 = get(api.addr(), &format!("{SERVICES}?limit=2")).json();
    assert_eq!(names(&page1), ["a", "b"]);
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();

    // Changes between pages do not show: the pages are one snapshot.
    api.delete("svc", "default", "c").unwrap();
    api.apply(&service("bb", json!({}))).unwrap();
    let page2 = get(api.addr(), &format!("{SERVICES}?limit=2&continue={token}")).json();
    assert_eq!(names(&page2), ["c", "d"]);
    assert_eq!(
        page2["metadata"]["resourceVersion"],
        page1["metadata"]["resourceVersion"]
    );
    let token2 = page2["metadata"]["continue"].as_str().unwrap().to_string();
    let page3 = get(api.addr(), &format!("{SERVICES}?limit=2&continue={token2}")).json();
    assert_eq!(names(&page3), ["e"]);
    assert!(page3["metadata"].get("continue").is_none());

    // After a compaction the snapshot is gone: 410 Expired, as etcd answers.
    api.compact();
    let expired = get(api.addr(), &format!("{SERVICES}?limit=2&continue={token}"));
    assert_eq!(expired.status, 410);
    assert_eq!(expired.json()["reason"], "Expired");
}

#[test]
fn exact_lists_older_than_the_window_are_410_and_not_older_than_is_served() {
    let api = FakeApi::start();
    api.apply(&service("a", json!({}))).unwrap();
    let old = api.resource_version();
    api.apply(&service("b", json!({}))).unwrap();

    let exact = get(
        api.addr(),
        &format!("{SERVICES}?resourceVersion={old}&resourceVersionMatch=Exact"),
    )
    .json();
    assert_eq!(names(&exact), ["a"]);
    assert_eq!(exact["metadata"]["resourceVersion"], old.to_string());

    api.compact();
    let gone = get(
        api.addr(),
        &format!("{SERVICES}?resourceVersion={old}&resourceVersionMatch=Exact"),
    );
    assert_eq!(gone.status, 410);
    let status = gone.json();
    assert_eq!(
        (status["code"].as_i64(), status["reason"].as_str()),
        (Some(410), Some("Expired"))
    );

    // NotOlderThan may be served from anything newer, so it is never too old.
    let newer = get(
        api.addr(),
        &format!("{SERVICES}?resourceVersion={old}&resourceVersionMatch=NotOlderThan"),
    )
    .json();
    assert_eq!(names(&newer), ["a", "b"]);

    let future = api.resource_version() + 100;
    let too_new = get(api.addr(), &format!("{SERVICES}?resourceVersion={future}"));
    assert_eq!(too_new.status, 504);
}

#[test]
fn label_and_field_selectors_and_all_namespaces() {
    let api = FakeApi::start();
    api.apply(&service("web", json!({"app": "web", "tier": "front"})))
        .unwrap();
    api.apply(&service("db", json!({"app": "db"}))).unwrap();
    let mut other = service("web", json!({"app": "web"}));
    other["metadata"]["namespace"] = json!("prod");
    api.apply(&other).unwrap();

    let list = |query: &str| get(api.addr(), &format!("/api/v1/services?{query}")).json();
    let keys = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(keys(&list("")), ["default/db", "default/web", "prod/web"]);
    assert_eq!(
        keys(&list("labelSelector=app%3Dweb")),
        ["default/web", "prod/web"]
    );
    assert_eq!(keys(&list("labelSelector=app!%3Dweb")), ["default/db"]);
    assert_eq!(keys(&list("labelSelector=tier")), ["default/web"]);
    assert_eq!(
        keys(&list("labelSelector=!tier")),
        ["default/db", "prod/web"]
    );
    assert_eq!(
        keys(&list("labelSelector=app+in+(db,cache)")),
        ["default/db"]
    );
    assert_eq!(
        keys(&list(
            "fieldSelector=metadata.name%3Dweb,metadata.namespace%3Dprod"
        )),
        ["prod/web"]
    );
    let bad = get(
        api.addr(),
        "/api/v1/services?fieldSelector=spec.type%3DClusterIP",
    );
    assert_eq!(bad.status, 400);

    let prod = get(api.addr(), "/api/v1/namespaces/prod/services").json();
    assert_eq!(names(&prod), ["web"]);
}

#[test]
fn a_watch_streams_live_changes_in_order() {
    let api = FakeApi::start();
    api.apply(&service("before", json!({}))).unwrap();
    let list = get(api.addr(), SERVICES).json();
    let from = list["metadata"]["resourceVersion"].as_str().unwrap();
    let mut watch = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={from}"),
    );
    assert_eq!(watch.status, 200);
    assert!(
        watch.next_within(Duration::from_millis(200)).is_none(),
        "nothing happened after the list's resourceVersion"
    );

    let created = send_json(api.addr(), "POST", SERVICES, &service("web", json!({}))).json();
    let mut modified = created.clone();
    modified["metadata"]["labels"] = json!({"changed": "yes"});
    let put = format!("{SERVICES}/web");
    let modified = send_json(api.addr(), "PUT", &put, &modified).json();
    let deleted = request(api.addr(), "DELETE", &put, &[], b"");
    assert_eq!(deleted.status, 200);

    let added = watch.next_change();
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"], created);
    let changed = watch.next_change();
    assert_eq!(changed["type"], "MODIFIED");
    assert_eq!(changed["object"]["metadata"]["labels"]["changed"], "yes");
    let gone = watch.next_change();
    assert_eq!(gone["type"], "DELETED");
    assert_eq!(gone["object"]["metadata"]["name"], "web");
    assert_eq!(rv(&changed["object"]), rv(&modified));
    assert!(rv(&created) < rv(&modified) && rv(&modified) < rv(&gone["object"]));

    // Changes to other namespaces and kinds are not this watch's business.
    let mut elsewhere = service("web", json!({}));
    elsewhere["metadata"]["namespace"] = json!("prod");
    api.apply(&elsewhere).unwrap();
    assert!(watch.next_within(Duration::from_millis(200)).is_none());
}

#[test]
fn a_watch_without_resource_version_starts_with_the_current_objects() {
    let api = FakeApi::start();
    api.apply(&service("a", json!({}))).unwrap();
    api.apply(&service("b", json!({}))).unwrap();
    let mut watch = Watch::open(api.addr(), &format!("{SERVICES}?watch=true"));
    for name in ["a", "b"] {
        let event = watch.next();
        assert_eq!(
            (
                event["type"].as_str(),
                event["object"]["metadata"]["name"].as_str()
            ),
            (Some("ADDED"), Some(name))
        );
        // Watch events carry kind and apiVersion.
        assert_eq!(event["object"]["kind"], "Service");
    }
    api.apply(&service("c", json!({}))).unwrap();
    assert_eq!(watch.next()["object"]["metadata"]["name"], "c");
}

#[test]
fn a_watch_from_an_older_version_replays_history_and_selectors_see_transitions() {
    let api = FakeApi::start();
    let start = api.resource_version();
    api.apply(&service("web", json!({"app": "web"}))).unwrap();
    api.apply(&service("web", json!({"app": "other"}))).unwrap();
    api.apply(&service("web", json!({"app": "web"}))).unwrap();

    let mut all = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={start}"),
    );
    let kinds: Vec<Value> = (0..3).map(|_| all.next()["type"].clone()).collect();
    assert_eq!(
        kinds,
        [json!("ADDED"), json!("MODIFIED"), json!("MODIFIED")]
    );

    // With a selector, leaving it is DELETED and coming back is ADDED.
    let mut selected = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={start}&labelSelector=app%3Dweb"),
    );
    let kinds: Vec<Value> = (0..3).map(|_| selected.next()["type"].clone()).collect();
    assert_eq!(kinds, [json!("ADDED"), json!("DELETED"), json!("ADDED")]);
}

#[test]
fn bookmarks_come_only_when_allowed_and_carry_the_latest_version() {
    let api = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_secs(3600),
        ..Options::default()
    });
    let from = api.resource_version();
    let path = format!("{SERVICES}?watch=1&resourceVersion={from}");
    let mut plain = Watch::open(api.addr(), &path);
    let mut with = Watch::open(api.addr(), &format!("{path}&allowWatchBookmarks=true"));
    assert!(api.wait_for(Duration::from_secs(5), |a| a.open_watches() == 2));

    // An unrelated write moves the resourceVersion; the bookmark tells the watch so.
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
        .unwrap();
    api.send_bookmarks();
    let bookmark = with.next();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["kind"], "Service");
    assert_eq!(rv(&bookmark["object"]), api.resource_version());
    assert!(plain.next_within(Duration::from_millis(300)).is_none());

    // The periodic ones.
    let api = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    });
    let mut ticking = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&allowWatchBookmarks=true&resourceVersion=1"),
    );
    assert_eq!(ticking.next()["type"], "BOOKMARK");
    assert_eq!(ticking.next()["type"], "BOOKMARK");
}

#[test]
fn send_initial_events_ends_the_initial_state_with_an_annotated_bookmark() {
    let api = FakeApi::start();
    api.apply(&service("a", json!({}))).unwrap();
    let path = format!(
        "{SERVICES}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan\
         &allowWatchBookmarks=true&resourceVersion=0"
    );
    let mut watch = Watch::open(api.addr(), &path);
    assert_eq!(watch.next()["type"], "ADDED");
    let end = watch.next();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(rv(&end["object"]), api.resource_version());

    let invalid = get(
        api.addr(),
        &format!("{SERVICES}?watch=1&sendInitialEvents=true"),
    );
    assert_eq!(invalid.status, 422);
}

#[test]
fn a_watch_from_a_compacted_version_gets_410_gone_as_an_error_event() {
    let api = FakeApi::start();
    let old = api.resource_version();
    api.apply(&service("a", json!({}))).unwrap();
    api.compact();
    let mut watch = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={old}"),
    );
    assert_eq!(watch.status, 200);
    let error = watch.next();
    assert_eq!(error["type"], "ERROR");
    let status = &error["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(status["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("too old resource version: {old} (")));
    assert_eq!(watch.end(Duration::from_secs(5)), Some(&End::Clean));

    // From the compaction point on, watching works again.
    let now = api.resource_version();
    let mut fresh = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={now}"),
    );
    api.apply(&service("b", json!({}))).unwrap();
    assert_eq!(fresh.next()["type"], "ADDED");
}

#[test]
fn the_history_window_compacts_by_itself() {
    let api = FakeApi::start_with(Options {
        history_limit: 3,
        ..Options::default()
    });
    let old = api.resource_version();
    for name in ["a", "b", "c", "d"] {
        api.apply(&service(name, json!({}))).unwrap();
    }
    let mut watch = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={old}"),
    );
    assert_eq!(watch.next()["object"]["code"], 410);
    let recent = api.resource_version() - 3;
    let mut watch = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={recent}"),
    );
    let replayed: Vec<Value> = (0..3)
        .map(|_| watch.next()["object"]["metadata"]["name"].clone())
        .collect();
    assert_eq!(replayed, [json!("b"), json!("c"), json!("d")]);
}

#[test]
fn a_stale_update_is_409_conflict_and_generation_follows_the_spec() {
    let api = FakeApi::start();
    let path = format!("{SERVICES}/web");
    let v1 = send_json(api.addr(), "POST", SERVICES, &service("web", json!({}))).json();

    let mut relabelled = v1.clone();
    relabelled["metadata"]["labels"] = json!({"x": "1"});
    let v2 = send_json(api.addr(), "PUT", &path, &relabelled).json();
    assert!(rv(&v2) > rv(&v1));
    assert_eq!(v2["metadata"]["generation"], 1, "labels are not spec");

    let mut stale = v1.clone();
    stale["spec"]["ports"][0]["port"] = json!(81);
    let conflict = send_json(api.addr(), "PUT", &path, &stale);
    assert_eq!(conflict.status, 409);
    let status = conflict.json();
    assert_eq!(status["reason"], "Conflict");
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("the object has been modified"));

    let mut fresh = v2.clone();
    fresh["spec"]["ports"][0]["port"] = json!(81);
    let v3 = send_json(api.addr(), "PUT", &path, &fresh).json();
    assert_eq!(v3["metadata"]["generation"], 2);
    assert_eq!(v3["metadata"]["uid"], v1["metadata"]["uid"]);
    assert_eq!(v3["spec"]["clusterIP"], v1["spec"]["clusterIP"]);

    // An update that changes nothing writes nothing.
    let same = send_json(api.addr(), "PUT", &path, &v3).json();
    assert_eq!(rv(&same), rv(&v3));

    let missing = send_json(
        api.addr(),
        "PUT",
        &format!("{SERVICES}/nope"),
        &service("nope", json!({})),
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn patches_merge_strategic_and_server_side_apply() {
    let api = FakeApi::start();
    let path = format!("{SERVICES}/web");
    let mut svc = service("web", json!({"app": "web"}));
    svc["spec"]["ports"] = json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]);
    api.apply(&svc).unwrap();

    let merged = patch(
        api.addr(),
        &path,
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"app":null,"team":"a"}}}"#,
    );
    assert_eq!(merged.status, 200);
    assert_eq!(merged.json()["metadata"]["labels"], json!({"team": "a"}));

    // kubectl apply's patch for "change port 80's targetPort, drop 443".
    let strategic = patch(
        api.addr(),
        &path,
        "application/strategic-merge-patch+json",
        r#"{"spec":{"$setElementOrder/ports":[{"port":80}],
            "ports":[{"port":80,"targetPort":8080},{"port":443,"$patch":"delete"}]}}"#,
    )
    .json();
    assert_eq!(
        strategic["spec"]["ports"],
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}])
    );

    // Server-side apply creates, then merges.
    let apply_path = format!("{SERVICES}/api?fieldManager=test");
    let body =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  ports:\n  - port: 9000\n";
    let created = patch(
        api.addr(),
        &apply_path,
        "application/apply-patch+yaml",
        body,
    );
    assert_eq!(created.status, 201);
    let body = body.replace("9000", "9001");
    let updated = patch(
        api.addr(),
        &apply_path,
        "application/apply-patch+yaml",
        &body,
    );
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json()["spec"]["ports"][0]["port"], 9001);

    let missing = patch(
        api.addr(),
        &format!("{SERVICES}/nope"),
        "application/merge-patch+json",
        "{}",
    );
    assert_eq!(missing.status, 404);
    let unsupported = patch(api.addr(), &path, "application/json-patch+json", "[]");
    assert_eq!(unsupported.status, 415);
}

#[test]
fn strict_field_validation_rejects_unknown_fields_and_lenient_prunes_them() {
    let api = FakeApi::start();
    let mut body = service("web", json!({}));
    body["spec"]["portz"] = json!([]);
    let strict = send_json(
        api.addr(),
        "POST",
        &format!("{SERVICES}?fieldValidation=Strict"),
        &body,
    );
    assert_eq!(strict.status, 400);
    assert!(strict.json()["message"]
        .as_str()
        .unwrap()
        .contains("unknown field \"spec.portz\""));
    let lenient = send_json(api.addr(), "POST", SERVICES, &body).json();
    assert!(lenient["spec"].get("portz").is_none());

    let mut wrong_type = service("typed", json!({}));
    wrong_type["spec"]["ports"][0]["port"] = json!("eighty");
    assert_eq!(
        send_json(api.addr(), "POST", SERVICES, &wrong_type).status,
        400
    );
}

#[test]
fn delete_returns_the_object_and_a_namespace_takes_its_contents_along() {
    let api = FakeApi::start();
    let mut svc = service("web", json!({}));
    svc["metadata"]["namespace"] = json!("team");
    api.apply(&svc).unwrap();
    let mut watch = Watch::open(api.addr(), "/api/v1/services?watch=1");
    assert_eq!(watch.next()["type"], "ADDED");

    let stale = request(
        api.addr(),
        "DELETE",
        "/api/v1/namespaces/team/services/web",
        &[("Content-Type", "application/json")],
        br#"{"preconditions":{"resourceVersion":"1"}}"#,
    );
    assert_eq!(stale.status, 409);

    let deleted = request(api.addr(), "DELETE", "/api/v1/namespaces/team", &[], b"");
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json()["kind"], "Namespace");
    let gone = watch.next();
    assert_eq!(gone["type"], "DELETED");
    assert_eq!(gone["object"]["metadata"]["name"], "web");
    assert_eq!(
        get(api.addr(), "/api/v1/namespaces/team/services/web").status,
        404
    );
    assert_eq!(
        request(api.addr(), "DELETE", "/api/v1/namespaces/team", &[], b"").status,
        404
    );
}

#[test]
fn watches_end_at_their_timeout_and_on_disconnect() {
    let api = FakeApi::start();
    let mut timed = Watch::open(api.addr(), &format!("{SERVICES}?watch=1&timeoutSeconds=1"));
    assert_eq!(timed.end(Duration::from_secs(5)), Some(&End::Clean));

    let mut a = Watch::open(api.addr(), &format!("{SERVICES}?watch=1"));
    let mut b = Watch::open(api.addr(), "/api/v1/nodes?watch=1");
    assert!(api.wait_for(Duration::from_secs(5), |a| a.open_watches() == 2));
    api.disconnect_watches();
    assert_eq!(a.end(Duration::from_secs(5)), Some(&End::Clean));
    assert_eq!(b.end(Duration::from_secs(5)), Some(&End::Clean));
    assert!(api.wait_for(Duration::from_secs(5), |a| a.open_watches() == 0));
}

#[test]
fn stop_drops_connections_and_restart_serves_the_same_state_on_the_same_port() {
    let api = FakeApi::start();
    api.apply(&service("web", json!({}))).unwrap();
    let rv_before = api.resource_version();
    let mut watch = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={rv_before}"),
    );
    assert!(api.wait_for(Duration::from_secs(5), |a| a.open_watches() == 1));

    api.stop();
    assert!(!api.is_running());
    assert_eq!(watch.end(Duration::from_secs(5)), Some(&End::Broken));
    assert!(std::net::TcpStream::connect(api.addr()).is_err());

    // The cluster changes while its API server is away (the hooks work without it).
    api.apply(&service("while-down", json!({}))).unwrap();

    api.restart();
    assert!(api.is_running());
    let list = get(api.addr(), SERVICES).json();
    assert_eq!(names(&list), ["web", "while-down"]);
    let mut resumed = Watch::open(
        api.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={rv_before}"),
    );
    assert_eq!(resumed.next()["object"]["metadata"]["name"], "while-down");
}

#[test]
fn the_request_log_names_verbs_and_resources() {
    let api = FakeApi::start();
    get(api.addr(), "/api/v1/services?limit=500");
    let mut w = Watch::open(
        api.addr(),
        "/api/v1/services?watch=true&resourceVersion=1&timeoutSeconds=1",
    );
    w.end(Duration::from_secs(5));
    send_json(api.addr(), "POST", SERVICES, &service("web", json!({})));
    assert_eq!(api.count(Verb::List, "services"), 1);
    assert_eq!(api.count(Verb::Watch, "services"), 1);
    assert_eq!(api.count(Verb::Create, "services"), 1);
    let watch = &api.requests()[1];
    assert_eq!(watch.param("resourceVersion").as_deref(), Some("1"));
    assert_eq!(watch.path, "/api/v1/services");
    api.clear_requests();
    assert!(api.requests().is_empty());
}

#[test]
fn hooks_apply_idempotently_and_create_namespaces() {
    let api = FakeApi::start();
    let mut svc = service("web", json!({}));
    svc["metadata"]["namespace"] = json!("fresh");
    let first = api.apply(&svc).unwrap();
    assert!(api.get("Namespace", "", "fresh").is_some());
    let rv_after = api.resource_version();
    let again = api.apply(&svc).unwrap();
    assert_eq!(again, first);
    assert_eq!(api.resource_version(), rv_after, "no change, no write");

    // Typed k8s-openapi objects work as well.
    let node = k8s_openapi::api::core::v1::Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("node-a".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.apply(&node).unwrap();
    assert_eq!(
        api.get("nodes", "", "node-a").unwrap()["metadata"]["generation"],
        1
    );
    assert!(api.delete("no", "", "node-a").is_ok());
    assert_eq!(api.delete("no", "", "node-a").unwrap_err().code, 404);
}
