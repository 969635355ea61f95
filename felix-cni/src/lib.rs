//! felix-cni: a CNI spec 1.0 plugin for this dataplane, in Calico's image.
//!
//! The runtime runs the binary with `CNI_*` variables ([`env`]) and the network configuration
//! on stdin ([`config`]). ADD takes an address from Calico IPAM in etcd ([`ipam`]), creates the
//! veth pair with the pod's MTU ([`mtu`]) and configures the pod's side ([`dataplane`]) and
//! writes the WorkloadEndpoint felix programs the host from ([`wep`]); it prints the result ([`result`]). DEL undoes all of it
//! and can be repeated; CHECK compares ([`verify`]); VERSION lists [`version::SUPPORTED`].
//! Failures are CNI error JSON on stdout with the spec's codes ([`error`]).

pub mod cmd;
pub mod config;
pub mod dataplane;
pub mod env;
pub mod error;
pub mod etcd;
pub mod ipam;
pub mod k8s;
pub mod mtu;
pub mod names;
pub mod netns;
pub mod result;
pub mod verify;
pub mod version;
pub mod wep;

use serde_json::Value;

use crate::{
    config::NetConf,
    env::{CniEnv, Command},
    error::CniError,
};

/// What the binary prints on stdout, and whether it exits with success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub stdout: String,
    pub success: bool,
}

/// Runs one call: `var` reads the environment, `stdin` is the network configuration.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Response {
    let requested = config::requested_version(stdin);
    let answer_in = if version::SUPPORTED.contains(&requested.as_str()) {
        requested
    } else {
        version::CURRENT.to_string()
    };
    match execute(&var, stdin, &answer_in) {
        Ok(out) => Response {
            stdout: out.map(|v| v.to_string()).unwrap_or_default(),
            success: true,
        },
        Err(e) => Response {
            stdout: e.to_json(&answer_in).to_string(),
            success: false,
        },
    }
}

fn execute(
    var: &impl Fn(&str) -> Option<String>,
    stdin: &[u8],
    version: &str,
) -> Result<Option<Value>, CniError> {
    let command = match var("CNI_COMMAND").filter(|c| !c.is_empty()) {
        Some(c) => Command::parse(&c)?,
        None => return Err(CniError::env("CNI_COMMAND is missing")),
    };
    if command == Command::Version {
        return Ok(Some(version::version_info(version)));
    }
    let env = CniEnv::from_vars(command, var)?;
    let conf = NetConf::parse(stdin)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::plugin(format!("tokio runtime: {e}")))?;
    runtime.block_on(async {
        match command {
            Command::Add => cmd::add(&env, &conf).await.map(Some),
            Command::Del => cmd::del(&env, &conf).await.map(|()| None),
            Command::Check => cmd::check(&env, &conf).await.map(|()| None),
            Command::Version => Ok(Some(version::version_info(version))),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn call(vars: &[(&str, &str)], stdin: &str) -> (Value, bool) {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = run(|k| map.get(k).cloned(), stdin.as_bytes());
        let out = if r.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&r.stdout).unwrap()
        };
        (out, r.success)
    }

    #[test]
    fn version_answers_in_the_callers_version() {
        let (out, ok) = call(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
        assert!(ok);
        assert_eq!(out["cniVersion"], "0.4.0");
        assert_eq!(out["supportedVersions"], json!(version::SUPPORTED));
        let (out, ok) = call(&[("CNI_COMMAND", "VERSION")], "");
        assert!(ok);
        assert_eq!(out["cniVersion"], "1.0.0");
    }

    #[test]
    fn failures_before_any_change_are_error_json() {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p"),
        ];
        let (out, ok) = call(&[], "{}");
        assert!(!ok);
        assert_eq!(
            (out["code"].as_u64(), out["cniVersion"].as_str()),
            (Some(4), Some("1.0.0"))
        );
        let (out, _) = call(&[("CNI_COMMAND", "GC")], "{}");
        assert_eq!(out["code"], 4);
        let (out, _) = call(&env, "{not json");
        assert_eq!(out["code"], 6);
        let (out, _) = call(
            &env,
            r#"{"cniVersion":"9.9.9","name":"n","type":"felix-cni"}"#,
        );
        assert_eq!(out["code"], 1);
        assert_eq!(out["cniVersion"], "1.0.0", "answered in a version we speak");
        let (out, _) = call(
            &env,
            r#"{"cniVersion":"0.4.0","name":"n","type":"felix-cni"}"#,
        );
        assert_eq!(out["code"], 7, "{out}");
        assert_eq!(out["cniVersion"], "0.4.0");
        assert!(
            out["msg"].as_str().unwrap().contains("etcd_endpoints"),
            "{out}"
        );
    }
}
