//! The manifests directory source (`control::watch::dir`): every change is read again as a
//! whole, a bad file is reported and nothing else, and the source's updates keep the last good
//! state in a `SyncState`.

use std::path::Path;
use std::time::Duration;

use control::sync::{SyncState, Update};
use tokio::sync::mpsc;

fn service(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80, protocol: TCP}}]\n"
    )
}

async fn next(rx: &mut mpsc::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an update within 10 s")
        .expect("the source runs")
}

fn names(st: &SyncState) -> Vec<String> {
    st.merged().services.into_iter().map(|s| s.name).collect()
}

/// Writes `text` to `path` by rename, as editors do, so the poller never reads half a file.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn changes_are_read_and_a_bad_file_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    write(&d.join("a.yaml"), &service("a", "10.96.0.1"));
    let (tx, mut rx) = mpsc::channel(16);
    let poller = tokio::spawn(control::watch::dir::poll(
        d.clone(),
        Duration::from_millis(50),
        tx,
    ));
    let mut st = SyncState::new("node-a", Duration::from_secs(1), Default::default(), None);

    // The first check reads what is there.
    let u = next(&mut rx).await;
    assert!(matches!(u, Update::Manifests(_)), "{u:?}");
    st.apply(u);
    assert_eq!(names(&st), ["a"]);

    // A second Service.
    write(&d.join("b.yaml"), &service("b", "10.96.0.2"));
    st.apply(next(&mut rx).await);
    assert_eq!(names(&st), ["a", "b"]);

    // A broken file: reported once, the last good state stays.
    write(&d.join("b.yaml"), &service("b", "10.96.0.300"));
    let u = next(&mut rx).await;
    assert_eq!(u, Update::ManifestsFailed);
    assert!(!st.apply(u));
    assert_eq!(names(&st), ["a", "b"]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "nothing more until the directory changes"
    );

    // Fixed, and the first Service removed.
    write(&d.join("b.yaml"), &service("b", "10.96.0.3"));
    std::fs::remove_file(d.join("a.yaml")).unwrap();
    let mut last = Vec::new();
    while last != ["b"] {
        st.apply(next(&mut rx).await);
        last = names(&st);
    }
    assert_eq!(
        st.merged().services[0].cluster_ips[0].to_string(),
        "10.96.0.3"
    );
    poller.abort();
}
