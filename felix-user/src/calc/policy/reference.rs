//! A plain reference evaluator: walks tiers, policies and rules one by one, straight from the
//! resources, exactly as the semantics in [`super`] say. Slow and simple on purpose: the compiled
//! form and the kernel programs are checked against it (see [`super::cases`]).
//!
//! Choices where the semantics leave room (the compiler must agree):
//! - Tier `default` has order 1,000,000 unless its Tier resource sets one; any other tier without
//!   a Tier resource has no order (sorts last) and action Deny.
//! - Policies tie on order by their displayed name (`<namespace>/<name>` or `<name>`).
//! - A blank selector string in a rule (`selector: ""`) is no criterion; an unparsable one (the
//!   model rejects them, but code can build one) makes the rule, or the policy, never match.
//! - `namespaceSelector`: label keys get the `pcns.` prefix and `all()` means "in some namespace".
//!   Endpoints and namespaced NetworkSets are judged by their namespace labels; host endpoints
//!   and GlobalNetworkSets by their own labels as global objects, so `global()` selects them and
//!   `all()` or `team == 'x'` do not.
//! - A namespaced NetworkSet is selected like an endpoint of its namespace (namespace label,
//!   `kns.<namespace>` profile labels), never by `global()`.
//! - `notSelector` itself is never scoped to a namespace: it excludes every item it selects. But,
//!   as in Calico, a NetworkPolicy rule with a `notSelector` and no `namespaceSelector` also
//!   requires the remote item to be in the policy's namespace (Calico ANDs the namespace test
//!   into the rule's positive selector whenever the rule has any selector).
//! - `serviceAccounts` on a rule side selects, by their labels, the endpoints whose
//!   `projectcalico.org/serviceaccount` label is one of `names` and whose `pcsa.` labels (from
//!   their `ksa.` profile) match `selector` (its keys prefixed, `all()` kept); it counts as a
//!   selector for the namespace scope of a NetworkPolicy. A policy's `serviceAccountSelector`
//!   likewise narrows the endpoints it applies to; in a GlobalNetworkPolicy, as Calico rewrites
//!   the selector text, `all()` in it (and in `selector` when there is no namespaceSelector)
//!   means `has(projectcalico.org/serviceaccount)`.
//! - The local side's `nets` are matched against the packet's local address, which is the
//!   endpoint's own address in every case the suite holds.

use std::{
    cmp::Ordering,
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use calico::{
    model::{
        Action, DEFAULT_NAMESPACE, EndpointPort, EntityRule, Icmp, NetworkSetSpec, Object, Port,
        ProfileSpec, Resource, Rule, WorkloadEndpointSpec,
        policy::{DEFAULT_TIER, ServiceAccountMatch},
        workload_endpoint::LABEL_NAMESPACE,
    },
    selector::Selector,
};
use ipnet::IpNet;

use super::{Decision, L4, Packet, PolicyDirection, RuleRef};

/// Order Calico gives the `default` tier.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// Prefix of namespace labels (as Calico's `kns.<namespace>` profiles apply them).
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// The namespace label every workload endpoint has: its namespace's name.
pub const NAMESPACE_NAME_LABEL: &str = "pcns.projectcalico.org/name";
/// Prefix of service account labels (as Calico's `ksa.<namespace>.<name>` profiles apply them).
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";
/// The workload endpoint label naming the pod's service account.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// Prefix of the profile Calico makes for each namespace (`kns.<namespace>`).
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";

type Labels = BTreeMap<String, String>;

/// Judges `packet` crossing `endpoint` (which must carry its namespace) in `direction`.
pub fn evaluate(
    resources: &[Resource],
    endpoint: &Object<WorkloadEndpointSpec>,
    direction: PolicyDirection,
    packet: &Packet,
) -> Decision {
    let local = workload_item(resources, endpoint);
    let items = items(resources);
    let ctx = Ctx {
        items: &items,
        local: &local,
        direction,
        packet,
    };
    let applicable: Vec<PolicyView> = policies(resources)
        .into_iter()
        .filter(|p| p.applies_to(&local, direction))
        .collect();
    for tier in tiers_of(resources, &applicable) {
        let mut members: Vec<&PolicyView> =
            applicable.iter().filter(|p| p.tier == tier.name).collect();
        members.sort_by(|a, b| by_order_then_name(a.order, &a.name, b.order, &b.name));
        if let Some(decision) = run_tier(&tier, &members, &ctx) {
            return decision;
        }
    }
    run_profiles(resources, endpoint, &ctx)
}

/// What the rules see: the selectable items, the endpoint, the direction and the packet.
struct Ctx<'a> {
    items: &'a [Item],
    local: &'a Item,
    direction: PolicyDirection,
    packet: &'a Packet,
}

/// Something a selector can select: a workload endpoint, host endpoint or network set.
struct Item {
    labels: Labels,
    /// Namespace of a workload endpoint; `None` for global items.
    namespace: Option<String>,
    /// Namespace labels (`pcns.` keys) of a workload endpoint.
    namespace_labels: Labels,
    nets: Vec<IpNet>,
    /// Named ports (`spec.ports` of an endpoint).
    ports: Vec<EndpointPort>,
}

impl Item {
    fn is_global(&self) -> bool {
        self.namespace.is_none()
    }

    fn holds(&self, ip: Ipv4Addr) -> bool {
        self.nets.iter().any(|n| n.contains(&IpAddr::V4(ip)))
    }

    fn matches(&self, selector: &Selector) -> bool {
        selector.matches(&self.labels, self.is_global())
    }

    /// Whether it declares port `name` as `port` of protocol `proto`.
    fn declares(&self, name: &str, proto: u8, port: u16) -> bool {
        self.ports
            .iter()
            .any(|p| p.name == name && p.protocol.number() == proto && p.port == port)
    }

    /// Whether a namespace selector (already rewritten by [`namespace_selector`]) selects it.
    fn in_namespaces(&self, ns_selector: &Selector) -> bool {
        if self.is_global() {
            ns_selector.matches(&self.labels, true)
        } else {
            ns_selector.matches(&self.namespace_labels, false)
        }
    }
}

/// Every item rule selectors can select.
fn items(resources: &[Resource]) -> Vec<Item> {
    resources
        .iter()
        .filter_map(|r| match r {
            Resource::WorkloadEndpoint(o) => Some(workload_item(resources, o)),
            Resource::HostEndpoint(o) => Some(Item {
                labels: o.metadata.labels.clone(),
                namespace: None,
                namespace_labels: Labels::new(),
                nets: o
                    .spec
                    .expected_ips
                    .iter()
                    .map(|ip| IpNet::from(*ip))
                    .collect(),
                ports: o.spec.ports.clone(),
            }),
            Resource::GlobalNetworkSet(o) => Some(Item {
                labels: o.metadata.labels.clone(),
                namespace: None,
                namespace_labels: Labels::new(),
                nets: o.spec.nets.iter().map(|c| c.network()).collect(),
                ports: Vec::new(),
            }),
            Resource::NetworkSet(o) => Some(network_set_item(resources, o)),
            _ => None,
        })
        .collect()
}

fn workload_namespace(wep: &Object<WorkloadEndpointSpec>) -> &str {
    wep.metadata
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE)
}

fn profile<'a>(resources: &'a [Resource], name: &str) -> Option<&'a ProfileSpec> {
    resources.iter().find_map(|r| match r {
        Resource::Profile(o) if o.metadata.name == name => Some(&o.spec),
        _ => None,
    })
}

/// The profiles an endpoint names that exist, in its order.
fn profiles_of<'a>(
    resources: &'a [Resource],
    wep: &'a Object<WorkloadEndpointSpec>,
) -> impl Iterator<Item = (&'a str, &'a ProfileSpec)> {
    wep.spec
        .profiles
        .iter()
        .filter_map(|n| profile(resources, n).map(|p| (n.as_str(), p)))
}

/// A workload endpoint's labels and namespace labels, as the semantics compute them.
fn workload_item(resources: &[Resource], wep: &Object<WorkloadEndpointSpec>) -> Item {
    let namespace = workload_namespace(wep).to_string();
    let mut labels = wep.metadata.labels.clone();
    labels
        .entry(LABEL_NAMESPACE.to_string())
        .or_insert_with(|| namespace.clone());
    let mut namespace_labels = Labels::new();
    for (_, p) in profiles_of(resources, wep) {
        for (k, v) in &p.labels_to_apply {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
            if k.starts_with(NAMESPACE_LABEL_PREFIX) {
                namespace_labels
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        }
    }
    namespace_labels.insert(NAMESPACE_NAME_LABEL.to_string(), namespace.clone());
    Item {
        labels,
        namespace: Some(namespace),
        namespace_labels,
        nets: wep.spec.ip_networks.iter().map(|c| c.network()).collect(),
        ports: wep.spec.ports.clone(),
    }
}

/// A namespaced NetworkSet as Calico's syncer gives it to felix (`networksetprocessor.go`): its
/// labels with `projectcalico.org/namespace` set to its namespace, and the labels of the
/// `kns.<namespace>` profile (its namespace's labels) inherited like an endpoint's.
fn network_set_item(resources: &[Resource], set: &Object<NetworkSetSpec>) -> Item {
    let namespace = set
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let mut labels = set.metadata.labels.clone();
    labels.insert(LABEL_NAMESPACE.to_string(), namespace.clone());
    let mut namespace_labels = Labels::new();
    if let Some(p) = profile(resources, &format!("{NAMESPACE_PROFILE_PREFIX}{namespace}")) {
        for (k, v) in &p.labels_to_apply {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
            if k.starts_with(NAMESPACE_LABEL_PREFIX) {
                namespace_labels
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        }
    }
    namespace_labels.insert(NAMESPACE_NAME_LABEL.to_string(), namespace.clone());
    Item {
        labels,
        namespace: Some(namespace),
        namespace_labels,
        nets: set.spec.nets.iter().map(|c| c.network()).collect(),
        ports: Vec::new(),
    }
}

/// Rewrites a namespace selector to act on namespace labels: keys get the `pcns.` prefix and
/// `all()` becomes "has a namespace".
fn namespace_selector(selector: Selector) -> Selector {
    prefix_keys(selector, NAMESPACE_LABEL_PREFIX, Some(NAMESPACE_NAME_LABEL))
}

/// Calico's rewrite of a service account selector: every label key gets the `pcsa.` prefix.
fn service_account_labels(selector: Selector) -> Selector {
    prefix_keys(selector, SERVICE_ACCOUNT_LABEL_PREFIX, None)
}

/// `selector` with `prefix` before every label key; `all()` becomes `has(all_label)` when given.
fn prefix_keys(selector: Selector, prefix: &str, all_label: Option<&str>) -> Selector {
    let key = |k: String| format!("{prefix}{k}");
    let all = |v: Vec<Selector>| {
        v.into_iter()
            .map(|s| prefix_keys(s, prefix, all_label))
            .collect()
    };
    match selector {
        Selector::All => all_label.map_or(Selector::All, |l| Selector::Has(l.to_string())),
        Selector::Global => Selector::Global,
        Selector::Has(k) => Selector::Has(key(k)),
        Selector::Eq(k, v) => Selector::Eq(key(k), v),
        Selector::Ne(k, v) => Selector::Ne(key(k), v),
        Selector::In(k, v) => Selector::In(key(k), v),
        Selector::NotIn(k, v) => Selector::NotIn(key(k), v),
        Selector::StartsWith(k, v) => Selector::StartsWith(key(k), v),
        Selector::EndsWith(k, v) => Selector::EndsWith(key(k), v),
        Selector::Contains(k, v) => Selector::Contains(key(k), v),
        Selector::Not(s) => Selector::Not(Box::new(prefix_keys(*s, prefix, all_label))),
        Selector::And(v) => Selector::And(all(v)),
        Selector::Or(v) => Selector::Or(all(v)),
    }
}

/// Calico's text rewrite for a GlobalNetworkPolicy with a `serviceAccountSelector`: every
/// `all()` becomes `has(projectcalico.org/serviceaccount)`.
fn all_has_service_account(selector: Selector) -> Selector {
    let all = |v: Vec<Selector>| v.into_iter().map(all_has_service_account).collect();
    match selector {
        Selector::All => Selector::Has(SERVICE_ACCOUNT_LABEL.to_string()),
        Selector::Not(s) => Selector::Not(Box::new(all_has_service_account(*s))),
        Selector::And(v) => Selector::And(all(v)),
        Selector::Or(v) => Selector::Or(all(v)),
        other => other,
    }
}

/// A rule side's `serviceAccounts` as a selector over endpoint labels: `Ok(None)` when it
/// holds no criterion, `Err(())` when its selector does not parse.
fn service_accounts(m: Option<&ServiceAccountMatch>) -> Result<Option<Selector>, ()> {
    let Some(m) = m else { return Ok(None) };
    let mut all_of = Vec::new();
    if let Some(s) = parse_field(Some(&m.selector))? {
        all_of.push(service_account_labels(s));
    }
    if !m.names.is_empty() {
        let names = m.names.iter().cloned().collect();
        all_of.push(Selector::In(SERVICE_ACCOUNT_LABEL.to_string(), names));
    }
    Ok((!all_of.is_empty()).then_some(Selector::And(all_of)))
}

/// A selector field: absent or blank is `Ok(None)`, unparsable is `Err(())`.
fn parse_field(text: Option<&str>) -> Result<Option<Selector>, ()> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => Selector::parse(t).map(Some).map_err(|_| ()),
    }
}

/// A NetworkPolicy or GlobalNetworkPolicy, seen the same way.
struct PolicyView<'a> {
    tier: &'a str,
    /// `<namespace>/<name>` or `<name>`.
    name: String,
    order: Option<f64>,
    /// The namespace of a NetworkPolicy.
    namespace: Option<&'a str>,
    selector: &'a str,
    namespace_selector: Option<&'a str>,
    service_account_selector: Option<&'a str>,
    types: Vec<PolicyDirection>,
    ingress: &'a [Rule],
    egress: &'a [Rule],
}

fn policies(resources: &[Resource]) -> Vec<PolicyView<'_>> {
    resources
        .iter()
        .filter_map(|r| match r {
            Resource::NetworkPolicy(o) => {
                let namespace = o.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                Some(PolicyView {
                    tier: o.spec.tier(),
                    name: format!("{namespace}/{}", o.metadata.name),
                    order: o.spec.order,
                    namespace: Some(namespace),
                    selector: &o.spec.selector,
                    namespace_selector: None,
                    service_account_selector: o.spec.service_account_selector.as_deref(),
                    types: o.spec.effective_types(),
                    ingress: &o.spec.ingress,
                    egress: &o.spec.egress,
                })
            }
            Resource::GlobalNetworkPolicy(o) => Some(PolicyView {
                tier: o.spec.tier(),
                name: o.metadata.name.clone(),
                order: o.spec.order,
                namespace: None,
                selector: &o.spec.selector,
                namespace_selector: o.spec.namespace_selector.as_deref(),
                service_account_selector: o.spec.service_account_selector.as_deref(),
                types: o.spec.effective_types(),
                ingress: &o.spec.ingress,
                egress: &o.spec.egress,
            }),
            _ => None,
        })
        .collect()
}

impl PolicyView<'_> {
    /// Whether it applies to the endpoint `local` in `direction`.
    fn applies_to(&self, local: &Item, direction: PolicyDirection) -> bool {
        if !self.types.contains(&direction) {
            return false;
        }
        if self.namespace.is_some() && self.namespace != local.namespace.as_deref() {
            return false;
        }
        // The policy selector: blank is all().
        let Ok(mut selector) = Selector::parse(self.selector) else {
            return false;
        };
        let (Ok(ns), Ok(sa)) = (
            parse_field(self.namespace_selector),
            parse_field(self.service_account_selector),
        ) else {
            return false;
        };
        let mut sa = sa.map(service_account_labels);
        if self.namespace.is_none() && sa.is_some() {
            sa = sa.map(all_has_service_account);
            if ns.is_none() && !self.selector.trim().is_empty() {
                selector = all_has_service_account(selector);
            }
        }
        local.matches(&selector)
            && ns.is_none_or(|s| local.in_namespaces(&namespace_selector(s)))
            && sa.is_none_or(|s| local.matches(&s))
    }

    fn rules(&self, direction: PolicyDirection) -> &[Rule] {
        match direction {
            PolicyDirection::Ingress => self.ingress,
            PolicyDirection::Egress => self.egress,
        }
    }
}

/// A tier's name, order and whether its default action is Pass.
struct TierView<'a> {
    name: &'a str,
    order: Option<f64>,
    passes: bool,
}

fn tier_view<'a>(resources: &[Resource], name: &'a str) -> TierView<'a> {
    let spec = resources.iter().find_map(|r| match r {
        Resource::Tier(o) if o.metadata.name == name => Some(&o.spec),
        _ => None,
    });
    let order = spec.and_then(|s| s.order);
    TierView {
        name,
        order: order.or((name == DEFAULT_TIER).then_some(DEFAULT_TIER_ORDER)),
        passes: spec.is_some_and(|s| s.default_action == Some(Action::Pass)),
    }
}

/// The tiers of the applicable policies, in evaluation order.
fn tiers_of<'a>(resources: &[Resource], applicable: &[PolicyView<'a>]) -> Vec<TierView<'a>> {
    let mut names: Vec<&'a str> = applicable.iter().map(|p| p.tier).collect();
    names.sort_unstable();
    names.dedup();
    let mut tiers: Vec<TierView> = names.into_iter().map(|n| tier_view(resources, n)).collect();
    tiers.sort_by(|a, b| by_order_then_name(a.order, a.name, b.order, b.name));
    tiers
}

/// Order ascending (absent last), then name.
fn by_order_then_name(a: Option<f64>, an: &str, b: Option<f64>, bn: &str) -> Ordering {
    let inf = |o: Option<f64>| o.unwrap_or(f64::INFINITY);
    inf(a).total_cmp(&inf(b)).then_with(|| an.cmp(bn))
}

/// What a list of rules ended with.
enum Outcome {
    Decided(bool, usize),
    Passed,
    NoMatch,
}

/// Runs rules in order: Allow and Deny decide, Pass stops, Log goes on.
fn run_rules(rules: &[Rule], scope: Option<&str>, ctx: &Ctx) -> Outcome {
    for (index, rule) in rules.iter().enumerate() {
        if !rule_matches(rule, scope, ctx) {
            continue;
        }
        match rule.action {
            Action::Allow => return Outcome::Decided(true, index),
            Action::Deny => return Outcome::Decided(false, index),
            Action::Pass => return Outcome::Passed,
            Action::Log => {}
        }
    }
    Outcome::NoMatch
}

/// A tier's decision, or `None` when it passes to the next tier.
fn run_tier(tier: &TierView, policies: &[&PolicyView], ctx: &Ctx) -> Option<Decision> {
    for p in policies {
        match run_rules(p.rules(ctx.direction), p.namespace, ctx) {
            Outcome::Decided(allow, index) => {
                let by = RuleRef::Policy {
                    tier: tier.name.to_string(),
                    policy: p.name.clone(),
                    direction: ctx.direction,
                    index,
                };
                return Some(Decision { allow, by });
            }
            Outcome::Passed => return None,
            Outcome::NoMatch => {}
        }
    }
    (!tier.passes).then(|| Decision {
        allow: false,
        by: RuleRef::EndOfTier {
            tier: tier.name.to_string(),
            direction: ctx.direction,
        },
    })
}

/// The endpoint's profiles in order (Pass goes to the next one), then default deny.
fn run_profiles(
    resources: &[Resource],
    endpoint: &Object<WorkloadEndpointSpec>,
    ctx: &Ctx,
) -> Decision {
    for (name, p) in profiles_of(resources, endpoint) {
        let rules = match ctx.direction {
            PolicyDirection::Ingress => &p.ingress,
            PolicyDirection::Egress => &p.egress,
        };
        if let Outcome::Decided(allow, index) = run_rules(rules, None, ctx) {
            let by = RuleRef::Profile {
                profile: name.to_string(),
                direction: ctx.direction,
                index,
            };
            return Decision { allow, by };
        }
    }
    Decision {
        allow: false,
        by: RuleRef::DefaultDeny {
            direction: ctx.direction,
        },
    }
}

/// Whether every criterion of `rule` holds; `scope` is a NetworkPolicy's namespace.
fn rule_matches(rule: &Rule, scope: Option<&str>, ctx: &Ctx) -> bool {
    let p = ctx.packet;
    let (src_local, dst_local) = match ctx.direction {
        PolicyDirection::Ingress => (false, true),
        PolicyDirection::Egress => (true, false),
    };
    rule.ip_version != Some(6)
        && rule.protocol.is_none_or(|x| x.number() == p.proto)
        && rule.not_protocol.is_none_or(|x| x.number() != p.proto)
        && icmp_matches(rule, p)
        && entity_matches(
            rule,
            &rule.source,
            p.src,
            p.src_port(),
            src_local,
            scope,
            ctx,
        )
        && entity_matches(
            rule,
            &rule.destination,
            p.dst,
            p.dst_port(),
            dst_local,
            scope,
            ctx,
        )
}

fn icmp_matches(rule: &Rule, packet: &Packet) -> bool {
    let hit = |m: &Icmp| match packet.l4 {
        L4::Icmp { icmp_type, code } => {
            m.icmp_type.is_none_or(|t| t == icmp_type) && m.code.is_none_or(|c| c == code)
        }
        _ => false,
    };
    rule.icmp.as_ref().is_none_or(hit) && !rule.not_icmp.as_ref().is_some_and(hit)
}

/// One side of a rule against the packet's address and port on that side.
fn entity_matches(
    rule: &Rule,
    er: &EntityRule,
    addr: Ipv4Addr,
    port: u16,
    local: bool,
    scope: Option<&str>,
    ctx: &Ctx,
) -> bool {
    let candidates: Vec<&Item> = if local {
        vec![ctx.local]
    } else {
        ctx.items.iter().filter(|i| i.holds(addr)).collect()
    };
    let Some(sides) = SideSelectors::parse(er, scope) else {
        return false;
    };
    // A named port is the side's address and port being a port of that name (and of the
    // rule's protocol) that an item the side's positive selector selects declares.
    let named = |name: &str| {
        rule.protocol.is_some_and(|proto| {
            candidates
                .iter()
                .any(|i| sides.positive_selects(i) && i.declares(name, proto.number(), port))
        })
    };
    ports_match(&er.ports, &er.not_ports, port, named)
        && nets_match(er, addr)
        && sides.matches(&candidates)
}

fn ports_match(
    ports: &[Port],
    not_ports: &[Port],
    port: u16,
    named: impl Fn(&str) -> bool,
) -> bool {
    let hit = |p: &Port| match p {
        Port::Named(name) => named(name),
        other => other
            .range()
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&port)),
    };
    (ports.is_empty() || ports.iter().any(hit)) && !not_ports.iter().any(hit)
}

fn nets_match(er: &EntityRule, addr: Ipv4Addr) -> bool {
    let ip = IpAddr::V4(addr);
    (er.nets.is_empty() || er.nets.iter().any(|n| n.network().contains(&ip)))
        && !er.not_nets.iter().any(|n| n.network().contains(&ip))
}

/// The selectors of one side of a rule, parsed and scoped.
struct SideSelectors {
    selector: Option<Selector>,
    /// `serviceAccounts`, as a selector over endpoint labels.
    accounts: Option<Selector>,
    ns: Option<Selector>,
    not: Option<Selector>,
    /// A NetworkPolicy's namespace when its selectors stay in it.
    scope: Option<String>,
}

impl SideSelectors {
    /// `None` when a selector does not parse (the rule never matches).
    fn parse(er: &EntityRule, scope: Option<&str>) -> Option<Self> {
        let selector = parse_field(er.selector.as_deref()).ok()?;
        let ns = parse_field(er.namespace_selector.as_deref()).ok()?;
        let not = parse_field(er.not_selector.as_deref()).ok()?;
        let accounts = service_accounts(er.service_accounts.as_ref()).ok()?;
        let ns = ns.map(namespace_selector);
        // Without a namespaceSelector, a NetworkPolicy's selectors stay in its namespace.
        let scope = if ns.is_none() && (selector.is_some() || not.is_some() || accounts.is_some()) {
            scope.map(str::to_string)
        } else {
            None
        };
        Some(SideSelectors {
            selector,
            accounts,
            ns,
            not,
            scope,
        })
    }

    /// Whether the positive part (`selector`, `namespaceSelector`, namespace scope) selects
    /// `i`; with none of them, everything is selected.
    fn positive_selects(&self, i: &Item) -> bool {
        self.selector.as_ref().is_none_or(|s| i.matches(s))
            && self.accounts.as_ref().is_none_or(|s| i.matches(s))
            && self.ns.as_ref().is_none_or(|s| i.in_namespaces(s))
            && self
                .scope
                .as_deref()
                .is_none_or(|n| i.namespace.as_deref() == Some(n))
    }

    /// `selector` / `namespaceSelector` (some candidate matches both) and `notSelector` (no
    /// candidate matches it).
    fn matches(&self, candidates: &[&Item]) -> bool {
        let unconstrained = self.selector.is_none()
            && self.accounts.is_none()
            && self.ns.is_none()
            && self.scope.is_none();
        let positive = unconstrained || candidates.iter().any(|i| self.positive_selects(i));
        positive
            && !self
                .not
                .as_ref()
                .is_some_and(|s| candidates.iter().any(|i| i.matches(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico::model::document::parse_documents;

    fn resources(yaml: &str) -> Vec<Resource> {
        parse_documents(yaml)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    fn endpoint<'a>(rs: &'a [Resource], name: &str) -> &'a Object<WorkloadEndpointSpec> {
        rs.iter()
            .find_map(|r| match r {
                Resource::WorkloadEndpoint(o) if o.metadata.name == name => Some(o),
                _ => None,
            })
            .unwrap()
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], dport: u16) -> Packet {
        Packet {
            src: src.into(),
            dst: dst.into(),
            proto: 6,
            l4: L4::Ports {
                src: 40000,
                dst: dport,
            },
        }
    }

    const POD_A: &str = "
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: pod-a, namespace: default, labels: {app: web}}
spec: {interfaceName: calix1, ipNetworks: [10.65.0.1/32], profiles: [kns.default]}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.default}
spec:
  ingress: [{action: Allow}]
  labelsToApply: {pcns.team: blue}
";

    fn judge(extra: &str, packet: Packet) -> String {
        let rs = resources(&format!("{POD_A}---\n{extra}"));
        let d = evaluate(
            &rs,
            endpoint(&rs, "pod-a"),
            PolicyDirection::Ingress,
            &packet,
        );
        format!("{} by {}", if d.allow { "allow" } else { "deny" }, d.by)
    }

    const IN: Packet = Packet {
        src: Ipv4Addr::new(10, 65, 0, 2),
        dst: Ipv4Addr::new(10, 65, 0, 1),
        proto: 6,
        l4: L4::Ports {
            src: 40000,
            dst: 80,
        },
    };

    #[test]
    fn nothing_at_all_is_default_deny() {
        let rs = resources(POD_A);
        let mut ep = endpoint(&rs, "pod-a").clone();
        ep.spec.profiles.clear();
        let d = evaluate(&rs, &ep, PolicyDirection::Egress, &IN);
        assert!(!d.allow);
        assert_eq!(
            d.by,
            RuleRef::DefaultDeny {
                direction: PolicyDirection::Egress
            }
        );
    }

    #[test]
    fn a_tier_without_resource_comes_after_default_and_denies_at_its_end() {
        let extra = "
kind: GlobalNetworkPolicy
metadata: {name: late.p}
spec: {tier: late, ingress: [{action: Allow, protocol: UDP}]}
---
kind: GlobalNetworkPolicy
metadata: {name: pass}
spec: {ingress: [{action: Pass}]}
";
        assert_eq!(judge(extra, IN), "deny by end of tier late (ingress)");
    }

    #[test]
    fn an_explicit_order_beyond_a_million_goes_after_default() {
        let extra = "
kind: Tier
metadata: {name: late}
spec: {order: 2000000, defaultAction: Pass}
---
kind: GlobalNetworkPolicy
metadata: {name: late.p}
spec: {tier: late, ingress: [{action: Deny}]}
---
kind: GlobalNetworkPolicy
metadata: {name: allow}
spec: {ingress: [{action: Allow}]}
";
        assert_eq!(
            judge(extra, IN),
            "allow by tier default policy allow ingress rule 0"
        );
    }

    #[test]
    fn tier_default_action_pass_reaches_the_profiles() {
        let extra = "
kind: Tier
metadata: {name: t}
spec: {order: 1, defaultAction: Pass}
---
kind: GlobalNetworkPolicy
metadata: {name: t.p}
spec: {tier: t, ingress: [{action: Deny, protocol: UDP}]}
";
        assert_eq!(
            judge(extra, IN),
            "allow by profile kns.default ingress rule 0"
        );
    }

    #[test]
    fn bad_selectors_never_match() {
        // The model rejects bad selectors, so break them after parsing.
        let extra = "
kind: GlobalNetworkPolicy
metadata: {name: broken-policy}
spec: {order: 1, ingress: [{action: Deny}]}
---
kind: GlobalNetworkPolicy
metadata: {name: broken-rule}
spec:
  order: 2
  ingress:
    - {action: Deny, source: {selector: all()}}
    - {action: Deny, source: {notSelector: \"app == 'x'\"}}
    - {action: Allow}
";
        let mut rs = resources(&format!("{POD_A}---\n{extra}"));
        for r in &mut rs {
            match r {
                Resource::GlobalNetworkPolicy(o) if o.metadata.name == "broken-policy" => {
                    o.spec.selector = "has(app".into();
                }
                Resource::GlobalNetworkPolicy(o) => {
                    o.spec.ingress[0].source.selector = Some("app = 'x'".into());
                    o.spec.ingress[1].source.not_selector = Some("app == ".into());
                }
                _ => {}
            }
        }
        let d = evaluate(&rs, endpoint(&rs, "pod-a"), PolicyDirection::Ingress, &IN);
        assert!(d.allow);
        assert_eq!(
            d.by.to_string(),
            "tier default policy broken-rule ingress rule 2"
        );
    }

    #[test]
    fn ipv6_rules_and_undeclared_named_ports_never_match() {
        // pod-a declares no port: `ports: [http]` matches nothing, `notPorts: [http]` excludes
        // nothing.
        let extra = "
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress:
    - {action: Deny, protocol: TCP, destination: {ports: [http]}}
    - {action: Deny, ipVersion: 6}
    - {action: Allow, protocol: TCP, destination: {notPorts: [http]}}
";
        assert_eq!(
            judge(extra, IN),
            "allow by tier default policy p ingress rule 2"
        );
    }

    #[test]
    fn named_ports_pair_address_protocol_and_port() {
        let extra = "
kind: WorkloadEndpoint
metadata: {name: pod-b, namespace: default, labels: {app: db}}
spec:
  interfaceName: calix2
  ipNetworks: [10.65.0.2/32]
  ports: [{name: http, protocol: TCP, port: 40000}, {name: dns, protocol: UDP, port: 40000}]
---
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress:
    - {action: Deny, protocol: UDP, source: {ports: [http]}}
    - {action: Deny, protocol: TCP, source: {ports: [dns]}}
    - {action: Deny, protocol: TCP, source: {selector: app == 'web', ports: [http]}}
    - {action: Allow, protocol: TCP, source: {ports: [http]}}
";
        assert_eq!(
            judge(extra, IN),
            "allow by tier default policy p ingress rule 3"
        );
        let elsewhere = Packet {
            src: Ipv4Addr::new(10, 65, 0, 3),
            ..IN
        };
        assert_eq!(
            judge(extra, elsewhere),
            "deny by end of tier default (ingress)",
            "10.65.0.3 declares no port: the named port does not match"
        );
    }

    #[test]
    fn namespace_selector_all_skips_network_sets_and_global_selects_them() {
        let extra = "
kind: GlobalNetworkSet
metadata: {name: outside, labels: {app: web}}
spec: {nets: [192.0.2.0/24]}
---
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress:
    - {action: Deny, source: {namespaceSelector: all()}}
    - {action: Allow, source: {namespaceSelector: global(), selector: \"app == 'web'\"}}
";
        let from_set = Packet {
            src: Ipv4Addr::new(192, 0, 2, 9),
            ..IN
        };
        assert_eq!(
            judge(extra, from_set),
            "allow by tier default policy p ingress rule 1"
        );
        let from_pod = tcp([10, 65, 0, 1], [10, 65, 0, 1], 80);
        assert_eq!(
            judge(extra, from_pod),
            "deny by tier default policy p ingress rule 0"
        );
    }

    #[test]
    fn namespace_selectors_see_profile_labels_with_the_prefix() {
        let extra = "
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  namespaceSelector: \"team == 'blue' && projectcalico.org/name == 'default'\"
  ingress:
    - {action: Deny, source: {namespaceSelector: \"team == 'red'\"}}
    - {action: Allow, source: {namespaceSelector: \"team == 'blue'\"}}
";
        let from_self = tcp([10, 65, 0, 1], [10, 65, 0, 1], 80);
        assert_eq!(
            judge(extra, from_self),
            "allow by tier default policy p ingress rule 1"
        );
    }

    #[test]
    fn network_policy_rule_selectors_stay_in_their_namespace() {
        let extra = "
kind: WorkloadEndpoint
metadata: {name: pod-x, namespace: other, labels: {app: web}}
spec: {interfaceName: calix3, ipNetworks: [10.65.1.1/32]}
---
kind: NetworkPolicy
metadata: {name: p, namespace: default}
spec:
  ingress:
    - {action: Allow, source: {selector: \"app == 'web'\"}}
    - {action: Deny, source: {notSelector: \"app == 'db'\"}}
";
        // Neither rule selects outside namespace default: not even the notSelector rule.
        let from_other = tcp([10, 65, 1, 1], [10, 65, 0, 1], 80);
        assert_eq!(
            judge(extra, from_other),
            "deny by end of tier default (ingress)"
        );
        let from_self = tcp([10, 65, 0, 1], [10, 65, 0, 1], 80);
        assert_eq!(
            judge(extra, from_self),
            "allow by tier default policy default/p ingress rule 0"
        );
    }
}
