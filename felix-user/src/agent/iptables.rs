//! iptables mode: no BPF programs. The kernel routes pod traffic (felix's routes, remote blocks
//! natively via their hosts) with forwarding on, and the policy of every local workload is
//! rendered as Calico's iptables mode does and applied with `iptables-restore`
//! ([`crate::iptables`]) on each reconcile. Once the first apply has worked, the node's BPF
//! dataplane and felix's rules of the other backend are removed (until then a BPF dataplane left
//! by an earlier felix goes on forwarding and policing).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use calico::model::Resource;
use felix_common::IfaceRole;
use tracing::{error, info, warn};

use super::{Input, Plane};
use crate::{
    dataplane::pins::NodePaths,
    host::ifsysctl,
    host::kroutes,
    host::links::LinkEvent,
    iptables::{Backend, Config, IptablesPolicy},
    report::status::EndpointStatus,
};

/// The iptables dataplane of one node.
pub(super) struct IptablesPlane {
    /// Shared with the blocking task that applies it (the loop waits for that task, so the
    /// lock is never contended).
    policy: Arc<Mutex<IptablesPolicy>>,
    /// Why the last apply failed (its endpoints are reported in error).
    failed: Option<String>,
    /// This node's pin tree and run files (a BPF dataplane's, to remove).
    paths: NodePaths,
    /// Whether the other mode's and the other backend's state were removed.
    took_over: bool,
}

/// Locks `policy`; a panic in an earlier apply leaves its state usable (the next apply
/// rewrites every chain anyway after a failure).
fn lock(policy: &Mutex<IptablesPolicy>) -> MutexGuard<'_, IptablesPolicy> {
    policy
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl IptablesPlane {
    /// Turns forwarding on for the host and `uplink`; nothing applied yet.
    pub(super) fn start(paths: &NodePaths, backend: Backend, uplink: &str) -> Self {
        if let Err(error) = ifsysctl::apply_forwarding(uplink) {
            error!(%error, "turning forwarding on");
        }
        info!(backend = backend.name(), "iptables mode: no BPF programs");
        IptablesPlane {
            policy: Arc::new(Mutex::new(IptablesPolicy::new(backend, Config::default()))),
            failed: None,
            paths: paths.clone(),
            took_over: false,
        }
    }

    /// Removes what BPF mode and the other backend left: the node's pin tree (its programs are
    /// detached with their links) and felix's rules of the other backend.
    async fn take_over(&mut self) {
        match self.paths.remove_dataplane() {
            Ok(true) => info!(
                pin_dir = %self.paths.pin_dir().display(),
                "removed the BPF dataplane: programs detached, maps unpinned"
            ),
            Ok(false) => {}
            Err(error) => {
                // Tried again after the next apply.
                error!(%error, "removing the BPF dataplane failed");
                return;
            }
        }
        let other = lock(&self.policy).backend().other();
        match tokio::task::spawn_blocking(move || crate::iptables::cleanup(other)).await {
            Ok(Ok(cleaned)) if cleaned.chains + cleaned.jumps > 0 => info!(
                backend = other.name(),
                chains = cleaned.chains,
                jumps = cleaned.jumps,
                "removed felix's rules of the other iptables backend"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => warn!(%error, backend = other.name(), "cleaning the other backend"),
            Err(error) => warn!(%error, backend = other.name(), "cleaning the other backend"),
        }
        self.took_over = true;
    }
}

impl Plane for IptablesPlane {
    fn started(&mut self, _present: &[LinkEvent]) {}

    fn link_present(&mut self, _index: u32, name: &str, role: Option<IfaceRole>) {
        if role == Some(IfaceRole::Uplink)
            && let Err(error) = ifsysctl::apply_forwarding(name)
        {
            warn!(iface = %name, %error, "turning forwarding on");
        }
    }

    fn link_gone(&mut self, _index: u32, _name: &str) {}

    fn upsert(&mut self, key: &str, resource: &Resource) {
        lock(&self.policy).upsert(key, resource);
    }

    fn remove(&mut self, key: &str) {
        lock(&self.policy).remove(key);
    }

    /// Renders and applies the policy of every local workload (its interface need not exist
    /// yet: the dispatch chains name it). The maps' part of `input` has nothing to go to.
    async fn apply(&mut self, input: Input<'_>) -> bool {
        let endpoints: BTreeMap<String, String> = input
            .topology
            .workloads
            .iter()
            .map(|w| (w.interface.clone(), w.key.clone()))
            .collect();
        let count = endpoints.len();
        let policy = self.policy.clone();
        let result = tokio::task::spawn_blocking(move || lock(&policy).program(&endpoints)).await;
        let error = match result {
            Ok(Ok(programmed)) => {
                let applied = &programmed.applied;
                if applied.changed() || self.failed.is_some() {
                    info!(
                        endpoints = count,
                        rules = applied.rules,
                        chains_written = applied.chains_written,
                        chains_deleted = applied.chains_deleted,
                        sets_created = applied.sets_created,
                        sets_destroyed = applied.sets_destroyed,
                        malformed = input.malformed,
                        "iptables rules applied"
                    );
                }
                for key in &programmed.missing {
                    warn!(
                        key,
                        "no workload endpoint for this key: its interface drops everything"
                    );
                }
                for skipped in &programmed.skipped {
                    warn!(
                        ?skipped,
                        "endpoint left out of the rules: it drops everything"
                    );
                }
                self.failed = None;
                if !self.took_over {
                    self.take_over().await;
                }
                return true;
            }
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        error!(%error, "applying the iptables rules failed");
        self.failed = Some(error);
        false
    }

    fn remote_blocks(&self) -> kroutes::RemoteBlocks {
        kroutes::RemoteBlocks::Native
    }

    fn endpoint_status(&self, _index: u32, _iface: &str) -> EndpointStatus {
        match &self.failed {
            None => EndpointStatus::up(),
            Some(_) => EndpointStatus::error("applying the iptables rules failed".into()),
        }
    }

    fn programs_loaded(&self) -> u32 {
        0
    }

    fn housekeeping(&mut self) {}

    fn stop(&mut self) {
        info!(
            "felix stopped; its iptables rules stay in place until a felix replaces or removes them"
        );
    }
}
