//! The watch loop: felix's etcd syncer feeds felix's parsed cache; after each batch that touches
//! a Node, IPPool, BGPConfiguration, BGPPeer or block affinity, the configuration is rendered
//! again and handed to the [`Installer`]. A reload BIRD did not take is retried with capped
//! exponential backoff.
//!
//! While etcd is away the syncer reconnects on its own and nothing is rendered: BIRD keeps the
//! last configuration. The status file follows the syncer's state too. A render that fails (the node has no BGP address yet, a broken template)
//! is logged once and also keeps the last configuration.

use std::{
    future::Future,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use calico::{
    datastore::{SyncStatus, Syncer, SyncerConfig},
    etcd_access::TlsFiles,
    store::Store,
};
use serde::Serialize;
use tokio::{sync::watch, time::Instant};
use tracing::{debug, info, warn};

use crate::{
    inputs::Inputs,
    install::{InstallError, InstallStats, Installer, Outcome},
    render::Templates,
    view::BirdView,
};

/// First delay before retrying a reload; doubled up to [`MAX_RETRY`].
const MIN_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What the loop runs with.
pub struct Options {
    pub node: String,
    pub endpoints: Vec<String>,
    /// TLS files for `https://` endpoints.
    pub etcd_tls: TlsFiles,
    pub installer: Installer,
    pub templates: Templates,
    /// Where to write [`Status`] as JSON after every change.
    pub status_file: Option<PathBuf>,
    /// Render and install once, then return.
    pub once: bool,
}

/// Errors that end the loop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("the etcd syncer stopped")]
    SyncerGone,
    /// `--once` could not produce an installed configuration.
    #[error("no configuration installed: {0}")]
    NotInstalled(String),
}

/// What the status file says.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub node: String,
    /// The datastore's state (in sync, revision, reconnects).
    pub datastore: SyncStatus,
    /// Why the last render failed, until one succeeds.
    pub render_error: Option<String>,
    /// BGP sessions and announced blocks of the installed configuration.
    pub peers: Vec<String>,
    pub announced: Vec<String>,
    pub install: InstallStats,
    /// Seconds since the epoch of the last update.
    pub updated: u64,
}

/// Runs until `shutdown` completes (or, with `once`, after the first install).
pub async fn run(
    mut options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (syncer, mut updates, sync_status) = Syncer::new(
        SyncerConfig::new(options.endpoints.clone()).with_tls(options.etcd_tls.clone()),
    );
    let mut sync_changes = sync_status.clone();
    let syncer = tokio::spawn(syncer.run());
    let mut state = Loop {
        store: Store::new(),
        status: Status {
            node: options.node.clone(),
            ..Default::default()
        },
        sync_status,
        retry_delay: MIN_RETRY,
        retry_at: None,
    };
    tokio::pin!(shutdown);
    let result = loop {
        let retry_at = state.retry_at;
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            update = updates.recv() => {
                let Some(update) = update else { break Err(DaemonError::SyncerGone) };
                let applied = state.store.apply(update);
                let relevant = applied.resync
                    || applied.changes.iter().any(|c| Inputs::depends_on(c.kind));
                debug!(revision = applied.revision, changes = applied.changes.len(), relevant, "datastore update");
                if relevant || options.once {
                    match state.render_and_install(&mut options).await {
                        Ok(outcome) if options.once => break once_result(outcome, &state.status),
                        Ok(_) => {}
                        Err(e) => break Err(e),
                    }
                }
            }
            changed = sync_changes.changed() => {
                if changed.is_err() {
                    break Err(DaemonError::SyncerGone);
                }
                state.publish(&options);
            }
            () = sleep_until(retry_at) => {
                if options.installer.retry_reload().await {
                    state.retry_delay = MIN_RETRY;
                    state.retry_at = None;
                } else {
                    state.retry_delay = (state.retry_delay * 2).min(MAX_RETRY);
                    state.retry_at = Some(Instant::now() + state.retry_delay);
                }
                state.publish(&options);
            }
        }
    };
    syncer.abort();
    result
}

fn once_result(outcome: Option<Outcome>, status: &Status) -> Result<(), DaemonError> {
    match outcome {
        Some(Outcome::Installed { .. } | Outcome::Unchanged) => Ok(()),
        Some(Outcome::Rejected { message }) => Err(DaemonError::NotInstalled(message)),
        Some(Outcome::StillRejected) | None => Err(DaemonError::NotInstalled(
            status
                .render_error
                .clone()
                .or_else(|| status.install.last_rejection.clone())
                .unwrap_or_else(|| "nothing rendered".into()),
        )),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Loop {
    store: Store,
    status: Status,
    sync_status: watch::Receiver<SyncStatus>,
    retry_delay: Duration,
    retry_at: Option<Instant>,
}

impl Loop {
    /// Renders from the cache and installs; `None` when nothing could be rendered.
    async fn render_and_install(
        &mut self,
        options: &mut Options,
    ) -> Result<Option<Outcome>, DaemonError> {
        let inputs = Inputs::from_store(&self.store, &options.node);
        let rendered = BirdView::build(&inputs)
            .map_err(|e| e.to_string())
            .and_then(|view| {
                let text = options.templates.render(&view).map_err(|e| e.to_string())?;
                Ok((view, text))
            });
        let (view, text) = match rendered {
            Ok(ok) => ok,
            Err(message) => {
                if self.status.render_error.as_ref() != Some(&message) {
                    warn!(%message, "cannot render BIRD's configuration; keeping the last one");
                }
                self.status.render_error = Some(message);
                self.publish(options);
                return Ok(None);
            }
        };
        if self.status.render_error.take().is_some() {
            info!("BIRD's configuration renders again");
        }
        let outcome = options.installer.install(&text).await?;
        if let Outcome::Installed { .. } = outcome {
            for note in &view.notes {
                info!(note, "configuration note");
            }
            info!(
                peers = view.peers.len(),
                announced = ?view.announced,
                "new BIRD configuration"
            );
        }
        if let Outcome::Installed { .. } | Outcome::Unchanged = outcome {
            self.status.peers = view.peers.iter().map(|p| p.name.clone()).collect();
            self.status.announced = view.announced.clone();
        }
        if options.installer.reload_pending() {
            if self.retry_at.is_none() {
                self.retry_at = Some(Instant::now() + self.retry_delay);
            }
        } else {
            self.retry_at = None;
            self.retry_delay = MIN_RETRY;
        }
        self.publish(options);
        Ok(Some(outcome))
    }

    /// Writes the status file, when there is one.
    fn publish(&mut self, options: &Options) {
        let Some(path) = &options.status_file else {
            return;
        };
        self.status.datastore = self.sync_status.borrow().clone();
        self.status.datastore.revision = self.store.revision();
        self.status.install = options.installer.stats().clone();
        self.status.updated = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Ok(json) = serde_json::to_string_pretty(&self.status) else {
            return;
        };
        let staged = path.with_extension("json.new");
        if let Err(error) =
            std::fs::write(&staged, json).and_then(|()| std::fs::rename(&staged, path))
        {
            warn!(path = %path.display(), %error, "cannot write the status file");
        }
    }
}
