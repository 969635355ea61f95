//! Drains aya-log records from the programs' ring buffer into `tracing` (via the `log` bridge).

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::warn;

/// Starts a task that forwards kernel-side log records until the process exits. The programs log
/// only at debug level, so this costs nothing unless `RUST_LOG` asks for it.
pub fn spawn_drain(ebpf: &mut Ebpf) {
    let logger = match EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(error) => {
            warn!(%error, "kernel-side logging unavailable");
            return;
        }
    };
    // SAFETY: the logger owns its ring buffer fd, which stays open and unchanged for as long as
    // the `AsyncFd` holds the logger.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut logger = match registered {
        Ok(fd) => fd,
        Err(error) => {
            warn!(%error, "kernel-side logging unavailable");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
