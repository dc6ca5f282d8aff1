//! Run-time errors a user can act on: what `nodegate run` says when a live port cannot work, in
//! a network namespace of the test's own. Each names the configuration file and field and the
//! fix, and the run stops (exit status 2) before it touches anything. Needs root.

mod netns;

use netns::{must, preflight, Netns, Running};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Network namespace `name` (each test has its own: they run in parallel) with a veth pair
/// `v0`/`v1`, both up.
fn namespace(name: &str) -> Netns {
    preflight(&["ip", "setpriv", "sysctl"]);
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    must(&["ip", "netns", "add", name]);
    let ns = Netns(name.into());
    must(&[
        "ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    must(&["ip", "-n", name, "link", "set", "v0", "up"]);
    must(&["ip", "-n", name, "link", "set", "v1", "up"]);
    ns
}

fn config(driver: &str, interface: &str, port_extra: &str, extra: &str) -> String {
    format!(
        "node: {{name: node-a, addresses: [\"10.0.0.1\"]}}\n\
         workers: 1\n\
         ports:\n\
         \x20 - name: eth0\n\
         \x20   driver: {driver}\n\
         \x20   interface: {interface}\n\
         \x20   addresses: [\"10.0.0.1/24\"]\n\
         {port_extra}\
         health: {{bind: \"\"}}\n\
         metrics: {{bind: \"\"}}\n\
         {extra}"
    )
}

/// `nodegate run` of `text` in the namespace (optionally wrapped, e.g. by `setpriv`), with
/// `args`; it must fail. Returns its error output.
fn refused(ns: &str, dir: &Path, text: &str, wrapper: &[&str], args: &[&str]) -> String {
    std::fs::write(dir.join("nodegate.yaml"), text).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .args(wrapper)
        .arg(env!("CARGO_BIN_EXE_nodegate"))
        .args(["run", "--config"])
        .arg(dir.join("nodegate.yaml"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(dir);
    let out: Output = cmd.output().expect("run nodegate");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "refused with status 2:\n{err}");
    assert!(!err.contains("port up"), "nothing is opened:\n{err}");
    // No Rust debug output in what a user reads.
    for debug in ["Some(", "None", "Os {", " { "] {
        assert!(!err.contains(debug), "`{debug}` in:\n{err}");
    }
    err
}

fn error_line(err: &str) -> &str {
    err.lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"))
}

#[test]
fn a_missing_interface_is_named_with_the_ones_that_exist() {
    const NS: &str = "ngrerr0";
    let _ns = namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nodegate.yaml");
    for driver in ["af_xdp", "af_packet"] {
        let err = refused(NS, dir.path(), &config(driver, "eth9", "", ""), &[], &[]);
        assert_eq!(
            error_line(&err),
            format!(
                "error: {}: ports[0].interface: no interface `eth9` in this network namespace; it has: lo, v0, v1 (check the name, or run nodegate in the namespace that holds `eth9`)",
                file.display()
            ),
            "{driver}"
        );
    }
}

#[test]
fn an_interface_that_is_down_is_refused_with_the_command_that_brings_it_up() {
    const NS: &str = "ngrerr1";
    let _ns = namespace(NS);
    must(&["ip", "-n", NS, "link", "set", "v0", "down"]);
    let dir = tempfile::tempdir().unwrap();
    for driver in ["af_xdp", "af_packet"] {
        let err = refused(NS, dir.path(), &config(driver, "v0", "", ""), &[], &[]);
        assert!(
            error_line(&err).ends_with(
                "nodegate.yaml: ports[0].interface: `v0` is down; bring it up first: `ip link set dev v0 up`"
            ),
            "{driver}: {err}"
        );
    }
}

#[test]
fn a_link_without_carrier_is_not_called_up_until_it_comes_up() {
    const NS: &str = "ngrerr2";
    let _ns = namespace(NS);
    must(&["ip", "-n", NS, "link", "set", "v1", "down"]);
    for driver in ["af_xdp", "af_packet"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("nodegate.yaml"),
            config(driver, "v0", "", ""),
        )
        .unwrap();
        let run = Running::start_in(dir.path(), Some(NS));
        assert!(
            run.log
                .contains("port open, waiting for the link of `v0` (no carrier)"),
            "{driver}: {}",
            run.log
        );
        assert!(!run.log.contains("port up"), "{driver}: {}", run.log);
        // The peer comes up: the link watch says so within a poll (1 s).
        must(&["ip", "-n", NS, "link", "set", "v1", "up"]);
        assert!(
            run.wait_for_line(
                0,
                &["link up: port up", "port=eth0"],
                Duration::from_secs(5)
            )
            .is_some(),
            "{driver}: {}",
            run.log_after_ready()
        );
        must(&["ip", "-n", NS, "link", "set", "v1", "down"]);
        assert!(
            run.wait_for_line(0, &["link down: no carrier"], Duration::from_secs(5))
                .is_some(),
            "{driver}: {}",
            run.log_after_ready()
        );
        run.stop();
    }
}

#[test]
fn more_queues_than_the_interface_has_are_refused() {
    const NS: &str = "ngrerr3";
    let _ns = namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        NS,
        dir.path(),
        &config("af_xdp", "v0", "    queues: 4\n", ""),
        &[],
        &[],
    );
    assert!(
        error_line(&err).ends_with(
            "ports[0].queues: 4 queues asked for, but `v0` has 1 receive queue; ask for at most 1, or give it more (`ethtool -L v0 combined N`)"
        ),
        "{err}"
    );
}

#[test]
fn missing_capabilities_are_named() {
    const NS: &str = "ngrerr4";
    let _ns = namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    // `nobody` must read the configuration.
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let err = refused(
        NS,
        dir.path(),
        &config("af_xdp", "v0", "", ""),
        &nobody,
        &[],
    );
    let line = error_line(&err);
    assert!(
        line.contains("ports[0].driver: af_xdp needs capabilities this process lacks: CAP_NET_ADMIN (to attach the XDP program), CAP_NET_RAW (for the AF_XDP sockets), CAP_BPF or CAP_SYS_ADMIN (to load the XDP program)"),
        "{line}"
    );
    assert!(
        line.contains("run nodegate as root, or grant them"),
        "{line}"
    );
    // A capability two things need is named once.
    let err = refused(
        NS,
        dir.path(),
        &config("af_xdp", "v0", "    host_interface: h0\n", ""),
        &nobody,
        &[],
    );
    assert_eq!(
        error_line(&err).matches("CAP_NET_ADMIN (").count(),
        1,
        "{err}"
    );
    let err = refused(
        NS,
        dir.path(),
        &config("af_packet", "v0", "", ""),
        &nobody,
        &[],
    );
    assert!(
        error_line(&err).contains(
            "ports[0].driver: af_packet needs capabilities this process lacks: CAP_NET_RAW (for the AF_PACKET sockets)"
        ),
        "{err}"
    );
    // Root without CAP_NET_ADMIN: only what is missing is named.
    let err = refused(
        NS,
        dir.path(),
        &config("tap", "t0", "", ""),
        &[
            "setpriv",
            "--inh-caps=-net_admin",
            "--bounding-set=-net_admin",
            "--",
        ],
        &[],
    );
    let line = error_line(&err);
    assert!(
        line.contains("tap needs capabilities this process lacks: CAP_NET_ADMIN (to create the TAP interface);"),
        "{line}"
    );
}

#[test]
fn trace_is_refused_on_a_live_run() {
    const NS: &str = "ngrerr5";
    let _ns = namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        NS,
        dir.path(),
        &config("af_packet", "v0", "", ""),
        &[],
        &["--trace"],
    );
    assert!(
        error_line(&err).starts_with("error: --trace describes the frames of a pcap replay;"),
        "{err}"
    );
}

#[test]
fn snat_ports_among_the_kernels_ephemeral_ports_are_refused() {
    const NS: &str = "ngrerr6";
    let _ns = namespace(NS);
    // The kernel of this namespace hands out 21000-40000 for its own connections.
    must(&[
        "ip",
        "netns",
        "exec",
        NS,
        "sysctl",
        "-qw",
        "net.ipv4.ip_local_port_range=21000 40000",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let err = refused(NS, dir.path(), &config("af_packet", "v0", "", ""), &[], &[]);
    assert!(
        error_line(&err).contains(
            "nodegate.yaml: snat.ports: 20000-29999 overlaps the kernel's ephemeral ports 21000-40000 (net.ipv4.ip_local_port_range)"
        ),
        "{err}"
    );
}

#[test]
fn a_queue_bound_by_another_program_is_named_busy() {
    const NS: &str = "ngrerr7";
    let _ns = namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        config("af_xdp", "v0", "", ""),
    )
    .unwrap();
    // Another program with AF_XDP sockets on v0's queue: a nodegate that does not share our
    // interface locks (another run directory).
    let other = tempfile::tempdir().unwrap();
    let run_dir = format!("NODEGATE_RUN_DIR={}", other.path().display());
    let first = Running::start_wrapped(
        dir.path(),
        &["env", &run_dir, "ip", "netns", "exec", NS],
        &[],
    );
    let before = xdp_program(NS, "v0");
    assert!(before.is_some(), "the first run attached its program");
    let err = refused(NS, dir.path(), &config("af_xdp", "v0", "", ""), &[], &[]);
    // The first run's program runs again, not the refused run's (which had to attach before
    // it could find the queue busy), nor none.
    assert_eq!(xdp_program(NS, "v0"), before, "{err}");
    let line = error_line(&err);
    assert!(
        line.contains("ports[0].interface: cannot open `v0` (af_xdp, auto mode): queue 0 of `v0`")
            && line.contains("Device or resource busy")
            && line.contains("a queue of it is already bound by another AF_XDP socket")
            && line.contains(&format!("pid {} (nodegate)", first.pid())),
        "{line}"
    );
    first.stop();
}

/// The id of the XDP program attached to `dev` in namespace `ns`, as `ip link` shows it.
fn xdp_program(ns: &str, dev: &str) -> Option<String> {
    let show = netns::sh(&["ip", "-n", ns, "-d", "link", "show", "dev", dev]);
    let text = String::from_utf8_lossy(&show.stdout).into_owned();
    let at = text.find("prog/xdp id ")? + "prog/xdp id ".len();
    text[at..].split_whitespace().next().map(str::to_string)
}

/// An XDP program that passes every frame, named `foreign_pass`: LLVM IR compiled by `llc`
/// (Debian package llvm) and attached by iproute2, as another tool would attach its own.
const FOREIGN_XDP: &str = r#"target triple = "bpf"
@_license = global [4 x i8] c"GPL\00", section "license", align 1
define i32 @foreign_pass(i8* %ctx) section "xdp" {
  ret i32 2
}
"#;

#[test]
fn an_xdp_program_that_is_not_nodegates_is_left_alone() {
    const NS: &str = "ngrerr8";
    let _ns = namespace(NS);
    preflight(&["llc"]);
    let dir = tempfile::tempdir().unwrap();
    let (ir, obj) = (dir.path().join("pass.ll"), dir.path().join("pass.o"));
    std::fs::write(&ir, FOREIGN_XDP).unwrap();
    must(&[
        "llc",
        "-march=bpf",
        "-filetype=obj",
        ir.to_str().unwrap(),
        "-o",
        obj.to_str().unwrap(),
    ]);
    must(&[
        "ip",
        "-n",
        NS,
        "link",
        "set",
        "dev",
        "v0",
        "xdpgeneric",
        "obj",
        obj.to_str().unwrap(),
        "sec",
        "xdp",
    ]);
    let err = refused(NS, dir.path(), &config("af_xdp", "v0", "", ""), &[], &[]);
    let line = error_line(&err);
    assert!(
        line.contains("ports[0].interface: `v0` runs an XDP program that is not nodegate's (id ")
            && line.contains("name `foreign_pass`); nodegate does not replace it: detach it first (`ip link set dev v0 xdp off`)"),
        "{line}"
    );
    // Untouched: still attached after the refusal.
    let show = netns::sh(&["ip", "-n", NS, "link", "show", "dev", "v0"]);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("name foreign_pass"),
        "{}",
        String::from_utf8_lossy(&show.stdout)
    );
}
