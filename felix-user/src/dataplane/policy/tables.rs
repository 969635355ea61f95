//! Writes compiled programs into the policy maps, one *set* per group of endpoints that share a
//! program, and flips each group's *slot* to a new set atomically.
//!
//! Order of a change: write the new set completely (batched map updates), flip the slot (one
//! array update: this is what enforces it). The old set is deleted later, by
//! [`PolicyTables::release_unused`], off the change's critical path. A group that appears gets
//! a fresh slot; the caller points its endpoints at it, then calls
//! [`PolicyTables::release_unused`] to free slots no endpoint uses any more and delete the
//! sets flipped away from. On start, slots and sets a previous felix left are avoided, then
//! collected.

use std::{
    collections::{HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
};

use aya::{
    Pod,
    maps::{MapData, lpm_trie::Key},
};
use felix_common::{
    maps::POLICY_SLOTS_MAX_ENTRIES,
    policy::{
        CLASS_ANY, IP_KEY_SET_BITS, NO_SLOT, PORT_FIELD_DST, PORT_FIELD_SRC, PORT_KEY_FIELD_BITS,
        PORT_KEY_PROTO_BITS, PolicyIpKey, PolicyPortKey, PolicyVerdict, PolicyVerdictKey,
    },
};
use tracing::{debug, error};

use crate::calc::policy::{
    calc::GroupKey,
    compile::{Compiled, PortField, compile},
    program::Program,
    rule_ids::{RuleIdError, RuleIds},
};
use crate::dataplane::{
    loader::{Dataplane, LoadError},
    maps::batch,
};

/// Errors writing the policy maps.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("update {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("no free policy slot (all {0} in use)")]
    NoSlot(u32),
    #[error(transparent)]
    RuleIds(#[from] RuleIdError),
    #[error("count possible CPUs: {0}")]
    Cpus(#[source] std::io::Error),
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> TablesError {
    move |source| TablesError::Map { map, source }
}

/// What is programmed for one group.
#[derive(Debug, Clone)]
pub struct Programmed {
    pub slot: u32,
    pub set: u32,
    pub program_hash: u64,
    pub program: Program,
    pub compiled: Compiled,
    /// Rule counter id per program entry, and of the default deny (last).
    pub rule_ids: Vec<u32>,
}

/// The state of the policy maps as this felix wrote them.
#[derive(Debug, Default)]
pub struct PolicyTables {
    groups: HashMap<GroupKey, Programmed>,
    /// Slots a previous felix used: not handed out until collected.
    inherited_slots: HashSet<u32>,
    next_set: u32,
    adopted: bool,
    /// Sets flipped away from, deleted by [`Self::release_unused`].
    retired: Vec<(u32, Compiled)>,
    /// Whether the programmed groups changed since [`Self::take_changed`].
    changed: bool,
}

/// Counts of one apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TablesApplied {
    pub compiled: usize,
    pub unchanged: usize,
    pub failed: usize,
}

fn hash_of(program: &Program) -> u64 {
    let mut h = DefaultHasher::new();
    program.hash(&mut h);
    h.finish()
}

impl PolicyTables {
    /// Nothing programmed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// What is programmed, per group.
    pub fn groups(&self) -> impl Iterator<Item = (&GroupKey, &Programmed)> {
        self.groups.iter()
    }

    /// Whether the programmed groups (their slots, sets, programs or rule ids) changed since
    /// the last call; resets it.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The slot of `group`, once applied.
    pub fn slot_of(&self, group: &GroupKey) -> Option<u32> {
        self.groups.get(group).map(|p| p.slot)
    }

    /// Reads what a previous felix left: its slots are kept out of use and set ids continue
    /// after its highest.
    fn adopt(&mut self, dataplane: &mut Dataplane) -> Result<(), TablesError> {
        let slots = dataplane.policy_slots()?;
        let mut highest = 0;
        for slot in 1..POLICY_SLOTS_MAX_ENTRIES {
            let set = slots.get(&slot, 0).unwrap_or(NO_SLOT);
            if set != NO_SLOT {
                self.inherited_slots.insert(slot);
                highest = highest.max(set);
            }
        }
        let ips = dataplane.policy_ips()?;
        for key in ips.keys().flatten() {
            highest = highest.max(u32::from_be_bytes(key.data().set));
        }
        self.next_set = highest + 1;
        self.adopted = true;
        self.changed = true;
        debug!(
            inherited = self.inherited_slots.len(),
            next_set = self.next_set,
            "policy maps adopted"
        );
        Ok(())
    }

    fn free_slot(&self) -> Result<u32, TablesError> {
        let used: HashSet<u32> = self.groups.values().map(|p| p.slot).collect();
        (1..POLICY_SLOTS_MAX_ENTRIES)
            .find(|s| !used.contains(s) && !self.inherited_slots.contains(s))
            .ok_or(TablesError::NoSlot(POLICY_SLOTS_MAX_ENTRIES - 1))
    }

    /// Programs every group of `wanted`: unchanged ones are left alone, changed ones get a new
    /// set and a slot flip. Groups not in `wanted` stay until [`Self::release_unused`].
    pub fn apply(
        &mut self,
        dataplane: &mut Dataplane,
        wanted: &HashMap<GroupKey, Program>,
        rule_ids: &mut RuleIds,
    ) -> Result<TablesApplied, TablesError> {
        if !self.adopted {
            self.adopt(dataplane)?;
        }
        let mut applied = TablesApplied::default();
        for (group, program) in wanted {
            let program_hash = hash_of(program);
            if let Some(p) = self.groups.get(group)
                && p.program_hash == program_hash
                && p.program == *program
            {
                applied.unchanged += 1;
                continue;
            }
            let compiled = match compile(program) {
                Ok(c) => c,
                Err(e) => {
                    error!(?group, error = %e, "policy not compiled; its endpoints deny everything");
                    applied.failed += 1;
                    deny_all()
                }
            };
            let ids = self.assign_rule_ids(dataplane, program, rule_ids)?;
            let set = self.next_set;
            self.next_set += 1;
            write_set(dataplane, set, &compiled, &ids)?;
            let slot = match self.groups.get(group) {
                Some(p) => p.slot,
                None => self.free_slot()?,
            };
            dataplane
                .policy_slots()?
                .set(slot, set, 0)
                .map_err(map_err(felix_common::maps::POLICY_SLOTS))?;
            let old = self.groups.insert(
                group.clone(),
                Programmed {
                    slot,
                    set,
                    program_hash,
                    program: program.clone(),
                    compiled,
                    rule_ids: ids,
                },
            );
            if let Some(old) = old {
                self.retired.push((old.set, old.compiled));
            }
            self.changed = true;
            applied.compiled += 1;
        }
        Ok(applied)
    }

    fn assign_rule_ids(
        &mut self,
        dataplane: &mut Dataplane,
        program: &Program,
        rule_ids: &mut RuleIds,
    ) -> Result<Vec<u32>, TablesError> {
        let mut ids = Vec::with_capacity(program.entries.len() + 1);
        let mut fresh = Vec::new();
        for by in program
            .entries
            .iter()
            .map(|e| &e.by)
            .chain([&program.default_deny])
        {
            let (id, new) = rule_ids.id(by)?;
            ids.push(id);
            if new {
                fresh.push(id);
            }
        }
        if !fresh.is_empty() {
            let cpus = aya::util::nr_cpus().map_err(|(_, e)| TablesError::Cpus(e))?;
            let mut counters = dataplane.rule_counters()?;
            for id in fresh {
                let zero = aya::maps::PerCpuValues::try_from(vec![0u64; cpus])
                    .map_err(TablesError::Cpus)?;
                counters
                    .set(id, zero, 0)
                    .map_err(map_err(felix_common::maps::RULE_COUNTERS))?;
            }
        }
        Ok(ids)
    }

    /// Deletes the sets flipped away from, forgets groups not in `keep` (their endpoints
    /// already point elsewhere): clears their slots and deletes their sets; on the first call
    /// also collects what a previous felix left.
    pub fn release_unused(
        &mut self,
        dataplane: &mut Dataplane,
        keep: &HashSet<GroupKey>,
    ) -> Result<usize, TablesError> {
        let gone: Vec<GroupKey> = self
            .groups
            .keys()
            .filter(|g| !keep.contains(*g))
            .cloned()
            .collect();
        for (set, compiled) in std::mem::take(&mut self.retired) {
            delete_set(dataplane, set, &compiled)?;
        }
        self.changed |= !gone.is_empty();
        for group in &gone {
            if let Some(old) = self.groups.remove(group) {
                dataplane
                    .policy_slots()?
                    .set(old.slot, NO_SLOT, 0)
                    .map_err(map_err(felix_common::maps::POLICY_SLOTS))?;
                delete_set(dataplane, old.set, &old.compiled)?;
            }
        }
        if !self.inherited_slots.is_empty() {
            self.collect_inherited(dataplane)?;
        }
        Ok(gone.len())
    }

    /// Clears slots and deletes sets a previous felix left.
    fn collect_inherited(&mut self, dataplane: &mut Dataplane) -> Result<(), TablesError> {
        let mut slots = dataplane.policy_slots()?;
        for slot in self.inherited_slots.drain() {
            slots
                .set(slot, NO_SLOT, 0)
                .map_err(map_err(felix_common::maps::POLICY_SLOTS))?;
        }
        let live: HashSet<u32> = self.groups.values().map(|p| p.set).collect();
        let dead = |set: [u8; 4]| !live.contains(&u32::from_be_bytes(set));
        let mut ips = dataplane.policy_ips()?;
        let stale: Vec<_> = ips
            .keys()
            .flatten()
            .filter(|k| dead(k.data().set))
            .collect();
        for key in stale {
            let _ = ips.remove(&key);
        }
        let mut ports = dataplane.policy_ports()?;
        let stale: Vec<_> = ports
            .keys()
            .flatten()
            .filter(|k| dead(k.data().set))
            .collect();
        for key in stale {
            let _ = ports.remove(&key);
        }
        let mut verdicts = dataplane.policy_verdicts()?;
        let stale: Vec<_> = verdicts
            .keys()
            .flatten()
            .filter(|k| !live.contains(&k.set))
            .collect();
        for key in stale {
            let _ = verdicts.remove(&key);
        }
        Ok(())
    }
}

/// A program that denies everything (by its default deny): what a group gets when its policy
/// cannot be compiled.
fn deny_all() -> Compiled {
    let program = Program {
        entries: Vec::new(),
        default_deny: crate::calc::policy::RuleRef::DefaultDeny {
            direction: crate::calc::policy::PolicyDirection::Ingress,
        },
    };
    compile(&program).unwrap_or_default()
}

fn ip_key(set: u32, net: &ipnet::Ipv4Net) -> Key<PolicyIpKey> {
    Key::new(
        IP_KEY_SET_BITS + u32::from(net.prefix_len()),
        PolicyIpKey::new(set, net.network().octets()),
    )
}

fn port_key(set: u32, e: &crate::calc::policy::compile::PortEntry) -> Key<PolicyPortKey> {
    let field = match e.field {
        PortField::Dst => PORT_FIELD_DST,
        PortField::Src => PORT_FIELD_SRC,
    };
    match e.proto {
        None => Key::new(PORT_KEY_FIELD_BITS, PolicyPortKey::new(set, field, 0, 0)),
        Some(p) => Key::new(
            PORT_KEY_PROTO_BITS + u32::from(e.bits),
            PolicyPortKey::new(set, field, p, e.port),
        ),
    }
}

fn verdict_key(set: u32, (ip, dst, src): (u32, u16, u16)) -> PolicyVerdictKey {
    PolicyVerdictKey {
        set,
        ip_class: ip,
        dst_class: dst,
        src_class: src,
    }
}

/// Writes every entry of `compiled` under `set`; `ids` maps program entries (then the default
/// deny, last) to rule counter ids.
fn write_set(
    dataplane: &mut Dataplane,
    set: u32,
    compiled: &Compiled,
    ids: &[u32],
) -> Result<(), TablesError> {
    let (keys, classes): (Vec<_>, Vec<u32>) = compiled
        .ips
        .iter()
        .map(|(net, class)| (ip_key(set, net), *class))
        .unzip();
    if !batched_update(dataplane, felix_common::maps::POLICY_IPS, &keys, &classes) {
        let mut ips = dataplane.policy_ips()?;
        for (key, class) in keys.iter().zip(&classes) {
            ips.insert(key, class, 0)
                .map_err(map_err(felix_common::maps::POLICY_IPS))?;
        }
    }
    let (keys, classes): (Vec<_>, Vec<u16>) = compiled
        .ports
        .iter()
        .map(|e| (port_key(set, e), e.class))
        .unzip();
    if !batched_update(dataplane, felix_common::maps::POLICY_PORTS, &keys, &classes) {
        let mut ports = dataplane.policy_ports()?;
        for (key, class) in keys.iter().zip(&classes) {
            ports
                .insert(key, class, 0)
                .map_err(map_err(felix_common::maps::POLICY_PORTS))?;
        }
    }
    let default_id = ids.last().copied().unwrap_or(0);
    let (keys, verdicts): (Vec<_>, Vec<_>) = compiled
        .verdicts
        .iter()
        .map(|(key, outcome)| {
            let rule = outcome
                .entry
                .and_then(|e| ids.get(e).copied())
                .unwrap_or(default_id);
            (
                verdict_key(set, *key),
                PolicyVerdict::new(rule, outcome.allow),
            )
        })
        .unzip();
    if !batched_update(
        dataplane,
        felix_common::maps::POLICY_VERDICTS,
        &keys,
        &verdicts,
    ) {
        let mut map = dataplane.policy_verdicts()?;
        for (key, verdict) in keys.iter().zip(&verdicts) {
            map.insert(key, verdict, 0)
                .map_err(map_err(felix_common::maps::POLICY_VERDICTS))?;
        }
    }
    debug_assert!(
        compiled
            .verdicts
            .iter()
            .any(|((_, d, s), _)| *d == CLASS_ANY && *s == CLASS_ANY)
    );
    Ok(())
}

/// Writes `keys` and `values` into map `name` in batched calls; false when that is not possible
/// (the caller then writes them one by one, which reports the error of an entry that fails).
fn batched_update<K: Pod, V: Pod>(
    dataplane: &mut Dataplane,
    name: &'static str,
    keys: &[K],
    values: &[V],
) -> bool {
    let Some(map) = batchable(dataplane, name) else {
        return false;
    };
    match batch::update(map, keys, values) {
        Ok(()) => true,
        Err(error) => {
            debug!(map = name, %error, "batched update refused; writing entry by entry");
            false
        }
    }
}

/// Deletes `keys` from map `name` in batched calls; false when that is not possible.
fn batched_delete<K: Pod>(dataplane: &mut Dataplane, name: &'static str, keys: &[K]) -> bool {
    let Some(map) = batchable(dataplane, name) else {
        return false;
    };
    match batch::delete(map, keys) {
        Ok(()) => true,
        Err(error) => {
            debug!(map = name, %error, "batched delete refused; deleting entry by entry");
            false
        }
    }
}

/// Map `name` when batched calls can write it (a hash map or LPM trie).
fn batchable<'a>(dataplane: &'a mut Dataplane, name: &'static str) -> Option<&'a MapData> {
    dataplane
        .map(name)
        .ok()
        .and_then(|m| batch::hash_or_trie(m))
}

/// Deletes every entry of `compiled` under `set`.
fn delete_set(dataplane: &mut Dataplane, set: u32, compiled: &Compiled) -> Result<(), TablesError> {
    let keys: Vec<_> = compiled
        .ips
        .iter()
        .map(|(net, _)| ip_key(set, net))
        .collect();
    if !batched_delete(dataplane, felix_common::maps::POLICY_IPS, &keys) {
        let mut ips = dataplane.policy_ips()?;
        for key in &keys {
            let _ = ips.remove(key);
        }
    }
    let keys: Vec<_> = compiled.ports.iter().map(|e| port_key(set, e)).collect();
    if !batched_delete(dataplane, felix_common::maps::POLICY_PORTS, &keys) {
        let mut ports = dataplane.policy_ports()?;
        for key in &keys {
            let _ = ports.remove(key);
        }
    }
    let keys: Vec<_> = compiled
        .verdicts
        .iter()
        .map(|(key, _)| verdict_key(set, *key))
        .collect();
    if !batched_delete(dataplane, felix_common::maps::POLICY_VERDICTS, &keys) {
        let mut verdicts = dataplane.policy_verdicts()?;
        for key in &keys {
            let _ = verdicts.remove(key);
        }
    }
    Ok(())
}
