//! The programs of the endpoints asked for, kept between changes: each with what it was built
//! from (the policies whose selector matches the endpoint, the IP sets it reads), so that a
//! change marks stale only the programs it can alter.

use std::collections::{HashMap, HashSet};

use super::{calc::GroupKey, membership::SetId, program::Program};

/// What an endpoint's programs were built from.
#[derive(Debug, Default)]
pub struct Deps {
    /// Keys of the policies whose selector matches the endpoint (whatever their directions).
    pub matching: HashSet<String>,
    /// The IP sets the programs read.
    pub sets: HashSet<SetId>,
    /// The programs read every member (a named port on a rule side without a selector).
    pub all_members: bool,
}

#[derive(Debug)]
struct Cached {
    deps: Deps,
    /// `None` once stale.
    programs: Option<[(GroupKey, Program); 2]>,
}

/// Programs per workload endpoint key (see the module docs).
#[derive(Debug, Default)]
pub struct ProgramCache {
    endpoints: HashMap<String, Cached>,
}

impl ProgramCache {
    pub fn is_built(&self, key: &str) -> bool {
        self.endpoints
            .get(key)
            .is_some_and(|c| c.programs.is_some())
    }

    pub fn programs(&self, key: &str) -> Option<&[(GroupKey, Program); 2]> {
        self.endpoints.get(key)?.programs.as_ref()
    }

    /// The policies known to match `key`, kept while its programs are stale.
    pub fn matching(&self, key: &str) -> Option<&HashSet<String>> {
        self.endpoints.get(key).map(|c| &c.deps.matching)
    }

    pub fn store(&mut self, key: &str, (programs, deps): ([(GroupKey, Program); 2], Deps)) {
        self.endpoints.insert(
            key.to_string(),
            Cached {
                deps,
                programs: Some(programs),
            },
        );
    }

    /// Every program is stale (a tier or profile changed).
    pub fn dirty_all(&mut self) {
        for c in self.endpoints.values_mut() {
            c.programs = None;
        }
    }

    /// The member at `key` was added, changed or removed, and with it the members of
    /// `changed_sets`: its own programs are forgotten (its labels may differ), and those that
    /// read a changed set or every member are stale.
    pub fn member_changed(&mut self, key: &str, changed_sets: &[SetId]) {
        self.endpoints.remove(key);
        for c in self.endpoints.values_mut() {
            if c.deps.all_members || changed_sets.iter().any(|s| c.deps.sets.contains(s)) {
                c.programs = None;
            }
        }
    }

    /// The set of `id` is gone: the programs that read it are stale.
    pub fn set_gone(&mut self, id: &str) {
        for c in self.endpoints.values_mut() {
            if c.deps.sets.contains(id) {
                c.programs = None;
            }
        }
    }

    /// Policy `key` is gone: the programs of the endpoints it matched are stale.
    pub fn policy_gone(&mut self, key: &str) {
        for c in self.endpoints.values_mut() {
            if c.deps.matching.remove(key) {
                c.programs = None;
            }
        }
    }

    /// Policy `key` arrived: `matches` says whether its selector matches an endpoint (`None`:
    /// the endpoint is gone); the programs of the endpoints it matches are stale.
    pub fn policy_added(&mut self, key: &str, matches: impl Fn(&str) -> Option<bool>) {
        self.endpoints.retain(|endpoint, c| {
            let Some(now) = matches(endpoint) else {
                return false;
            };
            if now {
                c.deps.matching.insert(key.to_string());
                c.programs = None;
            }
            true
        });
    }
}
