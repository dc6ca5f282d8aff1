//! HTTPS in front of a plain-HTTP test server, with real tools: certificates made by `openssl`,
//! TLS terminated by `socat` (which can also demand a client certificate signed by the CA), so
//! clients are tested with the TLS they use against a real cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Runs a tool and fails the test with the reason when it cannot.
fn tool(args: &[String]) {
    let out = Command::new(&args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs `{}` (apt install openssl socat): {e}",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes in `dir`: `ca.pem`/`ca.key`, a server certificate for 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`, subject
/// `CN=client, O=system:masters`), both signed by the CA; and an unrelated `other-ca.pem`.
/// All are X.509 version 3 (webpki accepts nothing older).
pub fn certificates(dir: &Path) {
    let p = |f: &str| dir.join(f).to_str().expect("UTF-8 path").to_string();
    for ca in ["ca", "other-ca"] {
        tool(&[
            "openssl".into(),
            "req".into(),
            "-x509".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-days".into(),
            "2".into(),
            "-subj".into(),
            format!("/CN=nodegate-test-{ca}"),
            "-keyout".into(),
            p(&format!("{ca}.key")),
            "-out".into(),
            p(&format!("{ca}.pem")),
        ]);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        tool(&[
            "openssl".into(),
            "req".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-subj".into(),
            format!("/CN={name}/O=system:masters"),
            "-keyout".into(),
            p(&format!("{name}.key")),
            "-out".into(),
            p(&format!("{name}.csr")),
        ]);
        tool(&[
            "openssl".into(),
            "x509".into(),
            "-req".into(),
            "-in".into(),
            p(&format!("{name}.csr")),
            "-CA".into(),
            p("ca.pem"),
            "-CAkey".into(),
            p("ca.key"),
            "-CAcreateserial".into(),
            "-days".into(),
            "2".into(),
            "-out".into(),
            p(&format!("{name}.pem")),
            "-extfile".into(),
            p(&format!("{name}.ext")),
        ]);
    }
}

/// `socat` terminating TLS on 127.0.0.1 with the certificates of [`certificates`] in `dir` and
/// forwarding to a plain TCP server. Killed on drop.
pub struct TlsProxy {
    child: Child,
    port: u16,
}

impl TlsProxy {
    /// Listens on a free port; with `client_cert`, only clients presenting a certificate
    /// signed by `ca.pem` get through.
    pub fn start(dir: &Path, target: SocketAddr, client_cert: bool) -> TlsProxy {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let d = dir.display();
        let verify = if client_cert {
            format!("cafile={d}/ca.pem,verify=1")
        } else {
            "verify=0".to_string()
        };
        let child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={d}/server.pem,key={d}/server.key,{verify}"
            ))
            .arg(format!("TCP:{target}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("this test needs `socat` (apt install socat)");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "socat did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsProxy { child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a kubeconfig authenticates.
pub enum Credentials<'a> {
    /// `client.pem` / `client.key` of [`certificates`].
    ClientCertificate,
    /// A bearer token.
    Token(&'a str),
}

/// Writes a kubeconfig for `server` trusting `dir/{ca}.pem` to `dir/kubeconfig-{ca}` and returns
/// its path.
pub fn kubeconfig(dir: &Path, server: &str, ca: &str, creds: Credentials) -> PathBuf {
    let d = dir.display();
    let user = match creds {
        Credentials::ClientCertificate => {
            format!("    client-certificate: {d}/client.pem\n    client-key: {d}/client.key\n")
        }
        Credentials::Token(t) => format!("    token: {t}\n"),
    };
    let path = dir.join(format!("kubeconfig-{ca}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {d}/{ca}.pem\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path
}
