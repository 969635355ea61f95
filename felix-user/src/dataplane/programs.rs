//! The embedded eBPF object and the names of its programs.

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

/// The conntrack cleaner: a TC program felix runs with BPF_PROG_TEST_RUN, never attached
/// (see [`crate::dataplane::ct_cleaner`]).
pub const PROG_CT_CLEAN: &str = "felix_ct_clean";

/// Every TC program in the object that is attached to interfaces.
pub const TC_PROGRAMS: [&str; 4] = [
    PROG_FROM_WORKLOAD,
    PROG_TO_WORKLOAD,
    PROG_FROM_UPLINK,
    PROG_TO_UPLINK,
];
