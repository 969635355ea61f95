//! Kubernetes manifests (YAML, one or many `---` separated documents per file) decoded into
//! `k8s-openapi` types. Decoding is strict: a field the type does not know, or a value it would
//! not give back unchanged, is an error naming the field, so a typo such as
//! `mountPropogation` cannot pass unnoticed.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use k8s_openapi::{
    Resource,
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::{ConfigMap, Container, Namespace, Secret, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Errors reading manifests. `doc` counts the documents of a file from 1.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ManifestError>,
    },
    #[error("document {doc}: not YAML: {source}")]
    Yaml {
        doc: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("document {doc}: no apiVersion and kind")]
    NoKind { doc: usize },
    #[error("document {doc}: {api_version} {kind} is not a kind the checks know")]
    UnknownKind {
        doc: usize,
        api_version: String,
        kind: String,
    },
    #[error("document {doc} ({kind}): {source}")]
    Decode {
        doc: usize,
        kind: &'static str,
        #[source]
        source: serde_path_to_error::Error<serde_json::Error>,
    },
    #[error("document {doc} ({kind}): encode again: {source}")]
    Encode {
        doc: usize,
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("document {doc} ({kind}): {field}: unknown field, or a value the type changes")]
    Lost {
        doc: usize,
        kind: &'static str,
        field: String,
    },
}

/// A decoded manifest of one of the kinds `deploy/k8s/` may hold.
#[derive(Clone, Debug)]
pub enum Manifest {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    DaemonSet(Box<DaemonSet>),
    Deployment(Box<Deployment>),
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    Role(Box<Role>),
    RoleBinding(Box<RoleBinding>),
}

impl Manifest {
    /// The kind, as in the manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Namespace(_) => Namespace::KIND,
            Manifest::ServiceAccount(_) => ServiceAccount::KIND,
            Manifest::ConfigMap(_) => ConfigMap::KIND,
            Manifest::Secret(_) => Secret::KIND,
            Manifest::DaemonSet(_) => DaemonSet::KIND,
            Manifest::Deployment(_) => Deployment::KIND,
            Manifest::ClusterRole(_) => ClusterRole::KIND,
            Manifest::ClusterRoleBinding(_) => ClusterRoleBinding::KIND,
            Manifest::Role(_) => Role::KIND,
            Manifest::RoleBinding(_) => RoleBinding::KIND,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::Namespace(o) => &o.metadata,
            Manifest::ServiceAccount(o) => &o.metadata,
            Manifest::ConfigMap(o) => &o.metadata,
            Manifest::Secret(o) => &o.metadata,
            Manifest::DaemonSet(o) => &o.metadata,
            Manifest::Deployment(o) => &o.metadata,
            Manifest::ClusterRole(o) => &o.metadata,
            Manifest::ClusterRoleBinding(o) => &o.metadata,
            Manifest::Role(o) => &o.metadata,
            Manifest::RoleBinding(o) => &o.metadata,
        }
    }

    /// Whether this is an RBAC object.
    pub fn is_rbac(&self) -> bool {
        matches!(
            self,
            Manifest::ClusterRole(_)
                | Manifest::ClusterRoleBinding(_)
                | Manifest::Role(_)
                | Manifest::RoleBinding(_)
        )
    }
}

/// Decodes every document of `text`; empty documents are skipped.
pub fn parse(text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value =
            Value::deserialize(document).map_err(|source| ManifestError::Yaml { doc, source })?;
        if value.is_null() {
            continue;
        }
        out.push(decode(doc, value)?);
    }
    Ok(out)
}

/// Decodes every `*.yaml` / `*.yml` file of `dir`, in file name order.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>, ManifestError> {
    let io_error = |source| ManifestError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let manifests = parse(&text).map_err(|source| ManifestError::InFile {
            path: path.clone(),
            source: Box::new(source),
        })?;
        out.extend(manifests.into_iter().map(|m| (path.clone(), m)));
    }
    Ok(out)
}

fn decode(doc: usize, value: Value) -> Result<Manifest, ManifestError> {
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err(ManifestError::NoKind { doc });
    }
    macro_rules! try_kind {
        ($($variant:ident),*) => {
            $(
                if (api_version, kind) == ($variant::API_VERSION, $variant::KIND) {
                    return Ok(Manifest::$variant(strict::<$variant>(doc, &value)?));
                }
            )*
        };
    }
    try_kind!(
        Namespace,
        ServiceAccount,
        ConfigMap,
        Secret,
        DaemonSet,
        Deployment,
        ClusterRole,
        ClusterRoleBinding,
        Role,
        RoleBinding
    );
    Err(ManifestError::UnknownKind {
        doc,
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })
}

/// Decodes `value` as `T`, then checks that encoding it again gives back every field of `value`.
fn strict<T>(doc: usize, value: &Value) -> Result<Box<T>, ManifestError>
where
    T: Resource + DeserializeOwned + Serialize,
{
    let kind = T::KIND;
    let typed: T = serde_path_to_error::deserialize(value)
        .map_err(|source| ManifestError::Decode { doc, kind, source })?;
    let again = serde_json::to_value(&typed).map_err(|source| ManifestError::Encode {
        doc,
        kind,
        source,
    })?;
    if let Some(field) = first_loss(value, &again, "") {
        return Err(ManifestError::Lost { doc, kind, field });
    }
    Ok(Box::new(typed))
}

/// The path of the first field of `given` that `again` lacks or holds differently. Fields only
/// `again` has (defaults the type writes) do not count, nor do fields given as null.
fn first_loss(given: &Value, again: &Value, path: &str) -> Option<String> {
    match (given, again) {
        (Value::Object(g), Value::Object(a)) => g.iter().find_map(|(key, value)| {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match a.get(key) {
                None if value.is_null() => None,
                None => Some(path),
                Some(other) => first_loss(value, other, &path),
            }
        }),
        (Value::Array(g), Value::Array(a)) if g.len() == a.len() => g
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (g, a))| first_loss(g, a, &format!("{path}[{i}]"))),
        _ if given == again => None,
        _ => Some(if path.is_empty() {
            "(document)".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

/// The Secret with etcd's TLS files, named and keyed as in Calico's manifest.
pub const ETCD_SECRET: &str = "calico-etcd-secrets";
/// Its keys: CA, client certificate, client key.
pub const ETCD_SECRET_KEYS: [&str; 3] = ["etcd-ca", "etcd-cert", "etcd-key"];
/// Where the containers mount it.
pub const ETCD_SECRET_MOUNT: &str = "/calico-secrets";

/// Why a container does not get etcd's TLS files: the Secret is not mounted read-only at
/// [`ETCD_SECRET_MOUNT`] from a volume of `volume_secret` (the volume's Secret name per volume
/// name), or `env` (variable name -> ConfigMap key) is not wired.
pub fn etcd_tls_problems(
    container: &Container,
    volume_secret: impl Fn(&str) -> Option<String>,
    env: &[(&str, &str)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == ETCD_SECRET_MOUNT);
    match mount {
        None => problems.push(format!(
            "{}: {ETCD_SECRET_MOUNT} is not mounted",
            container.name
        )),
        Some(m) => {
            if volume_secret(&m.name).as_deref() != Some(ETCD_SECRET) {
                problems.push(format!(
                    "{}: volume {} is not Secret {ETCD_SECRET}",
                    container.name, m.name
                ));
            }
            if m.read_only != Some(true) {
                problems.push(format!(
                    "{}: {ETCD_SECRET_MOUNT} is writable",
                    container.name
                ));
            }
        }
    }
    for (name, key) in env {
        let wired = container.env.iter().flatten().any(|e| {
            e.name == *name
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.config_map_key_ref.as_ref())
                    .is_some_and(|r| r.key == *key)
        });
        if !wired {
            problems.push(format!(
                "{}: {name} is not ConfigMap key {key}",
                container.name
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_of_several_kinds() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: a}\ndata: {k: v}\n";
        let got = parse(text).unwrap();
        assert_eq!(
            got.iter().map(Manifest::kind).collect::<Vec<_>>(),
            ["Namespace", "ConfigMap"]
        );
        assert_eq!(got[1].metadata().namespace.as_deref(), Some("a"));
        assert!(!got[0].is_rbac());
    }

    #[test]
    fn unknown_field_is_named() {
        let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountServiceAccountTokn: false\n";
        let err = parse(text).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Lost { field, .. } if field == "automountServiceAccountTokn"),
            "{err}"
        );
        let text = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers:\n        - name: c\n          volumeMounts: [{name: v, mountPath: /x, mountPropogation: Bidirectional}]\n";
        let err = parse(text).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Lost { field, .. }
                if field == "spec.template.spec.containers[0].volumeMounts[0].mountPropogation"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_and_unknown_kind() {
        let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountServiceAccountToken: maybe\n";
        let err = parse(text).unwrap_err();
        assert!(
            err.to_string().contains("automountServiceAccountToken"),
            "{err}"
        );
        let err = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n").unwrap_err();
        assert!(matches!(err, ManifestError::UnknownKind { .. }), "{err}");
        let err = parse("metadata: {name: a}\n").unwrap_err();
        assert!(matches!(err, ManifestError::NoKind { doc: 1 }), "{err}");
    }
}
