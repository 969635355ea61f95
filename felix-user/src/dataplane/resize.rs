//! Map sizes that change across a restart: a pinned map whose capacity (or type) differs from
//! what this felix wants is pinned aside before the object loads (so a new map is created and
//! pinned in its place), its entries are copied into the new map, and the old pin is removed
//! once this felix's programs run. Copies never overwrite an entry the new map already holds;
//! when the new map is smaller, what does not fit is counted and logged.

use std::path::PathBuf;

use aya::maps::{Map, MapData, MapInfo, MapType};
use felix_common::maps;
use tracing::{info, warn};

use crate::dataplane::{maps::copy_resized, pins::NodePaths};

/// A pinned map that had to be replaced could not be moved aside.
#[derive(Debug, thiserror::Error)]
#[error("map {name}: move the pin aside to replace it: {reason}")]
pub struct SetAsideError {
    pub name: &'static str,
    pub reason: String,
}

/// Capacities of the maps whose size is configurable (Calico's `BPFMapSize*` settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// [`maps::CONNTRACK`] (`BPFMapSizeConntrack`).
    pub conntrack: u32,
    /// [`maps::ROUTES`] (`BPFMapSizeRoute`).
    pub routes: u32,
    /// [`maps::ENDPOINTS`] and [`maps::IFACES`] (`BPFMapSizeIfState`).
    pub ifstate: u32,
    /// [`maps::POLICY_IPS`] (`BPFMapSizeIPSets`).
    pub policy_ips: u32,
    /// [`maps::POLICY_PORTS`].
    pub policy_ports: u32,
    /// [`maps::POLICY_VERDICTS`].
    pub policy_verdicts: u32,
    /// [`maps::XDP_DENY`].
    pub xdp_deny: u32,
}

impl Default for MapSizes {
    /// The sizes the object declares.
    fn default() -> Self {
        Self {
            conntrack: maps::CONNTRACK_MAX_ENTRIES,
            routes: maps::ROUTES_MAX_ENTRIES,
            ifstate: maps::ENDPOINTS_MAX_ENTRIES,
            policy_ips: maps::POLICY_IPS_MAX_ENTRIES,
            policy_ports: maps::POLICY_PORTS_MAX_ENTRIES,
            policy_verdicts: maps::POLICY_VERDICTS_MAX_ENTRIES,
            xdp_deny: maps::XDP_DENY_MAX_ENTRIES,
        }
    }
}

impl MapSizes {
    /// Every configurable map with its size.
    pub fn by_map(&self) -> [(&'static str, u32); 8] {
        [
            (maps::CONNTRACK, self.conntrack),
            (maps::ROUTES, self.routes),
            (maps::ENDPOINTS, self.ifstate),
            (maps::IFACES, self.ifstate),
            (maps::POLICY_IPS, self.policy_ips),
            (maps::POLICY_PORTS, self.policy_ports),
            (maps::POLICY_VERDICTS, self.policy_verdicts),
            (maps::XDP_DENY, self.xdp_deny),
        ]
    }
}

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
pub fn set_aside(paths: &NodePaths, sizes: &MapSizes) -> Result<Vec<SetAside>, SetAsideError> {
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
            .map_err(|reason| SetAsideError { name, reason })?;
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

/// Copies the entries of `aside` into `new`, the loaded map of the same name (logging the
/// outcome).
pub fn copy_entries(new: &mut Map, aside: &SetAside) {
    let result = MapData::from_pin(&aside.pin)
        .and_then(Map::from_map_data)
        .map_err(|e| e.to_string())
        .and_then(|old| copy_resized(aside.name, old, new));
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
