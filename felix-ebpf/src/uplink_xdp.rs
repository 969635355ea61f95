//! XDP on the uplink: drop sources on the deny list before an skb exists.

use core::mem::size_of;

use aya_ebpf::{bindings::xdp_action, macros::xdp, maps::lpm_trie::Key, programs::XdpContext};
use felix_common::{Direction, Reason};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
};

use crate::{counters::count, maps::XDP_DENY};

/// The uplink's XDP prefilter.
#[xdp]
pub fn uplink_xdp(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + EthHdr::LEN + size_of::<Ipv4Hdr>() > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: both headers are inside the packet (checked above).
    let (ether_type, source) = unsafe {
        (
            (*(start as *const EthHdr)).ether_type,
            (*((start + EthHdr::LEN) as *const Ipv4Hdr)).src_addr,
        )
    };
    if ether_type != EtherType::Ipv4 as u16 || XDP_DENY.get(&Key::new(32, source)).is_none() {
        return xdp_action::XDP_PASS;
    }
    count(
        ctx.ingress_ifindex() as u32,
        Direction::XdpUplink,
        Reason::DropXdpDenied,
        (end - start) as u32,
    );
    xdp_action::XDP_DROP
}
