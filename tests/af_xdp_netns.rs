//! `nodegate run` on an AF_XDP port over a veth pair whose other end is in a fresh network
//! namespace: the XDP program is attached while nodegate runs and gone after it stops (and a
//! leftover from a killed run is replaced, not stacked), ARP and ping are answered by the data
//! plane, 20 MiB of TCP cross a NATed ClusterIP with two workers sharing the interface's one
//! queue. Needs root and iproute2 (CI has both); fails with the reason otherwise.

mod netns;
use netns::*;

/// A namespace `ngx…` with a veth pair: `host` in the test's namespace, the peer (192.0.2.2/24
/// and .3, route to the ClusterIP range via 192.0.2.1, TX checksum offload off) in the
/// namespace (`netns::veth_pair`).
fn topology(tag: &str) -> (Netns, Link, String) {
    veth_pair("ngx", "ngy", tag)
}

/// The same with `queues` RX and TX queues on both veth ends.
fn topology_with_queues(tag: &str, queues: usize) -> (Netns, Link, String) {
    veth_pair_with_queues("ngx", "ngy", tag, queues)
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
    assert_forwarded_cleanly(&stats);
    assert_eq!(stats["workers"].as_array().unwrap().len(), 2);
    let xdp = &stats["ports"][0]["driver"];
    assert_eq!(xdp["xdp_invalid_descriptors"], 0, "{stats}");
    assert!(xdp["xdp_rx_dropped"].is_u64(), "{stats}");
    assert_eq!(stats["total"]["flows_created"], 2, "{stats}");
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
    assert!(
        second
            .log
            .contains(&format!("taking over `{host}` from nodegate pid ")),
        "the takeover is said:\n{}",
        second.log
    );
    ping(&ns.0, "192.0.2.1");
    let stats = second.stop();
    assert!(xdp_programs(&host).is_empty(), "program left attached");
    assert!(
        stats["total"]["icmp_sent"].as_u64().unwrap() >= 3,
        "{stats}"
    );
}

/// `nodegate run` of the configuration in `dir`, expected to fail at start: its status and
/// what it printed.
fn run_refused(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["run", "--config", "nodegate.yaml"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_second_instance_on_the_same_interface_is_refused_before_it_touches_it() {
    let (ns, _link, host) = topology("2");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &host, 1, "skb");
    let first = Running::start(dir.path());
    let progs = xdp_programs(&host);
    assert_eq!(progs.len(), 1, "{progs:?}");
    let other = tempfile::tempdir().unwrap();
    write_config(other.path(), &host, 1, "auto");
    let (code, err) = run_refused(other.path());
    assert_eq!(code, Some(2), "{err}");
    let first_pid = first.pid();
    for needle in [
        "ports[0].interface".to_string(),
        format!(
            "`{host}` is used by nodegate pid {first_pid} (configuration {}), since 20",
            dir.path()
                .canonicalize()
                .unwrap()
                .join("nodegate.yaml")
                .display()
        ),
    ] {
        assert!(err.contains(&needle), "no `{needle}` in:\n{err}");
    }
    // The first run was not touched: the same program, still forwarding.
    assert_eq!(xdp_programs(&host), progs, "the program must not change");
    ping(&ns.0, "192.0.2.1");
    udp_request(&ns.0);
    first.stop();
    assert!(xdp_programs(&host).is_empty(), "program left attached");
    // Free again: the other configuration starts.
    let again = Running::start(other.path());
    ping(&ns.0, "192.0.2.1");
    again.stop();
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

/// The wire side of a TAP interface, held by Python: creates the TAP, waits for a line on
/// stdin, then sends an ARP request and an ICMP echo request for 192.0.2.1 as 192.0.2.2 and
/// prints what answered (`arp MAC` and `echo OK`).
const TAP_WIRE: &str = r#"
import fcntl, os, select, struct, subprocess, sys
name = sys.argv[1]
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', name.encode(), 0x0002 | 0x1000))
subprocess.run(['ip', 'link', 'set', name, 'up'], check=True)
print('ready', flush=True)
sys.stdin.readline()
me = bytes.fromhex('020000000002')
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def wait(pred):
    while True:
        r, _, _ = select.select([fd], [], [], 5)
        if not r: return None
        f = os.read(fd, 2048)
        if pred(f): return f
arp = b'\xff' * 6 + me + b'\x08\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + me + bytes([192, 0, 2, 2]) + b'\0' * 6 + bytes([192, 0, 2, 1])
os.write(fd, arp)
r = wait(lambda f: f[12:14] == b'\x08\x06' and f[20:22] == b'\x00\x02')
if r is None: print('no arp reply'); sys.exit(1)
gw = r[22:28]
print('arp', gw.hex(':'), flush=True)
icmp = struct.pack('!BBHHH', 8, 0, 0, 0x77, 1) + b'tap'
icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, bytes([192, 0, 2, 2]), bytes([192, 0, 2, 1]))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
os.write(fd, gw + me + b'\x08\x00' + ip + icmp)
r = wait(lambda f: f[12:14] == b'\x08\x00' and f[23] == 1 and f[34] == 0)
print('echo', 'OK' if r is not None and r[38:40] == b'\x00\x77' and r[42:45] == b'tap' else 'missing', flush=True)
"#;

/// Generic (SKB) mode on a TAP interface: the XDP program runs on the TAP's kernel side, the
/// socket answers ARP and ping written to the TAP's wire side.
#[test]
fn af_xdp_works_on_a_tap_interface() {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("ngxt{id}"));
    let tap = format!("ngxt{id}");
    must(&["ip", "netns", "add", &ns.0]);
    let mut wire = nodegate::netns::exec(&ns.0)
        .args(["python3", "-c", TAP_WIRE, &tap])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 for the TAP's wire side");
    let mut out = std::io::BufReader::new(wire.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the TAP was not created");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodegate.yaml"),
        format!(
            "node: {{name: node-a, addresses: [\"192.0.2.1\"]}}\nports:\n  - {{name: eth0, driver: af_xdp, interface: {tap}, mode: skb, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}}\n"
        ),
    )
    .unwrap();
    let run = Running::start_in(dir.path(), Some(&ns.0));
    std::io::Write::write_all(wire.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).unwrap();
    let _ = wire.wait();
    let stats = run.stop();
    assert!(text.contains("arp 02:00:00:00:00:01"), "{text}");
    assert!(text.contains("echo OK"), "{text}\n{stats}");
    assert_eq!(stats["total"]["icmp_sent"], 1, "{stats}");
}

#[test]
fn transmit_only_socket_sends_prebuilt_frames_without_a_program() {
    let (ns, _link, host) = topology("t");
    let peer = host.replacen("ngx", "ngy", 1);
    // Only our frames may reach the peer: no IPv6 neighbour discovery or MLD from this end.
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1")
        .expect("disable IPv6 on the host end (needs root)");
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

    // Frames nobody answers: a local experimental EtherType to the peer's MAC, numbered, built
    // once in their own region and sent again and again as they complete, never copied.
    let (region, mut free) = ffi::frames::FrameRegion::new(256).expect("a frame region");
    for (i, f) in free.iter_mut().enumerate() {
        let buf = f.data_mut();
        buf[..6].copy_from_slice(&dst);
        buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        buf[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        buf[14..16].copy_from_slice(&(i as u16).to_be_bytes());
    }
    let mut sock = ffi::af_xdp::XskSocket::open_tx(&host, 0, region).expect("transmit-only socket");
    assert!(xdp_programs(&host).is_empty(), "sending needs no program");
    const FRAMES: u64 = 10_000;
    let (mut queued, mut completed) = (0u64, 0u64);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while completed < FRAMES && std::time::Instant::now() < deadline {
        while queued < FRAMES {
            let Some(f) = free.pop() else { break };
            match sock.send(f, 60) {
                Ok(()) => queued += 1,
                Err(f) => {
                    free.push(f);
                    break;
                }
            }
        }
        sock.flush(|f| {
            completed += 1;
            free.push(f);
        });
    }
    assert_eq!(completed, FRAMES);
    // Each completed frame reached the peer or was refused by its full queue.
    let got = counter(Some(&ns.0), &peer, "statistics/rx_packets") - rx_before;
    let refused = counter(None, &host, "statistics/tx_dropped") - dropped_before;
    assert!(got > 0, "nothing arrived");
    assert_eq!(got + refused, FRAMES, "received {got}, refused {refused}");
    // A frame from the heap is not one of the socket's: it is given back, not sent.
    let heap = ffi::frames::Frame::heap();
    assert!(sock.send(heap, 60).is_err());
}

/// A UDP echo for datagrams of up to 64 KiB: answers each with the same bytes, 20 times.
const BIG_UDP_ECHO: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',7777))\ns.settimeout(10)\nfor _ in range(20):\n    d,a=s.recvfrom(65536)\n    s.sendto(d,a)\n";

#[test]
fn fragmented_udp_datagrams_cross_a_service_whole() {
    let (ns, _link, host) = topology("f");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &host, 2, "auto");
    let run = Running::start(dir.path());
    let mut server = nodegate::netns::exec(&ns.0)
        .args(["python3", "-c", BIG_UDP_ECHO])
        .spawn()
        .expect("python3 for the UDP server");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // 4000-byte datagrams: the kernel cuts each into three fragments on a 1500-byte link, both
    // ways; hairpinned through the ClusterIP, so DNAT and SNAT on every fragment. Each answer
    // must be the datagram sent, byte for byte, from the Service address.
    let client = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\nfor i in range(20):\n    d=bytes((i*31+j*7)%256 for j in range(4000))\n    s.sendto(d,('10.96.0.10',5353))\n    r,a=s.recvfrom(65536)\n    assert r==d, (i, len(r))\n    assert a==('10.96.0.10',5353), a\nprint('ok')\n";
    let out = sh(&["ip", "netns", "exec", &ns.0, "python3", "-c", client]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = run.stop();
    assert_eq!(stats["total"]["fragments_unmatched"], 0, "{stats}");
    assert_eq!(stats["total"]["drops"]["ip4-fragment"], 0, "{stats}");
    // 20 datagrams of 3 fragments each way, at least.
    let rx = stats["total"]["rx"].as_u64().unwrap();
    assert!(rx >= 120, "{stats}");
}
