//! `cargo xtask test`: the three test tiers, with a summary.
//!
//! - unit: `cargo test --workspace`, clippy with `-D warnings`, rustfmt check;
//! - bpf: the real programs under BPF_PROG_TEST_RUN (`felix-user/tests/prog_test_run.rs`) and
//!   the datastore syncer against a real etcd (`felix-user/tests/datastore_etcd.rs`), and
//!   iptables mode's rules through both backends (`felix-user/tests/iptables_mode.rs`), each
//!   test in a network namespace of its own; then `felix-cni` driven as a container runtime drives
//!   it (`felix-cni/tests/cni_netns.rs`), also with a real etcd in namespaces of its own;
//! - lab: the netns lab tests (`lab/tests/lab/`, one module per feature).

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::{build, cmd, paths, setup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    /// Pure tests, clippy and rustfmt.
    Unit,
    /// BPF_PROG_TEST_RUN of the real eBPF programs, and the datastore syncer and felix-cni
    /// against a real etcd (root).
    Bpf,
    /// Network-namespace lab tests with etcd and felix (root).
    Lab,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Unit, Tier::Bpf, Tier::Lab];

    fn name(self) -> &'static str {
        match self {
            Tier::Unit => "unit",
            Tier::Bpf => "bpf",
            Tier::Lab => "lab",
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    cmd::inherit(
        Command::new(paths::cargo())
            .args(args)
            .current_dir(paths::repo_root()),
    )
}

fn run_tier(tier: Tier) -> Result<()> {
    match tier {
        Tier::Unit => {
            let steps: [&[&str]; 3] = [
                &["test", "--workspace"],
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
                &["fmt", "--all", "--check"],
            ];
            let failed: Vec<String> = steps
                .iter()
                .filter_map(|args| cargo(args).err().map(|e| format!("{e:#}")))
                .collect();
            if !failed.is_empty() {
                bail!("{}", failed.join("; "));
            }
            Ok(())
        }
        Tier::Bpf => {
            const TESTS: [&str; 13] = [
                "prog_test_run",
                "policy_test_run",
                "datastore_etcd",
                "iptables_mode",
                "failsafe_test_run",
                "native_test_run",
                "conntrack_full",
                "ct_cleaner_test_run",
                "config_etcd",
                "host_nat_test_run",
                "uplink_netns",
                "ct_flow_test_run",
                "frames_test_run",
            ];
            for name in TESTS {
                let test = paths::repo_root().join(format!("felix-user/tests/{name}.rs"));
                if !test.is_file() {
                    bail!(
                        "{} does not exist: the BPF tier misses a test",
                        test.display()
                    );
                }
            }
            let mut args = vec![
                "test",
                "--release",
                "-p",
                "felix-user",
                "--features",
                "privileged-tests",
            ];
            for name in TESTS {
                args.extend(["--test", name]);
            }
            args.extend(["--", "--test-threads=1"]);
            let felix = cargo(&args);
            // felix-cni driven as a runtime drives it, in namespaces with a real etcd.
            let cni = cargo(&[
                "test",
                "--release",
                "-p",
                "felix-cni",
                "--features",
                "privileged-tests",
                "--",
                "--test-threads=1",
            ]);
            let failed: Vec<String> = [felix, cni]
                .into_iter()
                .filter_map(|r| r.err().map(|e| format!("{e:#}")))
                .collect();
            if !failed.is_empty() {
                bail!("{}", failed.join("; "));
            }
            Ok(())
        }
        Tier::Lab => {
            build::felix()?;
            // The lab tests run `xtask lab up` in a process of its own: this very binary.
            let xtask = std::env::current_exe().context("finding the xtask binary")?;
            cmd::inherit(
                Command::new(paths::cargo())
                    .args([
                        "test",
                        "--release",
                        "-p",
                        "lab",
                        "--features",
                        "lab-tests",
                        "--test",
                        "lab",
                        "--",
                        "--test-threads=1",
                    ])
                    .env(paths::XTASK_BIN_ENV, xtask)
                    .current_dir(paths::repo_root()),
            )
        }
    }
}

/// Runs `tiers` in order (all of them even after a failure); true if all passed.
pub fn run(tiers: &[Tier]) -> Result<bool> {
    setup::ensure()?;
    let mut results = Vec::new();
    for &tier in tiers {
        println!("\n=== tier {} ===", tier.name());
        let result = run_tier(tier);
        if let Err(e) = &result {
            eprintln!("tier {} failed: {e:#}", tier.name());
        }
        results.push((tier, result.is_ok()));
    }
    println!("\n=== summary ===");
    for (tier, ok) in &results {
        println!(
            "tier {}: {}",
            tier.name(),
            if *ok { "passed" } else { "FAILED" }
        );
    }
    let passed = results.iter().filter(|(_, ok)| *ok).count();
    let failed = results.len() - passed;
    println!("tiers: {passed} passed, {failed} failed");
    Ok(failed == 0)
}
