//! Developer tasks for the felix eBPF dataplane: machine setup, build, the network-namespace lab,
//! the demo and the tiered test run. `main.rs` is a thin CLI over these modules; the lab itself
//! (and the small modules it shares with xtask: `cmd`, `paths`, `pcap`, `felix`) is the `lab` crate.

pub mod build;
pub mod demo;
pub mod setup;
pub mod tiers;

pub use lab::{self, cmd, felix, paths, pcap};
