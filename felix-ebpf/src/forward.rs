//! Forwarding decisions: route lookup, TTL, MAC rewrite, redirect to a local pod, and the FIB
//! lookup and redirect out of the uplink that both IPIP and native forwarding end with.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_OUTPUT, TC_ACT_REDIRECT, bpf_fib_lookup,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use felix_common::{
    EndpointInfo, HostConfig, Reason, RouteKind, RouteValue, endpoints::endpoint_flags,
};

use crate::{
    maps::{ENDPOINTS, ROUTES},
    parse::Ipv4Summary,
};

/// Offset of the TTL in the IPv4 header; the protocol follows it in the same 16-bit word.
const TTL_OFFSET: usize = 8;
/// Offset of the header checksum in the IPv4 header.
const CHECKSUM_OFFSET: usize = 10;
/// The MAC Calico gives every `cali*` interface; pods see it as their gateway's.
pub const CALI_MAC: [u8; 6] = [0xee; 6];
const AF_INET: u8 = 2;

/// The most specific route for `addr`.
#[inline(always)]
pub fn route(addr: [u8; 4]) -> Option<(RouteKind, RouteValue)> {
    let value = *ROUTES.get(&Key::new(32, addr))?;
    let kind = RouteKind::from_u32(value.kind)?;
    Some((kind, value))
}

/// The endpoint behind a workload interface.
#[inline(always)]
pub fn endpoint(ifindex: u32) -> Option<EndpointInfo> {
    // SAFETY: a copy is taken at once; user space replaces entries whole.
    unsafe { ENDPOINTS.get(&ifindex).copied() }
}

/// Decrements the TTL of the IPv4 header of `packet`, fixing its checksum. A packet whose TTL
/// would reach zero is refused.
#[inline(always)]
pub fn decrement_ttl(ctx: &TcContext, packet: &Ipv4Summary) -> Result<(), Reason> {
    if packet.ttl <= 1 {
        return Err(Reason::DropTtlExceeded);
    }
    let old = u16::from_ne_bytes([packet.ttl, packet.proto]);
    let new = u16::from_ne_bytes([packet.ttl - 1, packet.proto]);
    ctx.l3_csum_replace(
        packet.offset + CHECKSUM_OFFSET,
        u64::from(old),
        u64::from(new),
        2,
    )
    .map_err(|_| Reason::DropBadHeader)?;
    ctx.store(packet.offset + TTL_OFFSET, &(packet.ttl - 1), 0)
        .map_err(|_| Reason::DropBadHeader)
}

/// Writes destination and source MACs.
#[inline(always)]
pub fn set_macs(ctx: &TcContext, dst: [u8; 6], src: [u8; 6]) -> Result<(), Reason> {
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&dst);
    macs[6..].copy_from_slice(&src);
    ctx.store(0, &macs, 0).map_err(|_| Reason::DropBadHeader)
}

/// Delivers the (IPv4, Ethernet-framed) packet to the local pod behind `ifindex`: TTL down,
/// MACs as the pod expects them, then a redirect to the egress of its `cali*` interface (where
/// `cali_to_wl` sees it).
#[inline(always)]
pub fn deliver_local(ctx: &TcContext, packet: &Ipv4Summary, ifindex: u32) -> Result<i32, Reason> {
    let target = endpoint(ifindex).ok_or(Reason::DropNoRoute)?;
    decrement_ttl(ctx, packet)?;
    if target.flags & endpoint_flags::MAC_KNOWN != 0 {
        set_macs(ctx, target.mac, CALI_MAC)?;
        // SAFETY: a helper taking plain values.
        Ok(unsafe { bpf_redirect(ifindex, 0) } as i32)
    } else {
        // SAFETY: a NULL neighbour means "resolve the packet's own destination".
        let verdict = unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) } as i32;
        if verdict == TC_ACT_REDIRECT as i32 {
            Ok(verdict)
        } else {
            Err(Reason::DropNoRoute)
        }
    }
}

/// The largest IP packet `packet` becomes on the wire: itself, or for a GSO packet (which the
/// stack segments after us) one segment's headers plus `gso_size`.
#[inline(always)]
pub fn largest_segment(ctx: &TcContext, packet: &Ipv4Summary) -> usize {
    // SAFETY: `skb` points to the context the kernel passed in.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size } as usize;
    if gso_size == 0 {
        packet.total_len
    } else {
        packet.header_len + packet.l4_header_len + gso_size
    }
}

/// The kernel's FIB lookup (`bpf_fib_lookup`) for an IPv4 packet from `src` to `dst` of `len`
/// bytes (0: no MTU check) on interface `ifindex`, with the helper's `flags`: its return code
/// and the parameters it filled in (egress interface, MACs, or the MTU on `FRAG_NEEDED`).
#[inline(always)]
pub fn fib_lookup(
    ctx: &TcContext,
    ifindex: u32,
    src: [u8; 4],
    dst: [u8; 4],
    len: usize,
    flags: u32,
) -> (i64, bpf_fib_lookup) {
    // SAFETY: bpf_fib_lookup is plain data; all-zero is a valid starting value.
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.ifindex = ifindex;
    params.__bindgen_anon_1.tot_len = len as u16;
    params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
    params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
    // SAFETY: `params` is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb.cast(),
            &mut params,
            size_of::<bpf_fib_lookup>() as i32,
            flags,
        )
    };
    (rc, params)
}

/// Sends the packet (from `src` to `dst`, as the FIB should route it) out of the uplink: MACs
/// from the FIB when the neighbour is known, else through `bpf_redirect_neigh`, which resolves
/// it. `len` is the largest packet on the wire (a GSO packet is segmented later), which the FIB
/// checks against the route's MTU: too big is `drop_frag_needed`. No route via the uplink is
/// `drop_no_route`.
#[inline(always)]
pub fn redirect_to_uplink(
    ctx: &TcContext,
    config: &HostConfig,
    src: [u8; 4],
    dst: [u8; 4],
    len: usize,
) -> Result<i32, Reason> {
    let (rc, params) = fib_lookup(
        ctx,
        config.uplink_ifindex,
        src,
        dst,
        len,
        BPF_FIB_LOOKUP_OUTPUT,
    );
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        set_macs(ctx, params.dmac, params.smac)?;
        // SAFETY: a helper taking plain values.
        return Ok(unsafe { bpf_redirect(params.ifindex, 0) } as i32);
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        // SAFETY: a NULL neighbour means "resolve the packet's own destination".
        return Ok(
            unsafe { bpf_redirect_neigh(params.ifindex, core::ptr::null_mut(), 0, 0) } as i32,
        );
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_FRAG_NEEDED) {
        return Err(Reason::DropFragNeeded);
    }
    Err(Reason::DropNoRoute)
}
