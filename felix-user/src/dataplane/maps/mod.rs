//! One module per BPF map felix reads back: its typed map (an alias over a loaded object's or a
//! pin's map data, used by the loader's accessor, the fill metric and the reader), its dump row
//! and table (through [`MapDump`]), and what else user space does with it (conntrack's garbage
//! collection and fill watch, the counter cache's lines). Resize copies of every resizable map
//! are here too ([`copy_resized`]). The policy maps are written and dumped by
//! [`crate::dataplane::policy`], the failsafe ports by [`crate::dataplane::failsafe`], the trace
//! ring by [`crate::dataplane::trace`].
//!
//! Adding a dumpable map: a new file here with a [`MapDump`] impl, and a `felix bpf <map> dump`
//! arm in the CLI that names it.

pub mod batch;
pub mod conntrack;
pub mod counter_cache;
pub mod counters;
pub mod endpoints;
pub mod ifaces;
pub mod nat_origins;
pub mod routes;
pub mod xdp_deny;

use std::path::PathBuf;

use aya::{
    Pod,
    maps::{HashMap, LpmTrie, Map, MapData, MapError, lpm_trie::Key},
};
use felix_common::{
    CtKey, CtValue, EndpointInfo, IfaceInfo, RouteValue, maps,
    policy::{PolicyIpKey, PolicyPortKey, PolicyVerdict, PolicyVerdictKey},
};
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

/// A map `felix bpf <map> dump` prints: read from the node's pins into rows, as a table or as
/// `{"node": .., FIELD: [rows]}` with `--json`.
pub trait MapDump {
    /// The JSON field that holds the rows.
    const FIELD: &'static str;
    /// One row of the dump.
    type Row: Serialize;
    /// Reads the node's pinned map (and what names its entries) into sorted rows.
    fn read(paths: &NodePaths) -> Result<Vec<Self::Row>, InspectError>;
    /// The rows as a text table.
    fn table(rows: &[Self::Row]) -> String;
}

/// Opens a pinned map of `paths`' node (also used by the commands that write).
pub fn open(paths: &NodePaths, name: &str) -> Result<Map, InspectError> {
    let path = paths.map(name);
    MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|source| InspectError::Map { path, source })
}

/// Names a map error after the pinned map `name` of `paths`' node.
pub fn map_error(paths: &NodePaths, name: &str) -> impl Fn(MapError) -> InspectError {
    let path = paths.map(name);
    move |source| InspectError::Map {
        path: path.clone(),
        source,
    }
}

/// Opens the pinned map `name` of `paths`' node as a typed map (`make`: e.g. `HashMap::try_from`).
pub fn open_as<T>(
    paths: &NodePaths,
    name: &str,
    make: impl FnOnce(Map) -> Result<T, MapError>,
) -> Result<T, InspectError> {
    make(open(paths, name)?).map_err(map_error(paths, name))
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Entries copied into a resized map and entries that did not fit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub copied: u64,
    pub refused: u64,
}

/// `BPF_NOEXIST`: insert only when the key is absent.
const NO_EXIST: u64 = 1;

/// Copies the entries of `old` into `new` (the map called `name`, resized at load) without
/// overwriting what `new` holds; `Err` names a map that cannot be resized.
pub fn copy_resized(name: &str, old: Map, new: &mut Map) -> Result<Copied, String> {
    match name {
        maps::CONNTRACK => copy_hash::<CtKey, CtValue>(old, new),
        maps::ENDPOINTS => copy_hash::<u32, EndpointInfo>(old, new),
        maps::IFACES => copy_hash::<u32, IfaceInfo>(old, new),
        maps::POLICY_VERDICTS => copy_hash::<PolicyVerdictKey, PolicyVerdict>(old, new),
        maps::ROUTES => copy_lpm::<[u8; 4], RouteValue>(old, new),
        maps::XDP_DENY => copy_lpm::<[u8; 4], u32>(old, new),
        maps::POLICY_IPS => copy_lpm::<PolicyIpKey, u32>(old, new),
        maps::POLICY_PORTS => copy_lpm::<PolicyPortKey, u16>(old, new),
        other => Err(format!("{other} is not a resizable map")),
    }
}

fn copy_hash<K: Pod, V: Pod>(old: Map, new: &mut Map) -> Result<Copied, String> {
    let old: HashMap<MapData, K, V> = HashMap::try_from(old).map_err(|e| e.to_string())?;
    let mut new: HashMap<&mut MapData, K, V> = HashMap::try_from(new).map_err(|e| e.to_string())?;
    let mut done = Copied::default();
    for (key, value) in old.iter().flatten() {
        match new.insert(key, value, NO_EXIST) {
            Ok(()) => done.copied += 1,
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(_) => done.refused += 1,
        }
    }
    Ok(done)
}

fn copy_lpm<K: Pod, V: Pod>(old: Map, new: &mut Map) -> Result<Copied, String> {
    let old: LpmTrie<MapData, K, V> = LpmTrie::try_from(old).map_err(|e| e.to_string())?;
    let mut new: LpmTrie<&mut MapData, K, V> = LpmTrie::try_from(new).map_err(|e| e.to_string())?;
    let mut done = Copied::default();
    for (key, value) in old.iter().flatten() {
        let key = Key::new(key.prefix_len(), key.data());
        match new.insert(&key, value, NO_EXIST) {
            Ok(()) => done.copied += 1,
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(_) => done.refused += 1,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_format_with_colons() {
        assert_eq!(format_mac([0xee, 0, 1, 0x2a, 0xff, 9]), "ee:00:01:2a:ff:09");
    }
}
