//! `dpdk` ports in a build without the `dpdk` feature: a configuration with one is refused
//! with the way to get them. (With the feature, `dpdk.rs` is this module.)

use crate::run::RunError;
use control::config::{Config, Driver};
use dataplane::port::Port;

/// Why a configuration with a `dpdk` port does not run in this build.
pub const NOT_BUILT: &str = "built without the dpdk feature; rebuild with --features dpdk";

/// No DPDK in this build: there is never a value of this type.
pub enum DpdkPorts {}

impl DpdkPorts {
    /// Refuses a configuration with a `dpdk` port; `None` otherwise.
    pub fn open(cfg: &mut Config) -> Result<Option<DpdkPorts>, RunError> {
        match cfg.ports.iter().position(|p| p.driver == Driver::Dpdk) {
            Some(i) => Err(crate::preflight::StartError {
                file: cfg.file.clone(),
                field: format!("ports[{i}].driver"),
                reason: NOT_BUILT.to_string(),
            }
            .into()),
            None => Ok(None),
        }
    }

    pub fn worker_ports(&mut self, _index: usize) -> Vec<Box<dyn Port>> {
        match *self {}
    }

    pub fn close(self) {
        match self {}
    }
}
