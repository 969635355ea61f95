//! Packet counters: one entry per (interface, direction, verdict reason).

/// Which way a packet crossed the interface, seen from the workload.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// TC ingress on a `cali*` interface: the packet leaves the pod.
    FromWorkload = 0,
    /// TC egress on a `cali*` interface: the packet enters the pod.
    ToWorkload = 1,
    /// TC ingress on the host's uplink: the packet arrives from the fabric.
    FromUplink = 2,
    /// TC egress on the host's uplink: the packet leaves for the fabric.
    ToUplink = 3,
    /// XDP on the host's uplink, before an skb exists.
    XdpUplink = 4,
}

impl Direction {
    /// Every direction, in numeric order.
    pub const ALL: [Direction; 5] = [
        Direction::FromWorkload,
        Direction::ToWorkload,
        Direction::FromUplink,
        Direction::ToUplink,
        Direction::XdpUplink,
    ];

    /// Decodes the value stored in [`CounterKey::direction`].
    pub const fn from_u16(value: u16) -> Option<Self> {
        match value {
            0 => Some(Direction::FromWorkload),
            1 => Some(Direction::ToWorkload),
            2 => Some(Direction::FromUplink),
            3 => Some(Direction::ToUplink),
            4 => Some(Direction::XdpUplink),
            _ => None,
        }
    }

    /// Stable lower-case name used by the CLI and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::FromWorkload => "from_workload",
            Direction::ToWorkload => "to_workload",
            Direction::FromUplink => "from_uplink",
            Direction::ToUplink => "to_uplink",
            Direction::XdpUplink => "xdp_uplink",
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
    /// Delivered to a local pod by redirect.
    ForwardedLocal = 5,
    /// Encapsulated in IPIP towards the host that owns the destination block.
    Encapsulated = 6,
    /// IPIP from a known host, decapsulated and delivered to a local pod.
    Decapsulated = 7,
    /// A packet on the uplink that is not ours to handle (not IPv4, not IPIP), passed.
    PassHost = 8,
    /// The source address is not the sending pod's own IP.
    DropSpoofed = 9,
    /// The interface has no endpoint yet (not synced from the datastore).
    DropNoEndpoint = 10,
    /// The destination is in a local block but no pod has it (blackhole), or no next hop.
    DropNoRoute = 11,
    /// Denied by policy.
    DropPolicy = 12,
    /// The conntrack table refused a new entry.
    DropCtFull = 13,
    /// Making room for, or writing, the outer IPIP header failed.
    DropEncapFailed = 14,
    /// Removing the outer IPIP header failed (or it carries options).
    DropDecapFailed = 15,
    /// IPIP whose outer source is not a known host.
    DropUnknownTunnelSource = 16,
    /// The TTL ran out while forwarding.
    DropTtlExceeded = 17,
    /// Too big for the path: for the tunnel (uplink MTU minus 20 bytes) or, routed natively,
    /// for the route's MTU; no fragmentation in BPF.
    DropFragNeeded = 18,
    /// The source is on the uplink's XDP deny list.
    DropXdpDenied = 19,
    /// The endpoint has no compiled policy yet (or its set is missing): fail closed.
    DropNoPolicy = 20,
    /// Sent natively (no IPIP, the pool's `ipipMode`) towards the host that owns the
    /// destination's block.
    ForwardedNative = 21,
    /// Allowed by policy but the conntrack table was full: passed without an entry (each of
    /// the flow's packets is judged by policy again). Counted besides the packet's verdict,
    /// under interface 0.
    CtFull = 22,
    /// A pod's first packet to a destination outside the pod network (a Service's address, an
    /// outside host), passed to the host stack unjudged: the stack may NAT it (kube-proxy,
    /// natOutgoing), so the pod's egress policy judges it where it leaves the stack.
    NatPending = 23,
    /// A packet of a flow that went through the host stack (which may have NATed it), passed
    /// back to the stack instead of being redirected, so the stack can undo its NAT (decapsulated
    /// first when it came in IPIP).
    ViaHostStack = 24,
    /// Too big for the path with DF set (see [`Reason::DropFragNeeded`]): answered with an ICMP
    /// "fragmentation needed" carrying the path's MTU, put into the sending pod.
    IcmpFragNeeded = 25,
    /// Too big for the path without DF: passed to the host stack, which fragments it.
    PassFragment = 26,
    /// A new flow of an endpoint that holds its share of the conntrack table
    /// (`BPFConntrackEndpointSharePercent`): dropped, counted on the interface it came by.
    DropCtEndpointShare = 27,
    /// An 802.1Q or 802.1ad (QinQ) tagged frame from a pod: the tag the kernel took out of the
    /// frame (`vlan_present`), or one still in it. Pods send untagged frames only.
    DropVlanTagged = 28,
    /// A later IPv4 fragment whose first fragment this host has not seen (out of order, or
    /// never sent): it carries no ports to judge it by.
    DropFragOrphan = 29,
    /// The TTL ran out while forwarding a pod's packet: answered with an ICMP time exceeded
    /// from the host, put into the sending pod.
    IcmpTtlExceeded = 30,
    /// The TTL of a packet from the fabric ran out on its way into a local pod: passed to the
    /// host stack (decapsulated first when it came in IPIP), whose forwarding answers it with
    /// an ICMP time exceeded, as the next hop of a traceroute.
    PassTtlExceeded = 31,
}

impl Reason {
    /// Every reason, in numeric order.
    pub const ALL: [Reason; 32] = [
        Reason::Allowed,
        Reason::PassArp,
        Reason::DropTooShort,
        Reason::DropBadHeader,
        Reason::DropUnsupportedL3,
        Reason::ForwardedLocal,
        Reason::Encapsulated,
        Reason::Decapsulated,
        Reason::PassHost,
        Reason::DropSpoofed,
        Reason::DropNoEndpoint,
        Reason::DropNoRoute,
        Reason::DropPolicy,
        Reason::DropCtFull,
        Reason::DropEncapFailed,
        Reason::DropDecapFailed,
        Reason::DropUnknownTunnelSource,
        Reason::DropTtlExceeded,
        Reason::DropFragNeeded,
        Reason::DropXdpDenied,
        Reason::DropNoPolicy,
        Reason::ForwardedNative,
        Reason::CtFull,
        Reason::NatPending,
        Reason::ViaHostStack,
        Reason::IcmpFragNeeded,
        Reason::PassFragment,
        Reason::DropCtEndpointShare,
        Reason::DropVlanTagged,
        Reason::DropFragOrphan,
        Reason::IcmpTtlExceeded,
        Reason::PassTtlExceeded,
    ];

    /// Decodes the value stored in [`CounterKey::reason`].
    pub const fn from_u16(value: u16) -> Option<Self> {
        match value {
            0 => Some(Reason::Allowed),
            1 => Some(Reason::PassArp),
            2 => Some(Reason::DropTooShort),
            3 => Some(Reason::DropBadHeader),
            4 => Some(Reason::DropUnsupportedL3),
            5 => Some(Reason::ForwardedLocal),
            6 => Some(Reason::Encapsulated),
            7 => Some(Reason::Decapsulated),
            8 => Some(Reason::PassHost),
            9 => Some(Reason::DropSpoofed),
            10 => Some(Reason::DropNoEndpoint),
            11 => Some(Reason::DropNoRoute),
            12 => Some(Reason::DropPolicy),
            13 => Some(Reason::DropCtFull),
            14 => Some(Reason::DropEncapFailed),
            15 => Some(Reason::DropDecapFailed),
            16 => Some(Reason::DropUnknownTunnelSource),
            17 => Some(Reason::DropTtlExceeded),
            18 => Some(Reason::DropFragNeeded),
            19 => Some(Reason::DropXdpDenied),
            20 => Some(Reason::DropNoPolicy),
            21 => Some(Reason::ForwardedNative),
            22 => Some(Reason::CtFull),
            23 => Some(Reason::NatPending),
            24 => Some(Reason::ViaHostStack),
            25 => Some(Reason::IcmpFragNeeded),
            26 => Some(Reason::PassFragment),
            27 => Some(Reason::DropCtEndpointShare),
            28 => Some(Reason::DropVlanTagged),
            29 => Some(Reason::DropFragOrphan),
            30 => Some(Reason::IcmpTtlExceeded),
            31 => Some(Reason::PassTtlExceeded),
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
            Reason::ForwardedLocal => "forwarded_local",
            Reason::Encapsulated => "encapsulated",
            Reason::Decapsulated => "decapsulated",
            Reason::PassHost => "pass_host",
            Reason::DropSpoofed => "drop_spoofed",
            Reason::DropNoEndpoint => "drop_no_endpoint",
            Reason::DropNoRoute => "drop_no_route",
            Reason::DropPolicy => "drop_policy",
            Reason::DropCtFull => "drop_ct_full",
            Reason::DropEncapFailed => "drop_encap_failed",
            Reason::DropDecapFailed => "drop_decap_failed",
            Reason::DropUnknownTunnelSource => "drop_unknown_tunnel_source",
            Reason::DropTtlExceeded => "drop_ttl_exceeded",
            Reason::DropFragNeeded => "drop_frag_needed",
            Reason::DropXdpDenied => "drop_xdp_denied",
            Reason::DropNoPolicy => "drop_no_policy",
            Reason::ForwardedNative => "forwarded_native",
            Reason::CtFull => "ct_full",
            Reason::NatPending => "nat_pending",
            Reason::ViaHostStack => "via_host_stack",
            Reason::IcmpFragNeeded => "icmp_frag_needed",
            Reason::PassFragment => "pass_fragment",
            Reason::DropCtEndpointShare => "drop_ct_endpoint_share",
            Reason::DropVlanTagged => "drop_vlan_tagged",
            Reason::DropFragOrphan => "drop_frag_orphan",
            Reason::IcmpTtlExceeded => "icmp_ttl_exceeded",
            Reason::PassTtlExceeded => "pass_ttl_exceeded",
        }
    }

    /// Whether packets with this reason are dropped.
    pub const fn is_drop(self) -> bool {
        !matches!(
            self,
            Reason::Allowed
                | Reason::PassArp
                | Reason::ForwardedLocal
                | Reason::Encapsulated
                | Reason::Decapsulated
                | Reason::PassHost
                | Reason::ForwardedNative
                | Reason::CtFull
                | Reason::NatPending
                | Reason::ViaHostStack
                | Reason::IcmpFragNeeded
                | Reason::PassFragment
                | Reason::IcmpTtlExceeded
                | Reason::PassTtlExceeded
        )
    }
}

/// Key of the counters map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Reasons of ordinary (non-drop) traffic that the counter cache holds, in the order of
/// [`CounterCacheLine::values`].
pub const CACHED_REASONS: [Reason; CACHED_REASON_COUNT] = [
    Reason::Allowed,
    Reason::ForwardedLocal,
    Reason::Encapsulated,
    Reason::Decapsulated,
    Reason::PassHost,
    Reason::ForwardedNative,
];
/// Length of [`CACHED_REASONS`].
pub const CACHED_REASON_COUNT: usize = 6;
/// Lines of the counter cache ([`crate::maps::COUNTER_CACHE`]); a power of two.
pub const COUNTER_CACHE_LINES: u32 = 1_024;

impl Reason {
    /// The index of this reason in [`CounterCacheLine::values`], if the cache holds it.
    pub const fn cache_index(self) -> Option<usize> {
        match self {
            Reason::Allowed => Some(0),
            Reason::ForwardedLocal => Some(1),
            Reason::Encapsulated => Some(2),
            Reason::Decapsulated => Some(3),
            Reason::PassHost => Some(4),
            Reason::ForwardedNative => Some(5),
            _ => None,
        }
    }
}

/// One line of the counter cache ([`crate::maps::COUNTER_CACHE`], a per-CPU array): the
/// counters of the [`CACHED_REASONS`] of one (interface, direction), found by array index
/// instead of a hash lookup. User space claims a line for an interface when it attaches to it
/// (tag set, values zero, the same on every CPU) and frees it (all zero) once the interface is
/// gone; the programs only add to a line whose tag is theirs, and count in the counters map
/// otherwise (a free line, or one another interface holds). An interface's counter is the sum of
/// both maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterCacheLine {
    /// The interface the line belongs to; 0: free.
    pub ifindex: u32,
    /// A [`Direction`] value.
    pub direction: u16,
    pub _pad: u16,
    /// Per reason of [`CACHED_REASONS`].
    pub values: [CounterValue; CACHED_REASON_COUNT],
}

impl CounterCacheLine {
    /// The line (interface, direction) may own: consecutive interfaces get consecutive pairs,
    /// ingress-side directions (even) and egress-side ones (odd) one each.
    pub const fn index(ifindex: u32, direction: u16) -> u32 {
        ifindex.wrapping_mul(2).wrapping_add(direction as u32 & 1) & (COUNTER_CACHE_LINES - 1)
    }

    /// A claimed line with no counts.
    pub const fn claimed(ifindex: u32, direction: Direction) -> Self {
        Self {
            ifindex,
            direction: direction as u16,
            _pad: 0,
            values: [CounterValue {
                packets: 0,
                bytes: 0,
            }; CACHED_REASON_COUNT],
        }
    }

    /// Whether the line counts for (`ifindex`, `direction`).
    pub const fn is_for(&self, ifindex: u32, direction: u16) -> bool {
        self.ifindex != 0 && self.ifindex == ifindex && self.direction == direction
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are `#[repr(C)]`, `Copy`, made only of integers, with no padding (see the
    // layout tests).
    unsafe impl aya::Pod for super::CounterKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CounterValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CounterCacheLine {}
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
    fn counter_cache_line_layout_has_no_padding() {
        assert_eq!(size_of::<CounterCacheLine>(), 8 + 16 * CACHED_REASON_COUNT);
        assert_eq!(offset_of!(CounterCacheLine, direction), 4);
        assert_eq!(offset_of!(CounterCacheLine, values), 8);
    }

    #[test]
    fn cached_reasons_are_not_drops_and_know_their_index() {
        for (index, reason) in CACHED_REASONS.iter().enumerate() {
            assert!(!reason.is_drop(), "{}", reason.name());
            assert_eq!(reason.cache_index(), Some(index));
        }
        let cached = Reason::ALL
            .iter()
            .filter(|r| r.cache_index().is_some())
            .count();
        assert_eq!(cached, CACHED_REASON_COUNT);
    }

    #[test]
    fn consecutive_interfaces_get_their_own_lines() {
        assert!(COUNTER_CACHE_LINES.is_power_of_two());
        let mut seen = [false; COUNTER_CACHE_LINES as usize];
        for ifindex in 7..7 + COUNTER_CACHE_LINES / 2 {
            for direction in [Direction::FromWorkload, Direction::ToWorkload] {
                let index = CounterCacheLine::index(ifindex, direction as u16);
                assert!(!seen[index as usize], "{ifindex} {direction:?}");
                seen[index as usize] = true;
            }
        }
        // The uplink's TC directions get a line each.
        assert_ne!(
            CounterCacheLine::index(2, Direction::FromUplink as u16),
            CounterCacheLine::index(2, Direction::ToUplink as u16)
        );
        let line = CounterCacheLine::claimed(9, Direction::ToWorkload);
        assert!(line.is_for(9, Direction::ToWorkload as u16));
        assert!(!line.is_for(9, Direction::FromWorkload as u16));
        assert!(
            !CounterCacheLine::default().is_for(0, 0),
            "a free line is no one's"
        );
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
        assert_eq!(Direction::from_u16(Direction::ALL.len() as u16), None);
    }

    #[test]
    fn drops_are_exactly_the_reasons_named_drop() {
        for reason in Reason::ALL {
            assert_eq!(
                reason.is_drop(),
                reason.name().starts_with("drop_"),
                "{}",
                reason.name()
            );
        }
    }
}
