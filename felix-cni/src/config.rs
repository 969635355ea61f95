//! The network configuration on stdin: CNI's fields (`cniVersion`, `name`, `type`, `dns`,
//! `prevResult`, `args.cni.labels`) and ours, named as Calico's plugin names them (`etcd_endpoints`,
//! `nodename`, `nodename_file`, `mtu`, `ipam.ipv4_pools`). Fields felix-cni does not know are
//! ignored, except the Calico ones it cannot honour, which are refused with code 2.
//!
//! Not JSON, or not an object: code 6. An unsupported `cniVersion`: code 1 (checked first).
//! Any other invalid value: code 7.

use calico::etcd_access::{EtcdAccess, TlsFiles};
use std::{collections::BTreeMap, path::PathBuf};

use calico::model::valid_name;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    error::{CniError, Code},
    version,
};

/// Where Calico's node writes the node name, read when the configuration names none.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";
/// IPAM types that mean "felix-cni assigns from Calico IPAM in etcd" (it delegates to none).
pub const IPAM_TYPES: [&str; 2] = ["felix-ipam", "calico-ipam"];

/// A parsed and checked network configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    /// The network's name: the first part of every IPAM handle (`<name>.<container id>`).
    pub name: String,
    pub plugin_type: String,
    pub etcd_endpoints: Vec<String>,
    /// `etcd_ca_cert_file`, `etcd_cert_file`, `etcd_key_file` (for `https://` endpoints).
    pub etcd_tls: TlsFiles,
    pub nodename: Option<String>,
    pub nodename_file: PathBuf,
    /// The configured pod MTU; `None` (absent or 0): chosen by [`crate::mtu`].
    pub mtu: Option<u32>,
    /// Pools to claim blocks from, by CIDR or IPPool name; empty: every usable pool.
    pub ipv4_pools: Vec<String>,
    /// Copied into the ADD result.
    pub dns: Option<Value>,
    /// The previous result (given to CHECK and DEL).
    pub prev_result: Option<Value>,
    /// `args.cni.labels`, put on the WorkloadEndpoint.
    pub labels: BTreeMap<String, String>,
    /// `policy.type == "k8s"`: the endpoint is built from the pod read from the Kubernetes API.
    pub policy_k8s: bool,
    /// `kubernetes.kubeconfig`; `None`: the in-cluster service account (see [`crate::k8s`]).
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: String,
    name: String,
    #[serde(rename = "type")]
    plugin_type: String,
    #[serde(default)]
    dns: Option<Value>,
    #[serde(default)]
    prev_result: Option<Value>,
    #[serde(default)]
    args: Option<RawArgs>,
    #[serde(default, rename = "etcd_endpoints")]
    etcd_endpoints: Option<String>,
    #[serde(default, rename = "etcd_ca_cert_file")]
    etcd_ca_cert_file: Option<String>,
    #[serde(default, rename = "etcd_cert_file")]
    etcd_cert_file: Option<String>,
    #[serde(default, rename = "etcd_key_file")]
    etcd_key_file: Option<String>,
    #[serde(default, rename = "nodename")]
    nodename: Option<String>,
    #[serde(default, rename = "nodename_file")]
    nodename_file: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    ipam: Option<RawIpam>,
    #[serde(default, rename = "datastore_type")]
    datastore_type: Option<String>,
    #[serde(default)]
    policy: Option<RawPolicy>,
    #[serde(default)]
    kubernetes: Option<RawKubernetes>,
}

#[derive(Deserialize)]
struct RawPolicy {
    #[serde(default, rename = "type")]
    policy_type: String,
}

#[derive(Deserialize)]
struct RawKubernetes {
    #[serde(default)]
    kubeconfig: String,
}

#[derive(Deserialize)]
struct RawIpam {
    #[serde(rename = "type")]
    ipam_type: String,
    #[serde(default)]
    ipv4_pools: Vec<String>,
    #[serde(default)]
    assign_ipv6: Option<String>,
}

#[derive(Default, Deserialize)]
struct RawArgs {
    #[serde(default)]
    cni: Option<RawCniArgs>,
}

#[derive(Default, Deserialize)]
struct RawCniArgs {
    #[serde(default)]
    labels: Vec<RawLabel>,
}

#[derive(Deserialize)]
struct RawLabel {
    key: String,
    value: String,
}

/// Calico settings felix-cni cannot honour: present and non-empty means code 2.
const UNSUPPORTED: [&str; 1] = ["etcd_authority"];

/// The `cniVersion` the caller asked for, to answer in (CURRENT when stdin has none).
pub fn requested_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| version::CURRENT.to_string())
}

fn unsupported(key: &str, value: impl std::fmt::Display, why: &str) -> CniError {
    CniError::new(
        Code::UnsupportedField,
        format!("unsupported field {key}={value}: {why}"),
    )
}

impl NetConf {
    /// Parses and checks stdin.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(Code::Decode, "the network configuration is not JSON").details(e)
        })?;
        let Some(object) = value.as_object() else {
            return Err(CniError::new(
                Code::Decode,
                "the network configuration is not a JSON object",
            ));
        };
        match object.get("cniVersion") {
            Some(Value::String(v)) => version::check(v)?,
            _ => return Err(CniError::config("cniVersion is missing or not a string")),
        }
        for key in UNSUPPORTED {
            match object.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(v) => {
                    return Err(unsupported(
                        key,
                        v,
                        "felix-cni reaches etcd at etcd_endpoints only",
                    ));
                }
            }
        }
        let raw: Raw = serde_path_to_error::deserialize(value).map_err(|e| {
            let at = match e.path().to_string() {
                p if p == "." => String::new(),
                p => format!(" at {p}"),
            };
            CniError::config(format!("invalid network configuration{at}: {}", e.inner()))
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: Raw) -> Result<Self, CniError> {
        if !valid_name(&raw.name) {
            return Err(CniError::config(format!(
                "name {:?} must be 1-253 characters without '/' or whitespace",
                raw.name
            )));
        }
        if raw.plugin_type.is_empty() {
            return Err(CniError::config("type is empty"));
        }
        if let Some(ds) = raw.datastore_type.as_deref()
            && ds != "etcdv3"
        {
            return Err(unsupported(
                "datastore_type",
                ds,
                "felix-cni uses etcd (etcdv3) only",
            ));
        }
        let etcd_endpoints = parse_endpoints(raw.etcd_endpoints.as_deref().unwrap_or(""))?;
        let file = |f: Option<String>| f.filter(|f| !f.is_empty()).map(PathBuf::from);
        let etcd_tls = TlsFiles {
            ca: file(raw.etcd_ca_cert_file),
            cert: file(raw.etcd_cert_file),
            key: file(raw.etcd_key_file),
        };
        EtcdAccess::new(etcd_endpoints.clone())
            .with_tls(etcd_tls.clone())
            .check()
            .map_err(|e| CniError::config(e.to_string()))?;
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m),
            Some(m) => {
                return Err(CniError::config(format!("mtu {m} is outside 68-65535")));
            }
        };
        let mut ipv4_pools = Vec::new();
        if let Some(ipam) = raw.ipam {
            if !IPAM_TYPES.contains(&ipam.ipam_type.as_str()) {
                return Err(CniError::config(format!(
                    "ipam.type {:?} is not supported: felix-cni assigns addresses itself \
                     (use one of {})",
                    ipam.ipam_type,
                    IPAM_TYPES.join(", ")
                )));
            }
            if ipam.assign_ipv6.as_deref() == Some("true") {
                return Err(unsupported(
                    "ipam.assign_ipv6",
                    "true",
                    "the dataplane is IPv4 only",
                ));
            }
            if let Some(bad) = ipam.ipv4_pools.iter().find(|p| p.is_empty()) {
                return Err(CniError::config(format!(
                    "ipam.ipv4_pools has an empty entry {bad:?}"
                )));
            }
            ipv4_pools = ipam.ipv4_pools;
        }
        let nodename = raw.nodename.filter(|n| !n.is_empty());
        if let Some(n) = &nodename
            && !valid_name(n)
        {
            return Err(CniError::config(format!("nodename {n:?} is not a name")));
        }
        let mut labels = BTreeMap::new();
        for label in raw.args.and_then(|a| a.cni).unwrap_or_default().labels {
            if label.key.is_empty() {
                return Err(CniError::config(
                    "args.cni.labels: a label has an empty key",
                ));
            }
            labels.insert(label.key, label.value);
        }
        Ok(NetConf {
            cni_version: raw.cni_version,
            name: raw.name,
            plugin_type: raw.plugin_type,
            etcd_endpoints,
            etcd_tls,
            nodename,
            nodename_file: PathBuf::from(
                raw.nodename_file
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| DEFAULT_NODENAME_FILE.to_string()),
            ),
            mtu,
            ipv4_pools,
            dns: raw.dns,
            prev_result: raw.prev_result,
            labels,
            policy_k8s: raw.policy.is_some_and(|p| p.policy_type == "k8s"),
            kubeconfig: raw
                .kubernetes
                .map(|k| k.kubeconfig)
                .filter(|k| !k.is_empty())
                .map(PathBuf::from),
        })
    }

    /// etcd's endpoints and TLS files.
    pub fn etcd_access(&self) -> EtcdAccess {
        EtcdAccess::new(self.etcd_endpoints.clone()).with_tls(self.etcd_tls.clone())
    }

    /// The node name: `nodename`, else the content of `nodename_file`, else the host name
    /// (Calico's order); trimmed and lower-cased as Calico does with host names.
    pub fn node_name(&self) -> Result<String, CniError> {
        let from_file = || std::fs::read_to_string(&self.nodename_file).ok();
        resolve_node_name(self.nodename.as_deref(), from_file, hostname)
    }
}

/// `etcd_endpoints` as Calico writes it: comma-separated `http(s)://host:port` URLs.
fn parse_endpoints(s: &str) -> Result<Vec<String>, CniError> {
    let endpoints: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    if endpoints.is_empty() {
        return Err(CniError::config(
            "etcd_endpoints is missing (e.g. \"http://10.0.0.254:2379\")",
        ));
    }
    for e in &endpoints {
        let authority = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .unwrap_or("");
        if authority.is_empty() || (authority.contains('/') && !authority.ends_with('/')) {
            return Err(CniError::config(format!(
                "etcd_endpoints: {e:?} is not an http(s)://host:port URL"
            )));
        }
    }
    Ok(endpoints)
}

/// Node name resolution, with the file and the host name as inputs (see [`NetConf::node_name`]).
pub fn resolve_node_name(
    configured: Option<&str>,
    file: impl FnOnce() -> Option<String>,
    host: impl FnOnce() -> Option<String>,
) -> Result<String, CniError> {
    let name = match configured {
        Some(n) => n.to_string(),
        None => file()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| host().map(|h| h.trim().to_ascii_lowercase()))
            .ok_or_else(|| {
                CniError::config("no nodename: set it in the configuration or in nodename_file")
            })?,
    };
    if valid_name(&name) {
        Ok(name)
    } else {
        Err(CniError::config(format!(
            "node name {name:?} is not a name"
        )))
    }
}

/// The host name (`gethostname`).
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn good() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "felix-cni",
            "etcd_endpoints": "http://10.0.0.254:2379",
            "nodename": "h1",
            "ipam": {"type": "felix-ipam", "ipv4_pools": ["192.168.0.0/16"]},
            "log_level": "info",
            "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}}
        })
    }

    fn code_of(v: Value) -> (u32, String) {
        let e = parse(v).unwrap_err();
        (e.code.number(), e.msg)
    }

    #[test]
    fn a_calico_style_configuration() {
        let conf = parse(good()).unwrap();
        assert_eq!(conf.cni_version, "1.0.0");
        assert_eq!(conf.name, "k8s-pod-network");
        assert_eq!(conf.etcd_endpoints, ["http://10.0.0.254:2379"]);
        assert_eq!(conf.mtu, None);
        assert_eq!(conf.ipv4_pools, ["192.168.0.0/16"]);
        assert_eq!(conf.labels["app"], "web");
        assert_eq!(conf.node_name().unwrap(), "h1");
        assert_eq!(
            conf.nodename_file,
            PathBuf::from("/var/lib/calico/nodename")
        );

        let mut v = good();
        v["mtu"] = json!(9000);
        v["etcd_endpoints"] = json!("http://a:2379, http://b:2379");
        v.as_object_mut().unwrap().remove("ipam");
        let conf = parse(v).unwrap();
        assert_eq!(conf.mtu, Some(9000));
        assert_eq!(conf.etcd_endpoints, ["http://a:2379", "http://b:2379"]);
        assert!(conf.ipv4_pools.is_empty(), "no ipam: every usable pool");
        assert!(!conf.policy_k8s && conf.kubeconfig.is_none());
    }

    #[test]
    fn kubernetes_policy_and_kubeconfig() {
        let mut v = good();
        v["policy"] = json!({"type": "k8s"});
        v["kubernetes"] = json!({"kubeconfig": "/etc/cni/net.d/felix-kubeconfig"});
        let conf = parse(v).unwrap();
        assert!(conf.policy_k8s);
        assert_eq!(
            conf.kubeconfig,
            Some(PathBuf::from("/etc/cni/net.d/felix-kubeconfig"))
        );
        let mut v = good();
        v["policy"] = json!({"type": "none"});
        v["kubernetes"] = json!({"kubeconfig": ""});
        let conf = parse(v).unwrap();
        assert!(!conf.policy_k8s && conf.kubeconfig.is_none());
    }

    #[test]
    fn decoding_failures_are_code_6() {
        for bad in [&b"not json"[..], b"", b"[1,2]", b"\"x\""] {
            let e = NetConf::parse(bad).unwrap_err();
            assert_eq!(e.code, Code::Decode, "{bad:?}");
        }
    }

    #[test]
    fn versions_are_checked_first() {
        let mut v = good();
        v["cniVersion"] = json!("0.2.0");
        v["mtu"] = json!(-1);
        assert_eq!(code_of(v).0, 1);
        let mut v = good();
        v.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(code_of(v).0, 7);
        let mut v = good();
        v.as_object_mut().unwrap().remove("name");
        assert_eq!(
            code_of(v),
            (
                7,
                "invalid network configuration: missing field `name`".into()
            )
        );
    }

    #[test]
    fn invalid_values_are_code_7_and_unsupported_fields_code_2() {
        let cases: Vec<(&str, Value, u32, &str)> = vec![
            ("name", json!(""), 7, "name"),
            ("name", json!("a/b"), 7, "name"),
            ("type", json!(""), 7, "type"),
            ("mtu", json!(40), 7, "mtu"),
            ("mtu", json!("x"), 7, "mtu"),
            ("etcd_endpoints", json!(""), 7, "etcd_endpoints"),
            (
                "etcd_endpoints",
                json!("10.0.0.1:2379"),
                7,
                "etcd_endpoints",
            ),
            ("etcd_endpoints", json!("https://e:2379"), 7, "no CA file"),
            ("ipam", json!({"type": "host-local"}), 7, "ipam.type"),
            (
                "ipam",
                json!({"type": "calico-ipam", "assign_ipv6": "true"}),
                2,
                "assign_ipv6",
            ),
            ("datastore_type", json!("kubernetes"), 2, "datastore_type"),
            ("etcd_authority", json!("e:2379"), 2, "etcd_authority"),
            ("nodename", json!("a b"), 7, "nodename"),
            (
                "args",
                json!({"cni": {"labels": [{"key": "", "value": "x"}]}}),
                7,
                "labels",
            ),
        ];
        for (key, value, code, word) in cases {
            let mut v = good();
            v[key] = value.clone();
            let (got, msg) = code_of(v);
            assert_eq!(got, code, "{key}={value}: {msg}");
            assert!(msg.contains(word), "{key}={value}: {msg}");
        }
    }

    #[test]
    fn requested_version_falls_back_to_current() {
        assert_eq!(requested_version(br#"{"cniVersion":"0.4.0"}"#), "0.4.0");
        assert_eq!(requested_version(b"garbage"), version::CURRENT);
        assert_eq!(requested_version(b"{}"), version::CURRENT);
    }

    #[test]
    fn node_name_order_is_calicos() {
        let none = || None;
        let file = || Some("node-from-file\n".to_string());
        let host = || Some("Host-1".to_string());
        assert_eq!(resolve_node_name(Some("n1"), file, host).unwrap(), "n1");
        assert_eq!(
            resolve_node_name(None, file, host).unwrap(),
            "node-from-file"
        );
        assert_eq!(resolve_node_name(None, none, host).unwrap(), "host-1");
        let e = resolve_node_name(None, none, none).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(hostname().is_some_and(|h| !h.is_empty()));
    }
}
