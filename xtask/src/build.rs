//! `cargo xtask build`: the release felix binary (its build.rs builds and embeds the eBPF object)
//! and bird-conf, which the lab runs next to BIRD on every host, and felix-cni, which lab tests
//! run as a container runtime does.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::{cmd, paths, setup};

/// Ensures setup, builds `felix-user`, `bird-conf` and `felix-cni` in release mode and returns
/// the felix binary to run.
pub fn felix() -> Result<PathBuf> {
    setup::ensure()?;
    cmd::inherit(
        Command::new(paths::cargo())
            .args([
                "build",
                "--release",
                "-p",
                "felix-user",
                "-p",
                "bird-conf",
                "-p",
                "felix-cni",
            ])
            .current_dir(paths::repo_root()),
    )?;
    for bin in [paths::felix_bin(), paths::bird_conf_bin()] {
        if !bin.is_file() {
            bail!("{} missing after the build", bin.display());
        }
    }
    Ok(paths::felix_bin())
}
