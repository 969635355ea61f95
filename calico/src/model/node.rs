//! Node: a host of the cluster and its BGP / tunnel addresses.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::{
    error::{FieldError, Reason},
    values::{AsNumber, Cidr, is_mac},
};

/// BGP part of a Node's spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBgpSpec {
    /// The node's IPv4 address with its subnet, e.g. `10.0.0.1/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Cidr>,
    #[serde(
        rename = "ipv4IPIPTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        rename = "routeReflectorClusterID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
}

/// Which orchestrator knows this node under which name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    pub orchestrator: String,
}

/// An address of the node and where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    pub address: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub address_type: String,
}

/// Spec of a Node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    #[serde(
        rename = "ipv4VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<IpAddr>,
    #[serde(
        rename = "vxlanTunnelMACAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    #[serde(
        rename = "ipv6VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<IpAddr>,
    #[serde(
        rename = "vxlanTunnelMACAddrV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// Kept as given; not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<serde_json::Value>,
}

impl NodeSpec {
    /// The node's IPv4 address (`spec.bgp.ipv4Address` without its prefix length).
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.bgp.as_ref()?.ipv4_address?.0.addr() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// Checks address families and MACs.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(bgp) = &self.bgp {
            if let Some(a) = bgp.ipv4_address
                && !a.is_ipv4()
            {
                return Err(FieldError::new(
                    "spec.bgp.ipv4Address",
                    Reason::Invalid(format!("{a} is not an IPv4 address")),
                ));
            }
            if let Some(a) = bgp.ipv6_address
                && a.is_ipv4()
            {
                return Err(FieldError::new(
                    "spec.bgp.ipv6Address",
                    Reason::Invalid(format!("{a} is not an IPv6 address")),
                ));
            }
        }
        for (field, mac) in [
            ("spec.vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr),
            ("spec.vxlanTunnelMACAddrV6", &self.vxlan_tunnel_mac_addr_v6),
        ] {
            if let Some(m) = mac
                && !is_mac(m)
            {
                return Err(FieldError::new(
                    field,
                    Reason::Invalid(format!("{m:?} is not a MAC address")),
                ));
            }
        }
        Ok(())
    }
}
