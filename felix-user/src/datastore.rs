//! The etcd side: list Calico's keys at a revision, watch from the next one, and hand each new
//! [`Snapshot`] to the agent. While etcd is away the agent keeps the last snapshot, so the
//! dataplane keeps forwarding; on return the listing reconciles whatever changed meanwhile.
//! (A full incremental syncer replaces this relist-on-change loop with the control-plane work.)

use std::time::Duration;

use etcd_client::{Client, GetOptions, WatchOptions};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::calico::{CALICO_PREFIX, Snapshot};

/// Errors talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// Connecting, listing or watching failed.
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// The watch ended.
    #[error("etcd watch closed")]
    WatchClosed,
}

/// Changes arriving within this window are folded into one relist.
const DEBOUNCE: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `snapshots` is closed: list, send, watch, and relist after every change or
/// reconnect (with capped backoff).
pub async fn run(endpoints: Vec<String>, snapshots: mpsc::Sender<Snapshot>) {
    let mut delay = Duration::from_millis(200);
    loop {
        match sync_once(&endpoints, &snapshots).await {
            Ok(()) => return,
            Err(error) => {
                warn!(%error, retry_in = ?delay, "etcd sync interrupted; the dataplane keeps its state");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection's worth of syncing; returns `Ok` only when the receiver is gone.
async fn sync_once(
    endpoints: &[String],
    snapshots: &mpsc::Sender<Snapshot>,
) -> Result<(), DatastoreError> {
    let etcd_err = |source| DatastoreError::Etcd {
        endpoints: endpoints.join(","),
        source,
    };
    let mut client = Client::connect(endpoints, None).await.map_err(etcd_err)?;
    let revision = list(&mut client, snapshots, endpoints).await?;
    info!(revision, "datastore in sync");
    let mut stream = client
        .watch(
            CALICO_PREFIX,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await
        .map_err(etcd_err)?;
    loop {
        // Wait for a change (skipping the watch's creation notice), let a burst settle, then
        // relist. A compacted revision also means "relist": the listing is the truth.
        loop {
            match stream.message().await.map_err(etcd_err)? {
                Some(response) if response.canceled() => return Err(DatastoreError::WatchClosed),
                Some(response) if response.compact_revision() > 0 => {
                    warn!(
                        compacted = response.compact_revision(),
                        "watch revision compacted; relisting"
                    );
                    break;
                }
                Some(response) if response.events().is_empty() => {}
                Some(_) => break,
                None => return Err(DatastoreError::WatchClosed),
            }
        }
        tokio::time::sleep(DEBOUNCE).await;
        if snapshots.is_closed() {
            return Ok(());
        }
        list(&mut client, snapshots, endpoints).await?;
    }
}

/// Lists every Calico key, sends the snapshot and returns the listing's revision.
async fn list(
    client: &mut Client,
    snapshots: &mpsc::Sender<Snapshot>,
    endpoints: &[String],
) -> Result<i64, DatastoreError> {
    let response = client
        .get(CALICO_PREFIX, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|source| DatastoreError::Etcd {
            endpoints: endpoints.join(","),
            source,
        })?;
    let revision = response.header().map_or(0, |h| h.revision());
    let snapshot = Snapshot::from_kvs(
        response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or(""), kv.value())),
    );
    // A closed receiver means the agent is stopping; the caller notices.
    let _ = snapshots.send(snapshot).await;
    Ok(revision)
}

/// Connects to etcd, retrying with capped backoff until it answers.
pub async fn connect(endpoints: &[String]) -> Client {
    let mut delay = Duration::from_millis(200);
    loop {
        match Client::connect(endpoints, None).await {
            Ok(client) => return client,
            Err(error) => {
                warn!(endpoints = endpoints.join(","), %error, retry_in = ?delay, "etcd unreachable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}
