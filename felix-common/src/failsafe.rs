//! Failsafe ports: host ports the uplink's programs never drop, whatever the deny list says, so
//! that a bad deny list or policy cannot cut a host off (Calico's `FailsafeInboundHostPorts`
//! and `FailsafeOutboundHostPorts`).

/// [`FailsafeKey::direction`] of an inbound failsafe port: a packet *to* this host port passes.
pub const FAILSAFE_INBOUND: u8 = 0;
/// [`FailsafeKey::direction`] of an outbound failsafe port: a packet *from* this remote port
/// (the reply of a connection the host opened, e.g. to etcd or DNS) passes.
pub const FAILSAFE_OUTBOUND: u8 = 1;

/// Key of the failsafe map; the value is a `u32` set to 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailsafeKey {
    /// TCP, UDP or SCTP port, host byte order.
    pub port: u16,
    /// IP protocol number (6, 17, 132).
    pub proto: u8,
    /// [`FAILSAFE_INBOUND`] or [`FAILSAFE_OUTBOUND`].
    pub direction: u8,
}

impl FailsafeKey {
    /// The key of `proto`/`port` in `direction`.
    pub const fn new(direction: u8, proto: u8, port: u16) -> Self {
        Self {
            port,
            proto,
            direction,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (layout test).
unsafe impl aya::Pod for FailsafeKey {}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn failsafe_key_layout_has_no_padding() {
        assert_eq!(size_of::<FailsafeKey>(), 4);
        assert_eq!(offset_of!(FailsafeKey, port), 0);
        assert_eq!(offset_of!(FailsafeKey, proto), 2);
        assert_eq!(offset_of!(FailsafeKey, direction), 3);
    }
}
