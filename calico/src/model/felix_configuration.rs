//! FelixConfiguration: the few settings felix reads; every other field is kept as given
//! (in `other`) so that `apply` stores Calico's configuration whole, but felix ignores it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    error::{FieldError, Reason},
    values::Protocol,
};

/// A failsafe port (`failsafeInboundHostPorts` / `failsafeOutboundHostPorts`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoPort {
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
}

/// Spec of a FelixConfiguration (`default`, or `node.<nodename>` for one node).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// A Go duration, e.g. `30s` (kept as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<String>,
    /// A Go duration (kept as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_enabled: Option<bool>,
    #[serde(rename = "ipipMTU", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    #[serde(rename = "vxlanMTU", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_log_level: Option<String>,
    /// `Drop`, `Accept` or `Return`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    /// Every other field, kept as given and ignored by felix.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl FelixConfigurationSpec {
    /// Checks the fields felix reads.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(a) = &self.default_endpoint_to_host_action
            && !["Drop", "Accept", "Return"].contains(&a.as_str())
        {
            return Err(FieldError::new(
                "spec.defaultEndpointToHostAction",
                Reason::Invalid(format!("{a:?} is not Drop, Accept or Return")),
            ));
        }
        for (field, ports) in [
            (
                "spec.failsafeInboundHostPorts",
                &self.failsafe_inbound_host_ports,
            ),
            (
                "spec.failsafeOutboundHostPorts",
                &self.failsafe_outbound_host_ports,
            ),
        ] {
            for (i, p) in ports.iter().flatten().enumerate() {
                if !p.protocol.supports_ports() {
                    return Err(FieldError::new(
                        format!("{field}[{i}].protocol"),
                        Reason::PortsNeedProtocol(p.protocol.to_string()),
                    ));
                }
            }
        }
        Ok(())
    }
}
