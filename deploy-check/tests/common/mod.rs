//! What the test files share: the repository's paths, the decoded manifests and lookups in them.

#![allow(dead_code, reason = "each test file uses a part")]

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use deploy_check::manifests::{self, Manifest};
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{ConfigMap, Container, EnvVar, PodSpec, Volume},
};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploy-check is in the workspace root")
        .to_path_buf()
}

pub fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every manifest of deploy/k8s/, decoded.
pub struct Deployment {
    pub manifests: Vec<(PathBuf, Manifest)>,
}

impl Deployment {
    pub fn load() -> Self {
        let dir = repo_root().join("deploy/k8s");
        let manifests = manifests::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(!manifests.is_empty(), "no manifest in {}", dir.display());
        Self { manifests }
    }

    pub fn daemonset(&self) -> &DaemonSet {
        let all: Vec<&DaemonSet> = self
            .manifests
            .iter()
            .filter_map(|(_, m)| match m {
                Manifest::DaemonSet(d) => Some(&**d),
                _ => None,
            })
            .collect();
        assert_eq!(all.len(), 1, "deploy/k8s holds one DaemonSet");
        all[0]
    }

    pub fn config_map(&self) -> &ConfigMap {
        let all: Vec<&ConfigMap> = self
            .manifests
            .iter()
            .filter_map(|(_, m)| match m {
                Manifest::ConfigMap(c) => Some(&**c),
                _ => None,
            })
            .collect();
        assert_eq!(all.len(), 1, "deploy/k8s holds one ConfigMap");
        all[0]
    }

    /// A value of the ConfigMap.
    pub fn config(&self, key: &str) -> &str {
        self.config_map()
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"))
    }

    pub fn pod(&self) -> &PodSpec {
        self.daemonset()
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("the DaemonSet has a pod template")
    }

    pub fn container(&self, name: &str) -> &Container {
        self.pod()
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    pub fn init_container(&self, name: &str) -> &Container {
        self.pod()
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no init container {name}"))
    }

    /// Every container, init containers first.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        let pod = self.pod();
        pod.init_containers.iter().flatten().chain(&pod.containers)
    }

    pub fn volume(&self, name: &str) -> &Volume {
        self.pod()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    }

    /// The value `var` gets in a pod on `node`: literal, from the ConfigMap or spec.nodeName.
    pub fn resolve(&self, var: &EnvVar, node: &str) -> String {
        if let Some(value) = &var.value {
            return value.clone();
        }
        let from = var
            .value_from
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no value", var.name));
        if let Some(field) = &from.field_ref {
            assert_eq!(field.field_path, "spec.nodeName", "{}", var.name);
            return node.to_owned();
        }
        let key = from
            .config_map_key_ref
            .as_ref()
            .unwrap_or_else(|| panic!("{}: only literals, fieldRef and configMapKeyRef", var.name));
        assert_eq!(
            Some(key.name.as_str()),
            self.config_map().metadata.name.as_deref(),
            "{} refers to another ConfigMap",
            var.name
        );
        self.config(&key.key).to_owned()
    }
}

/// The shell script a container runs as `sh -c SCRIPT`.
pub fn script(container: &Container) -> &str {
    let command = container.command.as_deref().unwrap_or_default();
    assert_eq!(
        command,
        ["/bin/sh", "-c"],
        "{} runs a script",
        container.name
    );
    match container.args.as_deref() {
        Some([script]) => script,
        other => panic!("{}: one script argument, not {other:?}", container.name),
    }
}

/// The environment variables a binary reads, from its crate's sources (`src` under the
/// workspace root): clap's `env = "NAME"`, and any `"FELIX_*"` string (a lookup outside clap).
pub fn env_names(src: &str) -> BTreeSet<String> {
    let pattern = regex::Regex::new(r#"env\s*=\s*"([A-Z][A-Z0-9_]*)"|"(FELIX_[A-Z0-9_]+)""#)
        .expect("pattern");
    let mut names = BTreeSet::new();
    let mut dirs = vec![repo_root().join(src)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).expect("read a source file");
                names.extend(
                    pattern
                        .captures_iter(&text)
                        .filter_map(|c| c.get(1).or(c.get(2)))
                        .map(|m| m.as_str().to_owned()),
                );
            }
        }
    }
    names
}

/// The environment variables felix reads.
pub fn felix_env_names() -> BTreeSet<String> {
    let names = env_names("felix-user/src");
    assert!(
        names.contains("FELIX_NODENAME"),
        "the scan of felix-user/src finds felix's settings"
    );
    names
}

/// The root Cargo.toml's `[workspace] members`.
pub fn workspace_members() -> Vec<String> {
    let text = read("Cargo.toml");
    let start = text
        .find("members = [")
        .expect("the root Cargo.toml lists members");
    let list = &text[start + "members = [".len()..];
    let list = &list[..list.find(']').expect("the members list ends")];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}
