//! TC programs on the host's uplink: decapsulate IPIP from known hosts into local pods, and
//! deliver plain IP from the fabric (native routing, the ToR) addressed to a local pod, judging
//! a flow's first packet by the pod's ingress policy (ingress); encapsulate host-originated
//! traffic to remote pods whose route is not native (egress). Everything else goes to the host
//! stack. A flow that went through the host stack (which may have NATed it) is decapsulated into
//! the stack, not redirected past it; a pod's packet the stack has NATed is judged by the pod's
//! egress policy on its way out (egress). A later fragment is judged and forwarded as its first
//! fragment (`frags`); tagged frames belong to the VLAN's interface, and go to the stack.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use felix_common::{
    Direction, EndpointInfo, Reason, RouteKind,
    conntrack::{ct_flags, proto},
    policy::{SLOT_EGRESS, SLOT_INGRESS},
};

use crate::{
    cali_tc::{finish, ifindex},
    conntrack::{self, Initiator},
    encap::{OUTER_LEN, decapsulate, encapsulate, host_config},
    forward::{deliver_local, endpoint, route},
    frags, host_nat,
    mid_stream::{self, Check},
    parse::{IP_OFFSET, Ipv4Summary, Parsed, parse, parse_ipv4, vlan_tagged},
    policy,
};

/// Packets arriving from the fabric (TC ingress on the uplink).
#[classifier]
pub fn uplink_in(ctx: TcContext) -> i32 {
    let ifindex = ifindex(&ctx);
    let len = ctx.len();
    let (verdict, reason) = match from_fabric(&ctx) {
        Ok(done) => done,
        // Its TTL ran out on the way into a pod (the packet is plain IP by then): the stack's
        // forwarding answers it with an ICMP time exceeded, as a router on the path does.
        Err(Reason::DropTtlExceeded) => (TC_ACT_OK as i32, Reason::PassTtlExceeded),
        Err(reason) => (TC_ACT_SHOT as i32, reason),
    };
    finish(&ctx, ifindex, Direction::FromUplink, reason, len, verdict)
}

/// Packets leaving for the fabric (TC egress on the uplink).
#[classifier]
pub fn uplink_out(ctx: TcContext) -> i32 {
    let ifindex = ifindex(&ctx);
    let len = ctx.len();
    let (verdict, reason) = match to_fabric(&ctx) {
        Ok(Some(done)) => done,
        // Wrapped by `cali_from_wl`, which counted it as `encapsulated`: count it once.
        Ok(None) => return TC_ACT_OK as i32,
        Err(reason) => (TC_ACT_SHOT as i32, reason),
    };
    finish(&ctx, ifindex, Direction::ToUplink, reason, len, verdict)
}

fn from_fabric(ctx: &TcContext) -> Result<(i32, Reason), Reason> {
    let pass = (TC_ACT_OK as i32, Reason::PassHost);
    // A VLAN's traffic belongs to the VLAN's interface on top of the uplink, not to us.
    if vlan_tagged(ctx) {
        return Ok(pass);
    }
    let outer = match parse(ctx) {
        Ok(Parsed::Ipv4(outer)) if outer.proto == proto::IPIP => outer,
        Ok(Parsed::Ipv4(plain)) => {
            return plain_to_pod(ctx, plain).map(|done| done.unwrap_or(pass));
        }
        // Not ours: the host stack handles (and judges) everything else on its uplink.
        Ok(_) | Err(Reason::DropUnsupportedL3 | Reason::DropVlanTagged) => return Ok(pass),
        Err(reason) => return Err(reason),
    };
    match route(outer.saddr) {
        Some((RouteKind::RemoteHost, _)) => {}
        _ => return Err(Reason::DropUnknownTunnelSource),
    }
    if outer.header_len != OUTER_LEN {
        return Err(Reason::DropDecapFailed);
    }
    let mut inner = parse_ipv4(ctx, IP_OFFSET + OUTER_LEN)?;
    frags::follow_datagram(&mut inner)?;
    let target = match route(inner.daddr) {
        Some((RouteKind::LocalWorkload, target)) => target,
        _ => return Err(Reason::DropNoRoute),
    };
    let flags = match conntrack::refresh(&inner) {
        Some(flags) => flags,
        None => {
            let pod = endpoint(target.ifindex).ok_or(Reason::DropNoRoute)?;
            let at = policy::At {
                ifindex: crate::cali_tc::ifindex(ctx),
                direction: Direction::FromUplink,
            };
            let initiator = judge_to_pod(at, &pod, &inner)?;
            mid_stream::track(&inner, 0, target.ifindex, initiator)?;
            0
        }
    };
    decapsulate(ctx)?;
    // A reply the stack must un-NAT (our pod reached a Service whose backend is there).
    if flags & ct_flags::VIA_HOST != 0 {
        return Ok((TC_ACT_OK as i32, Reason::ViaHostStack));
    }
    let inner = parse_ipv4(ctx, IP_OFFSET)?;
    deliver_local(ctx, &inner, target.ifindex).map(|v| (v, Reason::Decapsulated))
}

/// Judges a packet from the fabric to `pod` that has no flow: by the pod's ingress policy, or
/// (a mid-stream reply of the pod's own flow) its egress policy.
#[inline(always)]
fn judge_to_pod(
    at: policy::At,
    pod: &EndpointInfo,
    packet: &Ipv4Summary,
) -> Result<Initiator, Reason> {
    mid_stream::judge(
        at,
        packet,
        &[Some(Check::new(pod, SLOT_INGRESS)), None],
        &[Some(Check::new(pod, SLOT_EGRESS)), None],
    )
}

/// Plain IP from the fabric (native routing, the ToR) addressed to a local pod: judged by the
/// pod's ingress policy and delivered by redirect, so that neither direction of the flow passes
/// the host stack (the pod's replies leave the same way), unless the flow already goes through
/// the stack (a reply the stack must un-NAT). `None` for packets the stack handles.
#[inline(always)]
fn plain_to_pod(ctx: &TcContext, mut packet: Ipv4Summary) -> Result<Option<(i32, Reason)>, Reason> {
    let Some((RouteKind::LocalWorkload, target)) = route(packet.daddr) else {
        return Ok(None);
    };
    frags::follow_datagram(&mut packet)?;
    let packet = &packet;
    match conntrack::refresh(packet) {
        Some(flags) if flags & ct_flags::VIA_HOST != 0 => {
            return Ok(Some((TC_ACT_OK as i32, Reason::ViaHostStack)));
        }
        Some(_) => {}
        None => {
            let pod = endpoint(target.ifindex).ok_or(Reason::DropNoRoute)?;
            let at = policy::At {
                ifindex: crate::cali_tc::ifindex(ctx),
                direction: Direction::FromUplink,
            };
            let initiator = judge_to_pod(at, &pod, packet)?;
            mid_stream::track(packet, 0, target.ifindex, initiator)?;
        }
    }
    deliver_local(ctx, packet, target.ifindex).map(|v| Some((v, Reason::ForwardedLocal)))
}

/// `None` for a packet that is already IPIP (counted where it was wrapped).
fn to_fabric(ctx: &TcContext) -> Result<Option<(i32, Reason)>, Reason> {
    let pass = Some((TC_ACT_OK as i32, Reason::PassHost));
    let mut packet = match parse(ctx) {
        Ok(Parsed::Ipv4(packet)) if packet.proto == proto::IPIP => return Ok(None),
        Ok(Parsed::Ipv4(packet)) => packet,
        // ARP, IPv6, or malformed: the host stack sent it, let it go.
        _ => return Ok(pass),
    };
    // The stack's own fragments need no ports unless they are judged.
    let followed = frags::follow_datagram(&mut packet);
    // A pod's packet the stack may have NATed: its egress policy judges it as it leaves, and
    // its flow's later packets are recorded as they are after NAT.
    if host_nat::pending(ctx) {
        followed?;
        let at = policy::At {
            ifindex: crate::cali_tc::ifindex(ctx),
            direction: Direction::ToUplink,
        };
        host_nat::judge_after_nat(ctx, &packet, at, None)?;
    } else {
        host_nat::record_after_nat(ctx, &packet);
    }
    let next_hop = match route(packet.daddr) {
        Some((RouteKind::RemoteBlock, target)) if !target.is_native() => target.next_hop,
        // Native (the pool's ipipMode) or not a pod: the kernel's route already says it all.
        _ => return Ok(pass),
    };
    let config = host_config().ok_or(Reason::DropNoRoute)?;
    // The kernel routed it via the owning host, so the Ethernet header already points there.
    encapsulate(ctx, &packet, &config, next_hop)?;
    Ok(Some((TC_ACT_OK as i32, Reason::Encapsulated)))
}
