//! Policy for the agent: keeps the calculation fed with datastore changes and programs the
//! local endpoints' policies into the maps.
//!
//! A reconcile is two calls around the endpoints map update: [`PolicyEngine::program`] writes
//! every changed group's new set and flips its slot (returning each endpoint's slots), the
//! caller writes the endpoints map, then [`PolicyEngine::finish`] frees groups no endpoint uses
//! and saves the state `felix bpf policy dump` reads.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
};

use calico::model::Resource;
use felix_common::maps::RULE_COUNTERS_MAX_ENTRIES;
use tracing::{debug, warn};

use super::{
    state::PolicyState,
    tables::{PolicyTables, TablesApplied, TablesError},
};
use crate::calc::policy::{
    calc::{GroupKey, PolicyCalc},
    program::Program,
    rule_ids::RuleIds,
};
use crate::{dataplane::loader::Dataplane, dataplane::pins::NodePaths};

/// The agent's policy state.
#[derive(Debug)]
pub struct PolicyEngine {
    calc: PolicyCalc,
    tables: PolicyTables,
    rule_ids: RuleIds,
    in_use: HashSet<GroupKey>,
    state_file: PathBuf,
    rule_ids_file: PathBuf,
}

impl PolicyEngine {
    /// An engine for `paths`' node; rule counter ids a previous felix saved are kept.
    pub fn new(paths: &NodePaths) -> Self {
        let rule_ids_file = paths.rule_ids_file();
        PolicyEngine {
            calc: PolicyCalc::new(),
            tables: PolicyTables::new(),
            rule_ids: RuleIds::load_or_new(&rule_ids_file, RULE_COUNTERS_MAX_ENTRIES),
            in_use: HashSet::new(),
            state_file: paths.policy_state_file(),
            rule_ids_file,
        }
    }

    /// A datastore value was written (kinds policy does not use are ignored).
    pub fn upsert(&mut self, key: &str, resource: &Resource) {
        self.calc.upsert(key, resource);
    }

    /// A datastore value was deleted.
    pub fn remove(&mut self, key: &str) {
        self.calc.remove(key);
    }

    /// Programs the policy of `endpoints` (ifindex -> workload endpoint key) and returns each
    /// one's slots (ingress, egress).
    pub fn program(
        &mut self,
        dataplane: &mut Dataplane,
        endpoints: &BTreeMap<u32, String>,
    ) -> Result<(BTreeMap<u32, [u32; 2]>, TablesApplied), TablesError> {
        let mut wanted: HashMap<GroupKey, Program> = HashMap::new();
        let mut groups_of: BTreeMap<u32, [GroupKey; 2]> = BTreeMap::new();
        for (ifindex, key) in endpoints {
            // Cached in the calculation: rebuilt only when a change can have altered them,
            // and copied once per group.
            let Some([(ingress, pi), (egress, pe)]) = self.calc.cached_programs(key) else {
                warn!(
                    key,
                    "no workload endpoint for this key: its interface drops everything"
                );
                continue;
            };
            if !wanted.contains_key(ingress) {
                wanted.insert(ingress.clone(), pi.clone());
            }
            if !wanted.contains_key(egress) {
                wanted.insert(egress.clone(), pe.clone());
            }
            groups_of.insert(*ifindex, [ingress.clone(), egress.clone()]);
        }
        let applied = self.tables.apply(dataplane, &wanted, &mut self.rule_ids)?;
        self.in_use = wanted.keys().cloned().collect();
        let slots = groups_of
            .into_iter()
            .filter_map(|(ifindex, [i, e])| {
                Some((
                    ifindex,
                    [self.tables.slot_of(&i)?, self.tables.slot_of(&e)?],
                ))
            })
            .collect();
        debug!(?applied, groups = self.in_use.len(), "policy programmed");
        Ok((slots, applied))
    }

    /// After the endpoints map points at the new slots: deletes the sets flipped away from,
    /// frees unused groups and, when what is programmed changed, forgets rules that no longer
    /// exist and saves the state for `felix bpf policy dump`.
    pub fn finish(&mut self, dataplane: &mut Dataplane) -> Result<(), TablesError> {
        self.tables.release_unused(dataplane, &self.in_use)?;
        if !self.tables.take_changed() {
            return Ok(());
        }
        let live: HashSet<crate::calc::policy::RuleRef> = self
            .tables
            .groups()
            .flat_map(|(_, p)| {
                p.program
                    .entries
                    .iter()
                    .map(|e| e.by.clone())
                    .chain([p.program.default_deny.clone()])
            })
            .collect();
        self.rule_ids.retain(|r| live.contains(r));
        if let Err(error) = self.rule_ids.save(&self.rule_ids_file) {
            warn!(%error, "rule counter ids not saved");
        }
        if let Err(error) = PolicyState::of(&self.tables).save(&self.state_file) {
            warn!(path = %self.state_file.display(), %error, "policy state not saved");
        }
        Ok(())
    }
}
