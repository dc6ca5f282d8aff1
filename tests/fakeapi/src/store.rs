//! The objects, the global resourceVersion and the history window, as etcd plus the watch
//! cache would hold them. Every write goes through [`Store::commit`], which stamps the next
//! resourceVersion, records the event and broadcasts it to open watches while the store is
//! locked, so watches see events in resourceVersion order with no gaps.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::patch;
use crate::resources::{self, metadata_mut, Allocator, NAMESPACES, RESOURCES};
use crate::selector::{FieldSelector, LabelSelector};

/// An error the API answers with: an HTTP status code and a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code, also the Status' `code`.
    pub code: u16,
    /// The Status' `reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Expired`, ...).
    pub reason: String,
    /// The Status' `message`, the apiserver's wording where it matters to clients.
    pub message: String,
    details: Value,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            details: Value::Null,
        }
    }

    fn with_details(mut self, res: usize, name: &str) -> ApiError {
        let r = &RESOURCES[res];
        self.details = json!({"name": name, "group": r.group, "kind": r.plural});
        if r.group.is_empty() {
            self.details
                .as_object_mut()
                .expect("object")
                .remove("group");
        }
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub(crate) fn not_found(res: usize, name: &str) -> ApiError {
        let message = format!("{} \"{name}\" not found", RESOURCES[res].qualified());
        ApiError::new(404, "NotFound", message).with_details(res, name)
    }

    fn already_exists(res: usize, name: &str) -> ApiError {
        let message = format!("{} \"{name}\" already exists", RESOURCES[res].qualified());
        ApiError::new(409, "AlreadyExists", message).with_details(res, name)
    }

    fn conflict(res: usize, name: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            RESOURCES[res].qualified()
        );
        ApiError::new(409, "Conflict", message).with_details(res, name)
    }

    fn invalid(res: usize, name: &str, why: &str) -> ApiError {
        let message = format!("{} \"{name}\" is invalid: {why}", RESOURCES[res].kind);
        ApiError::new(422, "Invalid", message).with_details(res, name)
    }

    /// 410 Gone, reason Expired: what a watch or list from a compacted resourceVersion gets.
    pub(crate) fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub(crate) fn too_large_rv(asked: u64, current: u64) -> ApiError {
        let mut e = ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {asked}, current: {current}"),
        );
        e.details = json!({"causes": [{"reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version"}],
                           "retryAfterSeconds": 1});
        e
    }

    /// The `Status` object of this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A watch event type as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn wire(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as recorded in the history and sent to watches.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub res: usize,
    pub kind: EventType,
    /// The object after the change (for a delete: the last state, with the delete's RV).
    pub object: Arc<Value>,
    /// The object before the change (for selector transitions and rebuilding old states).
    pub prev: Option<Arc<Value>>,
}

/// Which objects a list or watch is about: one resource, maybe one namespace, selectors.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub res: usize,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        let ns_ok = match &self.namespace {
            Some(ns) => obj["metadata"]["namespace"].as_str() == Some(ns),
            None => true,
        };
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// What a watch with this filter sees of an event: an object that starts matching is
    /// ADDED, one that stops matching is DELETED, as the apiserver does.
    pub fn view(&self, event: &Event) -> Option<EventType> {
        if event.res != self.res {
            return None;
        }
        let now = self.matches(&event.object);
        let before = event.prev.as_deref().is_some_and(|p| self.matches(p));
        match (event.kind, before, now) {
            (EventType::Added, _, true) => Some(EventType::Added),
            (EventType::Deleted, _, true) => Some(EventType::Deleted),
            (EventType::Modified, true, true) => Some(EventType::Modified),
            (EventType::Modified, false, true) => Some(EventType::Added),
            (EventType::Modified, true, false) => Some(EventType::Deleted),
            _ => None,
        }
    }
}

/// How a write is carried out.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: check and answer, store nothing.
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being dropped.
    pub strict: bool,
    /// Create a missing namespace instead of answering 404 (the test hooks do).
    pub create_namespace: bool,
}

/// The patch formats the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Apply,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Arc<Value>>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

type Key = (usize, String, String);

#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    /// Watches and exact lists may start at any RV >= this; older ones get 410 Gone.
    compacted: u64,
    history_limit: usize,
    alloc: Allocator,
    random: RandomState,
    events: broadcast::Sender<Arc<Event>>,
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        let (events, _) = broadcast::channel(4096);
        let mut store = Store {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            history_limit,
            alloc: Allocator::default(),
            random: RandomState::new(),
            events,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            store
                .create(NAMESPACES, None, body, WriteOptions::default())
                .expect("built-in namespace");
        }
        store
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Drops the history: watches and exact lists from any RV before now get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Events after `rv` (which must not be older than the compacted point).
    pub fn history_since(&self, rv: u64) -> impl Iterator<Item = &Arc<Event>> {
        self.history.iter().filter(move |e| e.rv > rv)
    }

    pub fn get(&self, res: usize, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(res, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// The current objects matching a filter, in key (namespace, name) order.
    pub fn current(&self, filter: &Filter) -> Vec<Arc<Value>> {
        self.objects
            .range((filter.res, String::new(), String::new())..)
            .take_while(|((res, _, _), _)| *res == filter.res)
            .filter(|(_, obj)| filter.matches(obj))
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    /// The objects of one resource as they were at `rv`, rebuilt by undoing newer events.
    fn state_at(&self, res: usize, rv: u64) -> BTreeMap<(String, String), Arc<Value>> {
        let mut state: BTreeMap<(String, String), Arc<Value>> = self
            .objects
            .range((res, String::new(), String::new())..)
            .take_while(|((r, _, _), _)| *r == res)
            .map(|((_, ns, name), obj)| ((ns.clone(), name.clone()), obj.clone()))
            .collect();
        for event in self.history.iter().rev().take_while(|e| e.rv > rv) {
            if event.res != res {
                continue;
            }
            let key = key_of(&event.object);
            match (&event.kind, &event.prev) {
                (EventType::Added, _) => {
                    state.remove(&key);
                }
                (_, Some(prev)) => {
                    state.insert(key, prev.clone());
                }
                (_, None) => {}
            }
        }
        state
    }

    /// A list request: `resourceVersion`/`resourceVersionMatch`/`limit`/`continue` with the
    /// apiserver's semantics (see `list_snapshot`). Pages are cut from one snapshot.
    pub fn list(
        &self,
        filter: &Filter,
        resource_version: Option<&str>,
        version_match: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        let (at, start_after) =
            self.list_snapshot(resource_version, version_match, limit, continue_token)?;
        let state = self.state_at(filter.res, at);
        let mut matching = state
            .iter()
            .filter(|(key, _)| start_after.as_ref().is_none_or(|after| *key > after))
            .filter(|(_, obj)| filter.matches(obj));
        let mut items = Vec::new();
        let mut last_key = None;
        for (key, obj) in matching.by_ref() {
            if limit.is_some_and(|l| l > 0 && items.len() >= l) {
                // One more exists: this page ends with a continue token.
                let remaining = 1 + matching.count();
                let token = encode_continue(at, last_key.expect("a page has an item"));
                let remaining =
                    (filter.labels.is_empty() && filter.fields.is_empty()).then_some(remaining);
                return Ok(Page {
                    items,
                    rv: at,
                    continue_token: Some(token),
                    remaining,
                });
            }
            items.push(obj.clone());
            last_key = Some(key);
        }
        Ok(Page {
            items,
            rv: at,
            continue_token: None,
            remaining: None,
        })
    }

    /// Which state a list is served from, and after which key it starts: a continue token's
    /// snapshot, an exact resourceVersion, or the newest state. An exact RV or a continue
    /// token older than the compacted point is 410 Expired; "not older than" never is.
    fn list_snapshot(
        &self,
        resource_version: Option<&str>,
        version_match: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<(u64, Option<(String, String)>), ApiError> {
        match continue_token {
            Some(token) => {
                let (rv, key) = decode_continue(token)
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                if rv < self.compacted {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue \
                         parameter, or use the continue token in this response to retrieve \
                         the remainder of the results. Continuing with the provided token \
                         results in an inconsistent list - objects that were created, \
                         modified, or deleted between the time the first chunk was returned \
                         and now may show up in the list.",
                    ));
                }
                Ok((rv, Some(key)))
            }
            None => {
                let asked = match resource_version.filter(|v| !v.is_empty()) {
                    None => None,
                    Some(v) => Some(v.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(format!("invalid resource version: {v}"))
                    })?),
                };
                let exact = match version_match {
                    Some("Exact") => true,
                    Some("NotOlderThan") | None => {
                        // Legacy semantics: a non-zero RV with a limit is exact.
                        version_match.is_none() && limit.is_some() && asked.unwrap_or(0) > 0
                    }
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "unknown resourceVersionMatch: {other}"
                        )))
                    }
                };
                match asked {
                    Some(rv) if rv > self.rv => Err(ApiError::too_large_rv(rv, self.rv)),
                    Some(rv) if exact && rv < self.compacted => Err(ApiError::expired(format!(
                        "The resourceVersion for the provided list is too old: {rv} ({})",
                        self.compacted
                    ))),
                    Some(rv) if exact => Ok((rv, None)),
                    _ => Ok((self.rv, None)),
                }
            }
        }
    }

    /// Checks a body for a create or an update: an object of the path's kind, in the path's
    /// namespace, valid for the kind's schema. Returns it normalised.
    fn prepare(
        &self,
        res: usize,
        ns: Option<&str>,
        body: &Value,
        strict: bool,
    ) -> Result<Value, ApiError> {
        let r = &RESOURCES[res];
        if !body.is_object() {
            return Err(ApiError::bad_request("the body is not a JSON object"));
        }
        let mut body = body.clone();
        for (field, want) in [
            ("apiVersion", r.api_version()),
            ("kind", r.kind.to_string()),
        ] {
            match body.get(field).and_then(Value::as_str) {
                None | Some("") => body[field] = json!(want),
                Some(got) if got == want => {}
                Some(got) => {
                    return Err(ApiError::bad_request(format!(
                        "the API version in the data ({got}) does not match the expected API \
                         version ({})",
                        r.api_version()
                    )))
                }
            }
        }
        let meta = metadata_mut(&mut body);
        if r.namespaced {
            let path_ns = ns.unwrap_or("");
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    meta.insert("namespace".into(), json!(path_ns));
                }
                Some(given) if given == path_ns => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace \
                         sent on the request",
                    ))
                }
            }
        } else {
            meta.remove("namespace");
        }
        meta.remove("managedFields");
        resources::normalize(res, &body, strict).map_err(ApiError::bad_request)
    }

    fn ensure_namespace(&mut self, ns: &str, opts: WriteOptions) -> Result<(), ApiError> {
        if self.get(NAMESPACES, "", ns).is_some() {
            return Ok(());
        }
        if !opts.create_namespace {
            return Err(ApiError::not_found(NAMESPACES, ns));
        }
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        self.create(NAMESPACES, None, body, opts).map(drop)
    }

    /// POST: a new object (409 AlreadyExists if the name is taken).
    pub fn create(
        &mut self,
        res: usize,
        ns: Option<&str>,
        body: Value,
        opts: WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut obj = self.prepare(res, ns, &body, opts.strict)?;
        let meta = metadata_mut(&mut obj);
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let suffix = self.random_hex(5);
                    format!("{prefix}{suffix}")
                }
                _ => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "{} \"\" is invalid: metadata.name: Required value: name or \
                             generateName is required",
                            RESOURCES[res].kind
                        ),
                    ))
                }
            },
        };
        resources::validate_name(res, &name).map_err(|e| ApiError::invalid(res, &name, &e))?;
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if RESOURCES[res].namespaced {
            self.ensure_namespace(&ns, opts)?;
        }
        if self.get(res, &ns, &name).is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        resources::apply_defaults(res, &mut obj, None, &mut self.alloc);
        let uid = self.uid();
        let meta = metadata_mut(&mut obj);
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(res, EventType::Added, obj))
    }

    /// PUT: replaces an object; a stale `metadata.resourceVersion` is 409 Conflict, an
    /// absent one means "whatever is stored". An update that changes nothing writes nothing.
    pub fn update(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        body: Value,
        opts: WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut obj = self.prepare(res, ns, &body, opts.strict)?;
        let meta = metadata_mut(&mut obj);
        match meta.get("name").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("name".into(), json!(name));
            }
            Some(given) if given == name => {}
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL \
                     ({name})"
                )))
            }
        }
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(old) = self.get(res, &ns, name) else {
            return Err(ApiError::not_found(res, name));
        };
        let wanted_rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !wanted_rv.is_empty() && wanted_rv != old["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(res, name));
        }
        resources::apply_defaults(res, &mut obj, Some(&old), &mut self.alloc);
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let meta = metadata_mut(&mut obj);
        for carried in ["uid", "creationTimestamp"] {
            meta.insert(carried.into(), old["metadata"][carried].clone());
        }
        meta.insert("generation".into(), json!(generation));
        meta.insert(
            "resourceVersion".into(),
            old["metadata"]["resourceVersion"].clone(),
        );
        if obj == *old {
            return Ok(old);
        }
        if without_metadata_and_status(&obj) != without_metadata_and_status(&old) {
            obj["metadata"]["generation"] = json!(generation + 1);
        }
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(res, EventType::Modified, obj))
    }

    /// PATCH. A server-side apply of a missing object creates it.
    pub fn patch(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        patch: Value,
        opts: WriteOptions,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let Some(old) = self.get(res, ns.unwrap_or(""), name) else {
            if kind != PatchType::Apply {
                return Err(ApiError::not_found(res, name));
            }
            match patch["metadata"]["name"].as_str() {
                Some(given) if given == name => {}
                _ => {
                    return Err(ApiError::bad_request(
                        "metadata.name must be set and match the name on the URL",
                    ))
                }
            }
            return Ok((self.create(res, ns, patch, opts)?, true));
        };
        let mut merged = (*old).clone();
        match kind {
            PatchType::Merge | PatchType::Apply => patch::merge_patch(&mut merged, &patch),
            PatchType::Strategic => patch::strategic_merge_patch(&mut merged, &patch),
        }
        Ok((self.update(res, ns, name, merged, opts)?, false))
    }

    /// DELETE: removes an object (a namespace with everything in it). `preconditions` are
    /// DeleteOptions' `resourceVersion` and `uid`.
    pub fn delete(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        preconditions: &Value,
        opts: WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let ns = ns.unwrap_or("");
        let Some(old) = self.get(res, ns, name) else {
            return Err(ApiError::not_found(res, name));
        };
        for field in ["resourceVersion", "uid"] {
            if let Some(want) = preconditions[field].as_str() {
                if want != old["metadata"][field] {
                    return Err(ApiError::conflict(res, name));
                }
            }
        }
        if opts.dry_run {
            return Ok(old);
        }
        if res == NAMESPACES {
            let contained: Vec<Key> = self
                .objects
                .keys()
                .filter(|(r, n, _)| RESOURCES[*r].namespaced && n == name)
                .cloned()
                .collect();
            for key in contained {
                let obj = self.objects[&key].as_ref().clone();
                self.commit(key.0, EventType::Deleted, obj);
            }
        }
        Ok(self.commit(res, EventType::Deleted, (*old).clone()))
    }

    /// Makes a change: the next RV is stamped, the object stored or removed, the event kept
    /// in the history window and broadcast to the open watches.
    fn commit(&mut self, res: usize, kind: EventType, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        metadata_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let object = Arc::new(obj);
        let (ns, name) = key_of(&object);
        let key = (res, ns, name);
        let prev = match kind {
            EventType::Deleted => self.objects.remove(&key),
            _ => self.objects.insert(key, object.clone()),
        };
        let event = Arc::new(Event {
            rv: self.rv,
            res,
            kind,
            object: object.clone(),
            prev,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            let dropped = self.history.pop_front().expect("non-empty");
            self.compacted = dropped.rv;
        }
        // No receiver is fine: nobody is watching.
        let _ = self.events.send(event);
        object
    }

    fn random_u64(&self) -> u64 {
        let mut h = self.random.build_hasher();
        h.write_u64(self.rv);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    }

    fn random_hex(&self, len: usize) -> String {
        // The apiserver's generateName alphabet has no vowels; hex digits are close enough.
        let digits = format!("{:016x}", self.random_u64());
        digits[..len].to_string()
    }

    fn uid(&self) -> String {
        let (a, b) = (self.random_u64(), self.random_u64().rotate_left(17));
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-8{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }
}

fn key_of(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

fn without_metadata_and_status(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// Now as the apiserver writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    timestamp_now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The current time as a jiff timestamp (k8s-openapi builds jiff without its clock).
pub fn timestamp_now() -> k8s_openapi::jiff::Timestamp {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    k8s_openapi::jiff::Timestamp::from_second(seconds).expect("the clock is in jiff's range")
}

/// Continue tokens are opaque to clients: the list's RV and the last key returned, in hex.
fn encode_continue(rv: u64, (ns, name): &(String, String)) -> String {
    let key: String = format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{rv}-{key}")
}

fn decode_continue(token: &str) -> Option<(u64, (String, String))> {
    let (rv, hex) = token.split_once('-')?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let key = String::from_utf8(bytes?).ok()?;
    let (ns, name) = key.split_once('/')?;
    Some((rv.parse().ok()?, (ns.to_string(), name.to_string())))
}
