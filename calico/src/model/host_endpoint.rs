//! HostEndpoint: a host interface (or the host's IPs) that policy applies to.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    error::{FieldError, Reason},
    workload_endpoint::{EndpointPort, valid_interface_name, validate_endpoint_ports},
};

/// Spec of a HostEndpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEndpointSpec {
    /// The node it belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The interface, or `*` for all of the host's interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(rename = "expectedIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl HostEndpointSpec {
    /// Checks that it names a node and an interface or IPs.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.node.is_empty() {
            return Err(FieldError::new(
                "spec.node",
                Reason::Required("a host endpoint needs its node"),
            ));
        }
        if self.interface_name.is_empty() && self.expected_ips.is_empty() {
            return Err(FieldError::new(
                "spec",
                Reason::Required("interfaceName or expectedIPs"),
            ));
        }
        if !self.interface_name.is_empty()
            && self.interface_name != "*"
            && !valid_interface_name(&self.interface_name)
        {
            return Err(FieldError::new(
                "spec.interfaceName",
                Reason::Invalid(format!(
                    "{:?} is not an interface name",
                    self.interface_name
                )),
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
