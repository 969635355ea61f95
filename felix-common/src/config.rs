//! The host configuration map: one entry (index 0) describing this host to the programs.

/// Value of the config array at index 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// This host's IPv4 address (outer source of IPIP), network byte order; zero until known.
    pub host_ip: [u8; 4],
    /// The uplink's ifindex.
    pub uplink_ifindex: u32,
    /// The uplink's MTU: an encapsulated packet must fit in it.
    pub uplink_mtu: u32,
    /// Reserved, zero.
    pub flags: u32,
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers and a byte array, no padding (layout test).
unsafe impl aya::Pod for HostConfig {}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn host_config_layout_has_no_padding() {
        assert_eq!(size_of::<HostConfig>(), 16);
        assert_eq!(offset_of!(HostConfig, host_ip), 0);
        assert_eq!(offset_of!(HostConfig, uplink_ifindex), 4);
        assert_eq!(offset_of!(HostConfig, uplink_mtu), 8);
        assert_eq!(offset_of!(HostConfig, flags), 12);
    }
}
