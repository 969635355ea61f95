//! TC programs on the `cali*` interfaces: ingress sees what the pod sends, egress what it
//! receives.
//!
//! From the pod: parse, anti-spoof, conntrack; a flow's first packet is judged by the pod's
//! egress policy and, for a local destination, that pod's ingress policy; then forward: a local
//! pod by redirect straight into its namespace (`forward::deliver_local`), a remote block by
//! IPIP to its host or, when its route is native (the pool's `ipipMode`), as it is via the FIB
//! out of the uplink; anything else to the host stack.
//! A first packet to a destination outside the pod network goes to the host stack unjudged, to
//! be judged after the stack's NAT where it leaves (see `host_nat`); a flow that went through
//! the stack keeps going through it, both ways. An ICMP error belongs to the flow of the packet
//! it quotes (as netfilter's RELATED) and travels its way, unjudged. A tagged frame is dropped;
//! a later fragment is judged and forwarded as its first fragment (`frags`); a packet whose TTL
//! runs out is answered with an ICMP time exceeded (`icmp`).
//! To the pod: a packet of no known flow (sent by the host stack) is judged by the pod's ingress
//! policy, after its source pod's egress policy when it was deferred.
//! A mid-stream TCP packet of no known flow (its entry lost) is judged as its flow either way
//! (see `mid_stream`).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::debug;
use felix_common::{
    Direction, Reason, RouteKind,
    conntrack::ct_flags,
    policy::{SLOT_EGRESS, SLOT_INGRESS},
    trace::{EVENT_DROP, NO_RULE},
};

use crate::{
    conntrack,
    conntrack::Initiator,
    counters::count,
    encap::{encapsulate, host_config},
    forward::{decrement_ttl, deliver_local, endpoint, largest_segment, redirect_to_uplink, route},
    frags, host_nat, icmp,
    mid_stream::{self, Check},
    parse::{Ipv4Summary, Parsed, parse, vlan_tagged},
    policy::At,
    trace,
};

/// Packets leaving the pod (TC ingress on its `cali*` veth).
#[classifier]
pub fn cali_from_wl(ctx: TcContext) -> i32 {
    let ifindex = ifindex(&ctx);
    let len = ctx.len();
    let (verdict, reason) = match from_workload(&ctx, ifindex) {
        Ok(done) => done,
        // Too big for the path: tell the pod (DF) or let the host fragment it.
        Err(Reason::DropFragNeeded) => icmp::too_big(&ctx, ifindex),
        // As a router: tell the pod (traceroute's first hop).
        Err(Reason::DropTtlExceeded) => icmp::ttl_exceeded(&ctx, ifindex),
        Err(reason) => (TC_ACT_SHOT as i32, reason),
    };
    finish(&ctx, ifindex, Direction::FromWorkload, reason, len, verdict)
}

/// Packets entering the pod (TC egress on its `cali*` veth).
#[classifier]
pub fn cali_to_wl(ctx: TcContext) -> i32 {
    let ifindex = ifindex(&ctx);
    let len = ctx.len();
    let (verdict, reason) = match to_workload(&ctx, ifindex) {
        Ok(done) => done,
        Err(reason) => (TC_ACT_SHOT as i32, reason),
    };
    finish(&ctx, ifindex, Direction::ToWorkload, reason, len, verdict)
}

#[inline(always)]
fn to_workload(ctx: &TcContext, ifindex: u32) -> Result<(i32, Reason), Reason> {
    let mut packet = match parse(ctx)? {
        Parsed::Arp => return Ok((TC_ACT_OK as i32, Reason::PassArp)),
        Parsed::Ipv4(packet) => packet,
    };
    frags::follow_datagram(&mut packet)?;
    let at = At {
        ifindex,
        direction: Direction::ToWorkload,
    };
    let allowed = Ok((TC_ACT_OK as i32, Reason::Allowed));
    // A local pod's packet that the host stack has NATed (a Service with a backend here).
    if host_nat::pending(ctx) {
        let target = endpoint(ifindex).ok_or(Reason::DropNoEndpoint)?;
        host_nat::judge_after_nat(ctx, &packet, at, Some(&target))?;
        return allowed;
    }
    // A reply, or sent here by felix's own programs after policy (their flow exists): those
    // deliver straight into the pod, past this program, unless the pod's MAC is not known.
    if conntrack::touch(&packet).is_some() {
        return allowed;
    }
    let target = endpoint(ifindex).ok_or(Reason::DropNoEndpoint)?;
    // A mid-stream packet may be the reply of the pod's own flow (the pod's egress judges it).
    let initiator = mid_stream::judge(
        at,
        &packet,
        &[Some(Check::new(&target, SLOT_INGRESS)), None],
        &[Some(Check::new(&target, SLOT_EGRESS)), None],
    )?;
    // Sent by the host stack, which may have NATed it: its replies go back through the stack.
    mid_stream::track(&packet, ct_flags::VIA_HOST, ifindex, initiator)?;
    allowed
}

/// The interface the program runs on.
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` points to the context the kernel passed in.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Counts the packet under `reason` (forcing a drop verdict for drop reasons) and returns the
/// verdict.
#[inline(always)]
pub fn finish(
    ctx: &TcContext,
    ifindex: u32,
    direction: Direction,
    reason: Reason,
    len: u32,
    verdict: i32,
) -> i32 {
    count(ifindex, direction, reason, len);
    // Policy verdicts were traced where they were made.
    if reason.is_drop() && reason != Reason::DropPolicy && trace::enabled() {
        let packet = match parse(ctx) {
            Ok(Parsed::Ipv4(p)) => Some(p),
            _ => None,
        };
        trace::emit(
            EVENT_DROP,
            ifindex,
            direction as u16,
            reason as u16,
            NO_RULE,
            len,
            packet.as_ref(),
        );
    }
    if reason.is_drop() {
        debug!(
            ctx,
            "drop if={} dir={} reason={}", ifindex, direction as u16, reason as u16
        );
        TC_ACT_SHOT as i32
    } else {
        verdict
    }
}

#[inline(always)]
fn from_workload(ctx: &TcContext, ifindex: u32) -> Result<(i32, Reason), Reason> {
    // Pods send untagged frames; the kernel may have moved a tag out of this one.
    if vlan_tagged(ctx) {
        return Err(Reason::DropVlanTagged);
    }
    let mut packet = match parse(ctx)? {
        Parsed::Arp => return Ok((TC_ACT_OK as i32, Reason::PassArp)),
        Parsed::Ipv4(packet) => packet,
    };
    let source = endpoint(ifindex).ok_or(Reason::DropNoEndpoint)?;
    if packet.saddr != source.ip {
        return Err(Reason::DropSpoofed);
    }
    frags::follow_datagram(&mut packet)?;
    // Whether the flow's packets pass the host stack by (both ways, or the host's conntrack
    // would call the half it sees invalid and kube-proxy's FORWARD rules drop it).
    let flow = conntrack::refresh(&packet);
    // The stack may have NATed the flow: only it can undo that (and it routes the packet, so
    // no route is looked up here).
    if let Some(flags) = flow
        && flags & (ct_flags::UNCONFIRMED | ct_flags::VIA_HOST) == ct_flags::VIA_HOST
    {
        return Ok(host_nat::pass_via_host(ctx));
    }
    let route = route(packet.daddr);
    let past_stack = match flow {
        Some(flags) if flags & ct_flags::UNCONFIRMED == 0 => true,
        flow => {
            let at = At {
                ifindex,
                direction: Direction::FromWorkload,
            };
            if route.is_none()
                && let Some(config) = host_config()
                && host_nat::judged_after_nat(ctx, &packet, ifindex, &config)
            {
                // The pod's reply to a flow opened from outside, whose entry was lost: judged
                // by the pod's ingress policy now, through the stack as such flows go.
                let reply_to = [Some(Check::new(&source, SLOT_INGRESS)), None];
                if flow.is_none() && mid_stream::allowed_as_reply(at, &packet, &reply_to) {
                    mid_stream::track(&packet, ct_flags::VIA_HOST, ifindex, Initiator::Receiver)?;
                    return Ok((TC_ACT_OK as i32, Reason::Allowed));
                }
                return host_nat::defer(ctx, &packet, ifindex, flow);
            }
            let target = match route {
                Some((RouteKind::LocalWorkload, target)) => {
                    Some(endpoint(target.ifindex).ok_or(Reason::DropNoRoute)?)
                }
                _ => None,
            };
            let initiator = mid_stream::judge(
                at,
                &packet,
                &[
                    Some(Check::new(&source, SLOT_EGRESS)),
                    target.as_ref().map(|t| Check::new(t, SLOT_INGRESS)),
                ],
                &[
                    target.as_ref().map(|t| Check::new(t, SLOT_EGRESS)),
                    Some(Check::new(&source, SLOT_INGRESS)),
                ],
            )?;
            let redirected = matches!(
                route,
                Some((RouteKind::LocalWorkload | RouteKind::RemoteBlock, _))
            );
            let flags = if redirected { 0 } else { ct_flags::VIA_HOST };
            mid_stream::track(&packet, flags, ifindex, initiator)?;
            false
        }
    };
    match route {
        Some((RouteKind::LocalWorkload, target)) => {
            deliver_local(ctx, &packet, target.ifindex).map(|v| (v, Reason::ForwardedLocal))
        }
        Some((RouteKind::RemoteBlock, target)) if target.is_native() => {
            to_remote_native(ctx, &packet)
        }
        Some((RouteKind::RemoteBlock, target)) => to_remote_host(ctx, &packet, target.next_hop),
        Some((RouteKind::LocalBlock, _)) => Err(Reason::DropNoRoute),
        // The reply of a flow that came in past the stack (from another host, or the fabric
        // straight to this pod): out the same way.
        Some((RouteKind::RemoteHost, _)) | None if past_stack => to_remote_native(ctx, &packet),
        _ => Ok((TC_ACT_OK as i32, Reason::Allowed)),
    }
}

/// IPIP to the host that owns the destination's block, straight out of the uplink.
#[inline(always)]
fn to_remote_host(
    ctx: &TcContext,
    packet: &Ipv4Summary,
    next_hop: [u8; 4],
) -> Result<(i32, Reason), Reason> {
    let config = host_config().ok_or(Reason::DropNoRoute)?;
    decrement_ttl(ctx, packet)?;
    let wire_len = encapsulate(ctx, packet, &config, next_hop)?;
    let verdict = redirect_to_uplink(ctx, &config, config.host_ip, next_hop, wire_len)?;
    Ok((verdict, Reason::Encapsulated))
}

/// Native routing: the packet as it is, out of the uplink to the next hop the kernel's FIB gives
/// for its destination (for a remote block, felix's route via the owning host).
#[inline(always)]
fn to_remote_native(ctx: &TcContext, packet: &Ipv4Summary) -> Result<(i32, Reason), Reason> {
    let config = host_config().ok_or(Reason::DropNoRoute)?;
    decrement_ttl(ctx, packet)?;
    let len = largest_segment(ctx, packet);
    let verdict = redirect_to_uplink(ctx, &config, packet.saddr, packet.daddr, len)?;
    Ok((verdict, Reason::ForwardedNative))
}
