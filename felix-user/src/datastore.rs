//! The etcd connection. For now felix connects, keeps retrying while etcd is away, and reports
//! what Calico's datastore holds for its node; the syncer of the control-plane work builds on it.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use serde::Deserialize;
use tracing::{info, warn};

/// Calico's key prefix for workload endpoints (v3 resources in etcd mode).
pub const WORKLOAD_ENDPOINTS_PREFIX: &str =
    "/calico/resources/v3/projectcalico.org/workloadendpoints/";

/// Errors talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// Connecting or a request failed.
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
}

/// The fields of a WorkloadEndpoint this module reads.
#[derive(Debug, Deserialize)]
struct WorkloadEndpoint {
    spec: WorkloadEndpointSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadEndpointSpec {
    node: String,
    #[serde(default)]
    interface_name: String,
}

/// Connects to etcd, retrying with capped exponential backoff until it answers.
pub async fn connect(endpoints: &[String]) -> Client {
    let mut delay = Duration::from_millis(200);
    loop {
        match Client::connect(endpoints, None).await {
            Ok(client) => return client,
            Err(error) => {
                warn!(endpoints = endpoints.join(","), %error, retry_in = ?delay, "etcd unreachable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Lists the workload endpoints Calico's datastore places on `node`, as (key, interface name).
/// Values that do not parse are logged with their key and skipped.
pub async fn local_workload_endpoints(
    client: &mut Client,
    endpoints: &[String],
    node: &str,
) -> Result<Vec<(String, String)>, DatastoreError> {
    let response = client
        .get(
            WORKLOAD_ENDPOINTS_PREFIX,
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .map_err(|source| DatastoreError::Etcd {
            endpoints: endpoints.join(","),
            source,
        })?;
    let mut local = Vec::new();
    for kv in response.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        match serde_json::from_slice::<WorkloadEndpoint>(kv.value()) {
            Ok(wep) if wep.spec.node == node => local.push((key, wep.spec.interface_name)),
            Ok(_) => {}
            Err(error) => warn!(%key, %error, "skipping malformed WorkloadEndpoint"),
        }
    }
    Ok(local)
}

/// Connects in the background and logs this node's workload endpoints once, retrying with
/// capped backoff while etcd is away.
pub fn spawn_report(endpoints: Vec<String>, node: String) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            let mut client = connect(&endpoints).await;
            match local_workload_endpoints(&mut client, &endpoints, &node).await {
                Ok(local) => {
                    info!(
                        count = local.len(),
                        "etcd connected; workload endpoints for this node"
                    );
                    for (key, iface) in local {
                        info!(%key, %iface, "workload endpoint");
                    }
                    return;
                }
                Err(error) => warn!(%error, retry_in = ?delay, "listing workload endpoints failed"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_endpoint_fields_parse_from_calico_json() {
        let json = r#"{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint",
            "metadata":{"name":"h1-k8s-p1-eth0","namespace":"default"},
            "spec":{"orchestrator":"k8s","node":"h1","pod":"p1","endpoint":"eth0",
                    "ipNetworks":["192.168.2.1/32"],"interfaceName":"cali0123456789a"}}"#;
        let wep: WorkloadEndpoint = serde_json::from_str(json).unwrap();
        assert_eq!(wep.spec.node, "h1");
        assert_eq!(wep.spec.interface_name, "cali0123456789a");
        assert!(serde_json::from_str::<WorkloadEndpoint>(r#"{"spec":{"node":7}}"#).is_err());
    }
}
