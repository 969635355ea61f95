//! What BIRD's configuration depends on, read out of felix's parsed cache ([`Store`]): every
//! Node's BGP fields and labels, the IPv4 IP pools, the `default` and `node.<name>`
//! BGPConfigurations, every BGPPeer and this node's block affinities.
//!
//! Reading is lenient: a BGP resource that does not read is left out and its error kept in
//! [`Inputs::skipped`], so the rendered file says why it is missing.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use calico::{
    model::{EncapMode, Kind, Resource},
    store::{EntryKind, Store},
};
use ipnet::{IpNet, Ipv4Net};

use crate::bgp::{BgpConfigurationSpec, BgpPeer, DEFAULT_CONFIG};

/// A node as far as BGP cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.bgp.ipv4Address`, with the prefix length of its subnet.
    pub ipv4: Option<Ipv4Net>,
    /// `spec.bgp.asNumber`.
    pub as_number: Option<u32>,
    /// `spec.bgp.routeReflectorClusterID`: set on route reflectors.
    pub rr_cluster_id: Option<Ipv4Addr>,
}

/// An IPv4 IP pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    pub cidr: Ipv4Net,
    pub block_size: u8,
    pub ipip: EncapMode,
    pub vxlan: EncapMode,
    pub disabled: bool,
    pub disable_bgp_export: bool,
}

/// One of this node's block affinities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinityInfo {
    pub cidr: Ipv4Net,
    /// `confirmed`, `pending` or `pendingDeletion` (empty: confirmed, as Calico reads it).
    pub state: String,
    pub deleted: bool,
}

/// Everything the configuration of `node` is rendered from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    /// The node bird-conf runs for.
    pub node: String,
    /// Every node, by name.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// IPv4 pools, in key order.
    pub pools: Vec<PoolInfo>,
    /// The `default` BGPConfiguration.
    pub cluster_config: BgpConfigurationSpec,
    /// The `node.<node>` BGPConfiguration.
    pub node_config: BgpConfigurationSpec,
    /// Every BGPPeer that reads, in name order.
    pub peers: Vec<BgpPeer>,
    /// This node's block affinities, in CIDR order.
    pub affinities: Vec<AffinityInfo>,
    /// Resources left out, with why.
    pub skipped: Vec<String>,
}

impl Inputs {
    /// Whether an entry of `kind` can change the configuration.
    pub fn depends_on(kind: EntryKind) -> bool {
        matches!(
            kind,
            EntryKind::BlockAffinity
                | EntryKind::Resource(
                    Kind::Node | Kind::IpPool | Kind::BgpConfiguration | Kind::BgpPeer
                )
        )
    }

    /// Reads the inputs of `node` from the cache.
    pub fn from_store(store: &Store, node: &str) -> Self {
        let mut inputs = Inputs {
            node: node.to_string(),
            ..Default::default()
        };
        for (_, object) in store.nodes() {
            let bgp = object.spec.bgp.as_ref();
            let ipv4 = bgp.and_then(|b| b.ipv4_address).and_then(|c| match c.0 {
                IpNet::V4(net) => Some(net),
                IpNet::V6(_) => None,
            });
            let info = NodeInfo {
                name: object.metadata.name.clone(),
                labels: object.metadata.labels.clone(),
                ipv4,
                as_number: bgp.and_then(|b| b.as_number).map(|a| a.0),
                rr_cluster_id: bgp.and_then(|b| b.route_reflector_cluster_id),
            };
            inputs.nodes.insert(info.name.clone(), info);
        }
        let node_config_name = format!("node.{node}");
        for (_, resource) in store.resources(Kind::IpPool) {
            if let Resource::IpPool(pool) = resource
                && let IpNet::V4(cidr) = pool.spec.cidr.network()
            {
                inputs.pools.push(PoolInfo {
                    name: pool.metadata.name.clone(),
                    cidr,
                    block_size: pool.spec.block_size(),
                    ipip: pool.spec.ipip(),
                    vxlan: pool.spec.vxlan(),
                    disabled: pool.spec.disabled,
                    disable_bgp_export: pool.spec.disable_bgp_export,
                });
            }
        }
        for (_, resource) in store.resources(Kind::BgpConfiguration) {
            let Resource::BgpConfiguration(object) = resource else {
                continue;
            };
            let name = object.metadata.name.as_str();
            let slot = if name == DEFAULT_CONFIG {
                &mut inputs.cluster_config
            } else if name == node_config_name {
                &mut inputs.node_config
            } else {
                continue;
            };
            match BgpConfigurationSpec::from_value(name, &object.spec) {
                Ok(config) => *slot = config,
                Err(e) => inputs.skipped.push(e.to_string()),
            }
        }
        for (_, resource) in store.resources(Kind::BgpPeer) {
            let Resource::BgpPeer(object) = resource else {
                continue;
            };
            match BgpPeer::from_value(&object.metadata.name, &object.spec) {
                Ok(peer) => inputs.peers.push(peer),
                Err(e) => inputs.skipped.push(e.to_string()),
            }
        }
        for (_, affinity) in store.affinities() {
            if affinity.node == node {
                inputs.affinities.push(AffinityInfo {
                    cidr: affinity.cidr,
                    state: affinity.state.clone(),
                    deleted: affinity.deleted,
                });
            }
        }
        inputs.affinities.sort_by_key(|a| a.cidr);
        inputs
    }

    /// This node.
    pub fn this_node(&self) -> Option<&NodeInfo> {
        self.nodes.get(&self.node)
    }

    /// The node whose BGP address is `ip`.
    pub fn node_at(&self, ip: IpAddr) -> Option<&NodeInfo> {
        self.nodes
            .values()
            .find(|n| n.ipv4.is_some_and(|net| IpAddr::V4(net.addr()) == ip))
    }

    /// The cluster's AS number: the `default` BGPConfiguration's, or Calico's 64512.
    pub fn cluster_as(&self) -> u32 {
        self.cluster_config
            .as_number
            .map_or(crate::bgp::DEFAULT_AS, |a| a.0)
    }

    /// The AS number of `node`: its own, or the cluster's.
    pub fn as_of(&self, node: &NodeInfo) -> u32 {
        node.as_number.unwrap_or_else(|| self.cluster_as())
    }

    /// Whether the node-to-node mesh is on (Calico's default: on).
    pub fn mesh_enabled(&self) -> bool {
        self.cluster_config.node_to_node_mesh_enabled != Some(false)
    }
}
