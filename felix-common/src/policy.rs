//! Compiled policy: the maps that classify a flow's first packet in a fixed number of lookups,
//! whatever the number of rules.
//!
//! User space compiles each group of endpoints that share a policy into a *set* (an id). Per
//! set, three lookups classify a packet and a fourth gives the verdict:
//! 1. [`PolicyIpKey`] (LPM): the remote address -> an address class (`u32`);
//! 2. [`PolicyPortKey`] (LPM) with [`PORT_FIELD_DST`]: protocol and destination port (ICMP:
//!    `type << 8 | code`) -> a destination class (`u16`);
//! 3. the same with [`PORT_FIELD_SRC`] and the source port -> a source class (`u16`);
//! 4. [`PolicyVerdictKey`] -> [`PolicyVerdict`], falling back to the address class's row default
//!    (destination and source class [`CLASS_ANY`]).
//!
//! An endpoint points at a *slot* per direction ([`crate::EndpointInfo`]); the slot array holds
//! the slot's current set id. A policy change writes a whole new set, then flips the slot (one
//! map update), then deletes the old set: no packet sees half a policy.

/// Destination class and source class of a row default verdict.
pub const CLASS_ANY: u16 = u16::MAX;
/// [`PolicyPortKey::field`] of the destination port lookup.
pub const PORT_FIELD_DST: u8 = 0;
/// [`PolicyPortKey::field`] of the source port lookup.
pub const PORT_FIELD_SRC: u8 = 1;
/// Index of the ingress slot in [`crate::EndpointInfo::policy_slots`].
pub const SLOT_INGRESS: usize = 0;
/// Index of the egress slot in [`crate::EndpointInfo::policy_slots`].
pub const SLOT_EGRESS: usize = 1;
/// Slot (and set) id meaning "none".
pub const NO_SLOT: u32 = 0;

/// LPM prefix length that covers a set id alone (the root entry of a set's address trie).
pub const IP_KEY_SET_BITS: u32 = 32;
/// LPM prefix length that covers set id and field (a port trie's "any other protocol" entry).
pub const PORT_KEY_FIELD_BITS: u32 = 40;
/// LPM prefix length that covers set id, field and protocol (all ports of one protocol).
pub const PORT_KEY_PROTO_BITS: u32 = 48;

/// Data of the remote-address LPM key: set id then IPv4 address, both big-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyIpKey {
    pub set: [u8; 4],
    pub addr: [u8; 4],
}

/// Data of the port LPM key: set id, field, protocol, port (big-endian), one spare byte that
/// no prefix covers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyPortKey {
    pub set: [u8; 4],
    pub field: u8,
    pub proto: u8,
    pub port: [u8; 2],
}

/// Key of the verdict map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyVerdictKey {
    pub set: u32,
    pub ip_class: u32,
    pub dst_class: u16,
    pub src_class: u16,
}

/// Value of the verdict map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyVerdict {
    /// Index into the rule counters (which rule decided).
    pub rule: u32,
    /// 1 allow, 0 deny.
    pub allow: u8,
    pub _pad: [u8; 3],
}

impl PolicyIpKey {
    /// The key data for `addr` (network order) in `set`.
    pub const fn new(set: u32, addr: [u8; 4]) -> Self {
        PolicyIpKey {
            set: set.to_be_bytes(),
            addr,
        }
    }
}

impl PolicyPortKey {
    /// The key data for `port` of `proto` in `set`.
    pub const fn new(set: u32, field: u8, proto: u8, port: u16) -> Self {
        PolicyPortKey {
            set: set.to_be_bytes(),
            field,
            proto,
            port: port.to_be_bytes(),
        }
    }
}

impl PolicyVerdict {
    /// A verdict by rule counter `rule`.
    pub const fn new(rule: u32, allow: bool) -> Self {
        PolicyVerdict {
            rule,
            allow: allow as u8,
            _pad: [0; 3],
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]`, `Copy`, integers and byte arrays without padding (layout tests).
    unsafe impl aya::Pod for PolicyIpKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PolicyPortKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PolicyVerdictKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PolicyVerdict {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn keys_and_values_have_no_padding() {
        assert_eq!(size_of::<PolicyIpKey>(), 8);
        assert_eq!(size_of::<PolicyPortKey>(), 8);
        assert_eq!(offset_of!(PolicyPortKey, port), 6);
        assert_eq!(size_of::<PolicyVerdictKey>(), 12);
        assert_eq!(offset_of!(PolicyVerdictKey, dst_class), 8);
        assert_eq!(offset_of!(PolicyVerdictKey, src_class), 10);
        assert_eq!(size_of::<PolicyVerdict>(), 8);
    }

    #[test]
    fn prefix_lengths_cover_the_fields_in_order() {
        assert_eq!(IP_KEY_SET_BITS as usize, offset_of!(PolicyIpKey, addr) * 8);
        assert_eq!(
            PORT_KEY_FIELD_BITS as usize,
            offset_of!(PolicyPortKey, proto) * 8
        );
        assert_eq!(
            PORT_KEY_PROTO_BITS as usize,
            offset_of!(PolicyPortKey, port) * 8
        );
    }
}
