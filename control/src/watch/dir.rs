//! The manifests directory as a source: polled for changes, re-read as a whole.
//!
//! Every `interval` the directory's [`DirStamp`] (paths, sizes,
//! inodes, times: metadata only) is compared with the last one; when it differs, the
//! directory is read again with [`load_dir`]. A clean read replaces
//! the source's state ([`Update::Manifests`]); a bad file is logged with its file, field and
//! reason and the last good state stays ([`Update::ManifestsFailed`]), until the next change.
//! Polling rather than inotify: one `stat` per file per second is nothing next to a rebuild,
//! works on every filesystem (ConfigMap volumes swap a symlink, NFS sends no events) and needs
//! no dependency; docs/decisions.md.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::manifests::{dir_stamp, load_dir, DirStamp, ManifestError};
use crate::model::ClusterState;
use crate::sync::Update;

/// How often the manifests directory is checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Polls `dir` until `tx` closes. The first check reads the directory (its state is usually
/// what the tables were built from at start, which changes nothing).
pub async fn poll(dir: PathBuf, interval: Duration, tx: mpsc::Sender<Update>) {
    let mut last: Option<Result<DirStamp, ManifestError>> = None;
    let mut failing = false;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let d = dir.clone();
        let previous = last.clone();
        // Reading files blocks: off the runtime's thread (the blocking pool's threads inherit
        // the control thread's CPU).
        let Ok((stamp, read)) = tokio::task::spawn_blocking(move || {
            let stamp = dir_stamp(&d);
            if previous.as_ref() == Some(&stamp) {
                return (stamp, None);
            }
            let read = match &stamp {
                Ok(_) => load_dir(&d),
                Err(e) => Err(e.clone()),
            };
            (stamp, Some(read))
        })
        .await
        else {
            return;
        };
        let first = last.is_none();
        last = Some(stamp);
        let update = match read {
            None => continue,
            Some(Ok(state)) => {
                if failing {
                    tracing::info!(dir = %dir.display(), "manifests read cleanly again");
                    failing = false;
                } else if !first {
                    log_change(&dir, &state);
                }
                Update::Manifests(state)
            }
            Some(Err(e)) => {
                tracing::error!("{e}; the last good manifests stay in the tables");
                failing = true;
                Update::ManifestsFailed
            }
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
}

fn log_change(dir: &std::path::Path, state: &ClusterState) {
    tracing::info!(
        dir = %dir.display(),
        services = state.services.len(),
        endpoint_slices = state.endpoint_slices.len(),
        "manifests changed"
    );
}
