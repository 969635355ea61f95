//! Loads the embedded eBPF object with felix's maps pinned under the node's pin tree, reusing
//! maps a previous felix of the same node pinned (so counters survive a restart).

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuHashMap},
    programs::{ProgramError, SchedClassifier, Xdp},
};
use felix_common::{
    HostConfig, maps,
    policy::{PolicyIpKey, PolicyPortKey, PolicyVerdict, PolicyVerdictKey},
};

pub use super::resize::MapSizes;
use super::{
    maps::{
        conntrack::ConntrackMap, counter_cache::CounterCacheMap, counters::CountersMap,
        endpoints::EndpointsMap, ifaces::IfacesMap, routes::RoutesMap, xdp_deny::XdpDenyMap,
    },
    resize::{self, SetAside, SetAsideError},
};
use crate::{EBPF_OBJECT, PROG_CT_CLEAN, PROG_UPLINK_XDP, TC_PROGRAMS, dataplane::pins::NodePaths};

/// Errors loading the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The binary was built with `FELIX_EBPF_STUB`.
    #[error(
        "this felix was built without its eBPF object (FELIX_EBPF_STUB); rebuild it with `cargo xtask build`"
    )]
    NoObject,
    /// The object or its maps could not be loaded.
    #[error("load the eBPF object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    /// A program is missing from the object or was rejected (by the verifier, for example).
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    /// A program the object must contain is absent.
    #[error("program {0} is missing from the eBPF object")]
    MissingProgram(&'static str),
    /// A map the object must contain is absent or has another type.
    #[error("map {name}: {reason}")]
    Map { name: &'static str, reason: String },
    /// A pinned map of another size could not be moved aside.
    #[error(transparent)]
    SetAside(#[from] SetAsideError),
}

/// Names a typed-map conversion failure after its map.
fn typed<T>(name: &'static str, result: Result<T, aya::maps::MapError>) -> Result<T, LoadError> {
    result.map_err(|e| LoadError::Map {
        name,
        reason: e.to_string(),
    })
}

/// The loaded object: programs ready to attach, maps pinned.
pub struct Dataplane {
    ebpf: Ebpf,
    /// Pinned maps of another size or type that were replaced at load; their pins are removed
    /// once this felix's programs are attached ([`Dataplane::finish_resize`]).
    replaced: Vec<SetAside>,
    /// The conntrack cleaner program, loaded on first use ([`Dataplane::ct_clean_ready`]).
    ct_clean: CtClean,
}

/// Whether the conntrack cleaner program is loaded. Its verification takes longer than the
/// forwarding programs' together (it walks the table with `bpf_for_each_map_elem`
/// callbacks), so it is loaded when the first pass needs it, not before the dataplane is
/// programmed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CtClean {
    NotLoaded,
    Loaded,
    /// Why it could not be loaded (a kernel without `bpf_for_each_map_elem`, 5.13).
    Unavailable(String),
}

impl Dataplane {
    /// Loads the embedded object, pinning (or adopting) every map in [`maps::PINNED`] under
    /// `paths`, and loads every forwarding program into the kernel (the verifier runs here);
    /// the conntrack cleaner follows on first use.
    pub fn load(paths: &NodePaths) -> Result<Self, LoadError> {
        Self::load_bytes(EBPF_OBJECT, paths)
    }

    /// As [`Dataplane::load`], from the given object bytes, with the object's map sizes.
    pub fn load_bytes(object: &[u8], paths: &NodePaths) -> Result<Self, LoadError> {
        Self::load_sized(object, paths, &MapSizes::default())
    }

    /// As [`Dataplane::load`] with the configurable maps sized by `sizes`. A pinned map of
    /// another size (or type) is replaced by a new one holding its entries
    /// ([`crate::dataplane::resize`]), so a restart with a new size loses no flow.
    pub fn load_sized(
        object: &[u8],
        paths: &NodePaths,
        sizes: &MapSizes,
    ) -> Result<Self, LoadError> {
        if object.is_empty() {
            return Err(LoadError::NoObject);
        }
        let replaced = resize::set_aside(paths, sizes)?;
        let pin_paths: Vec<_> = maps::PINNED
            .iter()
            .map(|name| (*name, paths.map(name)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        for (name, size) in sizes.by_map() {
            loader.map_max_entries(name, size);
        }
        let mut dataplane = Self {
            ebpf: loader.load(object)?,
            replaced,
            ct_clean: CtClean::NotLoaded,
        };
        dataplane.copy_replaced();
        for name in TC_PROGRAMS {
            dataplane
                .classifier(name)?
                .load()
                .map_err(|source| LoadError::Program { name, source })?;
        }
        dataplane
            .xdp()?
            .load()
            .map_err(|source| LoadError::Program {
                name: PROG_UPLINK_XDP,
                source,
            })?;
        Ok(dataplane)
    }

    /// Loads the conntrack cleaner program if it is not loaded yet. Optional: `Err` says why
    /// it cannot be (felix then collects in user space); a failure is not retried.
    pub fn ct_clean_ready(&mut self) -> Result<(), &str> {
        if self.ct_clean == CtClean::NotLoaded {
            let loaded = self.classifier(PROG_CT_CLEAN).and_then(|p| {
                p.load().map_err(|source| LoadError::Program {
                    name: PROG_CT_CLEAN,
                    source,
                })
            });
            self.ct_clean = match loaded {
                Ok(()) => CtClean::Loaded,
                Err(error) => CtClean::Unavailable(error.to_string()),
            };
        }
        match &self.ct_clean {
            CtClean::Unavailable(reason) => Err(reason),
            _ => Ok(()),
        }
    }

    /// Copies the entries of the maps set aside at load into their replacements (entries
    /// already there are kept).
    fn copy_replaced(&mut self) {
        let replaced = self.replaced.clone();
        for aside in &replaced {
            match self.map(aside.name) {
                Ok(new) => resize::copy_entries(new, aside),
                Err(error) => {
                    tracing::warn!(map = aside.name, %error, "copying map entries failed")
                }
            }
        }
    }

    /// Once this felix's programs are attached: copies what the previous programs wrote into
    /// the replaced maps since the load, then removes their pins (the kernel frees them).
    pub fn finish_resize(&mut self) {
        self.copy_replaced();
        for aside in std::mem::take(&mut self.replaced) {
            aside.remove();
        }
    }

    /// The XDP program.
    pub fn xdp(&mut self) -> Result<&mut Xdp, LoadError> {
        self.ebpf
            .program_mut(PROG_UPLINK_XDP)
            .ok_or(LoadError::MissingProgram(PROG_UPLINK_XDP))?
            .try_into()
            .map_err(|source| LoadError::Program {
                name: PROG_UPLINK_XDP,
                source,
            })
    }

    /// The map called `name`.
    pub fn map(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, LoadError> {
        self.ebpf.map_mut(name).ok_or(LoadError::Map {
            name,
            reason: "missing from the object".into(),
        })
    }

    /// The endpoints map.
    pub fn endpoints(&mut self) -> Result<EndpointsMap<&mut MapData>, LoadError> {
        typed(
            maps::ENDPOINTS,
            HashMap::try_from(self.map(maps::ENDPOINTS)?),
        )
    }

    /// The routes map.
    pub fn routes(&mut self) -> Result<RoutesMap<&mut MapData>, LoadError> {
        typed(maps::ROUTES, LpmTrie::try_from(self.map(maps::ROUTES)?))
    }

    /// The conntrack map.
    pub fn conntrack(&mut self) -> Result<ConntrackMap<&mut MapData>, LoadError> {
        typed(
            maps::CONNTRACK,
            HashMap::try_from(self.map(maps::CONNTRACK)?),
        )
    }

    /// The host configuration map.
    pub fn config(&mut self) -> Result<Array<&mut MapData, HostConfig>, LoadError> {
        typed(maps::CONFIG, Array::try_from(self.map(maps::CONFIG)?))
    }

    /// The XDP deny list.
    pub fn xdp_deny(&mut self) -> Result<XdpDenyMap<&mut MapData>, LoadError> {
        typed(maps::XDP_DENY, LpmTrie::try_from(self.map(maps::XDP_DENY)?))
    }

    /// Policy slot -> current set id.
    pub fn policy_slots(&mut self) -> Result<Array<&mut MapData, u32>, LoadError> {
        typed(
            maps::POLICY_SLOTS,
            Array::try_from(self.map(maps::POLICY_SLOTS)?),
        )
    }

    /// (set, remote address) -> address class.
    pub fn policy_ips(&mut self) -> Result<LpmTrie<&mut MapData, PolicyIpKey, u32>, LoadError> {
        typed(
            maps::POLICY_IPS,
            LpmTrie::try_from(self.map(maps::POLICY_IPS)?),
        )
    }

    /// (set, field, protocol, port) -> port class.
    pub fn policy_ports(&mut self) -> Result<LpmTrie<&mut MapData, PolicyPortKey, u16>, LoadError> {
        typed(
            maps::POLICY_PORTS,
            LpmTrie::try_from(self.map(maps::POLICY_PORTS)?),
        )
    }

    /// Classes -> verdict.
    pub fn policy_verdicts(
        &mut self,
    ) -> Result<HashMap<&mut MapData, PolicyVerdictKey, PolicyVerdict>, LoadError> {
        typed(
            maps::POLICY_VERDICTS,
            HashMap::try_from(self.map(maps::POLICY_VERDICTS)?),
        )
    }

    /// Per-CPU packets per policy rule.
    pub fn rule_counters(&mut self) -> Result<PerCpuArray<&mut MapData, u64>, LoadError> {
        typed(
            maps::RULE_COUNTERS,
            PerCpuArray::try_from(self.map(maps::RULE_COUNTERS)?),
        )
    }

    /// The underlying aya object.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The TC program called `name`.
    pub fn classifier(&mut self, name: &'static str) -> Result<&mut SchedClassifier, LoadError> {
        self.ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Program { name, source })
    }

    /// The counter cache (see [`crate::dataplane::maps::counter_cache`]).
    pub fn counter_cache(&mut self) -> Result<CounterCacheMap<&mut MapData>, LoadError> {
        typed(
            maps::COUNTER_CACHE,
            PerCpuArray::try_from(self.map(maps::COUNTER_CACHE)?),
        )
    }

    /// The counters map.
    pub fn counters(&mut self) -> Result<CountersMap<&mut MapData>, LoadError> {
        typed(
            maps::COUNTERS,
            PerCpuHashMap::try_from(self.map(maps::COUNTERS)?),
        )
    }

    /// The interfaces map.
    pub fn ifaces(&mut self) -> Result<IfacesMap<&mut MapData>, LoadError> {
        typed(maps::IFACES, HashMap::try_from(self.map(maps::IFACES)?))
    }
}
