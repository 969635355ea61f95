//! The XDP deny list ([`maps::XDP_DENY`]): an LPM trie of source CIDRs the uplink's XDP program
//! drops.

use std::net::Ipv4Addr;

use aya::maps::{LpmTrie, MapData};
use felix_common::maps;
use felix_rows::DenyRow;
use ipnet::Ipv4Net;

use super::{InspectError, MapDump, map_error, open_as};
use crate::dataplane::pins::NodePaths;

/// The XDP deny list over map data `T`: a loaded object's (`&mut MapData`, see
/// [`crate::dataplane::loader::Dataplane`]) or a pin's (`MapData`).
pub type XdpDenyMap<T> = LpmTrie<T, [u8; 4], u32>;

/// `felix bpf xdp-deny dump`.
pub struct XdpDeny;

impl MapDump for XdpDeny {
    const FIELD: &'static str = "xdp_deny";
    type Row = DenyRow;

    fn read(paths: &NodePaths) -> Result<Vec<DenyRow>, InspectError> {
        read_xdp_deny(paths)
    }

    /// One CIDR per line.
    fn table(rows: &[DenyRow]) -> String {
        rows.iter().map(|r| format!("{}\n", r.cidr)).collect()
    }
}

/// Reads the XDP deny list.
pub fn read_xdp_deny(paths: &NodePaths) -> Result<Vec<DenyRow>, InspectError> {
    let map_err = map_error(paths, maps::XDP_DENY);
    let map: XdpDenyMap<MapData> = open_as(paths, maps::XDP_DENY, LpmTrie::try_from)?;
    let mut cidrs = Vec::new();
    for key in map.keys() {
        let key = key.map_err(&map_err)?;
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
