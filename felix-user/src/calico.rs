//! The slice of Calico's etcd data the dataplane needs today, parsed from Calico's own layout
//! (v3 resources and IPAM blocks). Malformed values are reported with their key and skipped;
//! the rest still applies.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::Deserialize;
use tracing::warn;

/// Key prefix of every Calico key.
pub const CALICO_PREFIX: &str = "/calico/";
/// Workload endpoints (v3, etcd mode).
pub const WORKLOAD_ENDPOINTS: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/";
/// Nodes (v3, etcd mode).
pub const NODES: &str = "/calico/resources/v3/projectcalico.org/nodes/";
/// IPAM blocks.
pub const IPAM_BLOCKS: &str = "/calico/ipam/v2/assignment/ipv4/block/";

/// A workload endpoint, as far as forwarding cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The etcd key it came from.
    pub key: String,
    pub node: String,
    pub interface: String,
    /// The pod's IPv4 address (its first /32).
    pub ip: Ipv4Addr,
    /// The pod's MAC, when given.
    pub mac: Option<[u8; 6]>,
    /// `spec.orchestrator` (e.g. `k8s`).
    pub orchestrator: String,
    /// `<namespace>/<pod>`, the workload id of Calico's status keys.
    pub workload: String,
    /// `spec.endpoint` (e.g. `eth0`).
    pub endpoint: String,
}

/// An IPAM block and the host it is affine to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub cidr: Ipv4Net,
    /// `affinity: "host:<node>"`, when set.
    pub host: Option<String>,
}

/// Everything parsed from one listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The v3 resources policy needs, by key (workload endpoints, policies, profiles, tiers,
    /// network sets, host endpoints).
    pub policy_resources: Vec<(String, crate::model::Resource)>,
    pub workloads: Vec<Workload>,
    /// Node name -> its IPv4 address (from `spec.bgp.ipv4Address`).
    pub nodes: BTreeMap<String, Ipv4Addr>,
    pub blocks: Vec<Block>,
    /// Values that did not parse (each was logged with its key).
    pub malformed: usize,
}

/// Why a value was skipped.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON or fields: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{field}: {value:?} is not {expected}")]
    Field {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}

#[derive(Deserialize)]
struct Resource<S> {
    #[serde(default)]
    metadata: Metadata,
    spec: S,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadEndpointSpec {
    node: String,
    interface_name: String,
    #[serde(default)]
    ip_networks: Vec<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    orchestrator: String,
    #[serde(default)]
    pod: String,
    #[serde(default)]
    endpoint: String,
}

#[derive(Deserialize)]
struct NodeMetadata {
    name: String,
}

#[derive(Deserialize)]
struct NodeResource {
    metadata: NodeMetadata,
    #[serde(default)]
    spec: NodeSpec,
}

#[derive(Default, Deserialize)]
struct NodeSpec {
    #[serde(default)]
    bgp: Option<NodeBgp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeBgp {
    #[serde(default)]
    ipv4_address: Option<String>,
}

#[derive(Deserialize)]
struct BlockValue {
    cidr: String,
    #[serde(default)]
    affinity: Option<String>,
    #[serde(default)]
    deleted: bool,
}

/// Parses a WorkloadEndpoint value.
pub fn parse_workload(key: &str, value: &[u8]) -> Result<Workload, ParseError> {
    let resource: Resource<WorkloadEndpointSpec> = serde_json::from_slice(value)?;
    let metadata = resource.metadata;
    let spec = resource.spec;
    let first = spec.ip_networks.first().ok_or(ParseError::Field {
        field: "spec.ipNetworks",
        value: "[]".into(),
        expected: "a list with an IPv4 /32",
    })?;
    let net: Ipv4Net = first.parse().map_err(|_| ParseError::Field {
        field: "spec.ipNetworks",
        value: first.clone(),
        expected: "an IPv4 CIDR",
    })?;
    let mac = match spec.mac.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_mac(text).ok_or(ParseError::Field {
            field: "spec.mac",
            value: text.into(),
            expected: "a MAC address",
        })?),
    };
    if spec.interface_name.is_empty() || spec.interface_name.len() > 15 {
        return Err(ParseError::Field {
            field: "spec.interfaceName",
            value: spec.interface_name,
            expected: "an interface name of 1 to 15 bytes",
        });
    }
    let pod = if spec.pod.is_empty() {
        metadata.name
    } else {
        spec.pod
    };
    Ok(Workload {
        key: key.into(),
        node: spec.node,
        interface: spec.interface_name,
        ip: net.addr(),
        mac,
        orchestrator: if spec.orchestrator.is_empty() {
            "k8s".into()
        } else {
            spec.orchestrator
        },
        workload: format!("{}/{pod}", metadata.namespace),
        endpoint: if spec.endpoint.is_empty() {
            "eth0".into()
        } else {
            spec.endpoint
        },
    })
}

/// Parses a Node value into its name and IPv4 address, if it has one.
pub fn parse_node(value: &[u8]) -> Result<(String, Option<Ipv4Addr>), ParseError> {
    let node: NodeResource = serde_json::from_slice(value)?;
    let address = match node.spec.bgp.and_then(|bgp| bgp.ipv4_address) {
        None => None,
        Some(text) => Some(
            text.parse::<Ipv4Net>()
                .map(|net| net.addr())
                .or_else(|_| text.parse::<Ipv4Addr>())
                .map_err(|_| ParseError::Field {
                    field: "spec.bgp.ipv4Address",
                    value: text.clone(),
                    expected: "an IPv4 address or CIDR",
                })?,
        ),
    };
    Ok((node.metadata.name, address))
}

/// Parses an IPAM block value; `None` for a block marked deleted.
pub fn parse_block(value: &[u8]) -> Result<Option<Block>, ParseError> {
    let block: BlockValue = serde_json::from_slice(value)?;
    if block.deleted {
        return Ok(None);
    }
    let cidr: Ipv4Net = block.cidr.parse().map_err(|_| ParseError::Field {
        field: "cidr",
        value: block.cidr.clone(),
        expected: "an IPv4 CIDR",
    })?;
    let host = block
        .affinity
        .as_deref()
        .and_then(|affinity| affinity.strip_prefix("host:"))
        .map(str::to_owned);
    Ok(Some(Block { cidr, host }))
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Whether `key` holds a resource kind the policy calculation reads.
fn is_policy_key(key: &str) -> bool {
    use crate::model::Kind;
    crate::model::parse_key(key).is_some_and(|(kind, _, _)| {
        matches!(
            kind,
            Kind::WorkloadEndpoint
                | Kind::NetworkPolicy
                | Kind::GlobalNetworkPolicy
                | Kind::Profile
                | Kind::Tier
                | Kind::GlobalNetworkSet
                | Kind::HostEndpoint
        )
    })
}

impl Snapshot {
    /// Builds a snapshot from (key, value) pairs under [`CALICO_PREFIX`], skipping (and
    /// logging, with the key) values that do not parse.
    pub fn from_kvs<'a>(kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut snapshot = Snapshot::default();
        for (key, value) in kvs {
            let result = if key.starts_with(WORKLOAD_ENDPOINTS) {
                parse_workload(key, value).map(|w| snapshot.workloads.push(w))
            } else if key.starts_with(NODES) {
                parse_node(value).map(|(name, address)| {
                    if let Some(address) = address {
                        snapshot.nodes.insert(name, address);
                    }
                })
            } else if key.starts_with(IPAM_BLOCKS) {
                parse_block(value).map(|block| snapshot.blocks.extend(block))
            } else {
                Ok(())
            };
            if result.is_ok() && is_policy_key(key) {
                match crate::model::Resource::from_etcd(key, value) {
                    Ok(resource) => snapshot.policy_resources.push((key.to_string(), resource)),
                    Err(error) => {
                        warn!(%key, %error, "skipping malformed datastore value");
                        snapshot.malformed += 1;
                    }
                }
            }
            if let Err(error) = result {
                warn!(%key, %error, "skipping malformed datastore value");
                snapshot.malformed += 1;
            }
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEP: &str = r#"{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint",
        "metadata":{"name":"h1-k8s-p1-eth0","namespace":"default"},
        "spec":{"orchestrator":"k8s","node":"h1","pod":"p1","endpoint":"eth0",
                "ipNetworks":["192.168.2.1/32"],"interfaceName":"cali0123456789a",
                "mac":"02:00:00:00:00:01","profiles":["kns.default"]}}"#;

    #[test]
    fn workload_endpoint_parses() {
        let w = parse_workload("k", WEP.as_bytes()).unwrap();
        assert_eq!(w.node, "h1");
        assert_eq!(w.interface, "cali0123456789a");
        assert_eq!(w.ip, Ipv4Addr::new(192, 168, 2, 1));
        assert_eq!(w.mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            (
                w.orchestrator.as_str(),
                w.workload.as_str(),
                w.endpoint.as_str()
            ),
            ("k8s", "default/p1", "eth0")
        );
    }

    #[test]
    fn node_and_block_parse() {
        let node = br#"{"kind":"Node","metadata":{"name":"h2"},"spec":{"bgp":{"ipv4Address":"10.0.0.2/24"}}}"#;
        assert_eq!(
            parse_node(node).unwrap(),
            ("h2".into(), Some(Ipv4Addr::new(10, 0, 0, 2)))
        );
        let block = br#"{"cidr":"192.168.3.0/26","affinity":"host:h2","allocations":[],"unallocated":[],"attributes":[],"deleted":false}"#;
        assert_eq!(
            parse_block(block).unwrap(),
            Some(Block {
                cidr: "192.168.3.0/26".parse().unwrap(),
                host: Some("h2".into())
            })
        );
        let deleted = br#"{"cidr":"192.168.3.0/26","deleted":true}"#;
        assert_eq!(parse_block(deleted).unwrap(), None);
    }

    #[test]
    fn malformed_values_are_counted_and_skipped_and_the_rest_applies() {
        let good_node =
            br#"{"metadata":{"name":"h1"},"spec":{"bgp":{"ipv4Address":"10.0.0.1/24"}}}"#;
        let kvs: Vec<(&str, &[u8])> = vec![
            (
                "/calico/resources/v3/projectcalico.org/workloadendpoints/default/a",
                b"{not json",
            ),
            (
                "/calico/resources/v3/projectcalico.org/workloadendpoints/default/b",
                WEP.as_bytes(),
            ),
            ("/calico/resources/v3/projectcalico.org/nodes/h1", good_node),
            (
                "/calico/resources/v3/projectcalico.org/nodes/h9",
                br#"{"metadata":{"name":"h9"},"spec":{"bgp":{"ipv4Address":"ten"}}}"#,
            ),
            (
                "/calico/ipam/v2/assignment/ipv4/block/x",
                br#"{"cidr":"300.0.0.0/26"}"#,
            ),
            (
                "/calico/ipam/v2/assignment/ipv4/block/192.168.2.0-26",
                br#"{"cidr":"192.168.2.0/26","affinity":"host:h1"}"#,
            ),
            (
                "/calico/resources/v3/projectcalico.org/profiles/kns.default",
                b"not a profile",
            ),
        ];
        let snapshot = Snapshot::from_kvs(kvs);
        assert_eq!(snapshot.malformed, 4);
        assert_eq!(snapshot.policy_resources.len(), 1, "the good workload endpoint");
        assert_eq!(snapshot.workloads.len(), 1);
        assert_eq!(snapshot.nodes.len(), 1);
        assert_eq!(snapshot.blocks.len(), 1);
    }

    #[test]
    fn bad_fields_name_the_field() {
        let bad_mac = WEP.replace("02:00:00:00:00:01", "zz");
        let err = parse_workload("k", bad_mac.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.mac"), "{err}");
        let bad_ip = WEP.replace("192.168.2.1/32", "nope");
        let err = parse_workload("k", bad_ip.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.ipNetworks"), "{err}");
    }
}
