//! The maps felix's programs share with user space. Names and value layouts come from
//! `felix-common`; BTF definitions let `bpftool map dump` print every field. User space pins them
//! under `/sys/fs/bpf/felix/<node>/` by name.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    macros::btf_map,
};
use felix_common::{
    CounterCacheLine, CounterKey, CounterValue, CtKey, CtValue, EndpointInfo, HostConfig,
    IfaceInfo, RouteValue,
    counters::COUNTER_CACHE_LINES,
    ct_clean::{CtCleanerState, CtEndpointCount},
    failsafe::FailsafeKey,
    frags::{FragKey, FragValue},
    maps::{
        CONNTRACK_MAX_ENTRIES, COUNTERS_MAX_ENTRIES, CT_ENDPOINTS_MAX_ENTRIES,
        ENDPOINTS_MAX_ENTRIES, FAILSAFE_MAX_ENTRIES, FRAGMENTS_MAX_ENTRIES, IFACES_MAX_ENTRIES,
        NAT_ORIGINS_MAX_ENTRIES, POLICY_IPS_MAX_ENTRIES, POLICY_PORTS_MAX_ENTRIES,
        POLICY_SLOTS_MAX_ENTRIES, POLICY_VERDICTS_MAX_ENTRIES, ROUTES_MAX_ENTRIES,
        RULE_COUNTERS_MAX_ENTRIES, XDP_DENY_MAX_ENTRIES,
    },
    nat::NatOriginKey,
    policy::{PolicyIpKey, PolicyPortKey, PolicyVerdict, PolicyVerdictKey},
    trace::{TRACE_RING_BYTES, TraceBucket, TraceControl, TraceEvent},
};

/// Per-CPU packet and byte counters ([`felix_common::maps::COUNTERS`]).
#[btf_map(name = "felix_cnt_v1")]
pub static COUNTERS: PerCpuHashMap<CounterKey, CounterValue, { COUNTERS_MAX_ENTRIES as usize }> =
    PerCpuHashMap::new();

/// The counter cache ([`felix_common::maps::COUNTER_CACHE`]): per-CPU lines of the ordinary
/// verdicts' counters of the interfaces user space claimed lines for.
#[btf_map(name = "felix_cntc_v1")]
pub static COUNTER_CACHE: PerCpuArray<CounterCacheLine, { COUNTER_CACHE_LINES as usize }> =
    PerCpuArray::new();

/// Interfaces felix manages ([`felix_common::maps::IFACES`]); written by user space, read by
/// the CLI.
#[btf_map(name = "felix_ifaces_v1")]
pub static IFACES: HashMap<u32, IfaceInfo, { IFACES_MAX_ENTRIES as usize }> = HashMap::new();

/// Local workload interfaces ([`felix_common::maps::ENDPOINTS`]).
#[btf_map(name = "felix_ep_v2")]
pub static ENDPOINTS: HashMap<u32, EndpointInfo, { ENDPOINTS_MAX_ENTRIES as usize }> =
    HashMap::new();

/// Routes ([`felix_common::maps::ROUTES`]), keyed by address bytes in network order.
#[btf_map(name = "felix_routes_v1")]
pub static ROUTES: LpmTrie<[u8; 4], RouteValue, { ROUTES_MAX_ENTRIES as usize }> = LpmTrie::new();

/// Conntrack ([`felix_common::maps::CONNTRACK`]).
#[btf_map(name = "felix_ct_v1")]
/// A plain hash, not an LRU: a full table refuses new flows (which then pass untracked, see
/// `conntrack::create`) instead of evicting established ones; `felix_ct_clean` removes expired
/// entries (and closing ones under pressure). Its size is set at load (`BPFMapSizeConntrack`).
pub static CONNTRACK: HashMap<CtKey, CtValue, { CONNTRACK_MAX_ENTRIES as usize }> = HashMap::new();

/// The conntrack cleaner's state ([`felix_common::maps::CT_CLEANER`]), at index 0.
#[btf_map(name = "felix_ctcln_v1")]
pub static CT_CLEANER: Array<CtCleanerState, 1> = Array::new();

/// Conntrack entries per endpoint ([`felix_common::maps::CT_ENDPOINTS`]).
#[btf_map(name = "felix_ctep_v1")]
pub static CT_ENDPOINTS: HashMap<u32, CtEndpointCount, { CT_ENDPOINTS_MAX_ENTRIES as usize }> =
    HashMap::new();

/// First packets in flight through the host stack ([`felix_common::maps::NAT_ORIGINS`]).
#[btf_map(name = "felix_natorg_v1")]
pub static NAT_ORIGINS: LruHashMap<NatOriginKey, CtKey, { NAT_ORIGINS_MAX_ENTRIES as usize }> =
    LruHashMap::new();

/// First fragments' ports for their datagrams' later fragments
/// ([`felix_common::maps::FRAGMENTS`]).
#[btf_map(name = "felix_frags_v1")]
pub static FRAGMENTS: LruHashMap<FragKey, FragValue, { FRAGMENTS_MAX_ENTRIES as usize }> =
    LruHashMap::new();

/// This host ([`felix_common::maps::CONFIG`]), at index 0.
#[btf_map(name = "felix_cfg_v1")]
pub static CONFIG: Array<HostConfig, 1> = Array::new();

/// Source CIDRs dropped by the uplink's XDP program ([`felix_common::maps::XDP_DENY`]).
#[btf_map(name = "felix_deny_v1")]
pub static XDP_DENY: LpmTrie<[u8; 4], u32, { XDP_DENY_MAX_ENTRIES as usize }> = LpmTrie::new();

/// Failsafe ports the uplink's XDP program never drops ([`felix_common::maps::FAILSAFE`]).
#[btf_map(name = "felix_fsafe_v1")]
pub static FAILSAFE: HashMap<FailsafeKey, u32, { FAILSAFE_MAX_ENTRIES as usize }> = HashMap::new();

/// Policy slot -> current set id ([`felix_common::maps::POLICY_SLOTS`]).
#[btf_map(name = "felix_pslot_v1")]
pub static POLICY_SLOTS: Array<u32, { POLICY_SLOTS_MAX_ENTRIES as usize }> = Array::new();

/// (set, remote address) -> address class ([`felix_common::maps::POLICY_IPS`]).
#[btf_map(name = "felix_pip_v1")]
pub static POLICY_IPS: LpmTrie<PolicyIpKey, u32, { POLICY_IPS_MAX_ENTRIES as usize }> =
    LpmTrie::new();

/// (set, field, protocol, port) -> port class ([`felix_common::maps::POLICY_PORTS`]).
#[btf_map(name = "felix_pport_v1")]
pub static POLICY_PORTS: LpmTrie<PolicyPortKey, u16, { POLICY_PORTS_MAX_ENTRIES as usize }> =
    LpmTrie::new();

/// Classes -> verdict ([`felix_common::maps::POLICY_VERDICTS`]).
#[btf_map(name = "felix_pvd_v1")]
pub static POLICY_VERDICTS: HashMap<
    PolicyVerdictKey,
    PolicyVerdict,
    { POLICY_VERDICTS_MAX_ENTRIES as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Packets per policy rule ([`felix_common::maps::RULE_COUNTERS`]).
#[btf_map(name = "felix_pcnt_v1")]
pub static RULE_COUNTERS: PerCpuArray<u64, { RULE_COUNTERS_MAX_ENTRIES as usize }> =
    PerCpuArray::new();

/// Drop and policy-verdict events ([`felix_common::maps::TRACE_EVENTS`]).
#[btf_map(name = "felix_trace_v1")]
pub static TRACE_EVENTS: RingBuf<TraceEvent, { TRACE_RING_BYTES as usize }> = RingBuf::new();

/// Trace switch and rate ([`felix_common::maps::TRACE_CONTROL`]), at index 0.
#[btf_map(name = "felix_trctl_v1")]
pub static TRACE_CONTROL: Array<TraceControl, 1> = Array::new();

/// Per-CPU token buckets ([`felix_common::maps::TRACE_BUCKETS`]), at index 0.
#[btf_map(name = "felix_trbkt_v1")]
pub static TRACE_BUCKETS: PerCpuArray<TraceBucket, 1> = PerCpuArray::new();
