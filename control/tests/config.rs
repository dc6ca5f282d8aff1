//! Tests of `control::config`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use control::config::{
    ApiMode, ApiSource, Cidr, Config, ConntrackConfig, DpdkBus, DpdkConfig, DpdkDevice, Driver,
    HealthConfig, KubernetesConfig, MetricsConfig, SnatConfig, TcpTimeouts, DEFAULT_EAL_ARGS,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

const EXAMPLE: &str = r#"
node:
  name: node-a
  addresses: ["10.0.0.1"]
workers: 1
ports:
  - name: eth0
    driver: pcap
    rx: in.pcap
    tx: out.pcap
    mac: "02:00:00:00:00:01"
    addresses: ["10.0.0.1/16"]
routes:
  - prefix: "0.0.0.0/0"
    via: "10.0.255.254"
  - prefix: "10.1.0.0/16"
    via: "10.0.0.2"
neighbors:
  - address: "10.0.255.254"
    mac: "02:00:00:00:00:fe"
  - address: "10.0.0.2"
    mac: "02:00:00:00:00:02"
kubernetes:
  manifests: manifests
"#;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

#[test]
fn example_loads_with_all_values() {
    let path = fixtures().join("example.yaml");
    let c = Config::load(&path).unwrap();
    let dir = fixtures();
    assert_eq!(c.file, path);
    assert_eq!(c.node.name, "node-a");
    assert_eq!(c.node.addresses, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(c.workers, 1);
    assert_eq!(c.cpus, None);
    assert_eq!(c.ports.len(), 1);
    let p = &c.ports[0];
    assert_eq!(p.name, "eth0");
    assert_eq!(p.driver, Driver::Pcap);
    assert_eq!(p.rx.as_deref(), Some(dir.join("in.pcap").as_path()));
    assert_eq!(p.tx.as_deref(), Some(dir.join("out.pcap").as_path()));
    assert_eq!(p.mac, Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(
        p.addresses,
        vec![Cidr {
            address: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 16
        }]
    );
    assert_eq!(p.interface, None);
    assert_eq!(p.host_interface, None);
    assert_eq!(p.queues, 1);
    assert_eq!(p.mode, None);

    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].prefix, cidr("0.0.0.0/0"));
    assert_eq!(c.routes[0].via, Some(Ipv4Addr::new(10, 0, 255, 254)));
    assert_eq!(c.routes[0].port, None);
    assert_eq!(c.routes[1].prefix, cidr("10.1.0.0/16"));
    assert_eq!(c.routes[1].via, Some(Ipv4Addr::new(10, 0, 0, 2)));

    assert_eq!(c.neighbors.len(), 2);
    assert_eq!(c.neighbors[0].address, Ipv4Addr::new(10, 0, 255, 254));
    assert_eq!(c.neighbors[0].mac, [2, 0, 0, 0, 0, 0xfe]);
    assert_eq!(c.neighbors[0].port, None);
    assert_eq!(c.neighbors[1].address, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(c.neighbors[1].mac, [2, 0, 0, 0, 0, 2]);

    assert_eq!(c.kubernetes.manifests, Some(dir.join("manifests")));
    assert_eq!(c.conntrack, ConntrackConfig::default());
    assert_eq!(
        c.snat,
        SnatConfig {
            port_min: 20000,
            port_max: 29999
        }
    );
}

#[test]
fn defaults_are_the_linux_ones() {
    let c = ConntrackConfig::default();
    assert_eq!(c.max_flows, 1_048_576);
    assert_eq!(
        c.tcp,
        TcpTimeouts {
            syn_sent: 120,
            syn_recv: 60,
            established: 432_000,
            fin_wait: 120,
            close_wait: 60,
            last_ack: 30,
            time_wait: 120,
            close: 10,
            unacknowledged: 300,
        }
    );
    assert_eq!(c.udp_secs, 30);
    assert_eq!(c.udp_stream_secs, 120);
    assert_eq!(c.icmp_secs, 30);
    assert_eq!(c.sctp_secs, 3600);
    assert_eq!(c.affinity_max, 65_536);
}

#[test]
fn af_xdp_modes_parse_once_and_print_as_written() {
    use control::config::XdpMode;
    for (mode, name) in XdpMode::ALL {
        assert_eq!(name.parse::<XdpMode>(), Ok(mode));
        assert_eq!(mode.to_string(), name);
    }
    assert_eq!(XdpMode::default(), XdpMode::Auto);
    let e = "fast".parse::<XdpMode>().unwrap_err();
    assert!(e.contains("`fast`") && e.contains("`zerocopy`"), "{e}");
}

#[test]
fn every_option_loads() {
    let c = Config::load(&fixtures().join("full.yaml")).unwrap();
    assert_eq!(c.node.name, "node-b");
    assert_eq!(c.node.addresses.len(), 2);
    assert_eq!(c.workers, 2);
    assert_eq!(c.cpus, Some(vec![2, 3]));
    let up = &c.ports[0];
    assert_eq!(up.driver, Driver::AfXdp);
    assert_eq!(up.interface.as_deref(), Some("enp1s0"));
    assert_eq!(up.host_interface.as_deref(), Some("nghost0"));
    assert_eq!(up.queues, 2);
    assert_eq!(up.mode, Some(control::config::XdpMode::Native));
    assert_eq!(up.mac, Some([2, 0, 0, 0, 0, 0x0a]));
    assert_eq!(up.addresses.len(), 2);
    assert_eq!(c.ports[1].driver, Driver::Memory);
    assert_eq!(c.ports[1].rx, None);
    // Host bits of a route prefix are cleared.
    assert_eq!(c.routes[0].prefix, cidr("10.96.0.0/12"));
    assert_eq!(c.routes[0].via, None);
    assert_eq!(c.routes[0].port.as_deref(), Some("uplink"));
    assert_eq!(c.routes[1].port.as_deref(), Some("uplink"));
    assert_eq!(c.neighbors[0].port.as_deref(), Some("uplink"));
    // Absolute paths stay as they are.
    assert_eq!(
        c.kubernetes.manifests,
        Some(PathBuf::from("/etc/nodegate/manifests"))
    );
    assert_eq!(c.kubernetes.node_port_range, (31000, 32767));
    let ct = c.conntrack;
    assert_eq!(ct.max_flows, 4096);
    // The IPv6 table follows max_flows unless it is given.
    assert_eq!(ct.max_flows6, 1024);
    assert_eq!(ct.affinity_max, 1024);
    assert_eq!(
        ct.tcp,
        TcpTimeouts {
            syn_sent: 1,
            syn_recv: 2,
            established: 3,
            fin_wait: 4,
            close_wait: 5,
            last_ack: 6,
            time_wait: 7,
            close: 8,
            unacknowledged: 9,
        }
    );
    assert_eq!(
        (ct.udp_secs, ct.udp_stream_secs, ct.icmp_secs, ct.sctp_secs),
        (10, 11, 12, 13)
    );
    assert_eq!(
        c.snat,
        SnatConfig {
            port_min: 40000,
            port_max: 50000
        }
    );
    assert_eq!(
        c.ports[2].dpdk_device.as_ref().map(|d| d.devargs.as_str()),
        Some("0000:3b:00.1")
    );
    assert_eq!(
        c.dpdk,
        DpdkConfig {
            eal_args: vec!["--in-memory".into(), "--socket-mem".into(), "512".into()],
            mbufs: Some(32767),
            descriptors: 2048,
        }
    );
}

#[test]
fn all_drivers_parse() {
    for (name, driver) in [
        ("pcap", Driver::Pcap),
        ("memory", Driver::Memory),
        ("af_xdp", Driver::AfXdp),
        ("af_packet", Driver::AfPacket),
        ("tap", Driver::Tap),
        ("dpdk", Driver::Dpdk),
    ] {
        // A dpdk port's interface is a device (PCI address or vdev), not a host interface name.
        let interface = if driver == Driver::Dpdk {
            "net_null0"
        } else {
            "x"
        };
        let text = format!(
            "node: {{name: n}}\nports:\n  - {{name: p, driver: {name}, interface: {interface}, rx: a}}\n"
        );
        let c = Config::parse(&text, Path::new("c.yaml")).unwrap();
        assert_eq!(c.ports[0].driver, driver);
        assert_eq!(driver.to_string(), name);
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(
        "node: {name: n}\nports: [{name: p, driver: memory}]\n",
        Path::new("c.yaml"),
    )
    .unwrap();
    assert_eq!(c.workers, 1);
    assert!(c.node.addresses.is_empty());
    assert!(c.routes.is_empty());
    assert!(c.neighbors.is_empty());
    assert_eq!(c.kubernetes.manifests, None);
    assert_eq!(c.kubernetes.kubeconfig, None);
    assert_eq!(c.kubernetes.api, ApiMode::Auto);
    assert_eq!(c.kubernetes.min_sync, Duration::from_secs(1));
    assert_eq!(c.kubernetes.node_port_range, (30000, 32767));
    assert_eq!(c.conntrack, ConntrackConfig::default());
    assert_eq!(c.snat, SnatConfig::default());
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let c = Config::parse(EXAMPLE, Path::new("/etc/nodegate/node.yaml")).unwrap();
    assert_eq!(c.ports[0].rx, Some(PathBuf::from("/etc/nodegate/in.pcap")));
    assert_eq!(c.ports[0].tx, Some(PathBuf::from("/etc/nodegate/out.pcap")));
    assert_eq!(
        c.kubernetes.manifests,
        Some(PathBuf::from("/etc/nodegate/manifests"))
    );

    let c = Config::parse(EXAMPLE, Path::new("conf/node.yaml")).unwrap();
    assert_eq!(c.ports[0].rx, Some(PathBuf::from("conf/in.pcap")));
    assert_eq!(
        c.kubernetes.manifests,
        Some(PathBuf::from("conf/manifests"))
    );

    // A bare file name: paths stay relative to the working directory.
    let c = Config::parse(EXAMPLE, Path::new("node.yaml")).unwrap();
    assert_eq!(c.ports[0].rx, Some(PathBuf::from("in.pcap")));

    // Written to a temporary directory and loaded from there.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("node.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, EXAMPLE).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.ports[0].tx, Some(dir.path().join("sub/out.pcap")));
    assert_eq!(
        c.kubernetes.manifests,
        Some(dir.path().join("sub/manifests"))
    );
}

#[test]
fn kubernetes_api_server_settings() {
    let text = base_with(
        "manifests: manifests",
        "manifests: manifests\n  kubeconfig: secrets/kubeconfig\n  api: infer\n  min_sync_ms: 250",
    );
    let c = Config::parse(&text, Path::new("/etc/nodegate/node.yaml")).unwrap();
    let k = &c.kubernetes;
    assert_eq!(
        k.kubeconfig,
        Some(PathBuf::from("/etc/nodegate/secrets/kubeconfig"))
    );
    assert_eq!(k.api, ApiMode::Infer);
    assert_eq!(k.min_sync, Duration::from_millis(250));
    let text = base_with("manifests: manifests", "min_sync_ms: 0\n  api: \"off\"");
    let c = Config::parse(&text, Path::new("c.yaml")).unwrap();
    assert_eq!(c.kubernetes.min_sync, Duration::ZERO);
    assert_eq!(c.kubernetes.api, ApiMode::Off);
    assert_eq!(c.kubernetes.manifests, None);
}

#[test]
fn api_source_order_cli_then_file_then_mode() {
    let file = Path::new("/cfg/node.yaml");
    let cli = Path::new("/root/.kube/config");
    let k = |kubeconfig: Option<&str>, api: ApiMode| KubernetesConfig {
        kubeconfig: kubeconfig.map(PathBuf::from),
        api,
        ..Default::default()
    };
    let cases = [
        // (settings, --kubeconfig, in a pod, expected)
        (k(None, ApiMode::Auto), None, false, ApiSource::None),
        (k(None, ApiMode::Auto), None, true, ApiSource::InCluster),
        (
            k(None, ApiMode::Auto),
            Some(cli),
            true,
            ApiSource::Kubeconfig(cli.into()),
        ),
        (
            k(Some("/cfg/kc"), ApiMode::Auto),
            None,
            true,
            ApiSource::Kubeconfig("/cfg/kc".into()),
        ),
        (
            k(Some("/cfg/kc"), ApiMode::Auto),
            Some(cli),
            false,
            ApiSource::Kubeconfig(cli.into()),
        ),
        (k(None, ApiMode::Infer), None, false, ApiSource::Infer),
        (
            k(None, ApiMode::Infer),
            Some(cli),
            false,
            ApiSource::Kubeconfig(cli.into()),
        ),
        (k(None, ApiMode::Off), None, true, ApiSource::None),
    ];
    for (settings, flag, in_pod, expected) in cases {
        assert_eq!(
            settings.api_source(file, flag, in_pod).unwrap(),
            expected,
            "{settings:?} {flag:?} {in_pod}"
        );
    }
    let e = k(None, ApiMode::Off)
        .api_source(file, Some(cli), false)
        .unwrap_err();
    assert_eq!(
        (e.file.as_path(), e.field.as_str()),
        (file, "kubernetes.api")
    );
    assert!(e.reason.contains("/root/.kube/config"), "{}", e.reason);
}

fn base_with(replace: &str, with: &str) -> String {
    assert!(EXAMPLE.contains(replace), "{replace:?} not in EXAMPLE");
    EXAMPLE.replacen(replace, with, 1)
}

/// Each case: the config text, the expected field, a fragment of the expected reason.
#[test]
fn validation_rules_name_the_field() {
    let append = |extra: &str| format!("{EXAMPLE}{extra}");
    let add_route = |extra: &str| base_with("neighbors:\n", &format!("{extra}neighbors:\n"));
    let cases: Vec<(String, &str, &str)> = vec![
        // node
        (
            base_with("name: node-a", "name: \"\""),
            "node.name",
            "empty",
        ),
        (
            base_with("  name: node-a\n", ""),
            "node.name",
            "required field is missing",
        ),
        (
            base_with(
                "addresses: [\"10.0.0.1\"]",
                "addresses: [\"10.0.0.1\", \"10.0.0\"]",
            ),
            "node.addresses[1]",
            "invalid IPv4 address `10.0.0`",
        ),
        (
            base_with("addresses: [\"10.0.0.1\"]", "adresses: [\"10.0.0.1\"]"),
            "node.adresses",
            "unknown field `adresses`, expected one of `name`, `addresses`",
        ),
        // workers / cpus
        (
            base_with("workers: 1", "workers: 0"),
            "workers",
            "out of range 1..=64",
        ),
        (
            base_with("workers: 1", "workers: 65"),
            "workers",
            "out of range",
        ),
        (base_with("workers: 1", "workers: -1"), "workers", "invalid"),
        (
            base_with("workers: 1", "workers: 2\ncpus: [1]"),
            "cpus",
            "one CPU per worker",
        ),
        (
            base_with("workers: 1", "workers: 2\ncpus: [1, 1]"),
            "cpus[1]",
            "twice",
        ),
        // ports
        (
            base_with("driver: pcap", "driver: pcapp"),
            "ports[0].driver",
            "unknown driver `pcapp`",
        ),
        (
            base_with("    rx: in.pcap\n    tx: out.pcap\n", ""),
            "ports[0]",
            "needs `rx`",
        ),
        (
            base_with("driver: pcap", "driver: af_packet"),
            "ports[0].interface",
            "needs `interface`",
        ),
        (
            base_with("driver: pcap", "driver: dpdk\n    interface: \"\""),
            "ports[0].interface",
            "needs `interface`",
        ),
        (
            base_with("mac: \"02:00:00:00:00:01\"", "mac: \"01:00:5e:00:00:01\""),
            "ports[0].mac",
            "multicast",
        ),
        (
            base_with("mac: \"02:00:00:00:00:01\"", "mac: \"ff:ff:ff:ff:ff:ff\""),
            "ports[0].mac",
            "multicast",
        ),
        (
            base_with("mac: \"02:00:00:00:00:01\"", "mac: \"00:00:00:00:00:00\""),
            "ports[0].mac",
            "all-zero",
        ),
        (
            base_with("mac: \"02:00:00:00:00:01\"", "mac: \"02:00:00:00:01\""),
            "ports[0].mac",
            "invalid MAC address `02:00:00:00:01`",
        ),
        (
            base_with("mac: \"02:00:00:00:00:01\"", "mac: \"02:00:00:00:00:zz\""),
            "ports[0].mac",
            "invalid MAC address",
        ),
        (
            base_with("[\"10.0.0.1/16\"]", "[\"10.0.0.1/16\", \"10.0.0.2/33\"]"),
            "ports[0].addresses[1]",
            "prefix length must be 0..=32",
        ),
        (
            base_with("[\"10.0.0.1/16\"]", "[\"10.0.0.1/16\", \"10.0.0.2\"]"),
            "ports[0].addresses[1]",
            "missing `/prefix`",
        ),
        (
            base_with("[\"10.0.0.1/16\"]", "[\"10.0.0.300/16\"]"),
            "ports[0].addresses[0]",
            "bad IPv4 address",
        ),
        // (IPv6 port addresses are accepted since IPv6 forwarding: see `ipv6_entries_load`.)
        (
            base_with("[\"10.0.0.1/16\"]", "[\"fd00::1/129\"]"),
            "ports[0].addresses[0]",
            "invalid IPv6 CIDR `fd00::1/129`: prefix length must be 0..=128",
        ),
        (
            base_with("[\"10.0.0.1/16\"]", "[\"10.0.0.1/16\", \"fd00:::1/64\"]"),
            "ports[0].addresses[1]",
            "bad IPv6 address",
        ),
        (
            base_with("[\"10.0.0.1/16\"]", "[\"10.0.0.1/16\", \"ff02::1/64\"]"),
            "ports[0].addresses[1]",
            "not a usable interface address",
        ),
        (
            base_with(
                "[\"10.0.0.1/16\"]",
                "[\"fd00::1/64\", \"10.0.0.1/16\", \"fd00::1/48\"]",
            ),
            "ports[0].addresses[2]",
            "address fd00::1 is listed twice",
        ),
        (
            base_with("[\"10.0.0.1/16\"]", "[\"224.0.0.1/4\"]"),
            "ports[0].addresses[0]",
            "not a usable interface address",
        ),
        (
            base_with("[\"10.0.0.1/16\"]", "[\"10.0.0.1/16\", \"10.0.0.1/24\"]"),
            "ports[0].addresses[1]",
            "listed twice",
        ),
        (
            base_with("    driver: pcap\n", "    driver: pcap\n    queues: 0\n"),
            "ports[0].queues",
            "at least 1",
        ),
        (
            "node: {name: n, node_port_addresses: []}\n".to_string(),
            "node.node_port_addresses",
            "would disable every NodePort",
        ),
        (
            "node: {name: n, node_port_addresses: [primary, \"10.0.0.0/33\"]}\n".to_string(),
            "node.node_port_addresses[1]",
            "prefix length must be 0..=32",
        ),
        (
            base_with("    driver: pcap\n", "    driver: pcap\n    mode: skb\n"),
            "ports[0].mode",
            "the pcap driver has no modes",
        ),
        (
            "node: {name: n}\nports: [{name: p, driver: af_xdp, interface: eth0, mode: turbo}]\n"
                .to_string(),
            "ports[0].mode",
            "unknown af_xdp mode `turbo`",
        ),
        (
            base_with(
                "    driver: pcap\n",
                "    driver: pcap\n    queues: 70000\n",
            ),
            "ports[0].queues",
            "invalid value",
        ),
        (
            base_with("    driver: pcap\n", "    driver: pcap\n    speed: 10\n"),
            "ports[0].speed",
            "unknown field `speed`",
        ),
        (
            base_with("  - name: eth0\n", "  - name: \"\"\n"),
            "ports[0].name",
            "empty",
        ),
        (
            base_with("routes:", "  - {name: eth0, driver: memory}\nroutes:"),
            "ports[1].name",
            "duplicate port name `eth0` (also ports[0])",
        ),
        (
            base_with(
                "routes:",
                &format!(
                    "{}routes:",
                    (1..=32)
                        .map(|i| format!("  - {{name: m{i}, driver: memory}}\n"))
                        .collect::<String>()
                ),
            ),
            "ports",
            "at most 32",
        ),
        (
            "node: {name: n}\n".to_string(),
            "ports",
            "at least one port",
        ),
        (
            "node: {name: n}\nports: []\n".to_string(),
            "ports",
            "at least one port",
        ),
        (
            "ports: [{name: p, driver: memory}]\n".to_string(),
            "node",
            "required field is missing",
        ),
        (
            "node: {name: n}\nports: [{name: p}]\n".to_string(),
            "ports[0].driver",
            "required field is missing",
        ),
        // routes
        (
            base_with("    via: \"10.0.0.2\"\n", ""),
            "routes[1]",
            "needs `via`",
        ),
        (
            base_with("    via: \"10.0.0.2\"\n", "    port: eth1\n"),
            "routes[1].port",
            "unknown port `eth1` (configured ports: eth0)",
        ),
        (
            base_with("prefix: \"10.1.0.0/16\"", "prefix: \"0.0.0.0/0\""),
            "routes[1].prefix",
            "duplicate route for 0.0.0.0/0 (also routes[0])",
        ),
        (
            base_with("prefix: \"10.1.0.0/16\"", "prefix: \"10.1.0.0\""),
            "routes[1].prefix",
            "invalid IPv4 CIDR",
        ),
        (
            base_with("prefix: \"10.1.0.0/16\"", "prefix: \"10.1.0.0/x\""),
            "routes[1].prefix",
            "bad prefix length",
        ),
        (
            base_with("via: \"10.0.0.2\"", "via: \"255.255.255.255\""),
            "routes[1].via",
            "not a usable next hop",
        ),
        (
            base_with("via: \"10.0.0.2\"", "via: \"gateway\""),
            "routes[1].via",
            "invalid IPv4 address",
        ),
        (
            add_route("  - {prefix: \"fd10::/48\", via: \"10.0.0.2\"}\n"),
            "routes[2].via",
            "IPv4 next hop for the IPv6 prefix fd10::/48",
        ),
        (
            add_route("  - {prefix: \"10.9.0.0/16\", via: \"fd00::2\"}\n"),
            "routes[2].via",
            "IPv6 next hop for the IPv4 prefix 10.9.0.0/16",
        ),
        (
            add_route("  - {prefix: \"fd10::/48\", via: \"fe80::1\"}\n"),
            "routes[2].port",
            "link-local next hop fe80::1 needs `port`",
        ),
        (
            add_route("  - {prefix: \"fd10::/48\", via: \"ff02::1\"}\n"),
            "routes[2].via",
            "not a usable next hop",
        ),
        (
            add_route("  - {prefix: \"fd10::/48\", via: \"fd00::x\"}\n"),
            "routes[2].via",
            "invalid IPv6 address `fd00::x`",
        ),
        (
            add_route("  - {prefix: \"fd10::/48\"}\n"),
            "routes[2]",
            "needs `via`",
        ),
        (
            add_route("  - {prefix: \"fd10::/48\", port: eth9}\n"),
            "routes[2].port",
            "unknown port `eth9`",
        ),
        (
            add_route(
                "  - {prefix: \"fd10::1/48\", port: eth0}\n  - {prefix: \"fd10::/48\", via: \"fd00::2\"}\n",
            ),
            "routes[3].prefix",
            "duplicate route for fd10::/48 (also routes[2])",
        ),
        (
            base_with(
                "routes:\n",
                "routes:\n  - {prefix: \"::/0\", via: \"fd00::2\"}\n",
            )
            .replacen("prefix: \"10.1.0.0/16\"", "prefix: \"0.0.0.0/0\"", 1),
            "routes[2].prefix",
            "duplicate route for 0.0.0.0/0 (also routes[1])",
        ),
        (
            base_with("prefix: \"10.1.0.0/16\"", "prefix: \"fd00::/200\""),
            "routes[1].prefix",
            "invalid IPv6 CIDR",
        ),
        // neighbors
        (
            base_with("address: \"10.0.0.2\"", "address: \"ff02::1\""),
            "neighbors[1].address",
            "not a usable neighbor address",
        ),
        (
            base_with("address: \"10.0.0.2\"", "address: \"fd00::zz\""),
            "neighbors[1].address",
            "invalid IPv6 address",
        ),
        (
            base_with(
                "neighbors:\n",
                "neighbors:\n  - {address: \"fd00::2\", mac: \"02:00:00:00:00:02\"}\n  - {address: \"fd00::2\", mac: \"02:00:00:00:00:03\"}\n",
            ),
            "neighbors[1].address",
            "duplicate neighbor fd00::2 (also neighbors[0])",
        ),
        (
            base_with(
                "neighbors:\n",
                "neighbors:\n  - {address: \"fd00::2\", mac: \"02:00:00:00:00:02\"}\n",
            )
            .replacen("address: \"10.0.0.2\"", "address: \"10.0.255.254\"", 1),
            "neighbors[2].address",
            "duplicate neighbor 10.0.255.254 (also neighbors[1])",
        ),
        (
            base_with("mac: \"02:00:00:00:00:fe\"", "mac: \"03:00:00:00:00:fe\""),
            "neighbors[0].mac",
            "multicast",
        ),
        (
            base_with(
                "mac: \"02:00:00:00:00:02\"",
                "mac: \"02:00:00:00:00:02\"\n    port: wan",
            ),
            "neighbors[1].port",
            "unknown port `wan`",
        ),
        (
            base_with("address: \"10.0.0.2\"", "address: \"10.0.255.254\""),
            "neighbors[1].address",
            "duplicate neighbor 10.0.255.254",
        ),
        (
            base_with("    mac: \"02:00:00:00:00:02\"\n", ""),
            "neighbors[1].mac",
            "required field is missing",
        ),
        // kubernetes
        (
            base_with("manifests: manifests", "manifest: manifests"),
            "kubernetes.manifest",
            "unknown field `manifest`, expected one of `manifests`, `kubeconfig`",
        ),
        (
            base_with("manifests: manifests", "manifests: manifests\n  min_sync_ms: 60001"),
            "kubernetes.min_sync_ms",
            "60001 is above the maximum 60000",
        ),
        (
            base_with("manifests: manifests", "manifests: manifests\n  min_sync_ms: -1"),
            "kubernetes.min_sync_ms",
            "invalid value",
        ),
        (
            base_with("manifests: manifests", "manifests: manifests\n  api: cluster"),
            "kubernetes.api",
            "unknown mode `cluster`, expected `auto`, `infer` or `off`",
        ),
        (
            base_with(
                "manifests: manifests",
                "manifests: manifests\n  api: \"off\"\n  kubeconfig: kc.yaml",
            ),
            "kubernetes.api",
            "`off` does not watch the API server, but kubernetes.kubeconfig is /cfg/kc.yaml",
        ),
        (
            base_with("manifests: manifests", "manifests: manifests\n  kubeconfig: \"\""),
            "kubernetes.kubeconfig",
            "must not be empty",
        ),
        // conntrack
        (
            append("conntrack: {max_flows: 15}\n"),
            "conntrack.max_flows",
            "below the minimum 16",
        ),
        (
            append("conntrack: {max_flows6: 8}\n"),
            "conntrack.max_flows6",
            "below the minimum 16",
        ),
        (
            append("conntrack: {affinity_max: 0}\n"),
            "conntrack.affinity_max",
            "at least 1",
        ),
        (
            append("conntrack: {timeouts: {udp: 0}}\n"),
            "conntrack.timeouts.udp",
            "at least 1 second",
        ),
        (
            append("conntrack: {timeouts: {tcp_established: -5}}\n"),
            "conntrack.timeouts.tcp_established",
            "invalid value",
        ),
        (
            append("conntrack: {timeouts: {tcp_syn: 5}}\n"),
            "conntrack.timeouts.tcp_syn",
            "unknown field `tcp_syn`",
        ),
        (
            append("conntrack: {max_flow: 5}\n"),
            "conntrack.max_flow",
            "unknown field `max_flow`",
        ),
        // dpdk
        (
            base_with("driver: pcap", "driver: dpdk\n    interface: eth0"),
            "ports[0].interface",
            "`eth0` is not a DPDK device",
        ),
        (
            base_with("driver: pcap", "driver: dpdk\n    interface: \"0000:03:20.0\""),
            "ports[0].interface",
            "not a DPDK device",
        ),
        (
            base_with("driver: pcap", "driver: dpdk\n    interface: \"net_tap0,,iface=x\""),
            "ports[0].interface",
            "empty device argument",
        ),
        (
            base_with(
                "routes:",
                "  - {name: eth1, driver: dpdk, interface: \"3:0.1\"}\n  - {name: eth2, driver: dpdk, interface: \"0000:03:00.1,x=1\"}\nroutes:",
            ),
            "ports[2].interface",
            "device `0000:03:00.1` is also ports[1]",
        ),
        (
            append("dpdk: {eal_args: [\"--vdev=net_tap0\"]}\n"),
            "dpdk.eal_args[0]",
            "selects devices",
        ),
        (
            append("dpdk: {eal_args: [\"-l\", \"0\", \"-a0000:01:00.0\"]}\n"),
            "dpdk.eal_args[2]",
            "selects devices",
        ),
        (
            append("dpdk: {eal_args: [\"\"]}\n"),
            "dpdk.eal_args[0]",
            "empty",
        ),
        (
            append("dpdk: {mbufs: 100}\n"),
            "dpdk.mbufs",
            "out of range 1024..=",
        ),
        (
            append("dpdk: {descriptors: 70000}\n"),
            "dpdk.descriptors",
            "invalid value",
        ),
        (
            append("dpdk: {descriptors: 16}\n"),
            "dpdk.descriptors",
            "out of range 32..=16384",
        ),
        (
            append("dpdk: {eal: []}\n"),
            "dpdk.eal",
            "unknown field `eal`",
        ),
        // snat
        (
            append("snat: {ports: \"1000-2000\"}\n"),
            "snat.ports",
            "below 1024",
        ),
        (
            append("snat: {ports: \"40000-40000\"}\n"),
            "snat.ports",
            "minimum must be below the maximum",
        ),
        (
            append("snat: {ports: \"50000-40000\"}\n"),
            "snat.ports",
            "reversed",
        ),
        (
            append("snat: {ports: \"40000\"}\n"),
            "snat.ports",
            "expected `MIN-MAX`",
        ),
        (
            append("snat: {ports: \"40000-70000\"}\n"),
            "snat.ports",
            "invalid port range",
        ),
        (
            append("snat: {ports: \"25000-30500\"}\n"),
            "snat.ports",
            "25000-30500 overlaps the NodePort range 30000-32767 (kubernetes.node_port_range)",
        ),
        (
            base_with("manifests: manifests", "manifests: manifests\n  node_port_range: \"20000-22000\""),
            "snat.ports",
            "20000-29999 overlaps the NodePort range 20000-22000",
        ),
        (
            base_with("manifests: manifests", "manifests: manifests\n  node_port_range: \"30000\""),
            "kubernetes.node_port_range",
            "expected `MIN-MAX`, e.g. `30000-32767`",
        ),
        // top level
        (
            append("worker: 2\n"),
            "worker",
            "unknown field `worker`, expected one of `node`, `workers`",
        ),
        (String::new(), "node", "required field is missing"),
        (
            "- a\n- b\n".to_string(),
            "(document)",
            "invalid type: sequence",
        ),
    ];
    let file = Path::new("/cfg/node.yaml");
    let mut failures = Vec::new();
    for (text, field, reason) in &cases {
        match Config::parse(text, file) {
            Ok(_) => failures.push(format!("accepted, expected {field}: {reason}\n{text}")),
            Err(e) => {
                assert_eq!(e.file, file);
                if e.field != *field || !e.reason.contains(reason) {
                    failures.push(format!(
                        "expected `{field}: ...{reason}...`, got `{}: {}`",
                        e.field, e.reason
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A live port (af_packet on `veth0`) with `host_interface` set as given, and a second port.
fn host_yaml(host0: &str, second: &str) -> String {
    format!(
        "node: {{name: n}}\nports:\n  - {{name: p0, driver: af_packet, interface: veth0{host0}}}\n  - {second}\n"
    )
}

#[test]
fn host_interface_is_accepted_on_live_drivers() {
    for (driver, interface) in [
        ("af_packet", "x0"),
        ("af_xdp", "x0"),
        ("tap", "x0"),
        ("dpdk", "\"net_af_packet0,iface=x0\""),
    ] {
        let text = format!(
            "node: {{name: n}}\nports:\n  - {{name: p, driver: {driver}, interface: {interface}, host_interface: nghost0}}\n"
        );
        let c = Config::parse(&text, Path::new("c.yaml")).unwrap();
        assert_eq!(c.ports[0].host_interface.as_deref(), Some("nghost0"));
    }
    // Fifteen bytes is the longest name Linux takes; each port may have its own.
    let c = Config::parse(
        &host_yaml(
            ", host_interface: abcdefghijklmno",
            "{name: p1, driver: tap, interface: tap1, host_interface: nghost1}",
        ),
        Path::new("c.yaml"),
    )
    .unwrap();
    assert_eq!(
        c.ports
            .iter()
            .map(|p| p.host_interface.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("abcdefghijklmno"), Some("nghost1")]
    );
    // Optional: a port without one has none.
    let c = Config::parse(
        &host_yaml("", "{name: p1, driver: memory}"),
        Path::new("c.yaml"),
    )
    .unwrap();
    assert!(c.ports.iter().all(|p| p.host_interface.is_none()));
}

/// Each case: the config text, the expected field, a fragment of the expected reason.
#[test]
fn host_interface_rejections_name_the_field() {
    let mem = "{name: p1, driver: memory}";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            host_yaml(", host_interface: abcdefghijklmnop", mem),
            "ports[0].host_interface",
            "has 16 bytes; Linux allows 1 to 15",
        ),
        (
            host_yaml(", host_interface: \"\"", mem),
            "ports[0].host_interface",
            "has 0 bytes",
        ),
        (
            host_yaml(", host_interface: \"ng host\"", mem),
            "ports[0].host_interface",
            "forbids `/`, `:` and whitespace",
        ),
        (
            host_yaml(", host_interface: \"ng/0\"", mem),
            "ports[0].host_interface",
            "contains '/'",
        ),
        (
            host_yaml(", host_interface: \"..\"", mem),
            "ports[0].host_interface",
            "not a valid interface name",
        ),
        (
            host_yaml("", "{name: p1, driver: memory, host_interface: nghost1}"),
            "ports[1].host_interface",
            "the memory driver has no live traffic",
        ),
        (
            host_yaml(
                "",
                "{name: p1, driver: pcap, rx: in.pcap, host_interface: nghost1}",
            ),
            "ports[1].host_interface",
            "is for the af_xdp, af_packet, tap and dpdk drivers",
        ),
        (
            host_yaml(
                ", host_interface: nghost0",
                "{name: p1, driver: tap, interface: tap1, host_interface: nghost0}",
            ),
            "ports[1].host_interface",
            "interface `nghost0` is already used (also ports[0].host_interface)",
        ),
        (
            host_yaml(", host_interface: veth0", mem),
            "ports[0].host_interface",
            "already used (also ports[0].interface)",
        ),
        (
            host_yaml(
                ", host_interface: tap1",
                "{name: p1, driver: tap, interface: tap1}",
            ),
            "ports[0].host_interface",
            "already used (also ports[1].interface)",
        ),
        (
            host_yaml(", host_interface: [a]", mem),
            "ports[0].host_interface",
            "invalid type",
        ),
        (
            host_yaml(", host_iface: nghost0", mem),
            "ports[0].host_iface",
            "unknown field `host_iface`",
        ),
    ];
    let file = Path::new("/cfg/node.yaml");
    let mut failures = Vec::new();
    for (text, field, reason) in &cases {
        match Config::parse(text, file) {
            Ok(_) => failures.push(format!("accepted, expected {field}: {reason}\n{text}")),
            Err(e) => {
                assert_eq!(e.file, file);
                if e.field != *field || !e.reason.contains(reason) {
                    failures.push(format!(
                        "expected `{field}: ...{reason}...`, got `{}: {}`",
                        e.field, e.reason
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_display_is_file_field_reason() {
    let text = base_with("mac: \"02:00:00:00:00:01\"", "mac: \"nonsense\"");
    let e = Config::parse(&text, Path::new("/cfg/node.yaml")).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("/cfg/node.yaml: ports[0].mac: invalid MAC address `nonsense`"),
        "{shown}"
    );
    let as_error: &dyn std::error::Error = &e;
    assert_eq!(as_error.to_string(), shown);
}

#[test]
fn yaml_syntax_error_carries_position() {
    let text = "node:\n  name: a\n ports: [\n";
    let e = Config::parse(text, Path::new("bad.yaml")).unwrap_err();
    assert_eq!(e.field, "(document)");
    assert!(e.reason.contains("line"), "{}", e.reason);
    assert!(e.reason.contains("column"), "{}", e.reason);

    let e = Config::parse("node: {name: a\n", Path::new("bad.yaml")).unwrap_err();
    assert_eq!(e.field, "(document)");
    assert!(e.reason.contains("line"), "{}", e.reason);

    let e = Config::parse("node: {name: a}\nnode: {name: b}\n", Path::new("dup.yaml")).unwrap_err();
    assert_eq!(e.field, "(document)");
    assert!(e.reason.contains("duplicate"), "{}", e.reason);
}

#[test]
fn missing_file_is_an_io_error() {
    let e = Config::load(Path::new("/nonexistent/nodegate.yaml")).unwrap_err();
    assert_eq!(e.file, PathBuf::from("/nonexistent/nodegate.yaml"));
    assert_eq!(e.field, "(file)");
    assert!(e.reason.contains("No such file"), "{}", e.reason);
}

#[test]
fn wrong_types_name_the_field() {
    let e = Config::parse(
        &base_with("workers: 1", "workers: many"),
        Path::new("c.yaml"),
    )
    .unwrap_err();
    assert_eq!(e.field, "workers");
    assert!(e.reason.contains("invalid type"), "{}", e.reason);

    let e = Config::parse(
        &base_with("addresses: [\"10.0.0.1\"]", "addresses: \"10.0.0.1\""),
        Path::new("c.yaml"),
    )
    .unwrap_err();
    assert_eq!(e.field, "node.addresses");
}

#[test]
fn cidr_parse_display_and_helpers() {
    let c: Cidr = "10.1.2.3/16".parse().unwrap();
    assert_eq!(c.address, Ipv4Addr::new(10, 1, 2, 3));
    assert_eq!(c.prefix_len, 16);
    assert_eq!(c.to_string(), "10.1.2.3/16");
    assert_eq!(c.network().to_string(), "10.1.0.0/16");
    assert_eq!(c.mask(), 0xffff_0000);
    assert!(c.contains(Ipv4Addr::new(10, 1, 255, 255)));
    assert!(!c.contains(Ipv4Addr::new(10, 2, 0, 0)));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert_eq!(all.mask(), 0);
    assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    let host: Cidr = "1.2.3.4/32".parse().unwrap();
    assert_eq!(host.mask(), u32::MAX);
    for bad in [
        "",
        "1.2.3.4",
        "1.2.3.4/",
        "1.2.3.4/33",
        "1.2.3/8",
        "1.2.3.4/+8",
        "x/8",
        "1.2.3.4/8/8",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn macs_are_parsed_by_the_data_planes_type() {
    let mac = |m: &str| {
        Config::parse(
            &EXAMPLE.replacen("02:00:00:00:00:01", m, 1),
            Path::new("n.yaml"),
        )
        .map(|c| c.ports[0].mac)
    };
    assert_eq!(
        mac("02-00-00-00-00-FE").unwrap(),
        Some([2, 0, 0, 0, 0, 0xfe])
    );
    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:00:00",
        "0g:00:00:00:00:00",
    ] {
        let e = mac(bad).unwrap_err();
        assert!(e.reason.contains("invalid MAC address"), "{bad}: {e}");
    }
}

const IPV6: &str = r#"
node: {name: node-a}
ports:
  - name: eth0
    driver: memory
    addresses: ["fd00::1/64", "10.0.0.1/16", "fe80::1/64"]
  - name: eth1
    driver: memory
    addresses: ["fd01::1/64"]
routes:
  - {prefix: "fd10::5/48", via: "fd01::fe"}
  - {prefix: "0.0.0.0/0", via: "10.0.255.254"}
  - {prefix: "::/0", via: "fe80::fffe", port: eth0}
neighbors:
  - {address: "fd01::fe", mac: "02:00:00:00:00:fe"}
  - {address: "10.0.255.254", mac: "02:00:00:00:00:fd", port: eth0}
"#;

#[test]
fn ipv6_entries_load() {
    use control::config::Cidr6;
    use std::net::Ipv6Addr;
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let c = Config::parse(IPV6, Path::new("c.yaml")).unwrap();
    let p = &c.ports[0];
    assert_eq!(p.addresses, vec![cidr("10.0.0.1/16")]);
    assert_eq!(
        p.addresses6,
        vec![
            Cidr6 {
                address: v6("fd00::1"),
                prefix_len: 64
            },
            "fe80::1/64".parse().unwrap()
        ]
    );
    assert_eq!(c.ports[1].addresses6.len(), 1);
    // IPv4 entries stay where they were; IPv6 ones remember their YAML position.
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].prefix, cidr("0.0.0.0/0"));
    assert_eq!(c.routes6.len(), 2);
    assert_eq!(c.routes6[0].index, 0);
    assert_eq!(
        c.routes6[0].prefix.to_string(),
        "fd10::/48",
        "host bits cleared"
    );
    assert_eq!(c.routes6[0].via, Some(v6("fd01::fe")));
    assert_eq!(c.routes6[1].index, 2);
    assert_eq!(c.routes6[1].port.as_deref(), Some("eth0"));
    assert_eq!(c.neighbors.len(), 1);
    assert_eq!(c.neighbors6.len(), 1);
    assert_eq!(c.neighbors6[0].address, v6("fd01::fe"));
    assert_eq!(c.neighbors6[0].mac, [2, 0, 0, 0, 0, 0xfe]);
    assert_eq!(c.neighbors6[0].index, 0);

    let e: Cidr6 = "fd00:1::7/32".parse().unwrap();
    assert_eq!(e.network().to_string(), "fd00:1::/32");
    assert!(e.contains(v6("fd00:1:ffff::1")));
    assert!(!e.contains(v6("fd00:2::1")));
    for bad in [
        "",
        "fd00::1",
        "fd00::1/",
        "fd00::1/129",
        "x/8",
        "fd00::1/+8",
        "10.0.0.1/8",
    ] {
        assert!(bad.parse::<Cidr6>().is_err(), "{bad}");
    }

    // The example without IPv6 has empty IPv6 fields.
    let c = Config::parse(EXAMPLE, Path::new("c.yaml")).unwrap();
    assert!(c.ports[0].addresses6.is_empty());
    assert!(c.routes6.is_empty() && c.neighbors6.is_empty());
}

#[test]
fn idle_policy_defaults_and_bounds() {
    let base = "node: {name: n}\nports: [{name: p, driver: memory}]\n";
    let cfg = Config::parse(base, Path::new("/x/c.yaml")).unwrap();
    assert_eq!((cfg.idle.spin, cfg.idle.sleep_us), (1024, 50));
    let cfg = Config::parse(
        &format!("{base}idle: {{spin: 0, sleep_us: 200}}\n"),
        Path::new("/x/c.yaml"),
    )
    .unwrap();
    assert_eq!((cfg.idle.spin, cfg.idle.sleep_us), (0, 200));
    let e = Config::parse(
        &format!("{base}idle: {{sleep_us: 500000}}\n"),
        Path::new("/x/c.yaml"),
    )
    .unwrap_err();
    assert_eq!(e.field, "idle.sleep_us");
    let e = Config::parse(
        &format!("{base}idle: {{spinn: 1}}\n"),
        Path::new("/x/c.yaml"),
    )
    .unwrap_err();
    assert!(e.field.starts_with("idle"), "{e}");
}

#[test]
fn health_and_metrics_defaults_are_kube_proxys() {
    let base = "node: {name: n}\nports: [{name: p, driver: memory}]\n";
    let c = Config::parse(base, Path::new("/x/c.yaml")).unwrap();
    assert_eq!(c.health, HealthConfig::default());
    assert_eq!(c.health.bind, Some("0.0.0.0:10256".parse().unwrap()));
    assert_eq!(c.health.timeout_secs, 60);
    assert_eq!(c.health.node_port_address, Some("0.0.0.0".parse().unwrap()));
    assert!(c.health.host_stack);
    assert_eq!(c.metrics, MetricsConfig::default());
    assert_eq!(c.metrics.bind, Some("127.0.0.1:10249".parse().unwrap()));

    let c = Config::parse(
        &format!(
            "{base}health: {{bind: \"[::]:20256\", timeout_secs: 5, node_port_address: \"10.0.0.1\", host_stack: false}}\nmetrics: {{bind: \"0.0.0.0:20249\"}}\n"
        ),
        Path::new("/x/c.yaml"),
    )
    .unwrap();
    assert_eq!(
        c.health,
        HealthConfig {
            bind: Some("[::]:20256".parse().unwrap()),
            timeout_secs: 5,
            node_port_address: Some("10.0.0.1".parse().unwrap()),
            host_stack: false,
        }
    );
    assert_eq!(c.metrics.bind, Some("0.0.0.0:20249".parse().unwrap()));

    // "" switches a server off.
    let c = Config::parse(
        &format!(
            "{base}health: {{bind: \"\", node_port_address: \"\"}}\nmetrics: {{bind: \"\"}}\n"
        ),
        Path::new("/x/c.yaml"),
    )
    .unwrap();
    assert_eq!((c.health.bind, c.health.node_port_address), (None, None));
    assert_eq!(c.metrics.bind, None);
}

#[test]
fn health_and_metrics_errors_name_the_field() {
    let base = "node: {name: n}\nports: [{name: p, driver: memory}]\n";
    let cases = [
        (
            "health: {bind: \"10256\"}",
            "health.bind",
            "expected ADDRESS:PORT",
        ),
        ("health: {bind: \"0.0.0.0:0\"}", "health.bind", "port 0"),
        (
            "health: {timeout_secs: 0}",
            "health.timeout_secs",
            "out of range 1..=3600",
        ),
        (
            "health: {timeout_secs: 3601}",
            "health.timeout_secs",
            "out of range",
        ),
        (
            "health: {node_port_address: \"node\"}",
            "health.node_port_address",
            "invalid IP address `node`",
        ),
        (
            "health: {host_stack: 1}",
            "health.host_stack",
            "invalid type",
        ),
        ("health: {port: 1}", "health.port", "unknown field `port`"),
        (
            "metrics: {bind: \"localhost:10249\"}",
            "metrics.bind",
            "expected ADDRESS:PORT",
        ),
        (
            "metrics: {bind: \"0.0.0.0:10256\"}",
            "metrics.bind",
            "collides with health.bind",
        ),
        (
            "metrics: {path: /m}",
            "metrics.path",
            "unknown field `path`",
        ),
    ];
    for (extra, field, reason) in cases {
        let e = Config::parse(&format!("{base}{extra}\n"), Path::new("/x/c.yaml")).unwrap_err();
        assert_eq!(e.field, field, "{extra}: {e}");
        assert!(e.reason.contains(reason), "{extra}: {e}");
        assert_eq!(e.file, Path::new("/x/c.yaml"));
    }
}

#[test]
fn dpdk_devices_and_defaults() {
    let base = "node: {name: n}\nports: [{name: p, driver: memory}]\n";
    let cfg = Config::parse(base, Path::new("c.yaml")).unwrap();
    assert_eq!(cfg.dpdk, DpdkConfig::default());
    assert_eq!(cfg.dpdk.eal_args, DEFAULT_EAL_ARGS);
    assert!(cfg.dpdk.eal_args.iter().any(|a| a == "--no-huge"));
    assert_eq!((cfg.dpdk.mbufs, cfg.dpdk.descriptors), (None, 1024));
    assert_eq!(cfg.ports[0].dpdk_device, None);

    let cfg = Config::parse(
        "node: {name: n}\nports:\n  - {name: a, driver: dpdk, interface: \"net_af_packet0,iface=veth0,qpairs=2\"}\n  - {name: b, driver: dpdk, interface: \"3:00.1\"}\ndpdk: {eal_args: [\"--in-memory\", \"-l\", \"1\"], mbufs: 4095, descriptors: 512}\n",
        Path::new("c.yaml"),
    )
    .unwrap();
    assert_eq!(
        cfg.ports[0].dpdk_device,
        Some(DpdkDevice {
            bus: DpdkBus::Vdev,
            name: "net_af_packet0".into(),
            devargs: "net_af_packet0,iface=veth0,qpairs=2".into(),
        })
    );
    assert_eq!(
        cfg.ports[1].dpdk_device,
        Some(DpdkDevice {
            bus: DpdkBus::Pci,
            name: "0000:03:00.1".into(),
            devargs: "0000:03:00.1".into(),
        })
    );
    assert_eq!(cfg.dpdk.eal_args, ["--in-memory", "-l", "1"]);
    assert_eq!((cfg.dpdk.mbufs, cfg.dpdk.descriptors), (Some(4095), 512));

    for (text, name) in [
        ("0000:03:00.0", "0000:03:00.0"),
        ("03:00.0", "0000:03:00.0"),
        ("1:0:1f.7", "0001:00:1f.7"),
        ("0000:AF:00.0,rxq_cqe_comp_en=0", "0000:af:00.0"),
        ("net_tap0,iface=dtap0,mac=fixed", "net_tap0"),
        ("net_af_xdp0,iface=veth0", "net_af_xdp0"),
    ] {
        let d: DpdkDevice = text.parse().unwrap();
        assert_eq!(d.name, name, "{text}");
    }
    for bad in [
        "",
        "eth0",
        "net_",
        "net_tap0,",
        "net-tap0",
        "net_tap0 ,iface=x",
        "0000:03:00",
        "0000:03:00.8",
        "0000:03:20.0",
        "00000:03:00.0",
        "0000:003:00.0",
        "g0:00.0",
    ] {
        assert!(bad.parse::<DpdkDevice>().is_err(), "{bad}");
    }
}
