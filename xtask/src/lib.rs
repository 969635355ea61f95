//! Developer tasks for the felix eBPF dataplane: machine setup, build, the network-namespace lab,
//! the demo and the tiered test run. `main.rs` is a thin CLI over these modules; the lab
//! integration test (`tests/lab.rs`) uses [`lab::Lab`] directly.

pub mod build;
pub mod cmd;
pub mod demo;
pub mod felix;
pub mod lab;
pub mod paths;
pub mod pcap;
pub mod setup;
pub mod tiers;
