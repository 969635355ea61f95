//! Counting: every verdict, and so every drop, increments a per-CPU counter: in the interface's
//! line of the counter cache (an array slot) when the reason is an ordinary one and the line is
//! the interface's, else in the counters map (a hash lookup).

use felix_common::{CounterCacheLine, CounterKey, CounterValue, Direction, Reason};

use crate::maps::{COUNTER_CACHE, COUNTERS};

/// Adds one packet of `bytes` bytes to the counter of (`ifindex`, `direction`, `reason`).
#[inline(always)]
pub fn count(ifindex: u32, direction: Direction, reason: Reason, bytes: u32) {
    if let Some(slot) = reason.cache_index()
        && let Some(line) =
            COUNTER_CACHE.get_ptr_mut(CounterCacheLine::index(ifindex, direction as u16))
    {
        // SAFETY: a per-CPU slot: no other CPU writes it; user space rewrites only lines no
        // live interface owns.
        let line = unsafe { &mut *line };
        if line.is_for(ifindex, direction as u16)
            && let Some(value) = line.values.get_mut(slot)
        {
            value.packets += 1;
            value.bytes += u64::from(bytes);
            return;
        }
    }
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
