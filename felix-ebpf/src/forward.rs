//! Forwarding decisions: route lookup, TTL, MAC rewrite, redirect to a local pod, and the FIB
//! lookup and redirect out of the uplink that both IPIP and native forwarding end with.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_OUTPUT, TC_ACT_REDIRECT, bpf_fib_lookup, bpf_redir_neigh,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use felix_common::{
    Direction, EndpointInfo, HostConfig, Reason, RouteKind, RouteValue, endpoints::endpoint_flags,
};

use crate::{
    counters::count,
    maps::{ENDPOINTS, ROUTES},
    parse::{Ipv4Summary, ptr_at},
};

/// Offset of the TTL in the IPv4 header; the protocol follows it in the same 16-bit word.
const TTL_OFFSET: usize = 8;
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

/// Decrements the TTL of the IPv4 header of `packet`, fixing its checksum incrementally (RFC
/// 1624: the TTL is the high byte of its 16-bit word, so the sum goes up by 0x0100). A packet
/// whose TTL would reach zero is refused. Written in place (direct packet access, no helper
/// call); the header sum stays whole, so a `CHECKSUM_COMPLETE` value is still right.
#[inline(always)]
pub fn decrement_ttl(ctx: &TcContext, packet: &Ipv4Summary) -> Result<(), Reason> {
    if packet.ttl <= 1 {
        return Err(Reason::DropTtlExceeded);
    }
    // TTL, protocol, and the checksum after them.
    let field = bytes_mut::<4>(ctx, packet.offset + TTL_OFFSET).ok_or(Reason::DropBadHeader)?;
    let sum = u32::from(u16::from_be_bytes([field[2], field[3]])) + 0x0100;
    let sum = (sum + u32::from(sum >= 0xffff)) as u16;
    field[0] = packet.ttl - 1;
    field[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Writes destination and source MACs (direct packet access).
#[inline(always)]
pub fn set_macs(ctx: &TcContext, dst: [u8; 6], src: [u8; 6]) -> Result<(), Reason> {
    let macs = bytes_mut::<12>(ctx, 0).ok_or(Reason::DropBadHeader)?;
    macs[..6].copy_from_slice(&dst);
    macs[6..].copy_from_slice(&src);
    Ok(())
}

/// The `N` bytes at `offset` of the packet, writable in place; `None` past its linear end.
#[inline(always)]
fn bytes_mut<const N: usize>(ctx: &TcContext, offset: usize) -> Option<&mut [u8; N]> {
    let at = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that the bytes lie inside the packet; TC programs may write
    // their packet (the verifier unclones a cloned skb first), and no helper that moves the
    // data runs while the reference lives.
    Some(unsafe { &mut *at.cast_mut() })
}

/// Delivers the (IPv4, Ethernet-framed) packet to the local pod behind `ifindex`, from a TC
/// ingress program (`cali_from_wl`, `uplink_in`): TTL down, MACs as the pod expects them (its
/// own, from the `cali*` MAC), then straight into the pod's namespace with `bpf_redirect_peer`:
/// the packet enters the pod's `eth0` ingress, with no second pass through the veth and its
/// backlog queue, so `cali_to_wl` does not see it. What `cali_to_wl` did for such a packet (its
/// flow is already recorded by the caller) is done here: it is counted on the pod's interface as
/// `to_workload` / `allowed`. A pod whose MAC is not known gets the packet as before, by
/// `bpf_redirect_neigh` to the egress of its `cali*` interface, where `cali_to_wl` sees and
/// counts it.
#[inline(always)]
pub fn deliver_local(ctx: &TcContext, packet: &Ipv4Summary, ifindex: u32) -> Result<i32, Reason> {
    let target = endpoint(ifindex).ok_or(Reason::DropNoRoute)?;
    decrement_ttl(ctx, packet)?;
    if target.flags & endpoint_flags::MAC_KNOWN != 0 {
        set_macs(ctx, target.mac, CALI_MAC)?;
        count(ifindex, Direction::ToWorkload, Reason::Allowed, ctx.len());
        // SAFETY: a helper taking plain values; valid in TC ingress, where the callers run.
        Ok(unsafe { bpf_redirect_peer(ifindex, 0) } as i32)
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

/// Sends the packet (from `src` to `dst`, as the FIB should route it) out of the uplink. One
/// FIB lookup decides: when the next hop's neighbour is resolved, its MACs are written and the
/// packet goes out by `bpf_redirect` (straight to the device's queue: the cheapest way); when it
/// is not, by `bpf_redirect_neigh` with the FIB's next hop, so that the kernel resolves the
/// neighbour (queueing the packet meanwhile) without looking the route up a second time. `len`
/// is the largest packet on the wire (a GSO packet is segmented later), which the FIB checks
/// against the route's MTU: too big is `drop_frag_needed`. No route via the uplink is
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
        let mut next_hop = next_hop_of(&params);
        // SAFETY: `next_hop` is a valid bpf_redir_neigh of the size passed; the helper copies it.
        return Ok(unsafe {
            bpf_redirect_neigh(
                params.ifindex,
                &mut next_hop,
                size_of::<bpf_redir_neigh>() as i32,
                0,
            )
        } as i32);
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_FRAG_NEEDED) {
        return Err(Reason::DropFragNeeded);
    }
    Err(Reason::DropNoRoute)
}

/// The next hop a FIB lookup found: on success and on `NO_NEIGH` the kernel leaves it in the
/// destination field (the gateway, or the destination itself on a connected route) with its
/// family (an IPv4 route may have an IPv6 gateway), the form `bpf_redirect_neigh` takes.
#[inline(always)]
fn next_hop_of(params: &bpf_fib_lookup) -> bpf_redir_neigh {
    // SAFETY: bpf_redir_neigh is plain data; all-zero is a valid starting value.
    let mut next_hop: bpf_redir_neigh = unsafe { core::mem::zeroed() };
    next_hop.nh_family = u32::from(params.family);
    // SAFETY: both unions are 16 bytes of address; the IPv4 one is their first 4 bytes.
    next_hop.__bindgen_anon_1.ipv6_nh = unsafe { params.__bindgen_anon_4.ipv6_dst };
    next_hop
}
