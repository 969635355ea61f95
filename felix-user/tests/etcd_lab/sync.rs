//! Drives a real [`Syncer`] into a [`Store`] and waits, with a deadline, for what a test expects;
//! and captures the log lines written on the test's thread.

use std::{
    io::Write,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use calico::{
    datastore::{SyncStatus, Syncer, SyncerConfig, Update},
    store::{Change, EntryKind, Store},
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

/// The default wait for an outcome.
pub const WAIT: Duration = Duration::from_secs(20);

/// A syncer feeding a cache.
pub struct Synced {
    pub store: Store,
    updates: mpsc::Receiver<Update>,
    status: watch::Receiver<SyncStatus>,
    /// Listings applied.
    pub snapshots: usize,
    /// Event batches applied.
    pub batches: usize,
    /// Every change applied, in order.
    pub changes: Vec<Change>,
    task: JoinHandle<()>,
}

impl Synced {
    /// Starts a syncer against `url` with short delays.
    pub fn start(url: String) -> Self {
        Self::start_with(url, |_| {})
    }

    /// Like [`Synced::start`], with `tweak` applied to the configuration.
    pub fn start_with(url: String, tweak: impl FnOnce(&mut SyncerConfig)) -> Self {
        let mut config = SyncerConfig {
            debounce: Duration::from_millis(50),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            ..SyncerConfig::new(vec![url])
        };
        tweak(&mut config);
        let (syncer, updates, status) = Syncer::new(config);
        Synced {
            store: Store::new(),
            updates,
            status,
            snapshots: 0,
            batches: 0,
            changes: Vec::new(),
            task: tokio::spawn(syncer.run()),
        }
    }

    /// The syncer's state now.
    pub fn status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// Malformed values of `kind`: (now, since the start).
    pub fn malformed(&self, kind: EntryKind) -> (u64, u64) {
        self.store
            .malformed_counts()
            .get(&kind)
            .map_or((0, 0), |c| (c.current, c.total))
    }

    /// Applies updates as they come until `done` holds; panics after `WAIT`.
    pub async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            tokio::select! {
                update = self.updates.recv() => {
                    let update = update.expect("the syncer stopped");
                    match update {
                        Update::Snapshot { .. } => self.snapshots += 1,
                        Update::Events { .. } => self.batches += 1,
                    }
                    self.changes.extend(self.store.apply(update).changes);
                }
                changed = self.status.changed() => changed.expect("the syncer stopped"),
                () = tokio::time::sleep_until(deadline) => panic!(
                    "no {what} within {WAIT:?}: {:?}, {} entries, {} malformed, {} listings",
                    self.status(),
                    self.store.len(),
                    self.store.malformed().count(),
                    self.snapshots
                ),
            }
        }
    }
}

impl Drop for Synced {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Log lines of this thread, captured while the guard lives.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures this thread's `tracing` output until the returned guard is dropped.
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Every captured line.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
