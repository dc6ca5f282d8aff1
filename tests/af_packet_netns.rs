//! `nodegate run` on an AF_PACKET port (TPACKET_V2 rings) over a veth pair whose other end is
//! in a fresh network namespace: ARP and ping answered by the data plane, 20 MiB of TCP through
//! a NATed ClusterIP, clean stop on SIGTERM. Needs root and iproute2 (CI has both); fails with the reason otherwise.

mod netns;
use netns::*;

#[test]
fn nodegate_run_on_af_packet_with_two_workers_answers_ping_and_carries_nat_traffic() {
    // veth hands AF_PACKET frames with partial checksums unless the sender computes them.
    let stats = run_with_peer_offloads("a", &["tx", "off"]);
    assert_eq!(
        stats["ports"][0]["driver"]["checksums_completed"], 0,
        "{stats}"
    );
}

/// The sender keeps its TX checksum offload (only segmentation is off, as it must be: a GSO
/// super-frame does not fit a ring slot): every TCP frame arrives with a partial checksum
/// (`TP_STATUS_CSUMNOTREADY`), which the driver completes.
#[test]
fn af_packet_completes_checksums_the_sender_offloaded() {
    let stats = run_with_peer_offloads("c", &["tso", "off", "gso", "off"]);
    // Every TCP frame of the transfer (thousands) came with a partial checksum.
    assert!(
        stats["ports"][0]["driver"]["checksums_completed"]
            .as_u64()
            .unwrap()
            > 1000,
        "{stats}"
    );
    assert_eq!(stats["ports"][0]["driver"]["truncated"], 0, "{stats}");
}

fn run_with_peer_offloads(tag: &str, offloads: &[&str]) -> serde_json::Value {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngpk{tag}{id}"));
    let (host, peer) = (format!("ngp{tag}{id}"), format!("ngq{tag}{id}"));
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
    let mut ethtool = vec!["ip", "netns", "exec", &ns.0, "ethtool", "-K", &peer];
    ethtool.extend(offloads);
    must(&ethtool);

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
    let run = Running::start(dir.path());
    ping(&ns.0, "192.0.2.1");
    // Tens of megabytes through DNAT and hairpin SNAT over the rings.
    bulk_transfer(&ns.0);
    let stats = run.stop();
    assert_forwarded_cleanly(&stats);
    assert_eq!(stats["workers"].as_array().unwrap().len(), 2);
    assert_eq!(stats["total"]["flows_created"], 1, "{stats}");
    stats
}

/// Two runs on one interface: the second is refused with who holds it (both used to start, and
/// each took half the frames), the first keeps answering.
#[test]
fn a_second_af_packet_run_on_the_same_interface_is_refused() {
    let (ns, _link, host) = veth_pair("ngpo", "ngpp", "o");
    let config = format!(
        "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nports:\n  - {{name: eth0, driver: af_packet, interface: {host}, addresses: [\"192.0.2.1/24\"]}}\n"
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&a, &b] {
        std::fs::write(d.path().join("nodegate.yaml"), &config).unwrap();
    }
    let first = Running::start(a.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["run", "--config", "nodegate.yaml"])
        .current_dir(b.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let expected = format!(
        "ports[0].interface: `{host}` is used by nodegate pid {} (configuration {}), since ",
        first.pid(),
        a.path()
            .canonicalize()
            .unwrap()
            .join("nodegate.yaml")
            .display()
    );
    assert!(err.contains(&expected), "no `{expected}` in:\n{err}");
    assert!(!err.contains("port up"), "{err}");
    ping(&ns.0, "192.0.2.1");
    first.stop();
}
