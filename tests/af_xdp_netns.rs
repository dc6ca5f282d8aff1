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
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngx{tag}{id}"));
    let (host, peer) = (format!("ngx{tag}{id}"), format!("ngy{tag}{id}"));
    must(&["ip", "netns", "add", &ns.0]);
    must(&[
        "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
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
    std::fs::write(
        dir.join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nworkers: {workers}\nports:\n  - {{name: eth0, driver: af_xdp, interface: {host}, queues: 1, mode: {mode}, addresses: [\"192.0.2.1/24\"]}}\nkubernetes: {{manifests: manifests}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/bulk.yaml"), BULK_SERVICE).unwrap();
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
    assert_eq!(stats["total"]["flows_created"], 1, "{stats}");
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

#[test]
fn transmit_only_socket_sends_prebuilt_frames_without_a_program() {
    let (ns, _link, host) = topology("t");
    let peer = host.replacen("ngx", "ngy", 1);
    let counter = |ns: Option<&str>, dev: &str, name: &str| -> u64 {
        let path = format!("/sys/class/net/{dev}/{name}");
        let out = match ns {
            Some(ns) => sh(&["ip", "netns", "exec", ns, "cat", &path]),
            None => sh(&["cat", &path]),
        };
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let mac = sh(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "cat",
        &format!("/sys/class/net/{peer}/address"),
    ]);
    let dst: Vec<u8> = String::from_utf8_lossy(&mac.stdout)
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let rx_before = counter(Some(&ns.0), &peer, "statistics/rx_packets");
    let dropped_before = counter(None, &host, "statistics/tx_dropped");

    let mut sock = ffi::af_xdp::XskSocket::open_tx(&host, 0).expect("transmit-only socket");
    // Frames nobody answers: a local experimental EtherType to the peer's MAC, numbered.
    sock.prebuild(|i, buf| {
        buf[..6].copy_from_slice(&dst);
        buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        buf[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        buf[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        60
    })
    .expect("prebuild");
    assert!(xdp_programs(&host).is_empty(), "sending needs no program");
    const FRAMES: u64 = 10_000;
    let mut queued = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sock.tx_completed() < FRAMES && std::time::Instant::now() < deadline {
        queued += sock.send_prebuilt((FRAMES - queued).min(32) as usize) as u64;
    }
    assert_eq!(sock.tx_completed(), FRAMES);
    // Each completed frame reached the peer or was refused by its full queue.
    let got = counter(Some(&ns.0), &peer, "statistics/rx_packets") - rx_before;
    let refused = counter(None, &host, "statistics/tx_dropped") - dropped_before;
    assert!(got > 0, "nothing arrived");
    assert_eq!(got + refused, FRAMES, "received {got}, refused {refused}");
    // Writing a frame by copy ends the prebuilt mode.
    assert!(sock.send(&[0u8; 60]));
    assert_eq!(sock.send_prebuilt(32), 0);
}
