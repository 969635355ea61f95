//! Both modes' NAT outgoing ([`crate::iptables::nat`]): after each reconcile the nat rules are
//! brought in line with the pools (only a change runs anything). They stay when felix exits, as
//! Calico's do, so that a restart keeps pods' outside traffic flowing; `felix bpf uninstall` and a
//! switch of backend remove them.
//! iptables mode writes them with its backend, BPF mode with
//! [`crate::iptables::nat::bpf_mode_backend`].

use tracing::{error, info};

use crate::{
    calc::topology::Topology,
    config::Mode,
    iptables::{
        Backend,
        nat::{self, Exclusions, NatOutgoing, NatOutgoingRules},
    },
};

/// felix's nat rules on this node.
pub(super) struct NatOutgoingSync {
    backend: Backend,
    /// `None` while a sync runs on the blocking pool (or after it panicked).
    rules: Option<NatOutgoingRules>,
    /// Why the last sync failed (logged once per reason).
    failed: Option<String>,
}

impl NatOutgoingSync {
    /// The backend `mode` writes its nat rules with; nothing applied yet.
    pub(super) fn new(mode: Mode) -> Self {
        let backend = match mode {
            Mode::Iptables(backend) => backend,
            Mode::Bpf => nat::bpf_mode_backend(),
        };
        NatOutgoingSync {
            backend,
            rules: Some(NatOutgoingRules::new(backend)),
            failed: None,
        }
    }

    /// Applies the nat rules `topology`'s pools ask for, when they changed (or the last sync
    /// failed).
    pub(super) async fn sync(&mut self, topology: &Topology) {
        let want = NatOutgoing::from_topology(topology, Exclusions::default());
        let mut rules = self
            .rules
            .take()
            .unwrap_or_else(|| NatOutgoingRules::new(self.backend));
        if rules.applied() == Some(&want) {
            self.rules = Some(rules);
            return;
        }
        let masq_pools: Vec<String> = want.masq_pools.iter().map(ToString::to_string).collect();
        let joined = tokio::task::spawn_blocking(move || {
            let result = rules.sync(want);
            (rules, result)
        })
        .await;
        let error = match joined {
            Ok((rules, result)) => {
                self.rules = Some(rules);
                match result {
                    Ok(applied) => {
                        if applied || self.failed.is_some() {
                            info!(
                                backend = self.backend.name(),
                                ?masq_pools,
                                "natOutgoing rules applied"
                            );
                        }
                        self.failed = None;
                        return;
                    }
                    Err(error) => error.to_string(),
                }
            }
            Err(error) => error.to_string(),
        };
        if self.failed.as_ref() != Some(&error) {
            error!(%error, backend = self.backend.name(), "applying the natOutgoing rules failed");
        }
        self.failed = Some(error);
    }
}
