//! Writes `examples/basic/in.pcap`, the traffic of the shipped example:
//!
//!     cargo run --example make_example_pcap [-- OUT.pcap]
//!
//! Frames are built with etherparse (an independent packet library). The SYN-ACK of the NodePort
//! connection is addressed to SNAT port 20000: the first port a single worker allocates.

use dataplane::time::Instant;
use etherparse::PacketBuilder;
use nodegate::pcap::PcapWriter;
use std::path::PathBuf;

const NODE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GATEWAY: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const NODE_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const DNS_POD: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x53];
const CLIENT: [u8; 4] = [198, 51, 100, 7];
const NODE_IP: [u8; 4] = [10, 0, 0, 1];
const POD_CLIENT: [u8; 4] = [10, 1, 0, 9];
const BACKEND: [u8; 4] = [10, 1, 0, 5];

#[allow(clippy::too_many_arguments)]
fn tcp(
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    ttl: u8,
    flags: &str,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(src_mac, NODE)
        .ipv4(src, dst, ttl)
        .tcp(sport, dport, seq, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            _ => b,
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

fn udp(
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, NODE)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn arp(
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
    eth_dst: [u8; 6],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

/// The example's frames: (timestamp in µs, what it is, the frame).
fn frames() -> Vec<(u64, &'static str, Vec<u8>)> {
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(GATEWAY, NODE)
        .ipv4(CLIENT, NODE_IP, 60)
        .icmpv4_echo_request(0x1234, 1)
        .write(&mut ping, b"nodegate")
        .unwrap();
    let mut truncated = tcp(GATEWAY, CLIENT, NODE_IP, 40001, 30080, 64, "S", 1, 0);
    truncated.truncate(14 + 12);
    vec![
        (
            1_000_000,
            "gateway asks for the node's MAC",
            arp(1, GATEWAY, [10, 0, 255, 254], [0; 6], NODE_IP, [0xff; 6]),
        ),
        (1_001_000, "client pings the node", ping),
        (
            1_010_000,
            "client opens a connection to NodePort 30080 (policy Cluster)",
            tcp(GATEWAY, CLIENT, NODE_IP, 40000, 30080, 64, "S", 1000, 0),
        ),
        (
            1_011_000,
            "backend on node-b answers the SNATed connection",
            tcp(NODE_B, BACKEND, NODE_IP, 8080, 20000, 63, "SA", 5000, 1001),
        ),
        (
            1_012_000,
            "client completes the handshake",
            tcp(GATEWAY, CLIENT, NODE_IP, 40000, 30080, 64, "A", 1001, 5001),
        ),
        (
            1_020_000,
            "client connects to the LoadBalancer IP (policy Local, no pod on node-a)",
            tcp(
                GATEWAY,
                CLIENT,
                [203, 0, 113, 10],
                40002,
                80,
                64,
                "S",
                7000,
                0,
            ),
        ),
        (
            1_030_000,
            "a pod on node-b connects to the ClusterIP",
            tcp(
                NODE_B,
                POD_CLIENT,
                [10, 96, 0, 10],
                51000,
                80,
                63,
                "S",
                9000,
                0,
            ),
        ),
        (
            1_040_000,
            "a pod connects to a Service whose only endpoint is not ready",
            tcp(
                NODE_B,
                POD_CLIENT,
                [10, 96, 0, 20],
                51001,
                80,
                63,
                "S",
                9100,
                0,
            ),
        ),
        (
            1_050_000,
            "a pod sends a DNS query to the DNS ClusterIP (endpoint on node-a, MAC unknown)",
            udp(
                NODE_B,
                POD_CLIENT,
                [10, 96, 0, 53],
                5353,
                53,
                b"query example.com",
            ),
        ),
        (
            1_051_000,
            "the DNS pod answers the node's ARP request",
            arp(2, DNS_POD, [10, 0, 1, 53], NODE, NODE_IP, NODE),
        ),
        (
            1_060_000,
            "the DNS pod replies",
            udp(
                DNS_POD,
                [10, 0, 1, 53],
                POD_CLIENT,
                53,
                5353,
                b"answer 93.184.216.34",
            ),
        ),
        (
            1_070_000,
            "a packet with TTL 1 for a pod behind node-b",
            tcp(GATEWAY, CLIENT, BACKEND, 40003, 8080, 1, "S", 1, 0),
        ),
        (1_080_000, "a truncated IPv4 frame", truncated),
    ]
}

fn default_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/basic/in.pcap"
    ))
}

fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(default_path);
    let frames = frames();
    let mut w = PcapWriter::create(&out).expect("create pcap");
    for (us, what, f) in &frames {
        w.write(Instant::from_micros(*us), f).expect("write");
        println!("{:>9} us  {what}", us);
    }
    w.flush().unwrap();
    println!("wrote {} frames to {}", frames.len(), out.display());
}

#[cfg(test)]
mod test {
    use super::*;

    /// The capture shipped in the repository is what this generator writes.
    #[test]
    fn shipped_capture_is_up_to_date() {
        let shipped = nodegate::pcap::PcapReader::read_all(&default_path()).unwrap();
        let want = frames();
        assert_eq!(
            shipped.len(),
            want.len(),
            "regenerate with: cargo run --example make_example_pcap"
        );
        for (rec, (us, what, f)) in shipped.iter().zip(&want) {
            assert_eq!(rec.time, Instant::from_micros(*us), "{what}");
            assert_eq!(
                &rec.data, f,
                "{what}: regenerate with: cargo run --example make_example_pcap"
            );
        }
    }
}
