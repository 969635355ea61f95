//! ICMP errors for pods, as a router sends them: "fragmentation needed" for path MTU, and "time
//! exceeded" when a pod's packet's TTL runs out here (as Linux's forwarding and Calico's BPF
//! dataplane send it: from the host, type 11 code 0, not for a later fragment or an ICMP error).
//!
//! Path MTU: a packet from a pod too big for its path (the IPIP tunnel, or the native
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
    parse::{Fragment, IP_OFFSET, Ipv4Summary, Parsed, parse},
};

/// ICMP "destination unreachable".
const ICMP_DEST_UNREACH: u8 = 3;
/// Its code "fragmentation needed and DF set".
const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMP "time exceeded".
const ICMP_TIME_EXCEEDED: u8 = 11;
/// Its code "TTL exceeded in transit".
const ICMP_EXC_TTL: u8 = 0;
/// ICMP types that are errors, which are never answered with an error (RFC 1122 3.2.2):
/// destination unreachable, source quench, redirect, time exceeded, parameter problem.
const ICMP_ERROR_TYPES: [u8; 5] = [3, 4, 5, 11, 12];
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
    let [mtu_high, mtu_low] = mtu.to_be_bytes();
    // Bytes 4..6 of the ICMP header are unused, 6..8 the next hop's MTU (RFC 1191).
    let kind = (
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        [0, 0, mtu_high, mtu_low],
    );
    build_reply(ctx, &packet, &config, kind).map_err(|_| Reason::DropFragNeeded)?;
    Ok((into_pod(ifindex), Reason::IcmpFragNeeded))
}

/// Answers a packet from the pod behind `ifindex` whose TTL `cali_from_wl` found running out
/// (not yet decremented) with an ICMP time exceeded: the verdict and the reason to count it
/// under. A later fragment, an ICMP error, or a packet that cannot be answered stays
/// `drop_ttl_exceeded`.
#[inline(always)]
pub fn ttl_exceeded(ctx: &TcContext, ifindex: u32) -> (i32, Reason) {
    match answer_ttl_exceeded(ctx, ifindex) {
        Ok(done) => done,
        Err(reason) => (TC_ACT_SHOT as i32, reason),
    }
}

#[inline(always)]
fn answer_ttl_exceeded(ctx: &TcContext, ifindex: u32) -> Result<(i32, Reason), Reason> {
    let packet = match parse(ctx) {
        Ok(Parsed::Ipv4(packet)) => packet,
        _ => return Err(Reason::DropTtlExceeded),
    };
    if packet.fragment == Fragment::Later || is_icmp_error(&packet) {
        return Err(Reason::DropTtlExceeded);
    }
    let config = host_config().ok_or(Reason::DropTtlExceeded)?;
    let kind = (ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, [0; 4]);
    build_reply(ctx, &packet, &config, kind).map_err(|_| Reason::DropTtlExceeded)?;
    Ok((into_pod(ifindex), Reason::IcmpTtlExceeded))
}

/// Whether `packet` is itself an ICMP error.
#[inline(always)]
fn is_icmp_error(packet: &Ipv4Summary) -> bool {
    let icmp_type = (packet.icmp_type_code >> 8) as u8;
    packet.proto == proto::ICMP && ICMP_ERROR_TYPES.contains(&icmp_type)
}

/// Puts the reply into the pod: its veth peer's ingress. `cali_to_wl` and the pod's ingress
/// policy do not see it, an ICMP error about the pod's own flow.
#[inline(always)]
fn into_pod(ifindex: u32) -> i32 {
    // SAFETY: a helper taking plain values; valid in TC ingress, where `cali_from_wl` runs.
    unsafe { bpf_redirect_peer(ifindex, 0) as i32 }
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
/// what follows the IP header (a too-big packet always has them; a shorter packet is quoted
/// whole, to its last full 32-bit word).
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

/// An ICMP error's type, code and the 4 bytes after its checksum.
type ErrorKind = (u8, u8, [u8; 4]);

/// The new IPv4 and ICMP headers for a reply of `kind` quoting `quoted` bytes whose word sum
/// is `quote_sum`.
#[inline(always)]
fn reply_headers(
    src: [u8; 4],
    dst: [u8; 4],
    kind: ErrorKind,
    quoted: usize,
    quote_sum: u32,
) -> [u8; REPLY_HEADERS_LEN] {
    let (icmp_type, code, rest) = kind;
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
    h[20] = icmp_type;
    h[21] = code;
    h[24..28].copy_from_slice(&rest);
    let icmp_sum = quote_sum
        + u32::from(u16::from_be_bytes([icmp_type, code]))
        + u32::from(u16::from_be_bytes([rest[0], rest[1]]))
        + u32::from(u16::from_be_bytes([rest[2], rest[3]]));
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
    kind: ErrorKind,
) -> Result<(), i64> {
    let quoted = quote_len(packet);
    let quote_sum = add_words(ctx, IP_OFFSET, quoted, 0)?;
    let pod_mac: [u8; 6] = ctx.load(ETH_SOURCE_OFFSET)?;
    let headers = reply_headers(config.host_ip, packet.saddr, kind, quoted, quote_sum);
    // SAFETY: a helper on the context the kernel passed in; the length is checked by it.
    let rc = unsafe { bpf_skb_change_tail(ctx.skb.skb, (IP_OFFSET + quoted) as u32, 0) };
    if rc != 0 {
        return Err(rc);
    }
    ctx.adjust_room(REPLY_HEADERS_LEN as i32, BPF_ADJ_ROOM_MAC, 0)?;
    ctx.store(IP_OFFSET, &headers, 0)?;
    set_macs(ctx, pod_mac, CALI_MAC).map_err(|_| -1)
}
