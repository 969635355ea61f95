//! The calculation: from Calico's resources to each local endpoint's [`Program`] per direction.
//!
//! Kept incrementally: resources arrive one at a time ([`PolicyCalc::upsert`] /
//! [`PolicyCalc::remove`]); the address sets behind rule selectors ("IP sets") follow endpoints,
//! host endpoints and network sets as they come and go, through indexes ([`Membership`]).
//! Programs are built on demand for the (few) local endpoints and cached ([`ProgramCache`]):
//! a change rebuilds only the programs it can alter.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use calico::{
    model::{
        Action, EndpointPort, EntityRule, Icmp, Port, Resource, Rule, TierSpec,
        WorkloadEndpointSpec,
        policy::{DEFAULT_TIER, ServiceAccountMatch},
    },
    selector::Selector,
};
use ipnet::{IpNet, Ipv4Net};
use tracing::warn;

use super::{
    PolicyDirection, RuleRef,
    cache::{Deps, ProgramCache},
    membership::{Member, Membership},
    program::{AddrMatch, Entry, Match, NetSet, PortMatch, PortRange, Program, ProtoMatch, Step},
};

/// The label Calico puts on every workload endpoint: its namespace.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// Prefix of namespace labels as endpoints inherit them.
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// The namespace's own name among its labels.
pub const NAMESPACE_NAME_LABEL: &str = "projectcalico.org/name";
/// The label Calico's CNI plugin puts on a pod's workload endpoint: its service account's name.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// Prefix of service account labels as endpoints inherit them (from the `labelsToApply` of
/// Calico's `ksa.<namespace>.<name>` profiles).
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";
/// The order Calico gives the `default` tier when it has no Tier resource.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// Prefix of the profile Calico makes for each namespace (`kns.<namespace>`).
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";

/// A workload endpoint as the calculation keeps it.
#[derive(Clone, Debug, PartialEq)]
struct Workload {
    namespace: Option<String>,
    own_labels: BTreeMap<String, String>,
    spec: WorkloadEndpointSpec,
}

/// A namespaced NetworkSet as the calculation keeps it (its labels depend on its namespace's
/// `kns.<namespace>` profile, so they are recomputed when that profile changes).
#[derive(Clone, Debug, PartialEq)]
struct NamespacedSet {
    namespace: String,
    own_labels: BTreeMap<String, String>,
    nets: Vec<Ipv4Net>,
}

impl NamespacedSet {
    fn profile(&self) -> String {
        format!("{NAMESPACE_PROFILE_PREFIX}{}", self.namespace)
    }
}

/// A policy, with its selector already scoped (namespace, namespaceSelector).
#[derive(Clone, Debug)]
struct PolicyDef {
    tier: String,
    order: f64,
    /// `<namespace>/<name>` or `<name>`.
    name: String,
    /// `None` for a GlobalNetworkPolicy.
    namespace: Option<String>,
    /// `None` when the selector does not parse (selects nothing).
    selector: Option<Selector>,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

/// What makes two endpoints' programs for a direction identical: the policies and profiles that
/// apply, in order, and which rules their local side keeps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub direction: PolicyDirection,
    pub policies: Vec<String>,
    pub profiles: Vec<String>,
    /// Per rule considered, whether the endpoint passes the rule's local-side criteria.
    pub local_mask: Vec<bool>,
    /// Per named port on the local side of a rule (in rule order), the port numbers the
    /// endpoint declares under that name and the rule's protocol.
    pub local_ports: Vec<Vec<u16>>,
}

/// Everything the calculation keeps.
#[derive(Debug, Default)]
pub struct PolicyCalc {
    tiers: HashMap<String, TierSpec>,
    /// Shared, so that building a program does not copy a policy's rules.
    policies: HashMap<String, Arc<PolicyDef>>,
    profiles: HashMap<String, calico::model::ProfileSpec>,
    workloads: HashMap<String, Workload>,
    network_sets: HashMap<String, NamespacedSet>,
    membership: Membership,
    cache: ProgramCache,
    /// What the program being built reads (see [`PolicyCalc::cached_programs`]).
    recording: Option<Deps>,
    warned: HashSet<String>,
}

/// Labels with a namespace test in front: `key == ns && (sel)`.
fn in_namespace(ns: &str, sel: Selector) -> Selector {
    let scope = Selector::Eq(NAMESPACE_LABEL.into(), ns.into());
    match sel {
        Selector::All => scope,
        other => Selector::And(vec![scope, other]),
    }
}

/// A namespaceSelector as endpoints carry namespace labels (`pcns.` prefix); `all()` means
/// every namespace, so it selects namespaced endpoints only.
fn namespace_labels(sel: &Selector) -> Selector {
    match sel {
        Selector::All => Selector::Has(NAMESPACE_LABEL.into()),
        other => prefixed(other, NAMESPACE_LABEL_PREFIX),
    }
}

/// `sel` with `prefix` in front of every label key (`all()` stays `all()`).
fn prefixed(sel: &Selector, prefix: &str) -> Selector {
    let p = |k: &String| format!("{prefix}{k}");
    match sel {
        Selector::All => Selector::All,
        Selector::Global => Selector::Global,
        Selector::Has(k) => Selector::Has(p(k)),
        Selector::Eq(k, v) => Selector::Eq(p(k), v.clone()),
        Selector::Ne(k, v) => Selector::Ne(p(k), v.clone()),
        Selector::In(k, s) => Selector::In(p(k), s.clone()),
        Selector::NotIn(k, s) => Selector::NotIn(p(k), s.clone()),
        Selector::StartsWith(k, v) => Selector::StartsWith(p(k), v.clone()),
        Selector::EndsWith(k, v) => Selector::EndsWith(p(k), v.clone()),
        Selector::Contains(k, v) => Selector::Contains(p(k), v.clone()),
        Selector::Not(inner) => Selector::Not(Box::new(prefixed(inner, prefix))),
        Selector::And(ops) => Selector::And(ops.iter().map(|o| prefixed(o, prefix)).collect()),
        Selector::Or(ops) => Selector::Or(ops.iter().map(|o| prefixed(o, prefix)).collect()),
    }
}

/// `sel` with every `all()` turned into `has(projectcalico.org/serviceaccount)`: what Calico
/// does to a GlobalNetworkPolicy's selector once it has a `serviceAccountSelector`.
fn all_means_has_service_account(sel: &Selector) -> Selector {
    match sel {
        Selector::All => Selector::Has(SERVICE_ACCOUNT_LABEL.into()),
        Selector::Not(inner) => Selector::Not(Box::new(all_means_has_service_account(inner))),
        Selector::And(ops) => {
            Selector::And(ops.iter().map(all_means_has_service_account).collect())
        }
        Selector::Or(ops) => Selector::Or(ops.iter().map(all_means_has_service_account).collect()),
        other => other.clone(),
    }
}

fn and(a: Selector, b: Selector) -> Selector {
    match (a, b) {
        (Selector::All, x) | (x, Selector::All) => x,
        (a, b) => Selector::And(vec![a, b]),
    }
}

/// A selector field that is present and not blank.
fn non_blank(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.trim().is_empty())
}

fn v4_nets(nets: impl IntoIterator<Item = IpNet>) -> Vec<Ipv4Net> {
    nets.into_iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(n.trunc()),
            IpNet::V6(_) => None,
        })
        .collect()
}

fn v4_addr(ip: &IpAddr) -> Option<Ipv4Net> {
    match ip {
        IpAddr::V4(a) => Some(Ipv4Net::from(*a)),
        IpAddr::V6(_) => None,
    }
}

/// The selectors of one side of a rule, scoped as Calico scopes them: in a namespaced policy
/// (or with a namespaceSelector) `selector` is ANDed with the namespace test; `notSelector` is
/// not scoped.
struct SideSelectors {
    selector: Option<Selector>,
    not_selector: Option<Selector>,
}

impl PolicyCalc {
    /// A calculation with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    fn warn_once(&mut self, what: String) {
        if self.warned.insert(what.clone()) {
            warn!("{what}");
        }
    }

    fn parse_selector(&mut self, text: &str, whose: &str) -> Option<Selector> {
        match Selector::parse(text) {
            Ok(s) => Some(s),
            Err(e) => {
                self.warn_once(format!("{whose}: selector ignored (matches nothing): {e}"));
                None
            }
        }
    }

    /// Adds or replaces the resource at `key`; kinds policy does not use are ignored.
    pub fn upsert(&mut self, key: &str, resource: &Resource) {
        // A policy keeps its old IP sets until the new ones are in place (no re-evaluation of
        // selectors that did not change).
        if !matches!(
            resource,
            Resource::NetworkPolicy(_) | Resource::GlobalNetworkPolicy(_)
        ) {
            self.remove(key);
        }
        match resource {
            Resource::WorkloadEndpoint(o) => {
                let workload = Workload {
                    namespace: o.metadata.namespace.clone(),
                    own_labels: o.metadata.labels.clone(),
                    spec: o.spec.clone(),
                };
                self.workloads.insert(key.to_string(), workload);
                self.refresh_workload(key);
            }
            Resource::HostEndpoint(o) => {
                let nets = o.spec.expected_ips.iter().filter_map(v4_addr).collect();
                let ports = o.spec.ports.clone();
                self.set_member(key, o.metadata.labels.clone(), true, nets, ports);
            }
            Resource::GlobalNetworkSet(o) => {
                let nets = v4_nets(o.spec.nets.iter().map(|c| c.0));
                self.set_member(key, o.metadata.labels.clone(), true, nets, Vec::new());
            }
            Resource::NetworkSet(o) => {
                let set = NamespacedSet {
                    namespace: o.metadata.namespace.clone().unwrap_or_default(),
                    own_labels: o.metadata.labels.clone(),
                    nets: v4_nets(o.spec.nets.iter().map(|c| c.0)),
                };
                self.network_sets.insert(key.to_string(), set);
                self.refresh_network_set(key);
            }
            Resource::Tier(o) => {
                self.tiers.insert(o.metadata.name.clone(), o.spec.clone());
                self.cache.dirty_all();
            }
            Resource::Profile(o) => {
                self.profiles
                    .insert(o.metadata.name.clone(), o.spec.clone());
                self.cache.dirty_all();
                self.refresh_profile_users(&o.metadata.name);
            }
            Resource::NetworkPolicy(o) => {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                let name = format!("{ns}/{}", o.metadata.name);
                let whose = format!("NetworkPolicy {name}");
                let mut selector = self
                    .parse_selector(&o.spec.selector, &whose)
                    .map(|s| in_namespace(&ns, s));
                if let Some(text) = non_blank(&o.spec.service_account_selector) {
                    let sa = self.parse_selector(text, &whose);
                    selector = match (selector, sa) {
                        (Some(s), Some(sa)) => {
                            Some(and(s, prefixed(&sa, SERVICE_ACCOUNT_LABEL_PREFIX)))
                        }
                        _ => None,
                    };
                }
                let (ingress, egress) =
                    by_type(&o.spec.effective_types(), &o.spec.ingress, &o.spec.egress);
                let def = PolicyDef {
                    tier: o.spec.tier().to_string(),
                    order: o.spec.order_or_inf(),
                    name,
                    namespace: Some(ns),
                    selector,
                    ingress,
                    egress,
                };
                self.add_policy(key, def);
            }
            Resource::GlobalNetworkPolicy(o) => {
                let name = o.metadata.name.clone();
                let whose = format!("GlobalNetworkPolicy {name}");
                let mut selector = self.parse_selector(&o.spec.selector, &whose);
                if let Some(ns) = &o.spec.namespace_selector {
                    let ns_sel = self.parse_selector(ns, &whose);
                    selector = match (selector, ns_sel) {
                        (Some(s), Some(n)) => Some(and(namespace_labels(&n), s)),
                        _ => None,
                    };
                }
                if let Some(text) = non_blank(&o.spec.service_account_selector) {
                    // Calico then rewrites every `all()` left in the selector text (one the
                    // namespaceSelector step did not already rewrite, none in a blank selector).
                    let rewrite_own =
                        o.spec.namespace_selector.is_none() && !o.spec.selector.trim().is_empty();
                    let sa = self.parse_selector(text, &whose);
                    selector = match (selector, sa) {
                        (Some(s), Some(sa)) => {
                            let s = if rewrite_own {
                                all_means_has_service_account(&s)
                            } else {
                                s
                            };
                            let sa = prefixed(&sa, SERVICE_ACCOUNT_LABEL_PREFIX);
                            Some(and(s, all_means_has_service_account(&sa)))
                        }
                        _ => None,
                    };
                }
                let (ingress, egress) =
                    by_type(&o.spec.effective_types(), &o.spec.ingress, &o.spec.egress);
                let def = PolicyDef {
                    tier: o.spec.tier().to_string(),
                    order: o.spec.order_or_inf(),
                    name,
                    namespace: None,
                    selector,
                    ingress,
                    egress,
                };
                self.add_policy(key, def);
            }
            _ => {}
        }
    }

    /// Removes whatever was at `key`.
    pub fn remove(&mut self, key: &str) {
        let was_workload = self.workloads.remove(key).is_some();
        let was_set = self.network_sets.remove(key).is_some();
        if was_workload || was_set || self.membership.contains_member(key) {
            self.drop_member(key);
        } else if let Some(def) = self.policies.remove(key) {
            self.cache.policy_gone(key);
            let selectors = self.rule_selectors(&def);
            for text in selectors {
                self.release_ipset(&text);
            }
        } else if let Some((kind, _, name)) = calico::model::parse_key(key) {
            match kind {
                calico::model::Kind::Tier => {
                    self.tiers.remove(&name);
                    self.cache.dirty_all();
                }
                calico::model::Kind::Profile if self.profiles.remove(&name).is_some() => {
                    self.cache.dirty_all();
                    self.refresh_profile_users(&name);
                }
                _ => {}
            }
        }
    }

    /// The full labels of a workload: its own, its namespace, then its profiles' (first wins).
    fn workload_labels(&self, w: &Workload) -> BTreeMap<String, String> {
        let mut labels = w.own_labels.clone();
        if let Some(ns) = &w.namespace {
            labels
                .entry(NAMESPACE_LABEL.to_string())
                .or_insert_with(|| ns.clone());
            labels
                .entry(format!("{NAMESPACE_LABEL_PREFIX}{NAMESPACE_NAME_LABEL}"))
                .or_insert_with(|| ns.clone());
        }
        for profile in &w.spec.profiles {
            if let Some(p) = self.profiles.get(profile) {
                for (k, v) in &p.labels_to_apply {
                    labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        labels
    }

    fn refresh_workload(&mut self, key: &str) {
        let Some(w) = self.workloads.get(key) else {
            return;
        };
        let labels = self.workload_labels(w);
        let nets = v4_nets(w.spec.ip_networks.iter().map(|c| c.0));
        let ports = w.spec.ports.clone();
        self.set_member(key, labels, false, nets, ports);
    }

    /// A namespaced NetworkSet's labels as Calico's syncer gives them (`networksetprocessor.go`):
    /// its own, `projectcalico.org/namespace` set to its namespace, then its namespace profile's.
    fn network_set_labels(&self, set: &NamespacedSet) -> BTreeMap<String, String> {
        let mut labels = set.own_labels.clone();
        labels.insert(NAMESPACE_LABEL.to_string(), set.namespace.clone());
        labels
            .entry(format!("{NAMESPACE_LABEL_PREFIX}{NAMESPACE_NAME_LABEL}"))
            .or_insert_with(|| set.namespace.clone());
        if let Some(p) = self.profiles.get(&set.profile()) {
            for (k, v) in &p.labels_to_apply {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        labels
    }

    fn refresh_network_set(&mut self, key: &str) {
        let Some(set) = self.network_sets.get(key) else {
            return;
        };
        let labels = self.network_set_labels(set);
        let nets = set.nets.clone();
        self.set_member(key, labels, false, nets, Vec::new());
    }

    fn refresh_profile_users(&mut self, profile: &str) {
        let sets: Vec<String> = self
            .network_sets
            .iter()
            .filter(|(_, s)| s.profile() == profile)
            .map(|(k, _)| k.clone())
            .collect();
        for key in sets {
            self.refresh_network_set(&key);
        }
        let users: Vec<String> = self
            .workloads
            .iter()
            .filter(|(_, w)| w.spec.profiles.iter().any(|p| p == profile))
            .map(|(k, _)| k.clone())
            .collect();
        for key in users {
            self.refresh_workload(&key);
        }
    }

    fn set_member(
        &mut self,
        key: &str,
        labels: BTreeMap<String, String>,
        global: bool,
        nets: Vec<Ipv4Net>,
        ports: Vec<EndpointPort>,
    ) {
        let member = Member {
            labels,
            global,
            nets,
            ports,
        };
        let changed = self.membership.set_member(key, member);
        self.cache.member_changed(key, &changed);
    }

    fn drop_member(&mut self, key: &str) {
        let changed = self.membership.drop_member(key);
        self.cache.member_changed(key, &changed);
    }

    fn add_policy(&mut self, key: &str, def: PolicyDef) {
        for text in self.rule_selectors(&def) {
            self.retain_ipset(&text);
        }
        self.remove(key);
        let membership = &self.membership;
        self.cache.policy_added(key, |endpoint| {
            let member = membership.member(endpoint)?;
            Some(
                def.selector
                    .as_ref()
                    .is_some_and(|s| s.matches(&member.labels, false)),
            )
        });
        self.policies.insert(key.to_string(), Arc::new(def));
    }

    /// The canonical text of every remote-side selector the policy's rules use.
    fn rule_selectors(&mut self, def: &PolicyDef) -> Vec<String> {
        let rules: Vec<(PolicyDirection, Rule)> = [
            (PolicyDirection::Ingress, &def.ingress),
            (PolicyDirection::Egress, &def.egress),
        ]
        .into_iter()
        .flat_map(|(d, rules)| rules.iter().flatten().map(move |r| (d, r.clone())))
        .collect();
        let mut out = Vec::new();
        for (direction, rule) in rules {
            let entity = remote_entity(&rule, direction);
            let sides = self.side_selectors(entity, def.namespace.as_deref(), &def.name);
            out.extend(sides.selector.map(|s| s.to_string()));
            out.extend(sides.not_selector.map(|s| s.to_string()));
        }
        out
    }

    fn retain_ipset(&mut self, text: &str) {
        self.membership.retain(text);
    }

    fn release_ipset(&mut self, text: &str) {
        if self.membership.release(text) {
            self.cache.set_gone(text);
        }
    }

    fn side_selectors(
        &mut self,
        entity: &EntityRule,
        namespace: Option<&str>,
        whose: &str,
    ) -> SideSelectors {
        let selector = entity
            .selector
            .as_ref()
            .map(|t| self.parse_selector(t, &format!("policy {whose}")));
        // Calico ANDs the service accounts into the rule's selector (and so scopes them).
        let accounts = entity
            .service_accounts
            .as_ref()
            .and_then(|m| self.service_accounts_selector(m, whose));
        let selector = match (accounts, selector) {
            (None, s) | (s, None) => s,
            (Some(Some(a)), Some(Some(s))) => Some(Some(and(a, s))),
            _ => Some(None),
        };
        let mut parse = |text: &Option<String>| -> Option<Option<Selector>> {
            text.as_ref()
                .map(|t| self.parse_selector(t, &format!("policy {whose}")))
        };
        let not_selector = parse(&entity.not_selector);
        let ns_selector = parse(&entity.namespace_selector);
        let any_selector = selector.is_some() || not_selector.is_some() || ns_selector.is_some();
        let scope = match (&ns_selector, namespace) {
            (Some(Some(n)), _) => Some(namespace_labels(n)),
            // A namespaceSelector that does not parse selects nothing.
            (Some(None), _) => Some(Selector::Not(Box::new(Selector::All))),
            (None, Some(ns)) => Some(Selector::Eq(NAMESPACE_LABEL.into(), ns.into())),
            (None, None) => None,
        };
        let selector = match (scope, any_selector) {
            (Some(scope), true) => match selector {
                Some(Some(s)) => Some(and(scope, s)),
                Some(None) => Some(Selector::Not(Box::new(Selector::All))),
                None => Some(scope),
            },
            _ => selector.map(|s| s.unwrap_or(Selector::Not(Box::new(Selector::All)))),
        };
        // A notSelector that does not parse excludes nothing.
        let not_selector = not_selector.flatten();
        SideSelectors {
            selector,
            not_selector,
        }
    }

    /// A rule side's `serviceAccounts` as a selector over endpoint labels, as Calico writes it:
    /// the names are values of `projectcalico.org/serviceaccount`, the selector's keys get the
    /// `pcsa.` prefix. `None`: no criterion (an empty match); `Some(None)`: a selector that
    /// does not parse (selects nothing).
    fn service_accounts_selector(
        &mut self,
        accounts: &ServiceAccountMatch,
        whose: &str,
    ) -> Option<Option<Selector>> {
        let mut parts = Vec::new();
        if !accounts.selector.trim().is_empty() {
            match self.parse_selector(&accounts.selector, &format!("policy {whose}")) {
                Some(s) => parts.push(prefixed(&s, SERVICE_ACCOUNT_LABEL_PREFIX)),
                None => return Some(None),
            }
        }
        if !accounts.names.is_empty() {
            let names = accounts.names.iter().cloned().collect();
            parts.push(Selector::In(SERVICE_ACCOUNT_LABEL.into(), names));
        }
        parts.into_iter().reduce(and).map(Some)
    }

    /// A calculation holding `resources` (keyed as in etcd).
    pub fn from_resources<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Self {
        let mut calc = Self::new();
        for r in resources {
            calc.upsert(&r.key(), r);
        }
        calc
    }

    /// The program of the workload endpoint at `key` in `direction`, with its group key.
    pub fn program_for(
        &mut self,
        key: &str,
        direction: PolicyDirection,
    ) -> Option<(GroupKey, Program)> {
        let [ingress, egress] = self.cached_programs(key)?;
        Some(match direction {
            PolicyDirection::Ingress => ingress.clone(),
            PolicyDirection::Egress => egress.clone(),
        })
    }

    /// The programs of the workload endpoint at `key` (ingress, egress), with their group keys;
    /// `None` when there is no such endpoint.
    pub fn programs(&mut self, key: &str) -> Option<[(GroupKey, Program); 2]> {
        self.cached_programs(key).cloned()
    }

    /// As [`PolicyCalc::programs`], borrowed from the cache: built only when a change since
    /// the last call can have altered them.
    pub fn cached_programs(&mut self, key: &str) -> Option<&[(GroupKey, Program); 2]> {
        if !self.workloads.contains_key(key) || !self.membership.contains_member(key) {
            return None;
        }
        if !self.cache.is_built(key) {
            let built = self.build_programs(key)?;
            self.cache.store(key, built);
        }
        self.cache.programs(key)
    }

    /// Builds the programs of `key` (with what they read, for the cache).
    fn build_programs(&mut self, key: &str) -> Option<([(GroupKey, Program); 2], Deps)> {
        let workload = self.workloads.get(key)?.clone();
        let member = self.membership.member(key)?.clone();
        let matching = match self.cache.matching(key) {
            Some(m) => m.clone(),
            None => self
                .policies
                .iter()
                .filter(|(_, p)| {
                    p.selector
                        .as_ref()
                        .is_some_and(|s| s.matches(&member.labels, false))
                })
                .map(|(k, _)| k.clone())
                .collect(),
        };
        self.recording = Some(Deps::default());
        let programs = [
            self.program(&workload, &member, &matching, PolicyDirection::Ingress),
            self.program(&workload, &member, &matching, PolicyDirection::Egress),
        ];
        let mut deps = self.recording.take().unwrap_or_default();
        deps.matching = matching;
        Some((programs, deps))
    }

    fn tier_order(&self, tier: &str) -> f64 {
        match self.tiers.get(tier) {
            Some(t) => t.order_or_inf(),
            None if tier == DEFAULT_TIER => DEFAULT_TIER_ORDER,
            None => f64::INFINITY,
        }
    }

    /// Of the policies whose selector matches the endpoint (`matching`), those that apply in
    /// `direction`, by tier then policy order.
    fn applicable(
        &self,
        matching: &HashSet<String>,
        direction: PolicyDirection,
    ) -> Vec<(String, Arc<PolicyDef>)> {
        let mut list: Vec<(String, Arc<PolicyDef>)> = matching
            .iter()
            .filter_map(|k| Some((k, self.policies.get(k)?)))
            .filter(|(_, p)| rules_for(p, direction).is_some())
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        list.sort_by(|(_, a), (_, b)| {
            self.tier_order(&a.tier)
                .total_cmp(&self.tier_order(&b.tier))
                .then_with(|| a.tier.cmp(&b.tier))
                .then_with(|| a.order.total_cmp(&b.order))
                .then_with(|| a.name.cmp(&b.name))
        });
        list
    }

    fn program(
        &mut self,
        workload: &Workload,
        member: &Member,
        matching: &HashSet<String>,
        direction: PolicyDirection,
    ) -> (GroupKey, Program) {
        let applicable = self.applicable(matching, direction);
        let mut key = GroupKey {
            direction,
            policies: applicable.iter().map(|(k, _)| k.clone()).collect(),
            profiles: workload.spec.profiles.clone(),
            local_mask: Vec::new(),
            local_ports: Vec::new(),
        };
        let mut entries = Vec::new();
        let mut i = 0;
        while i < applicable.len() {
            let tier = applicable[i].1.tier.clone();
            while i < applicable.len() && applicable[i].1.tier == tier {
                let def = applicable[i].1.clone();
                for (index, rule) in rules_for(&def, direction).into_iter().flatten().enumerate() {
                    let by = RuleRef::Policy {
                        tier: tier.clone(),
                        policy: def.name.clone(),
                        direction,
                        index,
                    };
                    let ns = def.namespace.clone();
                    let found = self.entries(rule, by, ns.as_deref(), member, direction);
                    key.local_mask.push(!found.entries.is_empty());
                    key.local_ports.extend(found.local_ports);
                    entries.extend(found.entries);
                }
                i += 1;
            }
            let pass = self
                .tiers
                .get(&tier)
                .is_some_and(|t| t.default_action == Some(Action::Pass));
            entries.push(Entry {
                by: RuleRef::EndOfTier {
                    tier: tier.clone(),
                    direction,
                },
                step: Step::EndOfTier { pass },
                matcher: None,
            });
        }
        for profile in &workload.spec.profiles {
            let Some(spec) = self.profiles.get(profile).cloned() else {
                continue;
            };
            let rules = match direction {
                PolicyDirection::Ingress => &spec.ingress,
                PolicyDirection::Egress => &spec.egress,
            };
            for (index, rule) in rules.iter().enumerate() {
                let by = RuleRef::Profile {
                    profile: profile.clone(),
                    direction,
                    index,
                };
                let found = self.entries(rule, by, None, member, direction);
                key.local_mask.push(!found.entries.is_empty());
                key.local_ports.extend(found.local_ports);
                entries.extend(found.entries);
            }
            entries.push(Entry {
                by: RuleRef::Profile {
                    profile: profile.clone(),
                    direction,
                    index: rules.len(),
                },
                step: Step::EndOfProfile,
                matcher: None,
            });
        }
        let program = Program {
            entries,
            default_deny: RuleRef::DefaultDeny { direction },
        };
        (key, program)
    }

    /// The entries for `rule`: none when it cannot match this endpoint (local side, IPv6, Log,
    /// only named ports that nobody declares), one in general, several (same step, same rule)
    /// when named ports on the remote side pair addresses with port numbers.
    fn entries(
        &mut self,
        rule: &Rule,
        by: RuleRef,
        namespace: Option<&str>,
        member: &Member,
        direction: PolicyDirection,
    ) -> RuleEntries {
        let mut found = RuleEntries::default();
        let step = match rule.action {
            Action::Allow => Step::Allow,
            Action::Deny => Step::Deny,
            Action::Pass => Step::Pass,
            Action::Log => return found,
        };
        if rule.ip_version == Some(6) {
            return found;
        }
        let whose = by.to_string();
        let remote = remote_entity(rule, direction);
        let local = local_entity(rule, direction);
        if !self.local_side_holds(local, namespace, member, &whose) {
            return found;
        }
        let mut remote_match = AddrMatch::default();
        if !remote.nets.is_empty() {
            remote_match
                .all_of
                .push(Arc::new(sorted(v4_nets(remote.nets.iter().map(|c| c.0)))));
        }
        if !remote.not_nets.is_empty() {
            remote_match.none_of.push(Arc::new(sorted(v4_nets(
                remote.not_nets.iter().map(|c| c.0),
            ))));
        }
        let sides = self.side_selectors(remote, namespace, &whose);
        if let Some(sel) = &sides.selector {
            remote_match.all_of.push(self.ipset_nets(sel));
        }
        if let Some(sel) = sides.not_selector {
            remote_match.none_of.push(self.ipset_nets(&sel));
        }
        let proto = rule.protocol.map(|p| p.number());
        let mut matcher = Match {
            proto: ProtoMatch {
                is: proto,
                not: rule.not_protocol.map(|p| p.number()),
            },
            remote: remote_match,
            dst_ports: ports(&rule.destination.ports, &rule.destination.not_ports),
            src_ports: ports(&rule.source.ports, &rule.source.not_ports),
        };
        if let Some(icmp) = &rule.icmp {
            matcher.dst_ports.any_of.push(icmp_range(icmp));
        }
        if let Some(icmp) = &rule.not_icmp {
            matcher.dst_ports.none_of.push(icmp_range(icmp));
        }
        // The local side's named ports are the endpoint's own.
        let local_field = port_field(&mut matcher, direction, Side::Local);
        let (any, none) = (named(&local.ports), named(&local.not_ports));
        for name in &any {
            let numbers = declared(&member.ports, name, proto);
            local_field.any_of.extend(numbers.iter().map(|&p| (p, p)));
            found.local_ports.push(numbers);
        }
        for name in &none {
            let numbers = declared(&member.ports, name, proto);
            local_field.none_of.extend(numbers.iter().map(|&p| (p, p)));
            found.local_ports.push(numbers);
        }
        if !local.ports.is_empty() && local_field.any_of.is_empty() {
            // Only named ports, and the endpoint declares none of them.
            return found;
        }
        // The remote side's named ports: (address set, port) pairs of the endpoints the side's
        // selector selects (every endpoint without one).
        let (any, none) = (named(&remote.ports), named(&remote.not_ports));
        if any.is_empty() && none.is_empty() {
            found.entries.push(Entry {
                by,
                step,
                matcher: Some(matcher),
            });
            return found;
        }
        let any = self.named_port_sets(sides.selector.as_ref(), &any, proto);
        let none = self.named_port_sets(sides.selector.as_ref(), &none, proto);
        let remote_field = port_field(&mut matcher, direction, Side::Remote);
        let numeric_any = std::mem::take(&mut remote_field.any_of);
        let mut wanted: Vec<Wanted> = Vec::new();
        if !numeric_any.is_empty() || remote.ports.is_empty() {
            wanted.push(Wanted {
                declared_by: None,
                ports: numeric_any,
            });
        }
        wanted.extend(any.into_iter().map(|(p, nets)| Wanted {
            declared_by: Some(nets),
            ports: vec![(p, p)],
        }));
        let mut refused = vec![Refused::OtherPort(none.keys().map(|&p| (p, p)).collect())];
        refused.extend(none.into_iter().map(|(p, nets)| Refused::SamePort(p, nets)));
        for want in &wanted {
            for refuse in &refused {
                let mut m = matcher.clone();
                m.remote.all_of.extend(want.declared_by.clone());
                let field = port_field(&mut m, direction, Side::Remote);
                field.any_of.clone_from(&want.ports);
                match refuse {
                    Refused::OtherPort(ports) => field.none_of.extend(ports),
                    Refused::SamePort(p, nets) => {
                        let within = want.ports.is_empty()
                            || want.ports.iter().any(|r| r.0 <= *p && *p <= r.1);
                        if !within {
                            continue;
                        }
                        field.any_of = vec![(*p, *p)];
                        m.remote.none_of.push(nets.clone());
                    }
                }
                found.entries.push(Entry {
                    by: by.clone(),
                    step,
                    matcher: Some(m),
                });
            }
        }
        found
    }

    /// Per port number, the addresses of the members `selector` selects (all members when
    /// `None`) that declare one of `names` with protocol `proto`.
    fn named_port_sets(
        &mut self,
        selector: Option<&Selector>,
        names: &[&str],
        proto: Option<u8>,
    ) -> BTreeMap<u16, NetSet> {
        if names.is_empty() {
            return BTreeMap::new();
        }
        let members: Vec<&Member> = match selector {
            Some(sel) => {
                self.ipset_nets(sel);
                self.membership.set_members(&sel.to_string()).collect()
            }
            None => {
                if let Some(deps) = &mut self.recording {
                    deps.all_members = true;
                }
                self.membership.members().collect()
            }
        };
        let mut by_port: BTreeMap<u16, BTreeSet<Ipv4Net>> = BTreeMap::new();
        for member in members {
            for name in names {
                for port in declared(&member.ports, name, proto) {
                    by_port.entry(port).or_default().extend(&member.nets);
                }
            }
        }
        by_port
            .into_iter()
            .map(|(p, nets)| (p, Arc::new(nets.into_iter().collect())))
            .collect()
    }

    fn ipset_nets(&mut self, selector: &Selector) -> NetSet {
        let text = selector.to_string();
        if !self.membership.has_set(&text) {
            // Not registered by a policy (a profile's rule): keep it, like a policy's.
            self.retain_ipset(&text);
        }
        if let Some(deps) = &mut self.recording {
            deps.sets.insert(text.as_str().into());
        }
        self.membership
            .nets(&text)
            .unwrap_or_else(|| Arc::new(Vec::new()))
    }

    fn local_side_holds(
        &mut self,
        local: &EntityRule,
        namespace: Option<&str>,
        member: &Member,
        whose: &str,
    ) -> bool {
        let ip_in = |nets: &[calico::model::Cidr]| {
            v4_nets(nets.iter().map(|c| c.0))
                .iter()
                .any(|n| member.nets.iter().any(|m| n.contains(m)))
        };
        if !local.nets.is_empty() && !ip_in(&local.nets) {
            return false;
        }
        if !local.not_nets.is_empty() && ip_in(&local.not_nets) {
            return false;
        }
        let sides = self.side_selectors(local, namespace, whose);
        if let Some(sel) = sides.selector
            && !sel.matches(&member.labels, member.global)
        {
            return false;
        }
        if let Some(sel) = sides.not_selector
            && sel.matches(&member.labels, member.global)
        {
            return false;
        }
        true
    }

    /// Every workload endpoint key with the node and interface it names.
    pub fn workloads(&self) -> impl Iterator<Item = (&str, &WorkloadEndpointSpec)> {
        self.workloads.iter().map(|(k, w)| (k.as_str(), &w.spec))
    }

    /// The full labels of the member (workload, host endpoint or network set) at `key`.
    pub fn labels_of(&self, key: &str) -> Option<&BTreeMap<String, String>> {
        self.membership.member(key).map(|m| &m.labels)
    }

    /// The key of the workload endpoint that holds `addr`, if any.
    pub fn workload_holding(&self, addr: Ipv4Addr) -> Option<&str> {
        let mut keys: Vec<&str> = self
            .workloads
            .keys()
            .filter(|k| {
                self.membership
                    .member(k)
                    .is_some_and(|m| m.nets.iter().any(|n| n.contains(&addr)))
            })
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys.first().copied()
    }
}

/// A policy's rules per direction, `None` for a direction its types leave out.
fn by_type(
    types: &[PolicyDirection],
    ingress: &[Rule],
    egress: &[Rule],
) -> (Option<Vec<Rule>>, Option<Vec<Rule>>) {
    (
        types
            .contains(&PolicyDirection::Ingress)
            .then(|| ingress.to_vec()),
        types
            .contains(&PolicyDirection::Egress)
            .then(|| egress.to_vec()),
    )
}

fn rules_for(def: &PolicyDef, direction: PolicyDirection) -> Option<&Vec<Rule>> {
    match direction {
        PolicyDirection::Ingress => def.ingress.as_ref(),
        PolicyDirection::Egress => def.egress.as_ref(),
    }
}

fn remote_entity(rule: &Rule, direction: PolicyDirection) -> &EntityRule {
    match direction {
        PolicyDirection::Ingress => &rule.source,
        PolicyDirection::Egress => &rule.destination,
    }
}

fn local_entity(rule: &Rule, direction: PolicyDirection) -> &EntityRule {
    match direction {
        PolicyDirection::Ingress => &rule.destination,
        PolicyDirection::Egress => &rule.source,
    }
}

/// What one rule contributes to a program.
#[derive(Default)]
struct RuleEntries {
    entries: Vec<Entry>,
    /// The local side's named ports, resolved (for the group key).
    local_ports: Vec<Vec<u16>>,
}

/// One way a remote port list (`ports`) holds: the numbers, or a named port's number from an
/// address that declares it.
struct Wanted {
    /// The addresses declaring the name with this number (`None` for the numeric ports).
    declared_by: Option<NetSet>,
    /// Empty: any port.
    ports: Vec<PortRange>,
}

/// One way "(address, port) is no pair of a `notPorts` name" holds.
enum Refused {
    /// The port is none of the names' numbers.
    OtherPort(Vec<PortRange>),
    /// The port is this number, and the address is not one declaring it.
    SamePort(u16, NetSet),
}

/// The side of the packet a port field belongs to.
#[derive(Clone, Copy)]
enum Side {
    Local,
    Remote,
}

/// The port criteria of `side`: the destination port is local on ingress, remote on egress.
fn port_field(m: &mut Match, direction: PolicyDirection, side: Side) -> &mut PortMatch {
    match (direction, side) {
        (PolicyDirection::Ingress, Side::Local) | (PolicyDirection::Egress, Side::Remote) => {
            &mut m.dst_ports
        }
        (PolicyDirection::Ingress, Side::Remote) | (PolicyDirection::Egress, Side::Local) => {
            &mut m.src_ports
        }
    }
}

/// The port names in a list of ports.
fn named(ports: &[Port]) -> Vec<&str> {
    ports
        .iter()
        .filter_map(|p| match p {
            Port::Named(n) => Some(n.as_str()),
            _ => None,
        })
        .collect()
}

/// The port numbers `ports` declares as `name` with protocol `proto`, sorted; none without a
/// protocol (Calico requires one for any port match).
pub fn declared(ports: &[EndpointPort], name: &str, proto: Option<u8>) -> Vec<u16> {
    let mut numbers: Vec<u16> = ports
        .iter()
        .filter(|p| p.name == name && Some(p.protocol.number()) == proto)
        .map(|p| p.port)
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

fn ports(any: &[Port], none: &[Port]) -> PortMatch {
    PortMatch {
        any_of: any.iter().filter_map(Port::range).collect(),
        none_of: none.iter().filter_map(Port::range).collect(),
    }
}

fn icmp_range(icmp: &Icmp) -> (u16, u16) {
    match (icmp.icmp_type, icmp.code) {
        (Some(t), Some(c)) => {
            let v = u16::from(t) << 8 | u16::from(c);
            (v, v)
        }
        (Some(t), None) => (u16::from(t) << 8, u16::from(t) << 8 | 0xff),
        (None, _) => (0, u16::MAX),
    }
}

fn sorted(mut nets: Vec<Ipv4Net>) -> Vec<Ipv4Net> {
    nets.sort();
    nets.dedup();
    nets
}
