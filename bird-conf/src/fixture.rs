//! A cluster written down as one YAML document, loaded into felix's cache exactly as the etcd
//! syncer would load it. The golden tests and the BIRD tests render from these.
//!
//! ```yaml
//! node: h1                      # the node to render for
//! resources:                    # Calico v3 resources, as `felix apply` takes them
//!   - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h1},
//!      spec: {bgp: {ipv4Address: 10.0.0.1/24}}}
//! affinities:                   # block affinities (state defaults to confirmed)
//!   - {node: h1, cidr: 192.168.2.0/26}
//! ```

use calico::{
    datastore::{KeyValue, Update},
    ipam::affinity_key,
    model::Resource,
    store::Store,
};
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::{Value, json};

/// Why a fixture does not load.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("fixture: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("fixture resource {index}: {reason}")]
    Resource { index: usize, reason: String },
}

/// One block affinity.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureAffinity {
    pub node: String,
    pub cidr: Ipv4Net,
    #[serde(default = "confirmed")]
    pub state: String,
    #[serde(default)]
    pub deleted: bool,
}

fn confirmed() -> String {
    "confirmed".into()
}

/// A cluster and the node to render for.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub node: String,
    #[serde(default)]
    pub resources: Vec<Value>,
    #[serde(default)]
    pub affinities: Vec<FixtureAffinity>,
}

impl Fixture {
    /// Parses a fixture.
    pub fn parse(text: &str) -> Result<Self, FixtureError> {
        Ok(serde_yaml_ng::from_str(text)?)
    }

    /// The etcd keys and values Calico would store for it.
    pub fn key_values(&self) -> Result<Vec<KeyValue>, FixtureError> {
        let mut kvs = Vec::new();
        for (index, value) in self.resources.iter().enumerate() {
            let resource =
                Resource::from_value(value.clone(), None).map_err(|e| FixtureError::Resource {
                    index,
                    reason: e.to_string(),
                })?;
            kvs.push((resource.key(), resource.to_json()));
        }
        for a in &self.affinities {
            let value = json!({"state": a.state, "deleted": a.deleted});
            kvs.push((affinity_key(&a.node, a.cidr), value.to_string()));
        }
        Ok(kvs
            .into_iter()
            .zip(1..)
            .map(|((key, value), revision)| KeyValue {
                key,
                value: value.into_bytes(),
                revision,
                created: revision,
            })
            .collect())
    }

    /// A cache holding it, as after the syncer's first listing.
    pub fn store(&self) -> Result<Store, FixtureError> {
        let kvs = self.key_values()?;
        let mut store = Store::new();
        store.apply(Update::Snapshot {
            revision: kvs.len() as i64,
            kvs,
        });
        Ok(store)
    }
}
