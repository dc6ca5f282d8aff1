//! The `nodegate` binary's library: the runtime that wires configuration, control plane and
//! data plane together, the pcap driver, statistics and frame tracing. `main.rs` is a thin
//! command-line front end over this; integration tests drive it directly.

#![forbid(unsafe_code)]

pub mod af_packet;
pub mod af_xdp;
pub mod control;
pub mod demo;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(not(feature = "dpdk"))]
#[path = "dpdk_unavailable.rs"]
pub mod dpdk;
pub mod netns;
pub mod node;
pub mod owner;
pub mod pcap;
pub mod pktgen;
pub mod preflight;
pub mod relay;
pub mod run;
pub mod stats;
pub mod tap;
pub mod trace;
