//! The members selectors select by address (workload endpoints, host endpoints, network sets)
//! and the IP sets over them, indexed both ways: a member upsert evaluates only the sets whose
//! selector could match it (found from a term the selector requires, such as `key == 'value'`
//! or `has(key)`; sets without one are always evaluated), and a new set is evaluated only
//! against the members that carry its required term. Each member keeps the sets it is in, so
//! removing it touches only those.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use calico::{
    model::EndpointPort,
    selector::{Labels, Selector},
};
use ipnet::Ipv4Net;

use super::program::NetSet;

/// An IP set's identity: its selector's canonical text.
pub type SetId = Arc<str>;

/// Something a selector can select by address: a workload endpoint, host endpoint or network set.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub labels: BTreeMap<String, String>,
    /// Not namespaced (what `global()` tests).
    pub global: bool,
    pub nets: Vec<Ipv4Net>,
    /// Its named ports (`spec.ports`; none for a network set).
    pub ports: Vec<EndpointPort>,
}

impl Labels for Member {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A member and the sets it is in.
#[derive(Debug)]
struct Held {
    member: Member,
    sets: Vec<SetId>,
}

/// The members a selector selects, and their addresses.
#[derive(Debug)]
struct IpSet {
    selector: Selector,
    members: BTreeMap<Arc<str>, Vec<Ipv4Net>>,
    users: usize,
    cached: Option<NetSet>,
}

impl IpSet {
    fn nets(&mut self) -> NetSet {
        if let Some(c) = &self.cached {
            return c.clone();
        }
        let set: BTreeSet<Ipv4Net> = self.members.values().flatten().copied().collect();
        let nets: NetSet = Arc::new(set.into_iter().collect());
        self.cached = Some(nets.clone());
        nets
    }
}

/// A term a selector cannot match without.
#[derive(Debug, PartialEq)]
enum Required {
    /// `key == value`, or one of several values (`key in {...}`).
    Values(String, Vec<String>),
    /// The label is present.
    Has(String),
}

impl Required {
    /// Lower is narrower.
    fn rank(&self) -> u8 {
        match self {
            Required::Values(_, v) if v.len() == 1 => 0,
            Required::Values(..) => 1,
            Required::Has(_) => 2,
        }
    }
}

/// The narrowest term `sel` requires, if any (the first of equal ones in an `&&`).
fn required(sel: &Selector) -> Option<Required> {
    match sel {
        Selector::Eq(k, v) => Some(Required::Values(k.clone(), vec![v.clone()])),
        Selector::In(k, set) => Some(Required::Values(k.clone(), set.iter().cloned().collect())),
        Selector::Has(k)
        | Selector::StartsWith(k, _)
        | Selector::EndsWith(k, _)
        | Selector::Contains(k, _) => Some(Required::Has(k.clone())),
        Selector::And(ops) => ops.iter().filter_map(required).min_by_key(Required::rank),
        _ => None,
    }
}

/// Label key -> value -> the keys (members or sets) filed under it.
type ByValue = HashMap<String, HashMap<String, HashSet<Arc<str>>>>;

/// Members and IP sets, indexed (see the module docs).
#[derive(Debug, Default)]
pub struct Membership {
    members: HashMap<Arc<str>, Held>,
    /// Members by label.
    members_by_label: ByValue,
    sets: HashMap<SetId, IpSet>,
    /// Sets that require a label value.
    sets_by_value: ByValue,
    /// Sets that require a label (any value).
    sets_by_key: HashMap<String, HashSet<SetId>>,
    /// Sets with no required term: evaluated against every member.
    unindexed: HashSet<SetId>,
}

impl Membership {
    pub fn member(&self, key: &str) -> Option<&Member> {
        self.members.get(key).map(|h| &h.member)
    }

    pub fn contains_member(&self, key: &str) -> bool {
        self.members.contains_key(key)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values().map(|h| &h.member)
    }

    pub fn has_set(&self, id: &str) -> bool {
        self.sets.contains_key(id)
    }

    /// The members of set `id`.
    pub fn set_members(&self, id: &str) -> impl Iterator<Item = &Member> {
        self.sets
            .get(id)
            .into_iter()
            .flat_map(|s| s.members.keys())
            .filter_map(|k| self.member(k))
    }

    /// The addresses of set `id`'s members (`None` for no such set).
    pub fn nets(&mut self, id: &str) -> Option<NetSet> {
        self.sets.get_mut(id).map(IpSet::nets)
    }

    /// Adds or replaces the member at `key`; returns the sets whose members, addresses or
    /// declared ports changed.
    pub fn set_member(&mut self, key: &str, member: Member) -> Vec<SetId> {
        let (key, old) = match self.members.remove_entry(key) {
            Some((k, held)) => (k, Some(held)),
            None => (Arc::from(key), None),
        };
        let ports_changed = old.as_ref().is_some_and(|h| h.member.ports != member.ports);
        let old_sets = match old {
            Some(held) => {
                unfile(&mut self.members_by_label, &held.member.labels, &key);
                held.sets
            }
            None => Vec::new(),
        };
        let candidates: Vec<SetId> = self.candidate_sets(&member.labels);
        let now: Vec<SetId> = candidates
            .into_iter()
            .filter(|id| {
                self.sets
                    .get(id)
                    .is_some_and(|s| s.selector.matches(&member.labels, member.global))
            })
            .collect();
        let mut changed = Vec::new();
        for id in &old_sets {
            if !now.contains(id)
                && let Some(set) = self.sets.get_mut(id)
            {
                set.members.remove(&key);
                set.cached = None;
                changed.push(id.clone());
            }
        }
        for id in &now {
            let Some(set) = self.sets.get_mut(id) else {
                continue;
            };
            if set.members.get(&key) != Some(&member.nets) {
                set.members.insert(key.clone(), member.nets.clone());
                set.cached = None;
                changed.push(id.clone());
            } else if ports_changed {
                changed.push(id.clone());
            }
        }
        file(&mut self.members_by_label, &member.labels, &key);
        self.members.insert(key, Held { member, sets: now });
        changed
    }

    /// Removes the member at `key`; returns the sets it was in.
    pub fn drop_member(&mut self, key: &str) -> Vec<SetId> {
        let Some((key, held)) = self.members.remove_entry(key) else {
            return Vec::new();
        };
        unfile(&mut self.members_by_label, &held.member.labels, &key);
        for id in &held.sets {
            if let Some(set) = self.sets.get_mut(id) {
                set.members.remove(&key);
                set.cached = None;
            }
        }
        held.sets
    }

    /// The sets a member with `labels` could be in: each is filed under at most one of them.
    fn candidate_sets(&self, labels: &BTreeMap<String, String>) -> Vec<SetId> {
        let mut out: Vec<SetId> = self.unindexed.iter().cloned().collect();
        for (k, v) in labels {
            if let Some(sets) = self.sets_by_value.get(k).and_then(|by| by.get(v)) {
                out.extend(sets.iter().cloned());
            }
            if let Some(sets) = self.sets_by_key.get(k) {
                out.extend(sets.iter().cloned());
            }
        }
        out
    }

    /// One more user of the set of `text` (made and filled when new; `false` when `text` does
    /// not parse).
    pub fn retain(&mut self, text: &str) -> bool {
        if let Some(set) = self.sets.get_mut(text) {
            set.users += 1;
            return true;
        }
        let Ok(selector) = Selector::parse(text) else {
            return false;
        };
        let id: SetId = Arc::from(text);
        let term = required(&selector);
        let candidates: Vec<Arc<str>> = match &term {
            Some(Required::Values(k, values)) => self
                .members_by_label
                .get(k)
                .into_iter()
                .flat_map(|by| values.iter().filter_map(|v| by.get(v)))
                .flatten()
                .cloned()
                .collect(),
            Some(Required::Has(k)) => self
                .members_by_label
                .get(k)
                .into_iter()
                .flat_map(HashMap::values)
                .flatten()
                .cloned()
                .collect(),
            None => self.members.keys().cloned().collect(),
        };
        let mut members = BTreeMap::new();
        for key in candidates {
            if let Some(held) = self.members.get_mut(&key)
                && selector.matches(&held.member.labels, held.member.global)
            {
                held.sets.push(id.clone());
                members.insert(key, held.member.nets.clone());
            }
        }
        match term {
            Some(Required::Values(k, values)) => {
                let by = self.sets_by_value.entry(k).or_default();
                for v in values {
                    by.entry(v).or_default().insert(id.clone());
                }
            }
            Some(Required::Has(k)) => {
                self.sets_by_key.entry(k).or_default().insert(id.clone());
            }
            None => {
                self.unindexed.insert(id.clone());
            }
        }
        self.sets.insert(
            id,
            IpSet {
                selector,
                members,
                users: 1,
                cached: None,
            },
        );
        true
    }

    /// One user fewer of the set of `text`; `true` when that was the last and the set is gone.
    pub fn release(&mut self, text: &str) -> bool {
        let Some(set) = self.sets.get_mut(text) else {
            return false;
        };
        set.users -= 1;
        if set.users > 0 {
            return false;
        }
        let Some((id, set)) = self.sets.remove_entry(text) else {
            return false;
        };
        for key in set.members.keys() {
            if let Some(held) = self.members.get_mut(key) {
                held.sets.retain(|s| *s != id);
            }
        }
        match required(&set.selector) {
            Some(Required::Values(k, values)) => {
                if let Some(by) = self.sets_by_value.get_mut(&k) {
                    for v in values {
                        if let Some(ids) = by.get_mut(&v) {
                            ids.remove(&id);
                            if ids.is_empty() {
                                by.remove(&v);
                            }
                        }
                    }
                    if by.is_empty() {
                        self.sets_by_value.remove(&k);
                    }
                }
            }
            Some(Required::Has(k)) => {
                if let Some(ids) = self.sets_by_key.get_mut(&k) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.sets_by_key.remove(&k);
                    }
                }
            }
            None => {
                self.unindexed.remove(&id);
            }
        }
        true
    }
}

fn file(index: &mut ByValue, labels: &BTreeMap<String, String>, key: &Arc<str>) {
    for (k, v) in labels {
        index
            .entry(k.clone())
            .or_default()
            .entry(v.clone())
            .or_default()
            .insert(key.clone());
    }
}

fn unfile(index: &mut ByValue, labels: &BTreeMap<String, String>, key: &str) {
    for (k, v) in labels {
        let Some(by) = index.get_mut(k) else { continue };
        if let Some(keys) = by.get_mut(v) {
            keys.remove(key);
            if keys.is_empty() {
                by.remove(v);
            }
        }
        if by.is_empty() {
            index.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(labels: &[(&str, &str)], net: &str) -> Member {
        Member {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            global: false,
            nets: vec![net.parse().expect("net")],
            ports: Vec::new(),
        }
    }

    fn keys(m: &Membership, id: &str) -> Vec<Vec<Ipv4Net>> {
        m.set_members(id).map(|x| x.nets.clone()).collect()
    }

    #[test]
    fn required_terms_pick_the_narrowest_operand() {
        let term = |t: &str| required(&Selector::parse(t).expect("selector"));
        assert_eq!(
            term("has(a) && b == 'x'"),
            Some(Required::Values("b".into(), vec!["x".into()]))
        );
        assert_eq!(term("a starts with 'p'"), Some(Required::Has("a".into())));
        assert_eq!(term("a == 'x' || b == 'y'"), None);
        assert_eq!(term("!has(a)"), None);
    }

    #[test]
    fn sets_follow_members_whichever_comes_first() {
        let mut m = Membership::default();
        m.set_member("a", member(&[("app", "web")], "10.0.0.1/32"));
        assert!(m.retain("app == \"web\""));
        assert!(m.retain("!has(app)"));
        m.set_member("b", member(&[("app", "db")], "10.0.0.2/32"));
        m.set_member("c", member(&[("app", "web")], "10.0.0.3/32"));
        assert_eq!(keys(&m, "app == \"web\"").len(), 2);
        assert_eq!(keys(&m, "!has(app)").len(), 0);
        // Relabel c out of the web set into the unlabelled one.
        let changed = m.set_member("c", member(&[], "10.0.0.3/32"));
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(keys(&m, "app == \"web\"").len(), 1);
        assert_eq!(keys(&m, "!has(app)").len(), 1);
        assert_eq!(m.drop_member("a").len(), 1);
        assert_eq!(keys(&m, "app == \"web\"").len(), 0);
        assert!(m.release("app == \"web\""));
        assert!(!m.has_set("app == \"web\""));
        // A new set with the same selector starts from the members as they are.
        m.set_member("d", member(&[("app", "web")], "10.0.0.4/32"));
        assert!(m.retain("app == \"web\""));
        assert_eq!(
            m.nets("app == \"web\"").map(|n| n.to_vec()),
            Some(vec!["10.0.0.4/32".parse().expect("net")])
        );
    }
}
