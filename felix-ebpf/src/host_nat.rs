//! Flows the host stack may NAT: kube-proxy's Services (DNAT to a backend, sometimes with
//! masquerade) and the pool's natOutgoing (masquerade). See `felix_common::nat`.
//!
//! The stack's own conntrack undoes its NAT only on packets it sees, so such a flow goes through
//! the stack both ways ([`ct_flags::VIA_HOST`]) instead of being redirected past it. Policy sees
//! what Calico's iptables mode sees in FORWARD: a pod's first packet to a destination outside
//! the pod network is passed on unjudged ([`defer`]) and judged where it leaves the stack, after
//! NAT ([`judge_after_nat`]): the backend's address and target port, not the Service's.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK},
    programs::TcContext,
};
use felix_common::{
    EndpointInfo, HostConfig, Reason,
    conntrack::ct_flags,
    nat::{NatOriginKey, marks},
    policy::{SLOT_EGRESS, SLOT_INGRESS},
};

use crate::{
    conntrack::{self, Initiator},
    forward::{endpoint, fib_lookup},
    maps::NAT_ORIGINS,
    mid_stream::{self, Check},
    parse::Ipv4Summary,
    policy,
};

/// The skb's mark.
#[inline(always)]
fn mark(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` points to the context the kernel passed in.
    unsafe { (*ctx.skb.skb).mark }
}

/// The interface the packet entered this host by (0 when the host sent it).
#[inline(always)]
fn ingress_ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: as in `mark`.
    unsafe { (*ctx.skb.skb).ingress_ifindex }
}

/// Whether a pod's packet that no felix route covers is judged after NAT: when the kernel would
/// send it out of the uplink, or has no forwarding route for it (a Service address, routed only
/// after kube-proxy's DNAT). A packet for another interface of the host is judged at once, by
/// its destination as sent, as there is no program where it leaves.
#[inline(always)]
pub fn judged_after_nat(
    ctx: &TcContext,
    packet: &Ipv4Summary,
    from: u32,
    config: &HostConfig,
) -> bool {
    let (rc, params) = fib_lookup(ctx, from, packet.saddr, packet.daddr, 0, 0);
    let routed =
        rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) || rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH);
    !routed || params.ifindex == config.uplink_ifindex
}

/// `cali_from_wl`, for a pod's packet whose egress policy is judged after NAT: opens its flow as
/// sent (unless `flow` says it is open), remembers it for [`judge_after_nat`], marks the packet
/// and passes it to the host stack.
#[inline(always)]
pub fn defer(
    ctx: &TcContext,
    packet: &Ipv4Summary,
    from: u32,
    flow: Option<u8>,
) -> Result<(i32, Reason), Reason> {
    if flow.is_none() {
        mid_stream::track(
            packet,
            ct_flags::VIA_HOST | ct_flags::UNCONFIRMED,
            from,
            Initiator::Sender,
        )?;
    }
    let (key, _) = conntrack::key_of(packet);
    // A full map evicts its oldest entry: a first packet queued that long is judged without
    // its origin, and its flow as sent stays unconfirmed.
    let _ = NAT_ORIGINS.insert(&origin_key(from, packet), &key, 0);
    ctx.set_mark(mark(ctx) | marks::NAT_PENDING);
    Ok((TC_ACT_OK as i32, Reason::NatPending))
}

#[inline(always)]
fn origin_key(from: u32, packet: &Ipv4Summary) -> NatOriginKey {
    NatOriginKey {
        ifindex: from,
        ip_id: packet.ip_id,
        proto: packet.proto,
        _pad: 0,
    }
}

/// `cali_from_wl`, for a pod's later packet of a flow through the stack: marks it so that
/// [`record_after_nat`] keeps the flow after NAT current, and passes it to the stack.
#[inline(always)]
pub fn pass_via_host(ctx: &TcContext) -> (i32, Reason) {
    ctx.set_mark(mark(ctx) | marks::VIA_HOST_FLOW);
    (TC_ACT_OK as i32, Reason::ViaHostStack)
}

/// `uplink_out`: records a packet [`pass_via_host`] marked in its flow as it is now, after NAT
/// (the TCP state and age of the entry that sends the backend's replies into the stack).
#[inline(always)]
pub fn record_after_nat(ctx: &TcContext, packet: &Ipv4Summary) {
    let mark = mark(ctx);
    if mark & marks::VIA_HOST_FLOW != 0 {
        ctx.set_mark(mark & !marks::VIA_HOST_FLOW);
        let _ = conntrack::touch(packet);
    }
}

/// Whether `cali_from_wl` passed this packet on for [`judge_after_nat`] (one read of the mark,
/// so the programs where packets leave the stack pay nothing more for the others).
#[inline(always)]
pub fn pending(ctx: &TcContext) -> bool {
    mark(ctx) & marks::NAT_PENDING != 0
}

/// Where a packet leaves the host stack (the uplink's TC egress, a local pod's `cali*` egress),
/// for a [`pending`] packet: judges it by its source pod's egress policy (and by `target`'s
/// ingress policy when it enters a local pod) as it is now, after NAT; opens the flow as it is
/// now ([`ct_flags::VIA_HOST`]) and confirms the flow as sent, or forgets that one on a deny.
#[inline(always)]
pub fn judge_after_nat(
    ctx: &TcContext,
    packet: &Ipv4Summary,
    at: policy::At,
    target: Option<&EndpointInfo>,
) -> Result<(), Reason> {
    // Judged once, should the stack send it on again.
    ctx.set_mark(mark(ctx) & !marks::NAT_PENDING);
    let from = ingress_ifindex(ctx);
    let origin_key = origin_key(from, packet);
    let origin = NAT_ORIGINS.get_ptr(&origin_key).map(|key| {
        // SAFETY: a copy is taken at once.
        unsafe { *key }
    });
    let _ = NAT_ORIGINS.remove(&origin_key);
    match conntrack::touch(packet) {
        // Already judged after NAT (its flow as sent had expired and was opened again).
        Some(flags) if flags & ct_flags::UNCONFIRMED == 0 => {}
        flow => {
            let source = endpoint(from).ok_or(Reason::DropNoEndpoint)?;
            // A mid-stream packet may also be the reply of a flow opened towards the pod.
            let verdict = mid_stream::judge(
                at,
                packet,
                &[
                    Some(Check::new(&source, SLOT_EGRESS)),
                    target.map(|t| Check::new(t, SLOT_INGRESS)),
                ],
                &[
                    target.map(|t| Check::new(t, SLOT_EGRESS)),
                    Some(Check::new(&source, SLOT_INGRESS)),
                ],
            );
            let initiator = match verdict {
                Ok(initiator) => initiator,
                Err(reason) => {
                    if let Some(key) = origin {
                        conntrack::forget_unconfirmed(&key);
                    }
                    return Err(reason);
                }
            };
            if flow.is_some() {
                // Not NATed: the flow as sent is this one.
                let (key, _) = conntrack::key_of(packet);
                conntrack::confirm(&key, ct_flags::VIA_HOST);
                if mid_stream::is_mid_stream(packet) {
                    conntrack::resume(packet, initiator);
                }
            } else {
                mid_stream::track(packet, ct_flags::VIA_HOST, from, initiator)?;
            }
        }
    }
    if let Some(key) = origin {
        conntrack::confirm(&key, 0);
    }
    Ok(())
}
