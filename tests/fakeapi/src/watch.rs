//! Watches: a chunked HTTP/1.1 response whose chunks are newline-delimited JSON watch events,
//! written by one task per watch as the store broadcasts changes.
//!
//! Start (under the store lock, so no change falls between the start and the live part):
//! - `resourceVersion` unset or `0`: an ADDED event for every object, then live changes;
//! - `sendInitialEvents=true` (needs `resourceVersionMatch=NotOlderThan` and
//!   `allowWatchBookmarks=true`): the same, then a BOOKMARK annotated
//!   `k8s.io/initial-events-end: "true"`;
//! - `resourceVersion=N`: every change after N from the history window, then live changes;
//!   an N older than the window is a single ERROR event (Status 410 Expired) and the end of
//!   the stream, as the apiserver's watch cache answers.
//!
//! Streams end at `timeoutSeconds`, on `disconnect_watches`, when the client goes away, or
//! when the watch falls more than the broadcast buffer behind (the client then resumes from
//! its last resourceVersion, as after any other end).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use hyper::{header, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::resources::RESOURCES;
use crate::server::{table, Body, Ctx, WatchGuard};
use crate::store::{ApiError, Event, EventType, Filter};

/// The response body of a watch: whatever the watch task sends, one chunk per event.
struct WatchBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok(Frame::data(l))))
    }
}

/// How one watch encodes its events.
struct Encoder {
    res: usize,
    /// `as=Table` (kubectl get --watch): objects become one-row Tables.
    table: bool,
    include_object: Option<String>,
}

impl Encoder {
    fn event(&self, kind: &str, object: &Value) -> Bytes {
        let object = if self.table {
            let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            table(
                self.res,
                &[Arc::new(object.clone())],
                meta,
                self.include_object.as_deref(),
            )
        } else {
            object.clone()
        };
        line(&json!({"type": kind, "object": object}))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let r = &RESOURCES[self.res];
        let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(&json!({
            "type": "BOOKMARK",
            "object": {"kind": r.kind, "apiVersion": r.api_version(), "metadata": metadata},
        }))
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("JSON values serialise");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

impl Ctx<'_> {
    /// Starts a watch on a collection (or, legacy style, on one object by name).
    pub fn watch(
        &self,
        res: usize,
        ns: Option<String>,
        name: Option<String>,
    ) -> Result<Response<Body>, ApiError> {
        let mut filter = self.filter(res, ns)?;
        if let Some(name) = name {
            let by_name = format!("metadata.name={name}");
            filter.fields =
                crate::selector::FieldSelector::parse(&by_name).map_err(ApiError::bad_request)?;
        }
        let p = self.params;
        let bookmarks = p.flag("allowWatchBookmarks");
        let send_initial = p.flag("sendInitialEvents");
        let version_match = p.get("resourceVersionMatch").filter(|m| !m.is_empty());
        let invalid = |why: &str| {
            ApiError::new(
                422,
                "Invalid",
                format!("ListOptions.meta.k8s.io \"\" is invalid: {why}"),
            )
        };
        if send_initial && version_match != Some("NotOlderThan") {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting \
                 resourceVersionMatch to NotOlderThan",
            ));
        }
        if send_initial && !bookmarks {
            return Err(invalid(
                "allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true \
                 when sendInitialEvents is set",
            ));
        }
        if version_match.is_some() && !send_initial {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch \
                 unless sendInitialEvents is provided",
            ));
        }
        let timeout = match p.get("timeoutSeconds").filter(|t| !t.is_empty()) {
            Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds: {t}"))
            })?)),
            None => None,
        };
        let encoder = Encoder {
            res,
            table: self.wants_table(),
            include_object: p.get("includeObject").map(str::to_string),
        };

        let store = self.shared.store();
        let current = store.resource_version();
        let asked = match p.get("resourceVersion").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
            ),
        };
        let mut first = Vec::new();
        match asked {
            Some(rv) if rv > current => return Err(ApiError::too_large_rv(rv, current)),
            Some(rv) if rv != 0 && !send_initial => {
                if rv < store.compacted() {
                    let gone = ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        store.compacted()
                    ));
                    first.push(line(&json!({"type": "ERROR", "object": gone.status()})));
                    drop(store);
                    return Ok(self.stream(first, None, encoder, filter, current, false, None));
                }
                for event in store.history_since(rv) {
                    if let Some(kind) = filter.view(event) {
                        first.push(encoder.event(kind.wire(), &event.object));
                    }
                }
            }
            _ => {
                for obj in store.current(&filter) {
                    first.push(encoder.event(EventType::Added.wire(), &obj));
                }
                if send_initial {
                    first.push(encoder.bookmark(current, true));
                }
            }
        }
        let events = store.subscribe();
        drop(store);
        Ok(self.stream(
            first,
            Some(events),
            encoder,
            filter,
            current,
            bookmarks,
            timeout,
        ))
    }

    /// The response, and the task that writes it.
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        first: Vec<Bytes>,
        events: Option<broadcast::Receiver<Arc<Event>>>,
        encoder: Encoder,
        filter: Filter,
        start_rv: u64,
        bookmarks: bool,
        timeout: Option<Duration>,
    ) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let guard = WatchGuard::new(self.shared.clone());
        let mut disconnect = self.shared.disconnect.subscribe();
        let mut bookmark_now = self.shared.bookmark_now.subscribe();
        let interval = self.shared.options.bookmark_interval;
        tokio::spawn(async move {
            let _guard = guard;
            for chunk in first {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
            let Some(mut events) = events else { return };
            let mut last_rv = start_rv;
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            let deadline = async {
                match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(deadline);
            loop {
                // Biased: pending changes go out before a bookmark, so a bookmark carries
                // the newest resourceVersion already written when it was asked for.
                let chunk = tokio::select! {
                    biased;
                    _ = disconnect.changed() => return,
                    _ = tx.closed() => return,
                    _ = &mut deadline => return,
                    event = events.recv() => match event {
                        Ok(event) => {
                            last_rv = event.rv;
                            match filter.view(&event) {
                                Some(kind) => encoder.event(kind.wire(), &event.object),
                                None => continue,
                            }
                        }
                        // Fell behind, or the store is gone: end; the client resumes.
                        Err(_) => return,
                    },
                    _ = tick.tick(), if bookmarks && !encoder.table => {
                        encoder.bookmark(last_rv, false)
                    }
                    _ = bookmark_now.changed(), if bookmarks && !encoder.table => {
                        encoder.bookmark(last_rv, false)
                    }
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(WatchBody(rx).boxed())
            .expect("valid response")
    }
}
