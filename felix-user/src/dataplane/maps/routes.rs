//! The routes map ([`maps::ROUTES`]): an LPM trie of CIDR -> local workload, remote block (IPIP
//! or native), host or local block.

use std::{collections::BTreeMap, net::Ipv4Addr};

use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use felix_common::{RouteKind, RouteValue, maps};
use felix_rows::RouteRow;
use ipnet::Ipv4Net;

use super::{InspectError, MapDump, ifaces::interface_names, map_error, open_as};
use crate::dataplane::pins::NodePaths;

/// The routes map over map data `T`: a loaded object's (`&mut MapData`, see
/// [`crate::dataplane::loader::Dataplane`]) or a pin's (`MapData`).
pub type RoutesMap<T> = LpmTrie<T, [u8; 4], RouteValue>;

/// `felix bpf routes dump`.
pub struct Routes;

impl MapDump for Routes {
    const FIELD: &'static str = "routes";
    type Row = RouteRow;

    fn read(paths: &NodePaths) -> Result<Vec<RouteRow>, InspectError> {
        read_routes(paths)
    }

    fn table(rows: &[RouteRow]) -> String {
        routes_table(rows)
    }
}

/// Reads the routes map.
pub fn read_routes(paths: &NodePaths) -> Result<Vec<RouteRow>, InspectError> {
    let names = interface_names(paths)?;
    let map_err = map_error(paths, maps::ROUTES);
    let map: RoutesMap<MapData> = open_as(paths, maps::ROUTES, LpmTrie::try_from)?;
    let mut rows: Vec<(Ipv4Net, RouteRow)> = Vec::new();
    for entry in map.iter() {
        let (key, value): (Key<[u8; 4]>, RouteValue) = entry.map_err(&map_err)?;
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
    felix_rows::table(&["CIDR", "KIND", "VIA", "IPIP MODE"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
