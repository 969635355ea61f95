//! Packet counters: one entry per (interface, direction, verdict reason).

/// Which way a packet crossed the interface, seen from the workload.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// TC ingress on a `cali*` interface: the packet leaves the pod.
    FromWorkload = 0,
    /// TC egress on a `cali*` interface: the packet enters the pod.
    ToWorkload = 1,
}

impl Direction {
    /// Every direction, in numeric order.
    pub const ALL: [Direction; 2] = [Direction::FromWorkload, Direction::ToWorkload];

    /// Decodes the value stored in [`CounterKey::direction`].
    pub const fn from_u16(value: u16) -> Option<Self> {
        match value {
            0 => Some(Direction::FromWorkload),
            1 => Some(Direction::ToWorkload),
            _ => None,
        }
    }

    /// Stable lower-case name used by the CLI and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::FromWorkload => "from_workload",
            Direction::ToWorkload => "to_workload",
        }
    }
}

/// Why a packet got its verdict. Every drop has its own reason, so every drop is explainable.
///
/// Values are part of the map layout: never renumber, only append.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A well-formed IPv4 packet that the program let through.
    Allowed = 0,
    /// ARP, passed untouched (pods resolve their gateway with it).
    PassArp = 1,
    /// The frame ends before the header it announces (Ethernet, IPv4 or L4).
    DropTooShort = 2,
    /// The IPv4 header is invalid: version, IHL below 5, or total length inconsistent.
    DropBadHeader = 3,
    /// An ethertype this dataplane does not carry (IPv6, VLAN, ...).
    DropUnsupportedL3 = 4,
}

impl Reason {
    /// Every reason, in numeric order.
    pub const ALL: [Reason; 5] = [
        Reason::Allowed,
        Reason::PassArp,
        Reason::DropTooShort,
        Reason::DropBadHeader,
        Reason::DropUnsupportedL3,
    ];

    /// Decodes the value stored in [`CounterKey::reason`].
    pub const fn from_u16(value: u16) -> Option<Self> {
        match value {
            0 => Some(Reason::Allowed),
            1 => Some(Reason::PassArp),
            2 => Some(Reason::DropTooShort),
            3 => Some(Reason::DropBadHeader),
            4 => Some(Reason::DropUnsupportedL3),
            _ => None,
        }
    }

    /// Stable lower-case name used by the CLI and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::PassArp => "pass_arp",
            Reason::DropTooShort => "drop_too_short",
            Reason::DropBadHeader => "drop_bad_header",
            Reason::DropUnsupportedL3 => "drop_unsupported_l3",
        }
    }

    /// Whether packets with this reason are dropped.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Reason::DropTooShort | Reason::DropBadHeader | Reason::DropUnsupportedL3
        )
    }
}

/// Key of the counters map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// Interface the program ran on.
    pub ifindex: u32,
    /// A [`Direction`] value.
    pub direction: u16,
    /// A [`Reason`] value.
    pub reason: u16,
}

impl CounterKey {
    /// Builds a key from its typed parts.
    pub const fn new(ifindex: u32, direction: Direction, reason: Reason) -> Self {
        Self {
            ifindex,
            direction: direction as u16,
            reason: reason as u16,
        }
    }
}

/// Value of the counters map (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValue {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen, counting from the Ethernet header.
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are `#[repr(C)]`, `Copy`, made only of integers, with no padding (see the
    // layout tests).
    unsafe impl aya::Pod for super::CounterKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CounterValue {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn counter_key_layout_has_no_padding() {
        assert_eq!(size_of::<CounterKey>(), 8);
        assert_eq!(offset_of!(CounterKey, ifindex), 0);
        assert_eq!(offset_of!(CounterKey, direction), 4);
        assert_eq!(offset_of!(CounterKey, reason), 6);
    }

    #[test]
    fn counter_value_layout_has_no_padding() {
        assert_eq!(size_of::<CounterValue>(), 16);
        assert_eq!(offset_of!(CounterValue, packets), 0);
        assert_eq!(offset_of!(CounterValue, bytes), 8);
    }

    #[test]
    fn reasons_round_trip_and_are_numbered_in_order() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{} is out of order", reason.name());
            assert_eq!(Reason::from_u16(*reason as u16), Some(*reason));
        }
        assert_eq!(Reason::from_u16(Reason::ALL.len() as u16), None);
    }

    #[test]
    fn directions_round_trip() {
        for direction in Direction::ALL {
            assert_eq!(Direction::from_u16(direction as u16), Some(direction));
        }
        assert_eq!(Direction::from_u16(2), None);
    }

    #[test]
    fn only_drop_reasons_are_drops() {
        assert!(!Reason::Allowed.is_drop());
        assert!(!Reason::PassArp.is_drop());
        assert!(Reason::DropTooShort.is_drop());
        assert!(Reason::DropBadHeader.is_drop());
        assert!(Reason::DropUnsupportedL3.is_drop());
    }
}
