//! The routes map: an LPM trie from IPv4 CIDR to where packets for it go.

/// What a route leads to.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// A pod on this host, behind `ifindex`.
    LocalWorkload = 1,
    /// A block owned by another host: IPIP to `next_hop`.
    RemoteBlock = 2,
    /// An address of this host.
    LocalHost = 3,
    /// Another host of the cluster: IPIP from it is accepted.
    RemoteHost = 4,
    /// A block owned by this host: addresses no local pod has are dropped.
    LocalBlock = 5,
}

impl RouteKind {
    /// Decodes the value stored in [`RouteValue::kind`].
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(RouteKind::LocalWorkload),
            2 => Some(RouteKind::RemoteBlock),
            3 => Some(RouteKind::LocalHost),
            4 => Some(RouteKind::RemoteHost),
            5 => Some(RouteKind::LocalBlock),
            _ => None,
        }
    }

    /// Stable lower-case name used by the CLI and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            RouteKind::LocalWorkload => "local_workload",
            RouteKind::RemoteBlock => "remote_block",
            RouteKind::LocalHost => "local_host",
            RouteKind::RemoteHost => "remote_host",
            RouteKind::LocalBlock => "local_block",
        }
    }
}

/// Value of the routes map. The key is an LPM key over the address bytes (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteValue {
    /// A [`RouteKind`] value.
    pub kind: u32,
    /// The workload interface for [`RouteKind::LocalWorkload`], else 0.
    pub ifindex: u32,
    /// The owning host's address for [`RouteKind::RemoteBlock`], else 0.
    pub next_hop: [u8; 4],
    /// Reserved, zero.
    pub flags: u32,
}

impl RouteValue {
    /// Builds a route of `kind`.
    pub const fn new(kind: RouteKind, ifindex: u32, next_hop: [u8; 4]) -> Self {
        Self {
            kind: kind as u32,
            ifindex,
            next_hop,
            flags: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers and a byte array, no padding (layout test).
unsafe impl aya::Pod for RouteValue {}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn route_value_layout_has_no_padding() {
        assert_eq!(size_of::<RouteValue>(), 16);
        assert_eq!(offset_of!(RouteValue, kind), 0);
        assert_eq!(offset_of!(RouteValue, ifindex), 4);
        assert_eq!(offset_of!(RouteValue, next_hop), 8);
        assert_eq!(offset_of!(RouteValue, flags), 12);
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [
            RouteKind::LocalWorkload,
            RouteKind::RemoteBlock,
            RouteKind::LocalHost,
            RouteKind::RemoteHost,
            RouteKind::LocalBlock,
        ] {
            assert_eq!(RouteKind::from_u32(kind as u32), Some(kind));
        }
        assert_eq!(RouteKind::from_u32(0), None);
    }
}
