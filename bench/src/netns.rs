//! A private network namespace for the benchmark, so that the programs see a known device
//! (`lo`, ifindex 1, where BPF_PROG_TEST_RUN runs TC programs) and nothing of the machine's
//! own network. The namespace dies with the process.

use anyhow::{Result, ensure};
use testkit::netns;

/// Moves the calling thread into a new network namespace (call it before starting threads).
pub fn enter() -> Result<()> {
    netns::unshare_thread()?;
    let lo = netns::ifindex("lo")?;
    ensure!(lo == 1, "lo is ifindex {lo} in the new namespace, not 1");
    Ok(())
}
