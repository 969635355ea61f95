//! Connection tracking: one entry per flow under a normalised key, so both directions of a
//! flow find the same entry, in a plain hash (not an LRU: nothing is evicted on insert; the
//! cleaner removes expired entries, and closing ones under pressure, see [`crate::ct_clean`]).
//! Timeouts follow Calico's eBPF mode.

/// Key of the conntrack map: the flow's endpoints ordered so that (`addr_a`, `port_a`) is the
/// smaller of the two.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub addr_a: [u8; 4],
    pub addr_b: [u8; 4],
    /// Host order. For ICMP: the echo identifier on both sides.
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl CtKey {
    /// The key of the flow a packet (`src`:`sport` -> `dst`:`dport`) belongs to, and whether the
    /// packet travels from side A to side B.
    #[inline(always)]
    pub fn for_packet(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        proto: u8,
    ) -> (Self, bool) {
        // Integer comparisons only: BPF has no memcmp for array ordering.
        let (src_n, dst_n) = (u32::from_be_bytes(src), u32::from_be_bytes(dst));
        let a_to_b = src_n < dst_n || (src_n == dst_n && sport <= dport);
        let (addr_a, addr_b, port_a, port_b) = if a_to_b {
            (src, dst, sport, dport)
        } else {
            (dst, src, dport, sport)
        };
        let (p_a, p_b) = (port_a.to_ne_bytes(), port_b.to_ne_bytes());
        // Built as four words: field by field, the three pad bytes become a memset call in BPF.
        let words = [
            u32::from_ne_bytes(addr_a),
            u32::from_ne_bytes(addr_b),
            u32::from_ne_bytes([p_a[0], p_a[1], p_b[0], p_b[1]]),
            u32::from_ne_bytes([proto, 0, 0, 0]),
        ];
        // SAFETY: `CtKey` is `#[repr(C)]`, 16 bytes of integers without padding (layout test),
        // so any 16 bytes are a valid `CtKey`; these are its fields in order, pad zero.
        let key = unsafe { core::mem::transmute::<[u32; 4], Self>(words) };
        (key, a_to_b)
    }
}

/// Value of the conntrack map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// CLOCK_MONOTONIC (coarse: at the last tick) when the entry was created.
    pub created_ns: u64,
    /// CLOCK_MONOTONIC (coarse) of the last packet.
    pub last_seen_ns: u64,
    /// Packets from A to B.
    pub packets_a_to_b: u64,
    /// Packets from B to A.
    pub packets_b_to_a: u64,
    /// A [`CtState`] value.
    pub state: u8,
    /// [`ct_flags`] bits.
    pub flags: u8,
    /// Union of TCP flags sent by A.
    pub tcp_flags_a: u8,
    /// Union of TCP flags sent by B.
    pub tcp_flags_b: u8,
    /// The ifindex of the local endpoint the entry is charged to (the pod that opened the
    /// flow; for a flow into a pod from elsewhere, that pod); 0: none (host flows).
    pub owner_ifindex: u32,
}

/// Bits of [`CtValue::flags`].
pub mod ct_flags {
    /// Side A opened the flow (sent its first packet).
    pub const A_IS_INITIATOR: u8 = 1;
    /// The flow goes through the host stack, which may NAT it (kube-proxy's Services, the
    /// pool's natOutgoing): its packets are passed to the stack, never redirected past it, so
    /// the stack's own conntrack sees both directions and undoes its NAT.
    pub const VIA_HOST: u8 = 2;
    /// Opened by a pod towards a destination outside the pod network, before the host stack's
    /// NAT, and not yet judged: the pod's egress policy judges the packet where it leaves the
    /// stack (after NAT) and then clears this flag, or deletes the entry when it denies. Its
    /// replies (which the stack has un-NATed) are let in meanwhile: a backend in the host itself
    /// is reached without another judging point.
    pub const UNCONFIRMED: u8 = 4;
}

/// TCP flag bits, as in the TCP header's flags byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// The state of a flow.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    /// TCP: a SYN, not yet answered and acknowledged.
    SynSent = 1,
    /// TCP: handshake complete.
    Established = 2,
    /// TCP: both sides sent FIN.
    FinsSeen = 3,
    /// TCP: a RST was seen.
    Reset = 4,
    /// UDP, ICMP and other protocols: any packet seen.
    Active = 5,
}

impl CtState {
    /// Decodes the value stored in [`CtValue::state`].
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(CtState::SynSent),
            2 => Some(CtState::Established),
            3 => Some(CtState::FinsSeen),
            4 => Some(CtState::Reset),
            5 => Some(CtState::Active),
            _ => None,
        }
    }

    /// Stable lower-case name used by the CLI and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            CtState::SynSent => "syn_sent",
            CtState::Established => "established",
            CtState::FinsSeen => "fins_seen",
            CtState::Reset => "reset",
            CtState::Active => "active",
        }
    }
}

/// IP protocol numbers.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

const SECOND_NS: u64 = 1_000_000_000;

/// Timeouts, as Calico's eBPF mode sets them.
pub mod timeouts {
    use super::SECOND_NS;

    /// TCP before the handshake completes.
    pub const TCP_SYN_NS: u64 = 20 * SECOND_NS;
    /// TCP once established.
    pub const TCP_ESTABLISHED_NS: u64 = 3_600 * SECOND_NS;
    /// TCP after FINs from both sides.
    pub const TCP_FINS_SEEN_NS: u64 = 30 * SECOND_NS;
    /// TCP after a RST.
    pub const TCP_RESET_NS: u64 = 40 * SECOND_NS;
    /// UDP.
    pub const UDP_NS: u64 = 60 * SECOND_NS;
    /// ICMP.
    pub const ICMP_NS: u64 = 5 * SECOND_NS;
    /// Any other protocol.
    pub const GENERIC_NS: u64 = 600 * SECOND_NS;
}

/// The state of a TCP flow given the flags each side has sent.
pub const fn tcp_state(flags_a: u8, flags_b: u8) -> CtState {
    let both = flags_a | flags_b;
    if both & tcp_flags::RST != 0 {
        CtState::Reset
    } else if flags_a & tcp_flags::FIN != 0 && flags_b & tcp_flags::FIN != 0 {
        CtState::FinsSeen
    } else if flags_a & tcp_flags::SYN != 0
        && flags_b & tcp_flags::SYN != 0
        && flags_a & tcp_flags::ACK != 0
        && flags_b & tcp_flags::ACK != 0
    {
        CtState::Established
    } else {
        CtState::SynSent
    }
}

/// Whether a TCP packet with `flags` can open a flow: a SYN without ACK. Any other TCP packet
/// is mid-stream (it belongs to a flow that was opened before).
pub const fn tcp_opens_flow(flags: u8) -> bool {
    flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}

/// Whether a packet of protocol `proto` with TCP `flags` starts a new connection on an entry in
/// `state` instead of continuing it: a SYN without ACK on a flow that is over (reset by either
/// side, or FINs seen from both). As netfilter's TCP tracker does in CLOSE and TIME_WAIT (and
/// Calico's eBPF `tcp_recycled`, which asks for FIN or RST from both sides: a RST aborts the
/// connection for both, so one is enough here). The old entry must go and the packet be judged
/// by policy as a first packet.
pub const fn tcp_recycles(proto: u8, state: u8, flags: u8) -> bool {
    proto == proto::TCP
        && tcp_opens_flow(flags)
        && matches!(
            CtState::from_u8(state),
            Some(CtState::Reset | CtState::FinsSeen)
        )
}

/// The TCP flags to record for a flow re-opened by a mid-stream packet with `flags` (its entry
/// was evicted or flushed): (the sender's, the receiver's). The handshake happened before the
/// entry was lost, so both sides get SYN and ACK (a SYN+ACK reply: the receiver sent its SYN,
/// and its ACK is still to come), plus what the packet itself carries, so that the entry has the
/// state the flow is in and moves on from there.
pub const fn resumed_tcp_flags(flags: u8) -> (u8, u8) {
    let sender = flags | tcp_flags::SYN | tcp_flags::ACK;
    let receiver = if flags & tcp_flags::SYN != 0 {
        tcp_flags::SYN
    } else {
        tcp_flags::SYN | tcp_flags::ACK
    };
    (sender, receiver)
}

/// How long a flow in `state` of protocol `proto` lives without packets.
pub const fn timeout_ns(proto: u8, state: u8) -> u64 {
    match proto {
        proto::TCP => match CtState::from_u8(state) {
            Some(CtState::Established) => timeouts::TCP_ESTABLISHED_NS,
            Some(CtState::FinsSeen) => timeouts::TCP_FINS_SEEN_NS,
            Some(CtState::Reset) => timeouts::TCP_RESET_NS,
            _ => timeouts::TCP_SYN_NS,
        },
        proto::UDP => timeouts::UDP_NS,
        proto::ICMP => timeouts::ICMP_NS,
        _ => timeouts::GENERIC_NS,
    }
}

/// Whether an entry last seen at `last_seen_ns` has expired at `now_ns`.
pub const fn expired(value: &CtValue, proto: u8, now_ns: u64) -> bool {
    now_ns.saturating_sub(value.last_seen_ns) > timeout_ns(proto, value.state)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers and byte arrays, no padding (layout tests).
    unsafe impl aya::Pod for super::CtKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CtValue {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn ct_key_layout_has_no_padding() {
        assert_eq!(size_of::<CtKey>(), 16);
        assert_eq!(offset_of!(CtKey, addr_b), 4);
        assert_eq!(offset_of!(CtKey, port_a), 8);
        assert_eq!(offset_of!(CtKey, port_b), 10);
        assert_eq!(offset_of!(CtKey, proto), 12);
    }

    #[test]
    fn ct_value_layout_has_no_padding() {
        assert_eq!(size_of::<CtValue>(), 40);
        assert_eq!(offset_of!(CtValue, last_seen_ns), 8);
        assert_eq!(offset_of!(CtValue, packets_b_to_a), 24);
        assert_eq!(offset_of!(CtValue, state), 32);
        assert_eq!(offset_of!(CtValue, tcp_flags_b), 35);
        assert_eq!(offset_of!(CtValue, owner_ifindex), 36);
    }

    #[test]
    fn a_key_holds_its_fields_and_zero_padding() {
        let (key, a_to_b) = CtKey::for_packet([10, 0, 0, 9], 5, [10, 0, 0, 1], 0x1234, 17);
        assert!(!a_to_b);
        assert_eq!(
            key,
            CtKey {
                addr_a: [10, 0, 0, 1],
                addr_b: [10, 0, 0, 9],
                port_a: 0x1234,
                port_b: 5,
                proto: 17,
                _pad: [0; 3],
            }
        );
    }

    #[test]
    fn both_directions_share_one_key() {
        let (forward, f_a_to_b) =
            CtKey::for_packet([192, 168, 2, 1], 40000, [192, 168, 3, 1], 80, 6);
        let (reverse, r_a_to_b) =
            CtKey::for_packet([192, 168, 3, 1], 80, [192, 168, 2, 1], 40000, 6);
        assert_eq!(forward, reverse);
        assert_ne!(f_a_to_b, r_a_to_b);
    }

    #[test]
    fn tcp_handshake_and_teardown_states() {
        use tcp_flags::*;
        assert_eq!(tcp_state(SYN, 0), CtState::SynSent);
        assert_eq!(tcp_state(SYN, SYN | ACK), CtState::SynSent);
        assert_eq!(tcp_state(SYN | ACK, SYN | ACK), CtState::Established);
        assert_eq!(tcp_state(SYN | ACK | FIN, SYN | ACK), CtState::Established);
        assert_eq!(
            tcp_state(SYN | ACK | FIN, SYN | ACK | FIN),
            CtState::FinsSeen
        );
        assert_eq!(tcp_state(SYN, RST | ACK), CtState::Reset);
    }

    #[test]
    fn only_a_bare_syn_opens_a_flow() {
        use tcp_flags::*;
        assert!(tcp_opens_flow(SYN));
        assert!(!tcp_opens_flow(SYN | ACK));
        assert!(!tcp_opens_flow(ACK));
        assert!(!tcp_opens_flow(FIN | ACK));
        assert!(!tcp_opens_flow(RST));
        assert!(!tcp_opens_flow(0));
    }

    #[test]
    fn a_syn_recycles_a_flow_that_is_over_and_nothing_else_does() {
        use tcp_flags::*;
        let reset = tcp_state(SYN | ACK | RST, SYN | ACK) as u8;
        let fins = tcp_state(SYN | ACK | FIN, SYN | ACK | FIN) as u8;
        let established = tcp_state(SYN | ACK, SYN | ACK) as u8;
        let half_closed = tcp_state(SYN | ACK | FIN, SYN | ACK) as u8;
        let syn_sent = tcp_state(SYN, 0) as u8;
        for over in [reset, fins] {
            assert!(tcp_recycles(proto::TCP, over, SYN), "state {over}");
            assert!(!tcp_recycles(proto::TCP, over, SYN | ACK), "state {over}");
            assert!(!tcp_recycles(proto::TCP, over, ACK), "state {over}");
            assert!(!tcp_recycles(proto::TCP, over, RST), "state {over}");
            assert!(!tcp_recycles(proto::UDP, over, SYN), "UDP has no SYN");
        }
        for open in [established, half_closed, syn_sent] {
            assert!(!tcp_recycles(proto::TCP, open, SYN), "state {open}");
        }
    }

    #[test]
    fn a_resumed_flow_has_the_state_its_packet_implies() {
        use tcp_flags::*;
        let state = |flags: u8| {
            let (sender, receiver) = resumed_tcp_flags(flags);
            tcp_state(sender, receiver)
        };
        assert_eq!(state(ACK), CtState::Established);
        assert_eq!(state(ACK | 0x08), CtState::Established, "PSH");
        assert_eq!(state(FIN | ACK), CtState::Established, "one FIN");
        assert_eq!(state(RST), CtState::Reset);
        assert_eq!(state(RST | ACK), CtState::Reset);
        // A SYN+ACK whose SYN went unseen: established once the initiator ACKs.
        let (responder, initiator) = resumed_tcp_flags(SYN | ACK);
        assert_eq!(tcp_state(initiator, responder), CtState::SynSent);
        assert_eq!(tcp_state(initiator | ACK, responder), CtState::Established);
        // The other side's FIN after a resumed one: both FINs seen.
        let (sender, receiver) = resumed_tcp_flags(FIN | ACK);
        assert_eq!(tcp_state(sender, receiver | FIN), CtState::FinsSeen);
    }

    #[test]
    fn timeouts_follow_state_and_protocol() {
        assert_eq!(
            timeout_ns(proto::TCP, CtState::SynSent as u8),
            20 * SECOND_NS
        );
        assert_eq!(
            timeout_ns(proto::TCP, CtState::Established as u8),
            3_600 * SECOND_NS
        );
        assert_eq!(
            timeout_ns(proto::UDP, CtState::Active as u8),
            60 * SECOND_NS
        );
        assert_eq!(timeout_ns(47, CtState::Active as u8), 600 * SECOND_NS);
        let value = CtValue {
            last_seen_ns: 100,
            state: CtState::Active as u8,
            ..CtValue::default()
        };
        assert!(!expired(&value, proto::UDP, 100 + 60 * SECOND_NS));
        assert!(expired(&value, proto::UDP, 101 + 60 * SECOND_NS));
    }
}
