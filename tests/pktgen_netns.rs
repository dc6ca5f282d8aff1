//! `nodegate pktgen` on real devices: a veth pair in a fresh namespace, frames sent on one end
//! (af_xdp, af_packet) and counted on the other (af_xdp), the JSON report read back. Needs root
//! and iproute2; fails with the reason otherwise.

mod netns;
use netns::*;

use std::process::Command;

/// Runs pktgen in `ns` with `args`; the JSON report.
fn pktgen(ns: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_nodegate"),
            "pktgen",
        ])
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run nodegate pktgen");
    assert!(
        out.status.success(),
        "pktgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sent") && text.contains("received"), "{text}");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// A fresh namespace `{prefix}{pid}` holding a veth pair `a`–`b` with `queues` queues each way,
/// up, without IPv6 chatter (router solicitations) among the frames counted; and `b`'s MAC.
fn veth_in_namespace(prefix: &str, a: &str, b: &str, queues: usize) -> (Netns, String) {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("{prefix}{id}"));
    must(&["ip", "netns", "add", &ns.0]);
    add_veth(Some(&ns.0), a, b, queues);
    for dev in [a, b, "lo"] {
        must(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
    }
    must(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
    ]);
    let mac = sh(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "cat",
        &format!("/sys/class/net/{b}/address"),
    ]);
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
    (ns, mac)
}

/// The command failed and said `reason` on standard error.
fn assert_refused(out: &std::process::Output, reason: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(reason), "{err}");
}

#[test]
fn pktgen_sends_counts_and_times_frames_on_a_veth_pair() {
    preflight(&["ip"]);
    let (ns, mac) = veth_in_namespace("ngpg", "pa", "pb", 1);
    // IPv4 from both transmit drivers; IPv6 (UDP with its mandatory checksum, and TCP) in the
    // smallest frames that hold the stamp.
    let v4 = ("198.18.1.2-198.18.1.3", "198.18.2.2");
    let v6 = ("2001:db8::1-2001:db8::2", "2001:db8:1::2");
    let mut cases = Vec::new();
    for tx in ["af_xdp:pa", "af_packet:pa"] {
        for (proto, size) in [("udp", "64"), ("tcp", "1518")] {
            cases.push((tx, v4, proto, size));
        }
    }
    cases.push(("af_xdp:pa", v6, "udp", "82"));
    cases.push(("af_xdp:pa", v6, "tcp", "94"));
    for (tx, (src, dst), proto, size) in cases {
        let r = pktgen(
            &ns.0,
            &[
                "--tx",
                tx,
                "--rx",
                "af_xdp:pb",
                "--dst-mac",
                &mac,
                "--src",
                src,
                "--sport",
                "1024-1123",
                "--dst",
                dst,
                "--dport",
                "80",
                "--proto",
                proto,
                "--size",
                size,
                "--rate",
                "200000",
                "--count",
                "20000",
                "--duration",
                "10",
            ],
        );
        let what = format!("{tx} {src} {proto} {size}: {r}");
        assert_eq!(r["flows"], 200, "{what}");
        assert_eq!(r["sent"], 20000, "{what}");
        assert_eq!(r["received"], 20000, "{what}");
        assert_eq!(r["received_other"], 0, "{what}");
        assert_eq!(r["loss"], 0, "{what}");
        // 20000 frames at 200 kpps take 0.1 s at least: the rate is kept.
        assert!(r["seconds"].as_f64().unwrap() >= 0.099, "{what}");
        let p50 = r["latency_ns"]["p50"].as_u64().unwrap();
        let p99 = r["latency_ns"]["p99"].as_u64().unwrap();
        assert!(p50 > 0 && p50 <= p99, "{what}");
    }
    // Bounded: no duration and no count is refused with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args([
            "pktgen",
            "--tx",
            "pcap:/dev/null",
            "--src",
            "10.0.0.1",
            "--dst",
            "10.0.0.2",
        ])
        .output()
        .unwrap();
    assert_refused(&out, "--duration or --count");
}

/// `--queues 2` on a veth pair with two queues each way: one lane per queue, each sending on its
/// queue of one end and receiving on the same queue of the other (veth hands queue q's frames to
/// the peer's queue q), the counts of both lanes added up; other drivers are refused.
#[test]
fn pktgen_lanes_send_and_receive_on_every_queue() {
    preflight(&["ip", "ethtool"]);
    let (ns, mac) = veth_in_namespace("ngpq", "qa", "qb", 2);
    let cpus = ffi::available_cpus();
    let cpu_list = cpus
        .iter()
        .take(2)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let common = [
        "--dst-mac",
        &mac,
        "--src",
        "198.18.1.2",
        "--sport",
        "1024-1123",
        "--dst",
        "198.18.2.2",
        "--dport",
        "80",
        "--rate",
        "200000",
        "--count",
        "20001",
        "--duration",
        "10",
        "--queues",
        "2",
        "--cpu",
        &cpu_list,
    ];
    let mut args = vec!["--tx", "af_xdp:qa", "--rx", "af_xdp:qb"];
    args.extend(common);
    let r = pktgen(&ns.0, &args);
    assert_eq!(r["flows"], 100, "{r}");
    assert_eq!(r["sent"], 20001, "{r}");
    assert_eq!(r["received"], 20001, "{r}");
    assert_eq!(r["loss"], 0, "{r}");
    // The total rate is kept: 20001 frames at 200 kpps (100 kpps per lane) take 0.1 s.
    assert!(r["seconds"].as_f64().unwrap() >= 0.099, "{r}");
    assert!(r["latency_ns"]["p50"].as_u64().unwrap() > 0, "{r}");
    // Both queues carried their lane's half (the odd frame goes to lane 0).
    let stats = sh(&["ip", "netns", "exec", &ns.0, "ethtool", "-S", "qb"]);
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    let count = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in ethtool -S qb:\n{stats}"))
    };
    assert_eq!(count("rx_queue_0_xdp_redirect:"), 10001, "{stats}");
    assert_eq!(count("rx_queue_1_xdp_redirect:"), 10000, "{stats}");
    // Several queues are for af_xdp ports only.
    let out = nodegate::netns::exec(&ns.0)
        .args([env!("CARGO_BIN_EXE_nodegate")])
        .args(["pktgen", "--tx", "af_packet:qa"])
        .args(common)
        .output()
        .unwrap();
    assert_refused(&out, "af_xdp");
}
