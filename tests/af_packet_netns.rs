//! `nodegate run` on an AF_PACKET port (TPACKET_V3 rings) over a veth pair whose other end is
//! in a fresh network namespace: ARP and ping answered by the data plane, 20 MiB of TCP through
//! a NATed ClusterIP, clean stop on SIGTERM. Needs root and iproute2 (CI has both); fails with the reason otherwise.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

mod netns;
use netns::*;

#[test]
fn nodegate_run_on_af_packet_with_two_workers_answers_ping_and_carries_nat_traffic() {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngpk{id}"));
    let (host, peer) = (format!("ngp{id}"), format!("ngq{id}"));
    must(&["ip", "netns", "add", &ns.0]);
    must(&[
        "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
    ]);
    let _link = Link(host.clone());
    must(&["ip", "link", "set", &peer, "netns", &ns.0]);
    must(&["ip", "link", "set", &host, "up"]);
    must(&[
        "ip",
        "-n",
        &ns.0,
        "addr",
        "add",
        "192.0.2.2/24",
        "dev",
        &peer,
    ]);
    must(&["ip", "-n", &ns.0, "link", "set", &peer, "up"]);
    must(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
    must(&[
        "ip",
        "-n",
        &ns.0,
        "route",
        "add",
        "10.96.0.0/16",
        "via",
        "192.0.2.1",
    ]);
    // veth hands AF_PACKET frames with partial checksums unless the sender computes them.
    must(&[
        "ip", "netns", "exec", &ns.0, "ethtool", "-K", &peer, "tx", "off",
    ]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: 2\nports:\n  - {{name: eth0, driver: af_packet, interface: {host}, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}}\nkubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/bulk.yaml"), BULK_SERVICE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodegate"))
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
        .unwrap();
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let reap = Reap(child.id());
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("ready") {
        assert!(Instant::now() < deadline, "no `ready` line: {seen}");
        let mut line = String::new();
        if log.read_line(&mut line).unwrap() == 0 {
            panic!("nodegate exited before `ready`: {seen}");
        }
        seen.push_str(&line);
    }
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "192.0.2.1",
        ])
        .output()
        .unwrap();
    // Tens of megabytes through DNAT and hairpin SNAT over the rings.
    bulk_transfer(&ns.0);
    must(&["kill", "-TERM", &child.id().to_string()]);
    let status = child.wait().unwrap();
    drop(reap);
    assert!(
        ping.status.success(),
        "ping over AF_PACKET failed: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    assert!(status.success(), "exit status {status:?}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stats.json")).unwrap())
            .unwrap();
    assert!(
        stats["total"]["arp_replies"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["total"]["icmp_sent"].as_u64().unwrap() >= 3,
        "{stats}"
    );
}
