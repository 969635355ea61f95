//! The ADD result (spec 1.0 "Success"): the interfaces made, the pod's address with the index of
//! its interface, the routes, and `dns` passed through from the configuration. Written in the
//! caller's `cniVersion` (before 1.0.0, `ips` also carry `"version": "4"`).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{error::CniError, names, version};

/// An interface in a result; `sandbox` is the netns path for the pod's side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address, with the index into `interfaces` of the interface that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    pub address: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub interface: usize,
}

/// A route the plugin set up in the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub dst: Ipv4Net,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
}

/// A successful ADD.
#[derive(Clone, Debug, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Option<Value>,
}

impl CniResult {
    /// The result of wiring a pod: host veth first, then the pod's interface (which holds the
    /// /32), and the default route via Calico's gateway.
    pub fn for_pod(
        host_veth: &str,
        pod_ifname: &str,
        pod_mac: &str,
        sandbox: &str,
        ip: Ipv4Addr,
        dns: Option<Value>,
    ) -> Self {
        CniResult {
            interfaces: vec![
                Interface {
                    name: host_veth.to_string(),
                    mac: names::format_mac(&names::HOST_MAC),
                    sandbox: None,
                },
                Interface {
                    name: pod_ifname.to_string(),
                    mac: pod_mac.to_string(),
                    sandbox: Some(sandbox.to_string()),
                },
            ],
            ips: vec![IpConfig {
                address: Ipv4Net::from(ip),
                gateway: Some(names::GATEWAY),
                interface: 1,
            }],
            routes: vec![Route {
                dst: Ipv4Net::default(),
                gw: Some(names::GATEWAY),
            }],
            dns,
        }
    }

    /// The result JSON in `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let with_version = version::ips_carry_version(cni_version);
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({"address": ip.address.to_string(), "interface": ip.interface});
                if let Some(gw) = ip.gateway {
                    v["gateway"] = json!(gw.to_string());
                }
                if with_version {
                    v["version"] = json!("4");
                }
                v
            })
            .collect();
        let mut v = json!({
            "cniVersion": cni_version,
            "interfaces": self.interfaces,
            "ips": ips,
            "routes": self.routes,
        });
        if let Some(dns) = &self.dns {
            v["dns"] = dns.clone();
        }
        v
    }
}

/// The IPv4 addresses of a previous result (`prevResult.ips[].address`), any version.
pub fn prev_result_ips(prev: &Value) -> Result<Vec<Ipv4Net>, CniError> {
    let Some(ips) = prev.get("ips") else {
        return Ok(Vec::new());
    };
    let Some(ips) = ips.as_array() else {
        return Err(CniError::config("prevResult.ips is not a list"));
    };
    let mut out = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let text = ip.get("address").and_then(Value::as_str).unwrap_or("");
        match text.parse::<ipnet::IpNet>() {
            Ok(ipnet::IpNet::V4(net)) => out.push(net),
            Ok(ipnet::IpNet::V6(_)) => {}
            Err(_) => {
                return Err(CniError::config(format!(
                    "prevResult.ips[{i}].address {text:?} is not a CIDR"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> CniResult {
        CniResult::for_pod(
            "cali1037a54e65e",
            "eth0",
            "02:00:00:00:00:01",
            "/run/netns/pod1",
            Ipv4Addr::new(192, 168, 0, 5),
            Some(json!({"nameservers": ["10.96.0.10"]})),
        )
    }

    #[test]
    fn result_json_is_the_specs() {
        assert_eq!(
            result().to_json("1.0.0"),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cali1037a54e65e", "mac": "ee:ee:ee:ee:ee:ee"},
                    {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/pod1"}
                ],
                "ips": [{"address": "192.168.0.5/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {"nameservers": ["10.96.0.10"]}
            })
        );
    }

    #[test]
    fn older_versions_carry_the_ip_version() {
        let v = result().to_json("0.4.0");
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        let mut r = result();
        r.dns = None;
        assert!(r.to_json("1.0.0").get("dns").is_none());
    }

    #[test]
    fn prev_results_round_trip() {
        let v = result().to_json("1.0.0");
        assert_eq!(
            prev_result_ips(&v).unwrap(),
            vec!["192.168.0.5/32".parse::<Ipv4Net>().unwrap()]
        );
        assert!(prev_result_ips(&json!({})).unwrap().is_empty());
        assert!(prev_result_ips(&json!({"ips": 3})).is_err());
        assert!(prev_result_ips(&json!({"ips": [{"address": "x"}]})).is_err());
        let v6 = json!({"ips": [{"address": "fd00::1/128"}]});
        assert!(prev_result_ips(&v6).unwrap().is_empty());
    }
}
