//! End to end through the `nodegate` binary: the shipped pcap example, checked frame by frame
//! with etherparse, and bad input rejected with file, field and reason.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use nodegate::pcap::PcapReader;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic")
}

/// Copies the example into a fresh directory so the run writes its output there.
fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = example_dir();
    std::fs::copy(src.join("nodegate.yaml"), dir.path().join("nodegate.yaml")).unwrap();
    std::fs::copy(src.join("in.pcap"), dir.path().join("in.pcap")).unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::copy(
        src.join("manifests/cluster.yaml"),
        dir.path().join("manifests/cluster.yaml"),
    )
    .unwrap();
    dir
}

fn nodegate(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run nodegate")
}

struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    what: String,
}

fn decode(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse reads every frame we send");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return Seen {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            dport: 0,
            what: "arp".into(),
        };
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let (src, dst) = (Ipv4Addr::from(h.source), Ipv4Addr::from(h.destination));
    let payload = ip.payload().payload;
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let th = t.to_header();
            assert_eq!(
                th.checksum,
                th.calc_checksum_ipv4(&h, t.payload()).unwrap(),
                "TCP checksum"
            );
            Seen {
                src,
                dst,
                sport: th.source_port,
                dport: th.destination_port,
                what: format!("tcp rst={}", th.rst),
            }
        }
        Some(TransportSlice::Udp(u)) => {
            let uh = u.to_header();
            assert_eq!(
                uh.checksum,
                uh.calc_checksum_ipv4(&h, u.payload()).unwrap(),
                "UDP checksum"
            );
            Seen {
                src,
                dst,
                sport: uh.source_port,
                dport: uh.destination_port,
                what: "udp".into(),
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let sum = etherparse::checksum::Sum16BitWords::new()
                .add_slice(payload)
                .ones_complement();
            assert_eq!(sum, 0, "ICMP checksum");
            Seen {
                src,
                dst,
                sport: 0,
                dport: 0,
                what: format!("icmp type {}", i.type_u8()),
            }
        }
        _ => panic!("unexpected transport"),
    }
}

#[test]
fn example_replays_to_the_expected_frames() {
    let dir = example_copy();
    let out = nodegate(
        &[
            "run",
            "--config",
            "nodegate.yaml",
            "--stats-json",
            "stats.json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = PcapReader::read_all(&dir.path().join("out.pcap")).unwrap();
    let seen: Vec<Seen> = frames.iter().map(|r| decode(&r.data)).collect();
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let tuple = |s: &Seen| (s.src, s.sport, s.dst, s.dport);
    assert_eq!(
        seen.len(),
        11,
        "{:?}",
        seen.iter().map(|s| &s.what).collect::<Vec<_>>()
    );
    // ARP reply, echo reply.
    assert_eq!(seen[0].what, "arp");
    assert_eq!(
        (seen[1].src, seen[1].dst, seen[1].what.as_str()),
        (ip("10.0.0.1"), ip("198.51.100.7"), "icmp type 0")
    );
    // NodePort with policy Cluster: DNAT and SNAT to the port address; reply restored.
    assert_eq!(
        tuple(&seen[2]),
        (ip("10.0.0.1"), 20000, ip("10.1.0.5"), 8080)
    );
    assert_eq!(
        tuple(&seen[3]),
        (ip("10.0.0.1"), 30080, ip("198.51.100.7"), 40000)
    );
    assert_eq!(
        tuple(&seen[4]),
        (ip("10.0.0.1"), 20000, ip("10.1.0.5"), 8080)
    );
    // LoadBalancer with policy Local: nothing sent. ClusterIP: client address kept.
    assert_eq!(
        tuple(&seen[5]),
        (ip("10.1.0.9"), 51000, ip("10.1.0.5"), 8080)
    );
    // No ready endpoint: RST from the Service address.
    assert_eq!(
        tuple(&seen[6]),
        (ip("10.96.0.20"), 80, ip("10.1.0.9"), 51001)
    );
    assert_eq!(seen[6].what, "tcp rst=true");
    // ARP request, then the held DNS query, then the reply from the Service address.
    assert_eq!(seen[7].what, "arp");
    assert_eq!(tuple(&seen[8]), (ip("10.1.0.9"), 5353, ip("10.0.1.53"), 53));
    assert_eq!(
        tuple(&seen[9]),
        (ip("10.96.0.53"), 53, ip("10.1.0.9"), 5353)
    );
    // TTL 1: time exceeded back to the client.
    assert_eq!(
        (seen[10].dst, seen[10].what.as_str()),
        (ip("198.51.100.7"), "icmp type 11")
    );

    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats["ports"][0]["rx"], 13);
    assert_eq!(stats["ports"][0]["tx"], 11);
    assert_eq!(stats["total"]["drops"]["ip4-malformed"], 1);
    assert_eq!(stats["total"]["drops"]["svc-no-local-endpoint"], 1);
    assert_eq!(stats["total"]["flows_created"], 3);
    assert_eq!(stats["workers"][0]["flows"], 3);
}

#[test]
fn bad_config_is_rejected_with_file_field_and_reason() {
    let dir = example_copy();
    let cfg = std::fs::read_to_string(dir.path().join("nodegate.yaml")).unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        cfg.replace("10.0.0.1/16", "10.0.0.1/33"),
    )
    .unwrap();
    let out = nodegate(&["run", "--config", "nodegate.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nodegate.yaml"), "{err}");
    assert!(err.contains("ports[0].addresses[0]"), "{err}");
    assert!(
        !dir.path().join("out.pcap").exists(),
        "nothing runs on a bad config"
    );
}

#[test]
fn bad_manifest_is_rejected_with_file_field_and_reason() {
    let dir = example_copy();
    let m = dir.path().join("manifests/cluster.yaml");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replacen("port: 8080", "port: 80800", 1)).unwrap();
    let out = nodegate(&["run", "--config", "nodegate.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.yaml"), "{err}");
    assert!(
        err.contains("EndpointSlice default/clusterip-7x2kq"),
        "{err}"
    );
    assert!(err.contains("80800"), "{err}");
}

#[test]
fn a_misspelt_manifest_field_is_refused_not_defaulted() {
    let dir = example_copy();
    let m = dir.path().join("manifests/cluster.yaml");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replacen(
            "externalTrafficPolicy: Local",
            "externalTraficPolicy: Local",
            1,
        ),
    )
    .unwrap();
    let out = nodegate(&["run", "--config", "nodegate.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        line.contains("manifests/cluster.yaml: document ")
            && line.contains("spec.externalTraficPolicy: unknown field `externalTraficPolicy`: did you mean `externalTrafficPolicy`?"),
        "{err}"
    );
    assert!(
        !dir.path().join("out.pcap").exists(),
        "nothing runs on a bad manifest"
    );
}

#[test]
fn demo_names_the_missing_tool_and_its_package() {
    // A PATH with `ip` and `python3` but no `curl`.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["ip", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
        assert!(
            !path.is_empty(),
            "this test needs `{tool}` (iproute2, python3)"
        );
        std::os::unix::fs::symlink(&path, bin.path().join(tool)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .arg("demo")
        .env("PATH", bin.path())
        .output()
        .expect("run nodegate");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: the demo needs `curl` for the experiments (Debian package curl), not found on the PATH; install with `apt-get install curl`"),
        "{err}"
    );
}

#[test]
fn missing_interface_is_named() {
    let dir = example_copy();
    let cfg = std::fs::read_to_string(dir.path().join("nodegate.yaml")).unwrap();
    let cfg = cfg
        .replace("driver: pcap", "driver: af_xdp\n    interface: ng-missing0")
        .replace("    rx: in.pcap\n    tx: out.pcap\n", "");
    std::fs::write(dir.path().join("nodegate.yaml"), cfg).unwrap();
    let out = nodegate(&["run", "--config", "nodegate.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodegate.yaml: ports[0].interface: no interface `ng-missing0` in this network namespace; it has: ")
            && err.contains("lo"),
        "{err}"
    );
}

#[test]
fn bad_af_xdp_mode_names_the_field() {
    let dir = example_copy();
    let cfg = std::fs::read_to_string(dir.path().join("nodegate.yaml")).unwrap();
    let cfg = cfg
        .replace(
            "driver: pcap",
            "driver: af_xdp\n    interface: lo\n    mode: turbo",
        )
        .replace("    rx: in.pcap\n    tx: out.pcap\n", "");
    std::fs::write(dir.path().join("nodegate.yaml"), cfg).unwrap();
    let out = nodegate(&["run", "--config", "nodegate.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ports[0].mode") && err.contains("`turbo`"),
        "{err}"
    );
}

/// A `dpdk` port: refused with the way to get DPDK in a build without the feature; with it,
/// the EAL starts (no huge pages needed) and a PCI address with no device behind it is named.
#[test]
fn dpdk_port_needs_the_feature_and_a_device() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        "node: {name: n}\nports:\n  - {name: eth0, driver: dpdk, interface: \"0000:ff:1f.7\"}\n",
    )
    .unwrap();
    let out = nodegate(&["run", "--config", "nodegate.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "dpdk") {
        assert!(
            err.contains("nodegate.yaml: ports[0].interface: DPDK has no device `0000:ff:1f.7`"),
            "{err}"
        );
    } else {
        assert!(
            err.contains(
                "nodegate.yaml: ports[0].driver: built without the dpdk feature; rebuild with \
                 --features dpdk"
            ),
            "{err}"
        );
    }
}

/// A run whose log reader has gone away (stderr a closed pipe, as after `| head` or a log
/// collector restart) still runs to the end: log lines are lost, not the process.
#[test]
fn a_closed_stderr_does_not_stop_a_run() {
    use std::process::Stdio;
    let dir = example_copy();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args([
            "run",
            "--config",
            "nodegate.yaml",
            "--stats-json",
            "stats.json",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nodegate");
    // Close the read end before the first line is written.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(dir.path().join("stats.json").exists());
    assert!(!PcapReader::read_all(&dir.path().join("out.pcap"))
        .unwrap()
        .is_empty());
}
