//! Safe parsing of Ethernet, IPv4 and the TCP/UDP/ICMP headers, bounds-checked against the
//! packet end so the verifier accepts every access.

use core::mem::size_of;

use aya_ebpf::programs::TcContext;
use felix_common::Reason;
use network_types::{
    eth::{EthHdr, EtherType},
    icmp::IcmpHdr,
    ip::Ipv4Hdr,
    tcp::TcpHdr,
    udp::UdpHdr,
};

/// IP protocol numbers this module looks into.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// Byte offset of the protocol field in the IPv4 header.
const IPV4_PROTO_OFFSET: usize = 9;
/// Bytes the parser may need in the linear part of the skb: Ethernet, IPv4 with options, TCP with
/// options.
const MAX_HEADERS_LEN: u32 = (EthHdr::LEN + 60 + 60) as u32;

/// What a packet is, as far as the programs need to know today.
#[expect(dead_code, reason = "the summary feeds conntrack and policy, which come next")]
pub enum Parsed {
    /// ARP: passed untouched.
    Arp,
    /// A well-formed IPv4 packet.
    Ipv4(Ipv4Summary),
}

/// The fields of an IPv4 packet that classification uses.
#[derive(Clone, Copy)]
#[expect(dead_code, reason = "conntrack and policy read these; they come next")]
pub struct Ipv4Summary {
    /// Source address, network byte order.
    pub saddr: [u8; 4],
    /// Destination address, network byte order.
    pub daddr: [u8; 4],
    /// IP protocol number.
    pub proto: u8,
    /// Source port (TCP/UDP) or ICMP type, host order; 0 for other protocols and fragments.
    pub sport: u16,
    /// Destination port (TCP/UDP) or ICMP code, host order; 0 for other protocols and fragments.
    pub dport: u16,
}

/// Returns a pointer to a `T` at `offset`, or `None` when the packet ends before it.
#[inline(always)]
fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Makes sure the headers sit in the linear part of the skb, so direct access sees them.
#[inline(always)]
fn pull_headers(ctx: &TcContext) {
    let linear = (ctx.data_end() - ctx.data()) as u32;
    let wanted = if ctx.len() < MAX_HEADERS_LEN {
        ctx.len()
    } else {
        MAX_HEADERS_LEN
    };
    if linear < wanted {
        // On failure the bounds checks below still hold; a short linear part reads as short.
        let _ = ctx.pull_data(wanted);
    }
}

/// Parses the packet in `ctx`; on failure returns the drop reason.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Parsed, Reason> {
    pull_headers(ctx);
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Reason::DropTooShort)?;
    // SAFETY: `ptr_at` checked that the whole header lies inside the packet.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Arp as u16 {
        return Ok(Parsed::Arp);
    }
    if ether_type != EtherType::Ipv4 as u16 {
        return Err(Reason::DropUnsupportedL3);
    }
    parse_ipv4(ctx, EthHdr::LEN).map(Parsed::Ipv4)
}

/// Parses the IPv4 header at `offset` and the L4 header after it.
#[inline(always)]
fn parse_ipv4(ctx: &TcContext, offset: usize) -> Result<Ipv4Summary, Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset).ok_or(Reason::DropTooShort)?;
    // SAFETY: bounds checked by `ptr_at`. The protocol byte is read as a `u8`, not as the
    // crate's enum, so any value is valid.
    let (version, header_len, total_len, frag_offset, proto, saddr, daddr) = unsafe {
        (
            (*ip).version(),
            usize::from((*ip).ihl()),
            usize::from((*ip).tot_len()),
            (*ip).frag_offset(),
            *(ip as *const u8).add(IPV4_PROTO_OFFSET),
            (*ip).src_addr,
            (*ip).dst_addr,
        )
    };
    if version != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Reason::DropBadHeader);
    }
    // The options the IHL announces must be in the frame too.
    if ctx.data() + offset + header_len > ctx.data_end() {
        return Err(Reason::DropTooShort);
    }
    if total_len < header_len {
        return Err(Reason::DropBadHeader);
    }
    if offset + total_len > ctx.len() as usize {
        return Err(Reason::DropTooShort);
    }
    let mut summary = Ipv4Summary {
        saddr,
        daddr,
        proto,
        sport: 0,
        dport: 0,
    };
    // Later fragments carry no L4 header.
    if frag_offset != 0 {
        return Ok(summary);
    }
    let l4 = offset + header_len;
    match proto {
        proto::TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, l4).ok_or(Reason::DropTooShort)?;
            // SAFETY: bounds checked by `ptr_at`.
            let (source, dest, data_offset) =
                unsafe { ((*tcp).source, (*tcp).dest, usize::from((*tcp).doff()) * 4) };
            if data_offset < TcpHdr::LEN {
                return Err(Reason::DropBadHeader);
            }
            summary.sport = u16::from_be_bytes(source);
            summary.dport = u16::from_be_bytes(dest);
        }
        proto::UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, l4).ok_or(Reason::DropTooShort)?;
            // SAFETY: bounds checked by `ptr_at`.
            let (source, dest) = unsafe { ((*udp).src, (*udp).dst) };
            summary.sport = u16::from_be_bytes(source);
            summary.dport = u16::from_be_bytes(dest);
        }
        proto::ICMP => {
            let icmp: *const u8 = ptr_at::<IcmpHdr>(ctx, l4).ok_or(Reason::DropTooShort)? as _;
            // SAFETY: bounds checked by `ptr_at`: type and code are the first two bytes.
            let (icmp_type, icmp_code) = unsafe { (*icmp, *icmp.add(1)) };
            summary.sport = u16::from(icmp_type);
            summary.dport = u16::from(icmp_code);
        }
        _ => {}
    }
    Ok(summary)
}
