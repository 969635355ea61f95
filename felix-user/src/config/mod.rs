//! `felix run`'s configuration, resolved like Calico's felix resolves its own. Highest first:
//! a command-line flag, a `FELIX_<NAME>` environment variable (Calico's names, any case),
//! FelixConfiguration `node.<nodename>` in etcd, FelixConfiguration `default`, the built-in
//! default. [`table::SETTINGS`] lists every setting; an invalid value from any layer stops
//! felix with a message naming the setting, the layer and what is accepted.
//!
//! A change to either FelixConfiguration while felix runs that changes an effective value makes
//! felix restart itself to apply it, as Calico's felix does ([`Resolved::changed_by`]).

pub mod docs;
pub mod duration;
pub mod etcd;
pub mod layers;
pub mod mode;
pub mod settings;
pub mod show;
pub mod source;
pub mod table;

use std::time::Duration;

use tracing::debug;

pub use layers::{Layers, RawValue, Spec};
pub use mode::Mode;
pub use settings::{ConfigError, Settings};
pub use source::Source;

/// How long felix waits for etcd at start to read FelixConfiguration.
pub const ETCD_TIMEOUT: Duration = Duration::from_secs(10);

/// The resolved configuration and how every value was found.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub settings: Settings,
    pub values: Vec<RawValue>,
    /// The layers it came from (to tell whether a FelixConfiguration change matters).
    pub layers: Layers,
}

/// Resolves `layers` into settings.
pub fn resolve(layers: Layers) -> Result<Resolved, ConfigError> {
    for (name, spec) in [("node", &layers.node), ("default", &layers.default)] {
        for field in spec.iter().flat_map(layers::unknown_fields) {
            debug!(
                resource = name,
                field, "FelixConfiguration field not implemented by felix: ignored"
            );
        }
    }
    let values = layers.pick();
    let settings = Settings::from_values(&values)?;
    Ok(Resolved {
        settings,
        values,
        layers,
    })
}

/// Resolves flags and environment, then reads FelixConfiguration from the etcd they name and
/// resolves again with it. When etcd does not answer within [`ETCD_TIMEOUT`], felix starts
/// without it (it restarts once the syncer brings FelixConfiguration that changes a value).
pub async fn load(mut layers: Layers) -> Result<Resolved, ConfigError> {
    let local = resolve(layers.clone())?;
    match etcd::read_specs(
        &local.settings.etcd_access(),
        &local.settings.node,
        ETCD_TIMEOUT,
    )
    .await
    {
        Ok((node, default)) => {
            layers.node = node;
            layers.default = default;
            resolve(layers)
        }
        Err(ConfigError::Etcd { .. }) => Ok(local),
        Err(other) => Err(other),
    }
}

impl Resolved {
    /// The settings whose value would change if FelixConfiguration `node.<nodename>` and
    /// `default` were `node` and `default` (empty: nothing to do).
    pub fn changed_by(&self, node: Option<Spec>, default: Option<Spec>) -> Vec<&'static str> {
        let layers = Layers {
            node,
            default,
            ..self.layers.clone()
        };
        layers
            .pick()
            .iter()
            .zip(&self.values)
            .filter(|(new, old)| new.text != old.text)
            .map(|(new, _)| new.setting.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_changes_of_effective_values_count() {
        let layers = Layers {
            flags: [
                ("NodeName", "h1".to_owned()),
                ("EtcdEndpoints", "http://e:2379".to_owned()),
                ("HealthPort", "7000".to_owned()),
            ]
            .into(),
            ..Layers::default()
        };
        let resolved = resolve(layers).expect("valid");
        let spec = |v: serde_json::Value| v.as_object().cloned();
        // The flag hides FelixConfiguration's healthPort; unknown fields change nothing.
        assert!(
            resolved
                .changed_by(None, spec(json!({"healthPort": 1, "chainInsertMode": "x"})))
                .is_empty()
        );
        assert_eq!(
            resolved.changed_by(spec(json!({"bpfMapSizeRoute": 128})), None),
            ["BPFMapSizeRoute"]
        );
    }
}
