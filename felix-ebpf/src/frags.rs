//! IPv4 fragments (see `felix_common::frags`): a first fragment's ports are recorded under its
//! datagram's (source, destination, protocol, IP ID); a later fragment takes them, so that
//! policy and conntrack see it as the datagram it belongs to and it travels the first
//! fragment's way, judged and forwarded as that was. Every program that judges or tracks
//! records and reads the same map, so one record serves every hop on this host (a pod's
//! `cali*` ingress, then the peer's `cali*` egress); a record is never removed by a fragment
//! (the next program still needs it), but expires with the kernel's reassembly timeout, is
//! replaced by the next datagram with the same key, or goes first when the map is full.
//!
//! A later fragment without a record (it overtook its first fragment, or the first was never
//! sent) is dropped as `drop_frag_orphan`, as Calico's BPF dataplane drops it
//! (`CALI_REASON_FRAG_REORDER`): it carries nothing to judge it by. Linux sends a datagram's
//! fragments in order.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use felix_common::{
    Reason,
    frags::{FragKey, FragValue},
};

use crate::{
    maps::FRAGMENTS,
    parse::{Fragment, Ipv4Summary},
};

/// Records a first fragment's ports, or gives a later fragment its first fragment's; a whole
/// datagram is left alone. `Err(DropFragOrphan)` for a later fragment without a record.
#[inline(always)]
pub fn follow_datagram(packet: &mut Ipv4Summary) -> Result<(), Reason> {
    match packet.fragment {
        Fragment::Whole => Ok(()),
        Fragment::First => {
            record(packet);
            Ok(())
        }
        Fragment::Later => adopt(packet),
    }
}

#[inline(always)]
fn key_of(packet: &Ipv4Summary) -> FragKey {
    FragKey {
        saddr: packet.saddr,
        daddr: packet.daddr,
        ip_id: packet.ip_id,
        proto: packet.proto,
        _pad: 0,
    }
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn record(packet: &Ipv4Summary) {
    let value = FragValue {
        seen_ns: now_ns(),
        sport: packet.sport,
        dport: packet.dport,
        icmp_type_code: packet.icmp_type_code,
        _pad: 0,
    };
    // A full map evicts its least recently used record: that datagram's later fragments are
    // orphans.
    let _ = FRAGMENTS.insert(&key_of(packet), &value, 0);
}

#[inline(always)]
fn adopt(packet: &mut Ipv4Summary) -> Result<(), Reason> {
    // SAFETY: a copy is taken at once.
    let value = unsafe { FRAGMENTS.get(&key_of(packet)).copied() };
    match value {
        Some(value) if value.is_live(now_ns()) => {
            packet.sport = value.sport;
            packet.dport = value.dport;
            packet.icmp_type_code = value.icmp_type_code;
            Ok(())
        }
        _ => Err(Reason::DropFragOrphan),
    }
}
