//! Reading felix's pinned maps back for operators: `felix bpf counters dump`, `felix bpf ifaces
//! dump`. Works from any network namespace: interface names come from the interfaces map.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use std::net::Ipv4Addr;

use aya::maps::{
    HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, lpm_trie::Key,
};
use felix_common::{
    CounterCacheLine, CounterKey, CounterValue, CtKey, CtState, CtValue, Direction, EndpointInfo,
    IfaceInfo, IfaceRole, Reason, RouteKind, RouteValue, conntrack::ct_flags, ifaces::attach_mode,
    maps,
};
use ipnet::Ipv4Net;
use serde::Serialize;

use crate::dataplane::pins::NodePaths;

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
    pub xdp: String,
}

/// One line of `felix bpf endpoints dump`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EndpointRow {
    pub ifindex: u32,
    pub interface: String,
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
}

/// One line of `felix bpf routes dump`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RouteRow {
    pub cidr: String,
    pub kind: String,
    pub ifindex: u32,
    pub interface: Option<String>,
    pub next_hop: Option<Ipv4Addr>,
    /// For a remote block: `ipip` or `native`.
    pub encap: Option<String>,
    /// For a remote block: its pool's `ipipMode` (`Always`, `Never`, `CrossSubnet`; `none`
    /// outside every pool).
    pub ipip_mode: Option<String>,
}

/// One line of `felix bpf conntrack dump`: the flow as its initiator sent it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConntrackRow {
    pub proto: String,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub state: String,
    pub packets_forward: u64,
    pub packets_reverse: u64,
    pub age_s: f64,
    pub idle_s: f64,
}

/// One line of `felix bpf xdp-deny dump`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DenyRow {
    pub cidr: String,
}

/// Opens a pinned map of `paths`' node (also used by the commands that write).
pub fn open(paths: &NodePaths, name: &str) -> Result<Map, InspectError> {
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
            xdp: attach_mode::name(info.xdp).to_owned(),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.ifindex.cmp(&b.ifindex)));
    Ok(rows)
}

fn interface_names(paths: &NodePaths) -> Result<BTreeMap<u32, String>, InspectError> {
    Ok(read_ifaces(paths)?
        .into_iter()
        .map(|row| (row.ifindex, row.name))
        .collect())
}

/// Reads the endpoints map.
pub fn read_endpoints(paths: &NodePaths) -> Result<Vec<EndpointRow>, InspectError> {
    let names = interface_names(paths)?;
    let path = paths.map(maps::ENDPOINTS);
    let map_err = |source| InspectError::Map {
        path: path.clone(),
        source,
    };
    let map: HashMap<MapData, u32, EndpointInfo> =
        HashMap::try_from(open(paths, maps::ENDPOINTS)?).map_err(map_err)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (ifindex, info) = entry.map_err(map_err)?;
        rows.push(EndpointRow {
            ifindex,
            interface: names.get(&ifindex).cloned().unwrap_or_else(|| "?".into()),
            ip: Ipv4Addr::from(info.ip),
            mac: (info.flags & felix_common::endpoints::endpoint_flags::MAC_KNOWN != 0)
                .then(|| format_mac(info.mac)),
        });
    }
    rows.sort_by_key(|row| row.ip);
    Ok(rows)
}

/// Reads the routes map.
pub fn read_routes(paths: &NodePaths) -> Result<Vec<RouteRow>, InspectError> {
    let names = interface_names(paths)?;
    let path = paths.map(maps::ROUTES);
    let map_err = |source| InspectError::Map {
        path: path.clone(),
        source,
    };
    let map: LpmTrie<MapData, [u8; 4], RouteValue> =
        LpmTrie::try_from(open(paths, maps::ROUTES)?).map_err(map_err)?;
    let mut rows: Vec<(Ipv4Net, RouteRow)> = Vec::new();
    for entry in map.iter() {
        let (key, value): (Key<[u8; 4]>, RouteValue) = entry.map_err(map_err)?;
        let prefix = u8::try_from(key.prefix_len()).unwrap_or(32).min(32);
        let cidr = Ipv4Net::new(Ipv4Addr::from(key.data()), prefix).unwrap_or_default();
        rows.push((cidr, route_row(cidr, &value, &names)));
    }
    rows.sort_by_key(|(cidr, _)| (cidr.addr(), cidr.prefix_len()));
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

/// One routes map entry as a row; `names` names interfaces by ifindex.
fn route_row(cidr: Ipv4Net, value: &RouteValue, names: &BTreeMap<u32, String>) -> RouteRow {
    let kind = RouteKind::from_u32(value.kind);
    let remote = kind == Some(RouteKind::RemoteBlock);
    RouteRow {
        cidr: cidr.to_string(),
        kind: kind.map_or_else(|| format!("kind_{}", value.kind), |k| k.name().into()),
        ifindex: value.ifindex,
        interface: (kind == Some(RouteKind::LocalWorkload)).then(|| {
            names
                .get(&value.ifindex)
                .cloned()
                .unwrap_or_else(|| "?".into())
        }),
        next_hop: remote.then(|| Ipv4Addr::from(value.next_hop)),
        encap: remote.then(|| if value.is_native() { "native" } else { "ipip" }.into()),
        ipip_mode: remote.then(|| value.pool_ipip_mode().name().into()),
    }
}

/// Reads the conntrack map; ages are relative to `now_ns` (CLOCK_MONOTONIC).
pub fn read_conntrack(paths: &NodePaths, now_ns: u64) -> Result<Vec<ConntrackRow>, InspectError> {
    let path = paths.map(maps::CONNTRACK);
    let map_err = |source| InspectError::Map {
        path: path.clone(),
        source,
    };
    let map: HashMap<MapData, CtKey, CtValue> =
        HashMap::try_from(open(paths, maps::CONNTRACK)?).map_err(map_err)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (key, value) = entry.map_err(map_err)?;
        rows.push(conntrack_row(&key, &value, now_ns));
    }
    rows.sort_by_key(|r| (r.src, r.sport, r.dst, r.dport));
    Ok(rows)
}

/// Builds a display row, oriented from the flow's initiator.
pub fn conntrack_row(key: &CtKey, value: &CtValue, now_ns: u64) -> ConntrackRow {
    let a_first = value.flags & ct_flags::A_IS_INITIATOR != 0;
    let (src, sport, dst, dport, forward, reverse) = if a_first {
        (
            key.addr_a,
            key.port_a,
            key.addr_b,
            key.port_b,
            value.packets_a_to_b,
            value.packets_b_to_a,
        )
    } else {
        (
            key.addr_b,
            key.port_b,
            key.addr_a,
            key.port_a,
            value.packets_b_to_a,
            value.packets_a_to_b,
        )
    };
    let seconds = |ns: u64| ns as f64 / 1e9;
    ConntrackRow {
        proto: match key.proto {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            other => other.to_string(),
        },
        src: Ipv4Addr::from(src),
        sport,
        dst: Ipv4Addr::from(dst),
        dport,
        state: CtState::from_u8(value.state)
            .map_or_else(|| format!("state_{}", value.state), |s| s.name().into()),
        packets_forward: forward,
        packets_reverse: reverse,
        age_s: seconds(now_ns.saturating_sub(value.created_ns)),
        idle_s: seconds(now_ns.saturating_sub(value.last_seen_ns)),
    }
}

/// Reads the XDP deny list.
pub fn read_xdp_deny(paths: &NodePaths) -> Result<Vec<DenyRow>, InspectError> {
    let path = paths.map(maps::XDP_DENY);
    let map_err = |source| InspectError::Map {
        path: path.clone(),
        source,
    };
    let map: LpmTrie<MapData, [u8; 4], u32> =
        LpmTrie::try_from(open(paths, maps::XDP_DENY)?).map_err(map_err)?;
    let mut cidrs = Vec::new();
    for key in map.keys() {
        let key = key.map_err(map_err)?;
        let prefix = u8::try_from(key.prefix_len()).unwrap_or(32).min(32);
        cidrs.push(Ipv4Net::new(Ipv4Addr::from(key.data()), prefix).unwrap_or_default());
    }
    cidrs.sort();
    Ok(cidrs
        .into_iter()
        .map(|cidr| DenyRow {
            cidr: cidr.to_string(),
        })
        .collect())
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads the counters map, summing each entry over CPUs and naming interfaces from the
/// interfaces map.
pub fn read_counters(paths: &NodePaths) -> Result<Vec<CounterRow>, InspectError> {
    let names = interface_names(paths)?;
    let path = paths.map(maps::COUNTERS);
    let map_err = |source| InspectError::Map {
        path: path.clone(),
        source,
    };
    let map: PerCpuHashMap<MapData, CounterKey, CounterValue> =
        PerCpuHashMap::try_from(open(paths, maps::COUNTERS)?).map_err(map_err)?;
    let mut totals: BTreeMap<CounterKey, CounterValue> = BTreeMap::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry.map_err(map_err)?;
        let total = totals.entry(key).or_default();
        for v in per_cpu.iter() {
            total.packets += v.packets;
            total.bytes += v.bytes;
        }
    }
    // The counter cache holds the rest (a felix before it pinned none).
    let cache_path = paths.map(maps::COUNTER_CACHE);
    if cache_path.exists() {
        let cache_err = |source| InspectError::Map {
            path: cache_path.clone(),
            source,
        };
        let cache: PerCpuArray<MapData, CounterCacheLine> =
            PerCpuArray::try_from(open(paths, maps::COUNTER_CACHE)?).map_err(cache_err)?;
        crate::dataplane::counter_cache::add_to(&cache, &mut totals).map_err(cache_err)?;
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
                r.xdp.clone(),
            ]
        })
        .collect();
    table(
        &["INTERFACE", "IFINDEX", "ROLE", "INGRESS", "EGRESS", "XDP"],
        &cells,
    )
}

/// The endpoints as a table.
pub fn endpoints_table(rows: &[EndpointRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.ip.to_string(),
                r.interface.clone(),
                r.ifindex.to_string(),
                r.mac.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["IP", "INTERFACE", "IFINDEX", "MAC"], &cells)
}

/// The routes as a table.
pub fn routes_table(rows: &[RouteRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let via = match (&r.interface, r.next_hop) {
                (Some(iface), _) => format!("dev {iface}"),
                (None, Some(hop)) => {
                    format!("{} via {hop}", r.encap.as_deref().unwrap_or("ipip"))
                }
                _ => "-".into(),
            };
            let mode = r.ipip_mode.clone().unwrap_or_else(|| "-".into());
            vec![r.cidr.clone(), r.kind.clone(), via, mode]
        })
        .collect();
    table(&["CIDR", "KIND", "VIA", "IPIP MODE"], &cells)
}

/// The conntrack table as a table.
pub fn conntrack_table(rows: &[ConntrackRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.proto.clone(),
                format!("{}:{}", r.src, r.sport),
                format!("{}:{}", r.dst, r.dport),
                r.state.clone(),
                format!("{}/{}", r.packets_forward, r.packets_reverse),
                format!("{:.1}", r.age_s),
                format!("{:.1}", r.idle_s),
            ]
        })
        .collect();
    table(
        &[
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "STATE",
            "PKTS FWD/REV",
            "AGE S",
            "IDLE S",
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

    #[test]
    fn conntrack_rows_read_from_the_initiator() {
        let (key, a_to_b) = CtKey::for_packet([192, 168, 3, 1], 80, [192, 168, 2, 1], 40000, 6);
        assert!(
            !a_to_b,
            "192.168.2.1 sorts first, so the packet travels B to A"
        );
        let value = CtValue {
            created_ns: 1_000_000_000,
            last_seen_ns: 3_000_000_000,
            packets_a_to_b: 4,
            packets_b_to_a: 5,
            state: CtState::Established as u8,
            flags: 0,
            ..CtValue::default()
        };
        let row = conntrack_row(&key, &value, 4_000_000_000);
        assert_eq!((row.src, row.sport), (Ipv4Addr::new(192, 168, 3, 1), 80));
        assert_eq!((row.packets_forward, row.packets_reverse), (5, 4));
        assert_eq!(row.state, "established");
        assert!((row.age_s - 3.0).abs() < 1e-9 && (row.idle_s - 1.0).abs() < 1e-9);
    }

    #[test]
    fn route_rows_say_how_a_remote_block_is_reached() {
        use felix_common::routes::PoolIpipMode;
        let names = BTreeMap::from([(7, "cali0123456789a".to_owned())]);
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let rows = [
            route_row(
                net("192.168.0.0/32"),
                &RouteValue::new(RouteKind::LocalWorkload, 7, [0; 4]),
                &names,
            ),
            route_row(
                net("192.168.0.64/26"),
                &RouteValue::remote_block([10, 0, 0, 2], PoolIpipMode::Always, false),
                &names,
            ),
            route_row(
                net("192.168.0.128/26"),
                &RouteValue::remote_block([10, 0, 0, 3], PoolIpipMode::CrossSubnet, true),
                &names,
            ),
        ];
        assert_eq!(rows[0].encap, None);
        assert_eq!(rows[1].encap.as_deref(), Some("ipip"));
        assert_eq!(rows[2].ipip_mode.as_deref(), Some("CrossSubnet"));
        let text = routes_table(&rows);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["CIDR", "KIND", "VIA", "IPIP", "MODE"]);
        assert_eq!(
            lines[1],
            [
                "192.168.0.0/32",
                "local_workload",
                "dev",
                "cali0123456789a",
                "-"
            ]
        );
        assert_eq!(
            lines[2],
            [
                "192.168.0.64/26",
                "remote_block",
                "ipip",
                "via",
                "10.0.0.2",
                "Always"
            ]
        );
        assert_eq!(
            lines[3],
            [
                "192.168.0.128/26",
                "remote_block",
                "native",
                "via",
                "10.0.0.3",
                "CrossSubnet"
            ]
        );
    }

    #[test]
    fn macs_format_with_colons() {
        assert_eq!(format_mac([0xee, 0, 1, 0x2a, 0xff, 9]), "ee:00:01:2a:ff:09");
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&["A", "LONGER"], &[vec!["wide-cell".into(), "1".into()]]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A          LONGER");
        assert_eq!(lines[1], "wide-cell  1");
    }
}
