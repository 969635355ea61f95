//! `cargo xtask`: developer tasks for the felix eBPF dataplane.

mod bench;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::tiers::Tier;
use xtask::{build, demo, lab, paths, setup, tiers};

/// Developer tasks: setup, build, the netns lab, the demo, the tiered tests and benchmarks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build, lab and tests need (idempotent; prints each item's state).
    Setup,
    /// Build the release felix binary (with the embedded eBPF object).
    Build,
    /// The network-namespace lab: a 2-host Calico cluster with etcd and felix.
    Lab {
        #[command(subcommand)]
        cmd: LabCmd,
    },
    /// Build, bring a lab up, show pod traffic and BPF counters, tear down.
    Demo,
    /// Run the test tiers (unit, bpf, lab) and print a summary; non-zero exit if any failed.
    ///
    /// Example: `cargo xtask test --tier lab`
    Test {
        /// Run only this tier.
        #[arg(long, value_enum)]
        tier: Option<Tier>,
    },
    /// Benchmarks of the BPF dataplane (root; release build with the real eBPF object).
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Per-packet policy cost of `cali_to_wl`/`cali_from_wl` under BPF_PROG_TEST_RUN, 0 to
    /// 50,000 rules; prints a markdown report.
    ///
    /// Example: `cargo xtask bench policy-cost --out bench/results/2025-01-01-policy-cost.md`
    PolicyCost {
        /// Fewer rounds and rule counts (under a minute).
        #[arg(long)]
        quick: bool,
        /// Also write the report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// felix's control plane against a real etcd (10,000 endpoints / 1,000 policies and
    /// 1,000 / 100): full sync, single policy and label changes to programmed maps (p50/p99),
    /// felix's memory; prints a markdown report. Builds felix first.
    ///
    /// Example: `cargo xtask bench control-plane --out bench/results/2025-01-01-control-plane.md`
    ControlPlane {
        /// 1,000 / 100 only, fewer changes (under two minutes).
        #[arg(long)]
        quick: bool,
        /// Also write the report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Plain kernel routing vs felix's iptables mode (nft, legacy) vs its BPF mode on the lab:
    /// throughput (TSO/GSO on/off), CPU per Gbit, RR and new connections per second at 0 to
    /// 50,000 non-matching rules, same host and two hosts, plus PROG_TEST_RUN per-packet cost.
    /// Writes the markdown report, an SVG plot and JSON. Builds felix first. Full: ~20 min.
    ///
    /// Example: `cargo xtask bench dataplane --quick`
    Dataplane {
        /// 0 and 100 rules, one run of each figure: a few minutes (CI smoke).
        #[arg(long)]
        quick: bool,
        /// The report (default: bench/results/<date>-dataplane.md; .svg and .json beside it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LabCmd {
    /// Tear down existing labs, build felix, bring a new lab up and leave it running.
    Up {
        /// Skip `cargo xtask build` (use the felix binary as it is; `$XTASK_FELIX` overrides it).
        #[arg(long)]
        no_build: bool,
    },
    /// Tear down every lab: processes, namespaces, pin folders, state.
    Down,
    /// Show each lab: namespaces, processes, etcd health, felix counters.
    Status,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    match cli.cmd {
        Cmd::Setup => setup::run_verbose()?,
        Cmd::Build => {
            let bin = build::felix()?;
            println!("built {}", bin.display());
        }
        Cmd::Lab { cmd } => match cmd {
            LabCmd::Up { no_build } => {
                let felix = if no_build {
                    setup::ensure()?;
                    paths::felix_bin()
                } else {
                    build::felix()?
                };
                lab::up_persistent(felix)?;
            }
            LabCmd::Down => lab::down()?,
            LabCmd::Status => lab::status::print_all(&paths::felix_bin())?,
        },
        Cmd::Demo => demo::run()?,
        Cmd::Bench { cmd } => match cmd {
            BenchCmd::PolicyCost { quick, out } => bench::policy_cost(quick, out)?,
            BenchCmd::ControlPlane { quick, out } => bench::control_plane(quick, out)?,
            BenchCmd::Dataplane { quick, out } => bench::dataplane(quick, out)?,
        },
        Cmd::Test { tier } => {
            let selected = tier.map_or(Tier::ALL.to_vec(), |t| vec![t]);
            return tiers::run(&selected);
        }
    }
    Ok(true)
}
