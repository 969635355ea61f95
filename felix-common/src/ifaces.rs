//! The interfaces map: what felix attached where, readable by the CLI from any namespace.

/// Longest interface name the kernel allows, including the trailing NUL.
pub const IFNAME_LEN: usize = 16;

/// What an interface is to felix.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfaceRole {
    /// A `cali*` veth whose peer is a pod's `eth0`.
    Workload = 0,
    /// The host's uplink to the fabric.
    Uplink = 1,
}

impl IfaceRole {
    /// Decodes the value stored in [`IfaceInfo::role`].
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(IfaceRole::Workload),
            1 => Some(IfaceRole::Uplink),
            _ => None,
        }
    }

    /// Stable lower-case name used by the CLI and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            IfaceRole::Workload => "workload",
            IfaceRole::Uplink => "uplink",
        }
    }
}

/// How a program is attached to one hook of an interface.
pub mod attach_mode {
    /// No program attached.
    pub const NONE: u8 = 0;
    /// A TCX bpf_link (kernel 6.6 and later).
    pub const TCX: u8 = 1;
    /// A netlink `clsact` filter (older kernels).
    pub const NETLINK: u8 = 2;
    /// XDP in the driver (native).
    pub const XDP_DRIVER: u8 = 3;
    /// Generic (skb) XDP, where the driver has no native support.
    pub const XDP_SKB: u8 = 4;

    /// Stable lower-case name used by the CLI and in JSON.
    pub const fn name(mode: u8) -> &'static str {
        match mode {
            TCX => "tcx",
            NETLINK => "netlink",
            XDP_DRIVER => "xdp_driver",
            XDP_SKB => "xdp_skb",
            _ => "none",
        }
    }
}

/// Value of the interfaces map, keyed by ifindex (`u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceInfo {
    /// Interface name, NUL-padded.
    pub name: [u8; IFNAME_LEN],
    /// An [`IfaceRole`] value.
    pub role: u32,
    /// [`attach_mode`] of the ingress program.
    pub ingress: u8,
    /// [`attach_mode`] of the egress program.
    pub egress: u8,
    /// [`attach_mode`] of the XDP program.
    pub xdp: u8,
    /// Reserved, zero.
    pub _reserved: u8,
}

impl IfaceInfo {
    /// Builds an entry; a name longer than 15 bytes is cut (the kernel never makes one).
    pub fn new(name: &str, role: IfaceRole, ingress: u8, egress: u8, xdp: u8) -> Self {
        let mut buf = [0u8; IFNAME_LEN];
        let len = name.len().min(IFNAME_LEN - 1);
        buf[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self {
            name: buf,
            role: role as u32,
            ingress,
            egress,
            xdp,
            _reserved: 0,
        }
    }

    /// The name as text, up to the first NUL; `None` when it is not UTF-8.
    pub fn name_str(&self) -> Option<&str> {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(IFNAME_LEN);
        core::str::from_utf8(&self.name[..end]).ok()
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers and byte arrays only, no padding (layout test).
unsafe impl aya::Pod for IfaceInfo {}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn iface_info_layout_has_no_padding() {
        assert_eq!(size_of::<IfaceInfo>(), 24);
        assert_eq!(offset_of!(IfaceInfo, name), 0);
        assert_eq!(offset_of!(IfaceInfo, role), 16);
        assert_eq!(offset_of!(IfaceInfo, ingress), 20);
        assert_eq!(offset_of!(IfaceInfo, egress), 21);
        assert_eq!(offset_of!(IfaceInfo, xdp), 22);
        assert_eq!(offset_of!(IfaceInfo, _reserved), 23);
    }

    #[test]
    fn name_round_trips_and_long_names_are_cut() {
        let info = IfaceInfo::new("cali1234567890a", IfaceRole::Workload, 1, 1, 0);
        assert_eq!(info.name_str(), Some("cali1234567890a"));
        let long = IfaceInfo::new("a-name-longer-than-fifteen", IfaceRole::Uplink, 0, 0, 3);
        assert_eq!(long.name_str(), Some("a-name-longer-t"));
        assert_eq!(IfaceRole::from_u32(long.role), Some(IfaceRole::Uplink));
    }
}
