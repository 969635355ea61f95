//! The maps felix's programs share with user space. Names and value layouts come from
//! `felix-common`; BTF definitions let `bpftool map dump` print every field.

use aya_ebpf::{
    btf_maps::{HashMap, PerCpuHashMap},
    macros::btf_map,
};
use felix_common::{
    CounterKey, CounterValue, IfaceInfo,
    maps::{COUNTERS_MAX_ENTRIES, IFACES_MAX_ENTRIES},
};

/// Per-CPU packet and byte counters ([`felix_common::maps::COUNTERS`]).
#[btf_map(name = "felix_cnt_v1")]
pub static COUNTERS: PerCpuHashMap<CounterKey, CounterValue, { COUNTERS_MAX_ENTRIES as usize }> =
    PerCpuHashMap::new();

/// Interfaces felix manages ([`felix_common::maps::IFACES`]); written by user space, read by
/// the CLI and, later, by the programs.
#[btf_map(name = "felix_ifaces_v1")]
pub static IFACES: HashMap<u32, IfaceInfo, { IFACES_MAX_ENTRIES as usize }> = HashMap::new();
