//! The raw inputs of the configuration, and picking each setting's value from the highest layer
//! that has one.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    source::Source,
    table::{SETTINGS, Setting},
};

/// A FelixConfiguration `spec` as stored in etcd.
pub type Spec = Map<String, Value>;

/// What `felix run` was given, layer by layer.
#[derive(Clone, Debug, Default)]
pub struct Layers {
    /// Flags given on the command line, by setting name (not clap's defaults).
    pub flags: BTreeMap<&'static str, String>,
    /// The process environment (only `FELIX_*` variables matter).
    pub env: Vec<(String, String)>,
    /// The spec of FelixConfiguration `node.<nodename>`, if it exists.
    pub node: Option<Spec>,
    /// The spec of FelixConfiguration `default`, if it exists.
    pub default: Option<Spec>,
}

/// One setting's chosen value and where it came from.
#[derive(Clone, Debug)]
pub struct RawValue {
    pub setting: &'static Setting,
    /// The text; `None` when no layer set it and there is no default.
    pub text: Option<String>,
    pub source: Source,
    /// The flag, variable or field it was read from (for messages).
    pub origin: String,
}

impl Layers {
    /// Each setting's value from the highest layer that has one.
    pub fn pick(&self) -> Vec<RawValue> {
        SETTINGS.iter().map(|s| self.pick_one(s)).collect()
    }

    fn pick_one(&self, setting: &'static Setting) -> RawValue {
        let found = |text: String, source, origin: String| RawValue {
            setting,
            text: Some(text),
            source,
            origin,
        };
        if let Some(text) = self.flags.get(setting.name) {
            return found(text.clone(), Source::Flag, format!("--{}", setting.flag));
        }
        for wanted in setting.env {
            if let Some((name, text)) = self
                .env
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            {
                return found(text.clone(), Source::Env, name.clone());
            }
        }
        if let Some(field) = setting.field {
            for (spec, source, name) in [
                (&self.node, Source::NodeConfig, "node.<nodename>"),
                (&self.default, Source::DefaultConfig, "default"),
            ] {
                if let Some(text) = spec.as_ref().and_then(|s| s.get(field)).and_then(spec_text) {
                    let origin = format!("FelixConfiguration {name} spec.{field}");
                    return found(text, source, origin);
                }
            }
        }
        RawValue {
            setting,
            text: setting.default.map(str::to_owned),
            source: Source::BuiltIn,
            origin: "built-in default".into(),
        }
    }
}

/// A spec field's value in the text form the settings parse: strings as they are, numbers and
/// booleans printed, lists comma-joined, Calico's `{protocol, port, net}` objects as
/// `proto:[net:]port`. `null` counts as absent.
pub fn spec_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(item_text).collect();
            Some(if parts.is_empty() {
                "none".into()
            } else {
                parts.join(",")
            })
        }
        Value::Object(_) => Some(value.to_string()),
    }
}

fn item_text(item: &Value) -> String {
    match item {
        Value::Object(fields) => {
            let text = |k: &str| fields.get(k).and_then(spec_text).unwrap_or_default();
            let (protocol, net, port) = (text("protocol"), text("net"), text("port"));
            if net.is_empty() {
                format!("{protocol}:{port}")
            } else {
                format!("{protocol}:{net}:{port}")
            }
        }
        other => spec_text(other).unwrap_or_default(),
    }
}

/// The spec fields felix does not read (Calico has many more settings than felix implements).
pub fn unknown_fields(spec: &Spec) -> Vec<&str> {
    spec.keys()
        .map(String::as_str)
        .filter(|key| !SETTINGS.iter().any(|s| s.field == Some(*key)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: Value) -> Option<Spec> {
        value.as_object().cloned()
    }

    fn value_of<'a>(values: &'a [RawValue], name: &str) -> &'a RawValue {
        values.iter().find(|v| v.setting.name == name).expect(name)
    }

    #[test]
    fn each_layer_wins_over_the_ones_below() {
        let mut layers = Layers {
            default: spec(json!({"prometheusMetricsPort": 1001})),
            ..Layers::default()
        };
        let port = |layers: &Layers| {
            let v = value_of(&layers.pick(), "PrometheusMetricsPort").clone();
            (v.text.expect("a value"), v.source)
        };
        assert_eq!(port(&Layers::default()), ("9091".into(), Source::BuiltIn));
        assert_eq!(port(&layers), ("1001".into(), Source::DefaultConfig));
        layers.node = spec(json!({"prometheusMetricsPort": 1002}));
        assert_eq!(port(&layers), ("1002".into(), Source::NodeConfig));
        layers.env = vec![("FELIX_PROMETHEUSMETRICSPORT".into(), "1003".into())];
        assert_eq!(port(&layers), ("1003".into(), Source::Env));
        layers.flags.insert("PrometheusMetricsPort", "1004".into());
        assert_eq!(port(&layers), ("1004".into(), Source::Flag));
    }

    #[test]
    fn environment_names_match_in_any_case_and_report_their_spelling() {
        let layers = Layers {
            env: vec![("Felix_BPFMapSizeConntrack".into(), "64".into())],
            ..Layers::default()
        };
        let v = value_of(&layers.pick(), "BPFMapSizeConntrack").clone();
        assert_eq!(v.text.as_deref(), Some("64"));
        assert_eq!(v.origin, "Felix_BPFMapSizeConntrack");
    }

    #[test]
    fn settings_without_a_field_ignore_felix_configuration() {
        let layers = Layers {
            default: spec(json!({"uplink": "eth9"})),
            ..Layers::default()
        };
        let v = value_of(&layers.pick(), "Uplink").clone();
        assert_eq!((v.text.as_deref(), v.source), (None, Source::BuiltIn));
    }

    #[test]
    fn null_fields_fall_through_to_the_next_layer() {
        let layers = Layers {
            node: spec(json!({"healthPort": null})),
            default: spec(json!({"healthPort": 7000})),
            ..Layers::default()
        };
        let v = value_of(&layers.pick(), "HealthPort").clone();
        assert_eq!(
            (v.text.as_deref(), v.source),
            (Some("7000"), Source::DefaultConfig)
        );
    }

    #[test]
    fn calicos_failsafe_objects_become_its_text_format() {
        let value = json!([
            {"protocol": "TCP", "port": 22},
            {"protocol": "UDP", "net": "0.0.0.0/0", "port": 68}
        ]);
        assert_eq!(
            spec_text(&value).as_deref(),
            Some("TCP:22,UDP:0.0.0.0/0:68")
        );
        assert_eq!(spec_text(&json!([])).as_deref(), Some("none"));
    }

    #[test]
    fn unknown_fields_are_listed() {
        let spec = json!({"healthPort": 1, "ipv6Support": false, "chainInsertMode": "Append"});
        let mut unknown = unknown_fields(spec.as_object().expect("object"));
        unknown.sort();
        assert_eq!(unknown, ["chainInsertMode", "ipv6Support"]);
    }
}
