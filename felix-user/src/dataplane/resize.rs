//! Map sizes that change across a restart: a pinned map whose capacity (or type) differs from
//! what this felix wants is pinned aside before the object loads (so a new map is created and
//! pinned in its place), its entries are copied into the new map, and the old pin is removed
//! once this felix's programs run. Copies never overwrite an entry the new map already holds;
//! when the new map is smaller, what does not fit is counted and logged.

use std::path::PathBuf;

use aya::{
    Pod,
    maps::{HashMap, LpmTrie, Map, MapData, MapInfo, MapType, lpm_trie::Key},
};
use felix_common::{
    CtKey, CtValue, EndpointInfo, IfaceInfo, RouteValue, maps,
    policy::{PolicyIpKey, PolicyPortKey, PolicyVerdict, PolicyVerdictKey},
};
use tracing::{info, warn};

use crate::{
    dataplane::loader::{Dataplane, LoadError, MapSizes},
    dataplane::pins::NodePaths,
};

/// `BPF_NOEXIST`: insert only when the key is absent.
const NO_EXIST: u64 = 1;

/// A pinned map moved aside because it has another size or type.
#[derive(Clone, Debug)]
pub struct SetAside {
    pub name: &'static str,
    /// Where the old map is pinned now.
    pub pin: PathBuf,
    pub old_size: u32,
    pub new_size: u32,
}

impl SetAside {
    /// Unpins the old map (the kernel frees it with its last user).
    pub fn remove(self) {
        if let Err(error) = std::fs::remove_file(&self.pin) {
            warn!(map = self.name, %error, "removing the pin of a replaced map failed");
        }
    }
}

/// The map type the object declares, where felix changed it across versions.
fn expected_type(name: &str) -> Option<MapType> {
    (name == maps::CONNTRACK).then_some(MapType::Hash)
}

/// The pin path a replaced map is moved to (bpffs refuses dots in names; the suffix keeps it
/// out of [`crate::dataplane::pins::retire_superseded_maps`]' versioned names).
pub fn aside_path(paths: &NodePaths, name: &str) -> PathBuf {
    paths.map(&format!("{name}_resizing"))
}

/// Moves aside every pinned map whose size differs from `sizes` (or whose type differs from the
/// object's). A leftover from an interrupted start is copied from as well.
pub fn set_aside(paths: &NodePaths, sizes: &MapSizes) -> Result<Vec<SetAside>, LoadError> {
    let mut out = Vec::new();
    for (name, new_size) in sizes.by_map() {
        let pin = paths.map(name);
        let aside = aside_path(paths, name);
        let Ok(current) = MapInfo::from_pin(&pin) else {
            if let Ok(old) = MapInfo::from_pin(&aside) {
                out.push(SetAside {
                    name,
                    pin: aside,
                    old_size: old.max_entries(),
                    new_size,
                });
            }
            continue;
        };
        let type_differs = expected_type(name)
            .is_some_and(|want| current.map_type().map_or(true, |have| have != want));
        if current.max_entries() == new_size && !type_differs {
            continue;
        }
        // An older leftover would block the rename; the current pin is the newer state.
        let _ = std::fs::remove_file(&aside);
        // bpffs has no rename: pin the map a second time, then drop the first pin.
        MapData::from_pin(&pin)
            .map_err(|e| e.to_string())
            .and_then(|map| map.pin(&aside).map_err(|e| e.to_string()))
            .and_then(|()| std::fs::remove_file(&pin).map_err(|e| e.to_string()))
            .map_err(|e| LoadError::Map {
                name,
                reason: format!("move the pin aside to replace it: {e}"),
            })?;
        info!(
            map = name,
            from = current.max_entries(),
            to = new_size,
            type_changed = type_differs,
            "pinned map replaced by one of the configured size; its entries are copied"
        );
        out.push(SetAside {
            name,
            pin: aside,
            old_size: current.max_entries(),
            new_size,
        });
    }
    Ok(out)
}

/// Entries copied and entries that did not fit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub copied: u64,
    pub refused: u64,
}

/// Copies the entries of `aside` into the loaded map of the same name (logging the outcome).
pub fn copy_entries(dataplane: &mut Dataplane, aside: &SetAside) {
    let result = MapData::from_pin(&aside.pin)
        .and_then(Map::from_map_data)
        .map_err(|e| e.to_string())
        .and_then(|old| {
            let new = dataplane.map(aside.name).map_err(|e| e.to_string())?;
            copy_map(aside.name, old, new)
        });
    match result {
        Ok(done) if done.refused > 0 => warn!(
            map = aside.name,
            copied = done.copied,
            refused = done.refused,
            size = aside.new_size,
            "the new map is too small for every entry of the old one"
        ),
        Ok(done) => info!(map = aside.name, copied = done.copied, "map entries copied"),
        Err(error) => warn!(map = aside.name, %error, "copying map entries failed"),
    }
}

fn copy_map(name: &str, old: Map, new: &mut Map) -> Result<Copied, String> {
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
