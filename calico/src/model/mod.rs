//! Typed models of the Calico v3 resources felix needs, with Calico's validation and defaulting,
//! their etcd keys, and parsing of YAML / JSON documents ([`document`]).
//!
//! Every resource has Calico's shape: `apiVersion: projectcalico.org/v3`, `kind`, `metadata`,
//! `spec`, with Calico's camelCase field names. Pure code: nothing here talks to etcd.
//!
//! Two ways in:
//! - [`Resource::from_value`] / [`Resource::from_etcd`] read what is stored in etcd. Like Calico's
//!   own Go client they ignore fields they do not know (a newer Calico may add some); a value that
//!   does not parse or validate is an error naming the field.
//! - [`document::parse_documents`] reads `apply` input and is strict: a field the model does not
//!   know is an error too, so a typo is not silently dropped.
//!
//! Defaulting ([`Resource::apply_defaults`], done by both): a namespaced kind without a namespace
//! gets `default` (as calicoctl does); policies get Calico's default `types`; workload endpoints
//! get the `projectcalico.org/namespace` and `projectcalico.org/orchestrator` labels; IP pool
//! CIDRs lose their host bits. What Calico's client adds on the way into etcd only (IP pool and
//! tier defaults, the policy tier label, `uid` and `creationTimestamp`) is in [`store`].
//!
//! Not modelled (stored and returned as opaque JSON specs): BGPConfiguration and BGPPeer.
//! Selectors are kept as strings, and validation parses each one with
//! [`crate::selector::Selector::parse`] (a bad one names its field). Calico's own validation
//! rules (names, labels, rules, tiers, pools, endpoints) are in [`validate`]; see
//! `docs/validation.md`. Not validated here: Go duration strings.

pub mod document;
pub mod error;
pub mod felix_configuration;
pub mod go_json;
pub mod host_endpoint;
pub mod ippool;
pub mod network_set;
pub mod node;
pub mod policy;
pub mod profile;
pub mod store;
pub mod tier;
pub mod validate;
pub mod values;
pub mod workload_endpoint;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};
use serde_json::Value;

pub use error::{DocRef, FieldError, Format, ModelError, Reason};
pub use felix_configuration::FelixConfigurationSpec;
pub use host_endpoint::HostEndpointSpec;
pub use ippool::IpPoolSpec;
pub use network_set::{GlobalNetworkSetSpec, NetworkSetSpec};
pub use node::NodeSpec;
pub use policy::{EntityRule, GlobalNetworkPolicySpec, Icmp, NetworkPolicySpec, Rule};
pub use profile::ProfileSpec;
pub use tier::TierSpec;
pub use values::{Action, AsNumber, Cidr, EncapMode, PolicyType, Port, Protocol};
pub use workload_endpoint::{EndpointPort, WorkloadEndpointSpec};

/// The only apiVersion felix reads and writes.
pub const API_VERSION: &str = "projectcalico.org/v3";
/// Prefix of every v3 resource key.
pub const KEY_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
/// Namespace given to a namespaced resource without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A kind of resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    WorkloadEndpoint,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Profile,
    Tier,
    IpPool,
    Node,
    GlobalNetworkSet,
    NetworkSet,
    HostEndpoint,
    FelixConfiguration,
    BgpConfiguration,
    BgpPeer,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 13] = [
        Kind::WorkloadEndpoint,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::Profile,
        Kind::Tier,
        Kind::IpPool,
        Kind::Node,
        Kind::GlobalNetworkSet,
        Kind::NetworkSet,
        Kind::HostEndpoint,
        Kind::FelixConfiguration,
        Kind::BgpConfiguration,
        Kind::BgpPeer,
    ];

    /// Calico's name of the kind (`IPPool`, `NetworkPolicy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::Profile => "Profile",
            Kind::Tier => "Tier",
            Kind::IpPool => "IPPool",
            Kind::Node => "Node",
            Kind::GlobalNetworkSet => "GlobalNetworkSet",
            Kind::NetworkSet => "NetworkSet",
            Kind::HostEndpoint => "HostEndpoint",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::BgpConfiguration => "BGPConfiguration",
            Kind::BgpPeer => "BGPPeer",
        }
    }

    /// The plural used in etcd keys.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::WorkloadEndpoint => "workloadendpoints",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::Profile => "profiles",
            Kind::Tier => "tiers",
            Kind::IpPool => "ippools",
            Kind::Node => "nodes",
            Kind::GlobalNetworkSet => "globalnetworksets",
            Kind::NetworkSet => "networksets",
            Kind::HostEndpoint => "hostendpoints",
            Kind::FelixConfiguration => "felixconfigurations",
            Kind::BgpConfiguration => "bgpconfigurations",
            Kind::BgpPeer => "bgppeers",
        }
    }

    /// Whether resources of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::WorkloadEndpoint | Kind::NetworkPolicy | Kind::NetworkSet
        )
    }

    /// The kind named exactly as in a document's `kind` field.
    pub fn from_kind(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind from a user's word (`felix get KIND`): the kind, its plural or its singular,
    /// in any case (`ippool`, `IPPools`, `networkpolicy`).
    pub fn from_user(s: &str) -> Option<Kind> {
        let l = s.to_ascii_lowercase();
        Kind::ALL.into_iter().find(|k| {
            let kind = k.as_str().to_ascii_lowercase();
            l == kind || l == k.plural()
        })
    }

    /// The kind of an etcd key's plural.
    pub fn from_plural(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Object metadata (the fields of Kubernetes' ObjectMeta that Calico's etcd values carry).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Deprecated in Kubernetes; accepted (ObjectMeta has it) and dropped on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

/// Kubernetes' `metadata.ownerReferences[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// Kubernetes' `metadata.managedFields[]` entry (`fieldsV1` kept as given).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_type: Option<String>,
    #[serde(rename = "fieldsV1", default, skip_serializing_if = "Option::is_none")]
    pub fields_v1: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

impl Metadata {
    /// Metadata with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        Metadata {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// `metadata` and `spec` of one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Object<S> {
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: S,
}

/// One Calico v3 resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    WorkloadEndpoint(Object<WorkloadEndpointSpec>),
    NetworkPolicy(Object<NetworkPolicySpec>),
    GlobalNetworkPolicy(Object<GlobalNetworkPolicySpec>),
    Profile(Object<ProfileSpec>),
    Tier(Object<TierSpec>),
    IpPool(Object<IpPoolSpec>),
    Node(Object<NodeSpec>),
    GlobalNetworkSet(Object<GlobalNetworkSetSpec>),
    /// Namespaced; its rule-selector semantics are those of an endpoint in its namespace.
    NetworkSet(Object<NetworkSetSpec>),
    HostEndpoint(Object<HostEndpointSpec>),
    FelixConfiguration(Object<FelixConfigurationSpec>),
    /// Opaque: the spec is stored and returned as given (must be an object).
    BgpConfiguration(Object<Value>),
    /// Opaque: the spec is stored and returned as given (must be an object).
    BgpPeer(Object<Value>),
}

/// Runs `$e` with `$o` bound to the inner [`Object`] of any variant.
macro_rules! each {
    ($r:expr, $o:ident => $e:expr) => {
        match $r {
            Resource::WorkloadEndpoint($o) => $e,
            Resource::NetworkPolicy($o) => $e,
            Resource::GlobalNetworkPolicy($o) => $e,
            Resource::Profile($o) => $e,
            Resource::Tier($o) => $e,
            Resource::IpPool($o) => $e,
            Resource::Node($o) => $e,
            Resource::GlobalNetworkSet($o) => $e,
            Resource::NetworkSet($o) => $e,
            Resource::HostEndpoint($o) => $e,
            Resource::FelixConfiguration($o) => $e,
            Resource::BgpConfiguration($o) => $e,
            Resource::BgpPeer($o) => $e,
        }
    };
}

/// Whether `s` can be a resource name in a key: 1-253 characters, no `/`, whitespace or control
/// characters.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

impl Resource {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::Profile(_) => Kind::Profile,
            Resource::Tier(_) => Kind::Tier,
            Resource::IpPool(_) => Kind::IpPool,
            Resource::Node(_) => Kind::Node,
            Resource::GlobalNetworkSet(_) => Kind::GlobalNetworkSet,
            Resource::NetworkSet(_) => Kind::NetworkSet,
            Resource::HostEndpoint(_) => Kind::HostEndpoint,
            Resource::FelixConfiguration(_) => Kind::FelixConfiguration,
            Resource::BgpConfiguration(_) => Kind::BgpConfiguration,
            Resource::BgpPeer(_) => Kind::BgpPeer,
        }
    }

    /// Its metadata.
    pub fn metadata(&self) -> &Metadata {
        each!(self, o => &o.metadata)
    }

    /// Its metadata, mutably.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        each!(self, o => &mut o.metadata)
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// `metadata.namespace` (always set on namespaced kinds after defaulting).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// `namespace/name` for namespaced kinds, `name` otherwise.
    pub fn qualified_name(&self) -> String {
        match (self.kind().namespaced(), self.namespace()) {
            (true, Some(ns)) => format!("{ns}/{}", self.name()),
            _ => self.name().to_string(),
        }
    }

    /// Fills in what Calico's client fills in before storing (see the module docs).
    pub fn apply_defaults(&mut self) {
        let kind = self.kind();
        if kind.namespaced()
            && self
                .metadata()
                .namespace
                .as_deref()
                .is_none_or(str::is_empty)
        {
            self.metadata_mut().namespace = Some(DEFAULT_NAMESPACE.to_string());
        }
        match self {
            Resource::NetworkPolicy(o) => o.spec.apply_defaults(),
            Resource::GlobalNetworkPolicy(o) => o.spec.apply_defaults(),
            Resource::IpPool(o) => o.spec.apply_defaults(),
            Resource::WorkloadEndpoint(o) => {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                o.metadata
                    .labels
                    .insert(workload_endpoint::LABEL_NAMESPACE.to_string(), ns);
                if !o.spec.orchestrator.is_empty() {
                    o.metadata.labels.insert(
                        workload_endpoint::LABEL_ORCHESTRATOR.to_string(),
                        o.spec.orchestrator.clone(),
                    );
                }
            }
            _ => {}
        }
    }

    /// Checks metadata and spec as Calico does; the error names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let md = self.metadata();
        if md.name.is_empty() {
            return Err(FieldError::new("metadata.name", Reason::MissingName));
        }
        if !valid_name(&md.name) {
            return Err(FieldError::new(
                "metadata.name",
                Reason::BadName(md.name.clone()),
            ));
        }
        let kind = self.kind();
        match &md.namespace {
            Some(ns) if !kind.namespaced() && !ns.is_empty() => {
                return Err(FieldError::new(
                    "metadata.namespace",
                    Reason::NamespaceOnGlobal {
                        kind,
                        namespace: ns.clone(),
                    },
                ));
            }
            Some(ns) if kind.namespaced() && !valid_name(ns) => {
                return Err(FieldError::new(
                    "metadata.namespace",
                    Reason::BadName(ns.clone()),
                ));
            }
            _ => {}
        }
        self.validate_spec()?;
        validate::check(self)
    }

    /// Each spec's own checks.
    fn validate_spec(&self) -> Result<(), FieldError> {
        match self {
            Resource::WorkloadEndpoint(o) => o.spec.validate(),
            Resource::NetworkPolicy(o) => o.spec.validate(),
            Resource::GlobalNetworkPolicy(o) => o.spec.validate(),
            Resource::Profile(o) => o.spec.validate(),
            Resource::Tier(o) => o.spec.validate(),
            Resource::IpPool(o) => o.spec.validate(),
            Resource::Node(o) => o.spec.validate(),
            Resource::GlobalNetworkSet(o) => o.spec.validate(),
            Resource::NetworkSet(o) => o.spec.validate(),
            Resource::HostEndpoint(o) => o.spec.validate(),
            Resource::FelixConfiguration(o) => o.spec.validate(),
            Resource::BgpConfiguration(o) | Resource::BgpPeer(o) => {
                if o.spec.is_object() {
                    Ok(())
                } else {
                    Err(FieldError::new(
                        "spec",
                        Reason::Invalid("spec must be an object".into()),
                    ))
                }
            }
        }
    }

    /// Decodes a resource from its JSON value (lenient about unknown fields, see the module
    /// docs), applies defaults and validates. `apiVersion` may be absent; `kind` may be absent
    /// when `kind_hint` says it (from the etcd key).
    pub fn from_value(value: Value, kind_hint: Option<Kind>) -> Result<Resource, ModelError> {
        decode(value, kind_hint, None)
    }

    /// Decodes an etcd value stored at `key` (the key gives the kind when the value lacks it).
    pub fn from_etcd(key: &str, value: &[u8]) -> Result<Resource, ModelError> {
        let hint = parse_key(key).map(|(k, _, _)| k);
        let v: Value = serde_json::from_slice(value).map_err(|e| ModelError {
            doc: None,
            kind: hint.map(|k| k.as_str().to_string()),
            name: None,
            field: String::new(),
            reason: Reason::Syntax {
                format: Format::Json,
                message: e.to_string(),
            },
        })?;
        Resource::from_value(v, hint)
    }

    /// The v3 JSON value (`apiVersion`, `kind`, `metadata`, `spec`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The v3 JSON text, as stored in etcd.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// Its etcd key.
    pub fn key(&self) -> String {
        key_of(self)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a Metadata,
    spec: &'a S,
}

impl Serialize for Resource {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let kind = self.kind().as_str();
        each!(self, o => Envelope { api_version: API_VERSION, kind, metadata: &o.metadata, spec: &o.spec }.serialize(s))
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Resource::from_value(v, None).map_err(serde::de::Error::custom)
    }
}

/// The etcd key of a resource: `/calico/resources/v3/projectcalico.org/<plural>/[<ns>/]<name>`.
/// A namespaced resource without a namespace is keyed under `default`.
pub fn key_of(r: &Resource) -> String {
    let kind = r.kind();
    if kind.namespaced() {
        let ns = r
            .namespace()
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        format!("{KEY_PREFIX}{}/{ns}/{}", kind.plural(), r.name())
    } else {
        format!("{KEY_PREFIX}{}/{}", kind.plural(), r.name())
    }
}

/// The key of `kind` `name` (in `namespace` for namespaced kinds).
pub fn key_for(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    if kind.namespaced() {
        let ns = namespace.unwrap_or(DEFAULT_NAMESPACE);
        format!("{KEY_PREFIX}{}/{ns}/{name}", kind.plural())
    } else {
        format!("{KEY_PREFIX}{}/{name}", kind.plural())
    }
}

/// The prefix of every key of `kind` (in `namespace`, when given and the kind is namespaced).
pub fn prefix_of(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced() => format!("{KEY_PREFIX}{}/{ns}/", kind.plural()),
        _ => format!("{KEY_PREFIX}{}/", kind.plural()),
    }
}

/// Kind, namespace and name of a resource key; `None` for any other key.
pub fn parse_key(key: &str) -> Option<(Kind, Option<String>, String)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let mut parts = rest.split('/');
    let kind = Kind::from_plural(parts.next()?)?;
    let parts: Vec<&str> = parts.collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match (kind.namespaced(), parts.as_slice()) {
        (true, [ns, name]) => Some((kind, Some(ns.to_string()), name.to_string())),
        (false, [name]) => Some((kind, None, name.to_string())),
        _ => None,
    }
}

/// Kind and `namespace/name` as far as they can be read from a raw value (for error messages).
fn describe_value(v: &Value) -> (Option<String>, Option<String>) {
    let kind = v.get("kind").and_then(Value::as_str).map(str::to_string);
    let md = v.get("metadata");
    let name = md
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let ns = md
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let name = match (ns, name) {
        (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
        (None, Some(n)) => Some(n.to_string()),
        _ => None,
    };
    (kind, name)
}

fn decode_object<S: DeserializeOwned>(
    v: &mut Value,
    yaml_scalars: bool,
) -> Result<Object<S>, FieldError> {
    let decoder = go_json::GoDecoder {
        value: v,
        yaml_scalars,
    };
    serde_path_to_error::deserialize(decoder).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(path, Reason::Invalid(e.into_inner().to_string()))
    })
}

/// Decodes, defaults and validates one document; errors carry `doc` and the kind/name read from
/// the raw value.
pub(crate) fn decode(
    mut value: Value,
    kind_hint: Option<Kind>,
    doc: Option<DocRef>,
) -> Result<Resource, ModelError> {
    decode_in_place(&mut value, kind_hint, doc, false)
}

/// [`decode`], leaving `value` with Calico's field names where the input matched them only
/// ignoring case (see [`go_json::GoDecoder`], which also explains `yaml_scalars`).
pub(crate) fn decode_in_place(
    value: &mut Value,
    kind_hint: Option<Kind>,
    doc: Option<DocRef>,
    yaml_scalars: bool,
) -> Result<Resource, ModelError> {
    let (kind_name, name) = describe_value(value);
    let fail = |field: String, reason: Reason| ModelError {
        doc: doc.clone().map(Box::new),
        kind: kind_name
            .clone()
            .or(kind_hint.map(|k| k.as_str().to_string())),
        name: name.clone(),
        field,
        reason,
    };
    let Some(obj) = value.as_object_mut() else {
        return Err(fail(String::new(), Reason::NotAnObject));
    };
    match obj.get("apiVersion") {
        None => {}
        Some(Value::String(s)) if s == API_VERSION => {}
        Some(other) => {
            let s = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            return Err(fail("apiVersion".into(), Reason::BadApiVersion(s)));
        }
    }
    let kind = match obj.get("kind") {
        None => kind_hint.ok_or_else(|| fail("kind".into(), Reason::MissingKind))?,
        Some(Value::String(s)) => {
            Kind::from_kind(s).ok_or_else(|| fail("kind".into(), Reason::UnknownKind(s.clone())))?
        }
        Some(other) => return Err(fail("kind".into(), Reason::UnknownKind(other.to_string()))),
    };
    // A document without spec (or with `spec: null`) has an empty one.
    if obj.get("spec").is_none_or(Value::is_null) {
        obj.insert("spec".into(), Value::Object(Default::default()));
    }
    let r = (|| -> Result<Resource, FieldError> {
        Ok(match kind {
            Kind::WorkloadEndpoint => {
                Resource::WorkloadEndpoint(decode_object(value, yaml_scalars)?)
            }
            Kind::NetworkPolicy => Resource::NetworkPolicy(decode_object(value, yaml_scalars)?),
            Kind::GlobalNetworkPolicy => {
                Resource::GlobalNetworkPolicy(decode_object(value, yaml_scalars)?)
            }
            Kind::Profile => Resource::Profile(decode_object(value, yaml_scalars)?),
            Kind::Tier => Resource::Tier(decode_object(value, yaml_scalars)?),
            Kind::IpPool => Resource::IpPool(decode_object(value, yaml_scalars)?),
            Kind::Node => Resource::Node(decode_object(value, yaml_scalars)?),
            Kind::GlobalNetworkSet => {
                Resource::GlobalNetworkSet(decode_object(value, yaml_scalars)?)
            }
            Kind::NetworkSet => Resource::NetworkSet(decode_object(value, yaml_scalars)?),
            Kind::HostEndpoint => Resource::HostEndpoint(decode_object(value, yaml_scalars)?),
            Kind::FelixConfiguration => {
                Resource::FelixConfiguration(decode_object(value, yaml_scalars)?)
            }
            Kind::BgpConfiguration => {
                Resource::BgpConfiguration(decode_object(value, yaml_scalars)?)
            }
            Kind::BgpPeer => Resource::BgpPeer(decode_object(value, yaml_scalars)?),
        })
    })();
    let mut r = r.map_err(|e| fail(e.field, e.reason))?;
    r.apply_defaults();
    r.validate().map_err(|e| fail(e.field, e.reason))?;
    Ok(r)
}

#[cfg(test)]
mod field_name_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
