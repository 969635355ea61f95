//! TC programs on the `cali*` interfaces: ingress sees what the pod sends, egress what it
//! receives. Today they parse, count and drop malformed packets; routing, conntrack and policy
//! build on the same entry points.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::debug;
use felix_common::{Direction, Reason};

use crate::{
    counters::count,
    parse::{Parsed, parse},
};

/// Packets leaving the pod (TC ingress on its `cali*` veth).
#[classifier]
pub fn cali_from_wl(ctx: TcContext) -> i32 {
    handle(&ctx, Direction::FromWorkload)
}

/// Packets entering the pod (TC egress on its `cali*` veth).
#[classifier]
pub fn cali_to_wl(ctx: TcContext) -> i32 {
    handle(&ctx, Direction::ToWorkload)
}

/// Classifies one packet, counts it under its reason and returns the verdict.
#[inline(always)]
fn handle(ctx: &TcContext, direction: Direction) -> i32 {
    let reason = match parse(ctx) {
        Ok(Parsed::Arp) => Reason::PassArp,
        Ok(Parsed::Ipv4(_)) => Reason::Allowed,
        Err(reason) => reason,
    };
    // SAFETY: `skb` points to the context the kernel passed in.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    count(ifindex, direction, reason, ctx.len());
    if reason.is_drop() {
        debug!(
            ctx,
            "drop if={} dir={} reason={}", ifindex, direction as u16, reason as u16
        );
        TC_ACT_SHOT as i32
    } else {
        TC_ACT_OK as i32
    }
}
