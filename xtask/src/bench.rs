//! `cargo xtask bench`: runs the benchmarks of `bench/` (release build with the real eBPF
//! object; needs root).

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};
use xtask::{cmd, paths, setup};

/// `cargo run --release -p bench -- policy-cost [--quick] [--out PATH]`, `PATH` taken relative
/// to the caller's directory.
pub fn policy_cost(quick: bool, out: Option<PathBuf>) -> Result<()> {
    setup::ensure()?;
    let mut command = Command::new(paths::cargo());
    command
        .args(["run", "--release", "-p", "bench", "--", "policy-cost"])
        .current_dir(paths::repo_root())
        .env_remove("FELIX_EBPF_STUB");
    if quick {
        command.arg("--quick");
    }
    if let Some(out) = out {
        let cwd = std::env::current_dir().context("current directory")?;
        command.arg("--out").arg(cwd.join(out));
    }
    cmd::inherit(&mut command)
}
