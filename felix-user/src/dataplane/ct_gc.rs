//! Conntrack garbage collection in user space: remove entries past their timeout, a bounded
//! number per pass so one pass never stalls the agent. The LRU map also evicts under pressure.

use felix_common::{CtKey, conntrack::expired};
use tracing::{debug, warn};

use crate::dataplane::loader::Dataplane;

/// At most this many entries are removed per pass.
pub const MAX_REMOVALS_PER_PASS: usize = 65_536;

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of conntrack's ages (the programs read it at
/// the last tick, `bpf_ktime_get_coarse_ns`).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

/// Removes expired entries; returns how many.
pub fn collect(dataplane: &mut Dataplane) -> usize {
    let mut map = match dataplane.conntrack() {
        Ok(map) => map,
        Err(error) => {
            warn!(%error, "conntrack GC skipped");
            return 0;
        }
    };
    let now = monotonic_ns();
    let stale: Vec<CtKey> = map
        .iter()
        .flatten()
        .filter(|(key, value)| expired(value, key.proto, now))
        .map(|(key, _)| key)
        .take(MAX_REMOVALS_PER_PASS)
        .collect();
    let removed = stale.iter().filter(|key| map.remove(key).is_ok()).count();
    if removed > 0 {
        debug!(removed, "conntrack GC");
    }
    removed
}

/// Removes every entry; returns how many.
pub fn flush(dataplane: &mut Dataplane) -> usize {
    let Ok(mut map) = dataplane.conntrack() else {
        return 0;
    };
    let keys: Vec<CtKey> = map.keys().flatten().collect();
    keys.iter().filter(|key| map.remove(key).is_ok()).count()
}
