//! The endpoints map: a local workload interface (by ifindex) -> the pod behind it.

/// Value of the endpoints map, keyed by the `cali*` interface's ifindex (`u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The pod's IPv4 address, network byte order.
    pub ip: [u8; 4],
    /// The MAC of the pod's `eth0`; all zero when unknown (the kernel's neighbour table is used).
    pub mac: [u8; 6],
    /// [`endpoint_flags`] bits.
    pub flags: u16,
    /// Policy slots ([`crate::policy`]): ingress at [`crate::policy::SLOT_INGRESS`], egress at
    /// [`crate::policy::SLOT_EGRESS`]; [`crate::policy::NO_SLOT`] until compiled (drops).
    pub policy_slots: [u32; 2],
}

/// Bits of [`EndpointInfo::flags`].
pub mod endpoint_flags {
    /// The pod's MAC is known.
    pub const MAC_KNOWN: u16 = 1;
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, byte arrays and integers, no padding (layout test).
unsafe impl aya::Pod for EndpointInfo {}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn endpoint_info_layout_has_no_padding() {
        assert_eq!(size_of::<EndpointInfo>(), 20);
        assert_eq!(offset_of!(EndpointInfo, ip), 0);
        assert_eq!(offset_of!(EndpointInfo, mac), 4);
        assert_eq!(offset_of!(EndpointInfo, flags), 10);
        assert_eq!(offset_of!(EndpointInfo, policy_slots), 12);
    }
}
