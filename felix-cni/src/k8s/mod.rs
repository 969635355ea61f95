//! The Kubernetes API, read as Calico's plugin reads it with `policy.type: k8s`: one GET of the
//! pod ([`client`]) with the access a kubeconfig or the service account gives ([`kubeconfig`]),
//! turned into the endpoint's labels, profiles, service account and named ports ([`pod`]).

pub mod client;
pub mod kubeconfig;
pub mod pod;

use std::{collections::HashMap, path::Path, time::Duration};

use crate::{
    env::Pod,
    error::{CniError, Code},
};

/// How long the whole GET may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The API path of a pod.
pub fn pod_path(pod: &Pod) -> String {
    format!("/api/v1/namespaces/{}/pods/{}", pod.namespace, pod.name)
}

/// Reads `pod` from the API server of `kubeconfig` (none: the in-cluster service account) and
/// returns what its endpoint takes from it. Every failure names the URL and the reason.
pub async fn pod_endpoint(
    kubeconfig: Option<&Path>,
    pod: &Pod,
) -> Result<pod::PodEndpoint, CniError> {
    let access = match kubeconfig {
        Some(path) => kubeconfig::from_file(path),
        None => kubeconfig::in_cluster(
            &std::env::vars().collect::<HashMap<_, _>>(),
            Path::new(kubeconfig::SERVICE_ACCOUNT_DIR),
        ),
    }
    .map_err(|e| CniError::config(format!("kubernetes: {e}")))?;
    let url = format!("{}{}", access.server, pod_path(pod));
    let body = client::get(&access, &pod_path(pod), API_TIMEOUT)
        .await
        .map_err(|e| CniError::plugin(format!("GET {url:?}: {e}")))?;
    let api_pod: pod::ApiPod = serde_json::from_slice(&body).map_err(|e| {
        CniError::plugin(format!("GET {url:?}: the answer is not a Pod")).details(e)
    })?;
    pod::endpoint_of(&api_pod).map_err(|e| match e {
        pod::PodError::Refused(_) => CniError::new(
            Code::UnsupportedField,
            format!("pod {}/{}: {e}", pod.namespace, pod.name),
        ),
        pod::PodError::Annotation { .. } => {
            CniError::plugin(format!("pod {}/{}: {e}", pod.namespace, pod.name))
        }
    })
}
