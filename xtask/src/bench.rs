//! `cargo xtask bench`: runs the benchmarks of `bench/` (release builds with the real eBPF
//! object; needs root).

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};
use xtask::{build, cmd, paths, setup};

/// `cargo run --release -p bench -- <args>`, with `--quick` and `--out PATH` (taken relative
/// to the caller's directory) added when given.
fn run_bench(args: &[&str], quick: bool, out: Option<PathBuf>) -> Result<()> {
    let mut command = Command::new(paths::cargo());
    command
        .args(["run", "--release", "-p", "bench", "--"])
        .args(args)
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

/// `cargo run --release -p bench -- policy-cost [--quick] [--out PATH]`.
pub fn policy_cost(quick: bool, out: Option<PathBuf>) -> Result<()> {
    setup::ensure()?;
    run_bench(&["policy-cost"], quick, out)
}

/// Builds felix (`cargo build --release -p felix-user`), then `cargo run --release -p bench --
/// control-plane --felix <it> [--quick] [--out PATH]`.
pub fn control_plane(quick: bool, out: Option<PathBuf>) -> Result<()> {
    let felix = build::felix()?;
    let felix = felix.to_str().context("felix path is not UTF-8")?;
    run_bench(&["control-plane", "--felix", felix], quick, out)
}

/// Builds felix and bird-conf (`cargo xtask build`), then `cargo run --release -p bench --
/// dataplane --felix <it> [--quick] [--out PATH]`: plain routing, iptables mode and BPF mode on
/// the lab.
pub fn dataplane(quick: bool, out: Option<PathBuf>) -> Result<()> {
    let felix = build::felix()?;
    let felix = felix.to_str().context("felix path is not UTF-8")?;
    run_bench(&["dataplane", "--felix", felix], quick, out)
}
