//! The user side of felix: loads the eBPF dataplane, attaches it to `cali*` interfaces as they come
//! and go, keeps its maps in step with Calico's datastore (the etcd syncer in [`datastore`] feeds
//! the parsed cache in [`store`]), and reads its pinned maps back for operators.
//!
//! The `felix` binary (`main.rs`) is a thin CLI over these modules.

pub use calico::{datastore, ipam, model, selector, store};

pub mod agent;
pub mod attach;
pub mod attached;
pub mod autodetect;
pub mod config;
pub mod counter_cache;
pub mod ct_fill;
pub mod ct_gc;
pub mod desired;
pub mod failsafe;
pub mod ifsysctl;
pub mod inspect;
pub mod iptables;
pub mod kernel_log;
pub mod kroutes;
pub mod links;
pub mod loader;
pub mod map_resize;
pub mod node_register;
pub mod pins;
pub mod policy;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod topology;
pub mod trace;

/// The eBPF object built from `felix-ebpf` by `build.rs`, embedded in the binary.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/felix.bpf.o"));

/// Program attached at TC ingress of a `cali*` interface (packets from the pod).
pub const PROG_FROM_WORKLOAD: &str = "cali_from_wl";
/// Program attached at TC egress of a `cali*` interface (packets to the pod).
pub const PROG_TO_WORKLOAD: &str = "cali_to_wl";
/// Program attached at TC ingress of the uplink (IPIP decapsulation).
pub const PROG_FROM_UPLINK: &str = "uplink_in";
/// Program attached at TC egress of the uplink (IPIP for host-originated traffic).
pub const PROG_TO_UPLINK: &str = "uplink_out";
/// XDP program on the uplink (deny-list prefilter).
pub const PROG_UPLINK_XDP: &str = "uplink_xdp";

/// Every TC program in the object.
pub const TC_PROGRAMS: [&str; 4] = [
    PROG_FROM_WORKLOAD,
    PROG_TO_WORKLOAD,
    PROG_FROM_UPLINK,
    PROG_TO_UPLINK,
];
