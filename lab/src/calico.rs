//! The Calico resources the lab writes to etcd, in Calico's own key layout (v3 resources in etcd
//! mode), as (key, JSON value) pairs: what an installer writes (IP pool, namespace profile,
//! Nodes, the BGP configuration and the ToR's BGPPeer of [`crate::bgp`]) and what Calico's CNI
//! plugin writes per pod (its WorkloadEndpoint). IPAM blocks, affinities and handles are not
//! written here: the lab gets them from `felix ipam`.

use serde_json::{Value, json};

pub use crate::ipip::IpipMode;
use crate::names;
use crate::state::{HostState, PodInfo};

/// Prefix of Calico's v3 resource keys.
pub const RESOURCES: &str = "/calico/resources/v3/projectcalico.org";
/// The Kubernetes namespace profile every lab pod carries.
pub const NAMESPACE_PROFILE: &str = "kns.default";

/// The key of the lab's IP pool.
pub const IP_POOL_KEY: &str = "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool";

/// The IP pool all blocks come from, with `ipipMode` `mode`.
pub fn ip_pool(mode: IpipMode) -> (String, Value) {
    ip_pool_with(mode, false)
}

/// [`ip_pool`] with `natOutgoing` `nat_outgoing`.
pub fn ip_pool_with(mode: IpipMode, nat_outgoing: bool) -> (String, Value) {
    let name = "default-ipv4-ippool";
    (
        format!("{RESOURCES}/ippools/{name}"),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {
                "cidr": names::POOL_CIDR,
                "blockSize": names::BLOCK_PREFIX,
                "ipipMode": mode.as_str(),
                "vxlanMode": "Never",
                "natOutgoing": nat_outgoing,
                "nodeSelector": "all()"
            }
        }),
    )
}

/// The profile Calico's Kubernetes integration makes per namespace: allow all, both ways.
pub fn namespace_profile() -> (String, Value) {
    (
        format!("{RESOURCES}/profiles/{NAMESPACE_PROFILE}"),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": NAMESPACE_PROFILE},
            "spec": {
                "ingress": [{"action": "Allow"}],
                "egress": [{"action": "Allow"}],
                "labelsToApply": {"pcns.projectcalico.org/name": names::POD_NAMESPACE}
            }
        }),
    )
}

/// The AS number the lab seeds into every Node (felix must keep it: it owns only the address).
pub const NODE_AS_NUMBER: u32 = 64512;
/// An annotation the lab seeds into every Node (felix must keep it).
pub const NODE_ANNOTATION: (&str, &str) = ("lab.felix/seeded-by", "xtask");

/// The key of host's Node resource.
pub fn node_key(node: &str) -> String {
    format!("{RESOURCES}/nodes/{node}")
}

/// What felix is to register as the node's BGP address (`spec.bgp.ipv4Address`).
pub fn node_address(host: &HostState) -> String {
    format!("{}/{}", host.ip, names::FABRIC_PREFIX)
}

/// The Node as an installer would pre-create it: labels, an annotation and an AS number, but no
/// address. felix detects the address and adds `spec.bgp.ipv4Address`, keeping everything else.
pub fn node(lab_id: &str, host: &HostState) -> (String, Value) {
    (
        node_key(&host.node),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {
                "name": host.node,
                "labels": {"lab": lab_id, "kubernetes.io/hostname": host.node},
                "annotations": {NODE_ANNOTATION.0: NODE_ANNOTATION.1}
            },
            "spec": {"bgp": {"asNumber": NODE_AS_NUMBER}}
        }),
    )
}

/// Where felix on `node` reports: its status and its endpoints' statuses (under a lease).
pub fn felix_status_prefix(node: &str) -> String {
    format!("/calico/felix/v2/no-region/host/{node}/")
}

/// felix's own status key.
pub fn felix_status_key(node: &str) -> String {
    format!("{}status", felix_status_prefix(node))
}

/// The status key of pod's endpoint `eth0` (Calico's: the workload id `<namespace>/<pod>` with
/// the `/` escaped as `%2f`).
pub fn endpoint_status_key(node: &str, pod: &str) -> String {
    format!(
        "{}workload/k8s/{}%2f{pod}/endpoint/eth0",
        felix_status_prefix(node),
        names::POD_NAMESPACE
    )
}

/// The `app` label of a pod: `h1-p1` etc.
pub fn app_label(pod: &PodInfo) -> String {
    format!("h{}-p{}", pod.host, pod.index)
}

/// The IPAM handle of a pod, as Calico's CNI plugin names it (`k8s-pod-network.<container id>`;
/// the lab's pods have no container, their name stands in).
pub fn ipam_handle(pod: &PodInfo) -> String {
    format!("k8s-pod-network.{}", pod.name)
}

/// The key of pod's WorkloadEndpoint.
pub fn workload_endpoint_key(host: &HostState, pod: &PodInfo) -> String {
    let name = names::wep_name(&host.node, &pod.name, "eth0");
    format!(
        "{RESOURCES}/workloadendpoints/{}/{name}",
        names::POD_NAMESPACE
    )
}

/// Pod's WorkloadEndpoint as Calico's CNI plugin writes it, with its namespace's profile.
pub fn workload_endpoint(host: &HostState, pod: &PodInfo) -> (String, Value) {
    workload_endpoint_with_profiles(host, pod, &[NAMESPACE_PROFILE])
}

/// Pod's WorkloadEndpoint with `profiles` in place of its namespace's profile.
pub fn workload_endpoint_with_profiles(
    host: &HostState,
    pod: &PodInfo,
    profiles: &[&str],
) -> (String, Value) {
    let ns = names::POD_NAMESPACE;
    let name = names::wep_name(&host.node, &pod.name, "eth0");
    (
        workload_endpoint_key(host, pod),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {
                    "projectcalico.org/namespace": ns,
                    "projectcalico.org/orchestrator": "k8s",
                    "app": app_label(pod)
                }
            },
            "spec": {
                "orchestrator": "k8s",
                "node": host.node,
                "pod": pod.name,
                "endpoint": "eth0",
                "ipNetworks": [format!("{}/32", pod.ip)],
                "profiles": profiles,
                "interfaceName": pod.cali,
                "mac": pod.mac.clone().unwrap_or_default()
            }
        }),
    )
}

/// The ToR's AS (eBGP with the hosts).
pub const TOR_AS: u32 = 65001;
/// The global BGPPeer that points every host at the ToR.
pub const TOR_PEER: &str = "tor";

/// The BGPConfiguration `default`: the node-to-node mesh on or off, the cluster's AS.
pub fn bgp_configuration(mesh: bool) -> (String, Value) {
    (
        format!("{}/bgpconfigurations/default", RESOURCES),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {
                "logSeverityScreen": "Info",
                "nodeToNodeMeshEnabled": mesh,
                "asNumber": NODE_AS_NUMBER
            }
        }),
    )
}

/// The global BGPPeer (no node, no nodeSelector: every node) to the ToR.
pub fn tor_peer() -> (String, Value) {
    (
        format!("{}/bgppeers/{TOR_PEER}", RESOURCES),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": TOR_PEER},
            "spec": {"peerIP": names::TOR_IP.to_string(), "asNumber": TOR_AS}
        }),
    )
}

/// What an installer writes before any pod exists, in write order: the IP pool (`ipipMode`
/// `mode`), the namespace profile, the BGP configuration (mesh on), the ToR's BGPPeer and the
/// Nodes.
pub fn cluster(lab_id: &str, hosts: &[HostState], mode: IpipMode) -> Vec<(String, Value)> {
    let mut docs = vec![
        ip_pool(mode),
        namespace_profile(),
        bgp_configuration(true),
        tor_peer(),
    ];
    docs.extend(hosts.iter().map(|host| node(lab_id, host)));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LabState;

    #[test]
    fn cluster_documents() {
        let plan = LabState::plan("fx0001", None);
        let docs = cluster("fx0001", &plan.hosts, IpipMode::default());
        let keys: Vec<&str> = docs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
                "/calico/resources/v3/projectcalico.org/profiles/kns.default",
                "/calico/resources/v3/projectcalico.org/bgpconfigurations/default",
                "/calico/resources/v3/projectcalico.org/bgppeers/tor",
                "/calico/resources/v3/projectcalico.org/nodes/fx0001-h1",
                "/calico/resources/v3/projectcalico.org/nodes/fx0001-h2",
            ]
        );
        assert_eq!(docs[0].1["spec"]["cidr"], "192.168.0.0/16");
        assert_eq!(docs[0].1["spec"]["blockSize"], 26);
        assert_eq!(docs[0].0, IP_POOL_KEY);
        assert_eq!(docs[0].1["spec"]["ipipMode"], "Always");
        let never = cluster("fx0001", &plan.hosts, IpipMode::Never);
        assert_eq!(never[0].1["spec"]["ipipMode"], "Never");
    }

    #[test]
    fn workload_endpoint_layout() {
        let mut plan = crate::state::addressed_plan("fx0001");
        plan.hosts[1].pods[0].mac = Some("02:00:00:00:00:01".into());
        let host = &plan.hosts[1];
        let (key, wep) = workload_endpoint(host, &host.pods[0]);
        assert_eq!(
            key,
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/fx0001--h2-k8s-fx0001--h2--p1-eth0"
        );
        assert_eq!(wep["spec"]["ipNetworks"][0], "192.168.0.64/32");
        assert_eq!(wep["spec"]["profiles"], json!(["kns.default"]));
        assert_eq!(wep["spec"]["node"], "fx0001-h2");
        assert_eq!(wep["spec"]["interfaceName"], host.pods[0].cali.as_str());
        assert_eq!(wep["spec"]["mac"], "02:00:00:00:00:01");
        assert_eq!(
            wep["metadata"]["labels"]["projectcalico.org/namespace"],
            "default"
        );
        let (same_key, bare) = workload_endpoint_with_profiles(host, &host.pods[0], &[]);
        assert_eq!(same_key, key);
        assert_eq!(bare["spec"]["profiles"], json!([]));
        assert_eq!(ipam_handle(&host.pods[0]), "k8s-pod-network.fx0001-h2-p1");
    }

    #[test]
    fn node_and_status_keys() {
        let plan = LabState::plan("fx0001", None);
        let (key, node) = node("fx0001", &plan.hosts[1]);
        assert_eq!(
            key,
            "/calico/resources/v3/projectcalico.org/nodes/fx0001-h2"
        );
        // felix registers the address; the lab seeds only what felix must preserve.
        assert_eq!(node["spec"]["bgp"].get("ipv4Address"), None);
        assert_eq!(node["spec"]["bgp"]["asNumber"], 64512);
        assert_eq!(node["metadata"]["labels"]["lab"], "fx0001");
        assert_eq!(node_address(&plan.hosts[1]), "10.0.0.2/24");
        assert_eq!(
            felix_status_key("fx0001-h1"),
            "/calico/felix/v2/no-region/host/fx0001-h1/status"
        );
        assert_eq!(
            endpoint_status_key("fx0001-h1", "fx0001-h1-p2"),
            "/calico/felix/v2/no-region/host/fx0001-h1/workload/k8s/default%2ffx0001-h1-p2/endpoint/eth0"
        );
    }
}
