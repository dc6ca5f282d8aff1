//! Bindings to the operating system and to NICs.
//!
//! This is the only crate of nodegate allowed to contain `unsafe` code; every block carries a
//! `// SAFETY:` comment naming the invariant it relies on, and every wrapper exposed here is safe
//! to call with any argument. It holds CPU pinning, huge-page advice, cache prefetch, signals,
//! and the packet I/O backends: TAP, AF_PACKET rings and, with the `dpdk` feature, DPDK
//! poll-mode drivers (the only C of the project, `ffi/dpdk/`).

pub mod af_packet;
pub mod af_xdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod frames;
pub mod memory;
pub mod signal;
pub mod tap;

/// Number of CPUs this process may run on.
pub fn available_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Pins the calling thread to `cpu`. Returns false when the OS refused (the CPU is offline or
/// outside the process's allowed set); the caller decides whether that is fatal.
pub fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_pin_to_an_allowed_cpu() {
        let cpus = available_cpus();
        assert!(
            !cpus.is_empty(),
            "the process must be allowed at least one CPU"
        );
        assert!(pin_current_thread(cpus[0]));
    }
}
