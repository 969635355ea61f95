//! The etcd connection, with bounded waits: a runtime must get an answer (code 11 "try again
//! later" when etcd does not give one), never a plugin that hangs.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors connecting to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd_endpoints {endpoints}: {source}")]
    BadEndpoint {
        endpoints: String,
        source: etcd_client::Error,
    },
    #[error("etcd at {endpoints} is unreachable: {reason}")]
    Unreachable { endpoints: String, reason: String },
}

/// Connects and makes one read, so that an unreachable etcd shows before anything is changed.
pub async fn connect(endpoints: &[String]) -> Result<Client, EtcdError> {
    let joined = endpoints.join(",");
    let unreachable = |reason: String| EtcdError::Unreachable {
        endpoints: joined.clone(),
        reason,
    };
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    let attempt = async {
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|source| match source {
                etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_) => {
                    EtcdError::BadEndpoint {
                        endpoints: joined.clone(),
                        source,
                    }
                }
                other => unreachable(other.to_string()),
            })?;
        client
            .get("/calico/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(client)
    };
    tokio::time::timeout(CONNECT_TIMEOUT + REQUEST_TIMEOUT, attempt)
        .await
        .map_err(|_| unreachable("no answer in time".into()))?
}
