//! First packets in flight through the host stack ([`maps::NAT_ORIGINS`], an LRU hash): a pod's
//! packet that `cali_from_wl` passed on for judging after NAT, keyed by (source `cali*`
//! ifindex, IP ID, protocol), with the flow the pod opened before NAT. Entries live for
//! microseconds; a dump shows those whose packet never reached a program after NAT (delivered
//! to the host itself, or dropped by the stack).

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData};
use felix_common::{CtKey, maps, nat::NatOriginKey};
use felix_rows::NatOriginRow;

use super::{InspectError, MapDump, conntrack::proto_name, map_error, open_as};
use crate::dataplane::pins::NodePaths;

/// The map over map data `T` (a loaded object's or a pin's).
pub type NatOriginsMap<T> = HashMap<T, NatOriginKey, CtKey>;

/// `felix bpf nat-origins dump`.
pub struct NatOrigins;

impl MapDump for NatOrigins {
    const FIELD: &'static str = "nat_origins";
    type Row = NatOriginRow;

    fn read(paths: &NodePaths) -> Result<Vec<NatOriginRow>, InspectError> {
        let map_err = map_error(paths, maps::NAT_ORIGINS);
        let map: NatOriginsMap<MapData> = open_as(paths, maps::NAT_ORIGINS, HashMap::try_from)?;
        let mut rows = Vec::new();
        for entry in map.iter() {
            let (key, flow) = entry.map_err(&map_err)?;
            rows.push(origin_row(&key, &flow));
        }
        rows.sort_by_key(|r| (r.ifindex, r.ip_id));
        Ok(rows)
    }

    fn table(rows: &[NatOriginRow]) -> String {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.ifindex.to_string(),
                    r.ip_id.to_string(),
                    r.proto.clone(),
                    format!("{}:{}", r.src, r.sport),
                    format!("{}:{}", r.dst, r.dport),
                ]
            })
            .collect();
        felix_rows::table(&["IFINDEX", "IP ID", "PROTO", "SOURCE", "SENT TO"], &cells)
    }
}

/// One row: the pod's side of the flow is the source (the key's pod address may be either side).
fn origin_row(key: &NatOriginKey, flow: &CtKey) -> NatOriginRow {
    NatOriginRow {
        ifindex: key.ifindex,
        ip_id: u16::from_be_bytes(key.ip_id.to_ne_bytes()),
        proto: proto_name(key.proto),
        src: Ipv4Addr::from(flow.addr_a),
        sport: flow.port_a,
        dst: Ipv4Addr::from(flow.addr_b),
        dport: flow.port_b,
    }
}
