//! `nodegate run` on an AF_XDP port over a veth pair whose other end is in a fresh network
//! namespace: the XDP program is attached while nodegate runs and gone after it stops (and a
//! leftover from a killed run is replaced, not stacked), ARP and ping are answered by the data
//! plane, 20 MiB of TCP cross a NATed ClusterIP with two workers sharing the interface's one
//! queue. Needs root and iproute2 (CI has both); fails with the reason otherwise.

mod netns;
use netns::*;

/// A namespace `ngx…` with a veth pair: `host` in the test's namespace, `peer` (192.0.2.2/24,
/// route to the ClusterIP range via 192.0.2.1, TX checksum offload off) in the namespace.
fn topology(tag: &str) -> (Netns, Link, String) {
    topology_with_queues(tag, 1)
}

/// The same with `queues` RX and TX queues on both veth ends.
fn topology_with_queues(tag: &str, queues: usize) -> (Netns, Link, String) {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngx{tag}{id}"));
    let (host, peer) = (format!("ngx{tag}{id}"), format!("ngy{tag}{id}"));
    must(&["ip", "netns", "add", &ns.0]);
    let q = queues.to_string();
    must(&[
        "ip",
        "link",
        "add",
        &host,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ]);
    let link = Link(host.clone());
    must(&["ip", "link", "set", &peer, "netns", &ns.0]);
    must(&["ip", "link", "set", &host, "up"]);
    for cmd in [
        vec!["addr", "add", "192.0.2.2/24", "dev", &peer],
        vec!["link", "set", &peer, "up"],
        vec!["link", "set", "lo", "up"],
        vec!["route", "add", "10.96.0.0/16", "via", "192.0.2.1"],
    ] {
        let mut args = vec!["ip", "-n", &ns.0];
        args.extend(cmd);
        must(&args);
    }
    // veth hands frames on with partial checksums unless the sender computes them.
    must(&[
        "ip", "netns", "exec", &ns.0, "ethtool", "-K", &peer, "tx", "off",
    ]);
    (ns, link, host)
}

fn write_config(dir: &std::path::Path, host: &str, workers: usize, mode: &str) {
    write_config_with_queues(dir, host, workers, mode, 1)
}

fn write_config_with_queues(
    dir: &std::path::Path,
    host: &str,
    workers: usize,
    mode: &str,
    queues: usize,
) {
    std::fs::write(
        dir.join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: {workers}\nports:\n  - {{name: eth0, driver: af_xdp, interface: {host}, queues: {queues}, mode: {mode}, addresses: [\"192.0.2.1/24\"]}}\nkubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/bulk.yaml"), BULK_SERVICE).unwrap();
    std::fs::write(dir.join("manifests/udp.yaml"), UDP_SERVICE).unwrap();
}

/// What `ip link show` says about the interface's XDP program(s).
fn xdp_programs(host: &str) -> Vec<String> {
    let out = sh(&["ip", "-d", "link", "show", "dev", host]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("prog/xdp"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn nodegate_run_on_af_xdp_with_two_workers_answers_ping_and_carries_nat_traffic() {
    let (ns, _link, host) = topology("a");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &host, 2, "auto");
    let run = Running::start(dir.path());
    let progs = xdp_programs(&host);
    assert_eq!(progs.len(), 1, "{progs:?}");
    assert!(progs[0].contains("nodegate_xsk"), "{progs:?}");

    ping(&ns.0, "192.0.2.1");
    // No MAC configured: nodegate answers with the interface's own.
    let mac = std::fs::read_to_string(format!("/sys/class/net/{host}/address")).unwrap();
    let neigh = sh(&["ip", "-n", &ns.0, "neigh", "show", "192.0.2.1"]);
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains(mac.trim()),
        "neighbour entry {:?} should carry the interface MAC {mac}",
        String::from_utf8_lossy(&neigh.stdout)
    );
    udp_request(&ns.0);
    // Tens of megabytes through DNAT and hairpin SNAT; one worker sends through the other's
    // queue.
    bulk_transfer(&ns.0);
    let stats = run.stop();
    assert!(xdp_programs(&host).is_empty(), "program left attached");
    assert!(
        stats["total"]["arp_replies"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["total"]["icmp_sent"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    assert_eq!(stats["workers"].as_array().unwrap().len(), 2);
    let xdp = &stats["ports"][0]["driver"];
    assert_eq!(xdp["xdp_invalid_descriptors"], 0, "{stats}");
    assert!(xdp["xdp_rx_dropped"].is_u64(), "{stats}");
    assert_eq!(stats["total"]["flows_created"], 2, "{stats}");
    for reason in [
        "tx-full",
        "no-buffer",
        "ct-full",
        "l4-malformed",
        "ip4-bad-checksum",
    ] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
}

#[test]
fn af_xdp_program_left_by_a_killed_run_is_replaced_not_stacked() {
    let (ns, _link, host) = topology("k");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &host, 1, "skb");
    let first = Running::start(dir.path());
    drop(first); // SIGKILL: no chance to detach
    let left = xdp_programs(&host);
    assert_eq!(left.len(), 1, "a killed run leaves its program: {left:?}");

    let second = Running::start(dir.path());
    let progs = xdp_programs(&host);
    assert_eq!(progs.len(), 1, "{progs:?}");
    assert_ne!(progs, left, "the leftover program must have been replaced");
    ping(&ns.0, "192.0.2.1");
    let stats = second.stop();
    assert!(xdp_programs(&host).is_empty(), "program left attached");
    assert!(
        stats["total"]["icmp_sent"].as_u64().unwrap() >= 3,
        "{stats}"
    );
}

/// Two queues, two workers: one socket each, every frame received where the kernel put it and
/// forwarded by the worker owning its flow.
#[test]
fn af_xdp_opens_a_socket_per_queue() {
    let (ns, _link, host) = topology_with_queues("q", 2);
    let dir = tempfile::tempdir().unwrap();
    write_config_with_queues(dir.path(), &host, 2, "auto", 2);
    let run = Running::start(dir.path());
    ping(&ns.0, "192.0.2.1");
    udp_request(&ns.0);
    bulk_transfer(&ns.0);
    let stats = run.stop();
    assert_eq!(stats["total"]["flows_created"], 2, "{stats}");
    assert_eq!(
        stats["ports"][0]["driver"]["xdp_invalid_descriptors"], 0,
        "{stats}"
    );
    for reason in ["tx-full", "no-buffer", "l4-malformed", "ip4-bad-checksum"] {
        assert_eq!(stats["total"]["drops"][reason], 0, "{reason}: {stats}");
    }
}
