//! Pacing of datastore batches: a lone change is applied at once; a change that follows the
//! last batch closely (a burst, e.g. `felix apply` of 10,000 network sets, one put each) waits
//! out a short gap, and everything that arrives meanwhile is applied with it. Without the gap
//! each put of a burst would be a batch of its own, and felix's work per batch, multiplied by
//! the burst, would compete with the writer and etcd for the CPUs.

use std::time::Duration;

use tokio::time::Instant;

/// The least time between the ends of two batches while changes keep coming.
pub const BURST_GAP: Duration = Duration::from_millis(20);

/// When the next batch may start, given when the last one ended: `None` (at once) for a lone
/// change, else the end of the gap.
pub fn next_start(last_end: Option<Instant>, now: Instant) -> Option<Instant> {
    let ready = last_end? + BURST_GAP;
    (ready > now).then_some(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_change_starts_at_once_and_a_close_one_waits_out_the_gap() {
        let now = Instant::now();
        assert_eq!(next_start(None, now), None, "the first batch");
        assert_eq!(
            next_start(Some(now - BURST_GAP - Duration::from_millis(1)), now),
            None,
            "after a quiet gap"
        );
        let last = now - Duration::from_millis(5);
        assert_eq!(next_start(Some(last), now), Some(last + BURST_GAP));
    }
}
