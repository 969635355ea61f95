//! What forwarding needs from the datastore cache, derived from its typed entries: this node's
//! workloads (interface, address, MAC, status id), every node's IPv4 address, this node's subnet,
//! the host each live IPAM block is affine to, and the IPv4 pools with their encapsulation and
//! `natOutgoing`. Endpoints that name an interface another one holds are left out and listed
//! as conflicts ([`conflicts`]).

pub mod conflicts;
pub mod encap;

use std::{collections::BTreeMap, net::Ipv4Addr};

use calico::model::workload_endpoint::EndpointId;
use calico::{
    model::{Object, WorkloadEndpointSpec, values::parse_mac},
    store::Store,
};
use ipnet::{IpNet, Ipv4Net};

use self::{conflicts::Conflict, encap::Pool};

/// A local workload endpoint, as far as forwarding cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The etcd key it came from.
    pub key: String,
    pub node: String,
    pub interface: String,
    /// Its first IPv4 address.
    pub ip: Ipv4Addr,
    /// Its MAC, when given.
    pub mac: Option<[u8; 6]>,
    /// The etcd revision that created it (which endpoint holds a shared interface).
    pub created: i64,
    /// How its status is reported.
    pub id: EndpointId,
}

/// An IPAM block and the host it is affine to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub cidr: Ipv4Net,
    /// From `affinity: "host:<node>"`, when set.
    pub host: Option<String>,
}

/// The forwarding view of the datastore for one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// This node's workloads that have an interface and an IPv4 address and hold it.
    pub workloads: Vec<Workload>,
    /// This node's workloads that name an interface another one holds.
    pub conflicts: Vec<Conflict>,
    /// Node name -> its IPv4 address (`spec.bgp.ipv4Address`).
    pub nodes: BTreeMap<String, Ipv4Addr>,
    /// Blocks not marked deleted.
    pub blocks: Vec<Block>,
    /// This node's `spec.bgp.ipv4Address` with its prefix (`CrossSubnet` compares with it).
    pub local_subnet: Option<Ipv4Net>,
    /// IPv4 pools, the encapsulation each asks for and whether it masquerades outgoing traffic.
    pub pools: Vec<Pool>,
}

impl Topology {
    /// Derives the view of `node` from the cache.
    pub fn from_store(store: &Store, node: &str) -> Self {
        let (workloads, conflicts) = conflicts::resolve(
            store
                .workload_endpoints()
                .filter(|(_, wep)| wep.spec.node == node)
                .filter_map(|(key, wep)| {
                    let created = store.created_revision(key).unwrap_or_default();
                    workload(key, wep, created)
                })
                .collect(),
        );
        Topology {
            workloads,
            conflicts,
            nodes: store
                .nodes()
                .filter_map(|(_, n)| Some((n.metadata.name.clone(), n.spec.ipv4()?)))
                .collect(),
            blocks: store
                .blocks()
                .filter(|(_, block)| !block.deleted)
                .map(|(_, block)| Block {
                    cidr: block.cidr,
                    host: block.host().map(str::to_owned),
                })
                .collect(),
            local_subnet: store
                .nodes()
                .find(|(_, n)| n.metadata.name == node)
                .and_then(|(_, n)| match n.spec.bgp.as_ref()?.ipv4_address?.0 {
                    IpNet::V4(net) => Some(net),
                    IpNet::V6(_) => None,
                }),
            pools: store
                .ip_pools()
                .filter_map(|(_, pool)| match pool.spec.cidr.0 {
                    IpNet::V4(cidr) => Some(Pool {
                        cidr,
                        mode: encap::effective_mode(&pool.spec),
                        nat_outgoing: pool.spec.nat_outgoing,
                    }),
                    IpNet::V6(_) => None,
                })
                .collect(),
        }
    }
}

/// The forwarding view of a WorkloadEndpoint created at etcd revision `created`; `None`
/// without an interface or an IPv4 address. Calico's defaults fill the status id: orchestrator
/// `k8s`, the endpoint's name for the pod, endpoint `eth0`.
pub fn workload(key: &str, wep: &Object<WorkloadEndpointSpec>, created: i64) -> Option<Workload> {
    let spec = &wep.spec;
    if spec.interface_name.is_empty() {
        return None;
    }
    let ip = spec.ip_networks.iter().find_map(|net| match net.0 {
        IpNet::V4(v4) => Some(v4.addr()),
        IpNet::V6(_) => None,
    })?;
    let or = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_owned()
        } else {
            value.to_owned()
        }
    };
    let namespace = wep.metadata.namespace.as_deref().unwrap_or_default();
    Some(Workload {
        key: key.to_owned(),
        node: spec.node.clone(),
        interface: spec.interface_name.clone(),
        ip,
        mac: parse_mac(&spec.mac),
        created,
        id: EndpointId {
            orchestrator: or(&spec.orchestrator, "k8s"),
            workload: format!("{namespace}/{}", or(&spec.pod, &wep.metadata.name)),
            endpoint: or(&spec.endpoint, "eth0"),
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use calico::datastore::{KeyValue, Update};

    fn kv(key: &str, value: serde_json::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_string().into_bytes(),
            revision: 1,
            created: 1,
        }
    }

    fn wep(name: &str, node: &str, spec: serde_json::Value) -> KeyValue {
        let mut full = json!({"node": node, "interfaceName": format!("cali-{name}")});
        if let (Some(full), Some(spec)) = (full.as_object_mut(), spec.as_object()) {
            full.extend(spec.clone());
        }
        kv(
            &format!("/calico/resources/v3/projectcalico.org/workloadendpoints/ns/{name}"),
            json!({"kind": "WorkloadEndpoint",
                   "metadata": {"name": name, "namespace": "ns"}, "spec": full}),
        )
    }

    #[test]
    fn a_second_endpoint_on_a_held_interface_is_a_conflict() {
        let pod = KeyValue {
            created: 5,
            ..wep("pod", "h1", json!({"ipNetworks": ["192.168.2.1/32"]}))
        };
        // Sorts first, names the pod's interface, written later.
        let intruder = KeyValue {
            created: 9,
            ..wep(
                "a",
                "h1",
                json!({"ipNetworks": ["192.168.2.9/32"], "interfaceName": "cali-pod"}),
            )
        };
        let mut store = Store::new();
        store.apply(Update::Snapshot {
            revision: 9,
            kvs: vec![intruder.clone(), pod.clone()],
        });
        let view = Topology::from_store(&store, "h1");
        let held: Vec<(&str, Ipv4Addr)> = view
            .workloads
            .iter()
            .map(|w| (w.key.as_str(), w.ip))
            .collect();
        assert_eq!(
            held,
            vec![(pod.key.as_str(), Ipv4Addr::new(192, 168, 2, 1))]
        );
        assert_eq!(view.conflicts.len(), 1);
        assert_eq!(view.conflicts[0].loser.key, intruder.key);
        assert_eq!(view.conflicts[0].holder, pod.key);
        // The pod's endpoint goes: the waiting one takes the interface over.
        store.apply(Update::Snapshot {
            revision: 10,
            kvs: vec![intruder.clone()],
        });
        let view = Topology::from_store(&store, "h1");
        assert_eq!(view.workloads.len(), 1);
        assert_eq!(view.workloads[0].key, intruder.key);
        assert!(view.conflicts.is_empty());
    }

    #[test]
    fn the_view_of_one_node() {
        let mut store = Store::new();
        store.apply(Update::Snapshot {
            revision: 1,
            kvs: vec![
                wep(
                    "a",
                    "h1",
                    json!({"ipNetworks": ["fd00::1/128", "192.168.2.1/32"], "mac": "02-00-00-00-00-0a",
                           "orchestrator": "cni", "pod": "pod-a", "endpoint": "net1"}),
                ),
                wep("b", "h1", json!({"ipNetworks": ["192.168.2.2/32"]})),
                wep("v6only", "h1", json!({"ipNetworks": ["fd00::2/128"]})),
                wep("noiface", "h1", json!({"ipNetworks": ["192.168.2.3/32"], "interfaceName": ""})),
                wep("remote", "h2", json!({"ipNetworks": ["192.168.3.1/32"]})),
                kv(
                    "/calico/resources/v3/projectcalico.org/nodes/h1",
                    json!({"kind": "Node", "metadata": {"name": "h1"},
                           "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}}),
                ),
                kv(
                    "/calico/resources/v3/projectcalico.org/ippools/p4",
                    json!({"kind": "IPPool", "metadata": {"name": "p4"},
                           "spec": {"cidr": "192.168.0.0/16", "ipipMode": "CrossSubnet",
                                    "natOutgoing": true}}),
                ),
                kv(
                    "/calico/resources/v3/projectcalico.org/ippools/p6",
                    json!({"kind": "IPPool", "metadata": {"name": "p6"},
                           "spec": {"cidr": "fd00:1::/48"}}),
                ),
                kv(
                    "/calico/resources/v3/projectcalico.org/nodes/h3",
                    json!({"kind": "Node", "metadata": {"name": "h3"}}),
                ),
                kv(
                    "/calico/ipam/v2/assignment/ipv4/block/192.168.2.0-31",
                    json!({"cidr": "192.168.2.0/31", "affinity": "host:h1",
                           "allocations": [null, null], "unallocated": [0, 1], "attributes": []}),
                ),
                kv(
                    "/calico/ipam/v2/assignment/ipv4/block/192.168.4.0-31",
                    json!({"cidr": "192.168.4.0/31", "deleted": true,
                           "allocations": [null, null], "unallocated": [0, 1], "attributes": []}),
                ),
            ],
        });
        let view = Topology::from_store(&store, "h1");
        let names: Vec<&str> = view
            .workloads
            .iter()
            .map(|w| w.interface.as_str())
            .collect();
        assert_eq!(names, vec!["cali-a", "cali-b"]);
        let a = &view.workloads[0];
        assert_eq!(a.ip, Ipv4Addr::new(192, 168, 2, 1));
        assert_eq!(a.mac, Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(
            (
                a.id.orchestrator.as_str(),
                a.id.workload.as_str(),
                a.id.endpoint.as_str()
            ),
            ("cni", "ns/pod-a", "net1")
        );
        let b = &view.workloads[1];
        assert_eq!(b.mac, None);
        assert_eq!(
            (
                b.id.orchestrator.as_str(),
                b.id.workload.as_str(),
                b.id.endpoint.as_str()
            ),
            ("k8s", "ns/b", "eth0")
        );
        assert_eq!(
            view.nodes,
            BTreeMap::from([("h1".to_owned(), Ipv4Addr::new(10, 0, 0, 1))])
        );
        assert_eq!(view.local_subnet, Some("10.0.0.1/24".parse().unwrap()));
        assert_eq!(
            view.pools,
            vec![Pool {
                cidr: "192.168.0.0/16".parse().unwrap(),
                mode: calico::model::EncapMode::CrossSubnet,
                nat_outgoing: true,
            }],
            "IPv4 pools only"
        );
        assert_eq!(
            view.blocks,
            vec![Block {
                cidr: "192.168.2.0/31".parse().unwrap(),
                host: Some("h1".into())
            }]
        );
    }
}
