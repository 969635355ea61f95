//! Lab naming and addressing: the per-run id, namespace and node names, Calico interface names,
//! and the fixed part of the address plan (hosts on 10.0.0.0/24). Pod blocks and addresses are
//! not planned: `felix ipam` hands them out from [`POOL_CIDR`] while the lab is built.

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};

/// Every lab id is `fx` + 4 lowercase hex digits.
pub const ID_PREFIX: &str = "fx";
const ID_LEN: usize = 6;
/// Host numbers in the lab.
pub const HOSTS: [u8; 2] = [1, 2];
/// Pods per host, numbered from 1.
pub const PODS_PER_HOST: u8 = 2;
/// The Kubernetes namespace of every lab pod.
pub const POD_NAMESPACE: &str = "default";
pub const FABRIC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// The ToR router's address on the fabric (its own namespace, `<id>-tor`).
pub const TOR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 253);
/// The "outside" (namespace `<id>-outside`): an address on the fabric with no route to the
/// pods, reached from a pod only through its host's `natOutgoing` masquerade.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
pub const FABRIC_PREFIX: u8 = 24;
pub const ETCD_PORT: u16 = 2379;
/// The fabric's MTU (host uplinks, bridge, ToR) unless a test asks for another.
pub const DEFAULT_FABRIC_MTU: u32 = 1500;
/// Bytes the outer IPIP header takes from the uplink MTU.
pub const IPIP_OVERHEAD: u32 = 20;
/// The pods' (fictitious) default gateway, as in Calico.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Calico's fixed MAC for the host side of a pod veth.
pub const CALI_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// Prefix length of the blocks hosts claim (Calico's default).
pub const BLOCK_PREFIX: u8 = 26;
/// The IP pool hosts claim their blocks from.
pub const POOL_CIDR: &str = "192.168.0.0/16";

/// A fresh random id from /dev/urandom.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 2];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(format!("{ID_PREFIX}{:02x}{:02x}", bytes[0], bytes[1]))
}

/// Whether `s` is a lab id.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.starts_with(ID_PREFIX)
        && s[ID_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The lab id a name (`fxab12-h1`, `fxab12-fabric`) belongs to, if any.
pub fn id_of(name: &str) -> Option<&str> {
    let id = name.get(..ID_LEN)?;
    (is_id(id) && name[ID_LEN..].starts_with('-')).then_some(id)
}

pub fn fabric_ns(id: &str) -> String {
    format!("{id}-fabric")
}

/// The ToR router's namespace.
pub fn tor_ns(id: &str) -> String {
    format!("{id}-tor")
}

/// The "outside" namespace ([`OUTSIDE_IP`]).
pub fn outside_ns(id: &str) -> String {
    format!("{id}-outside")
}

/// The host namespace, which is also the felix node name.
pub fn host_ns(id: &str, host: u8) -> String {
    format!("{id}-h{host}")
}

/// The pod namespace, which is also the pod name.
pub fn pod_ns(id: &str, host: u8, pod: u8) -> String {
    format!("{id}-h{host}-p{pod}")
}

/// Every namespace of lab `id`, fabric, ToR and outside first.
pub fn all_namespaces(id: &str) -> Vec<String> {
    let mut names = vec![fabric_ns(id), tor_ns(id), outside_ns(id)];
    for host in HOSTS {
        names.push(host_ns(id, host));
        for pod in 1..=PODS_PER_HOST {
            names.push(pod_ns(id, host, pod));
        }
    }
    names
}

/// The ToR's veth end in the fabric (its side is `eth0`).
pub const TOR_PORT: &str = "tor";

/// The outside's veth end in the fabric (its side is `eth0`).
pub const OUTSIDE_PORT: &str = "outside";

/// The uplink veth end in the fabric for host N (the host side is `eth0`).
pub fn fabric_port(host: u8) -> String {
    format!("h{host}")
}

pub fn host_ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, host)
}

/// Calico's host-side interface name: `cali` + the first 11 hex digits of sha1("<namespace>.<pod>").
pub fn cali_name(namespace: &str, pod: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{namespace}.{pod}"))
        .digest()
        .to_string();
    format!("cali{}", &digest[..11])
}

/// Calico's WorkloadEndpoint name `<node>-k8s-<pod>-<endpoint>`, each part with `-` doubled.
pub fn wep_name(node: &str, pod: &str, endpoint: &str) -> String {
    let esc = |s: &str| s.replace('-', "--");
    format!("{}-k8s-{}-{}", esc(node), esc(pod), esc(endpoint))
}

/// `192.168.2.0/26` -> `192.168.2.0-26`, as in Calico's IPAM keys.
pub fn cidr_key(cidr: &str) -> String {
    cidr.replace('/', "-")
}

/// The etcd URL hosts use (reachable over the fabric): TLS with client certificates.
pub fn etcd_url() -> String {
    format!("https://{FABRIC_IP}:{ETCD_PORT}")
}

/// The etcd URL of a lab run with plain HTTP ([`crate::LabOptions::etcd_plain_http`]).
pub fn etcd_plain_url() -> String {
    format!("http://{FABRIC_IP}:{ETCD_PORT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() -> Result<()> {
        let id = new_id()?;
        assert!(is_id(&id), "{id}");
        assert!(!is_id("fxAB12"));
        assert!(!is_id("fx12345"));
        assert!(!is_id("ab1234"));
        assert_eq!(id_of("fx0a1b-h1-p2"), Some("fx0a1b"));
        assert_eq!(id_of("fx0a1b-fabric"), Some("fx0a1b"));
        assert_eq!(id_of("fx0a1bc"), None);
        assert_eq!(id_of("fx0a1b"), None);
        assert_eq!(id_of("cni-1234"), None);
        Ok(())
    }

    #[test]
    fn cali_name_is_calicos() {
        // Cross-checked with Python: "cali" + hashlib.sha1(b"default.test").hexdigest()[:11].
        let name = cali_name("default", "fx0000-h1-p1");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("cali"));
        assert_eq!(cali_name("default", "test"), "cali1037a54e65e");
    }

    #[test]
    fn addresses() {
        assert_eq!(host_ip(2), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(cidr_key("192.168.2.0/26"), "192.168.2.0-26");
        assert_eq!(all_namespaces("fx0000").len(), 9);
        assert_eq!(id_of(&tor_ns("fx0000")), Some("fx0000"));
        assert_eq!(id_of(&outside_ns("fx0000")), Some("fx0000"));
    }

    #[test]
    fn wep_names_escape_dashes() {
        assert_eq!(
            wep_name("fx0000-h1", "fx0000-h1-p1", "eth0"),
            "fx0000--h1-k8s-fx0000--h1--p1-eth0"
        );
        assert_eq!(wep_name("node1", "nginx", "eth0"), "node1-k8s-nginx-eth0");
    }
}
