//! The interfaces map ([`maps::IFACES`]): ifindex -> name, role and how felix attached to it;
//! written by user space only, read by the programs' counters and by every dump that names
//! interfaces.

use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData};
use felix_common::{IfaceInfo, IfaceRole, ifaces::attach_mode, maps};
use felix_rows::IfaceRow;

use super::{InspectError, MapDump, map_error, open_as};
use crate::dataplane::pins::NodePaths;

/// The interfaces map over map data `T`: a loaded object's (`&mut MapData`, see
/// [`crate::dataplane::loader::Dataplane`]) or a pin's (`MapData`).
pub type IfacesMap<T> = HashMap<T, u32, IfaceInfo>;

/// `felix bpf ifaces dump`.
pub struct Ifaces;

impl MapDump for Ifaces {
    const FIELD: &'static str = "interfaces";
    type Row = IfaceRow;

    fn read(paths: &NodePaths) -> Result<Vec<IfaceRow>, InspectError> {
        read_ifaces(paths)
    }

    fn table(rows: &[IfaceRow]) -> String {
        ifaces_table(rows)
    }
}

/// Reads the interfaces map.
pub fn read_ifaces(paths: &NodePaths) -> Result<Vec<IfaceRow>, InspectError> {
    let map_err = map_error(paths, maps::IFACES);
    let map: IfacesMap<MapData> = open_as(paths, maps::IFACES, HashMap::try_from)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (ifindex, info) = entry.map_err(&map_err)?;
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

/// Interface names by ifindex, from the interfaces map.
pub fn interface_names(paths: &NodePaths) -> Result<BTreeMap<u32, String>, InspectError> {
    Ok(read_ifaces(paths)?
        .into_iter()
        .map(|row| (row.ifindex, row.name))
        .collect())
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
    felix_rows::table(
        &["INTERFACE", "IFINDEX", "ROLE", "INGRESS", "EGRESS", "XDP"],
        &cells,
    )
}
