//! [`Lab`]'s etcd stop/start, apart from [`crate::etcd`] so that module does not depend on
//! [`Lab`] (which starts etcd through it).

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::etcd::{RESTART_TIMEOUT, start, wait_healthy};
use crate::{Lab, ProcRecord, proc};

impl Lab {
    /// Stops the lab's etcd (SIGTERM by its recorded PID, SIGKILL after 5 s) and forgets its
    /// record; its data directory stays for [`Lab::start_etcd`]. Returns the stopped record.
    pub fn stop_etcd(&mut self) -> Result<ProcRecord> {
        let index = self
            .state
            .processes
            .iter()
            .rposition(|rec| rec.what == "etcd" && rec.is_ours_and_running())
            .with_context(|| format!("no running etcd in lab {}", self.state.id))?;
        let old = self.state.processes.remove(index);
        let problems = proc::terminate(&[old.pid], Duration::from_secs(5));
        self.state.save()?;
        if !problems.is_empty() {
            bail!("stopping etcd: {}", problems.join("; "));
        }
        Ok(old)
    }

    /// Starts etcd again on the same data directory and waits until it is healthy.
    pub fn start_etcd(&mut self) -> Result<ProcRecord> {
        let rec = start(&self.state)?;
        self.track(rec.clone())?;
        wait_healthy(&self.state, &rec, RESTART_TIMEOUT)?;
        Ok(rec)
    }
}
