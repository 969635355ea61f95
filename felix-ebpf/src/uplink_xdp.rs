//! XDP on the uplink: drop sources on the deny list before an skb exists, except for packets to
//! the host's failsafe inbound ports and replies from its failsafe outbound ports, which always
//! reach the host (Calico's `FailsafeInboundHostPorts` / `FailsafeOutboundHostPorts`).

use aya_ebpf::{bindings::xdp_action, macros::xdp, maps::lpm_trie::Key, programs::XdpContext};
use felix_common::{
    Direction, Reason,
    failsafe::{FAILSAFE_INBOUND, FAILSAFE_OUTBOUND, FailsafeKey},
    trace::{EVENT_DROP, NO_RULE},
};
use network_types::eth::{EthHdr, EtherType};

use crate::{
    counters::count,
    maps::{FAILSAFE, XDP_DENY},
    parse::{Fragment, Ipv4Summary},
    trace,
};

/// The IPv4 header without options.
const IPV4_MIN_LEN: usize = 20;
/// IP protocol number of SCTP (its ports sit where TCP's and UDP's do).
const PROTO_SCTP: u8 = 132;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// What the prefilter reads from an IPv4 packet.
struct Header {
    saddr: [u8; 4],
    daddr: [u8; 4],
    proto: u8,
    /// (source, destination) port of TCP/UDP/SCTP, host order; `None` for other protocols,
    /// non-first fragments and truncated transport headers.
    ports: Option<(u16, u16)>,
}

/// The uplink's XDP prefilter.
#[xdp]
pub fn uplink_xdp(ctx: XdpContext) -> u32 {
    let Some(header) = read_ipv4(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    if XDP_DENY.get(&Key::new(32, header.saddr)).is_none() || is_failsafe(&header) {
        return xdp_action::XDP_PASS;
    }
    let len = (ctx.data_end() - ctx.data()) as u32;
    let ifindex = ctx.ingress_ifindex() as u32;
    count(ifindex, Direction::XdpUplink, Reason::DropXdpDenied, len);
    trace_drop(ifindex, len, &header);
    xdp_action::XDP_DROP
}

/// Whether the packet goes to an inbound failsafe port of this host or comes from an outbound
/// failsafe port (a reply to the host's own connection).
#[inline(always)]
fn is_failsafe(header: &Header) -> bool {
    let Some((sport, dport)) = header.ports else {
        return false;
    };
    let inbound = FailsafeKey::new(FAILSAFE_INBOUND, header.proto, dport);
    let outbound = FailsafeKey::new(FAILSAFE_OUTBOUND, header.proto, sport);
    // SAFETY: the values are plain integers, only read for presence.
    unsafe { FAILSAFE.get(&inbound).is_some() || FAILSAFE.get(&outbound).is_some() }
}

/// Reads the IPv4 header (and the ports of TCP, UDP and SCTP); `None` for anything else.
#[inline(always)]
fn read_ipv4(ctx: &XdpContext) -> Option<Header> {
    let start = ctx.data();
    let end = ctx.data_end();
    let ip = start + EthHdr::LEN;
    if ip + IPV4_MIN_LEN > end {
        return None;
    }
    // SAFETY: the Ethernet header and 20 bytes of IPv4 are inside the packet (checked above).
    let (ether_type, version_ihl, frag, proto, saddr, daddr) = unsafe {
        (
            (*(start as *const EthHdr)).ether_type,
            *(ip as *const u8),
            u16::from_be(*((ip + 6) as *const u16)),
            *((ip + 9) as *const u8),
            *((ip + 12) as *const [u8; 4]),
            *((ip + 16) as *const [u8; 4]),
        )
    };
    if ether_type != EtherType::Ipv4 as u16 {
        return None;
    }
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    let first_fragment = frag & 0x1fff == 0;
    let l4 = ip + header_len;
    let has_ports = matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
        && first_fragment
        && header_len >= IPV4_MIN_LEN;
    let ports = if has_ports && l4 + 4 <= end {
        // SAFETY: four bytes at `l4` are inside the packet (checked above).
        unsafe {
            Some((
                u16::from_be(*(l4 as *const u16)),
                u16::from_be(*((l4 + 2) as *const u16)),
            ))
        }
    } else {
        None
    };
    Some(Header {
        saddr,
        daddr,
        proto,
        ports,
    })
}

/// Emits a drop event while `felix bpf trace` listens (rate-limited like every event).
#[inline(always)]
fn trace_drop(ifindex: u32, len: u32, header: &Header) {
    if !trace::enabled() {
        return;
    }
    let (sport, dport) = header.ports.unwrap_or((0, 0));
    let packet = Ipv4Summary {
        offset: EthHdr::LEN,
        header_len: 0,
        total_len: 0,
        saddr: header.saddr,
        daddr: header.daddr,
        proto: header.proto,
        ttl: 0,
        tos: 0,
        dont_fragment: false,
        ip_id: 0,
        fragment: Fragment::Whole,
        sport,
        dport,
        tcp_flags: 0,
        l4_header_len: 0,
        icmp_type_code: 0,
        error_for: None,
    };
    trace::emit(
        EVENT_DROP,
        ifindex,
        Direction::XdpUplink as u16,
        Reason::DropXdpDenied as u16,
        NO_RULE,
        len,
        Some(&packet),
    );
}
