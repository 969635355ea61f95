//! NetworkPolicy, GlobalNetworkPolicy and their rules.
//!
//! Selectors are kept as strings here; validation checks that each one parses. Fields felix reads
//! but does not enforce: `performanceHints` on policies and rule `metadata` are kept as given.
//! Rule matches felix cannot enforce (`http`, `services`) are kept so they round-trip, but
//! [`Rule::validate`] rejects them: ignoring a match criterion would make an Allow rule match more
//! than its author meant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    error::{FieldError, Reason},
    values::{Action, Cidr, PolicyType, Port, Protocol, check_selector},
};

/// Tier of a policy without `spec.tier`.
pub const DEFAULT_TIER: &str = "default";

/// Source or destination match of a rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// The pods' service accounts, by name and/or by the service account's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Kept as given; rejected by validation (not enforced by felix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Value>,
}

/// A rule side's `serviceAccounts`: names and selector are ANDed; an empty match is no criterion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    /// Service account names (in the policy's namespace for a NetworkPolicy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A selector over the service accounts' own labels.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

/// Why an `http` match is refused.
pub const HTTP_UNSUPPORTED: &str = "http (an application-layer match: Calico enforces it only \
     through its Envoy-based application layer policy, and felix has no L7 proxy)";
/// Why a `services` match is refused.
pub const SERVICES_UNSUPPORTED: &str = "services (a match on a Kubernetes Service's endpoints, \
     which felix does not watch)";

impl EntityRule {
    /// Whether it matches everything (no criteria).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// ICMP type and code match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icmp {
    /// ICMP type, 0-254.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code, 0-255; needs `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// Rule metadata (annotations only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One rule of a policy or profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub action: Action,
    /// 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<Icmp>,
    #[serde(rename = "notICMP", default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<Icmp>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    /// Kept as given; rejected by validation (application-layer policy is not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    /// A rule with only an action (matches everything).
    pub fn new(action: Action) -> Self {
        Rule {
            action,
            ip_version: None,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            http: None,
            metadata: None,
        }
    }

    /// Checks what Calico checks across fields; `path` is the rule's own path.
    pub fn validate(&self, path: &str) -> Result<(), FieldError> {
        if let Some(v) = self.ip_version
            && v != 4
            && v != 6
        {
            return Err(FieldError::new(
                format!("{path}.ipVersion"),
                Reason::Invalid(format!("ipVersion must be 4 or 6, not {v}")),
            ));
        }
        let proto = self
            .protocol
            .map_or_else(|| "none".to_string(), |p| p.to_string());
        for (name, entity) in [("source", &self.source), ("destination", &self.destination)] {
            for (field, ports) in [("ports", &entity.ports), ("notPorts", &entity.not_ports)] {
                if !ports.is_empty() && !self.protocol.is_some_and(Protocol::supports_ports) {
                    return Err(FieldError::new(
                        format!("{path}.{name}.{field}"),
                        Reason::PortsNeedProtocol(proto.clone()),
                    ));
                }
            }
            for (field, selector) in [
                ("selector", &entity.selector),
                ("notSelector", &entity.not_selector),
                ("namespaceSelector", &entity.namespace_selector),
            ] {
                if let Some(text) = selector {
                    check_selector(|| format!("{path}.{name}.{field}"), text)?;
                }
            }
            if let Some(sa) = &entity.service_accounts
                && !sa.selector.is_empty()
            {
                check_selector(
                    || format!("{path}.{name}.serviceAccounts.selector"),
                    &sa.selector,
                )?;
            }
            if entity.services.is_some() {
                return Err(FieldError::new(
                    format!("{path}.{name}.services"),
                    Reason::Unsupported(SERVICES_UNSUPPORTED),
                ));
            }
            for (field, nets) in [("nets", &entity.nets), ("notNets", &entity.not_nets)] {
                if let Some(v) = self.ip_version {
                    for (i, n) in nets.iter().enumerate() {
                        if n.is_ipv4() != (v == 4) {
                            return Err(FieldError::new(
                                format!("{path}.{name}.{field}[{i}]"),
                                Reason::Conflict(format!("{n} does not match ipVersion {v}")),
                            ));
                        }
                    }
                }
            }
        }
        for (field, icmp) in [("icmp", &self.icmp), ("notICMP", &self.not_icmp)] {
            let Some(icmp) = icmp else { continue };
            if !self.protocol.is_some_and(Protocol::is_icmp) {
                return Err(FieldError::new(
                    format!("{path}.{field}"),
                    Reason::IcmpNeedsProtocol(proto.clone()),
                ));
            }
            if let Some(t) = icmp.icmp_type
                && t == 255
            {
                return Err(FieldError::new(
                    format!("{path}.{field}.type"),
                    Reason::OutOfRange {
                        value: 255,
                        min: 0,
                        max: 254,
                    },
                ));
            }
            if icmp.code.is_some() && icmp.icmp_type.is_none() {
                return Err(FieldError::new(
                    format!("{path}.{field}.code"),
                    Reason::Conflict("an ICMP code needs an ICMP type".into()),
                ));
            }
        }
        if let (Some(p), Some(v)) = (self.protocol, self.ip_version)
            && ((p.number() == 1 && v == 6) || (p.number() == 58 && v == 4))
        {
            return Err(FieldError::new(
                format!("{path}.protocol"),
                Reason::Conflict(format!("protocol {p} does not match ipVersion {v}")),
            ));
        }
        if self.http.is_some() {
            return Err(FieldError::new(
                format!("{path}.http"),
                Reason::Unsupported(HTTP_UNSUPPORTED),
            ));
        }
        Ok(())
    }
}

/// Validates a list of rules at `path` (e.g. `spec.ingress`).
pub fn validate_rules(rules: &[Rule], path: &str) -> Result<(), FieldError> {
    rules
        .iter()
        .enumerate()
        .try_for_each(|(i, r)| r.validate(&format!("{path}[{i}]")))
}

/// Calico's default for an empty `types`: Ingress when there are no egress rules, Egress when
/// there are only egress rules, both when there are both.
pub fn default_types(ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    match (ingress.is_empty(), egress.is_empty()) {
        (_, true) => vec![PolicyType::Ingress],
        (true, false) => vec![PolicyType::Egress],
        (false, false) => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

fn validate_types(
    types: &[PolicyType],
    ingress: &[Rule],
    egress: &[Rule],
) -> Result<(), FieldError> {
    for (i, t) in types.iter().enumerate() {
        if types[..i].contains(t) {
            return Err(FieldError::new(
                format!("spec.types[{i}]"),
                Reason::Conflict(format!("{t} is listed twice")),
            ));
        }
    }
    if !types.is_empty() {
        if !ingress.is_empty() && !types.contains(&PolicyType::Ingress) {
            return Err(FieldError::new(
                "spec.types",
                Reason::Conflict(
                    "ingress rules are given but types does not include Ingress".into(),
                ),
            ));
        }
        if !egress.is_empty() && !types.contains(&PolicyType::Egress) {
            return Err(FieldError::new(
                "spec.types",
                Reason::Conflict("egress rules are given but types does not include Egress".into()),
            ));
        }
    }
    Ok(())
}

fn validate_order(order: Option<f64>) -> Result<(), FieldError> {
    match order {
        Some(o) if !o.is_finite() => Err(FieldError::new(
            "spec.order",
            Reason::Invalid(format!("order must be a finite number, not {o}")),
        )),
        _ => Ok(()),
    }
}

/// Spec of a namespaced NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Tier name; `None` means [`DEFAULT_TIER`] (and stays `None`, as Calico stores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower applies first; `None` sorts after every number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::go_json::serialize_opt_f64"
    )]
    pub order: Option<f64>,
    /// Endpoint selector (empty: every endpoint in the namespace).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Narrows the endpoints to those whose service account's labels match (ANDed with
    /// `selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Kept as given; not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

/// Spec of a GlobalNetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalNetworkPolicySpec {
    /// Tier name; `None` means [`DEFAULT_TIER`] (and stays `None`, as Calico stores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower applies first; `None` sorts after every number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::go_json::serialize_opt_f64"
    )]
    pub order: Option<f64>,
    /// Endpoint selector (empty: every endpoint).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Selects the namespaces whose endpoints it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Narrows the endpoints to those whose service account's labels match (ANDed with
    /// `selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Host-endpoint options, kept as given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_track: bool,
    #[serde(
        rename = "preDNAT",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pre_dnat: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_on_forward: bool,
    /// Kept as given; not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

macro_rules! policy_common {
    ($t:ty) => {
        impl $t {
            /// The tier, defaulting to [`DEFAULT_TIER`].
            pub fn tier(&self) -> &str {
                self.tier.as_deref().unwrap_or(DEFAULT_TIER)
            }
            /// The order used for sorting: `order`, or +infinity when absent.
            pub fn order_or_inf(&self) -> f64 {
                self.order.unwrap_or(f64::INFINITY)
            }
            /// `types`, or Calico's default for these rules when empty.
            pub fn effective_types(&self) -> Vec<PolicyType> {
                if self.types.is_empty() {
                    default_types(&self.ingress, &self.egress)
                } else {
                    self.types.clone()
                }
            }
            /// Fills in `types` as Calico's client does before storing. `tier` stays as given:
            /// Calico's defaulting (`api/pkg/defaults`) leaves an empty tier empty and only
            /// labels the policy (see [`super::store`]).
            pub fn apply_defaults(&mut self) {
                self.types = self.effective_types();
            }
            fn validate_common(&self) -> Result<(), FieldError> {
                if let Some(t) = &self.tier
                    && !super::valid_name(t)
                {
                    return Err(FieldError::new("spec.tier", Reason::BadName(t.clone())));
                }
                validate_order(self.order)?;
                check_selector(|| "spec.selector".into(), &self.selector)?;
                if let Some(text) = &self.service_account_selector {
                    check_selector(|| "spec.serviceAccountSelector".into(), text)?;
                }
                validate_types(&self.types, &self.ingress, &self.egress)?;
                validate_rules(&self.ingress, "spec.ingress")?;
                validate_rules(&self.egress, "spec.egress")
            }
        }
    };
}

policy_common!(NetworkPolicySpec);
policy_common!(GlobalNetworkPolicySpec);

impl NetworkPolicySpec {
    /// Checks the spec; errors carry the field path.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.validate_common()
    }
}

impl GlobalNetworkPolicySpec {
    /// Checks the spec, including Calico's rules for `doNotTrack` / `preDNAT`.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.validate_common()?;
        if let Some(text) = &self.namespace_selector {
            check_selector(|| "spec.namespaceSelector".into(), text)?;
        }
        if self.do_not_track && self.pre_dnat {
            return Err(FieldError::new(
                "spec.preDNAT",
                Reason::Conflict("preDNAT and doNotTrack cannot both be true".into()),
            ));
        }
        if (self.do_not_track || self.pre_dnat) && !self.apply_on_forward {
            return Err(FieldError::new(
                "spec.applyOnForward",
                Reason::Conflict("doNotTrack and preDNAT need applyOnForward: true".into()),
            ));
        }
        if self.pre_dnat && !self.egress.is_empty() {
            return Err(FieldError::new(
                "spec.egress",
                Reason::Conflict("a preDNAT policy cannot have egress rules".into()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Resource, document::parse_documents};

    fn one(yaml: &str) -> Resource {
        let mut all = parse_documents(yaml);
        assert_eq!(all.len(), 1);
        all.remove(0).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn service_account_matches_are_accepted_and_round_trip() {
        let r = one("
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  serviceAccountSelector: role == 'db'
  ingress:
    - action: Allow
      source: {serviceAccounts: {names: [api, web], selector: \"team == 'a'\"}}
      destination: {serviceAccounts: {names: [db]}}
");
        let Resource::NetworkPolicy(o) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(
            o.spec.service_account_selector.as_deref(),
            Some("role == 'db'")
        );
        let rule = &o.spec.ingress[0];
        assert_eq!(
            rule.source.service_accounts,
            Some(ServiceAccountMatch {
                names: vec!["api".into(), "web".into()],
                selector: "team == 'a'".into(),
            })
        );
        assert_eq!(
            rule.destination
                .service_accounts
                .as_ref()
                .map(|m| m.selector.as_str()),
            Some("")
        );
        let json = r.to_json();
        assert!(
            json.contains(r#""serviceAccounts":{"names":["api","web"],"selector":"team == 'a'"}"#),
            "{json}"
        );
        assert!(!json.contains(r#""selector":"""#), "{json}");
        assert_eq!(one(&json), r);
    }

    #[test]
    fn a_bad_service_account_selector_is_refused_with_its_path() {
        for yaml in [
            "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {serviceAccountSelector: 'a =='}",
            "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, destination: {serviceAccounts: {selector: '!!'}}}]}",
        ] {
            let err = parse_documents(yaml).remove(0).expect_err(yaml).to_string();
            assert!(err.contains("serviceAccount"), "{err}");
            assert!(err.contains("bad selector"), "{err}");
        }
    }

    #[test]
    fn http_and_services_are_refused_saying_why() {
        let http = parse_documents(
            "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, http: {paths: [{exact: /}]}}]}",
        )
        .remove(0)
        .expect_err("http")
        .to_string();
        assert!(http.contains("spec.ingress[0].http"), "{http}");
        assert!(http.contains("no L7 proxy"), "{http}");
        let services = parse_documents(
            "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, destination: {services: {name: dns, namespace: kube-system}}}]}",
        )
        .remove(0)
        .expect_err("services")
        .to_string();
        assert!(services.contains("Service's endpoints"), "{services}");
    }
}
