//! IPv4 fragments: a datagram's later fragments carry no L4 header, so they are judged and
//! tracked as their first fragment was. The programs record what a first fragment carried (its
//! ports, or ICMP type, code and id) under what all fragments of the datagram share (addresses,
//! protocol, IP ID), and give it to the later ones (as Calico's BPF dataplane does with its
//! `cali_v4_frgfwd` map).

/// How long a first fragment's record serves its later fragments: the kernel's default
/// `ipfrag_time` (30 s), after which a receiver has given up on the datagram anyway.
pub const FRAGMENT_TIMEOUT_NS: u64 = 30_000_000_000;

/// Key of [`crate::maps::FRAGMENTS`]: what every fragment of one datagram shares.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address, network byte order.
    pub saddr: [u8; 4],
    /// Destination address, network byte order.
    pub daddr: [u8; 4],
    /// The IPv4 identification field, as on the wire.
    pub ip_id: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Value of [`crate::maps::FRAGMENTS`]: what the first fragment's L4 header said.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragValue {
    /// When the first fragment was seen (`bpf_ktime_get_coarse_ns`).
    pub seen_ns: u64,
    /// Source port (TCP/UDP) or ICMP echo id; host order.
    pub sport: u16,
    /// Destination port (TCP/UDP) or ICMP echo id; host order.
    pub dport: u16,
    /// ICMP `type << 8 | code`; 0 for other protocols.
    pub icmp_type_code: u16,
    pub _pad: u16,
}

impl FragValue {
    /// Whether the record still serves a later fragment seen at `now_ns`.
    pub const fn is_live(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.seen_ns) < FRAGMENT_TIMEOUT_NS
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers, no padding (layout tests).
    unsafe impl aya::Pod for super::FragKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FragValue {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<FragKey>(), 12);
        assert_eq!(offset_of!(FragKey, ip_id), 8);
        assert_eq!(offset_of!(FragKey, proto), 10);
        assert_eq!(size_of::<FragValue>(), 16);
        assert_eq!(offset_of!(FragValue, sport), 8);
        assert_eq!(offset_of!(FragValue, icmp_type_code), 12);
    }

    #[test]
    fn a_record_serves_for_the_reassembly_timeout() {
        let v = FragValue {
            seen_ns: 5,
            sport: 1,
            dport: 2,
            icmp_type_code: 0,
            _pad: 0,
        };
        assert!(v.is_live(5));
        assert!(v.is_live(5 + FRAGMENT_TIMEOUT_NS - 1));
        assert!(!v.is_live(5 + FRAGMENT_TIMEOUT_NS));
        // A clock read on another CPU may lag the record: still live.
        assert!(v.is_live(0));
    }
}
