//! The pod's WorkloadEndpoint, as Calico's CNI plugin writes it in etcd mode: key
//! `/calico/resources/v3/projectcalico.org/workloadendpoints/<namespace>/<node>-k8s-<pod>-<ifname>`
//! (dashes doubled in each part), labels `projectcalico.org/namespace` and
//! `projectcalico.org/orchestrator` plus the given labels (`args.cni.labels`, or the pod's with
//! `policy.type: k8s`), the given profiles, service account and named ports, and the
//! container id, so that a DEL for an older sandbox of the same pod leaves the newer one alone.
//! Built with felix's own model, so it passes felix's validation.

use std::{collections::BTreeMap, net::Ipv4Addr};

use calico::model::{
    self, Cidr, EndpointPort, Kind, Metadata, Object, Resource, WorkloadEndpointSpec,
};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use ipnet::{IpNet, Ipv4Net};

use crate::{env::Pod, names};

/// Errors reading or writing a WorkloadEndpoint.
#[derive(Debug, thiserror::Error)]
pub enum WepError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("WorkloadEndpoint {key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// What goes into an endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint<'a> {
    pub node: &'a str,
    pub pod: &'a Pod,
    pub ifname: &'a str,
    pub container_id: &'a str,
    pub host_veth: &'a str,
    pub mac: &'a str,
    pub ip: Ipv4Addr,
    pub labels: &'a BTreeMap<String, String>,
    /// `kns.<namespace>` (and `ksa.<namespace>.<account>` from the API).
    pub profiles: &'a [String],
    pub service_account_name: &'a str,
    pub ports: &'a [EndpointPort],
    /// The pod's `generateName` (empty: none).
    pub generate_name: &'a str,
}

/// The key of `pod`'s endpoint `ifname` on `node`.
pub fn key(node: &str, pod: &Pod, ifname: &str) -> String {
    model::key_for(
        Kind::WorkloadEndpoint,
        Some(&pod.namespace),
        &names::wep_name(node, &pod.name, ifname),
    )
}

/// The endpoint resource, defaulted and validated by felix's model.
pub fn build(e: &Endpoint<'_>) -> Result<Resource, WepError> {
    let name = names::wep_name(e.node, &e.pod.name, e.ifname);
    let mut labels = e.labels.clone();
    labels.insert(
        model::workload_endpoint::LABEL_NAMESPACE.into(),
        e.pod.namespace.clone(),
    );
    labels.insert(
        model::workload_endpoint::LABEL_ORCHESTRATOR.into(),
        names::ORCHESTRATOR.into(),
    );
    let mut resource = Resource::WorkloadEndpoint(Object {
        metadata: Metadata {
            namespace: Some(e.pod.namespace.clone()),
            labels,
            generate_name: Some(e.generate_name.to_string()).filter(|g| !g.is_empty()),
            ..Metadata::named(&name)
        },
        spec: WorkloadEndpointSpec {
            orchestrator: names::ORCHESTRATOR.into(),
            node: e.node.into(),
            container_id: e.container_id.into(),
            pod: e.pod.name.clone(),
            endpoint: e.ifname.into(),
            ip_networks: vec![Cidr(IpNet::from(Ipv4Net::from(e.ip)))],
            profiles: e.profiles.to_vec(),
            service_account_name: e.service_account_name.into(),
            ports: e.ports.to_vec(),
            interface_name: e.host_veth.into(),
            mac: e.mac.into(),
            ..WorkloadEndpointSpec::default()
        },
    });
    resource.apply_defaults();
    resource.validate().map_err(|err| WepError::Invalid {
        key: resource.key(),
        reason: format!("{}: {}", err.field, err.reason),
    })?;
    Ok(resource)
}

/// Writes `resource` (replacing an older sandbox's endpoint of the same pod).
pub async fn put(client: &mut Client, resource: &Resource) -> Result<(), WepError> {
    client.put(resource.key(), resource.to_json(), None).await?;
    Ok(())
}

/// The endpoint at `key` and its revision, if there is one.
pub async fn get(
    client: &mut Client,
    key: &str,
) -> Result<Option<(Object<WorkloadEndpointSpec>, i64)>, WepError> {
    let response = client.get(key, None).await?;
    let Some(kv) = response.kvs().first() else {
        return Ok(None);
    };
    match Resource::from_etcd(key, kv.value()) {
        Ok(Resource::WorkloadEndpoint(wep)) => Ok(Some((wep, kv.mod_revision()))),
        Ok(other) => Err(WepError::Invalid {
            key: key.into(),
            reason: format!("holds a {}", other.kind()),
        }),
        Err(e) => Err(WepError::Invalid {
            key: key.into(),
            reason: e.to_string(),
        }),
    }
}

/// What [`delete_if_owned`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// It was this container's (or named none) and is gone now.
    Removed,
    /// There was none.
    Absent,
    /// It belongs to another container (a newer sandbox of the pod): left alone.
    OtherContainer(String),
}

/// Deletes the endpoint at `key` unless it names another container; a value that does not
/// parse is deleted too (it is ours by its key, and useless to felix).
pub async fn delete_if_owned(
    client: &mut Client,
    key: &str,
    container_id: &str,
) -> Result<Deleted, WepError> {
    for _ in 0..8 {
        let response = client.get(key, None).await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(Deleted::Absent);
        };
        if let Ok(Resource::WorkloadEndpoint(wep)) = Resource::from_etcd(key, kv.value()) {
            let owner = wep.spec.container_id;
            if !owner.is_empty() && owner != container_id {
                return Ok(Deleted::OtherContainer(owner));
            }
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::delete(key, None)]);
        if client.txn(txn).await?.succeeded() {
            return Ok(Deleted::Removed);
        }
    }
    Err(WepError::Invalid {
        key: key.into(),
        reason: "kept changing while it was being deleted".into(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoint_layout_is_calicos() {
        let pod = Pod {
            namespace: "default".into(),
            name: "web-1".into(),
        };
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let e = Endpoint {
            node: "node-a",
            pod: &pod,
            ifname: "eth0",
            container_id: "abc123",
            host_veth: "cali1234567890a",
            mac: "02:00:00:00:00:01",
            ip: Ipv4Addr::new(192, 168, 0, 5),
            labels: &labels,
            profiles: &["kns.default".to_string()],
            service_account_name: "",
            ports: &[],
            generate_name: "",
        };
        let r = build(&e).unwrap();
        assert_eq!(
            r.key(),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node--a-k8s-web--1-eth0"
        );
        assert_eq!(r.key(), key("node-a", &pod, "eth0"));
        assert_eq!(
            r.to_value(),
            json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "WorkloadEndpoint",
                "metadata": {
                    "name": "node--a-k8s-web--1-eth0",
                    "namespace": "default",
                    "labels": {
                        "app": "web",
                        "projectcalico.org/namespace": "default",
                        "projectcalico.org/orchestrator": "k8s"
                    }
                },
                "spec": {
                    "orchestrator": "k8s",
                    "node": "node-a",
                    "containerID": "abc123",
                    "pod": "web-1",
                    "endpoint": "eth0",
                    "ipNetworks": ["192.168.0.5/32"],
                    "profiles": ["kns.default"],
                    "interfaceName": "cali1234567890a",
                    "mac": "02:00:00:00:00:01"
                }
            })
        );
        // What felix reads back is what was written.
        let again = Resource::from_etcd(&r.key(), r.to_json().as_bytes()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn reserved_labels_are_ours() {
        let pod = Pod {
            namespace: "prod".into(),
            name: "p".into(),
        };
        let labels: BTreeMap<String, String> = [(
            "projectcalico.org/namespace".to_string(),
            "other".to_string(),
        )]
        .into();
        let e = Endpoint {
            node: "n",
            pod: &pod,
            ifname: "eth0",
            container_id: "c",
            host_veth: "cali0",
            mac: "02:00:00:00:00:01",
            ip: Ipv4Addr::new(10, 0, 0, 1),
            labels: &labels,
            profiles: &["kns.prod".to_string()],
            service_account_name: "",
            ports: &[],
            generate_name: "",
        };
        let r = build(&e).unwrap();
        assert_eq!(r.metadata().labels["projectcalico.org/namespace"], "prod");
    }
}
