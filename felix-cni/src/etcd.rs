//! The etcd connection, with bounded waits: a runtime must get an answer (code 11 "try again
//! later" when etcd does not give one), never a plugin that hangs.

use std::time::Duration;

use calico::etcd_access::{AccessError, EtcdAccess};
use etcd_client::{Client, ConnectOptions};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors connecting to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The endpoints or TLS files are wrong, or etcd refused the TLS handshake.
    #[error("{0}")]
    Config(AccessError),
    #[error("etcd is unreachable: {0}")]
    Unreachable(AccessError),
}

/// Connects and makes one read, so that an unreachable etcd (or a refused client certificate)
/// shows before anything is changed.
pub async fn connect(access: &EtcdAccess) -> Result<Client, EtcdError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    access
        .connect(options, CONNECT_TIMEOUT + REQUEST_TIMEOUT)
        .await
        .map_err(|e| match e {
            AccessError::Etcd { .. } | AccessError::Timeout { .. } => EtcdError::Unreachable(e),
            other => EtcdError::Config(other),
        })
}
