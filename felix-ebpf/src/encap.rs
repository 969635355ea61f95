//! IPIP, done in the program (this kernel has no `ipip` module): adding the outer IPv4 header
//! towards another host, and removing it on arrival. On the wire it is standard IPIP.

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    programs::TcContext,
};
use felix_common::{HostConfig, Reason, conntrack::proto};

use crate::{forward::largest_segment, maps::CONFIG, parse::Ipv4Summary};

/// Length of the outer header (no options).
pub const OUTER_LEN: usize = 20;
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
