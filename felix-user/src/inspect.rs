//! Reading felix's pinned maps back for operators: `felix bpf counters dump`, `felix bpf ifaces
//! dump`. Works from any network namespace: interface names come from the interfaces map.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use aya::maps::{HashMap, Map, MapData, MapError, PerCpuHashMap};
use felix_common::{
    CounterKey, CounterValue, Direction, IfaceInfo, IfaceRole, Reason, ifaces::attach_mode, maps,
};
use serde::Serialize;

use crate::pins::NodePaths;

/// Errors reading pinned maps.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The map could not be opened or read.
    #[error("map {path}: {source}")]
    Map {
        path: PathBuf,
        #[source]
        source: MapError,
    },
}

/// One line of `felix bpf counters dump`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CounterRow {
    pub ifindex: u32,
    pub interface: String,
    pub direction: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

/// One line of `felix bpf ifaces dump`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IfaceRow {
    pub ifindex: u32,
    pub name: String,
    pub role: String,
    pub ingress: String,
    pub egress: String,
}

fn open(paths: &NodePaths, name: &str) -> Result<Map, InspectError> {
    let path = paths.map(name);
    MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|source| InspectError::Map { path, source })
}

/// Reads the interfaces map.
pub fn read_ifaces(paths: &NodePaths) -> Result<Vec<IfaceRow>, InspectError> {
    let path = paths.map(maps::IFACES);
    let map_err = |source| InspectError::Map {
        path: path.clone(),
        source,
    };
    let map: HashMap<MapData, u32, IfaceInfo> =
        HashMap::try_from(open(paths, maps::IFACES)?).map_err(map_err)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (ifindex, info) = entry.map_err(map_err)?;
        rows.push(IfaceRow {
            ifindex,
            name: info.name_str().unwrap_or("?").to_owned(),
            role: IfaceRole::from_u32(info.role)
                .map_or_else(|| format!("role_{}", info.role), |r| r.name().to_owned()),
            ingress: attach_mode::name(info.ingress).to_owned(),
            egress: attach_mode::name(info.egress).to_owned(),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.ifindex.cmp(&b.ifindex)));
    Ok(rows)
}

/// Reads the counters map, summing each entry over CPUs and naming interfaces from the
/// interfaces map.
pub fn read_counters(paths: &NodePaths) -> Result<Vec<CounterRow>, InspectError> {
    let names: BTreeMap<u32, String> = read_ifaces(paths)?
        .into_iter()
        .map(|row| (row.ifindex, row.name))
        .collect();
    let path = paths.map(maps::COUNTERS);
    let map_err = |source| InspectError::Map {
        path: path.clone(),
        source,
    };
    let map: PerCpuHashMap<MapData, CounterKey, CounterValue> =
        PerCpuHashMap::try_from(open(paths, maps::COUNTERS)?).map_err(map_err)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry.map_err(map_err)?;
        let total = per_cpu
            .iter()
            .fold(CounterValue::default(), |sum, v| CounterValue {
                packets: sum.packets + v.packets,
                bytes: sum.bytes + v.bytes,
            });
        rows.push(counter_row(&key, total, &names));
    }
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

/// Renders rows as an aligned text table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
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
    table(
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

/// The interfaces as a table.
pub fn ifaces_table(rows: &[IfaceRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.ifindex.to_string(),
                r.role.clone(),
                r.ingress.clone(),
                r.egress.clone(),
            ]
        })
        .collect();
    table(
        &["INTERFACE", "IFINDEX", "ROLE", "INGRESS", "EGRESS"],
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

    #[test]
    fn table_aligns_columns() {
        let text = table(&["A", "LONGER"], &[vec!["wide-cell".into(), "1".into()]]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A          LONGER");
        assert_eq!(lines[1], "wide-cell  1");
    }
}
