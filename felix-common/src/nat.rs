//! Flows the host stack may NAT (kube-proxy's Services, natOutgoing): the packet marks that carry
//! what the programs learned across the host stack, and the map that remembers a first packet's
//! destination before NAT.
//!
//! A pod's first packet to a destination outside the pod network is passed to the host stack
//! unjudged, marked [`marks::NAT_PENDING`], and its flow is opened before NAT (the entry is
//! [`crate::conntrack::ct_flags::UNCONFIRMED`]). Where the packet leaves the stack (the uplink's
//! TC egress, or a local pod's `cali*` egress), the pod's egress policy judges it after NAT;
//! the source pod is the skb's ingress interface (NAT may have changed its address), and the
//! flow opened before NAT is found in [`crate::maps::NAT_ORIGINS`] by (ingress interface, IP ID,
//! protocol), which NAT does not change.

/// Bits felix sets in `skb->mark`, inside the range Calico reserves for felix (its default
/// `IptablesMarkMask`, 0xffff0000), clear of kube-proxy's 0x4000 (masquerade) and 0x8000 (drop).
/// A mark does not cross into a pod: the veth scrubs it.
pub mod marks {
    /// Set by `cali_from_wl` on a pod's packet passed to the host stack unjudged: the program
    /// where it leaves the stack runs the pod's egress policy.
    pub const NAT_PENDING: u32 = 0x0100_0000;
    /// Set by `cali_from_wl` on a pod's later packet of a flow that goes through the host
    /// stack: `uplink_out` records it in the flow as it is after NAT, whose entry decides where
    /// the backend's replies go and would otherwise see only them.
    pub const VIA_HOST_FLOW: u32 = 0x0200_0000;
}

/// Key of [`crate::maps::NAT_ORIGINS`]: what identifies a pod's packet on both sides of the
/// host stack's NAT.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatOriginKey {
    /// The `cali*` interface the packet came from.
    pub ifindex: u32,
    /// The IPv4 identification field, as on the wire.
    pub ip_id: u16,
    pub proto: u8,
    pub _pad: u8,
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers, no padding (layout test).
unsafe impl aya::Pod for NatOriginKey {}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn nat_origin_key_layout_has_no_padding() {
        assert_eq!(size_of::<NatOriginKey>(), 8);
        assert_eq!(offset_of!(NatOriginKey, ip_id), 4);
        assert_eq!(offset_of!(NatOriginKey, proto), 6);
    }

    #[test]
    fn marks_stay_in_felix_range_and_clear_of_kube_proxy() {
        const FELIX_MASK: u32 = 0xffff_0000;
        const KUBE_PROXY: u32 = 0x4000 | 0x8000;
        for mark in [marks::NAT_PENDING, marks::VIA_HOST_FLOW] {
            assert_eq!(mark & !FELIX_MASK, 0);
            assert_eq!(mark & KUBE_PROXY, 0);
            assert_eq!(mark.count_ones(), 1);
        }
        assert_ne!(marks::NAT_PENDING, marks::VIA_HOST_FLOW);
    }
}
