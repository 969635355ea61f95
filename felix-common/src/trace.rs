//! Drop and policy-verdict events for `felix bpf trace`, streamed through a ring buffer.
//!
//! Tracing costs one array lookup per event site while nobody listens: the programs emit only
//! while [`TraceControl::enabled`] is set (by `felix bpf trace` for as long as it runs), and each
//! CPU spends from a token bucket ([`TraceBucket`], refilled at [`TraceControl::rate_per_sec`])
//! so that a flood cannot turn into an event storm; what the bucket refuses is counted.

/// [`TraceEvent::kind`]: a packet was dropped (any drop reason).
pub const EVENT_DROP: u8 = 0;
/// [`TraceEvent::kind`]: policy allowed a flow's first packet.
pub const EVENT_POLICY_ALLOW: u8 = 1;
/// [`TraceEvent::kind`]: policy denied a flow's first packet.
pub const EVENT_POLICY_DENY: u8 = 2;
/// [`TraceEvent::rule`] when no policy rule is involved.
pub const NO_RULE: u32 = u32::MAX;
/// Ring buffer size in bytes (a power of two, a multiple of the page size).
pub const TRACE_RING_BYTES: u32 = 1 << 20;
/// Events each CPU may emit in one burst before the rate applies.
pub const TRACE_BURST: u64 = 64;

/// One event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceEvent {
    /// `bpf_ktime_get_ns` when it happened.
    pub ts_ns: u64,
    pub ifindex: u32,
    /// A [`crate::Direction`] value.
    pub direction: u16,
    /// A [`crate::Reason`] value.
    pub reason: u16,
    /// Rule counter id of the deciding policy rule, or [`NO_RULE`].
    pub rule: u32,
    /// Packet length.
    pub len: u32,
    /// Source and destination address, network order (zero when the packet did not parse).
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// [`EVENT_DROP`], [`EVENT_POLICY_ALLOW`] or [`EVENT_POLICY_DENY`].
    pub kind: u8,
    pub _pad: [u8; 2],
}

/// Index 0 of the trace control array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceControl {
    /// Non-zero while a consumer listens.
    pub enabled: u32,
    /// Events per second each CPU may emit after its burst.
    pub rate_per_sec: u32,
}

/// Per-CPU token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceBucket {
    /// Tokens left (one per event).
    pub tokens: u64,
    /// When tokens were last added.
    pub refilled_ns: u64,
    /// Events the bucket refused.
    pub suppressed: u64,
    /// Events the ring buffer had no room for.
    pub lost: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]`, `Copy`, integers and byte arrays without padding (layout test).
    unsafe impl aya::Pod for TraceEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TraceControl {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TraceBucket {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<TraceEvent>(), 40);
        assert_eq!(offset_of!(TraceEvent, saddr), 24);
        assert_eq!(offset_of!(TraceEvent, proto), 36);
        assert_eq!(size_of::<TraceControl>(), 8);
        assert_eq!(size_of::<TraceBucket>(), 32);
    }
}
