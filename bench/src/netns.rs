//! A private network namespace for the benchmark, so that the programs see a known device
//! (`lo`, ifindex 1, where BPF_PROG_TEST_RUN runs TC programs) and nothing of the machine's
//! own network. The namespace dies with the process.

use anyhow::{Result, bail, ensure};

/// Moves the calling thread into a new network namespace (call it before starting threads).
pub fn enter() -> Result<()> {
    // SAFETY: plain syscall; it affects only the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated name.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    ensure!(lo == 1, "lo is ifindex {lo} in the new namespace, not 1");
    Ok(())
}
