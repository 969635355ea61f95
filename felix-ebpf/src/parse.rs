//! Safe parsing of Ethernet, IPv4 and the TCP/UDP/ICMP headers, bounds-checked against the
//! packet end so the verifier accepts every access.

use core::mem::size_of;

use aya_ebpf::programs::TcContext;
use felix_common::{Reason, conntrack::proto};
use network_types::{
    eth::{EthHdr, EtherType},
    icmp::IcmpHdr,
    ip::Ipv4Hdr,
    tcp::TcpHdr,
    udp::UdpHdr,
};

/// Offset of the IPv4 header in an Ethernet frame.
pub const IP_OFFSET: usize = EthHdr::LEN;
/// Byte offset of the protocol field in the IPv4 header.
const IPV4_PROTO_OFFSET: usize = 9;
/// Byte offset of the flags byte in the TCP header.
const TCP_FLAGS_OFFSET: usize = 13;
/// The Don't Fragment bit in the IPv4 flags.
const IPV4_DF: u8 = 0b010;
/// The More Fragments bit in the IPv4 flags.
const IPV4_MF: u8 = 0b001;
/// Ethertypes of a tag in the frame: 802.1Q and 802.1ad (QinQ), network byte order as read.
const ETH_P_8021Q: u16 = 0x8100u16.to_be();
const ETH_P_8021AD: u16 = 0x88a8u16.to_be();
/// Bytes the parser may need in the linear part of the skb: Ethernet, outer IPv4, inner IPv4
/// with options, TCP with options. An ICMP error's quote fits in it unless both IPv4 headers
/// carry long options (then the error is judged as any packet).
const MAX_HEADERS_LEN: u32 = (EthHdr::LEN + 20 + 60 + 60) as u32;
/// ICMP types whose message quotes the packet it is about.
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
/// The ICMP header before the quoted packet.
const ICMP_HEADER_LEN: usize = 8;

/// What a packet is, as far as the programs need to know.
pub enum Parsed {
    /// ARP: passed untouched.
    Arp,
    /// A well-formed IPv4 packet.
    Ipv4(Ipv4Summary),
}

/// The fields of an IPv4 packet that forwarding and conntrack use.
#[derive(Clone, Copy)]
pub struct Ipv4Summary {
    /// Offset of the IPv4 header in the frame.
    pub offset: usize,
    /// IPv4 header length in bytes.
    pub header_len: usize,
    /// IPv4 total length.
    pub total_len: usize,
    /// Source address, network byte order.
    pub saddr: [u8; 4],
    /// Destination address, network byte order.
    pub daddr: [u8; 4],
    /// IP protocol number.
    pub proto: u8,
    /// Time to live.
    pub ttl: u8,
    /// Type of service byte.
    pub tos: u8,
    /// Don't Fragment set.
    pub dont_fragment: bool,
    /// The identification field, as on the wire (NAT leaves it alone).
    pub ip_id: u16,
    /// Which part of a datagram this is.
    pub fragment: Fragment,
    /// Source port (TCP/UDP), ICMP echo id, else 0; host order.
    pub sport: u16,
    /// Destination port (TCP/UDP), ICMP echo id, else 0; host order.
    pub dport: u16,
    /// TCP flags byte; 0 for other protocols.
    pub tcp_flags: u8,
    /// Length of the TCP (with options) or UDP header; 0 for other protocols.
    pub l4_header_len: usize,
    /// ICMP `type << 8 | code`; 0 for other protocols.
    pub icmp_type_code: u16,
    /// For an ICMP error: the flow of the packet it quotes, as that packet travelled.
    pub error_for: Option<Quoted>,
}

/// Which part of an IPv4 datagram a packet is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    Whole,
    /// The first fragment (offset 0, more to come): it carries the L4 header.
    First,
    /// A later fragment: no L4 header; its ports are the first fragment's (see `frags`).
    Later,
}

/// The addresses, protocol and ports (ICMP echo: the id) of the packet an ICMP error quotes.
#[derive(Clone, Copy)]
pub struct Quoted {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Ipv4Summary {
    /// The destination "port" policy matches: the port, or ICMP `type << 8 | code`.
    #[inline(always)]
    pub fn policy_dst_port(&self) -> u16 {
        if self.proto == proto::ICMP {
            self.icmp_type_code
        } else {
            self.dport
        }
    }

    /// The source port policy matches (0 for ICMP).
    #[inline(always)]
    pub fn policy_src_port(&self) -> u16 {
        if self.proto == proto::ICMP {
            0
        } else {
            self.sport
        }
    }
}

/// Returns a pointer to a `T` at `offset`, or `None` when the packet ends before it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Whether the kernel took an 802.1Q/802.1ad tag out of the frame (`skb->vlan_tci`) before the
/// program ran: the frame as received was tagged.
#[inline(always)]
pub fn vlan_tagged(ctx: &TcContext) -> bool {
    // SAFETY: `skb` points to the context the kernel passed in.
    unsafe { (*ctx.skb.skb).vlan_present != 0 }
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

/// Parses the frame in `ctx`; on failure returns the drop reason.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Parsed, Reason> {
    pull_headers(ctx);
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Reason::DropTooShort)?;
    // SAFETY: `ptr_at` checked that the whole header lies inside the packet.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Arp as u16 {
        return Ok(Parsed::Arp);
    }
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        return Err(Reason::DropVlanTagged);
    }
    if ether_type != EtherType::Ipv4 as u16 {
        return Err(Reason::DropUnsupportedL3);
    }
    parse_ipv4(ctx, IP_OFFSET).map(Parsed::Ipv4)
}

/// Parses the IPv4 header at `offset` and the L4 header after it.
#[inline(always)]
pub fn parse_ipv4(ctx: &TcContext, offset: usize) -> Result<Ipv4Summary, Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset).ok_or(Reason::DropTooShort)?;
    // SAFETY: bounds checked by `ptr_at`. The protocol byte is read as a `u8`, not as the
    // crate's enum, so any value is valid.
    let (version, header_len, total_len, frag_offset, flags, proto, ttl, tos, saddr, daddr, id) = unsafe {
        (
            (*ip).version(),
            usize::from((*ip).ihl()),
            usize::from((*ip).tot_len()),
            (*ip).frag_offset(),
            (*ip).frag_flags(),
            *(ip as *const u8).add(IPV4_PROTO_OFFSET),
            (*ip).ttl,
            (*ip).tos,
            (*ip).src_addr,
            (*ip).dst_addr,
            (*ip).id,
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
        offset,
        header_len,
        total_len,
        saddr,
        daddr,
        proto,
        ttl,
        tos,
        dont_fragment: flags & IPV4_DF != 0,
        ip_id: u16::from_ne_bytes(id),
        fragment: if frag_offset != 0 {
            Fragment::Later
        } else if flags & IPV4_MF != 0 {
            Fragment::First
        } else {
            Fragment::Whole
        },
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        l4_header_len: 0,
        icmp_type_code: 0,
        error_for: None,
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
            let (source, dest, data_offset, tcp_flags) = unsafe {
                (
                    (*tcp).source,
                    (*tcp).dest,
                    usize::from((*tcp).doff()) * 4,
                    *(tcp as *const u8).add(TCP_FLAGS_OFFSET),
                )
            };
            if data_offset < TcpHdr::LEN {
                return Err(Reason::DropBadHeader);
            }
            summary.sport = u16::from_be_bytes(source);
            summary.dport = u16::from_be_bytes(dest);
            summary.tcp_flags = tcp_flags;
            summary.l4_header_len = data_offset;
        }
        proto::UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, l4).ok_or(Reason::DropTooShort)?;
            // SAFETY: bounds checked by `ptr_at`.
            let (source, dest) = unsafe { ((*udp).src, (*udp).dst) };
            summary.sport = u16::from_be_bytes(source);
            summary.dport = u16::from_be_bytes(dest);
            summary.l4_header_len = UdpHdr::LEN;
        }
        proto::ICMP => {
            let icmp: *const u8 = ptr_at::<IcmpHdr>(ctx, l4).ok_or(Reason::DropTooShort)? as _;
            // SAFETY: bounds checked by `ptr_at`: the 8-byte header holds type, code and the
            // echo id at 4..6.
            let (type_code, id) = unsafe {
                (
                    u16::from_be_bytes([*icmp, *icmp.add(1)]),
                    u16::from_be_bytes([*icmp.add(4), *icmp.add(5)]),
                )
            };
            summary.sport = id;
            summary.dport = id;
            summary.icmp_type_code = type_code;
            let icmp_type = (type_code >> 8) as u8;
            if matches!(
                icmp_type,
                ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
            ) {
                summary.error_for = quoted(ctx, l4 + ICMP_HEADER_LEN);
            }
        }
        _ => {}
    }
    Ok(summary)
}

/// The packet an ICMP error quotes at `offset`: its IPv4 header and the 8 bytes after it (an
/// error about a later fragment carries no ports and is left alone).
#[inline(always)]
fn quoted(ctx: &TcContext, offset: usize) -> Option<Quoted> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: bounds checked by `ptr_at`; the protocol is read as a byte.
    let (version, header_len, frag_offset, proto, saddr, daddr) = unsafe {
        (
            (*ip).version(),
            usize::from((*ip).ihl()),
            (*ip).frag_offset(),
            *(ip as *const u8).add(IPV4_PROTO_OFFSET),
            (*ip).src_addr,
            (*ip).dst_addr,
        )
    };
    if version != 4 || header_len < Ipv4Hdr::LEN || header_len > 60 || frag_offset != 0 {
        return None;
    }
    let l4: *const [u8; 8] = ptr_at(ctx, offset + header_len)?;
    // SAFETY: bounds checked by `ptr_at`.
    let l4 = unsafe { *l4 };
    let (sport, dport) = match proto {
        proto::TCP | proto::UDP => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        // An echo's flow is keyed by its id on both sides.
        proto::ICMP => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            (id, id)
        }
        _ => (0, 0),
    };
    Some(Quoted {
        saddr,
        daddr,
        proto,
        sport,
        dport,
    })
}
