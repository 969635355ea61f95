//! Policy: classify a flow's first packet against an endpoint's compiled policy set in a fixed
//! number of map lookups (see `felix_common::policy`), and count the deciding rule.

use aya_ebpf::maps::lpm_trie::Key;
use felix_common::{
    Direction, EndpointInfo, Reason,
    policy::{
        CLASS_ANY, NO_SLOT, PORT_FIELD_DST, PORT_FIELD_SRC, PolicyIpKey, PolicyPortKey,
        PolicyVerdict, PolicyVerdictKey,
    },
    trace::{EVENT_POLICY_ALLOW, EVENT_POLICY_DENY},
};

use crate::{
    maps::{POLICY_IPS, POLICY_PORTS, POLICY_SLOTS, POLICY_VERDICTS, RULE_COUNTERS},
    parse::Ipv4Summary,
    trace,
};

/// Full-length prefix of a [`PolicyIpKey`].
const IP_KEY_BITS: u32 = 64;
/// Full-length prefix of a [`PolicyPortKey`] (the spare byte excluded).
const PORT_KEY_BITS: u32 = 64;

/// Where a program judges a packet: the interface it runs on and the direction (for trace
/// events).
#[derive(Clone, Copy)]
pub struct At {
    pub ifindex: u32,
    pub direction: Direction,
}

/// Judges `packet` by `endpoint`'s policy in direction `slot_index` (ingress or egress);
/// `remote` is the peer's address. `Ok` when allowed. The verdict is traced (when tracing).
#[inline(always)]
pub fn check(
    at: At,
    endpoint: &EndpointInfo,
    slot_index: usize,
    remote: [u8; 4],
    packet: &Ipv4Summary,
) -> Result<(), Reason> {
    let slot = if slot_index == 0 {
        endpoint.policy_slots[0]
    } else {
        endpoint.policy_slots[1]
    };
    let verdict = lookup(slot, remote, packet).ok_or(Reason::DropNoPolicy)?;
    count_rule(verdict.rule);
    let (kind, reason) = if verdict.allow != 0 {
        (EVENT_POLICY_ALLOW, Reason::Allowed)
    } else {
        (EVENT_POLICY_DENY, Reason::DropPolicy)
    };
    trace::emit(
        kind,
        at.ifindex,
        at.direction as u16,
        reason as u16,
        verdict.rule,
        packet.total_len as u32,
        Some(packet),
    );
    if verdict.allow != 0 {
        Ok(())
    } else {
        Err(reason)
    }
}

/// Whether `endpoint`'s policy in direction `slot_index` allows `packet`, as [`check`] would
/// judge it, but without counting or tracing anything (the verdict may not be the one that
/// decides).
#[inline(always)]
pub fn allows(
    endpoint: &EndpointInfo,
    slot_index: usize,
    remote: [u8; 4],
    packet: &Ipv4Summary,
) -> bool {
    let slot = if slot_index == 0 {
        endpoint.policy_slots[0]
    } else {
        endpoint.policy_slots[1]
    };
    let Some(verdict) = lookup(slot, remote, packet) else {
        return false;
    };
    verdict.allow != 0
}

#[inline(always)]
fn lookup(slot: u32, remote: [u8; 4], packet: &Ipv4Summary) -> Option<PolicyVerdict> {
    if slot == NO_SLOT {
        return None;
    }
    let set = *POLICY_SLOTS.get(slot)?;
    if set == NO_SLOT {
        return None;
    }
    let ip_class = *POLICY_IPS.get(&Key::new(IP_KEY_BITS, PolicyIpKey::new(set, remote)))?;
    let dst_class = port_class(set, PORT_FIELD_DST, packet.proto, packet.policy_dst_port())?;
    let src_class = port_class(set, PORT_FIELD_SRC, packet.proto, packet.policy_src_port())?;
    let exact = PolicyVerdictKey {
        set,
        ip_class,
        dst_class,
        src_class,
    };
    // SAFETY: the value is copied at once.
    if let Some(v) = unsafe { POLICY_VERDICTS.get(&exact) } {
        return Some(*v);
    }
    let row = PolicyVerdictKey {
        set,
        ip_class,
        dst_class: CLASS_ANY,
        src_class: CLASS_ANY,
    };
    // SAFETY: as above.
    unsafe { POLICY_VERDICTS.get(&row).copied() }
}

#[inline(always)]
fn port_class(set: u32, field: u8, proto: u8, port: u16) -> Option<u16> {
    let key = Key::new(PORT_KEY_BITS, PolicyPortKey::new(set, field, proto, port));
    POLICY_PORTS.get(&key).copied()
}

#[inline(always)]
fn count_rule(rule: u32) {
    if let Some(counter) = RULE_COUNTERS.get_ptr_mut(rule) {
        // SAFETY: a per-CPU slot: only this CPU writes it.
        unsafe { *counter += 1 };
    }
}
