//! The etcd syncer: lists Calico's keys at a revision, then watches from the next revision and
//! hands the changes on in batches ([`Update`]): each watch response as soon as it arrives,
//! with the responses already waiting behind it (no fixed delay: the receiver batches what
//! queues up while it is busy). When the connection drops it reconnects with
//! capped exponential backoff and resumes the watch right after the last revision it delivered,
//! so nothing is listed again. Only when etcd has compacted that revision away does it list
//! again (a resync: the receiver then holds exactly the new listing). Its state is published as a
//! [`SyncStatus`] on a `watch` channel.
//!
//! While etcd is away the receiver keeps what it has, so the dataplane keeps forwarding.

use std::{future::Future, time::Duration};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions, WatchResponse};

use crate::etcd_access::{self, AccessError, EtcdAccess, TlsFiles};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{debug, info, warn};

/// Key prefix of every Calico key.
pub const CALICO_PREFIX: &str = "/calico/";

/// One key's value, with the revision of its last modification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub revision: i64,
    /// The revision that created the key (etcd's `create_revision`): kept across
    /// modifications, so it orders keys by who was there first.
    pub created: i64,
}

/// A change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    /// `revision` is the revision of the deletion.
    Delete {
        key: String,
        revision: i64,
    },
    /// A change to a key that is not UTF-8. Calico's keys are UTF-8 and felix cannot name
    /// this one: the receiver only counts and logs it (as a malformed value).
    NonUtf8 {
        key: Vec<u8>,
        revision: i64,
        deleted: bool,
    },
}

/// What the syncer delivers, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Every key under the prefix at `revision`; whatever the receiver holds that is not here is
    /// gone. The listing's keys that are not UTF-8 follow at once as [`Event::NonUtf8`] events
    /// at the same revision.
    Snapshot { revision: i64, kvs: Vec<KeyValue> },
    /// The changes after the previous update, in revision order, up to `revision`.
    Events { revision: i64, events: Vec<Event> },
}

impl Update {
    /// The revision the receiver is at once it has applied this update.
    pub fn revision(&self) -> i64 {
        match self {
            Update::Snapshot { revision, .. } | Update::Events { revision, .. } => *revision,
        }
    }
}

/// The syncer's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// A listing was delivered and the watch that follows it is established.
    pub in_sync: bool,
    /// The revision everything delivered is consistent with (updated without notifying).
    pub revision: i64,
    /// Watches re-established after the connection or the watch failed.
    pub reconnects: u64,
    /// Listings after the first one (the revision to resume from had been compacted).
    pub resyncs: u64,
    /// Why the syncer is not in sync, while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the syncer watches and how it paces itself.
#[derive(Clone, Debug)]
pub struct SyncerConfig {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// TLS files for `https://` endpoints.
    pub tls: TlsFiles,
    /// Key prefix to list and watch.
    pub prefix: String,
    /// Events arriving within this window after a first one are delivered as one batch. Zero
    /// (felix's default): a batch is what etcd has sent by the time the first event is read,
    /// so a lone change is delivered at once.
    pub debounce: Duration,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Keys per page of a listing.
    pub page_size: i64,
    /// First retry delay after a failure; doubled on each failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Limit on connecting, on each page of a listing and on creating a watch.
    pub request_timeout: Duration,
}

impl SyncerConfig {
    /// Calico's keys at `endpoints`, with felix's defaults.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            tls: TlsFiles::default(),
            prefix: CALICO_PREFIX.into(),
            debounce: Duration::ZERO,
            max_batch: 10_000,
            page_size: 1_000,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// With the TLS files `tls`.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = tls;
        self
    }

    /// The endpoints and TLS files.
    pub fn access(&self) -> EtcdAccess {
        EtcdAccess::new(self.endpoints.clone()).with_tls(self.tls.clone())
    }
}

/// Why a sync session ended.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// Connecting failed (unreachable, refused TLS, bad TLS files).
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Connecting, listing or watching failed.
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// etcd did not answer in time.
    #[error("etcd at {endpoints}: no answer within {timeout:?} ({what})")]
    Timeout {
        endpoints: String,
        timeout: Duration,
        what: &'static str,
    },
    /// etcd canceled the watch.
    #[error("etcd canceled the watch: {0}")]
    WatchCanceled(String),
    /// The watch stream ended.
    #[error("etcd watch closed")]
    WatchClosed,
}

/// How a watch ended, other than by an error.
enum WatchEnd {
    /// The revision to resume from is compacted (etcd kept history from `compacted` on).
    Compacted(i64),
    /// Nobody receives updates any more.
    ReceiverGone,
}

/// Lists, watches and reconnects; see the module docs.
pub struct Syncer {
    config: SyncerConfig,
    updates: mpsc::Sender<Update>,
    status: watch::Sender<SyncStatus>,
    /// The revision the receiver is at; `None` when a listing is due.
    revision: Option<i64>,
    /// Whether a listing was delivered before.
    listed: bool,
    /// Whether a watch was established before.
    watched: bool,
    /// Whether the current session established a watch (resets the backoff).
    established: bool,
}

impl Syncer {
    /// A syncer with the receiving ends of its updates and of its status.
    pub fn new(
        config: SyncerConfig,
    ) -> (Self, mpsc::Receiver<Update>, watch::Receiver<SyncStatus>) {
        let (updates, updates_rx) = mpsc::channel(16);
        let (status, status_rx) = watch::channel(SyncStatus::default());
        let syncer = Self {
            config,
            updates,
            status,
            revision: None,
            listed: false,
            watched: false,
            established: false,
        };
        (syncer, updates_rx, status_rx)
    }

    /// Runs until the updates receiver is dropped.
    pub async fn run(mut self) {
        let updates = self.updates.clone();
        let mut delay = self.config.min_backoff;
        loop {
            self.established = false;
            let error = tokio::select! {
                result = self.session() => match result {
                    Ok(()) => return,
                    Err(error) => error,
                },
                () = updates.closed() => return,
            };
            if self.established {
                delay = self.config.min_backoff;
            }
            let message = error.to_string();
            warn!(error = message, retry_in = ?delay, "etcd sync interrupted; the dataplane keeps its state");
            self.status.send_if_modified(|s| {
                let changed = s.in_sync || s.last_error.as_ref() != Some(&message);
                s.in_sync = false;
                s.last_error = Some(message);
                changed
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = updates.closed() => return,
            }
            delay = (delay * 2).min(self.config.max_backoff);
        }
    }

    /// One connection: list when due, then watch, listing again after a compaction. Returns
    /// `Ok` only when the receiver is gone.
    async fn session(&mut self) -> Result<(), DatastoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.config.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let mut client = self
            .config
            .access()
            .connect(options, self.config.request_timeout)
            .await?;
        loop {
            let from = match self.revision {
                Some(revision) => revision + 1,
                None => match self.list(&mut client).await? {
                    Some(revision) => revision + 1,
                    None => return Ok(()),
                },
            };
            match self.watch(&mut client, from).await? {
                WatchEnd::ReceiverGone => return Ok(()),
                WatchEnd::Compacted(compacted) => {
                    warn!(
                        from,
                        compacted, "etcd compacted the revision to resume from; listing again"
                    );
                    self.revision = None;
                    self.status.send_if_modified(|s| {
                        s.in_sync = false;
                        s.last_error = Some(format!("revision {from} compacted"));
                        true
                    });
                }
            }
        }
    }

    /// Lists every key under the prefix (page by page, all at one revision) and delivers the
    /// snapshot; returns its revision, or `None` when the receiver is gone.
    async fn list(&mut self, client: &mut Client) -> Result<Option<i64>, DatastoreError> {
        let end = prefix_end(self.config.prefix.as_bytes());
        let mut start = self.config.prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut kvs = Vec::new();
        let mut non_utf8 = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(self.config.page_size);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut response = self
                .timed(
                    "list",
                    etcd_access::kv(client).get(start.clone(), Some(options)),
                )
                .await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            let more = response.more();
            let page = response.take_kvs();
            let Some(last) = page.last() else { break };
            start = last.key().to_vec();
            start.push(0);
            for kv in page {
                match key_value(&kv) {
                    Ok(kv) => kvs.push(kv),
                    Err(key) => non_utf8.push(Event::NonUtf8 {
                        key,
                        revision: kv.mod_revision(),
                        deleted: false,
                    }),
                }
            }
            if !more {
                break;
            }
        }
        info!(
            revision,
            keys = kvs.len(),
            non_utf8 = non_utf8.len(),
            "datastore listed"
        );
        let resync = self.listed;
        self.status.send_if_modified(|s| {
            s.revision = revision;
            s.resyncs += u64::from(resync);
            resync
        });
        if self
            .updates
            .send(Update::Snapshot { revision, kvs })
            .await
            .is_err()
        {
            return Ok(None);
        }
        if !non_utf8.is_empty()
            && self
                .updates
                .send(Update::Events {
                    revision,
                    events: non_utf8,
                })
                .await
                .is_err()
        {
            return Ok(None);
        }
        self.listed = true;
        self.revision = Some(revision);
        Ok(Some(revision))
    }

    /// Watches from revision `from`, delivering events in batches, until the watch fails, its
    /// revision is compacted, or the receiver goes.
    async fn watch(&mut self, client: &mut Client, from: i64) -> Result<WatchEnd, DatastoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let mut watcher = client
            .watch_client()
            .max_decoding_message_size(etcd_access::MAX_RESPONSE);
        let mut stream = self
            .timed(
                "watch",
                watcher.watch(self.config.prefix.as_str(), Some(options)),
            )
            .await?;
        loop {
            let response = stream
                .message()
                .await
                .map_err(|e| self.etcd(e))?
                .ok_or(DatastoreError::WatchClosed)?;
            if let Some(end) = ended(&response)? {
                return Ok(end);
            }
            if response.created() {
                self.on_watching(from);
                continue;
            }
            if response.events().is_empty() {
                // A progress notice: everything up to its revision was delivered.
                if let Some(revision) = response.header().map(|h| h.revision()) {
                    self.advance(revision);
                }
                continue;
            }
            let mut events = events_of(&response);
            // With a zero window this only takes responses that are already waiting: the
            // timeout polls the stream before it looks at the clock.
            let deadline = Instant::now() + self.config.debounce;
            let mut end = None;
            while events.len() < self.config.max_batch {
                let next = match tokio::time::timeout_at(deadline, stream.message()).await {
                    Err(_) => break,
                    Ok(next) => next,
                };
                match next {
                    Ok(Some(response)) => match ended(&response) {
                        Ok(None) => events.extend(events_of(&response)),
                        Ok(Some(watch_end)) => {
                            end = Some(Ok(watch_end));
                            break;
                        }
                        Err(error) => {
                            end = Some(Err(error));
                            break;
                        }
                    },
                    Ok(None) => {
                        end = Some(Err(DatastoreError::WatchClosed));
                        break;
                    }
                    Err(error) => {
                        end = Some(Err(self.etcd(error)));
                        break;
                    }
                }
            }
            if !self.deliver(events).await {
                return Ok(WatchEnd::ReceiverGone);
            }
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// The watch is established: the syncer is in sync.
    fn on_watching(&mut self, from: i64) {
        // Only a session's first watch counts: later ones follow a relist on the same connection.
        let reconnect = self.watched && !self.established;
        self.established = true;
        self.watched = true;
        info!(from, reconnect, "datastore in sync; watching");
        self.status.send_if_modified(|s| {
            s.in_sync = true;
            s.last_error = None;
            s.reconnects += u64::from(reconnect);
            true
        });
    }

    /// Sends a batch on; false when the receiver is gone.
    async fn deliver(&mut self, events: Vec<Event>) -> bool {
        let Some(revision) = events.last().map(Event::revision) else {
            return true;
        };
        debug!(revision, events = events.len(), "datastore changes");
        self.advance(revision);
        self.updates
            .send(Update::Events { revision, events })
            .await
            .is_ok()
    }

    /// Records that the receiver is at `revision` (no notification: it changes constantly).
    fn advance(&mut self, revision: i64) {
        if self.revision.is_some_and(|r| r < revision) {
            self.revision = Some(revision);
            self.status.send_if_modified(|s| {
                s.revision = revision;
                false
            });
        }
    }

    fn etcd(&self, source: etcd_client::Error) -> DatastoreError {
        DatastoreError::Etcd {
            endpoints: self.config.endpoints.join(","),
            source,
        }
    }

    /// Runs an etcd request with the request timeout.
    async fn timed<T>(
        &self,
        what: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, DatastoreError> {
        match tokio::time::timeout(self.config.request_timeout, request).await {
            Ok(result) => result.map_err(|e| self.etcd(e)),
            Err(_) => Err(DatastoreError::Timeout {
                endpoints: self.config.endpoints.join(","),
                timeout: self.config.request_timeout,
                what,
            }),
        }
    }
}

impl Event {
    /// The key it changes (empty for a key that is not UTF-8).
    pub fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key, .. } => key,
            Event::NonUtf8 { .. } => "",
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put(kv) => kv.revision,
            Event::Delete { revision, .. } | Event::NonUtf8 { revision, .. } => *revision,
        }
    }
}

/// Whether a watch response ends the watch: a compaction (`Ok(Some)`) or a cancellation.
fn ended(response: &WatchResponse) -> Result<Option<WatchEnd>, DatastoreError> {
    if response.compact_revision() > 0 {
        return Ok(Some(WatchEnd::Compacted(response.compact_revision())));
    }
    if response.canceled() {
        return Err(DatastoreError::WatchCanceled(
            response.cancel_reason().to_owned(),
        ));
    }
    Ok(None)
}

/// One listed or watched key with its value; `Err` with the raw key when it is not UTF-8.
fn key_value(kv: &etcd_client::KeyValue) -> Result<KeyValue, Vec<u8>> {
    match kv.key_str() {
        Ok(key) => Ok(KeyValue {
            key: key.to_owned(),
            value: kv.value().to_vec(),
            revision: kv.mod_revision(),
            created: kv.create_revision(),
        }),
        Err(_) => Err(kv.key().to_vec()),
    }
}

/// The events of a watch response.
fn events_of(response: &WatchResponse) -> Vec<Event> {
    response
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            let deleted = event.event_type() == EventType::Delete;
            Some(match (key_value(kv), deleted) {
                (Ok(kv), false) => Event::Put(kv),
                (Ok(kv), true) => Event::Delete {
                    key: kv.key,
                    revision: kv.revision,
                },
                (Err(key), deleted) => Event::NonUtf8 {
                    key,
                    revision: kv.mod_revision(),
                    deleted,
                },
            })
        })
        .collect()
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: to the end of the key space.
    vec![0]
}

/// Connects to etcd, retrying with capped backoff until it answers.
pub async fn connect(access: &EtcdAccess) -> Client {
    let mut delay = Duration::from_millis(200);
    loop {
        match access
            .connect(ConnectOptions::new(), Duration::from_secs(10))
            .await
        {
            Ok(client) => return client,
            Err(error) => {
                warn!(endpoints = access.joined(), %error, retry_in = ?delay, "etcd unreachable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/calico/"), b"/calico0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn updates_carry_their_revision() {
        let events = vec![
            Event::Put(KeyValue {
                key: "/calico/a".into(),
                value: b"{}".to_vec(),
                revision: 5,
                created: 5,
            }),
            Event::Delete {
                key: "/calico/b".into(),
                revision: 6,
            },
        ];
        assert_eq!(events[1].key(), "/calico/b");
        assert_eq!(events.last().map(Event::revision), Some(6));
        let update = Update::Events {
            revision: 6,
            events,
        };
        assert_eq!(update.revision(), 6);
    }
}
