//! The sources of cluster state, each a task on the control thread's runtime sending
//! [`crate::sync::Update`]s to the control loop ([`crate::sync::run`]):
//!
//! - [`api`]: kube watchers for Services, EndpointSlices and this node's Node, with kube's
//!   default backoff and relist on `410 Gone`;
//! - [`dir`]: the manifests directory, polled for changes and re-read as a whole.
//!
//! Sources only convert and report; what to keep when something is wrong (the last good
//! state) is decided by [`crate::sync::SyncState`].

pub mod api;
pub mod dir;

/// An error and its sources, `: `-separated (kube's errors wrap hyper's wrapping the OS's).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
