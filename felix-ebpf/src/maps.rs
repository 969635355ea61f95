//! The maps felix's programs share with user space. Names and value layouts come from
//! `felix-common`; BTF definitions let `bpftool map dump` print every field. User space pins them
//! under `/sys/fs/bpf/felix/<node>/` by name.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuHashMap},
    macros::btf_map,
};
use felix_common::{
    CounterKey, CounterValue, CtKey, CtValue, EndpointInfo, HostConfig, IfaceInfo, RouteValue,
    maps::{
        CONNTRACK_MAX_ENTRIES, COUNTERS_MAX_ENTRIES, ENDPOINTS_MAX_ENTRIES, IFACES_MAX_ENTRIES,
        ROUTES_MAX_ENTRIES, XDP_DENY_MAX_ENTRIES,
    },
};

/// Per-CPU packet and byte counters ([`felix_common::maps::COUNTERS`]).
#[btf_map(name = "felix_cnt_v1")]
pub static COUNTERS: PerCpuHashMap<CounterKey, CounterValue, { COUNTERS_MAX_ENTRIES as usize }> =
    PerCpuHashMap::new();

/// Interfaces felix manages ([`felix_common::maps::IFACES`]); written by user space, read by
/// the CLI.
#[btf_map(name = "felix_ifaces_v1")]
pub static IFACES: HashMap<u32, IfaceInfo, { IFACES_MAX_ENTRIES as usize }> = HashMap::new();

/// Local workload interfaces ([`felix_common::maps::ENDPOINTS`]).
#[btf_map(name = "felix_ep_v1")]
pub static ENDPOINTS: HashMap<u32, EndpointInfo, { ENDPOINTS_MAX_ENTRIES as usize }> =
    HashMap::new();

/// Routes ([`felix_common::maps::ROUTES`]), keyed by address bytes in network order.
#[btf_map(name = "felix_routes_v1")]
pub static ROUTES: LpmTrie<[u8; 4], RouteValue, { ROUTES_MAX_ENTRIES as usize }> = LpmTrie::new();

/// Conntrack ([`felix_common::maps::CONNTRACK`]).
#[btf_map(name = "felix_ct_v1")]
pub static CONNTRACK: LruHashMap<CtKey, CtValue, { CONNTRACK_MAX_ENTRIES as usize }> =
    LruHashMap::new();

/// This host ([`felix_common::maps::CONFIG`]), at index 0.
#[btf_map(name = "felix_cfg_v1")]
pub static CONFIG: Array<HostConfig, 1> = Array::new();

/// Source CIDRs dropped by the uplink's XDP program ([`felix_common::maps::XDP_DENY`]).
#[btf_map(name = "felix_deny_v1")]
pub static XDP_DENY: LpmTrie<[u8; 4], u32, { XDP_DENY_MAX_ENTRIES as usize }> = LpmTrie::new();
