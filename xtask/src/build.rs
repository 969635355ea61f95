//! `cargo xtask build`: the release felix binary (its build.rs builds and embeds the eBPF object).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::{cmd, paths, setup};

/// Ensures setup, builds `felix-user` in release mode and returns the felix binary to run.
pub fn felix() -> Result<PathBuf> {
    setup::ensure()?;
    cmd::inherit(
        Command::new(paths::cargo())
            .args(["build", "--release", "-p", "felix-user"])
            .current_dir(paths::repo_root()),
    )?;
    let bin = paths::felix_bin();
    if !bin.is_file() {
        bail!("felix binary {} missing after the build", bin.display());
    }
    Ok(bin)
}
