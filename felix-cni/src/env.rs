//! The `CNI_*` environment a runtime sets for each call, parsed and checked. A missing or invalid
//! variable is error code 4 naming it.

use std::{collections::BTreeMap, path::PathBuf};

use calico::model::{valid_name, workload_endpoint::valid_interface_name};

use crate::error::CniError;

/// The operation the runtime asks for (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

impl Command {
    /// Reads `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        match s {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "VERSION" => Ok(Command::Version),
            other => Err(CniError::env(format!(
                "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION"
            ))),
        }
    }
}

/// The Kubernetes pod a call is for (`K8S_POD_NAMESPACE`, `K8S_POD_NAME` in `CNI_ARGS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
}

/// The environment of an ADD, DEL or CHECK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`; required for ADD and CHECK, optional for DEL.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// From `CNI_ARGS`; required for ADD and CHECK.
    pub pod: Option<Pod>,
    /// Every `CNI_ARGS` pair (unknown ones are ignored).
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH` (felix-cni delegates to no other plugin, so it is only recorded).
    pub path: Vec<PathBuf>,
}

/// Parses `CNI_ARGS` (`K=V;K=V`); an element without `=` is an error.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut args = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::env(format!(
                "CNI_ARGS: {pair:?} is not KEY=VALUE"
            )));
        };
        args.insert(k.to_string(), v.to_string());
    }
    Ok(args)
}

/// Whether `id` is a container id as the spec allows: an alphanumeric first character, then
/// alphanumerics, `_`, `.` or `-`.
pub fn valid_container_id(id: &str) -> bool {
    id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn required(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<String, CniError> {
    get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CniError::env(format!("{name} is missing")))
}

fn pod_of(args: &BTreeMap<String, String>) -> Result<Option<Pod>, CniError> {
    let field = |k: &str| -> Result<Option<String>, CniError> {
        match args.get(k).filter(|v| !v.is_empty()) {
            Some(v) if !valid_name(v) => Err(CniError::env(format!(
                "CNI_ARGS: {k}={v:?} is not a Kubernetes name"
            ))),
            v => Ok(v.cloned()),
        }
    };
    match (field("K8S_POD_NAMESPACE")?, field("K8S_POD_NAME")?) {
        (Some(namespace), Some(name)) => Ok(Some(Pod { namespace, name })),
        (None, None) => Ok(None),
        _ => Err(CniError::env(
            "CNI_ARGS: K8S_POD_NAMESPACE and K8S_POD_NAME go together",
        )),
    }
}

impl CniEnv {
    /// Reads the environment of a non-VERSION command through `get` (`std::env::var` in the
    /// binary, a map in tests).
    pub fn from_vars(
        command: Command,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CniError> {
        let container_id = required(&get, "CNI_CONTAINERID")?;
        if !valid_container_id(&container_id) {
            return Err(CniError::env(format!(
                "CNI_CONTAINERID {container_id:?} is not a container id"
            )));
        }
        let ifname = required(&get, "CNI_IFNAME")?;
        if !valid_interface_name(&ifname) || ifname == "." || ifname == ".." {
            return Err(CniError::env(format!(
                "CNI_IFNAME {ifname:?} is not an interface name"
            )));
        }
        let netns = get("CNI_NETNS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if netns.is_none() && command != Command::Del {
            return Err(CniError::env("CNI_NETNS is missing"));
        }
        let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        let pod = pod_of(&args)?;
        if pod.is_none() && command != Command::Del {
            return Err(CniError::env(
                "CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME",
            ));
        }
        let path = get("CNI_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            pod,
            args,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const GOOD: [(&str, &str); 5] = [
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/pod1"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=abc123",
        ),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        GOOD.iter().copied().filter(|(k, _)| *k != name).collect()
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut v = without(name);
        v.push((name, value));
        v
    }

    #[test]
    fn commands() {
        assert_eq!(Command::parse("ADD").unwrap(), Command::Add);
        assert_eq!(Command::parse("VERSION").unwrap(), Command::Version);
        let e = Command::parse("add").unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert!(e.msg.contains("CNI_COMMAND"), "{e}");
    }

    #[test]
    fn a_runtimes_environment() {
        let env = CniEnv::from_vars(Command::Add, vars(&GOOD)).unwrap();
        assert_eq!(env.container_id, "abc123");
        assert_eq!(env.netns, Some(PathBuf::from("/run/netns/pod1")));
        assert_eq!(env.ifname, "eth0");
        assert_eq!(
            env.pod,
            Some(Pod {
                namespace: "default".into(),
                name: "web-1".into()
            })
        );
        assert_eq!(env.args["IgnoreUnknown"], "1");
        assert_eq!(env.path.len(), 2);
    }

    #[test]
    fn missing_or_bad_variables_are_code_4_naming_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (without("CNI_CONTAINERID"), "CNI_CONTAINERID"),
            (with("CNI_CONTAINERID", "-abc"), "CNI_CONTAINERID"),
            (with("CNI_CONTAINERID", "a/b"), "CNI_CONTAINERID"),
            (without("CNI_IFNAME"), "CNI_IFNAME"),
            (with("CNI_IFNAME", "a-very-long-interface"), "CNI_IFNAME"),
            (with("CNI_IFNAME", "eth/0"), "CNI_IFNAME"),
            (without("CNI_NETNS"), "CNI_NETNS"),
            (with("CNI_ARGS", "K8S_POD_NAME"), "CNI_ARGS"),
            (with("CNI_ARGS", "K8S_POD_NAME=x"), "CNI_ARGS"),
            (
                with("CNI_ARGS", "K8S_POD_NAMESPACE=a/b;K8S_POD_NAME=x"),
                "CNI_ARGS",
            ),
            (without("CNI_ARGS"), "CNI_ARGS"),
        ];
        for (pairs, name) in cases {
            let e = CniEnv::from_vars(Command::Add, vars(&pairs)).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnv, "{name}: {e}");
            assert!(e.msg.contains(name), "{name}: {e}");
        }
    }

    #[test]
    fn del_needs_neither_netns_nor_pod() {
        let pairs = [("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")];
        let env = CniEnv::from_vars(Command::Del, vars(&pairs)).unwrap();
        assert_eq!((env.netns, env.pod), (None, None));
        assert!(CniEnv::from_vars(Command::Check, vars(&pairs)).is_err());
    }

    #[test]
    fn args_and_ids() {
        assert!(parse_args("").unwrap().is_empty());
        assert_eq!(parse_args("A=1;;B=x=y").unwrap()["B"], "x=y");
        assert!(valid_container_id("a_b.c-1"));
        assert!(!valid_container_id(""));
        assert!(!valid_container_id("_a"));
        assert!(!valid_container_id("a b"));
    }
}
