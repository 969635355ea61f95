//! Writes a [`Desired`] state into the BPF maps: inserts what is missing or different, removes
//! what is no longer wanted, and leaves the rest alone (so no packet sees an empty map).

use aya::maps::lpm_trie::Key;
use felix_common::HostConfig;
use ipnet::Ipv4Net;
use tracing::debug;

use crate::{
    calc::desired::Desired,
    dataplane::loader::{Dataplane, LoadError},
};

/// Errors writing the maps.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("update {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// How many entries one apply changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub upserted: usize,
    pub removed: usize,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> SyncError {
    move |source| SyncError::Map { map, source }
}

/// Applies `desired` to the endpoints and routes maps.
pub fn apply(dataplane: &mut Dataplane, desired: &Desired) -> Result<Applied, SyncError> {
    let mut applied = Applied::default();

    let mut endpoints = dataplane.endpoints()?;
    let current: Vec<u32> = endpoints.keys().flatten().collect();
    for (ifindex, info) in &desired.endpoints {
        if endpoints.get(ifindex, 0).ok().as_ref() != Some(info) {
            endpoints
                .insert(ifindex, info, 0)
                .map_err(map_err(felix_common::maps::ENDPOINTS))?;
            applied.upserted += 1;
        }
    }
    for ifindex in current
        .iter()
        .filter(|i| !desired.endpoints.contains_key(i))
    {
        let _ = endpoints.remove(ifindex);
        applied.removed += 1;
    }

    let mut routes = dataplane.routes()?;
    let current: Vec<Key<[u8; 4]>> = routes.keys().flatten().collect();
    for (cidr, value) in &desired.routes {
        let key = Key::new(u32::from(cidr.prefix_len()), cidr.addr().octets());
        if routes.get(&key, 0).ok().as_ref() != Some(value) {
            routes
                .insert(&key, value, 0)
                .map_err(map_err(felix_common::maps::ROUTES))?;
            applied.upserted += 1;
        }
    }
    for key in current {
        let cidr = Ipv4Net::new(key.data().into(), key.prefix_len() as u8).ok();
        if cidr.is_none_or(|cidr| !desired.routes.contains_key(&cidr)) {
            let _ = routes.remove(&key);
            applied.removed += 1;
        }
    }
    debug!(?applied, "maps reconciled");
    Ok(applied)
}

/// Writes this host's configuration (index 0 of the config map).
pub fn write_config(dataplane: &mut Dataplane, config: HostConfig) -> Result<(), SyncError> {
    let mut map = dataplane.config()?;
    map.set(0, config, 0)
        .map_err(map_err(felix_common::maps::CONFIG))
}
