//! Conntrack near full: checked after every garbage-collection pass. At or above the threshold
//! felix logs a warning (at most once a minute while it stays there) and counts an event each
//! time the table crosses the threshold from below; `/metrics` serves the count.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use aya::maps::IterableMap as _;
use tracing::{info, warn};

use crate::dataplane::loader::Dataplane;

/// Times the conntrack table crossed its near-full threshold in this process.
static NEAR_FULL_EVENTS: AtomicU64 = AtomicU64::new(0);

/// How often the warning repeats while the table stays near full.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The near-full events counted so far (for `/metrics`).
pub fn near_full_events() -> u64 {
    NEAR_FULL_EVENTS.load(Ordering::Relaxed)
}

/// Whether `entries` of `capacity` is at or above `percent`.
pub fn is_near_full(entries: u64, capacity: u64, percent: u8) -> bool {
    capacity > 0 && entries * 100 >= capacity * u64::from(percent)
}

/// Tracks the threshold crossing and the warning's rate limit.
#[derive(Debug)]
pub struct NearFullWatch {
    percent: u8,
    near_full: bool,
    last_warning: Option<Instant>,
}

impl NearFullWatch {
    pub fn new(percent: u8) -> Self {
        Self {
            percent,
            near_full: false,
            last_warning: None,
        }
    }

    /// Counts the conntrack map's entries and reacts to the fill level.
    pub fn check(&mut self, dataplane: &mut Dataplane) {
        let Ok(map) = dataplane.conntrack() else {
            return;
        };
        let capacity = map.map().info().map_or(0, |i| u64::from(i.max_entries()));
        let entries = map.keys().flatten().count() as u64;
        self.observe(entries, capacity, Instant::now());
    }

    /// Reacts to a fill level at `now`; returns whether it warned.
    pub fn observe(&mut self, entries: u64, capacity: u64, now: Instant) -> bool {
        let near_full = is_near_full(entries, capacity, self.percent);
        if near_full && !self.near_full {
            NEAR_FULL_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
        if !near_full && self.near_full {
            info!(
                entries,
                capacity, "conntrack table below its near-full threshold again"
            );
        }
        self.near_full = near_full;
        let due = self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY);
        if near_full && due {
            warn!(
                entries,
                capacity,
                threshold_percent = self.percent,
                "conntrack table near full: new flows beyond its capacity pass untracked \
                 (counted as ct_full); raise BPFMapSizeConntrack"
            );
            self.last_warning = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_inclusive() {
        assert!(!is_near_full(89, 100, 90));
        assert!(is_near_full(90, 100, 90));
        assert!(!is_near_full(0, 0, 90));
    }

    #[test]
    fn warnings_are_rate_limited_and_crossings_counted() {
        let mut watch = NearFullWatch::new(50);
        let start = Instant::now();
        let before = near_full_events();
        assert!(!watch.observe(1, 10, start));
        assert!(watch.observe(5, 10, start));
        assert!(!watch.observe(6, 10, start + Duration::from_secs(30)));
        assert!(watch.observe(6, 10, start + Duration::from_secs(61)));
        // Staying near full is one event; leaving and coming back is another.
        assert!(!watch.observe(1, 10, start + Duration::from_secs(62)));
        watch.observe(9, 10, start + Duration::from_secs(200));
        assert!(near_full_events() >= before + 2);
    }
}
