//! nodegate's data plane: frames in, routed and NATed frames out.
//!
//! Safe Rust with no I/O: ports are a trait ([`port::Port`]), time is passed in
//! ([`time::Instant`]), and tables arrive as immutable snapshots ([`tables::Tables`]). See
//! `docs/architecture.md` for the pipeline and the flow-ownership scheme.

#![forbid(unsafe_code)]

pub mod conntrack;
pub mod drop;
pub mod flowindex;
pub mod frag;
pub mod hash;
pub mod hoststack;
pub mod ip6;
pub mod lpm;
pub mod maglev;
pub mod mbuf;
pub mod mirror;
pub mod nat;
pub mod nat66;
pub mod neighbor;
pub mod pipeline;
pub mod port;
pub mod route;
pub mod service;
pub mod tables;
pub mod time;
pub mod wire;
