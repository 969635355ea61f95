//! Installing a rendered configuration: validate, write atomically, reload BIRD only when the
//! content changed, and keep the last good configuration when BIRD rejects a new one.
//!
//! - The new text is written next to the target (`.<name>.new`), checked with `bird -p -c` and
//!   renamed over the target only when BIRD accepts it. A rejected text is never installed; it
//!   is counted, and the same text is not checked (nor logged) again.
//! - Text equal to what is installed changes nothing: no write, no reload.
//! - After an install, `birdc configure`. When BIRD is not there the reload stays pending and
//!   [`Installer::retry_reload`] tries again (BIRD that starts later reads the file anyway).
//!   When BIRD refuses the file at reload time, the previous text is put back.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use serde::Serialize;
use tracing::{info, warn};

use crate::bird::{Bird, BirdError, Reconfigured};

/// Errors writing the configuration file (BIRD's answers are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `bird` could not be run at all.
    #[error(transparent)]
    Bird(BirdError),
}

/// Counters and the last problem, for logs and the status file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InstallStats {
    /// Configurations written to the target file.
    pub installed: u64,
    /// Renders equal to the installed configuration.
    pub unchanged: u64,
    /// Configurations BIRD refused (at `bird -p` or at reload); the last good one stayed.
    pub rejected: u64,
    /// Successful `birdc configure`.
    pub reloads: u64,
    /// Failed reload attempts (BIRD not reachable or unexpected answers).
    pub reload_failures: u64,
    /// A reload is owed to BIRD.
    pub reload_pending: bool,
    /// BIRD's message for the last rejected configuration.
    pub last_rejection: Option<String>,
    /// The last reload failure, until a reload succeeds.
    pub last_reload_error: Option<String>,
}

/// What [`Installer::install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Same as the installed text: nothing done.
    Unchanged,
    /// Same as the text rejected last time: nothing done.
    StillRejected,
    /// BIRD refused it; the previous configuration stays.
    Rejected { message: String },
    /// Written; `reloaded` says whether BIRD took it already (else the reload is pending).
    Installed { reloaded: bool },
}

/// Owns the configuration file.
pub struct Installer {
    path: PathBuf,
    bird: Bird,
    installed: Option<String>,
    rejected: Option<String>,
    stats: InstallStats,
}

impl Installer {
    /// An installer for `path`; what the file holds now counts as installed.
    pub fn new(path: impl Into<PathBuf>, bird: Bird) -> Self {
        let path = path.into();
        let installed = std::fs::read_to_string(&path).ok();
        Self {
            path,
            bird,
            installed,
            rejected: None,
            stats: InstallStats::default(),
        }
    }

    pub fn stats(&self) -> &InstallStats {
        &self.stats
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn reload_pending(&self) -> bool {
        self.stats.reload_pending
    }

    /// Installs `text` (see the module docs).
    pub async fn install(&mut self, text: &str) -> Result<Outcome, InstallError> {
        if self.installed.as_deref() == Some(text) {
            self.stats.unchanged += 1;
            return Ok(Outcome::Unchanged);
        }
        if self.rejected.as_deref() == Some(text) {
            return Ok(Outcome::StillRejected);
        }
        let staged = self.staged_path();
        write_file(&staged, text)?;
        match self.bird.check(&staged).await {
            Ok(()) => {}
            Err(BirdError::Rejected { message }) => {
                let _ = std::fs::remove_file(&staged);
                return Ok(self.reject(text, message));
            }
            Err(other) => {
                let _ = std::fs::remove_file(&staged);
                return Err(InstallError::Bird(other));
            }
        }
        std::fs::rename(&staged, &self.path).map_err(|source| InstallError::Io {
            op: "rename into",
            path: self.path.clone(),
            source,
        })?;
        let previous = self.installed.replace(text.to_string());
        self.rejected = None;
        self.stats.installed += 1;
        self.stats.reload_pending = true;
        info!(path = %self.path.display(), bytes = text.len(), "BIRD configuration installed");
        match self.reload().await {
            Ok(()) => Ok(Outcome::Installed { reloaded: true }),
            Err(BirdError::Rejected { message }) => {
                // Valid for `bird -p` but refused by the running BIRD: put the last good back.
                self.stats.reload_pending = false;
                if let Some(previous) = previous {
                    self.replace(&previous)?;
                    self.installed = Some(previous);
                }
                Ok(self.reject(text, message))
            }
            Err(_) => Ok(Outcome::Installed { reloaded: false }),
        }
    }

    /// Tries the pending reload again; true once BIRD has taken the configuration.
    pub async fn retry_reload(&mut self) -> bool {
        if !self.stats.reload_pending {
            return true;
        }
        self.reload().await.is_ok()
    }

    /// `birdc configure`, with the bookkeeping and the logs.
    async fn reload(&mut self) -> Result<(), BirdError> {
        match self.bird.configure().await {
            Ok(how) => {
                self.stats.reloads += 1;
                self.stats.reload_pending = false;
                let after_failures = self.stats.last_reload_error.take().is_some();
                let how = match how {
                    Reconfigured::Done => "reconfigured",
                    Reconfigured::InProgress => "reconfiguration in progress",
                    Reconfigured::Queued => "reconfiguration queued",
                };
                info!(how, after_failures, "BIRD reloaded");
                Ok(())
            }
            Err(error) => {
                if !error.is_rejection() {
                    self.stats.reload_failures += 1;
                    let message = error.to_string();
                    if self.stats.last_reload_error.as_ref() != Some(&message) {
                        warn!(%message, "BIRD reload failed; retrying later");
                    }
                    self.stats.last_reload_error = Some(message);
                }
                Err(error)
            }
        }
    }

    fn reject(&mut self, text: &str, message: String) -> Outcome {
        warn!(
            bird = %message,
            rejected = self.stats.rejected + 1,
            "BIRD rejected the new configuration; keeping the last good one"
        );
        self.rejected = Some(text.to_string());
        self.stats.rejected += 1;
        self.stats.last_rejection = Some(message.clone());
        Outcome::Rejected { message }
    }

    /// Writes `text` over the target atomically, without checking it.
    fn replace(&self, text: &str) -> Result<(), InstallError> {
        let staged = self.staged_path();
        write_file(&staged, text)?;
        std::fs::rename(&staged, &self.path).map_err(|source| InstallError::Io {
            op: "rename into",
            path: self.path.clone(),
            source,
        })
    }

    /// `.<name>.new` in the target's directory (same file system, so the rename is atomic).
    fn staged_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map_or_else(|| "bird.conf".into(), |n| n.to_string_lossy().into_owned());
        self.path.with_file_name(format!(".{name}.new"))
    }
}

/// Writes and syncs a file.
fn write_file(path: &Path, text: &str) -> Result<(), InstallError> {
    let io = |op| {
        move |source| InstallError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = std::fs::File::create(path).map_err(io("create"))?;
    file.write_all(text.as_bytes()).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))
}
