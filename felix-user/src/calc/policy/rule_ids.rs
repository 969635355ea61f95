//! Rule counter ids: each [`RuleRef`] the dataplane can report gets a stable index into the
//! per-rule counter array. Ids of rules that no longer exist are reused; the table is saved
//! next to felix's pid file so that a restarted felix keeps reading the same counters.

use std::{collections::HashMap, fs, io, path::Path};

use serde::{Deserialize, Serialize};

use super::RuleRef;

/// Errors assigning or saving ids.
#[derive(Debug, thiserror::Error)]
pub enum RuleIdError {
    #[error("more than {0} policy rules: no counter id left")]
    Full(u32),
    #[error("save rule ids to {path}: {source}")]
    Save {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The id table.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RuleIds {
    capacity: u32,
    /// Index = id.
    refs: Vec<Option<RuleRef>>,
    #[serde(skip)]
    by_ref: HashMap<RuleRef, u32>,
}

impl RuleIds {
    /// An empty table for `capacity` ids.
    pub fn new(capacity: u32) -> Self {
        RuleIds {
            capacity,
            ..Self::default()
        }
    }

    /// Loads a saved table, or starts empty when there is none (or it does not parse).
    pub fn load_or_new(path: &Path, capacity: u32) -> Self {
        let loaded = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<RuleIds>(&bytes).ok());
        match loaded {
            Some(mut ids) if ids.capacity == capacity => {
                ids.by_ref = ids
                    .refs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| r.clone().map(|r| (r, i as u32)))
                    .collect();
                ids
            }
            _ => Self::new(capacity),
        }
    }

    /// Saves the table (atomically).
    pub fn save(&self, path: &Path) -> Result<(), RuleIdError> {
        let err = |source| RuleIdError::Save {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(self).map_err(|e| err(io::Error::other(e)))?;
        fs::write(&tmp, json).map_err(err)?;
        fs::rename(&tmp, path).map_err(err)
    }

    /// The id of `rule`, assigning one if needed; `true` when it is new (its counter must be
    /// zeroed).
    pub fn id(&mut self, rule: &RuleRef) -> Result<(u32, bool), RuleIdError> {
        if let Some(id) = self.by_ref.get(rule) {
            return Ok((*id, false));
        }
        let id = match self.refs.iter().position(Option::is_none) {
            Some(free) => free as u32,
            None if (self.refs.len() as u32) < self.capacity => {
                self.refs.push(None);
                (self.refs.len() - 1) as u32
            }
            None => return Err(RuleIdError::Full(self.capacity)),
        };
        self.refs[id as usize] = Some(rule.clone());
        self.by_ref.insert(rule.clone(), id);
        Ok((id, true))
    }

    /// Frees the ids of rules `keep` says no longer exist.
    pub fn retain(&mut self, keep: impl Fn(&RuleRef) -> bool) {
        for slot in self.refs.iter_mut() {
            if slot.as_ref().is_some_and(|r| !keep(r))
                && let Some(r) = slot.take()
            {
                self.by_ref.remove(&r);
            }
        }
    }

    /// The rule behind `id`.
    pub fn rule(&self, id: u32) -> Option<&RuleRef> {
        self.refs.get(id as usize).and_then(Option::as_ref)
    }

    /// Every assigned id with its rule.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &RuleRef)> {
        self.refs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i as u32, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::policy::PolicyDirection;

    fn deny(direction: PolicyDirection) -> RuleRef {
        RuleRef::DefaultDeny { direction }
    }

    #[test]
    fn ids_are_stable_reused_and_bounded() {
        let mut ids = RuleIds::new(2);
        let (a, new_a) = ids.id(&deny(PolicyDirection::Ingress)).unwrap();
        assert!(new_a);
        assert_eq!(ids.id(&deny(PolicyDirection::Ingress)).unwrap(), (a, false));
        let (b, _) = ids.id(&deny(PolicyDirection::Egress)).unwrap();
        assert_ne!(a, b);
        let other = RuleRef::EndOfTier {
            tier: "t".into(),
            direction: PolicyDirection::Ingress,
        };
        assert!(matches!(ids.id(&other), Err(RuleIdError::Full(2))));
        ids.retain(|r| *r != deny(PolicyDirection::Ingress));
        assert_eq!(ids.id(&other).unwrap(), (a, true));
    }

    #[test]
    fn a_saved_table_loads_back() {
        let dir = std::env::temp_dir().join(format!("felix-rule-ids-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules.json");
        let mut ids = RuleIds::new(8);
        let rule = RuleRef::Profile {
            profile: "kns.default".into(),
            direction: PolicyDirection::Egress,
            index: 0,
        };
        let (id, _) = ids.id(&rule).unwrap();
        ids.save(&path).unwrap();
        let mut back = RuleIds::load_or_new(&path, 8);
        assert_eq!(back.id(&rule).unwrap(), (id, false));
        fs::remove_dir_all(&dir).unwrap();
    }
}
