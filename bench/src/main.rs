//! `bench`: benchmarks of the BPF dataplane.
//!
//! `policy-cost` measures what felix's policy costs per packet in the real `cali_to_wl` and
//! `cali_from_wl` programs under BPF_PROG_TEST_RUN, from an allow-all baseline to 50,000 rules.
//! `control-plane` measures felix itself against a real etcd: full sync, single policy and
//! label changes to programmed maps, memory. Both write a markdown report. The comparison
//! with iptables mode on the lab comes later.

mod control_plane;
mod netns;
mod packet;
mod policies;
mod policy_cost;
mod report;
mod rig;
mod signals;
mod stats;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
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
    /// felix's control plane against a real etcd, at 1,000 endpoints / 100 policies and
    /// 10,000 / 1,000: full sync to programmed maps, single policy and label changes to
    /// programmed maps (p50/p99), felix's memory. Builds nothing: build felix first
    /// (`cargo build --release -p felix-user`).
    ///
    /// Example: `cargo run -p bench --release -- control-plane --out
    /// bench/results/2025-01-01-control-plane.md`
    ControlPlane {
        /// 1,000 / 100 only, one start and 20 changes of each kind: under two minutes.
        #[arg(long)]
        quick: bool,
        /// Also write the markdown report to this file (it is always printed).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The felix binary (default: the workspace's target/release/felix).
        #[arg(long)]
        felix: Option<PathBuf>,
        /// Policy changes and label changes per scale (default: 200, quick: 20).
        #[arg(long)]
        changes: Option<usize>,
        /// Only these scales, `ENDPOINTS/POLICIES` (repeatable), e.g. `--scale 10000/1000`.
        #[arg(long = "scale", value_parser = parse_scale)]
        scales: Vec<control_plane::cluster::Scale>,
        /// Cold starts of felix per scale (default: 3, quick: 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        sync_runs: Option<u64>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::PolicyCost { quick, out } => policy_cost(quick, out),
        Cmd::ControlPlane {
            quick,
            out,
            felix,
            changes,
            scales,
            sync_runs,
        } => control_plane(
            quick,
            out,
            felix,
            Overrides {
                changes,
                scales,
                sync_runs,
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ensure_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(unsafe { libc::geteuid() } == 0, "{what}: run it as root");
    Ok(())
}

fn today() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    report::utc_date(now.as_secs())
}

/// The command line as `cargo run` would repeat it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run -p bench --release -- {}", args.join(" "))
}

/// Prints `text` and writes it to `out` when given.
fn emit(text: &str, out: Option<PathBuf>) -> Result<()> {
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

fn policy_cost(quick: bool, out: Option<PathBuf>) -> Result<()> {
    ensure_root("bench policy-cost loads eBPF programs")?;
    let started = Instant::now();
    let load_before = report::load_average();
    netns::enter()?;
    let settings = if quick {
        policy_cost::Settings::quick()
    } else {
        policy_cost::Settings::full()
    };
    let results = policy_cost::run(&settings)?;
    let header = report::Header {
        date: today(),
        command: command_line(),
        machine: report::Machine::detect(),
        elapsed: started.elapsed(),
        load: [load_before, report::load_average()],
    };
    emit(&report::markdown(&results, &header), out)
}

/// The workspace this bench was built in.
fn workspace() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest)
}

/// `git -C <dir> <args>`'s output, `None` on failure.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// The felix binary and the state of the sources it was built from: the git checkout it
/// sits in (e.g. `<checkout>/target/release/felix`), else this workspace.
fn felix_origin(bin: &Path) -> String {
    let checkout = bin
        .parent()
        .and_then(|dir| git(dir, &["rev-parse", "--show-toplevel"]))
        .map_or_else(|| workspace().to_path_buf(), PathBuf::from);
    let commit = git(&checkout, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into());
    let dirty = git(
        &checkout,
        &[
            "status",
            "--porcelain",
            "--",
            "felix-user",
            "felix-common",
            "felix-ebpf",
        ],
    )
    .unwrap_or_default();
    let tree = if dirty.is_empty() {
        "clean".to_string()
    } else {
        let files: Vec<&str> = dirty.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
        format!("with uncommitted changes in {}", files.join(", "))
    };
    let built = fs::metadata(bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or_else(|| "?".into(), |d| report::utc_date(d.as_secs()));
    format!(
        "`{}` (built {built}) from commit {commit} of {}, felix sources {tree}",
        bin.display(),
        checkout.display()
    )
}

/// `ENDPOINTS/POLICIES`.
fn parse_scale(text: &str) -> Result<control_plane::cluster::Scale, String> {
    let (e, p) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected ENDPOINTS/POLICIES"))?;
    let number = |s: &str| s.trim().parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
    Ok(control_plane::cluster::Scale {
        endpoints: number(e)?,
        policies: number(p)?,
    })
}

/// Settings given on the command line.
struct Overrides {
    changes: Option<usize>,
    scales: Vec<control_plane::cluster::Scale>,
    sync_runs: Option<u64>,
}

fn control_plane(
    quick: bool,
    out: Option<PathBuf>,
    felix: Option<PathBuf>,
    overrides: Overrides,
) -> Result<()> {
    ensure_root("bench control-plane creates namespaces and runs felix")?;
    let started = Instant::now();
    let load_before = report::load_average();
    let felix = felix.unwrap_or_else(|| workspace().join("target/release/felix"));
    ensure!(
        felix.is_file(),
        "no felix binary at {}: cargo build --release -p felix-user",
        felix.display()
    );
    let mut settings = if quick {
        control_plane::Settings::quick()
    } else {
        control_plane::Settings::full()
    };
    if let Some(n) = overrides.changes {
        settings.changes = n;
    }
    if !overrides.scales.is_empty() {
        settings.scales = overrides.scales;
    }
    if let Some(n) = overrides.sync_runs {
        settings.sync_runs = usize::try_from(n).context("--sync-runs")?;
    }
    let origin = felix_origin(&felix);
    let results = control_plane::run(&settings, &felix)?;
    let header = control_plane::report::Header {
        date: today(),
        command: command_line(),
        machine: report::Machine::detect(),
        elapsed: started.elapsed(),
        load: [load_before, report::load_average()],
        felix: origin,
    };
    emit(&control_plane::report::markdown(&results, &header), out)
}
