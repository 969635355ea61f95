//! The cluster `bench control-plane` writes to etcd, generated from a [`Scale`]: Calico's v3
//! resources and IPAM entries as (etcd key, JSON value) pairs, in Calico's key layout. Pure.
//!
//! Shape (k8s-like, as Calico's Kubernetes integration would store it in etcd mode):
//! - namespaces `ns-NNN` of 100 pods each: 10 apps (`app: appJ`) of 10 pods; within an app,
//!   pods 0-2 are `role: frontend`, 3-8 `backend`, 9 `db`. Each namespace has Calico's
//!   namespace profile `kns.ns-NNN` (allow all) whose `labelsToApply` give the namespace's
//!   name and its team (`team: team-T`, 10 namespaces per team).
//! - policy `k`: a NetworkPolicy in namespace `k % namespaces` selecting app
//!   `(k / namespaces) % 10` (order 1000, tier default, Ingress and Egress), with k8s-like
//!   allow rules:
//!   ingress: TCP 8080, 8443 from `role == 'frontend'` (the namespace's frontends, 30 pods);
//!   TCP 9090 from `namespaceSelector: team == 'team-T'` (every pod of the team's namespaces,
//!   1,000 pods); ICMP from the node network 10.99.0.0/16;
//!   egress: UDP 53 to the cluster DNS address 10.96.0.10/32; TCP 5432 to `role == 'db'`
//!   (10 pods); TCP 8080 to the next app (`app == 'app(J+1)'`, 10 pods).
//! - nodes of 100 pods, each with the IPAM blocks (/26 of 192.168.0.0/16), affinities and
//!   handles its pods' addresses come from; node `node-000` is the bench's own felix, with
//!   [`LOCAL_PODS`] pods spread over the namespaces (every pod index that is a multiple of
//!   `endpoints / 20`): each is app 0 or 5 of its namespace and selected by that app's policy.

use std::net::Ipv4Addr;

use anyhow::{Result, ensure};
use calico::ipam::{self, Attribute, Block};
use ipnet::Ipv4Net;
use serde_json::{Value, json};

/// Prefix of Calico's v3 resource keys.
pub const RESOURCES: &str = "/calico/resources/v3/projectcalico.org";
pub const PODS_PER_NAMESPACE: usize = 100;
pub const APPS_PER_NAMESPACE: usize = 10;
pub const PODS_PER_APP: usize = PODS_PER_NAMESPACE / APPS_PER_NAMESPACE;
pub const NAMESPACES_PER_TEAM: usize = 10;
pub const PODS_PER_NODE: usize = 100;
/// Pods on the bench's own node, each behind a real `cali*` interface.
pub const LOCAL_PODS: usize = 20;
/// The bench's felix (node 0).
pub const LOCAL_NODE: usize = 0;
/// Ports of the frontend rule (ingress rule 0), before any change.
pub const FRONTEND_PORTS: [u16; 2] = [8080, 8443];
/// The port a policy change `i` adds to ingress rule 0: `CHANGED_PORT_BASE + i`.
pub const CHANGED_PORT_BASE: u16 = 20_000;
/// The hosts' network: the bench host's uplink and every Node's address.
pub const NODE_NET: &str = "10.99.0.0/16";
const POOL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 0);
const POOL_PREFIX: u8 = 16;
const BLOCK_PREFIX: u8 = 26;
const BLOCK_SIZE: usize = 1 << (32 - BLOCK_PREFIX);
const BLOCKS_PER_NODE: usize = PODS_PER_NODE.div_ceil(BLOCK_SIZE);

/// How much is in etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    pub endpoints: usize,
    pub policies: usize,
}

impl Scale {
    pub fn namespaces(&self) -> usize {
        self.endpoints / PODS_PER_NAMESPACE
    }

    /// Nodes, the bench's included.
    pub fn nodes(&self) -> usize {
        1 + (self.endpoints - LOCAL_PODS).div_ceil(PODS_PER_NODE)
    }
}

/// A pod's role label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Frontend,
    Backend,
    Db,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Frontend => "frontend",
            Role::Backend => "backend",
            Role::Db => "db",
        }
    }

    /// The role of the pod at `slot` within its app.
    fn of_slot(slot: usize) -> Self {
        match slot {
            0..=2 => Role::Frontend,
            9 => Role::Db,
            _ => Role::Backend,
        }
    }
}

/// One pod (one workload endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub index: usize,
    pub namespace: usize,
    pub app: usize,
    pub role: Role,
    pub node: usize,
    pub ip: Ipv4Addr,
}

/// Every pod, which are local, and where their addresses come from.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub scale: Scale,
    pub pods: Vec<Pod>,
    /// Indexes into `pods` of the bench node's pods.
    pub locals: Vec<usize>,
}

pub fn namespace_name(n: usize) -> String {
    format!("ns-{n:03}")
}

pub fn node_name(n: usize) -> String {
    format!("node-{n:03}")
}

fn team_of(namespace: usize) -> usize {
    namespace / NAMESPACES_PER_TEAM
}

/// Node `n`'s address: 10.99.0.1 for the bench host, then upwards.
pub fn node_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 99, 0, 1)) + n as u32)
}

fn block_cidr(index: usize) -> Ipv4Net {
    let base = u32::from(POOL) + (index * BLOCK_SIZE) as u32;
    Ipv4Net::new(Ipv4Addr::from(base), BLOCK_PREFIX).unwrap_or_default()
}

fn ipam_handle(pod: &Pod) -> String {
    format!("k8s-pod-network.{}", container_id(pod))
}

/// A stand-in for the pod's container id (64 hex digits, as Docker's).
fn container_id(pod: &Pod) -> String {
    let digest = sha1_smol::Sha1::from(format!("container-{}", pod.index))
        .digest()
        .to_string();
    format!("{digest}{}", &digest[..24])
}

impl Cluster {
    /// The cluster of `scale`: endpoints a multiple of 100 (at least 100), at least one policy.
    pub fn new(scale: Scale) -> Result<Self> {
        ensure!(
            scale.endpoints >= PODS_PER_NAMESPACE
                && scale.endpoints.is_multiple_of(PODS_PER_NAMESPACE),
            "endpoints must be a multiple of {PODS_PER_NAMESPACE}"
        );
        ensure!(scale.policies >= 1, "at least one policy");
        let ns_count = scale.namespaces();
        ensure!(
            scale.policies <= ns_count * APPS_PER_NAMESPACE * 1_000,
            "too many policies for {ns_count} namespaces"
        );
        let step = scale.endpoints / LOCAL_PODS;
        let mut next_on_node = vec![0usize; scale.nodes()];
        let mut remote = 0;
        let mut pods = Vec::with_capacity(scale.endpoints);
        let mut locals = Vec::new();
        for index in 0..scale.endpoints {
            let in_ns = index % PODS_PER_NAMESPACE;
            let node = if index % step == 0 && locals.len() < LOCAL_PODS {
                locals.push(index);
                LOCAL_NODE
            } else {
                remote += 1;
                1 + (remote - 1) / PODS_PER_NODE
            };
            let ordinal = next_on_node[node];
            next_on_node[node] += 1;
            let block = block_cidr(node * BLOCKS_PER_NODE + ordinal / BLOCK_SIZE);
            let ip = Ipv4Addr::from(u32::from(block.network()) + (ordinal % BLOCK_SIZE) as u32);
            pods.push(Pod {
                index,
                namespace: index / PODS_PER_NAMESPACE,
                app: in_ns / PODS_PER_APP,
                role: Role::of_slot(in_ns % PODS_PER_APP),
                node,
                ip,
            });
        }
        ensure!(
            u32::from(pods.last().map_or(POOL, |p| p.ip)) < u32::from(POOL) + (1 << 16),
            "the pool 192.168.0.0/16 is too small"
        );
        Ok(Cluster {
            scale,
            pods,
            locals,
        })
    }

    pub fn pod_name(pod: &Pod) -> String {
        format!("app{}-{:05}", pod.app, pod.index)
    }

    /// Calico's host-side interface name: `cali` + 11 hex digits of sha1("<namespace>.<pod>").
    pub fn cali_name(pod: &Pod) -> String {
        let digest = sha1_smol::Sha1::from(format!(
            "{}.{}",
            namespace_name(pod.namespace),
            Self::pod_name(pod)
        ))
        .digest()
        .to_string();
        format!("cali{}", &digest[..11])
    }

    /// Calico's WorkloadEndpoint name `<node>-k8s-<pod>-eth0`, each part with `-` doubled.
    fn wep_name(pod: &Pod) -> String {
        let esc = |s: &str| s.replace('-', "--");
        format!(
            "{}-k8s-{}-eth0",
            esc(&node_name(pod.node)),
            esc(&Self::pod_name(pod))
        )
    }

    pub fn workload_endpoint_key(pod: &Pod) -> String {
        format!(
            "{RESOURCES}/workloadendpoints/{}/{}",
            namespace_name(pod.namespace),
            Self::wep_name(pod)
        )
    }

    /// Pod's WorkloadEndpoint as Calico's CNI plugin writes it, with `role`.
    pub fn workload_endpoint(pod: &Pod, role: Role) -> (String, Value) {
        let ns = namespace_name(pod.namespace);
        let name = Self::pod_name(pod);
        let mac = format!(
            "0a:58:{:02x}:{:02x}:{:02x}:{:02x}",
            pod.ip.octets()[0],
            pod.ip.octets()[1],
            pod.ip.octets()[2],
            pod.ip.octets()[3]
        );
        (
            Self::workload_endpoint_key(pod),
            json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "WorkloadEndpoint",
                "metadata": {
                    "name": Self::wep_name(pod),
                    "namespace": ns,
                    "labels": {
                        "app": format!("app{}", pod.app),
                        "role": role.as_str(),
                        "pod-template-hash": format!("{:08x}", pod.app * 7919 + pod.namespace),
                        "projectcalico.org/namespace": ns,
                        "projectcalico.org/orchestrator": "k8s",
                        "projectcalico.org/serviceaccount": "default"
                    }
                },
                "spec": {
                    "orchestrator": "k8s",
                    "node": node_name(pod.node),
                    "containerID": container_id(pod),
                    "pod": name,
                    "endpoint": "eth0",
                    "serviceAccountName": "default",
                    "ipNetworks": [format!("{}/32", pod.ip)],
                    "profiles": [format!("kns.{ns}"), format!("ksa.{ns}.default")],
                    "interfaceName": Self::cali_name(pod),
                    "mac": mac
                }
            }),
        )
    }

    /// The (namespace, app, round) of policy `k`.
    fn policy_place(&self, k: usize) -> (usize, usize, usize) {
        let ns = self.scale.namespaces();
        (
            k % ns,
            (k / ns) % APPS_PER_NAMESPACE,
            k / (ns * APPS_PER_NAMESPACE),
        )
    }

    /// Policy `k`; `extra_port` is added to ingress rule 0's ports (a policy change).
    pub fn policy(&self, k: usize, extra_port: Option<u16>) -> (String, Value) {
        let (ns, app, round) = self.policy_place(k);
        let namespace = namespace_name(ns);
        let name = format!("allow-app{app}-{round}");
        let mut frontend_ports: Vec<u16> = FRONTEND_PORTS.to_vec();
        frontend_ports.extend(extra_port);
        let next_app = (app + 1) % APPS_PER_NAMESPACE;
        (
            format!("{RESOURCES}/networkpolicies/{namespace}/{name}"),
            json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "tier": "default",
                    "order": 1000.0,
                    "selector": format!("app == 'app{app}'"),
                    "types": ["Ingress", "Egress"],
                    "ingress": [
                        {"action": "Allow", "protocol": "TCP",
                         "source": {"selector": "role == 'frontend'"},
                         "destination": {"ports": frontend_ports}},
                        {"action": "Allow", "protocol": "TCP",
                         "source": {"namespaceSelector": format!("team == 'team-{}'", team_of(ns))},
                         "destination": {"ports": [9090]}},
                        {"action": "Allow", "protocol": "ICMP",
                         "source": {"nets": [NODE_NET]}}
                    ],
                    "egress": [
                        {"action": "Allow", "protocol": "UDP",
                         "destination": {"nets": ["10.96.0.10/32"], "ports": [53]}},
                        {"action": "Allow", "protocol": "TCP",
                         "destination": {"selector": "role == 'db'", "ports": [5432]}},
                        {"action": "Allow", "protocol": "TCP",
                         "destination": {"selector": format!("app == 'app{next_app}'"),
                                         "ports": [8080]}}
                    ]
                }
            }),
        )
    }

    /// `<namespace>/<name>` of policy `k`, as felix names it in rule references.
    pub fn policy_ref(&self, k: usize) -> String {
        let (ns, app, round) = self.policy_place(k);
        format!("{}/allow-app{app}-{round}", namespace_name(ns))
    }

    /// The first-round policy selecting `pod`'s app, if the scale has one.
    pub fn policy_of(&self, pod: &Pod) -> Option<usize> {
        let k = pod.app * self.scale.namespaces() + pod.namespace;
        (k < self.scale.policies).then_some(k)
    }

    /// A remote frontend in `pod`'s namespace (app + 1, slot 1) whose role a label change
    /// toggles: it moves in and out of the set behind `pod`'s policy's ingress rule 0.
    pub fn peer_of(&self, pod: &Pod) -> usize {
        let app = (pod.app + 1) % APPS_PER_NAMESPACE;
        pod.namespace * PODS_PER_NAMESPACE + app * PODS_PER_APP + 1
    }

    /// How many pods of `namespace` have `role` (after label changes: `role_of` says).
    pub fn count_role(
        &self,
        namespace: usize,
        role: Role,
        role_of: impl Fn(&Pod) -> Role,
    ) -> usize {
        self.pods
            .iter()
            .filter(|p| p.namespace == namespace && role_of(p) == role)
            .count()
    }

    /// Pods of the team of `namespace` (what ingress rule 1's set holds).
    #[cfg(test)]
    pub fn team_size(&self, namespace: usize) -> usize {
        let team = team_of(namespace);
        self.pods
            .iter()
            .filter(|p| team_of(p.namespace) == team)
            .count()
    }

    /// Every document, in write order: pool, profiles, nodes, IPAM (blocks, affinities,
    /// handles), workload endpoints, policies.
    pub fn documents(&self) -> Vec<(String, Value)> {
        let mut docs = vec![ip_pool()];
        for ns in 0..self.scale.namespaces() {
            docs.push(namespace_profile(ns));
            docs.push(service_account_profile(ns));
        }
        for n in 0..self.scale.nodes() {
            docs.push(node(n));
        }
        docs.extend(self.ipam());
        for pod in &self.pods {
            docs.push(Self::workload_endpoint(pod, pod.role));
        }
        for k in 0..self.scale.policies {
            docs.push(self.policy(k, None));
        }
        docs
    }

    /// Blocks with their allocations, affinities and handles, as Calico's IPAM writes them.
    fn ipam(&self) -> Vec<(String, Value)> {
        let mut blocks: Vec<Option<Block>> = Vec::new();
        let mut handles = Vec::new();
        for pod in &self.pods {
            let offset = u32::from(pod.ip) - u32::from(POOL);
            let index = offset as usize / BLOCK_SIZE;
            if blocks.len() <= index {
                blocks.resize(index + 1, None);
            }
            let block = blocks[index]
                .get_or_insert_with(|| Block::new(block_cidr(index), &node_name(pod.node)));
            let handle = ipam_handle(pod);
            let attribute = Attribute {
                handle_id: Some(handle.clone()),
                secondary: [
                    ("namespace".to_string(), namespace_name(pod.namespace)),
                    ("node".to_string(), node_name(pod.node)),
                    ("pod".to_string(), Self::pod_name(pod)),
                ]
                .into(),
            };
            // Ordinals are handed out in order, as the pods' addresses were.
            let _ = block.assign(attribute);
            handles.push((
                ipam::handle_key(&handle),
                json!({"handleID": handle, "block": {block.cidr.to_string(): 1}, "deleted": false}),
            ));
        }
        let mut docs = Vec::new();
        for block in blocks.into_iter().flatten() {
            let node = block.host().unwrap_or_default().to_string();
            docs.push((
                ipam::affinity_key(&node, block.cidr),
                json!({"state": "confirmed", "deleted": false}),
            ));
            let value = serde_json::to_value(&block).unwrap_or(Value::Null);
            docs.push((ipam::block_key(block.cidr), value));
        }
        docs.extend(handles);
        docs
    }
}

fn ip_pool() -> (String, Value) {
    let name = "default-ipv4-ippool";
    (
        format!("{RESOURCES}/ippools/{name}"),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {
                "cidr": format!("{POOL}/{POOL_PREFIX}"),
                "blockSize": BLOCK_PREFIX,
                "ipipMode": "Always",
                "vxlanMode": "Never",
                "natOutgoing": true,
                "nodeSelector": "all()"
            }
        }),
    )
}

/// Calico's profile per Kubernetes namespace: allow all, and the namespace's labels.
fn namespace_profile(ns: usize) -> (String, Value) {
    let name = format!("kns.{}", namespace_name(ns));
    (
        format!("{RESOURCES}/profiles/{name}"),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": name},
            "spec": {
                "ingress": [{"action": "Allow"}],
                "egress": [{"action": "Allow"}],
                "labelsToApply": {
                    "pcns.projectcalico.org/name": namespace_name(ns),
                    "pcns.team": format!("team-{}", team_of(ns))
                }
            }
        }),
    )
}

/// Calico's profile per service account: labels only.
fn service_account_profile(ns: usize) -> (String, Value) {
    let name = format!("ksa.{}.default", namespace_name(ns));
    (
        format!("{RESOURCES}/profiles/{name}"),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": name},
            "spec": {"labelsToApply": {"pcsa.projectcalico.org/name": "default"}}
        }),
    )
}

fn node(n: usize) -> (String, Value) {
    let name = node_name(n);
    (
        format!("{RESOURCES}/nodes/{name}"),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
            },
            "spec": {"bgp": {"ipv4Address": format!("{}/16", node_ip(n))}}
        }),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use felix_user::{
        calc::policy::{PolicyDirection, calc::PolicyCalc},
        calc::topology::Topology,
    };

    use calico::{
        datastore::{KeyValue, Update},
        model::{self, Resource},
        store::Store,
    };

    use super::*;

    const SMALL: Scale = Scale {
        endpoints: 1_000,
        policies: 100,
    };

    #[test]
    fn every_document_is_valid_calico() {
        let cluster = Cluster::new(SMALL).expect("cluster");
        let docs = cluster.documents();
        let mut keys = HashSet::new();
        for (key, value) in &docs {
            assert!(keys.insert(key.clone()), "duplicate key {key}");
            if model::parse_key(key).is_some() {
                let resource = Resource::from_value(value.clone(), None)
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                assert_eq!(&resource.key(), key);
            } else if key.starts_with(ipam::BLOCKS) {
                Block::from_etcd(key, value.to_string().as_bytes())
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
            } else {
                assert!(key.starts_with("/calico/ipam/v2/"), "{key}");
            }
        }
        // And the changes the bench writes.
        for (key, value) in [
            cluster.policy(3, Some(CHANGED_PORT_BASE + 7)),
            Cluster::workload_endpoint(&cluster.pods[12], Role::Backend),
        ] {
            let resource = Resource::from_value(value, None).expect("valid change");
            assert_eq!(resource.key(), key);
        }
        let count = |plural: &str| {
            docs.iter()
                .filter(|(k, _)| k.starts_with(&format!("{RESOURCES}/{plural}/")))
                .count()
        };
        assert_eq!(count("workloadendpoints"), 1_000);
        assert_eq!(count("networkpolicies"), 100);
        assert_eq!(count("nodes"), SMALL.nodes());
        assert_eq!(count("profiles"), 20);
    }

    #[test]
    fn felix_reads_it_all_and_sees_its_pods() {
        let cluster = Cluster::new(SMALL).expect("cluster");
        let kvs = cluster
            .documents()
            .into_iter()
            .map(|(key, value)| KeyValue {
                key,
                value: value.to_string().into_bytes(),
                revision: 2,
                created: 2,
            })
            .collect();
        let mut store = Store::new();
        store.apply(Update::Snapshot { revision: 2, kvs });
        assert_eq!(store.malformed().count(), 0);
        let view = Topology::from_store(&store, &node_name(LOCAL_NODE));
        let mut ifaces: Vec<String> = view.workloads.iter().map(|w| w.interface.clone()).collect();
        ifaces.sort();
        let mut want: Vec<String> = cluster
            .locals
            .iter()
            .map(|i| Cluster::cali_name(&cluster.pods[*i]))
            .collect();
        want.sort();
        assert_eq!(ifaces, want);
        assert_eq!(view.nodes.len(), SMALL.nodes());
        // Every node's pods sit in blocks affine to it.
        for pod in &cluster.pods {
            let block = view
                .blocks
                .iter()
                .find(|b| b.cidr.contains(&pod.ip))
                .expect("a block");
            assert_eq!(block.host.as_deref(), Some(node_name(pod.node).as_str()));
        }
    }

    #[test]
    fn locals_are_spread_and_selected_by_their_apps_policy() {
        for scale in [
            SMALL,
            Scale {
                endpoints: 10_000,
                policies: 1_000,
            },
        ] {
            let cluster = Cluster::new(scale).expect("cluster");
            assert_eq!(cluster.locals.len(), LOCAL_PODS);
            let policies: BTreeSet<usize> = cluster
                .locals
                .iter()
                .map(|i| cluster.policy_of(&cluster.pods[*i]).expect("a policy"))
                .collect();
            assert_eq!(policies.len(), LOCAL_PODS, "one policy each");
            for i in &cluster.locals {
                let pod = &cluster.pods[*i];
                assert_eq!(pod.node, LOCAL_NODE);
                let peer = &cluster.pods[cluster.peer_of(pod)];
                assert_ne!(peer.node, LOCAL_NODE);
                assert_eq!((peer.namespace, peer.role), (pod.namespace, Role::Frontend));
            }
            let ips: HashSet<Ipv4Addr> = cluster.pods.iter().map(|p| p.ip).collect();
            assert_eq!(ips.len(), scale.endpoints);
        }
    }

    #[test]
    fn local_programs_have_the_documented_sets() {
        let cluster = Cluster::new(SMALL).expect("cluster");
        let mut calc = PolicyCalc::new();
        for (key, value) in cluster.documents() {
            if model::parse_key(&key).is_some() {
                let resource = Resource::from_value(value, None).expect("valid");
                calc.upsert(&key, &resource);
            }
        }
        let pod = &cluster.pods[cluster.locals[3]];
        let [(ingress_key, ingress), (_, egress)] = calc
            .programs(&Cluster::workload_endpoint_key(pod))
            .expect("programs");
        assert_eq!(ingress_key.direction, PolicyDirection::Ingress);
        let k = cluster.policy_of(pod).expect("policy");
        assert_eq!(
            ingress_key.policies,
            vec![cluster.policy(k, None).0],
            "exactly its app's policy"
        );
        let set_sizes = |p: &felix_user::calc::policy::program::Program| -> Vec<usize> {
            p.entries
                .iter()
                .filter_map(|e| e.matcher.as_ref())
                .filter_map(|m| m.remote.all_of.first().map(|s| s.len()))
                .collect()
        };
        let frontends = cluster.count_role(pod.namespace, Role::Frontend, |p| p.role);
        assert_eq!(frontends, 30);
        assert_eq!(
            set_sizes(&ingress),
            vec![frontends, cluster.team_size(pod.namespace), 1]
        );
        assert_eq!(cluster.team_size(pod.namespace), 1_000);
        assert_eq!(set_sizes(&egress)[..3], [1, 10, 10]);
    }
}
