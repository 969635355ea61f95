//! Path MTU for pods: a packet from a pod too big for its path (the IPIP tunnel, or the native
//! route) is not just dropped. With DF set the program turns it, in place, into an ICMP
//! "fragmentation needed" (type 3, code 4) that carries the path's MTU, from this host to the
//! pod, and puts it straight into the pod (its veth peer's ingress), so the sender learns the
//! MTU as it would from a router. Without DF the host stack takes the packet and fragments it to
//! the route's MTU, as Linux's own forwarding does.
//!
//! The reply is the original IP header and L4 header (at least 8 bytes, as RFC 792 asks; the
//! whole TCP header, which the kernel will not trim into) behind a new IPv4 and ICMP header;
//! both checksums are computed here, in full.

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LOOKUP_OUTPUT, TC_ACT_OK, TC_ACT_SHOT,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::{bpf_redirect_peer, bpf_skb_change_tail},
    programs::TcContext,
};
use felix_common::{HostConfig, Reason, RouteKind, conntrack::proto};

use crate::{
    encap::{OUTER_LEN, host_config},
    forward::{CALI_MAC, fib_lookup, largest_segment, route, set_macs},
    parse::{IP_OFFSET, Ipv4Summary, Parsed, parse},
};

/// ICMP "destination unreachable".
const ICMP_DEST_UNREACH: u8 = 3;
/// Its code "fragmentation needed and DF set".
const ICMP_FRAG_NEEDED: u8 = 4;
/// New IPv4 header plus ICMP header.
const REPLY_HEADERS_LEN: usize = 20 + 8;
/// The most of the original packet the reply quotes: IPv4 and TCP headers with full options.
const MAX_QUOTE_LEN: usize = 60 + 60;
/// TTL of the reply.
const REPLY_TTL: u8 = 64;
/// Type of service of an ICMP error, as Linux sends it (`IPTOS_PREC_INTERNETCONTROL`).
const REPLY_TOS: u8 = 0xc0;
/// Offset of the TTL in the IPv4 header; the protocol follows it in the same 16-bit word.
const TTL_OFFSET: usize = 8;
/// Offset of the header checksum in the IPv4 header.
const CHECKSUM_OFFSET: usize = 10;
/// Offset of the source MAC in the Ethernet header.
const ETH_SOURCE_OFFSET: usize = 6;

/// Answers a packet from the pod behind `ifindex` that `cali_from_wl` found too big for its path
/// (after its TTL was decremented): the verdict and the reason to count it under. A packet that
/// cannot be answered stays `drop_frag_needed`.
#[inline(always)]
pub fn too_big(ctx: &TcContext, ifindex: u32) -> (i32, Reason) {
    match answer(ctx, ifindex) {
        Ok(done) => done,
        Err(reason) => (TC_ACT_SHOT as i32, reason),
    }
}

#[inline(always)]
fn answer(ctx: &TcContext, ifindex: u32) -> Result<(i32, Reason), Reason> {
    let packet = match parse(ctx) {
        Ok(Parsed::Ipv4(packet)) => packet,
        _ => return Err(Reason::DropFragNeeded),
    };
    // Quoted, or handed to the stack, as the pod sent it.
    restore_ttl(ctx, &packet)?;
    if !packet.dont_fragment {
        return Ok((TC_ACT_OK as i32, Reason::PassFragment));
    }
    let config = host_config().ok_or(Reason::DropFragNeeded)?;
    let mtu = path_mtu(ctx, &config, &packet).ok_or(Reason::DropFragNeeded)?;
    build_reply(ctx, &packet, &config, mtu).map_err(|_| Reason::DropFragNeeded)?;
    // SAFETY: a helper taking plain values; valid in TC ingress, where `cali_from_wl` runs.
    let verdict = unsafe { bpf_redirect_peer(ifindex, 0) } as i32;
    Ok((verdict, Reason::IcmpFragNeeded))
}

/// Undoes the forwarding path's TTL decrement (checksum included).
#[inline(always)]
fn restore_ttl(ctx: &TcContext, packet: &Ipv4Summary) -> Result<(), Reason> {
    let ttl = packet.ttl.wrapping_add(1);
    let old = u16::from_ne_bytes([packet.ttl, packet.proto]);
    let new = u16::from_ne_bytes([ttl, packet.proto]);
    ctx.l3_csum_replace(
        packet.offset + CHECKSUM_OFFSET,
        u64::from(old),
        u64::from(new),
        2,
    )
    .map_err(|_| Reason::DropFragNeeded)?;
    ctx.store(packet.offset + TTL_OFFSET, &ttl, 0)
        .map_err(|_| Reason::DropFragNeeded)
}

/// The MTU of `packet`'s path: the tunnel's (uplink MTU less the outer header) for IPIP, the
/// route's (from the FIB) when the destination's block is routed natively.
#[inline(always)]
fn path_mtu(ctx: &TcContext, config: &HostConfig, packet: &Ipv4Summary) -> Option<u16> {
    match route(packet.daddr) {
        Some((RouteKind::RemoteBlock, target)) if target.is_native() => {
            route_mtu(ctx, config, packet)
        }
        _ => u16::try_from(config.uplink_mtu.checked_sub(OUTER_LEN as u32)?).ok(),
    }
}

/// The route's MTU for `packet`, as the FIB reports it when the packet does not fit.
#[inline(always)]
fn route_mtu(ctx: &TcContext, config: &HostConfig, packet: &Ipv4Summary) -> Option<u16> {
    let (rc, params) = fib_lookup(
        ctx,
        config.uplink_ifindex,
        packet.saddr,
        packet.daddr,
        largest_segment(ctx, packet),
        BPF_FIB_LOOKUP_OUTPUT,
    );
    // SAFETY: the kernel wrote `mtu_result` with this result.
    (rc == i64::from(BPF_FIB_LKUP_RET_FRAG_NEEDED))
        .then(|| unsafe { params.__bindgen_anon_1.mtu_result })
}

/// How much of `packet` the reply quotes: its IP header and L4 header, at least 8 bytes of
/// what follows the IP header (a too-big packet always has them).
#[inline(always)]
fn quote_len(packet: &Ipv4Summary) -> usize {
    let l4 = if packet.proto == proto::TCP || packet.proto == proto::UDP {
        packet.l4_header_len
    } else {
        8
    };
    let len = packet.header_len + if l4 < 8 { 8 } else { l4 };
    // Whole 32-bit words, which the checksum loop sums.
    (if len > packet.total_len {
        packet.total_len
    } else {
        len
    }) & !3
}

/// Adds the 16-bit big-endian words of `len` bytes at `offset` to `sum` (`len` a multiple of
/// 4, at most [`MAX_QUOTE_LEN`]).
#[inline(always)]
fn add_words(ctx: &TcContext, offset: usize, len: usize, mut sum: u32) -> Result<u32, i64> {
    let mut at = 0;
    while at < MAX_QUOTE_LEN {
        if at + 4 > len {
            break;
        }
        let word: [u8; 4] = ctx.load(offset + at)?;
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        sum += u32::from(u16::from_be_bytes([word[2], word[3]]));
        at += 4;
    }
    Ok(sum)
}

/// The one's-complement checksum of a partial sum.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The new IPv4 and ICMP headers for a reply quoting `quoted` bytes whose word sum is
/// `quote_sum`.
#[inline(always)]
fn reply_headers(
    src: [u8; 4],
    dst: [u8; 4],
    mtu: u16,
    quoted: usize,
    quote_sum: u32,
) -> [u8; REPLY_HEADERS_LEN] {
    let mut h = [0u8; REPLY_HEADERS_LEN];
    h[0] = 0x45;
    h[1] = REPLY_TOS;
    h[2..4].copy_from_slice(&((REPLY_HEADERS_LEN + quoted) as u16).to_be_bytes());
    h[8] = REPLY_TTL;
    h[9] = proto::ICMP;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let mut ip_sum = 0u32;
    let mut i = 0;
    while i < 20 {
        ip_sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
        i += 2;
    }
    h[10..12].copy_from_slice(&fold(ip_sum).to_be_bytes());
    h[20] = ICMP_DEST_UNREACH;
    h[21] = ICMP_FRAG_NEEDED;
    // Bytes 24..26 are unused, 26..28 the next hop's MTU (RFC 1191).
    h[26..28].copy_from_slice(&mtu.to_be_bytes());
    let icmp_sum = quote_sum + u32::from(u16::from_be_bytes([h[20], h[21]])) + u32::from(mtu);
    h[22..24].copy_from_slice(&fold(icmp_sum).to_be_bytes());
    h
}

/// Rewrites the frame into the reply: trimmed to the quote, room made for the new headers
/// after the Ethernet header, headers written, MACs turned towards the pod.
#[inline(always)]
fn build_reply(
    ctx: &TcContext,
    packet: &Ipv4Summary,
    config: &HostConfig,
    mtu: u16,
) -> Result<(), i64> {
    let quoted = quote_len(packet);
    let quote_sum = add_words(ctx, IP_OFFSET, quoted, 0)?;
    let pod_mac: [u8; 6] = ctx.load(ETH_SOURCE_OFFSET)?;
    let headers = reply_headers(config.host_ip, packet.saddr, mtu, quoted, quote_sum);
    // SAFETY: a helper on the context the kernel passed in; the length is checked by it.
    let rc = unsafe { bpf_skb_change_tail(ctx.skb.skb, (IP_OFFSET + quoted) as u32, 0) };
    if rc != 0 {
        return Err(rc);
    }
    ctx.adjust_room(REPLY_HEADERS_LEN as i32, BPF_ADJ_ROOM_MAC, 0)?;
    ctx.store(IP_OFFSET, &headers, 0)?;
    set_macs(ctx, pod_mac, CALI_MAC).map_err(|_| -1)
}
