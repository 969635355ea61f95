//! The user side of felix: loads the eBPF dataplane, attaches it to `cali*` interfaces as they come
//! and go, and reads its pinned maps back for operators.
//!
//! The `felix` binary (`main.rs`) is a thin CLI over these modules.

pub mod agent;
pub mod attach;
pub mod datastore;
pub mod inspect;
pub mod kernel_log;
pub mod links;
pub mod loader;
pub mod pins;

/// The eBPF object built from `felix-ebpf` by `build.rs`, embedded in the binary.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/felix.bpf.o"));

/// Program attached at TC ingress of a `cali*` interface (packets from the pod).
pub const PROG_FROM_WORKLOAD: &str = "cali_from_wl";
/// Program attached at TC egress of a `cali*` interface (packets to the pod).
pub const PROG_TO_WORKLOAD: &str = "cali_to_wl";
