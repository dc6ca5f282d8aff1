//! HTTP/1.1 front end: routing of the apiserver's paths, discovery, list/get/write handlers
//! and the answers' shapes (lists, Tables, Status errors). Watches are in `watch.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch as signal;

use crate::resources::{self, RESOURCES};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{now, ApiError, Filter, PatchType, Store, WriteOptions};
use crate::{Options, Request, Verb};

pub type Body = BoxBody<Bytes, Infallible>;

/// State shared by the connections, the watch tasks and the test hooks.
#[derive(Debug)]
pub struct Shared {
    pub store: Mutex<Store>,
    pub log: Mutex<Vec<Request>>,
    /// Bumped by `disconnect_watches`: every open watch ends its stream.
    pub disconnect: signal::Sender<u64>,
    /// Bumped by `send_bookmarks`: every watch that allows bookmarks sends one now.
    pub bookmark_now: signal::Sender<u64>,
    pub open_watches: AtomicUsize,
    pub options: Options,
    pub addr: SocketAddr,
}

impl Shared {
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panicking handler cannot leave the store half-written (commits do not panic), so
        // a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Query parameters, percent-decoded.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Params {
        Params(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a path names.
#[derive(Debug)]
pub enum Route {
    Version,
    Health,
    CoreGroup,
    NamedGroups,
    Group(&'static str),
    GroupVersion(&'static str),
    Collection {
        res: usize,
        ns: Option<String>,
    },
    Object {
        res: usize,
        ns: Option<String>,
        name: String,
    },
    OpenApiIndex,
    OpenApi(String),
    Unknown,
}

pub fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let known_group = |g: &str| resources::named_groups().into_iter().find(|n| *n == g);
    match segs[..] {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreGroup,
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", ref gv @ ..] => Route::OpenApi(gv.join("/")),
        ["apis"] => Route::NamedGroups,
        ["api", "v1"] => Route::GroupVersion(""),
        ["apis", g] => known_group(g).map_or(Route::Unknown, Route::Group),
        ["apis", g, "v1"] => known_group(g).map_or(Route::Unknown, Route::GroupVersion),
        ["api", "v1", ref rest @ ..] => resource_route("", rest),
        ["apis", g, v, ref rest @ ..] => resource_route_versioned(g, v, rest),
        _ => Route::Unknown,
    }
}

fn resource_route_versioned(group: &str, version: &str, rest: &[&str]) -> Route {
    if version != "v1" {
        return Route::Unknown;
    }
    resource_route(group, rest)
}

fn resource_route(group: &str, rest: &[&str]) -> Route {
    let find = |plural: &str| resources::by_path(group, "v1", plural);
    match *rest {
        [plural] => find(plural).map_or(Route::Unknown, |res| Route::Collection { res, ns: None }),
        [plural, name] => match find(plural) {
            Some(res) if !RESOURCES[res].namespaced => Route::Object {
                res,
                ns: None,
                name: name.to_string(),
            },
            _ => Route::Unknown,
        },
        ["namespaces", ns, plural] => match find(plural) {
            Some(res) if RESOURCES[res].namespaced => Route::Collection {
                res,
                ns: Some(ns.to_string()),
            },
            _ => Route::Unknown,
        },
        ["namespaces", ns, plural, name] => match find(plural) {
            Some(res) if RESOURCES[res].namespaced => Route::Object {
                res,
                ns: Some(ns.to_string()),
                name: name.to_string(),
            },
            _ => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

fn verb_of(method: &Method, route: &Route, params: &Params) -> Verb {
    match (route, method) {
        (Route::Collection { .. } | Route::Object { .. }, &Method::GET) if params.flag("watch") => {
            Verb::Watch
        }
        (Route::Collection { .. }, &Method::GET) => Verb::List,
        (Route::Collection { .. }, &Method::POST) => Verb::Create,
        (Route::Collection { .. }, &Method::DELETE) => Verb::DeleteCollection,
        (Route::Object { .. }, &Method::GET) => Verb::Get,
        (Route::Object { .. }, &Method::PUT) => Verb::Update,
        (Route::Object { .. }, &Method::PATCH) => Verb::Patch,
        (Route::Object { .. }, &Method::DELETE) => Verb::Delete,
        (
            Route::Version
            | Route::CoreGroup
            | Route::NamedGroups
            | Route::Group(_)
            | Route::GroupVersion(_)
            | Route::OpenApiIndex
            | Route::OpenApi(_),
            &Method::GET,
        ) => Verb::Discovery,
        _ => Verb::Other,
    }
}

pub fn json_response(code: u16, value: &Value) -> Response<Body> {
    json_response_typed(code, value, "application/json")
}

fn json_response_typed(code: u16, value: &Value, content_type: &str) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("JSON values serialise");
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("valid response")
}

pub fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.status())
}

fn not_found_path() -> Response<Body> {
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let params = Params::parse(&query);
    let header_str = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header_str(header::ACCEPT);
    let content_type = header_str(header::CONTENT_TYPE);
    let authorization = Some(header_str(header::AUTHORIZATION)).filter(|a| !a.is_empty());
    let route = route(&path);
    let verb = verb_of(&method, &route, &params);
    let (resource, namespace, name) = match &route {
        Route::Collection { res, ns } => (Some(RESOURCES[*res].plural), ns.clone(), None),
        Route::Object { res, ns, name } => {
            (Some(RESOURCES[*res].plural), ns.clone(), Some(name.clone()))
        }
        _ => (None, None, None),
    };
    shared
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Request {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            verb,
            resource: resource.map(str::to_string),
            namespace,
            name,
            authorization,
        });
    let body = match Limited::new(req.into_body(), 16 << 20).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading the body: {e}"
            ))))
        }
    };
    let ctx = Ctx {
        shared: &shared,
        params: &params,
        accept: &accept,
        content_type: &content_type,
        body: &body,
    };
    let response = match (route, verb) {
        (Route::Version, Verb::Discovery) => version(&shared.options),
        (Route::Health, _) => Response::new(Full::new(Bytes::from_static(b"ok")).boxed()),
        (Route::CoreGroup, Verb::Discovery) => core_group(&shared, &accept),
        (Route::NamedGroups, Verb::Discovery) => named_groups(&accept),
        (Route::Group(g), Verb::Discovery) => json_response(200, &api_group(g)),
        (Route::GroupVersion(g), Verb::Discovery) => json_response(
            200,
            &resources::api_resource_list(g, "v1").expect("a served group version"),
        ),
        (Route::OpenApiIndex, Verb::Discovery) => {
            json_response(200, &resources::openapi_v3_index())
        }
        (Route::OpenApi(gv), Verb::Discovery) => match resources::openapi_v3_document(&gv) {
            Some(doc) => json_response(200, &doc),
            None => not_found_path(),
        },
        (Route::Collection { res, ns }, Verb::Watch) => ctx
            .watch(res, ns, None)
            .unwrap_or_else(|e| error_response(&e)),
        (Route::Object { res, ns, name }, Verb::Watch) => ctx
            .watch(res, ns, Some(name))
            .unwrap_or_else(|e| error_response(&e)),
        (route, verb) => ctx
            .serve(route, verb)
            .unwrap_or_else(|e| error_response(&e)),
    };
    Ok(response)
}

/// One request's inputs, for the handlers.
pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub params: &'a Params,
    pub accept: &'a str,
    content_type: &'a str,
    body: &'a Bytes,
}

impl Ctx<'_> {
    pub fn filter(&self, res: usize, ns: Option<String>) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(self.params.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(self.params.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        Ok(Filter {
            res,
            namespace: ns,
            labels,
            fields,
        })
    }

    pub fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            dry_run: self.params.get("dryRun").is_some_and(|v| !v.is_empty()),
            strict: self.params.get("fieldValidation") == Some("Strict"),
            create_namespace: false,
        }
    }

    fn body_value(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("the request has no body"));
        }
        if self.content_type.contains("yaml") {
            serde_yaml::from_slice(self.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        } else {
            serde_json::from_slice(self.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
        }
    }

    fn serve(&self, route: Route, verb: Verb) -> Result<Response<Body>, ApiError> {
        let method_not_allowed = || {
            Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ))
        };
        let (res, ns, name) = match route {
            Route::Collection { res, ns } => (res, ns, None),
            Route::Object { res, ns, name } => (res, ns, Some(name)),
            Route::Unknown => return Ok(not_found_path()),
            _ => return method_not_allowed(),
        };
        let ns_ref = ns.as_deref();
        let opts = self.write_options();
        let mut store = self.shared.store();
        match (verb, name) {
            (Verb::List, None) => {
                let filter = self.filter(res, ns)?;
                let limit = match self.params.get("limit") {
                    Some(l) if !l.is_empty() => Some(
                        l.parse::<usize>()
                            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
                    ),
                    _ => None,
                };
                let page = store.list(
                    &filter,
                    self.params.get("resourceVersion"),
                    self.params.get("resourceVersionMatch"),
                    limit,
                    self.params.get("continue").filter(|c| !c.is_empty()),
                )?;
                drop(store);
                let mut meta = json!({"resourceVersion": page.rv.to_string()});
                if let Some(token) = &page.continue_token {
                    meta["continue"] = json!(token);
                }
                if let Some(remaining) = page.remaining {
                    meta["remainingItemCount"] = json!(remaining);
                }
                if self.wants_table() {
                    return Ok(self.table(res, &page.items, meta));
                }
                let items: Vec<Value> = page
                    .items
                    .iter()
                    .map(|o| {
                        // The apiserver's list items carry no kind and apiVersion.
                        let mut item = o.as_ref().clone();
                        if let Some(map) = item.as_object_mut() {
                            map.remove("kind");
                            map.remove("apiVersion");
                        }
                        item
                    })
                    .collect();
                let r = &RESOURCES[res];
                Ok(json_response(
                    200,
                    &json!({
                        "kind": format!("{}List", r.kind),
                        "apiVersion": r.api_version(),
                        "metadata": meta,
                        "items": items,
                    }),
                ))
            }
            (Verb::Get, Some(name)) => {
                let obj = store
                    .get(res, ns_ref.unwrap_or(""), &name)
                    .ok_or_else(|| ApiError::not_found(res, &name))?;
                drop(store);
                if self.wants_table() {
                    let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                    return Ok(self.table(res, &[obj], meta));
                }
                Ok(json_response(200, &obj))
            }
            (Verb::Create, None) => {
                let obj = store.create(res, ns_ref, self.body_value()?, opts)?;
                Ok(json_response(201, &obj))
            }
            (Verb::Update, Some(name)) => {
                let obj = store.update(res, ns_ref, &name, self.body_value()?, opts)?;
                Ok(json_response(200, &obj))
            }
            (Verb::Patch, Some(name)) => {
                let kind = match self.content_type.split(';').next().unwrap_or("").trim() {
                    "application/merge-patch+json" => PatchType::Merge,
                    "application/strategic-merge-patch+json" => PatchType::Strategic,
                    "application/apply-patch+yaml" => PatchType::Apply,
                    other => {
                        return Err(ApiError::new(
                            415,
                            "UnsupportedMediaType",
                            format!(
                                "the body of the request was in an unknown format - accepted \
                                 media types include: application/merge-patch+json, \
                                 application/strategic-merge-patch+json, \
                                 application/apply-patch+yaml (not {other:?})"
                            ),
                        ))
                    }
                };
                let (obj, created) =
                    store.patch(res, ns_ref, &name, kind, self.body_value()?, opts)?;
                Ok(json_response(if created { 201 } else { 200 }, &obj))
            }
            (Verb::Delete, Some(name)) => {
                let options: Value = if self.body.is_empty() {
                    Value::Null
                } else {
                    self.body_value()?
                };
                let obj = store.delete(res, ns_ref, &name, &options["preconditions"], opts)?;
                Ok(json_response(200, &obj))
            }
            (Verb::DeleteCollection, None) => {
                let filter = self.filter(res, ns)?;
                let mut deleted = Vec::new();
                for obj in store.current(&filter) {
                    let meta = &obj["metadata"];
                    let (ns, name) = (meta["namespace"].as_str(), meta["name"].as_str());
                    let gone = store.delete(res, ns, name.unwrap_or(""), &Value::Null, opts)?;
                    deleted.push(gone.as_ref().clone());
                }
                let r = &RESOURCES[res];
                Ok(json_response(
                    200,
                    &json!({
                        "kind": format!("{}List", r.kind),
                        "apiVersion": r.api_version(),
                        "metadata": {"resourceVersion": store.resource_version().to_string()},
                        "items": deleted,
                    }),
                ))
            }
            _ => method_not_allowed(),
        }
    }

    /// A `meta.k8s.io/v1` Table of objects, as `kubectl get` asks for.
    pub fn table(&self, res: usize, objects: &[Arc<Value>], metadata: Value) -> Response<Body> {
        json_response_typed(
            200,
            &table(res, objects, metadata, self.params.get("includeObject")),
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
    }
}

pub fn table(
    res: usize,
    objects: &[Arc<Value>],
    metadata: Value,
    include_object: Option<&str>,
) -> Value {
    let now = crate::store::timestamp_now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = json!({"cells": resources::table_cells(res, obj, now)});
            match include_object {
                Some("None") => {}
                Some("Object") => row["object"] = obj.as_ref().clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": resources::table_columns(res),
        "rows": rows,
    })
}

fn version(options: &Options) -> Response<Body> {
    let (major, minor) = options.kubernetes_version;
    json_response(
        200,
        &json!({
            "major": major.to_string(),
            "minor": minor.to_string(),
            "gitVersion": format!("v{major}.{minor}.0-fakeapi"),
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": now(),
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// kubectl asks for aggregated discovery first; other clients get the legacy documents.
fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|t| {
        let t = t.replace(' ', "");
        t.contains("as=APIGroupDiscoveryList") && t.contains("v=v2") && !t.contains("v=v2beta1")
    })
}

fn core_group(shared: &Shared, accept: &str) -> Response<Body> {
    if wants_aggregated(accept) {
        return json_response_typed(200, &resources::aggregated_discovery(true), AGGREGATED);
    }
    json_response(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}
            ],
        }),
    )
}

fn api_group(group: &str) -> Value {
    let version = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [version],
        "preferredVersion": version,
    })
}

fn named_groups(accept: &str) -> Response<Body> {
    if wants_aggregated(accept) {
        return json_response_typed(200, &resources::aggregated_discovery(false), AGGREGATED);
    }
    let groups: Vec<Value> = resources::named_groups()
        .into_iter()
        .map(api_group)
        .map(|mut g| {
            let map = g.as_object_mut().expect("object");
            map.remove("kind");
            map.remove("apiVersion");
            g
        })
        .collect();
    json_response(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

/// Counts an open watch for as long as it lives.
pub struct WatchGuard(pub Arc<Shared>);

impl WatchGuard {
    pub fn new(shared: Arc<Shared>) -> WatchGuard {
        shared.open_watches.fetch_add(1, Ordering::SeqCst);
        WatchGuard(shared)
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}
