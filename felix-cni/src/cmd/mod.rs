//! ADD, DEL and CHECK: the steps of each, and which CNI code each failure maps to.

mod add;
mod check;
mod del;

use std::collections::BTreeMap;

pub use add::add;
pub use check::check;
pub use del::del;

use crate::{
    dataplane::DataplaneError,
    env::{CniEnv, Pod},
    error::{CniError, Code},
    etcd::EtcdError,
    ipam::PodIpamError,
    netns::NetNsError,
    wep::WepError,
};

impl From<EtcdError> for CniError {
    fn from(e: EtcdError) -> Self {
        let code = match e {
            EtcdError::Config(_) => Code::InvalidConfig,
            EtcdError::Unreachable(_) => Code::TryAgainLater,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<PodIpamError> for CniError {
    fn from(e: PodIpamError) -> Self {
        use calico::ipam::IpamError;
        let code = match &e {
            PodIpamError::Etcd(_)
            | PodIpamError::Ipam(IpamError::Etcd(_) | IpamError::Contended(_)) => {
                Code::TryAgainLater
            }
            PodIpamError::UnknownPool(_) => Code::InvalidConfig,
            _ => Code::Plugin,
        };
        CniError::new(code, format!("IPAM: {e}"))
    }
}

impl From<WepError> for CniError {
    fn from(e: WepError) -> Self {
        let code = match e {
            WepError::Etcd(_) => Code::TryAgainLater,
            WepError::Invalid { .. } => Code::Plugin,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<DataplaneError> for CniError {
    fn from(e: DataplaneError) -> Self {
        CniError::plugin(e.to_string())
    }
}

impl From<NetNsError> for CniError {
    fn from(e: NetNsError) -> Self {
        CniError::plugin(e.to_string())
    }
}

/// The pod of a command that needs one (checked when the environment was read).
fn pod_of(env: &CniEnv) -> Result<&Pod, CniError> {
    env.pod
        .as_ref()
        .ok_or_else(|| CniError::env("CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME"))
}

/// The IPAM attributes of a pod's address, as Calico's plugin sets them.
fn attributes(node: &str, pod: &Pod) -> BTreeMap<String, String> {
    [
        ("namespace", pod.namespace.as_str()),
        ("node", node),
        ("pod", pod.name.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
