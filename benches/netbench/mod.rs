//! Shared pieces of the namespace benchmarks (`veth`, `compare`): commands that fail with the
//! reason, children killed on drop, `nodegate run` started in a namespace and stopped with its
//! statistics, and a veth's receive moved into a pinned NAPI thread.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nodegate::netns::Netns;
#[allow(unused_imports)]
pub use nodegate::netns::{must, sh as cmd};

/// Network namespaces created by [`Namespaces::add`], deleted on drop (also when a benchmark
/// panics).
pub struct Namespaces(Vec<Netns>);

impl Namespaces {
    /// Creates the namespaces `names`.
    pub fn add(names: &[&String]) -> Namespaces {
        let mut made = Namespaces(Vec::new());
        for ns in names {
            made.0
                .push(Netns::add(ns).unwrap_or_else(|e| panic!("{e} (needs root)")));
        }
        made
    }
}

/// A child process killed on drop if still running.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `nodegate run --config nodegate.yaml --stats-json stats.json` in namespace `ns`, from a
/// directory that holds the configuration (and whatever it names).
pub struct Nodegate {
    child: Guard,
    dir: tempfile::TempDir,
    /// What it logged up to `ready`.
    pub log: String,
    /// Its log lines after `ready` (kept open: a closed pipe would lose them).
    lines: mpsc::Receiver<String>,
}

impl Nodegate {
    /// Starts it in `ns` with `dir` as its directory and waits (at most 20 s) for `ready`.
    pub fn start(ns: &str, dir: tempfile::TempDir) -> Nodegate {
        Self::start_with(ns, dir, &[])
    }

    /// As [`Nodegate::start`], the whole process (workers, control thread, host stack) kept on
    /// `cpus` (`taskset -c`), off the generator's CPUs.
    pub fn start_on(ns: &str, dir: tempfile::TempDir, cpus: &str) -> Nodegate {
        Self::start_with(ns, dir, &["taskset", "-c", cpus])
    }

    fn start_with(ns: &str, dir: tempfile::TempDir, wrapper: &[&str]) -> Nodegate {
        let child = nodegate::netns::exec(ns)
            .args(wrapper)
            .arg(env!("CARGO_BIN_EXE_nodegate"))
            .args([
                "run",
                "--config",
                "nodegate.yaml",
                "--stats-json",
                "stats.json",
            ])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nodegate");
        let mut child = Guard(child);
        let (tx, rx) = mpsc::channel();
        let stderr = child.0.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut log = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !log.contains("nodegate::run: ready") {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    log.push_str(&line);
                    log.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(!left.is_zero(), "nodegate did not get ready:\n{log}");
                    assert!(!ffi::signal::stop_requested(), "interrupted");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("nodegate exited before it was ready:\n{log}")
                }
            }
        }
        Nodegate {
            child,
            dir,
            log,
            lines: rx,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGTERM, a clean exit, and the statistics it wrote.
    pub fn stop(self) -> serde_json::Value {
        must(&["kill", "-TERM", &self.child.0.id().to_string()]);
        let mut child = self.child;
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.0.try_wait().expect("nodegate status") {
                break s;
            }
            assert!(Instant::now() < deadline, "nodegate did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let later: Vec<String> = self.lines.try_iter().collect();
        assert!(
            status.success(),
            "nodegate exit status {status:?}:\n{}{}",
            self.log,
            later.join("\n")
        );
        let text = std::fs::read_to_string(self.dir.path().join("stats.json")).expect("stats.json");
        serde_json::from_str(&text).expect("stats.json is JSON")
    }
}

/// Kernel threads named `napi/...`, by pid.
fn napi_threads() -> Vec<(String, String)> {
    must(&["ps", "-e", "-o", "pid=,comm="])
        .lines()
        .filter_map(|l| {
            let (pid, comm) = l.trim().split_once(' ')?;
            comm.trim()
                .starts_with("napi/")
                .then(|| (pid.to_string(), comm.trim().to_string()))
        })
        .collect()
}

/// `dev`'s receive (in namespace `ns`) through NAPI threads pinned to `cpus`, one per receive
/// queue (GRO on makes veth use NAPI); plain veth again on drop.
pub struct ThreadedNapi {
    ns: String,
    dev: String,
}

impl ThreadedNapi {
    pub fn enable(ns: &str, dev: &str, cpus: &[usize]) -> ThreadedNapi {
        let guard = ThreadedNapi {
            ns: ns.to_string(),
            dev: dev.to_string(),
        };
        let before = napi_threads();
        must(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"]);
        must(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{dev}/threaded"),
        ]);
        let new: Vec<_> = napi_threads()
            .into_iter()
            .filter(|p| !before.contains(p) && p.1.starts_with(&format!("napi/{dev}-")))
            .collect();
        assert!(!new.is_empty(), "no NAPI thread appeared for {dev}");
        // One thread per receive queue: spread over `cpus` in turn.
        for (i, (pid, _)) in new.iter().enumerate() {
            must(&["taskset", "-pc", &cpus[i % cpus.len()].to_string(), pid]);
        }
        guard
    }
}

impl Drop for ThreadedNapi {
    fn drop(&mut self) {
        let _ = nodegate::netns::exec(&self.ns)
            .args(["sh", "-c"])
            .arg(format!("echo 0 > /sys/class/net/{}/threaded", self.dev))
            .status();
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "ethtool", "-K", &self.dev, "gro", "off",
            ])
            .stdout(Stdio::null())
            .status();
    }
}
