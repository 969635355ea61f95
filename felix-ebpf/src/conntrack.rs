//! Conntrack: find or create the flow a packet belongs to and keep its TCP state.
//!
//! Ages use the coarse monotonic clock (`bpf_ktime_get_coarse_ns`: CLOCK_MONOTONIC at the last
//! tick, 4 ms here): a fraction of the precise clock's cost, and far finer than the shortest
//! timeout (5 s). An established packet writes its entry only when something in it changes
//! (the age at most once per tick, flags and state when new bits arrive), so a busy flow's
//! entry stays clean in the caches of the CPUs that read it.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use felix_common::{
    CtKey, CtState, CtValue, Direction, Reason,
    conntrack::{ct_flags, expired, proto, resumed_tcp_flags, tcp_recycles, tcp_state},
    ct_clean::is_closing,
};

use crate::{counters::count, ct_share, maps::CONNTRACK, parse::Ipv4Summary};

/// Finds the live flow of `packet` and records the packet in it: the entry's [`ct_flags`], or
/// `None` when there is none (a first packet, which policy must judge before [`create`]). An
/// ICMP error without a flow of its own gets the flags of the flow it quotes ([`related`]).
/// A SYN that reopens a flow that is over ([`tcp_recycles`]) removes its entry and is a first
/// packet too: a client that reuses its ports is judged on every new connection.
#[inline(always)]
pub fn refresh(packet: &Ipv4Summary) -> Option<u8> {
    update(packet, true)
}

/// As [`refresh`] for a packet another program may already have recorded (`cali_to_wl` sees
/// packets `cali_from_wl` and `uplink_in` redirected): keeps the flow's TCP state and age
/// current without counting the packet again. Flags are ORed in, so seeing a packet twice
/// changes nothing.
#[inline(always)]
pub fn touch(packet: &Ipv4Summary) -> Option<u8> {
    update(packet, false)
}

/// For an ICMP error, the [`ct_flags`] of the live flow whose packet it quotes: the error
/// belongs to that flow (as netfilter's RELATED) and travels its way. Nothing is recorded.
#[inline(always)]
fn related(packet: &Ipv4Summary) -> Option<u8> {
    let quoted = packet.error_for?;
    let (key, _) = CtKey::for_packet(
        quoted.saddr,
        quoted.sport,
        quoted.daddr,
        quoted.dport,
        quoted.proto,
    );
    // SAFETY: a copy is taken at once.
    let entry = unsafe { *CONNTRACK.get_ptr(&key)? };
    if expired(&entry, quoted.proto, now_ns()) {
        return None;
    }
    Some(entry.flags)
}

/// The clock of [`felix_common::CtValue`]'s ages.
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn update(packet: &Ipv4Summary, count: bool) -> Option<u8> {
    let now = now_ns();
    let (key, a_to_b) = key_of(packet);
    let Some(entry) = CONNTRACK.get_ptr_mut(&key) else {
        return related(packet);
    };
    // SAFETY: the pointer came from a successful lookup. Concurrent updates from other CPUs
    // can lose a count; the state converges on the next packet.
    let entry = unsafe { &mut *entry };
    if expired(entry, packet.proto, now) {
        return None;
    }
    if tcp_recycles(packet.proto, entry.state, packet.tcp_flags) {
        let _ = CONNTRACK.remove(&key);
        return None;
    }
    if entry.last_seen_ns != now {
        entry.last_seen_ns = now;
    }
    let (flags_a, flags_b) = if a_to_b {
        if count {
            entry.packets_a_to_b += 1;
        }
        (entry.tcp_flags_a | packet.tcp_flags, entry.tcp_flags_b)
    } else {
        if count {
            entry.packets_b_to_a += 1;
        }
        (entry.tcp_flags_a, entry.tcp_flags_b | packet.tcp_flags)
    };
    // Most packets bring no new flag bits (an established flow's ACKs): nothing to write.
    if flags_a != entry.tcp_flags_a || flags_b != entry.tcp_flags_b {
        entry.tcp_flags_a = flags_a;
        entry.tcp_flags_b = flags_b;
        if packet.proto == proto::TCP {
            let state = tcp_state(flags_a, flags_b) as u8;
            // A flow that closes no longer counts against its endpoint's share.
            if is_closing(state) && !is_closing(entry.state) {
                ct_share::release(entry.owner_ifindex);
            }
            entry.state = state;
        }
    }
    Some(entry.flags)
}

/// The flow key of `packet`, and whether it travels from side A to side B.
#[inline(always)]
pub fn key_of(packet: &Ipv4Summary) -> (CtKey, bool) {
    CtKey::for_packet(
        packet.saddr,
        packet.sport,
        packet.daddr,
        packet.dport,
        packet.proto,
    )
}

/// Opens a flow with `packet` as its first packet (after policy allowed it), with the extra
/// [`ct_flags`] in `flags` (how its packets travel), charged to the local endpoint `owner`
/// (its ifindex; 0: none). An endpoint at its share of the table
/// ([`felix_common::ct_clean`]) opens no more flows: the packet is dropped
/// ([`Reason::DropCtEndpointShare`]). When the table is
/// full the packet still goes on (policy allowed it; host traffic keeps working) without an
/// entry, and a `ct_full` counter (interface 0) records it: the flow's later packets are judged
/// by policy again until there is room.
#[inline(always)]
pub fn create(packet: &Ipv4Summary, flags: u8, owner: u32) -> Result<(), Reason> {
    let charge = ct_share::admit(owner)?;
    let now = now_ns();
    let (key, a_to_b) = key_of(packet);
    let (tcp_flags_a, tcp_flags_b) = if a_to_b {
        (packet.tcp_flags, 0)
    } else {
        (0, packet.tcp_flags)
    };
    let state = if packet.proto == proto::TCP {
        tcp_state(tcp_flags_a, tcp_flags_b)
    } else {
        CtState::Active
    };
    let entry = CtValue {
        created_ns: now,
        last_seen_ns: now,
        packets_a_to_b: u64::from(a_to_b),
        packets_b_to_a: u64::from(!a_to_b),
        state: state as u8,
        flags: flags | if a_to_b { ct_flags::A_IS_INITIATOR } else { 0 },
        tcp_flags_a,
        tcp_flags_b,
        owner_ifindex: owner,
    };
    if CONNTRACK.insert(&key, &entry, 0).is_err() {
        count(0, Direction::FromWorkload, Reason::CtFull, 0);
    } else {
        ct_share::charge(owner, charge);
    }
    Ok(())
}

/// Which side of a flow opened it, as seen from one of its packets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The packet's sender.
    Sender,
    /// The packet's receiver: the packet is a reply.
    Receiver,
}

/// After [`create`] for a mid-stream TCP packet (its flow's entry was evicted or flushed):
/// records the flow as it stands, with `initiator` as the side that opened it and the handshake
/// done ([`resumed_tcp_flags`]), so that its later packets find an entry in the right state.
#[inline(always)]
pub fn resume(packet: &Ipv4Summary, initiator: Initiator) {
    let (key, a_to_b) = key_of(packet);
    let Some(entry) = CONNTRACK.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: the pointer came from a successful lookup.
    let entry = unsafe { &mut *entry };
    let (sender, receiver) = resumed_tcp_flags(packet.tcp_flags);
    let (flags_a, flags_b) = if a_to_b {
        (sender, receiver)
    } else {
        (receiver, sender)
    };
    entry.tcp_flags_a = flags_a;
    entry.tcp_flags_b = flags_b;
    entry.state = tcp_state(flags_a, flags_b) as u8;
    let a_initiated = a_to_b == (initiator == Initiator::Sender);
    entry.flags = if a_initiated {
        entry.flags | ct_flags::A_IS_INITIATOR
    } else {
        entry.flags & !ct_flags::A_IS_INITIATOR
    };
}

/// Marks the flow under `key` as judged: clears [`ct_flags::UNCONFIRMED`], sets `flags`.
#[inline(always)]
pub fn confirm(key: &CtKey, flags: u8) {
    if let Some(entry) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: the pointer came from a successful lookup; one byte written whole.
        unsafe { (*entry).flags = ((*entry).flags & !ct_flags::UNCONFIRMED) | flags };
    }
}

/// Removes the flow under `key` if it was never judged (policy denied its first packet after
/// NAT): its replies must not find it.
#[inline(always)]
pub fn forget_unconfirmed(key: &CtKey) {
    // SAFETY: a copy of the flags is read at once.
    let unconfirmed = CONNTRACK
        .get_ptr(key)
        .is_some_and(|entry| unsafe { (*entry).flags } & ct_flags::UNCONFIRMED != 0);
    if unconfirmed {
        let _ = CONNTRACK.remove(key);
    }
}
