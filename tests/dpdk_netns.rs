//! `nodegate run` on DPDK ports (built with `--features dpdk`), with DPDK's virtual devices so
//! no NIC is needed: `net_af_packet` on a veth pair whose other end is in a fresh network
//! namespace (ARP and ping answered by the data plane, 20 MiB of TCP through a NATed
//! ClusterIP, clean stop on SIGTERM), and `net_tap` with nodegate itself inside a namespace.
//! Needs root, iproute2 and libdpdk (CI has them); fails with the reason otherwise.

#![cfg(feature = "dpdk")]

mod netns;
use netns::*;

/// Creates namespace `ns` holding `peer`, the far end of a veth pair whose near end `host`
/// stays here (up, no address); the peer is 192.0.2.2/24 with a route to the ClusterIP range
/// through nodegate at 192.0.2.1.
fn veth_into_namespace(ns: &str, host: &str, peer: &str) {
    must(&["ip", "netns", "add", ns]);
    must(&[
        "ip", "link", "add", host, "type", "veth", "peer", "name", peer,
    ]);
    must(&["ip", "link", "set", peer, "netns", ns]);
    must(&["ip", "link", "set", host, "up"]);
    configure_client(ns, peer);
    // The PMD reads frames as the kernel hands them: with partial checksums unless the sender
    // computes them.
    must(&[
        "ip", "netns", "exec", ns, "ethtool", "-K", peer, "tx", "off",
    ]);
}

/// 192.0.2.2/24 on `dev` in `ns`, up, with the ClusterIP range routed through 192.0.2.1.
fn configure_client(ns: &str, dev: &str) {
    must(&["ip", "-n", ns, "addr", "add", "192.0.2.2/24", "dev", dev]);
    must(&["ip", "-n", ns, "link", "set", dev, "up"]);
    must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    must(&[
        "ip",
        "-n",
        ns,
        "route",
        "add",
        "10.96.0.0/16",
        "via",
        "192.0.2.1",
    ]);
}

fn write_config(dir: &std::path::Path, workers: usize, port: &str) {
    std::fs::write(
        dir.join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: {workers}\nports:\n  - {port}\nkubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/bulk.yaml"), BULK_SERVICE).unwrap();
}

/// One queue pair (the PMD's default) and two workers: worker 0 reads the device, worker 1
/// gets its flows through the handoff queue and sends through a relay to worker 0, which owns
/// the one TX queue.
#[test]
fn nodegate_run_on_dpdk_af_packet_answers_ping_and_carries_nat_traffic() {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngdk{id}"));
    let (host, peer) = (format!("ngd{id}"), format!("nge{id}"));
    let _link = Link(host.clone());
    veth_into_namespace(&ns.0, &host, &peer);
    let host_mac = std::fs::read_to_string(format!("/sys/class/net/{host}/address")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    // No `mac`: the port takes its device's, the veth's.
    write_config(
        dir.path(),
        2,
        &format!(
            "{{name: eth0, driver: dpdk, interface: \"net_af_packet0,iface={host}\", addresses: [\"192.0.2.1/24\"]}}"
        ),
    );
    let run = Running::start(dir.path());
    assert!(run.log.contains("dpdk port started"), "{}", run.log);
    assert!(
        run.log.contains(&format!("mac={}", host_mac.trim())),
        "the device's MAC: {}",
        run.log
    );
    assert!(run.log.contains("rx_queues=1 tx_queues=1"), "{}", run.log);
    ping(&ns.0, "192.0.2.1");
    // Tens of megabytes through DNAT and hairpin SNAT over the DPDK port.
    bulk_transfer(&ns.0);
    let stats = run.stop();
    assert_forwarded_cleanly(&stats);
    assert_eq!(stats["workers"].as_array().unwrap().len(), 2);
    assert_eq!(stats["total"]["flows_created"], 1, "{stats}");
    assert!(stats["ports"][0]["rx"].as_u64().unwrap() > 1000, "{stats}");
}

/// nodegate inside a namespace, on a `net_tap` vdev the PMD creates there with one queue per
/// worker; the kernel side of the TAP, in the same namespace, is the client and the backend.
#[test]
fn nodegate_run_on_dpdk_tap_in_a_namespace_with_two_queues() {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngdt{id}"));
    let tap = format!("ngt{id}");
    must(&["ip", "netns", "add", &ns.0]);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        2,
        &format!(
            "{{name: eth0, driver: dpdk, interface: \"net_tap0,iface={tap}\", mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}}"
        ),
    );
    let run = Running::start_in(dir.path(), Some(&ns.0));
    assert!(run.log.contains("rx_queues=2 tx_queues=2"), "{}", run.log);
    configure_client(&ns.0, &tap);
    ping(&ns.0, "192.0.2.1");
    bulk_transfer(&ns.0);
    let stats = run.stop();
    assert_forwarded_cleanly(&stats);
    assert_eq!(stats["total"]["flows_created"], 1, "{stats}");
}
