//! Runs a fake API server until killed, printing each request, for poking at it by hand:
//! `cargo run -p fakeapi --example serve -- /tmp/kubeconfig`, then
//! `KUBECONFIG=/tmp/kubeconfig kubectl get svc -A`.

use std::time::Duration;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fakeapi.kubeconfig".into());
    let api = fakeapi::FakeApi::start();
    api.write_kubeconfig(&path).expect("writing the kubeconfig");
    println!("serving {} (kubeconfig: {path})", api.url());
    let mut seen = 0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let requests = api.requests();
        for r in &requests[seen..] {
            println!("{:?} {} {}?{}", r.verb, r.method, r.path, r.query);
        }
        seen = requests.len();
    }
}

#[cfg(test)]
mod test {
    /// What `main` relies on: the kubeconfig it writes names the server it serves.
    #[test]
    fn test_kubeconfig_names_the_server() {
        let dir = std::env::temp_dir().join(format!("fakeapi-serve-{}", std::process::id()));
        let api = fakeapi::FakeApi::start();
        api.write_kubeconfig(&dir).unwrap();
        let text = std::fs::read_to_string(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert!(text.contains(&api.url()), "{text}");
        api.stop();
    }
}
