//! Counting: every verdict, and so every drop, increments a per-CPU counter.

use felix_common::{CounterKey, CounterValue, Direction, Reason};

use crate::maps::COUNTERS;

/// Adds one packet of `bytes` bytes to the counter of (`ifindex`, `direction`, `reason`).
#[inline(always)]
pub fn count(ifindex: u32, direction: Direction, reason: Reason, bytes: u32) {
    let key = CounterKey::new(ifindex, direction, reason);
    match COUNTERS.get_ptr_mut(&key) {
        // Per-CPU value: no other CPU writes it, so a plain add is race-free.
        Some(value) => unsafe {
            (*value).packets += 1;
            (*value).bytes += u64::from(bytes);
        },
        None => {
            let first = CounterValue {
                packets: 1,
                bytes: u64::from(bytes),
            };
            // Full map: the packet still gets its verdict; the loss shows as a missing key.
            let _ = COUNTERS.insert(&key, &first, 0);
        }
    }
}
