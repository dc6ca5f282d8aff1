//! Network namespaces, veth pairs and the commands that make them: the one helper the demo,
//! the namespace tests and the namespace benchmarks share. What it creates is removed on drop
//! ([`Netns`], [`Link`]), also when the caller fails; a command that fails says which and why.

use std::process::{Command, Output, Stdio};

/// The Debian package a tool the helpers run comes from, for the error that it is missing.
fn package(tool: &str) -> &'static str {
    match tool {
        "ip" => "iproute2",
        "ethtool" => "ethtool",
        "ping" => "iputils-ping",
        "curl" => "curl",
        "python3" => "python3",
        _ => "the package that provides it",
    }
}

/// Runs `args` (program first) and returns what it printed; the program not found or failing
/// is an error naming the command, its output and, for a missing tool, its package.
pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| {
            format!(
                "cannot run `{}` (install {}): {e}",
                args[0],
                package(args[0])
            )
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`run`] for tests and benchmarks: a failure panics with the reason (they need root).
pub fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e} (this needs root and iproute2)"))
}

/// Runs `args` and returns its whole output, whatever its status; panics only when the program
/// cannot be started.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (install {})", package(args[0])))
}

/// A command that runs in namespace `ns` (`ip netns exec ns ...`): add the program and its
/// arguments.
pub fn exec(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    c
}

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// Creates namespace `name`.
    pub fn add(name: &str) -> Result<Netns, String> {
        run(&["ip", "netns", "add", name])?;
        Ok(Netns(name.to_string()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.0);
    }
}

/// Deletes namespace `name` if it exists (and with it the links inside).
pub fn delete_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// A link in the caller's own namespace, deleted on drop.
pub struct Link(pub String);

impl Drop for Link {
    fn drop(&mut self) {
        delete_link(&self.0);
    }
}

/// Deletes link `name` of the caller's namespace if it exists.
pub fn delete_link(name: &str) {
    let _ = Command::new("ip")
        .args(["link", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// `ip [-n ns] link add a ... type veth peer name b ...` with `queues` queues each way on both
/// ends.
pub fn add_veth(ns: Option<&str>, a: &str, b: &str, queues: usize) -> Result<(), String> {
    let q = queues.to_string();
    let mut args = vec!["ip"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["link", "add", a, "numtxqueues", &q, "numrxqueues", &q]);
    args.extend(["type", "veth", "peer", "name", b]);
    args.extend(["numtxqueues", &q, "numrxqueues", &q]);
    run(&args).map(drop)
}

/// Turns transmit checksum offload off on `dev` in namespace `ns`: a frame leaving a veth
/// otherwise carries a partial checksum that only the kernel's own stack would complete.
pub fn tx_checksum_off(ns: &str, dev: &str) -> Result<(), String> {
    run(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"]).map(drop)
}

/// A veth pair from `a` in namespace `ns_a` to `b` in `ns_b`, both up with transmit checksum
/// offload off. It is made under a temporary name in the caller's namespace and renamed once
/// moved, so `a` and `b` may be names that already exist there.
pub fn veth_between(ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), String> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
    let tmp = format!("ngv{}x{n}", std::process::id() % 100_000);
    let peer = format!("{tmp}p");
    add_veth(None, &tmp, &peer, 1)?;
    run(&["ip", "link", "set", &tmp, "netns", ns_a])?;
    run(&["ip", "link", "set", &peer, "netns", ns_b])?;
    run(&["ip", "-n", ns_a, "link", "set", &tmp, "name", a])?;
    run(&["ip", "-n", ns_b, "link", "set", &peer, "name", b])?;
    for (n, dev) in [(ns_a, a), (ns_b, b)] {
        run(&["ip", "-n", n, "link", "set", dev, "up"])?;
        tx_checksum_off(n, dev)?;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_failing_command_says_which_and_why() {
        let e = run(&["sh", "-c", "echo nope >&2; exit 3"]).unwrap_err();
        assert!(e.contains("`sh -c") && e.contains("nope"), "{e}");
        let e = run(&["ngnosuchtool"]).unwrap_err();
        assert!(e.contains("cannot run `ngnosuchtool`"), "{e}");
        assert_eq!(run(&["sh", "-c", "echo hi"]).unwrap(), "hi\n");
    }
}
