//! Registers this host as a Calico Node in etcd: create the Node resource, or update its BGP
//! address (and AS number when given) while keeping every field others own. Writes are
//! compare-and-swap transactions on the key's revision, retried on conflict.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use serde_json::{Map, Value, json};

/// Calico's key of a Node resource.
pub fn node_key(node: &str) -> String {
    format!("/calico/resources/v3/projectcalico.org/nodes/{node}")
}

/// Errors registering the node.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the Node at {key} is not a JSON object: {reason}")]
    Malformed { key: String, reason: String },
    #[error("the Node at {0} kept changing under us")]
    Contended(String),
}

/// Returns `existing` (or a new Node) with `spec.bgp.ipv4Address` and, if given,
/// `spec.bgp.asNumber` set; every other field is kept.
pub fn merged_node(
    node: &str,
    existing: Option<Value>,
    ipv4_address: &str,
    as_number: Option<u32>,
) -> Result<Value, String> {
    let mut doc = existing.unwrap_or_else(|| {
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": { "name": node },
            "spec": {}
        })
    });
    let root = doc.as_object_mut().ok_or("not an object")?;
    let spec = root
        .entry("spec")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("spec is not an object")?;
    let bgp = spec
        .entry("bgp")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("spec.bgp is not an object")?;
    bgp.insert("ipv4Address".into(), Value::String(ipv4_address.into()));
    if let Some(asn) = as_number {
        bgp.insert("asNumber".into(), json!(asn));
    }
    Ok(doc)
}

/// Creates or updates the Node; returns whether anything changed.
pub async fn register(
    client: &mut Client,
    node: &str,
    ipv4_address: &str,
    as_number: Option<u32>,
) -> Result<bool, RegisterError> {
    let key = node_key(node);
    for _ in 0..10 {
        let response = client.get(key.as_str(), None).await?;
        let (existing, revision) = match response.kvs().first() {
            Some(kv) => {
                let value: Value =
                    serde_json::from_slice(kv.value()).map_err(|e| RegisterError::Malformed {
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                (Some(value), kv.mod_revision())
            }
            None => (None, 0),
        };
        let unchanged = existing.clone();
        let merged = merged_node(node, existing, ipv4_address, as_number).map_err(|reason| {
            RegisterError::Malformed {
                key: key.clone(),
                reason,
            }
        })?;
        if unchanged.as_ref() == Some(&merged) {
            return Ok(false);
        }
        let guard = if revision == 0 {
            Compare::create_revision(key.as_str(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.as_str(), CompareOp::Equal, revision)
        };
        let txn =
            Txn::new()
                .when([guard])
                .and_then([TxnOp::put(key.as_str(), merged.to_string(), None)]);
        if client.txn(txn).await?.succeeded() {
            return Ok(true);
        }
    }
    Err(RegisterError::Contended(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_gets_the_calico_shape() {
        let doc = merged_node("h1", None, "10.0.0.1/24", None).unwrap();
        assert_eq!(doc["kind"], "Node");
        assert_eq!(doc["metadata"]["name"], "h1");
        assert_eq!(doc["spec"]["bgp"]["ipv4Address"], "10.0.0.1/24");
        assert!(doc["spec"]["bgp"].get("asNumber").is_none());
    }

    #[test]
    fn an_existing_node_keeps_what_others_own() {
        let existing = json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": "h1", "labels": {"rack": "r1"}},
            "spec": {"bgp": {"ipv4Address": "10.9.9.9/24", "routeReflectorClusterID": "1.0.0.1"},
                     "orchRefs": [{"nodeName": "h1", "orchestrator": "k8s"}]}
        });
        let doc = merged_node("h1", Some(existing), "10.0.0.1/24", Some(64512)).unwrap();
        assert_eq!(doc["spec"]["bgp"]["ipv4Address"], "10.0.0.1/24");
        assert_eq!(doc["spec"]["bgp"]["asNumber"], 64512);
        assert_eq!(doc["spec"]["bgp"]["routeReflectorClusterID"], "1.0.0.1");
        assert_eq!(doc["metadata"]["labels"]["rack"], "r1");
        assert_eq!(doc["spec"]["orchRefs"][0]["orchestrator"], "k8s");
        assert!(merged_node("h1", Some(json!([1])), "10.0.0.1/24", None).is_err());
    }
}
