//! felix per lab host: started inside the host namespace, ready once it reports programs attached
//! on all of the host's `cali*` interfaces.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::proc::{self, ProcRecord};
use super::state::{HostState, LabState};
use crate::felix;

/// `felix run --node <node> --etcd-endpoints <url>` in the host's network namespace, RUST_LOG=info.
pub fn start(felix_bin: &Path, state: &LabState, host: &HostState) -> Result<ProcRecord> {
    let argv: Vec<String> = vec![
        felix_bin.to_string_lossy().into_owned(),
        "run".into(),
        "--node".into(),
        host.node.clone(),
        "--etcd-endpoints".into(),
        state.etcd_url.clone(),
    ];
    // Not `ip netns exec`: its private /sys hides bpffs, and felix pins under /sys/fs/bpf/felix.
    proc::spawn_in_ns(
        proc::Enter::NsenterNet,
        &host.ns,
        &format!("felix h{}", host.n),
        &argv,
        &[("RUST_LOG", "info")],
        &host.felix_log,
    )
}

/// Polls `felix bpf ifaces dump --node N --json` until every cali of the host has programs attached.
pub fn wait_ready(
    felix_bin: &Path,
    host: &HostState,
    rec: &ProcRecord,
    timeout: Duration,
) -> Result<()> {
    let want: Vec<&str> = host.pods.iter().map(|p| p.cali.as_str()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let alive = rec.is_ours_and_running();
        let last = match felix::ifaces(felix_bin, &host.node) {
            Ok(dump) if alive && dump.all_attached(&want) => return Ok(()),
            Ok(dump) => format!("not all of {want:?} attached yet: {dump:?}"),
            Err(e) => format!("{e:#}"),
        };
        if !alive {
            bail!(
                "felix on {} exited; log {}:\n{}",
                host.node,
                rec.log.display(),
                proc::log_tail(&rec.log, 30)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "felix on {} not ready after {timeout:?} ({last}); log {}:\n{}",
                host.node,
                rec.log.display(),
                proc::log_tail(&rec.log, 30)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}
