//! `bench`: benchmarks of the BPF dataplane.
//!
//! `policy-cost` measures what felix's policy costs per packet in the real `cali_to_wl` and
//! `cali_from_wl` programs under BPF_PROG_TEST_RUN, from an allow-all baseline to 50,000 rules,
//! and writes a markdown report. The comparison with iptables mode on the lab comes later.

mod netns;
mod packet;
mod policies;
mod policy_cost;
mod report;
mod rig;
mod stats;

use std::{
    fs,
    path::PathBuf,
    process::ExitCode,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};

/// Benchmarks of felix's BPF dataplane (run as root).
#[derive(Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Per-packet policy cost of `cali_to_wl` and `cali_from_wl` (BPF_PROG_TEST_RUN) for
    /// 0 to 50,000 rules: first packet, established flow, compile time and table sizes.
    ///
    /// Example: `cargo run -p bench --release -- policy-cost --out
    /// bench/results/2025-01-01-policy-cost.md`
    PolicyCost {
        /// Fewer rounds, runs and rule counts: done in well under a minute.
        #[arg(long)]
        quick: bool,
        /// Also write the markdown report to this file (it is always printed).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::PolicyCost { quick, out } => policy_cost(quick, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn policy_cost(quick: bool, out: Option<PathBuf>) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "bench policy-cost loads eBPF programs: run it as root"
    );
    let started = Instant::now();
    let load_before = report::load_average();
    netns::enter()?;
    let settings = if quick {
        policy_cost::Settings::quick()
    } else {
        policy_cost::Settings::full()
    };
    let results = policy_cost::run(&settings)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let header = report::Header {
        date: report::utc_date(now.as_secs()),
        command: format!("cargo run -p bench --release -- {}", args.join(" ")),
        machine: report::Machine::detect(),
        elapsed: started.elapsed(),
        load: [load_before, report::load_average()],
    };
    let text = report::markdown(&results, &header);
    print!("{text}");
    if let Some(path) = out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
