//! A pod as the API server returns it (the fields Calico's plugin reads), and what its
//! WorkloadEndpoint takes from it, as Calico's `podToDefaultWorkloadEndpoint` and `CmdAddK8s`
//! (v3.32.1) take it: labels, profiles, service account, named ports and `generateName`, and the pod's
//! `cni.projectcalico.org/ipv4pools` annotation.

use std::collections::BTreeMap;

use calico::model::{EndpointPort, Protocol, workload_endpoint::LABEL_NAMESPACE};
use serde::Deserialize;

use crate::names;

/// Label Calico puts on a pod's endpoint with its service account.
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Prefix of the profile kube-controllers makes per service account (`ksa.<ns>.<sa>`).
pub const SERVICE_ACCOUNT_PROFILE_PREFIX: &str = "ksa.";
/// The pod annotation choosing the IPv4 pools to assign from (JSON list of CIDRs or names).
pub const ANNOTATION_IPV4_POOLS: &str = "cni.projectcalico.org/ipv4pools";
/// Annotations Calico's plugin honours that felix-cni refuses rather than ignores, since
/// ignoring them would give the pod another address than the one asked for.
pub const REFUSED_ANNOTATIONS: [&str; 2] = [
    "cni.projectcalico.org/ipAddrs",
    "cni.projectcalico.org/ipAddrsNoIpam",
];

/// `core/v1` Pod, reduced to what the endpoint needs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ApiPod {
    #[serde(default)]
    pub metadata: PodMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub generate_name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub service_account_name: String,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Container {
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub container_port: i32,
    #[serde(default)]
    pub host_port: i32,
    #[serde(rename = "hostIP", default)]
    pub host_ip: String,
    #[serde(default)]
    pub protocol: String,
}

/// What the pod gives its WorkloadEndpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodEndpoint {
    pub labels: BTreeMap<String, String>,
    pub profiles: Vec<String>,
    pub service_account_name: String,
    pub ports: Vec<EndpointPort>,
    pub generate_name: String,
    /// From the `ipv4pools` annotation; empty: the network configuration's.
    pub ipv4_pools: Vec<String>,
}

/// Why a pod cannot be turned into an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("failed to parse '{value}' as JSON: {reason}")]
    Annotation { value: String, reason: String },
    #[error("annotation {0:?} is not supported by felix-cni")]
    Refused(String),
}

/// The pod's endpoint fields, as Calico derives them.
pub fn endpoint_of(pod: &ApiPod) -> Result<PodEndpoint, PodError> {
    if let Some(a) = REFUSED_ANNOTATIONS
        .iter()
        .find(|a| pod.metadata.annotations.contains_key(**a))
    {
        return Err(PodError::Refused((*a).to_string()));
    }
    let namespace = &pod.metadata.namespace;
    let sa = &pod.spec.service_account_name;
    let mut profiles = vec![names::namespace_profile(namespace)];
    let mut labels = pod.metadata.labels.clone();
    labels.insert(LABEL_NAMESPACE.into(), namespace.clone());
    labels.insert(
        calico::model::workload_endpoint::LABEL_ORCHESTRATOR.into(),
        names::ORCHESTRATOR.into(),
    );
    if !sa.is_empty() {
        profiles.push(format!("{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace}.{sa}"));
        // Calico leaves the label off a name too long for a label value.
        if sa.len() < 63 {
            labels.insert(LABEL_SERVICE_ACCOUNT.into(), sa.clone());
        }
    }
    let ports = pod
        .spec
        .containers
        .iter()
        .chain(&pod.spec.init_containers)
        .flat_map(|c| &c.ports)
        .filter_map(endpoint_port)
        .collect();
    let ipv4_pools = match pod.metadata.annotations.get(ANNOTATION_IPV4_POOLS) {
        Some(value) => {
            serde_json::from_str(value).map_err(|e: serde_json::Error| PodError::Annotation {
                value: value.clone(),
                reason: e.to_string(),
            })?
        }
        None => Vec::new(),
    };
    Ok(PodEndpoint {
        labels,
        profiles,
        service_account_name: sa.clone(),
        ports,
        generate_name: pod.metadata.generate_name.clone(),
        ipv4_pools,
    })
}

/// A container port as Calico's `appendEndpointPorts` keeps it: a port number and a name or
/// a host port; protocol TCP (also when empty), UDP or SCTP, others skipped. Calico also keeps
/// host ports without a name; felix's model needs a name (only named ports matter to policy),
/// so those are skipped here.
fn endpoint_port(p: &ContainerPort) -> Option<EndpointPort> {
    let port = u16::try_from(p.container_port).ok().filter(|p| *p != 0)?;
    if p.name.is_empty() {
        return None;
    }
    let protocol = match p.protocol.as_str() {
        "" | "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        _ => return None,
    };
    Some(EndpointPort {
        name: p.name.clone(),
        protocol,
        port,
        host_port: u16::try_from(p.host_port).ok().filter(|p| *p != 0),
        host_ip: Some(p.host_ip.clone()).filter(|ip| !ip.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod as `kubectl get pod -o json` shows it (shortened).
    fn pod(v: serde_json::Value) -> ApiPod {
        serde_json::from_value(v).unwrap()
    }

    fn port(name: &str, protocol: Protocol, port: u16, host_port: Option<u16>) -> EndpointPort {
        EndpointPort {
            name: name.into(),
            protocol,
            port,
            host_port,
            host_ip: None,
        }
    }

    // The cases of Calico's conversion tests (workload_endpoint_default_test /
    // conversion_test.go "should parse a Pod with an IP to a WorkloadEndpoint").
    #[test]
    fn a_pod_with_labels_service_account_and_ports() {
        let p = pod(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "podA",
                "generateName": "pod",
                "namespace": "default",
                "uid": "1a2b",
                "labels": {"labelA": "valueA", "labelB": "valueB"},
                "annotations": {"arbitrary": "annotation"}
            },
            "spec": {
                "nodeName": "nodeA",
                "serviceAccountName": "sa-test",
                "containers": [
                    {"name": "c1", "ports": [
                        {"containerPort": 5678},
                        {"name": "no-proto", "containerPort": 1234},
                    ]},
                    {"name": "c2", "ports": [
                        {"name": "tcp-proto", "protocol": "TCP", "containerPort": 1024},
                        {"name": "tcp-proto-with-host-port", "protocol": "TCP",
                         "containerPort": 8080, "hostPort": 5678},
                        {"name": "udp-proto", "protocol": "UDP", "containerPort": 432},
                        {"name": "sctp-proto", "protocol": "SCTP", "containerPort": 891},
                        {"name": "unkn-proto", "protocol": "8", "containerPort": 567},
                        {"protocol": "TCP", "containerPort": 80, "hostPort": 8081}
                    ]}
                ],
                "initContainers": [
                    {"name": "i1", "ports": [{"name": "init", "containerPort": 99,
                                              "protocol": "UDP"}]}
                ]
            },
            "status": {"podIP": "192.168.0.1", "phase": "Running"}
        }));
        let e = endpoint_of(&p).unwrap();
        assert_eq!(
            e.labels,
            BTreeMap::from([
                ("labelA".to_string(), "valueA".to_string()),
                ("labelB".into(), "valueB".into()),
                ("projectcalico.org/namespace".into(), "default".into()),
                ("projectcalico.org/orchestrator".into(), "k8s".into()),
                ("projectcalico.org/serviceaccount".into(), "sa-test".into()),
            ])
        );
        assert_eq!(e.profiles, ["kns.default", "ksa.default.sa-test"]);
        assert_eq!(e.service_account_name, "sa-test");
        assert_eq!(e.generate_name, "pod");
        assert_eq!(
            e.ports,
            [
                port("no-proto", Protocol::Tcp, 1234, None),
                port("tcp-proto", Protocol::Tcp, 1024, None),
                port("tcp-proto-with-host-port", Protocol::Tcp, 8080, Some(5678)),
                port("udp-proto", Protocol::Udp, 432, None),
                port("sctp-proto", Protocol::Sctp, 891, None),
                port("init", Protocol::Udp, 99, None),
            ]
        );
        assert!(e.ipv4_pools.is_empty());
    }

    #[test]
    fn no_service_account_means_the_namespace_profile_only() {
        let e = endpoint_of(&pod(json!({"metadata": {"name": "p", "namespace": "ns1"}}))).unwrap();
        assert_eq!(e.profiles, ["kns.ns1"]);
        assert!(!e.labels.contains_key(LABEL_SERVICE_ACCOUNT));
        assert!(e.ports.is_empty());
    }

    #[test]
    fn a_long_service_account_gets_a_profile_but_no_label() {
        let sa = "s".repeat(63);
        let e = endpoint_of(&pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"serviceAccountName": sa}
        })))
        .unwrap();
        assert_eq!(e.profiles[1], format!("ksa.ns.{sa}"));
        assert!(!e.labels.contains_key(LABEL_SERVICE_ACCOUNT));
    }

    #[test]
    fn the_pod_cannot_override_calicos_labels() {
        let e = endpoint_of(&pod(json!({
            "metadata": {"name": "p", "namespace": "ns",
                         "labels": {"projectcalico.org/namespace": "other"}}
        })))
        .unwrap();
        assert_eq!(e.labels[LABEL_NAMESPACE], "ns");
    }

    #[test]
    fn annotations() {
        let with = |k: &str, v: &str| {
            endpoint_of(&pod(json!({
                "metadata": {"name": "p", "namespace": "ns", "annotations": {k: v}}
            })))
        };
        let e = with(ANNOTATION_IPV4_POOLS, r#"["10.1.0.0/16", "pool-b"]"#).unwrap();
        assert_eq!(e.ipv4_pools, ["10.1.0.0/16", "pool-b"]);
        let err = with(ANNOTATION_IPV4_POOLS, "10.1.0.0/16").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("failed to parse '10.1.0.0/16' as JSON")
        );
        let err = with("cni.projectcalico.org/ipAddrs", r#"["10.1.0.5"]"#).unwrap_err();
        assert_eq!(
            err,
            PodError::Refused("cni.projectcalico.org/ipAddrs".into())
        );
    }
}
