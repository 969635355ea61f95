//! The Kubernetes NetworkPolicy examples of `tests/k8s-netpol/`, as data: `cluster.yaml` holds
//! the etcd keys and values of the namespaces' and service accounts' profiles and of the pods'
//! WorkloadEndpoints; every other file one example: the Kubernetes NetworkPolicy (YAML text),
//! the etcd keys and values kube-controllers writes for it, and connections with the verdict
//! Kubernetes documents. Shared by felix-user's pure test and the lab test (`#[path]`), so it
//! uses serde, serde_json and serde_yaml_ng only.

#![allow(dead_code, reason = "each test uses a part")]

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// One file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default)]
    pub description: String,
    /// The Kubernetes NetworkPolicy (one or more YAML documents); absent in `cluster.yaml`.
    #[serde(default)]
    pub kubernetes: String,
    pub etcd: Vec<Entry>,
    #[serde(default)]
    pub checks: Vec<Check>,
}

/// One etcd key and the exact value stored under it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub key: String,
    pub value: String,
}

/// A new TCP connection from pod `from` to pod `to` (both `namespace/pod`) on `port`: whether
/// Kubernetes lets it through, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub expect: Expect,
    pub why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

/// The fixtures directory, given the `CARGO_MANIFEST_DIR` of felix-user.
pub fn dir(felix_user: &Path) -> PathBuf {
    felix_user.join("tests/k8s-netpol")
}

fn load(path: &Path) -> Result<Example, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `cluster.yaml`, and every example with its path, in file name order.
pub fn load_all(dir: &Path) -> Result<(Example, Vec<(PathBuf, Example)>), String> {
    let cluster = load(&dir.join("cluster.yaml"))?;
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("cluster.yaml"))
        .collect();
    paths.sort();
    let examples = paths
        .into_iter()
        .map(|p| load(&p).map(|e| (p, e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((cluster, examples))
}

/// `namespace/pod` split in two.
pub fn pod_ref(text: &str) -> (&str, &str) {
    text.split_once('/').unwrap_or(("", text))
}
