//! What felix programmed, written next to its pid file after every policy change, so that
//! `felix bpf policy dump` (another process) can name the rules behind the slots and counters it
//! reads from the maps.

use std::{fs, io, path::Path};

use serde::{Deserialize, Serialize};

use super::tables::PolicyTables;
use crate::calc::policy::{PolicyDirection, RuleRef};

/// One entry of a programmed policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    /// Rule counter id.
    pub rule: u32,
    pub by: RuleRef,
    /// `allow`, `deny`, `pass`, `end-of-tier deny`, ...
    pub step: String,
    /// The criteria in short, `any` for none.
    pub matches: String,
}

/// Entries of each table of a compiled set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSizes {
    pub ips: usize,
    pub ports: usize,
    pub verdicts: usize,
}

/// One programmed group (endpoints sharing a policy in one direction).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub slot: u32,
    pub set: u32,
    pub direction: PolicyDirection,
    pub policies: Vec<String>,
    pub profiles: Vec<String>,
    pub entries: Vec<EntryState>,
    /// The default deny's counter id.
    pub default_deny_rule: u32,
    pub tables: TableSizes,
}

/// Everything programmed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub groups: Vec<GroupState>,
}

impl PolicyState {
    /// The state of `tables`.
    pub fn of(tables: &PolicyTables) -> Self {
        let mut groups: Vec<GroupState> = tables
            .groups()
            .map(|(key, p)| GroupState {
                slot: p.slot,
                set: p.set,
                direction: key.direction,
                policies: key.policies.clone(),
                profiles: key.profiles.clone(),
                entries: p
                    .program
                    .entries
                    .iter()
                    .zip(&p.rule_ids)
                    .map(|(e, id)| EntryState {
                        rule: *id,
                        by: e.by.clone(),
                        step: e.step.name().to_string(),
                        matches: e
                            .matcher
                            .as_ref()
                            .map_or_else(|| "any".to_string(), |m| m.to_string()),
                    })
                    .collect(),
                default_deny_rule: p.rule_ids.last().copied().unwrap_or_default(),
                tables: TableSizes {
                    ips: p.compiled.ips.len(),
                    ports: p.compiled.ports.len(),
                    verdicts: p.compiled.verdicts.len(),
                },
            })
            .collect();
        groups.sort_by_key(|g| g.slot);
        PolicyState { groups }
    }

    /// Writes the state atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        fs::rename(&tmp, path)
    }

    /// Reads a saved state.
    pub fn load(path: &Path) -> io::Result<Self> {
        serde_json::from_slice(&fs::read(path)?).map_err(io::Error::other)
    }

    /// The group programmed in `slot`.
    pub fn group(&self, slot: u32) -> Option<&GroupState> {
        self.groups.iter().find(|g| g.slot == slot)
    }
}
