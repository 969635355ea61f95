//! Names of the BPF maps felix owns.
//!
//! A name carries its layout version (`_v1`): a layout change gets a new name, so a pinned map is
//! never read with the wrong layout. Kernel map names are limited to 15 bytes.

/// Per-CPU packet and byte counters keyed by interface, direction and verdict reason.
pub const COUNTERS: &str = "felix_cnt_v1";
/// Per-CPU array: the counter cache, lines of [`crate::counters::CounterCacheLine`] that hold
/// the counters of ordinary verdicts of the interfaces felix attached to (a cheaper lookup
/// than [`COUNTERS`]'s hash); an interface's counters are the sum of both maps.
pub const COUNTER_CACHE: &str = "felix_cntc_v1";
/// Interfaces felix manages: ifindex -> name and role, written by user space only.
pub const IFACES: &str = "felix_ifaces_v1";

/// Local workload interfaces: ifindex -> the pod's IP, MAC and policy slots.
pub const ENDPOINTS: &str = "felix_ep_v2";
/// LPM trie: CIDR -> local workload, remote block (IPIP), host, local block.
pub const ROUTES: &str = "felix_routes_v1";
/// Conntrack table: a plain hash (not an LRU: a full table refuses new flows rather than
/// evicting live ones), cleaned by `felix_ct_clean`.
pub const CONNTRACK: &str = "felix_ct_v1";
/// Array of one: the conntrack cleaner's state ([`crate::ct_clean::CtCleanerState`]): the
/// per-endpoint share `create` enforces, the last pass, totals.
pub const CT_CLEANER: &str = "felix_ctcln_v1";
/// Hash: endpoint ifindex -> conntrack entries charged to it
/// ([`crate::ct_clean::CtEndpointCount`]).
pub const CT_ENDPOINTS: &str = "felix_ctep_v1";
/// LRU hash: (source `cali*` ifindex, IP ID, protocol) of a pod's first packet the host stack
/// may NAT -> the conntrack key of its flow before NAT (see [`crate::nat`]).
pub const NAT_ORIGINS: &str = "felix_natorg_v1";
/// LRU hash: (source, destination, protocol, IP ID) of a fragmented datagram -> the ports its
/// first fragment carried, for its later fragments (see [`crate::frags`]).
pub const FRAGMENTS: &str = "felix_frags_v1";
/// This host: address, uplink ifindex and MTU (array of one).
pub const CONFIG: &str = "felix_cfg_v1";
/// LPM trie of source CIDRs the uplink's XDP program drops.
pub const XDP_DENY: &str = "felix_deny_v1";
/// Hash: (port, protocol, direction) -> 1 for the failsafe ports the uplink's XDP never drops.
pub const FAILSAFE: &str = "felix_fsafe_v1";
/// Policy slots: slot -> the id of its current compiled set (array).
pub const POLICY_SLOTS: &str = "felix_pslot_v1";
/// LPM trie: (set, remote address) -> address class.
pub const POLICY_IPS: &str = "felix_pip_v1";
/// LPM trie: (set, field, protocol, port) -> port class.
pub const POLICY_PORTS: &str = "felix_pport_v1";
/// Hash: (set, address class, destination class, source class) -> verdict and rule.
pub const POLICY_VERDICTS: &str = "felix_pvd_v1";
/// Per-CPU packet counters per policy rule (array indexed by rule counter id).
pub const RULE_COUNTERS: &str = "felix_pcnt_v1";
/// Ring buffer of drop and policy-verdict events (`felix bpf trace`).
pub const TRACE_EVENTS: &str = "felix_trace_v1";
/// Trace switch and rate (array of one).
pub const TRACE_CONTROL: &str = "felix_trctl_v1";
/// Per-CPU token buckets of the trace rate limit (array of one).
pub const TRACE_BUCKETS: &str = "felix_trbkt_v1";

/// Every map felix pins under `/sys/fs/bpf/felix/<node>/`.
pub const PINNED: [&str; 21] = [
    COUNTERS,
    COUNTER_CACHE,
    IFACES,
    ENDPOINTS,
    ROUTES,
    CONNTRACK,
    NAT_ORIGINS,
    FRAGMENTS,
    CONFIG,
    XDP_DENY,
    FAILSAFE,
    POLICY_SLOTS,
    POLICY_IPS,
    POLICY_PORTS,
    POLICY_VERDICTS,
    RULE_COUNTERS,
    TRACE_EVENTS,
    TRACE_CONTROL,
    TRACE_BUCKETS,
    CT_CLEANER,
    CT_ENDPOINTS,
];

/// Capacity of [`NAT_ORIGINS`]: first packets in flight through the host stack; an entry is
/// used within microseconds (longer only while the stack resolves a neighbour).
pub const NAT_ORIGINS_MAX_ENTRIES: u32 = 16_384;
/// Capacity of [`FRAGMENTS`]: datagrams in flight in fragments (Calico's holds 10,000); the
/// least recently used record goes first.
pub const FRAGMENTS_MAX_ENTRIES: u32 = 16_384;
/// Capacity of [`ENDPOINTS`].
pub const ENDPOINTS_MAX_ENTRIES: u32 = 4_096;
/// Capacity of [`ROUTES`].
pub const ROUTES_MAX_ENTRIES: u32 = 65_536;
/// Default capacity of [`CONNTRACK`].
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;
/// Capacity of [`CT_ENDPOINTS`]: as many as there can be endpoints.
pub const CT_ENDPOINTS_MAX_ENTRIES: u32 = ENDPOINTS_MAX_ENTRIES;
/// Capacity of [`XDP_DENY`].
pub const XDP_DENY_MAX_ENTRIES: u32 = 16_384;
/// Capacity of [`FAILSAFE`].
pub const FAILSAFE_MAX_ENTRIES: u32 = 1_024;

/// Capacity of [`POLICY_SLOTS`] (slot 0 is never used).
pub const POLICY_SLOTS_MAX_ENTRIES: u32 = 16_384;
/// Capacity of [`POLICY_IPS`].
pub const POLICY_IPS_MAX_ENTRIES: u32 = 262_144;
/// Capacity of [`POLICY_PORTS`].
pub const POLICY_PORTS_MAX_ENTRIES: u32 = 65_536;
/// Capacity of [`POLICY_VERDICTS`].
pub const POLICY_VERDICTS_MAX_ENTRIES: u32 = 262_144;
/// Capacity of [`RULE_COUNTERS`] (rule counter ids).
pub const RULE_COUNTERS_MAX_ENTRIES: u32 = 65_536;

/// Capacity of [`COUNTERS`]: interfaces x directions x reasons.
pub const COUNTERS_MAX_ENTRIES: u32 = 65_536;
/// Capacity of [`IFACES`].
pub const IFACES_MAX_ENTRIES: u32 = 4_096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for name in PINNED {
            assert!(
                name.len() <= 15,
                "{name} is longer than BPF_OBJ_NAME_LEN - 1"
            );
        }
    }
}
