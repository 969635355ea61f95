//! Policy rules, policies and tiers, as libcalico-go's `validateRule`, `validateEntityRule`,
//! `validate(Global)NetworkPolicySpec` and `validateTier` (plus the Tier CRD's CEL rules) check
//! them, beyond what [`crate::model::policy::Rule::validate`] already checks.

use super::metadata::check_annotations;
use crate::model::{
    Cidr, EntityRule, GlobalNetworkPolicySpec, NetworkPolicySpec, Rule, TierSpec,
    error::{FieldError, Reason},
    values::Action,
};

/// The selector only an entity rule's `namespaceSelector` may use.
pub const GLOBAL_SELECTOR: &str = "global()";
/// The only value of `performanceHints` Calico knows.
pub const PERFORMANCE_HINT: &str = "AssumeNeededOnEveryNode";

/// The order Calico's client gives a tier without one (the `default` tier's).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// Tiers whose order and default action Calico fixes: (name, order, default action).
pub const FIXED_TIERS: [(&str, f64, Action); 3] = [
    ("kube-admin", 1_000.0, Action::Pass),
    ("default", 1_000_000.0, Action::Deny),
    ("kube-baseline", 10_000_000.0, Action::Pass),
];

fn conflict(field: impl Into<String>, msg: impl Into<String>) -> FieldError {
    FieldError::new(field, Reason::Conflict(msg.into()))
}

fn no_global(field: &str, selector: Option<&str>) -> Result<(), FieldError> {
    match selector {
        Some(s) if s.contains(GLOBAL_SELECTOR) => Err(conflict(
            field,
            "global() can only be used in a rule's namespaceSelector",
        )),
        _ => Ok(()),
    }
}

/// `global()` in a `namespaceSelector` must stand alone (optionally with surrounding
/// whitespace) and is refused in `selector` (Calico does not check `notSelector`).
fn check_entity(path: &str, e: &EntityRule) -> Result<(), FieldError> {
    no_global(&format!("{path}.selector"), e.selector.as_deref())?;
    if let Some(ns) = &e.namespace_selector
        && ns.contains("global(")
        && ns.trim() != GLOBAL_SELECTOR
    {
        return Err(conflict(
            format!("{path}.namespaceSelector"),
            "global() cannot be combined with other selectors",
        ));
    }
    Ok(())
}

/// Whether `n` has host bits set (Calico's `net` validator wants a strictly masked network).
fn has_host_bits(n: &Cidr) -> bool {
    n.0 != n.network()
}

/// Checks nets (strict masks, catch-all `notNets`, one IP version per rule), `global()`,
/// ICMP protocol vs. `ipVersion` through `notProtocol`, and rule annotations.
pub fn check_rule(path: &str, rule: &Rule) -> Result<(), FieldError> {
    let mut seen: Option<(bool, String)> = None;
    for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        check_entity(&format!("{path}.{side}"), entity)?;
        for (field, nets) in [("nets", &entity.nets), ("notNets", &entity.not_nets)] {
            for (i, n) in nets.iter().enumerate() {
                let at = format!("{path}.{side}.{field}[{i}]");
                if has_host_bits(n) {
                    return Err(FieldError::new(
                        at,
                        Reason::Invalid(format!(
                            "{n} has host bits set; write the network, {}",
                            n.network()
                        )),
                    ));
                }
                if field == "notNets" && n.0.prefix_len() == 0 {
                    return Err(FieldError::new(
                        at,
                        Reason::Invalid(format!(
                            "{n} in notNets is a catch-all: the rule would match no traffic"
                        )),
                    ));
                }
                match &seen {
                    Some((v4, first)) if *v4 != n.is_ipv4() => {
                        return Err(conflict(
                            at,
                            format!("rule contains both IPv4 and IPv6 CIDRs ({first} and {n})"),
                        ));
                    }
                    Some(_) => {}
                    None => seen = Some((n.is_ipv4(), n.to_string())),
                }
            }
        }
    }
    if let (Some(p), Some(v)) = (rule.not_protocol, rule.ip_version)
        && ((p.number() == 1 && v != 4) || (p.number() == 58 && v != 6))
    {
        return Err(conflict(
            format!("{path}.ipVersion"),
            format!(
                "notProtocol {p} needs ipVersion {}",
                if p.number() == 1 { 4 } else { 6 }
            ),
        ));
    }
    if let Some(md) = &rule.metadata {
        check_annotations(&format!("{path}.metadata.annotations"), &md.annotations)?;
    }
    Ok(())
}

fn check_rules(path: &str, rules: &[Rule]) -> Result<(), FieldError> {
    rules
        .iter()
        .enumerate()
        .try_for_each(|(i, r)| check_rule(&format!("{path}[{i}]"), r))
}

/// Checks a profile's (or any) ingress and egress rules.
pub fn check_rule_lists(ingress: &[Rule], egress: &[Rule]) -> Result<(), FieldError> {
    check_rules("spec.ingress", ingress)?;
    check_rules("spec.egress", egress)
}

fn check_hints(hints: &[String]) -> Result<(), FieldError> {
    for (i, h) in hints.iter().enumerate() {
        if h != PERFORMANCE_HINT {
            return Err(FieldError::new(
                format!("spec.performanceHints[{i}]"),
                Reason::Invalid(format!("unknown hint {h:?} (expected {PERFORMANCE_HINT})")),
            ));
        }
        if hints[..i].contains(h) {
            return Err(conflict(
                format!("spec.performanceHints[{i}]"),
                format!("{h} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_tier_ref(tier: Option<&str>) -> Result<(), FieldError> {
    match tier {
        Some(t) if !super::names::is_subdomain(t) => Err(FieldError::new(
            "spec.tier",
            Reason::Invalid(format!(
                "{t:?}: a tier name must consist of lower case alphanumeric characters or '-'"
            )),
        )),
        _ => Ok(()),
    }
}

/// A NetworkPolicy's spec: tier name, `global()` placement, hints, rules.
pub fn check_network_policy(spec: &NetworkPolicySpec) -> Result<(), FieldError> {
    check_tier_ref(spec.tier.as_deref())?;
    no_global("spec.selector", Some(&spec.selector))?;
    no_global(
        "spec.serviceAccountSelector",
        spec.service_account_selector.as_deref(),
    )?;
    check_hints(&spec.performance_hints)?;
    check_rule_lists(&spec.ingress, &spec.egress)
}

/// A GlobalNetworkPolicy's spec: as [`check_network_policy`], plus its `namespaceSelector`
/// (no `global()`) and preDNAT policies without the Egress type.
pub fn check_global_network_policy(spec: &GlobalNetworkPolicySpec) -> Result<(), FieldError> {
    check_tier_ref(spec.tier.as_deref())?;
    no_global("spec.selector", Some(&spec.selector))?;
    no_global(
        "spec.serviceAccountSelector",
        spec.service_account_selector.as_deref(),
    )?;
    no_global("spec.namespaceSelector", spec.namespace_selector.as_deref())?;
    if spec.pre_dnat
        && spec
            .types
            .contains(&crate::model::values::PolicyType::Egress)
    {
        return Err(conflict(
            "spec.types",
            "a preDNAT policy cannot have the Egress type",
        ));
    }
    check_hints(&spec.performance_hints)?;
    check_rule_lists(&spec.ingress, &spec.egress)
}

/// The tiers Calico fixes (`default`, `kube-admin`, `kube-baseline`) must keep their order
/// and default action; absent ones take Calico's defaults first (order 1000000, Deny).
pub fn check_tier(name: &str, spec: &TierSpec) -> Result<(), FieldError> {
    let Some((_, order, action)) = FIXED_TIERS.iter().find(|(n, _, _)| *n == name) else {
        return Ok(());
    };
    // Calico's client gives a tier without `order` the default tier's (1000000).
    if spec.order.unwrap_or(DEFAULT_TIER_ORDER) != *order {
        return Err(FieldError::new(
            "spec.order",
            Reason::Invalid(format!("the {name} tier's order must be {order}")),
        ));
    }
    if spec.default_action.unwrap_or(Action::Deny) != *action {
        return Err(FieldError::new(
            "spec.defaultAction",
            Reason::Invalid(format!("the {name} tier must have defaultAction {action}")),
        ));
    }
    Ok(())
}
