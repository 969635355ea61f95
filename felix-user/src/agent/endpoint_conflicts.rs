//! Reporting workload endpoints that name an interface another endpoint holds
//! ([`crate::calc::topology::conflicts`]): each conflict is logged once, with both keys, when it
//! appears and when it ends; the status reports the waiting endpoint as `error`.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::{calc::topology::conflicts::Conflict, report::status::EndpointStatus};

/// The conflicts already logged, as (waiting key, holder key).
#[derive(Debug, Default)]
pub struct ConflictLog(BTreeSet<(String, String)>);

impl ConflictLog {
    /// Logs the conflicts in `now` that are new, and the end of those no longer there.
    pub fn note(&mut self, now: &[Conflict]) {
        let current: BTreeSet<(String, String)> = now
            .iter()
            .map(|c| (c.loser.key.clone(), c.holder.clone()))
            .collect();
        for conflict in now {
            if !self
                .0
                .contains(&(conflict.loser.key.clone(), conflict.holder.clone()))
            {
                warn!(
                    endpoint = conflict.loser.key,
                    holder = conflict.holder,
                    interface = conflict.loser.interface,
                    "workload endpoint names an interface another endpoint holds; it is not applied"
                );
            }
        }
        for (endpoint, holder) in self.0.difference(&current) {
            info!(endpoint, holder, "workload endpoint conflict ended");
        }
        self.0 = current;
    }
}

/// The status of an endpoint left out for `conflict`.
pub fn status(conflict: &Conflict) -> EndpointStatus {
    EndpointStatus::error(format!(
        "interface {} is held by workload endpoint {}",
        conflict.loser.interface, conflict.holder
    ))
}
