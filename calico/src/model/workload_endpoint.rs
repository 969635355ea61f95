//! WorkloadEndpoint: a pod's interface, as Calico's CNI plugin writes it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    error::{FieldError, Reason},
    values::{Cidr, Protocol, is_mac},
};

/// Label Calico puts on every workload endpoint with its namespace.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// Label Calico puts on every workload endpoint with its orchestrator.
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";

/// Identifies a workload endpoint, as its felix status key does: orchestrator, workload
/// (`<namespace>/<pod>`), endpoint (`eth0`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EndpointId {
    pub orchestrator: String,
    pub workload: String,
    pub endpoint: String,
}

/// A named port of an endpoint (what a rule's named port resolves to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    pub name: String,
    /// TCP, UDP or SCTP.
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// Whether `s` is a port name as Kubernetes (and so Calico's `portName` validator) accepts it:
/// 1-15 characters of `a-z`, `0-9` and `-`, at least one letter, no leading, trailing or
/// doubled `-`.
pub fn valid_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Checks a list of endpoint ports at `path` (e.g. `spec.ports`).
pub fn validate_endpoint_ports(ports: &[EndpointPort], path: &str) -> Result<(), FieldError> {
    for (i, p) in ports.iter().enumerate() {
        if p.name.is_empty() {
            return Err(FieldError::new(
                format!("{path}[{i}].name"),
                Reason::Required("a named port needs a name"),
            ));
        }
        if !valid_port_name(&p.name) {
            return Err(FieldError::new(
                format!("{path}[{i}].name"),
                Reason::Invalid(format!(
                    "{:?} is not a port name (1-15 of a-z, 0-9, '-'; a letter; no leading, trailing or double '-')",
                    p.name
                )),
            ));
        }
        if !p.protocol.supports_ports() {
            return Err(FieldError::new(
                format!("{path}[{i}].protocol"),
                Reason::PortsNeedProtocol(p.protocol.to_string()),
            ));
        }
        if p.port == 0 {
            return Err(FieldError::new(
                format!("{path}[{i}].port"),
                Reason::OutOfRange {
                    value: 0,
                    min: 1,
                    max: 65535,
                },
            ));
        }
    }
    Ok(())
}

/// NAT mapping of a workload address (floating IP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpNat {
    #[serde(rename = "internalIP")]
    pub internal_ip: IpAddr,
    #[serde(rename = "externalIP")]
    pub external_ip: IpAddr,
}

/// Spec of a WorkloadEndpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// A string; a YAML number (as in Calico's docs) is taken as its digits.
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "string_or_number"
    )]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<Cidr>,
    #[serde(rename = "ipNATs", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<Cidr>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "invalid type: {other}, expected a string"
        ))),
    }
}

/// Whether `s` can be a Linux interface name (1-15 bytes, no '/', ':' or whitespace).
pub fn valid_interface_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

impl WorkloadEndpointSpec {
    /// Checks interface name, MAC, profiles and named ports.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !self.interface_name.is_empty() && !valid_interface_name(&self.interface_name) {
            return Err(FieldError::new(
                "spec.interfaceName",
                Reason::Invalid(format!(
                    "{:?} is not an interface name",
                    self.interface_name
                )),
            ));
        }
        if !self.mac.is_empty() && !is_mac(&self.mac) {
            return Err(FieldError::new(
                "spec.mac",
                Reason::Invalid(format!("{:?} is not a MAC address", self.mac)),
            ));
        }
        for (i, p) in self.profiles.iter().enumerate() {
            if !super::valid_name(p) {
                return Err(FieldError::new(
                    format!("spec.profiles[{i}]"),
                    Reason::BadName(p.clone()),
                ));
            }
        }
        validate_endpoint_ports(&self.ports, "spec.ports")
    }
}
