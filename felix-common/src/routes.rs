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

/// Bits of [`RouteValue::flags`]. Zero is what every route held before the flags existed (a
/// remote block reached through IPIP), so a map pinned by an older felix keeps its meaning and
/// the layout (and the map's name) stays the same.
pub mod route_flags {
    /// A [`super::RouteKind::RemoteBlock`] reached natively: no IPIP, the packet is forwarded
    /// as it is via the owning host (the pool's `ipipMode` is `Never`, or `CrossSubnet` with
    /// the host on this host's subnet). Without it, a remote block is reached through IPIP.
    pub const NATIVE: u32 = 1;
    /// Where the pool's `ipipMode` sits in the flags (for `felix bpf routes dump`; the programs
    /// only read [`NATIVE`]).
    pub const MODE_SHIFT: u32 = 1;
    /// Mask of the pool's `ipipMode` after [`MODE_SHIFT`].
    pub const MODE_MASK: u32 = 0b11;
}

/// A remote block's pool `ipipMode`, as recorded in [`RouteValue::flags`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolIpipMode {
    /// `Always` (also the value of routes written before the mode was recorded).
    Always = 0,
    /// `Never`.
    Never = 1,
    /// `CrossSubnet`.
    CrossSubnet = 2,
    /// The block lies in no IP pool: routed natively, as Calico does.
    NoPool = 3,
}

impl PoolIpipMode {
    /// The mode recorded in route `flags`.
    pub const fn from_flags(flags: u32) -> Self {
        match (flags >> route_flags::MODE_SHIFT) & route_flags::MODE_MASK {
            0 => PoolIpipMode::Always,
            1 => PoolIpipMode::Never,
            2 => PoolIpipMode::CrossSubnet,
            _ => PoolIpipMode::NoPool,
        }
    }

    /// Its bits in route flags.
    pub const fn to_flags(self) -> u32 {
        (self as u32) << route_flags::MODE_SHIFT
    }

    /// Stable name used by the CLI and in JSON (Calico's spelling; `none` without a pool).
    pub const fn name(self) -> &'static str {
        match self {
            PoolIpipMode::Always => "Always",
            PoolIpipMode::Never => "Never",
            PoolIpipMode::CrossSubnet => "CrossSubnet",
            PoolIpipMode::NoPool => "none",
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
    /// [`route_flags`] bits; zero except on remote blocks.
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

    /// A remote block owned by the host `next_hop`, under a pool of `mode`, reached natively
    /// when `native`, else through IPIP.
    pub const fn remote_block(next_hop: [u8; 4], mode: PoolIpipMode, native: bool) -> Self {
        let native = if native { route_flags::NATIVE } else { 0 };
        Self {
            kind: RouteKind::RemoteBlock as u32,
            ifindex: 0,
            next_hop,
            flags: native | mode.to_flags(),
        }
    }

    /// Whether a remote block is reached natively (no IPIP).
    pub const fn is_native(&self) -> bool {
        self.flags & route_flags::NATIVE != 0
    }

    /// The pool mode recorded for a remote block.
    pub const fn pool_ipip_mode(&self) -> PoolIpipMode {
        PoolIpipMode::from_flags(self.flags)
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

    #[test]
    fn remote_block_flags_round_trip() {
        for mode in [
            PoolIpipMode::Always,
            PoolIpipMode::Never,
            PoolIpipMode::CrossSubnet,
            PoolIpipMode::NoPool,
        ] {
            for native in [false, true] {
                let route = RouteValue::remote_block([10, 0, 0, 2], mode, native);
                assert_eq!(route.kind, RouteKind::RemoteBlock as u32);
                assert_eq!(route.is_native(), native);
                assert_eq!(route.pool_ipip_mode(), mode);
            }
        }
    }

    #[test]
    fn zero_flags_mean_ipip_under_always() {
        // What an older felix wrote: it must keep meaning IPIP.
        let old = RouteValue::new(RouteKind::RemoteBlock, 0, [10, 0, 0, 2]);
        assert!(!old.is_native());
        assert_eq!(old.pool_ipip_mode(), PoolIpipMode::Always);
        assert_eq!(
            old,
            RouteValue::remote_block([10, 0, 0, 2], PoolIpipMode::Always, false)
        );
    }
}
