//! Reads FelixConfiguration `default` and `node.<nodename>` from etcd at start.

use std::time::Duration;

use calico::{
    etcd_access::EtcdAccess,
    model::{FelixConfigurationSpec, Resource},
};
use serde_json::Value;
use tracing::warn;

use super::{layers::Spec, settings::ConfigError};

/// etcd key of the FelixConfiguration called `name`.
pub fn key(name: &str) -> String {
    format!("/calico/resources/v3/projectcalico.org/felixconfigurations/{name}")
}

/// The name of a node's own FelixConfiguration.
pub fn node_resource(node: &str) -> String {
    format!("node.{node}")
}

/// The `spec` of a stored FelixConfiguration, read through the same model as the agent's
/// datastore cache reads it (so that both see the same values); an error when it does not
/// parse or validate.
pub fn spec_of(value: &[u8], name: &str) -> Result<Spec, String> {
    match Resource::from_etcd(&key(name), value) {
        Ok(Resource::FelixConfiguration(object)) => spec_value(&object.spec),
        Ok(_) => Err(format!("{} holds another kind", key(name))),
        Err(error) => Err(format!("FelixConfiguration {name}: {error}")),
    }
}

/// A parsed spec back in its JSON form.
pub fn spec_value(spec: &FelixConfigurationSpec) -> Result<Spec, String> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err("the spec is not an object".into()),
        Err(error) => Err(error.to_string()),
    }
}

/// The specs of `node.<node>` and `default` (each `None` when absent). Gives up after
/// `timeout` when etcd does not answer; a stored value that is not JSON is an error.
pub async fn read_specs(
    access: &EtcdAccess,
    node: &str,
    timeout: Duration,
) -> Result<(Option<Spec>, Option<Spec>), ConfigError> {
    let fail = |reason: String| ConfigError::Etcd {
        endpoints: access.joined(),
        reason,
    };
    let read = async {
        let mut client = access
            .connect(etcd_client::ConnectOptions::new(), timeout)
            .await
            .map_err(|e| e.to_string())?;
        let mut specs = Vec::new();
        for name in [node_resource(node), "default".to_owned()] {
            let response = client
                .get(key(&name), None)
                .await
                .map_err(|e| e.to_string())?;
            let spec = match response.kvs().first().map(|kv| spec_of(kv.value(), &name)) {
                Some(Ok(spec)) => Some(spec),
                Some(Err(error)) => {
                    // The agent's cache skips it too (as malformed): the same view.
                    warn!(%error, "FelixConfiguration skipped");
                    None
                }
                None => None,
            };
            specs.push(spec);
        }
        let default = specs.pop().flatten();
        let node = specs.pop().flatten();
        Ok::<_, String>((node, default))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result.map_err(fail),
        Err(_) => {
            warn!(
                endpoints = access.joined(),
                ?timeout,
                "etcd did not answer: starting without FelixConfiguration"
            );
            Err(fail(format!("no answer within {timeout:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_taken_from_the_resource() {
        let value = br#"{"apiVersion":"projectcalico.org/v3","kind":"FelixConfiguration","metadata":{"name":"default"},"spec":{"healthPort":1,"chainInsertMode":"Append"}}"#;
        let spec = spec_of(value, "default").expect("valid");
        assert_eq!(spec.get("healthPort"), Some(&Value::from(1)));
        assert_eq!(spec.get("chainInsertMode"), Some(&Value::from("Append")));
        assert!(spec_of(b"not json", "default").is_err());
    }

    #[test]
    fn keys_follow_calicos_layout() {
        assert_eq!(
            key(&node_resource("h1")),
            "/calico/resources/v3/projectcalico.org/felixconfigurations/node.h1"
        );
    }
}
