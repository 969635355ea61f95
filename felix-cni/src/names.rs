//! Names Calico's CNI plugin gives a pod's pieces, kept identical so that felix, calicoctl and
//! Calico's own tools find them: the host-side veth, the WorkloadEndpoint and the IPAM handle.

use std::net::Ipv4Addr;

/// Prefix of every host-side pod interface (Calico's default `FELIX_INTERFACEPREFIX`).
pub const HOST_PREFIX: &str = "cali";
/// Calico's fixed MAC for the host side of a pod veth.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pods' (fictitious) gateway, as in Calico: reached over `eth0` by a link-scope route.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The orchestrator of every endpoint felix-cni writes.
pub const ORCHESTRATOR: &str = "k8s";
/// Prefix of the profile Calico's Kubernetes integration makes per namespace.
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";

/// The host-side veth of a pod, as Calico's `VethNameForWorkload`: `cali` + the first 11 hex
/// digits of sha1("<namespace>.<pod>"), 15 characters. The name depends on the pod, not on
/// the container, so a pod's new sandbox gets the same interface (and felix the same endpoint).
pub fn host_veth_name(namespace: &str, pod: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{namespace}.{pod}"))
        .digest()
        .to_string();
    format!("{HOST_PREFIX}{}", &digest[..11])
}

/// Calico's WorkloadEndpoint name `<node>-k8s-<pod>-<endpoint>`, each part with `-` doubled.
pub fn wep_name(node: &str, pod: &str, endpoint: &str) -> String {
    let esc = |s: &str| s.replace('-', "--");
    format!(
        "{}-{ORCHESTRATOR}-{}-{}",
        esc(node),
        esc(pod),
        esc(endpoint)
    )
}

/// The IPAM handle of a container, as Calico's plugin makes it: `<network name>.<container id>`.
pub fn handle_id(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

/// The profile of a namespace (`kns.<namespace>`).
pub fn namespace_profile(namespace: &str) -> String {
    format!("{NAMESPACE_PROFILE_PREFIX}{namespace}")
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_calicos() {
        // "cali" + hashlib.sha1(b"default.test").hexdigest()[:11], as the lab checks too.
        assert_eq!(host_veth_name("default", "test"), "cali1037a54e65e");
        let name = host_veth_name("kube-system", "coredns-5d78c9869d-abcde");
        assert_eq!(name.len(), 15, "fits IFNAMSIZ");
        assert_ne!(name, host_veth_name("default", "coredns-5d78c9869d-abcde"));
    }

    #[test]
    fn wep_names_escape_dashes() {
        assert_eq!(wep_name("node1", "nginx", "eth0"), "node1-k8s-nginx-eth0");
        assert_eq!(
            wep_name("fx0000-h1", "fx0000-h1-p1", "eth0"),
            "fx0000--h1-k8s-fx0000--h1--p1-eth0"
        );
    }

    #[test]
    fn handles_profiles_and_macs() {
        assert_eq!(
            handle_id("k8s-pod-network", "abc123"),
            "k8s-pod-network.abc123"
        );
        assert_eq!(namespace_profile("default"), "kns.default");
        assert_eq!(format_mac(&HOST_MAC), "ee:ee:ee:ee:ee:ee");
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 0x1f]), "02:00:00:00:00:1f");
    }
}
