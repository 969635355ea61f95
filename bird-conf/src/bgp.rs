//! Typed views of the two BGP resources felix's model keeps opaque: BGPConfiguration and BGPPeer.
//!
//! Only the fields bird-conf renders are read; like Calico's client, unknown fields are ignored.
//! A value that does not read (a wrong type, a selector that does not parse, a `peerIP` that is
//! not an address) is an error naming the resource and the field; the caller skips that resource.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use calico::{model::AsNumber, selector::Selector};
use serde::Deserialize;
use serde_json::Value;

/// Calico's AS number when neither the node nor the `default` BGPConfiguration sets one.
pub const DEFAULT_AS: u32 = 64512;
/// Name of the cluster-wide BGPConfiguration.
pub const DEFAULT_CONFIG: &str = "default";

/// A BGP resource that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name}: {field}: {reason}")]
pub struct BgpError {
    pub kind: &'static str,
    pub name: String,
    pub field: String,
    pub reason: String,
}

/// `spec` of a BGPConfiguration (`default` for the cluster, `node.<name>` for one node).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpConfigurationSpec {
    /// Whether every node peers with every other node (Calico's default: on).
    #[serde(default)]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The cluster's AS number (nodes without `spec.bgp.asNumber` use it).
    #[serde(default)]
    pub as_number: Option<AsNumber>,
    /// How much BIRD logs: `Debug`, `Info` (default), `Warning`, `Error`, `Fatal`, `None`.
    #[serde(default)]
    pub log_severity_screen: Option<String>,
}

impl BgpConfigurationSpec {
    /// Reads an opaque spec.
    pub fn from_value(name: &str, spec: &Value) -> Result<Self, BgpError> {
        let config: Self = decode("BGPConfiguration", name, spec)?;
        if let Some(level) = &config.log_severity_screen {
            LogSeverity::from_str(level).map_err(|reason| BgpError {
                kind: "BGPConfiguration",
                name: name.into(),
                field: "spec.logSeverityScreen".into(),
                reason,
            })?;
        }
        Ok(config)
    }

    /// The log severity, when set and valid.
    pub fn log_severity(&self) -> Option<LogSeverity> {
        self.log_severity_screen.as_deref()?.parse().ok()
    }
}

/// Calico's `logSeverityScreen` levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogSeverity {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Fatal,
    None,
}

impl FromStr for LogSeverity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const ALL: [(&str, LogSeverity); 6] = [
            ("Debug", LogSeverity::Debug),
            ("Info", LogSeverity::Info),
            ("Warning", LogSeverity::Warning),
            ("Error", LogSeverity::Error),
            ("Fatal", LogSeverity::Fatal),
            ("None", LogSeverity::None),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, level)| *level)
            .ok_or_else(|| {
                format!("unknown level {s:?} (expected Debug, Info, Warning, Error, Fatal or None)")
            })
    }
}

/// `spec` of a BGPPeer, as stored.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPeerSpec {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    node_selector: Option<String>,
    #[serde(default, rename = "peerIP")]
    peer_ip: Option<String>,
    #[serde(default)]
    as_number: Option<AsNumber>,
    #[serde(default)]
    peer_selector: Option<String>,
    #[serde(default)]
    keep_original_next_hop: bool,
    #[serde(default)]
    source_address: Option<String>,
}

/// Which nodes a BGPPeer applies to (its local side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalNodes {
    /// Neither `node` nor `nodeSelector`: every node (a global peer).
    All,
    /// `node`: that node.
    Named(String),
    /// `nodeSelector`: the nodes it matches.
    Selected(Selector),
}

/// Who a BGPPeer peers with (its remote side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    /// `peerIP` (`a.b.c.d` or `a.b.c.d:port`) with `asNumber` (the cluster's AS when unset).
    Address {
        ip: IpAddr,
        port: Option<u16>,
        as_number: Option<u32>,
    },
    /// `peerSelector`: every node it matches, at its BGP address and AS.
    Nodes(Selector),
}

/// A BGPPeer, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPeer {
    pub name: String,
    pub local: LocalNodes,
    pub remote: Remote,
    /// `keepOriginalNextHop`: pass routes on to an eBGP peer with their next hop unchanged.
    pub keep_next_hop: bool,
    /// `sourceAddress`: `UseNodeIP` (default) binds the session to the node's address; `None`
    /// lets the kernel choose.
    pub use_node_ip: bool,
}

impl BgpPeer {
    /// Reads an opaque spec, checking what Calico's validation checks.
    pub fn from_value(name: &str, spec: &Value) -> Result<Self, BgpError> {
        let raw: RawPeerSpec = decode("BGPPeer", name, spec)?;
        let fail = |field: &str, reason: String| BgpError {
            kind: "BGPPeer",
            name: name.into(),
            field: field.into(),
            reason,
        };
        let selector =
            |field: &str, text: &str| Selector::parse(text).map_err(|e| fail(field, e.to_string()));
        let local = match (non_empty(&raw.node), non_empty(&raw.node_selector)) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "spec.node",
                    "node and nodeSelector cannot both be set".into(),
                ));
            }
            (Some(node), None) => LocalNodes::Named(node.to_string()),
            (None, Some(text)) => LocalNodes::Selected(selector("spec.nodeSelector", text)?),
            (None, None) => LocalNodes::All,
        };
        let remote = match (non_empty(&raw.peer_ip), non_empty(&raw.peer_selector)) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "spec.peerIP",
                    "peerIP and peerSelector cannot both be set".into(),
                ));
            }
            (None, None) => {
                return Err(fail(
                    "spec.peerIP",
                    "one of peerIP and peerSelector is required".into(),
                ));
            }
            (None, Some(text)) => {
                if raw.as_number.is_some() {
                    return Err(fail(
                        "spec.asNumber",
                        "asNumber cannot be set with peerSelector (the nodes' own AS is used)"
                            .into(),
                    ));
                }
                Remote::Nodes(selector("spec.peerSelector", text)?)
            }
            (Some(text), None) => {
                let (ip, port) = parse_peer_ip(text).ok_or_else(|| {
                    fail(
                        "spec.peerIP",
                        format!("{text:?} is not an IP address or IP:port"),
                    )
                })?;
                Remote::Address {
                    ip,
                    port,
                    as_number: raw.as_number.map(|a| a.0),
                }
            }
        };
        let use_node_ip = match raw.source_address.as_deref() {
            None | Some("") | Some("UseNodeIP") => true,
            Some("None") => false,
            Some(other) => {
                return Err(fail(
                    "spec.sourceAddress",
                    format!("unknown value {other:?} (expected UseNodeIP or None)"),
                ));
            }
        };
        Ok(BgpPeer {
            name: name.into(),
            local,
            remote,
            keep_next_hop: raw.keep_original_next_hop,
            use_node_ip,
        })
    }
}

/// The value, unless absent or blank.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.trim().is_empty())
}

/// `a.b.c.d`, `a.b.c.d:port`, `x::y` or `[x::y]:port`.
fn parse_peer_ip(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let addr = text.parse::<SocketAddr>().ok()?;
    Some((addr.ip(), Some(addr.port())))
}

fn decode<T: for<'de> Deserialize<'de>>(
    kind: &'static str,
    name: &str,
    spec: &Value,
) -> Result<T, BgpError> {
    serde_json::from_value(spec.clone()).map_err(|e| BgpError {
        kind,
        name: name.into(),
        field: "spec".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_a_global_address_peer() {
        let peer = BgpPeer::from_value(
            "tor",
            &json!({"peerIP": "10.0.0.254:1179", "asNumber": "65001", "keepOriginalNextHop": true}),
        )
        .expect("valid");
        assert_eq!(peer.local, LocalNodes::All);
        assert_eq!(
            peer.remote,
            Remote::Address {
                ip: "10.0.0.254".parse().expect("ip"),
                port: Some(1179),
                as_number: Some(65001)
            }
        );
        assert!(peer.keep_next_hop && peer.use_node_ip);
    }

    #[test]
    fn reads_selectors() {
        let peer = BgpPeer::from_value(
            "to-rrs",
            &json!({"nodeSelector": "!has(rr)", "peerSelector": "has(rr)", "sourceAddress": "None"}),
        )
        .expect("valid");
        assert!(matches!(peer.local, LocalNodes::Selected(_)));
        assert!(matches!(peer.remote, Remote::Nodes(_)));
        assert!(!peer.use_node_ip);
    }

    #[test]
    fn rejects_what_calico_rejects() {
        let cases = [
            (
                json!({"node": "a", "nodeSelector": "all()", "peerIP": "1.2.3.4"}),
                "spec.node",
            ),
            (
                json!({"peerIP": "1.2.3.4", "peerSelector": "all()"}),
                "spec.peerIP",
            ),
            (
                json!({"peerSelector": "all()", "asNumber": 1}),
                "spec.asNumber",
            ),
            (
                json!({"nodeSelector": "a ==", "peerIP": "1.2.3.4"}),
                "spec.nodeSelector",
            ),
            (json!({"peerIP": "host.example"}), "spec.peerIP"),
            (json!({}), "spec.peerIP"),
            (json!({"peerIP": "1.2.3.4", "asNumber": "x"}), "spec"),
            (
                json!({"peerIP": "1.2.3.4", "sourceAddress": "Mine"}),
                "spec.sourceAddress",
            ),
        ];
        for (spec, field) in cases {
            let err = BgpPeer::from_value("p", &spec).expect_err("invalid");
            assert_eq!(err.field, field, "{spec}: {err}");
        }
    }

    #[test]
    fn reads_configuration() {
        let c = BgpConfigurationSpec::from_value(
            "default",
            &json!({"nodeToNodeMeshEnabled": false, "asNumber": 65000, "logSeverityScreen": "debug", "listenPort": 179}),
        )
        .expect("valid");
        assert_eq!(c.node_to_node_mesh_enabled, Some(false));
        assert_eq!(c.as_number, Some(AsNumber(65000)));
        assert_eq!(c.log_severity(), Some(LogSeverity::Debug));
        let err =
            BgpConfigurationSpec::from_value("default", &json!({"logSeverityScreen": "loud"}))
                .expect_err("invalid");
        assert_eq!(err.field, "spec.logSeverityScreen");
    }
}
