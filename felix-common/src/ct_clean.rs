//! The in-kernel conntrack cleaner (`felix_ct_clean`, run by user space with
//! BPF_PROG_TEST_RUN): its request, its pass results, its state map and the per-endpoint
//! entry counts that bound each endpoint's share of the table.

use crate::conntrack::{CtState, CtValue, expired, proto};

/// What one pass is asked to do: the first bytes of the frame `felix_ct_clean` runs on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtCleanRequest {
    /// The clock (CLOCK_MONOTONIC, ns) ages are judged by; 0: the kernel's (coarse) clock.
    pub now_ns: u64,
    /// Most entries one endpoint may be charged with (0: no limit). Kept in
    /// [`CtCleanerState::endpoint_max`], where `create` reads it.
    pub endpoint_max: u32,
    /// Non-zero: the table is under pressure, evict [`early_drop`] entries of every endpoint.
    pub evict: u32,
}

/// What one pass did: returned in the frame (BPF_PROG_TEST_RUN's data out) and kept in
/// [`CtCleanerState::last`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtCleanStats {
    /// The clock the pass judged by.
    pub now_ns: u64,
    /// Entries the pass visited.
    pub scanned: u64,
    /// Entries left after the pass.
    pub live: u64,
    /// Entries removed past their timeout.
    pub removed_expired: u64,
    /// Entries evicted early: closing (FINs seen, reset) under pressure.
    pub removed_closing: u64,
    /// Entries evicted early: stale and unanswered (half-open TCP, one-way UDP) under pressure.
    pub removed_unanswered: u64,
    /// Endpoints that held entries.
    pub endpoints: u32,
    /// Non-zero when the whole table was under pressure.
    pub evicted_table_wide: u32,
}

/// The cleaner's state ([`crate::maps::CT_CLEANER`], index 0): the share limit `create`
/// enforces, the last pass and running totals since the map was created.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtCleanerState {
    /// Most entries one endpoint may be charged with (0: no limit).
    pub endpoint_max: u32,
    pub _pad: u32,
    /// Passes run.
    pub passes: u64,
    /// Totals of [`CtCleanStats`]'s removals.
    pub removed_expired: u64,
    pub removed_closing: u64,
    pub removed_unanswered: u64,
    /// The last pass.
    pub last: CtCleanStats,
}

/// Value of [`crate::maps::CT_ENDPOINTS`] (keyed by the endpoint's ifindex): the entries
/// charged to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEndpointCount {
    /// Entries charged to the endpoint: `create` adds one per flow it opens, each pass sets
    /// the count it saw.
    pub entries: u64,
    /// Of [`CtEndpointCount::entries`], flows that closed since the last pass (a packet moved
    /// them to FINs seen or reset: see [`charged`]); each pass sets it back to zero.
    pub released: u64,
    /// The cleaner's count during a pass.
    pub seen: u64,
}

impl CtEndpointCount {
    /// The entries that count against the endpoint's share.
    pub const fn charged(&self) -> u64 {
        self.entries.saturating_sub(self.released)
    }
}

/// Whether an entry counts against its endpoint's share: every flow but a closing one (FINs
/// seen, reset), which the cleaner may evict at any time under pressure and which a late
/// packet of it can do without (judged as its flow, see `mid_stream`). So a pod that opens and
/// closes many short connections is bounded by the flows it holds open, not by how fast the
/// closed ones expire.
pub const fn charged(value: &CtValue) -> bool {
    !is_closing(value.state)
}

/// Whether `state` (a [`CtState`] value) is a closing TCP state.
pub const fn is_closing(state: u8) -> bool {
    matches!(
        CtState::from_u8(state),
        Some(CtState::FinsSeen | CtState::Reset)
    )
}

/// An entry left idle this long without an answer is stale ([`early_drop`]).
pub const UNANSWERED_STALE_NS: u64 = 5_000_000_000;

/// Why an entry is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Past its timeout.
    Expired,
    /// Closing (FINs seen, reset), evicted under pressure.
    Closing,
    /// Stale and unanswered, evicted under pressure.
    Unanswered,
}

/// The entries Linux conntrack's early drop would take (`tcp_can_early_drop`, and entries
/// not yet "assured"): closing TCP flows, and flows idle for [`UNANSWERED_STALE_NS`] that
/// never completed a handshake (TCP) or were never answered (others). Never an established
/// flow, nor one answered both ways.
pub const fn early_drop(value: &CtValue, protocol: u8, now_ns: u64) -> Option<Removal> {
    let stale = now_ns.saturating_sub(value.last_seen_ns) >= UNANSWERED_STALE_NS;
    match CtState::from_u8(value.state) {
        Some(CtState::FinsSeen | CtState::Reset) => Some(Removal::Closing),
        Some(CtState::SynSent) if stale => Some(Removal::Unanswered),
        Some(CtState::Active)
            if protocol != proto::TCP
                && stale
                && (value.packets_a_to_b == 0 || value.packets_b_to_a == 0) =>
        {
            Some(Removal::Unanswered)
        }
        _ => None,
    }
}

/// What a pass does with an entry: remove it (and why) or keep it. `evict`: the table, or
/// the entry's endpoint, is under pressure.
pub const fn judge(value: &CtValue, protocol: u8, now_ns: u64, evict: bool) -> Option<Removal> {
    if expired(value, protocol, now_ns) {
        Some(Removal::Expired)
    } else if evict {
        early_drop(value, protocol, now_ns)
    } else {
        None
    }
}

/// Whether an endpoint charged with `entries` is near its share `endpoint_max` (90% of it):
/// its own early-drop entries are evicted then, so a flood of short flows into or out of one
/// pod frees its share without touching other pods' entries.
pub const fn endpoint_near_share(entries: u64, endpoint_max: u32) -> bool {
    endpoint_max > 0 && entries * 10 >= endpoint_max as u64 * 9
}

/// The entries one endpoint may hold: `percent` of `capacity`, at least one.
pub const fn endpoint_max(capacity: u32, percent: u8) -> u32 {
    if percent >= 100 {
        return 0;
    }
    let max = capacity as u64 * percent as u64 / 100;
    if max == 0 { 1 } else { max as u32 }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (layout tests).
    unsafe impl aya::Pod for super::CtCleanRequest {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CtCleanStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CtCleanerState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CtEndpointCount {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;
    use crate::conntrack::timeouts;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<CtCleanRequest>(), 16);
        assert_eq!(size_of::<CtCleanStats>(), 56);
        assert_eq!(offset_of!(CtCleanStats, endpoints), 48);
        assert_eq!(size_of::<CtCleanerState>(), 40 + 56);
        assert_eq!(offset_of!(CtCleanerState, last), 40);
        assert_eq!(size_of::<CtEndpointCount>(), 24);
    }

    fn entry(state: CtState, idle_ns: u64, answered: bool) -> (CtValue, u64) {
        let now = 100 * timeouts::TCP_ESTABLISHED_NS;
        let value = CtValue {
            last_seen_ns: now - idle_ns,
            state: state as u8,
            packets_a_to_b: 1,
            packets_b_to_a: u64::from(answered),
            ..CtValue::default()
        };
        (value, now)
    }

    #[test]
    fn established_flows_are_never_evicted() {
        let (value, now) = entry(CtState::Established, timeouts::TCP_SYN_NS, true);
        assert_eq!(judge(&value, proto::TCP, now, true), None);
        let (value, now) = entry(CtState::Established, timeouts::TCP_ESTABLISHED_NS + 1, true);
        assert_eq!(
            judge(&value, proto::TCP, now, false),
            Some(Removal::Expired)
        );
    }

    #[test]
    fn closing_flows_go_only_under_pressure() {
        for state in [CtState::FinsSeen, CtState::Reset] {
            let (value, now) = entry(state, 0, true);
            assert_eq!(judge(&value, proto::TCP, now, false), None);
            assert_eq!(judge(&value, proto::TCP, now, true), Some(Removal::Closing));
        }
    }

    #[test]
    fn unanswered_flows_go_once_stale() {
        let (fresh, now) = entry(CtState::SynSent, UNANSWERED_STALE_NS - 1, false);
        assert_eq!(judge(&fresh, proto::TCP, now, true), None);
        let (stale, now) = entry(CtState::SynSent, UNANSWERED_STALE_NS, false);
        assert_eq!(
            judge(&stale, proto::TCP, now, true),
            Some(Removal::Unanswered)
        );
        let (one_way, now) = entry(CtState::Active, UNANSWERED_STALE_NS, false);
        assert_eq!(
            judge(&one_way, proto::UDP, now, true),
            Some(Removal::Unanswered)
        );
        let (both_ways, now) = entry(CtState::Active, UNANSWERED_STALE_NS, true);
        assert_eq!(judge(&both_ways, proto::UDP, now, true), None);
    }

    #[test]
    fn closing_flows_are_not_charged_to_their_endpoint() {
        for (state, is_charged) in [
            (CtState::SynSent, true),
            (CtState::Established, true),
            (CtState::Active, true),
            (CtState::FinsSeen, false),
            (CtState::Reset, false),
        ] {
            let (value, _) = entry(state, 0, true);
            assert_eq!(charged(&value), is_charged, "{state:?}");
        }
        let count = CtEndpointCount {
            entries: 10,
            released: 4,
            seen: 0,
        };
        assert_eq!(count.charged(), 6);
        let raced = CtEndpointCount {
            entries: 1,
            released: 3,
            seen: 0,
        };
        assert_eq!(raced.charged(), 0, "a release racing a recount never wraps");
    }

    #[test]
    fn shares_are_a_percentage_of_the_table() {
        assert_eq!(endpoint_max(262_144, 25), 65_536);
        assert_eq!(endpoint_max(3, 25), 1);
        assert_eq!(endpoint_max(262_144, 100), 0, "100%: no limit");
        assert!(!endpoint_near_share(89, 100));
        assert!(endpoint_near_share(90, 100));
        assert!(!endpoint_near_share(1_000, 0), "no limit, never near it");
    }
}
