//! What kube-proxy's iptables mode is given: Services (as the API server holds them, the
//! fields the rules depend on), their ready endpoints (as EndpointSlices list them), and its own
//! flags for one node.

use std::net::Ipv4Addr;

/// A Service's port protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// Lowercase, as kube-proxy writes it in `-m tcp -p tcp` and hashes it into chain names.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (may be empty for a single-port Service).
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    /// The endpoints' port (numeric `targetPort`, as the EndpointSlice carries it).
    pub target_port: u16,
    /// Set for `NodePort` (and `LoadBalancer`) Services.
    pub node_port: Option<u16>,
}

/// A backend of a Service, from its EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// `nodeName`: Local policy uses the endpoints on kube-proxy's own node only.
    pub node: String,
    /// `conditions.ready`; kube-proxy skips endpoints that are not.
    pub ready: bool,
}

/// A Service with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<ServicePort>,
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.externalIPs`.
    pub external_ips: Vec<Ipv4Addr>,
    /// `spec.healthCheckNodePort` (the API server sets it for Local `LoadBalancer` Services).
    pub health_check_node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// `ns/name:port` (`ns/name` for an unnamed port): kube-proxy's `ServicePortName.String()`.
    pub fn port_name(&self, port: &ServicePort) -> String {
        if port.name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, port.name)
        }
    }
}

/// kube-proxy's flags and environment that shape the rules on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `--hostname-override`: the node whose endpoints are local.
    pub node_name: String,
    /// `--cluster-cidr` (LocalDetector `ClusterCIDR`): sources outside it are masqueraded.
    pub cluster_cidr: String,
    /// The masquerade mark, `1 << --iptables-masquerade-bit` as kube-proxy formats it.
    pub masquerade_mark: String,
    /// The iptables binary supports `MASQUERADE --random-fully` (any 1.6.2+).
    pub random_fully: bool,
    /// `--iptables-localhost-nodeports` (on by default; it sets `route_localnet=1`).
    pub localhost_nodeports: bool,
    /// kube-proxy could create its nfacct counters (`-m nfacct` in two rules).
    pub nfacct: bool,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` is set: no DROP of INVALID packets.
    pub conntrack_tcp_be_liberal: bool,
}

impl Config {
    /// kube-proxy's defaults on node `node_name` with `--cluster-cidr cluster_cidr`, except
    /// `--iptables-localhost-nodeports=false` (the lab reaches NodePorts on node addresses only,
    /// and this keeps `route_localnet` off) and no nfacct counters (as when kube-proxy cannot
    /// create them).
    pub fn for_node(node_name: &str, cluster_cidr: &str) -> Self {
        Self {
            node_name: node_name.to_owned(),
            cluster_cidr: cluster_cidr.to_owned(),
            masquerade_mark: masquerade_mark(DEFAULT_MASQUERADE_BIT),
            random_fully: true,
            localhost_nodeports: false,
            nfacct: false,
            conntrack_tcp_be_liberal: false,
        }
    }
}

/// `--iptables-masquerade-bit`'s default.
pub const DEFAULT_MASQUERADE_BIT: u8 = 14;

/// The mark of bit `bit` as kube-proxy formats it (Go's `%#08x`: `0x00004000`).
pub fn masquerade_mark(bit: u8) -> String {
    format!("{:#010x}", 1u32 << bit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_and_port_names() {
        assert_eq!(masquerade_mark(14), "0x00004000");
        let svc = Service {
            namespace: "ns1".into(),
            name: "svc1".into(),
            cluster_ip: Ipv4Addr::new(172, 30, 0, 41),
            ports: vec![],
            external_traffic_policy: TrafficPolicy::Cluster,
            external_ips: vec![],
            health_check_node_port: None,
            endpoints: vec![],
        };
        let mut port = ServicePort {
            name: "p80".into(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: 80,
            node_port: None,
        };
        assert_eq!(svc.port_name(&port), "ns1/svc1:p80");
        port.name.clear();
        assert_eq!(svc.port_name(&port), "ns1/svc1");
    }
}
