//! IPIP, done in the program (this kernel has no `ipip` module): adding the outer IPv4 header
//! towards another host, and removing it on arrival. On the wire it is standard IPIP.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        bpf_fib_lookup,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use felix_common::{HostConfig, Reason, conntrack::proto};

use crate::{forward::set_macs, maps::CONFIG, parse::Ipv4Summary};

/// Length of the outer header (no options).
pub const OUTER_LEN: usize = 20;
const AF_INET: u8 = 2;
const OUTER_TTL: u8 = 64;

/// This host's configuration, once user space has written it.
#[inline(always)]
pub fn host_config() -> Option<HostConfig> {
    let config = *CONFIG.get(0)?;
    (config.host_ip != [0; 4]).then_some(config)
}

/// The IPv4 header checksum of `header`.
#[inline(always)]
fn checksum(header: &[u8; OUTER_LEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < OUTER_LEN {
        sum += u32::from(u16::from_be_bytes([header[i], header[i + 1]]));
        i += 2;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The outer header for an inner packet of `inner_len` bytes.
#[inline(always)]
fn outer_header(
    inner: &Ipv4Summary,
    inner_len: usize,
    src: [u8; 4],
    dst: [u8; 4],
) -> [u8; OUTER_LEN] {
    let total = (inner_len + OUTER_LEN) as u16;
    let mut header = [0u8; OUTER_LEN];
    header[0] = 0x45;
    header[1] = inner.tos;
    header[2..4].copy_from_slice(&total.to_be_bytes());
    // Identification stays 0: with DF copied from the inner header, as Linux's ipip does.
    header[6] = if inner.dont_fragment { 0x40 } else { 0 };
    header[8] = OUTER_TTL;
    header[9] = proto::IPIP;
    header[12..16].copy_from_slice(&src);
    header[16..20].copy_from_slice(&dst);
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header
}

/// The largest IP packet `inner` becomes on the wire: itself, or for a GSO packet (which the
/// stack segments after us) one segment's headers plus `gso_size`.
#[inline(always)]
fn largest_segment(ctx: &TcContext, inner: &Ipv4Summary) -> usize {
    // SAFETY: `skb` points to the context the kernel passed in.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size } as usize;
    if gso_size == 0 {
        inner.total_len
    } else {
        inner.header_len + inner.l4_header_len + gso_size
    }
}

/// Wraps the packet in an outer IPv4 header from this host to `next_hop`. The Ethernet header
/// stays in front. Returns the largest outer packet that goes on the wire (one GSO segment).
#[inline(always)]
pub fn encapsulate(
    ctx: &TcContext,
    inner: &Ipv4Summary,
    config: &HostConfig,
    next_hop: [u8; 4],
) -> Result<usize, Reason> {
    let inner_len = inner.total_len;
    let wire_len = largest_segment(ctx, inner) + OUTER_LEN;
    if wire_len > config.uplink_mtu as usize {
        return Err(Reason::DropFragNeeded);
    }
    let header = outer_header(inner, inner_len, config.host_ip, next_hop);
    ctx.adjust_room(
        OUTER_LEN as i32,
        BPF_ADJ_ROOM_MAC,
        u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4),
    )
    .map_err(|_| Reason::DropEncapFailed)?;
    ctx.store(inner.offset, &header, 0)
        .map_err(|_| Reason::DropEncapFailed)?;
    Ok(wire_len)
}

/// Sends an encapsulated packet to the uplink: MACs from the FIB when the neighbour is known,
/// else through `bpf_redirect_neigh`, which resolves it. `len` is the largest packet on the wire
/// (a GSO packet is segmented later), which the FIB checks against the route's MTU.
#[inline(always)]
pub fn redirect_to_uplink(
    ctx: &TcContext,
    config: &HostConfig,
    next_hop: [u8; 4],
    len: usize,
) -> Result<i32, Reason> {
    // SAFETY: bpf_fib_lookup is plain data; all-zero is a valid starting value.
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.ifindex = config.uplink_ifindex;
    params.__bindgen_anon_1.tot_len = len as u16;
    params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(config.host_ip);
    params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(next_hop);
    // SAFETY: `params` is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb.cast(),
            &mut params,
            size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
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
    Err(Reason::DropNoRoute)
}

/// Removes the outer IPv4 header (20 bytes, no options) that follows the Ethernet header.
#[inline(always)]
pub fn decapsulate(ctx: &TcContext) -> Result<(), Reason> {
    ctx.adjust_room(
        -(OUTER_LEN as i32),
        BPF_ADJ_ROOM_MAC,
        u64::from(BPF_F_ADJ_ROOM_DECAP_L3_IPV4),
    )
    .map_err(|_| Reason::DropDecapFailed)
}
