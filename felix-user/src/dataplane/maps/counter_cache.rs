//! The counter cache ([`felix_common::maps::COUNTER_CACHE`], lines of [`CounterCacheLine`]): the programs count
//! an interface's ordinary verdicts there, at an array index, when felix claimed the
//! interface's line, and in the counters map otherwise. felix claims lines when it attaches to
//! an interface and frees them once the interface is gone; every reader adds the cache to the
//! counters map's figures ([`add_to`]).
//!
//! User space writes only free lines (claim) and lines of interfaces that are gone (free), which
//! no program writes, so it never loses a count a program made meanwhile.

use std::{
    borrow::{Borrow, BorrowMut},
    collections::BTreeMap,
};

use aya::maps::{MapData, MapError, PerCpuArray, PerCpuValues};
use felix_common::{
    CounterCacheLine, CounterKey, CounterValue, Direction, IfaceRole, counters::CACHED_REASONS,
};

/// The counter cache over map data `T`: a loaded object's (`&mut MapData`) or a pin's
/// (`MapData`).
pub type CounterCacheMap<T> = PerCpuArray<T, CounterCacheLine>;

/// The directions of the TC programs on an interface of `role` (XDP counts only drops).
pub const fn directions(role: IfaceRole) -> &'static [Direction] {
    match role {
        IfaceRole::Workload => &[Direction::FromWorkload, Direction::ToWorkload],
        IfaceRole::Uplink => &[Direction::FromUplink, Direction::ToUplink],
    }
}

/// Claims the free lines of `ifindex`'s `directions`; returns how many it claimed. A line another
/// interface holds stays with it (this interface's packets of that direction are counted in the
/// counters map); one this interface holds already keeps its counts.
pub fn claim<T: BorrowMut<MapData>>(
    map: &mut CounterCacheMap<T>,
    ifindex: u32,
    directions: &[Direction],
) -> Result<usize, MapError> {
    let mut claimed = 0;
    for &direction in directions {
        let index = CounterCacheLine::index(ifindex, direction as u16);
        let current = map.get(&index, 0)?;
        if current.iter().any(|line| line.ifindex != 0) {
            continue;
        }
        let lines = vec![CounterCacheLine::claimed(ifindex, direction); current.len()];
        map.set(index, PerCpuValues::try_from(lines)?, 0)?;
        claimed += 1;
    }
    Ok(claimed)
}

/// Frees the lines of the interfaces for which `stale` holds (gone: no program counts for them
/// any more); returns how many it freed.
pub fn free_stale<T: BorrowMut<MapData>>(
    map: &mut CounterCacheMap<T>,
    stale: impl Fn(u32) -> bool,
) -> Result<usize, MapError> {
    let mut freed = 0;
    for index in 0..map.len() {
        let current = map.get(&index, 0)?;
        if !current
            .iter()
            .any(|line| line.ifindex != 0 && stale(line.ifindex))
        {
            continue;
        }
        // Every CPU's copy carries the same tag (claimed at once), but keep any other anyway.
        let lines: Vec<CounterCacheLine> = current
            .iter()
            .map(|line| {
                if line.ifindex != 0 && stale(line.ifindex) {
                    CounterCacheLine::default()
                } else {
                    *line
                }
            })
            .collect();
        map.set(index, PerCpuValues::try_from(lines)?, 0)?;
        freed += 1;
    }
    Ok(freed)
}

/// Adds the counts of every claimed line, summed over CPUs, to `totals` (keyed as the counters
/// map is); reasons without packets are left out, as the counters map has no entry for them.
pub fn add_to<T: Borrow<MapData>>(
    map: &CounterCacheMap<T>,
    totals: &mut BTreeMap<CounterKey, CounterValue>,
) -> Result<(), MapError> {
    for per_cpu in map.iter() {
        for line in per_cpu?.iter().filter(|line| line.ifindex != 0) {
            for (reason, value) in CACHED_REASONS.iter().zip(&line.values) {
                if value.packets == 0 {
                    continue;
                }
                let key = CounterKey {
                    ifindex: line.ifindex,
                    direction: line.direction,
                    reason: *reason as u16,
                };
                let total = totals.entry(key).or_default();
                total.packets += value.packets;
                total.bytes += value.bytes;
            }
        }
    }
    Ok(())
}

/// Lines some interface holds (for the map's fill metric).
pub fn claimed_lines<T: Borrow<MapData>>(map: &CounterCacheMap<T>) -> u64 {
    map.iter()
        .filter(|v| matches!(v, Ok(lines) if lines.iter().any(|l| l.ifindex != 0)))
        .count() as u64
}
