//! What the dataplane maps should hold, computed from the datastore's forwarding view
//! ([`Topology`]) and the host's links. Pure, so it is tested without a kernel. A remote block's
//! route says whether it is reached through IPIP or natively ([`crate::calc::topology::encap`]).

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use felix_common::{EndpointInfo, RouteKind, RouteValue, endpoints::endpoint_flags};
use ipnet::Ipv4Net;

use crate::calc::topology::{Topology, encap};

/// The desired contents of the endpoints and routes maps, and this host's address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub host_ip: Option<Ipv4Addr>,
    pub endpoints: BTreeMap<u32, EndpointInfo>,
    /// The workload endpoint key behind each of [`Desired::endpoints`].
    pub endpoint_keys: BTreeMap<u32, String>,
    pub routes: BTreeMap<Ipv4Net, RouteValue>,
}

/// Computes the maps for `node`. `links` maps interface names to ifindexes; a workload whose
/// interface is not there yet gets no entries (they appear when the interface does).
pub fn compute(node: &str, topology: &Topology, links: &HashMap<String, u32>) -> Desired {
    let mut desired = Desired {
        host_ip: topology.nodes.get(node).copied(),
        ..Desired::default()
    };
    for (name, address) in &topology.nodes {
        let kind = if name == node {
            RouteKind::LocalHost
        } else {
            RouteKind::RemoteHost
        };
        desired
            .routes
            .insert(Ipv4Net::from(*address), RouteValue::new(kind, 0, [0; 4]));
    }
    for block in &topology.blocks {
        let Some(host) = &block.host else { continue };
        let route = if host == node {
            RouteValue::new(RouteKind::LocalBlock, 0, [0; 4])
        } else if let Some(owner) = topology.nodes.get(host) {
            let mode = encap::pool_mode(&topology.pools, block.cidr);
            let native = encap::is_native(mode, topology.local_subnet, *owner);
            RouteValue::remote_block(owner.octets(), mode, native)
        } else {
            continue;
        };
        desired.routes.insert(block.cidr, route);
    }
    for workload in topology.workloads.iter().filter(|w| w.node == node) {
        let Some(ifindex) = links.get(&workload.interface).copied() else {
            continue;
        };
        desired.endpoints.insert(
            ifindex,
            EndpointInfo {
                ip: workload.ip.octets(),
                mac: workload.mac.unwrap_or_default(),
                flags: if workload.mac.is_some() {
                    endpoint_flags::MAC_KNOWN
                } else {
                    0
                },
                // Filled in by the policy engine.
                policy_slots: [felix_common::policy::NO_SLOT; 2],
            },
        );
        desired.endpoint_keys.insert(ifindex, workload.key.clone());
        desired.routes.insert(
            Ipv4Net::from(workload.ip),
            RouteValue::new(RouteKind::LocalWorkload, ifindex, [0; 4]),
        );
    }
    desired
}

#[cfg(test)]
mod tests {
    use felix_common::routes::PoolIpipMode;

    use calico::model::{EncapMode, workload_endpoint::EndpointId};

    use super::*;
    use crate::calc::topology::{Block, Workload, encap::Pool};

    fn topology() -> Topology {
        Topology {
            workloads: vec![
                Workload {
                    key: "a".into(),
                    node: "h1".into(),
                    interface: "cali1".into(),
                    ip: Ipv4Addr::new(192, 168, 2, 1),
                    mac: Some([2, 0, 0, 0, 0, 1]),
                    created: 1,
                    id: EndpointId {
                        orchestrator: "k8s".into(),
                        workload: "default/a".into(),
                        endpoint: "eth0".into(),
                    },
                },
                Workload {
                    key: "b".into(),
                    node: "h1".into(),
                    interface: "cali-missing".into(),
                    ip: Ipv4Addr::new(192, 168, 2, 2),
                    mac: None,
                    created: 1,
                    id: EndpointId {
                        orchestrator: "k8s".into(),
                        workload: "default/b".into(),
                        endpoint: "eth0".into(),
                    },
                },
                Workload {
                    key: "c".into(),
                    node: "h2".into(),
                    interface: "cali3".into(),
                    ip: Ipv4Addr::new(192, 168, 3, 1),
                    mac: None,
                    created: 1,
                    id: EndpointId {
                        orchestrator: "k8s".into(),
                        workload: "default/c".into(),
                        endpoint: "eth0".into(),
                    },
                },
            ],
            nodes: BTreeMap::from([
                ("h1".into(), Ipv4Addr::new(10, 0, 0, 1)),
                ("h2".into(), Ipv4Addr::new(10, 0, 0, 2)),
            ]),
            blocks: vec![
                Block {
                    cidr: "192.168.2.0/26".parse().unwrap(),
                    host: Some("h1".into()),
                },
                Block {
                    cidr: "192.168.3.0/26".parse().unwrap(),
                    host: Some("h2".into()),
                },
                Block {
                    cidr: "192.168.4.0/26".parse().unwrap(),
                    host: Some("gone".into()),
                },
            ],
            local_subnet: Some("10.0.0.1/24".parse().unwrap()),
            conflicts: Vec::new(),
            pools: vec![Pool {
                cidr: "192.168.0.0/16".parse().unwrap(),
                mode: EncapMode::Always,
                nat_outgoing: false,
            }],
        }
    }

    /// h2's block (owned by 10.0.0.2) and h3's (10.0.1.3, another subnet) as h1 routes them.
    fn remote_routes(pool_mode: Option<EncapMode>) -> (RouteValue, RouteValue) {
        let mut view = topology();
        view.nodes.insert("h3".into(), Ipv4Addr::new(10, 0, 1, 3));
        view.blocks.push(Block {
            cidr: "192.168.5.0/26".parse().unwrap(),
            host: Some("h3".into()),
        });
        view.pools = pool_mode
            .map(|mode| Pool {
                cidr: "192.168.0.0/16".parse().unwrap(),
                mode,
                nat_outgoing: false,
            })
            .into_iter()
            .collect();
        let desired = compute("h1", &view, &HashMap::new());
        let route = |cidr: &str| desired.routes[&cidr.parse::<Ipv4Net>().unwrap()];
        (route("192.168.3.0/26"), route("192.168.5.0/26"))
    }

    #[test]
    fn remote_blocks_follow_the_pool_ipip_mode() {
        let (h2, h3) = ([10, 0, 0, 2], [10, 0, 1, 3]);
        let cases = [
            (Some(EncapMode::Always), PoolIpipMode::Always, false, false),
            (Some(EncapMode::Never), PoolIpipMode::Never, true, true),
            (
                Some(EncapMode::CrossSubnet),
                PoolIpipMode::CrossSubnet,
                true,
                false,
            ),
            (None, PoolIpipMode::NoPool, true, true),
        ];
        for (pool, mode, near_native, far_native) in cases {
            let (near, far) = remote_routes(pool);
            assert_eq!(
                near,
                RouteValue::remote_block(h2, mode, near_native),
                "{pool:?}: same subnet"
            );
            assert_eq!(
                far,
                RouteValue::remote_block(h3, mode, far_native),
                "{pool:?}: other subnet"
            );
        }
    }

    #[test]
    fn routes_and_endpoints_for_one_node() {
        let links = HashMap::from([("cali1".to_owned(), 7), ("cali3".to_owned(), 9)]);
        let desired = compute("h1", &topology(), &links);
        assert_eq!(desired.host_ip, Some(Ipv4Addr::new(10, 0, 0, 1)));
        let route = |cidr: &str| {
            desired
                .routes
                .get(&cidr.parse::<Ipv4Net>().unwrap())
                .copied()
        };
        assert_eq!(
            route("10.0.0.1/32"),
            Some(RouteValue::new(RouteKind::LocalHost, 0, [0; 4]))
        );
        assert_eq!(
            route("10.0.0.2/32"),
            Some(RouteValue::new(RouteKind::RemoteHost, 0, [0; 4]))
        );
        assert_eq!(
            route("192.168.2.0/26"),
            Some(RouteValue::new(RouteKind::LocalBlock, 0, [0; 4]))
        );
        assert_eq!(
            route("192.168.3.0/26"),
            Some(RouteValue::new(RouteKind::RemoteBlock, 0, [10, 0, 0, 2]))
        );
        assert_eq!(
            route("192.168.4.0/26"),
            None,
            "a block of an unknown host has no next hop"
        );
        assert_eq!(
            route("192.168.2.1/32"),
            Some(RouteValue::new(RouteKind::LocalWorkload, 7, [0; 4]))
        );
        assert_eq!(
            route("192.168.2.2/32"),
            None,
            "its interface does not exist yet"
        );
        assert_eq!(route("192.168.3.1/32"), None, "another node's pod");
        assert_eq!(desired.endpoints.len(), 1);
        let ep = desired.endpoints[&7];
        assert_eq!(ep.ip, [192, 168, 2, 1]);
        assert_eq!(ep.flags, endpoint_flags::MAC_KNOWN);
    }
}
