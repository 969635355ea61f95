//! The counters map ([`maps::COUNTERS`]): per-CPU packets and bytes per (interface, direction,
//! reason); an interface's ordinary verdicts may be counted in the counter cache instead
//! ([`super::counter_cache`]), and every reader adds both.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use felix_common::{CounterKey, CounterValue, Direction, Reason, maps};
use felix_rows::CounterRow;

use super::{InspectError, MapDump, counter_cache, ifaces::interface_names, map_error, open_as};
use crate::dataplane::pins::NodePaths;

/// The counters map over map data `T`: a loaded object's (`&mut MapData`, see
/// [`crate::dataplane::loader::Dataplane`]) or a pin's (`MapData`).
pub type CountersMap<T> = PerCpuHashMap<T, CounterKey, CounterValue>;

/// `felix bpf counters dump`.
pub struct Counters;

impl MapDump for Counters {
    const FIELD: &'static str = "counters";
    type Row = CounterRow;

    fn read(paths: &NodePaths) -> Result<Vec<CounterRow>, InspectError> {
        read_counters(paths)
    }

    fn table(rows: &[CounterRow]) -> String {
        counters_table(rows)
    }
}

/// Reads the counters map, summing each entry over CPUs and naming interfaces from the
/// interfaces map.
pub fn read_counters(paths: &NodePaths) -> Result<Vec<CounterRow>, InspectError> {
    let names = interface_names(paths)?;
    let map_err = map_error(paths, maps::COUNTERS);
    let map: CountersMap<MapData> = open_as(paths, maps::COUNTERS, PerCpuHashMap::try_from)?;
    let mut totals: BTreeMap<CounterKey, CounterValue> = BTreeMap::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry.map_err(&map_err)?;
        let total = totals.entry(key).or_default();
        for v in per_cpu.iter() {
            total.packets += v.packets;
            total.bytes += v.bytes;
        }
    }
    // The counter cache holds the rest (a felix before it pinned none).
    if paths.map(maps::COUNTER_CACHE).exists() {
        let cache: counter_cache::CounterCacheMap<MapData> =
            open_as(paths, maps::COUNTER_CACHE, PerCpuArray::try_from)?;
        counter_cache::add_to(&cache, &mut totals)
            .map_err(map_error(paths, maps::COUNTER_CACHE))?;
    }
    let mut rows: Vec<CounterRow> = totals
        .iter()
        .map(|(key, total)| counter_row(key, *total, &names))
        .collect();
    rows.sort_by(|a, b| {
        (&a.interface, a.ifindex, &a.direction, &a.reason).cmp(&(
            &b.interface,
            b.ifindex,
            &b.direction,
            &b.reason,
        ))
    });
    Ok(rows)
}

/// Builds a display row from a raw key and its summed value.
pub fn counter_row(
    key: &CounterKey,
    total: CounterValue,
    names: &BTreeMap<u32, String>,
) -> CounterRow {
    CounterRow {
        ifindex: key.ifindex,
        interface: names
            .get(&key.ifindex)
            .cloned()
            .unwrap_or_else(|| "?".into()),
        direction: Direction::from_u16(key.direction).map_or_else(
            || format!("direction_{}", key.direction),
            |d| d.name().into(),
        ),
        reason: Reason::from_u16(key.reason)
            .map_or_else(|| format!("reason_{}", key.reason), |r| r.name().into()),
        packets: total.packets,
        bytes: total.bytes,
    }
}

/// The counters as a table.
pub fn counters_table(rows: &[CounterRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.interface.clone(),
                r.ifindex.to_string(),
                r.direction.clone(),
                r.reason.clone(),
                r.packets.to_string(),
                r.bytes.to_string(),
            ]
        })
        .collect();
    felix_rows::table(
        &[
            "INTERFACE",
            "IFINDEX",
            "DIRECTION",
            "REASON",
            "PACKETS",
            "BYTES",
        ],
        &cells,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_rows_name_interfaces_and_unknown_values() {
        let names = BTreeMap::from([(7, "cali0123456789a".to_owned())]);
        let known = counter_row(
            &CounterKey::new(7, Direction::FromWorkload, Reason::DropBadHeader),
            CounterValue {
                packets: 2,
                bytes: 120,
            },
            &names,
        );
        assert_eq!(known.interface, "cali0123456789a");
        assert_eq!(known.direction, "from_workload");
        assert_eq!(known.reason, "drop_bad_header");
        let odd = counter_row(
            &CounterKey {
                ifindex: 9,
                direction: 5,
                reason: 999,
            },
            CounterValue::default(),
            &names,
        );
        assert_eq!(
            (
                odd.interface.as_str(),
                odd.direction.as_str(),
                odd.reason.as_str()
            ),
            ("?", "direction_5", "reason_999")
        );
    }
}
