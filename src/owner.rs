//! One owner per interface: a live run holds an exclusive lock for every interface it takes
//! (its ports' interfaces and host interfaces) before it touches any of them.
//!
//! The lock is `flock(2)` on `/run/nodegate/<netns>/<interface>.lock` (std's `File::try_lock`),
//! where `<netns>` is the inode of the process's network namespace, since interface names are
//! per namespace. The kernel releases the lock when the process ends, however it ends (SIGKILL
//! included), so a lock can never be left behind; the file itself says who holds it (pid, since
//! when, configuration) for the error a second instance prints, and is emptied on a clean stop.
//! A file that is not empty when its lock is free was left by a run that did not stop cleanly:
//! the new run takes over and says so.
//!
//! The file is never removed: removing it while another process waits on it would let a third
//! process lock a new file of the same name, and two runs would own the interface.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the locks live; `NODEGATE_RUN_DIR` overrides it (tests of the lock itself).
pub fn run_dir() -> PathBuf {
    std::env::var_os("NODEGATE_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/nodegate"))
}

/// An interface this process owns until the value is dropped.
#[derive(Debug)]
pub struct InterfaceLock {
    file: File,
    pub interface: String,
    /// Who held it before and did not stop cleanly (the lock file's content), if anyone.
    pub took_over_from: Option<String>,
}

/// Why an interface could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another live process holds it; the text says who (from its lock file).
    Busy { holder: String },
    /// The lock file could not be made or opened.
    Io { path: PathBuf, reason: String },
}

impl InterfaceLock {
    /// Takes `interface` for this process, recording `config` (the configuration file) as the
    /// owner's. Fails at once (never waits) when another process holds it.
    pub fn take(interface: &str, config: &Path) -> Result<InterfaceLock, LockError> {
        Self::take_in(&run_dir(), interface, config)
    }

    /// The same, with the locks under `run_dir`.
    pub fn take_in(
        run_dir: &Path,
        interface: &str,
        config: &Path,
    ) -> Result<InterfaceLock, LockError> {
        let netns = std::fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino().to_string())
            .unwrap_or_else(|_| "host".into());
        let dir = run_dir.join(netns);
        let path = dir.join(format!("{interface}.lock"));
        let io = |e: std::io::Error| LockError::Io {
            path: path.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = describe(&holder).unwrap_or_else(|| "another process".into());
                return Err(LockError::Busy { holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut before = String::new();
        let _ = file.read_to_string(&mut before);
        let took_over_from = describe(&before);
        let since = control::http::rfc3339_nano(Some(std::time::SystemTime::now()));
        let config = config
            .canonicalize()
            .unwrap_or_else(|_| config.to_path_buf());
        let record = format!(
            "pid={}\nsince={since}\nconfig={}\n",
            std::process::id(),
            config.display()
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(record.as_bytes()).map_err(io)?;
        Ok(InterfaceLock {
            file,
            interface: interface.to_string(),
            took_over_from,
        })
    }
}

impl Drop for InterfaceLock {
    /// A clean stop: the record is emptied (the lock itself goes with the descriptor).
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// "nodegate pid N (configuration F), since T" from a lock file's record; `None` when empty.
fn describe(record: &str) -> Option<String> {
    let field = |k: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_string)
    };
    let pid = field("pid")?;
    let mut s = format!("nodegate pid {pid}");
    if let Some(c) = field("config") {
        s.push_str(&format!(" (configuration {c})"));
    }
    if let Some(t) = field("since") {
        s.push_str(&format!(", since {t}"));
    }
    Some(s)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn records_describe_their_owner() {
        assert_eq!(
            describe("pid=42\nsince=2026-12-03T08:00:00Z\nconfig=/etc/nodegate.yaml\n").unwrap(),
            "nodegate pid 42 (configuration /etc/nodegate.yaml), since 2026-12-03T08:00:00Z"
        );
        assert_eq!(describe(""), None);
    }

    #[test]
    fn a_second_owner_is_refused_and_a_clean_stop_leaves_nothing_to_take_over() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Path::new("/etc/a.yaml");
        let first = InterfaceLock::take_in(dir.path(), "eth0", cfg).unwrap();
        assert_eq!(first.took_over_from, None);
        match InterfaceLock::take_in(dir.path(), "eth0", Path::new("/etc/b.yaml")) {
            Err(LockError::Busy { holder }) => {
                let me = format!(
                    "nodegate pid {} (configuration /etc/a.yaml), since ",
                    std::process::id()
                );
                assert!(holder.starts_with(&me), "{holder}");
            }
            other => panic!("second owner: {other:?}"),
        }
        // Another interface is free.
        let other = InterfaceLock::take_in(dir.path(), "eth1", cfg).unwrap();
        drop(other);
        drop(first);
        // Another test of this process that forks a command in the moment between `fork` and
        // `exec` holds a copy of every descriptor, the lock's too (O_CLOEXEC closes it only at
        // `exec`): a free lock may read busy for that moment, with the record already empty.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let again = loop {
            match InterfaceLock::take_in(dir.path(), "eth0", cfg) {
                Err(LockError::Busy { holder })
                    if holder == "another process" && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(again.took_over_from, None, "a clean stop leaves no record");
        // A run that ends without its drop (SIGKILL) leaves its record: the next one says so.
        std::mem::forget(again);
    }
}
