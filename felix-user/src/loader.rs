//! Loads the embedded eBPF object with felix's maps pinned under the node's pin tree, reusing
//! maps a previous felix of the same node pinned (so counters survive a restart).

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuHashMap},
    programs::{ProgramError, SchedClassifier},
};
use felix_common::{CounterKey, CounterValue, IfaceInfo, maps};

use crate::{EBPF_OBJECT, PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD, pins::NodePaths};

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
}

/// The loaded object: programs ready to attach, maps pinned.
pub struct Dataplane {
    ebpf: Ebpf,
}

impl Dataplane {
    /// Loads the embedded object, pinning (or adopting) every map in [`maps::PINNED`] under
    /// `paths`, and loads both TC programs into the kernel (the verifier runs here).
    pub fn load(paths: &NodePaths) -> Result<Self, LoadError> {
        Self::load_bytes(EBPF_OBJECT, paths)
    }

    /// As [`Dataplane::load`], from the given object bytes.
    pub fn load_bytes(object: &[u8], paths: &NodePaths) -> Result<Self, LoadError> {
        if object.is_empty() {
            return Err(LoadError::NoObject);
        }
        let pin_paths: Vec<_> = maps::PINNED
            .iter()
            .map(|name| (*name, paths.map(name)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object)?;
        for name in [PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD] {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(LoadError::MissingProgram(name))?
                .try_into()
                .map_err(|source| LoadError::Program { name, source })?;
            program
                .load()
                .map_err(|source| LoadError::Program { name, source })?;
        }
        Ok(Self { ebpf })
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

    /// The counters map.
    pub fn counters(
        &mut self,
    ) -> Result<PerCpuHashMap<&mut MapData, CounterKey, CounterValue>, LoadError> {
        let map = self.ebpf.map_mut(maps::COUNTERS).ok_or(LoadError::Map {
            name: maps::COUNTERS,
            reason: "missing from the object".into(),
        })?;
        PerCpuHashMap::try_from(map).map_err(|e| LoadError::Map {
            name: maps::COUNTERS,
            reason: e.to_string(),
        })
    }

    /// The interfaces map.
    pub fn ifaces(&mut self) -> Result<HashMap<&mut MapData, u32, IfaceInfo>, LoadError> {
        let map = self.ebpf.map_mut(maps::IFACES).ok_or(LoadError::Map {
            name: maps::IFACES,
            reason: "missing from the object".into(),
        })?;
        HashMap::try_from(map).map_err(|e| LoadError::Map {
            name: maps::IFACES,
            reason: e.to_string(),
        })
    }
}
