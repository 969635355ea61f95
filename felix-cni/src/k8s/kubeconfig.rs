//! Where the API server is and how to authenticate to it: from a kubeconfig file (its current
//! context: `server`, `certificate-authority[-data]`, `token`/`tokenFile`,
//! `client-certificate[-data]`/`client-key[-data]`, as Calico's install-cni writes
//! `calico-kubeconfig`), or, with none configured, from the pod's service account as client-go's
//! in-cluster configuration does (`KUBERNETES_SERVICE_HOST`/`_PORT` and
//! `/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;

/// The service account directory of the in-cluster configuration.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiAccess {
    /// `https://host:port` (a trailing `/` removed).
    pub server: String,
    /// PEM certificates to trust.
    pub ca_pem: Vec<u8>,
    pub token: Option<String>,
    /// PEM client certificate chain and key.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

/// Why no [`ApiAccess`] could be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "no kubeconfig configured and not in a cluster \
         (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT unset)"
    )]
    NotInCluster,
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: T,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    #[serde(default)]
    server: String,
    #[serde(default)]
    certificate_authority: String,
    #[serde(default)]
    certificate_authority_data: String,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    token: String,
    #[serde(rename = "tokenFile", default)]
    token_file: String,
    #[serde(default)]
    client_certificate: String,
    #[serde(default)]
    client_certificate_data: String,
    #[serde(default)]
    client_key: String,
    #[serde(default)]
    client_key_data: String,
}

/// Reads the kubeconfig at `path` (relative file names in it are relative to its directory).
pub fn from_file(path: &Path) -> Result<ApiAccess, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
        path: path.into(),
        source,
    })?;
    let invalid = |reason: String| KubeconfigError::Invalid {
        path: path.into(),
        reason,
    };
    let config: Kubeconfig = serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let context = match config
        .contexts
        .iter()
        .find(|c| c.name == config.current_context)
    {
        Some(c) => &c.value,
        None if config.current_context.is_empty() && config.contexts.len() == 1 => {
            &config.contexts[0].value
        }
        None => {
            return Err(invalid(format!(
                "current-context {:?} is not one of its contexts",
                config.current_context
            )));
        }
    };
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .map(|c| &c.value)
        .ok_or_else(|| invalid(format!("no cluster named {:?}", context.cluster)))?;
    let default_user = User::default();
    let user = config
        .users
        .iter()
        .find(|u| u.name == context.user)
        .map_or(&default_user, |u| &u.value);
    let dir = path.parent().unwrap_or(Path::new("."));
    let read = |file: &str| {
        let p = dir.join(file);
        std::fs::read(&p).map_err(|source| KubeconfigError::Read { path: p, source })
    };
    let data_or_file = |data: &str, file: &str, what: &str| -> Result<_, KubeconfigError> {
        if !data.is_empty() {
            STANDARD
                .decode(data.trim())
                .map(Some)
                .map_err(|e| invalid(format!("{what}-data is not base64: {e}")))
        } else if !file.is_empty() {
            read(file).map(Some)
        } else {
            Ok(None)
        }
    };
    if cluster.server.is_empty() {
        return Err(invalid(format!(
            "cluster {:?} has no server",
            context.cluster
        )));
    }
    let ca_pem = data_or_file(
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
        "certificate-authority",
    )?;
    if cluster.insecure_skip_tls_verify {
        return Err(invalid(
            "insecure-skip-tls-verify is not supported: give certificate-authority(-data)".into(),
        ));
    }
    // Without one client-go trusts the system's roots; felix-cni has none to offer.
    let ca_pem = ca_pem.ok_or_else(|| {
        invalid(format!(
            "cluster {:?} has no certificate-authority(-data)",
            context.cluster
        ))
    })?;
    let token = if !user.token.is_empty() {
        Some(user.token.clone())
    } else if !user.token_file.is_empty() {
        let bytes = read(&user.token_file)?;
        Some(String::from_utf8_lossy(&bytes).trim().to_string())
    } else {
        None
    };
    let cert = data_or_file(
        &user.client_certificate_data,
        &user.client_certificate,
        "client-certificate",
    )?;
    let key = data_or_file(&user.client_key_data, &user.client_key, "client-key")?;
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "a client certificate needs both certificate and key".into(),
            ));
        }
    };
    Ok(ApiAccess {
        server: cluster.server.trim_end_matches('/').to_string(),
        ca_pem,
        token,
        client_cert,
    })
}

/// client-go's in-cluster configuration, from `env` and the files in `sa_dir`.
pub fn in_cluster(
    env: &HashMap<String, String>,
    sa_dir: &Path,
) -> Result<ApiAccess, KubeconfigError> {
    let host = env.get("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
    let port = env.get("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
    let (Some(host), Some(port)) = (host, port) else {
        return Err(KubeconfigError::NotInCluster);
    };
    let read = |name: &str| {
        let path = sa_dir.join(name);
        std::fs::read(&path).map_err(|source| KubeconfigError::Read { path, source })
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Ok(ApiAccess {
        server: format!("https://{host}:{port}"),
        ca_pem: read("ca.crt")?,
        token: Some(String::from_utf8_lossy(&read("token")?).trim().to_string()),
        client_cert: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("felix-cni-kc-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The file Calico's install-cni writes (`calico-kubeconfig`).
    #[test]
    fn calicos_install_kubeconfig() {
        let dir = tempdir("calico");
        let ca = STANDARD.encode("PEM CA");
        let p = write(
            &dir,
            "calico-kubeconfig",
            &format!(
                "# Kubeconfig file for Calico CNI plugin.\napiVersion: v1\nkind: Config\n\
                 clusters:\n- name: local\n  cluster:\n    server: https://10.96.0.1:443\n    \
                 certificate-authority-data: \"{ca}\"\nusers:\n- name: calico\n  user:\n    \
                 token: tok123\ncontexts:\n- name: calico-context\n  context:\n    \
                 cluster: local\n    user: calico\ncurrent-context: calico-context\n"
            ),
        );
        let a = from_file(&p).unwrap();
        assert_eq!(a.server, "https://10.96.0.1:443");
        assert_eq!(a.ca_pem, b"PEM CA");
        assert_eq!(a.token.as_deref(), Some("tok123"));
        assert_eq!(a.client_cert, None);
    }

    #[test]
    fn files_relative_to_the_kubeconfig_and_client_certificates() {
        let dir = tempdir("files");
        write(&dir, "ca.pem", "CA");
        write(&dir, "tok", "t0k\n");
        write(&dir, "c.pem", "CERT");
        let key = STANDARD.encode("KEY");
        let p = write(
            &dir,
            "kc",
            &format!(
                "clusters:\n- name: c\n  cluster: {{server: \"https://api:6443/\", certificate-authority: ca.pem}}\n\
                 users:\n- name: u\n  user: {{tokenFile: tok, client-certificate: c.pem, client-key-data: {key}}}\n\
                 contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
            ),
        );
        let a = from_file(&p).unwrap();
        assert_eq!(a.server, "https://api:6443");
        assert_eq!(a.ca_pem, b"CA");
        assert_eq!(a.token.as_deref(), Some("t0k"));
        assert_eq!(a.client_cert, Some((b"CERT".to_vec(), b"KEY".to_vec())));
    }

    #[test]
    fn broken_kubeconfigs_say_what_is_wrong() {
        let dir = tempdir("broken");
        let cases = [
            (
                "current-context: nope\ncontexts: []\n",
                "current-context \"nope\"",
            ),
            (
                "clusters: []\ncontexts:\n- {name: x, context: {cluster: c}}\ncurrent-context: x\n",
                "no cluster named \"c\"",
            ),
            (
                "clusters:\n- {name: c, cluster: {server: \"https://a\"}}\ncontexts:\n- {name: x, context: {cluster: c}}\ncurrent-context: x\n",
                "no certificate-authority",
            ),
            ("[1, 2", ""),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let p = write(&dir, &format!("kc{i}"), text);
            let e = from_file(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("kc"), "{text}: {e}");
        }
        let e = from_file(&dir.join("absent")).unwrap_err().to_string();
        assert!(e.starts_with("reading ") && e.contains("absent"), "{e}");
    }

    #[test]
    fn in_cluster_uses_the_service_account() {
        let dir = tempdir("sa");
        write(&dir, "ca.crt", "CA");
        write(&dir, "token", "satoken\n");
        let env: HashMap<String, String> = [
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "10.96.0.1".to_string(),
            ),
            ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
        ]
        .into();
        let a = in_cluster(&env, &dir).unwrap();
        assert_eq!(a.server, "https://10.96.0.1:443");
        assert_eq!(a.token.as_deref(), Some("satoken"));
        assert!(matches!(
            in_cluster(&HashMap::new(), &dir),
            Err(KubeconfigError::NotInCluster)
        ));
    }
}
