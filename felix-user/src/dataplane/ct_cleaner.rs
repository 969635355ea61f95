//! Runs the in-kernel conntrack cleaner (`felix_ct_clean`) with BPF_PROG_TEST_RUN, as
//! Calico's BPF conntrack cleaner is run: one pass walks the table in the kernel, removes
//! expired entries and, under pressure, closing and stale unanswered ones, recounts each
//! endpoint's entries and sets the per-endpoint share `create` enforces. A pass that finds
//! the table under pressure without evicting is followed at once by one that evicts.
//!
//! The cleaner's state map ([`maps::CT_CLEANER`]) keeps the last pass and totals: `/metrics`
//! reads the table's fill there instead of walking it.

use aya::{
    maps::{Array, MapData},
    programs::{TestRun as _, TestRunOptions},
};
use felix_common::{
    ct_clean::{CtCleanRequest, CtCleanStats, CtCleanerState, endpoint_max},
    maps,
};

use super::{
    loader::{Dataplane, LoadError},
    maps::{InspectError, open_as},
    pins::NodePaths,
};
use crate::PROG_CT_CLEAN;

/// The frame the cleaner runs on: room for the request in and the stats out (and at least an
/// Ethernet header, which BPF_PROG_TEST_RUN requires of a TC frame).
const FRAME_LEN: usize = 64;

/// Errors running a pass.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// The program cannot be loaded (see [`Dataplane::ct_clean_ready`]).
    #[error("the conntrack cleaner is not loaded: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("run the conntrack cleaner: {0}")]
    Run(#[from] aya::programs::ProgramError),
    /// The program refused the request (its return value).
    #[error("the conntrack cleaner returned {0}")]
    Failed(u32),
}

/// How the cleaner is driven: the share limit and the pressure threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanerPolicy {
    /// BPFConntrackEndpointSharePercent: each endpoint's share of the table.
    pub endpoint_share_percent: u8,
    /// ConntrackNearFullPercent: from this fill the whole table is under pressure.
    pub pressure_percent: u8,
}

impl CleanerPolicy {
    /// The request of a pass at `now_ns` (0: the kernel's clock) on a table of `capacity`
    /// entries holding `live` after the last pass.
    pub fn request(&self, capacity: u32, live: u64, now_ns: u64) -> CtCleanRequest {
        CtCleanRequest {
            now_ns,
            endpoint_max: endpoint_max(capacity, self.endpoint_share_percent),
            evict: u32::from(self.under_pressure(live, capacity)),
        }
    }

    /// Whether `live` entries of `capacity` put the table under pressure.
    pub fn under_pressure(&self, live: u64, capacity: u32) -> bool {
        super::maps::conntrack::is_near_full(live, u64::from(capacity), self.pressure_percent)
    }
}

/// Runs one pass as `request` says; returns what it did.
pub fn run_pass(
    dataplane: &mut Dataplane,
    request: &CtCleanRequest,
) -> Result<CtCleanStats, CleanError> {
    dataplane
        .ct_clean_ready()
        .map_err(|reason| CleanError::Unavailable(reason.to_string()))?;
    let mut frame = [0u8; FRAME_LEN];
    // SAFETY: `CtCleanRequest` is `#[repr(C)]` integers without padding (layout tests).
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (request as *const CtCleanRequest).cast::<u8>(),
            size_of::<CtCleanRequest>(),
        )
    };
    frame[..bytes.len()].copy_from_slice(bytes);
    let mut out = [0u8; FRAME_LEN];
    let result = dataplane
        .classifier(PROG_CT_CLEAN)?
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
    if result.return_value != 0 {
        return Err(CleanError::Failed(result.return_value));
    }
    // SAFETY: the program stored a `CtCleanStats` at offset 0; any bytes are valid integers.
    Ok(unsafe { std::ptr::read_unaligned(out.as_ptr().cast::<CtCleanStats>()) })
}

/// Runs a pass, and a second one that evicts when the first found the table under pressure
/// without evicting; returns the last pass.
pub fn clean(
    dataplane: &mut Dataplane,
    policy: &CleanerPolicy,
    capacity: u32,
) -> Result<CtCleanStats, CleanError> {
    let live = state(dataplane)?.last.live;
    let request = policy.request(capacity, live, 0);
    let stats = run_pass(dataplane, &request)?;
    if request.evict == 0 && policy.under_pressure(stats.live, capacity) {
        return run_pass(dataplane, &policy.request(capacity, stats.live, 0));
    }
    Ok(stats)
}

/// The cleaner's state from the loaded object's map.
pub fn state(dataplane: &mut Dataplane) -> Result<CtCleanerState, CleanError> {
    let map: Array<&mut MapData, CtCleanerState> =
        Array::try_from(dataplane.map(maps::CT_CLEANER)?).map_err(|e| LoadError::Map {
            name: maps::CT_CLEANER,
            reason: e.to_string(),
        })?;
    Ok(map.get(&0, 0).unwrap_or_default())
}

/// The cleaner's state from the node's pinned map (for `/metrics` and the CLI).
pub fn read_state(paths: &NodePaths) -> Result<CtCleanerState, InspectError> {
    let map: Array<MapData, CtCleanerState> = open_as(paths, maps::CT_CLEANER, Array::try_from)?;
    Ok(map.get(&0, 0).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_evict_only_under_pressure() {
        let policy = CleanerPolicy {
            endpoint_share_percent: 25,
            pressure_percent: 90,
        };
        let calm = policy.request(1_000, 899, 7);
        assert_eq!(
            calm,
            CtCleanRequest {
                now_ns: 7,
                endpoint_max: 250,
                evict: 0
            }
        );
        assert_eq!(policy.request(1_000, 900, 0).evict, 1);
    }
}
