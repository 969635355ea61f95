//! The endpoints map ([`maps::ENDPOINTS`]): a local workload's ifindex -> its IP, MAC and policy
//! slots.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData};
use felix_common::{EndpointInfo, maps};
use felix_rows::EndpointRow;

use super::{InspectError, MapDump, format_mac, ifaces::interface_names, map_error, open_as};
use crate::dataplane::pins::NodePaths;

/// The endpoints map over map data `T`: a loaded object's (`&mut MapData`, see
/// [`crate::dataplane::loader::Dataplane`]) or a pin's (`MapData`).
pub type EndpointsMap<T> = HashMap<T, u32, EndpointInfo>;

/// `felix bpf endpoints dump`.
pub struct Endpoints;

impl MapDump for Endpoints {
    const FIELD: &'static str = "endpoints";
    type Row = EndpointRow;

    fn read(paths: &NodePaths) -> Result<Vec<EndpointRow>, InspectError> {
        read_endpoints(paths)
    }

    fn table(rows: &[EndpointRow]) -> String {
        endpoints_table(rows)
    }
}

/// Reads the endpoints map.
pub fn read_endpoints(paths: &NodePaths) -> Result<Vec<EndpointRow>, InspectError> {
    let names = interface_names(paths)?;
    let map_err = map_error(paths, maps::ENDPOINTS);
    let map: EndpointsMap<MapData> = open_as(paths, maps::ENDPOINTS, HashMap::try_from)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (ifindex, info) = entry.map_err(&map_err)?;
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
    felix_rows::table(&["IP", "INTERFACE", "IFINDEX", "MAC"], &cells)
}
