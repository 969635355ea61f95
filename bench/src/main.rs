//! `bench`: benchmarks of the BPF dataplane.
//!
//! `policy-cost` measures what felix's policy costs per packet in the real `cali_to_wl` and
//! `cali_from_wl` programs under BPF_PROG_TEST_RUN, from an allow-all baseline to 50,000 rules.
//! `control-plane` measures felix itself against a real etcd: full sync, single policy and
//! label changes to programmed maps, memory. `dataplane` compares plain routing, iptables
//! mode and BPF mode on the lab, driving `loadgen` in the pods. Each writes a markdown report.

mod control_plane;
mod cpu_time;
mod dataplane;
mod empty_prog;
mod established;
mod loadgen;
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
    /// Per-packet cost of an established flow in `cali_to_wl` and `cali_from_wl`
    /// (BPF_PROG_TEST_RUN) against the empty program: `policy-cost`'s fast-path figures
    /// alone, in seconds. Several `--object`s are measured round-robin in one run, so that
    /// variants compare under the same load.
    ///
    /// Example: `cargo run -p bench --release -- established --object a.o --object b.o`
    Established {
        /// Rounds; medians are taken over them.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
        /// Runs per BPF_PROG_TEST_RUN call.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// An eBPF object to measure instead of the one embedded in felix (repeatable), e.g.
        /// `target/ebpf/bpfel-unknown-none/release/felix`.
        #[arg(long = "object")]
        objects: Vec<PathBuf>,
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
    /// Plain kernel routing, iptables mode (nft, legacy) and BPF mode on the lab: TCP
    /// throughput (TSO/GSO on and off), CPU per gigabit, RR and new connections per second at
    /// 4 client threads and at a load that saturates the CPUs, CPU µs per transaction and per
    /// connection, connect latency, 0 to 50,000 non-matching rules, same host, two hosts and
    /// host to host (the limit); plus PROG_TEST_RUN per-packet cost and the targets.
    /// Writes `<out>` (markdown), the SVG plot and JSON next to it. Builds nothing: build
    /// felix and bird-conf first (`cargo xtask build`).
    ///
    /// Example: `cargo run -p bench --release -- dataplane --quick`
    Dataplane {
        /// 0 and 100 rules (and 100 selectors), one run each: a few minutes.
        #[arg(long)]
        quick: bool,
        /// The markdown report (default: bench/results/<date>-dataplane.md); the plot and
        /// the JSON go next to it (`.svg`, `.json`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The felix binary (default: the workspace's target/release/felix).
        #[arg(long)]
        felix: Option<PathBuf>,
        /// Only these modes (repeatable).
        #[arg(long = "mode", value_parser = parse_mode)]
        modes: Vec<dataplane::results::Mode>,
        /// Only these counts of /32-source rules (repeatable, ascending).
        #[arg(long = "rules")]
        rules: Vec<u32>,
        /// Only these counts of selector (ipset) rules (repeatable).
        #[arg(long = "selectors")]
        selectors: Vec<u32>,
        /// Runs of every figure (default: 5 in plain and at 10,000 rules, 2 elsewhere; quick: 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        runs: Option<u64>,
        /// Client threads of the saturating load (default: 8 per CPU).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        saturating_threads: Option<u64>,
    },
    /// The load generator `dataplane` runs inside the lab's pods.
    Loadgen {
        #[command(subcommand)]
        cmd: LoadgenCmd,
    },
}

#[derive(Subcommand)]
enum LoadgenCmd {
    /// Answer every SIZE-byte request with SIZE bytes, a thread per connection.
    Serve {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Run RR or CRR against a server for SECONDS; prints one JSON line.
    Client {
        #[arg(long, value_enum)]
        pattern: loadgen::Pattern,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, default_value_t = 4)]
        threads: usize,
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// One connection attempt: prints open, refused, timeout or error.
    Probe {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, default_value_t = 300)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::PolicyCost { quick, out } => policy_cost(quick, out),
        Cmd::Established {
            rounds,
            repeat,
            objects,
        } => established(rounds, repeat, objects),
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
        Cmd::Dataplane {
            quick,
            out,
            felix,
            modes,
            rules,
            selectors,
            runs,
            saturating_threads,
        } => dataplane(
            quick,
            out,
            felix,
            DataplaneOverrides {
                modes,
                rules,
                selectors,
                runs,
                saturating_threads,
            },
        ),
        Cmd::Loadgen { cmd } => run_loadgen(cmd),
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

/// The felix binary to run: `--felix`, else the workspace's release build.
fn felix_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    let felix = given.unwrap_or_else(|| workspace().join("target/release/felix"));
    ensure!(
        felix.is_file(),
        "no felix binary at {}: build it with `cargo xtask build` or pass --felix PATH",
        felix.display()
    );
    Ok(felix)
}

/// What a report says about the run that started at `started`, ending now.
fn run_header(date: String, started: Instant, load_before: String) -> report::Header {
    report::Header {
        date,
        command: command_line(),
        machine: report::Machine::detect(),
        elapsed: started.elapsed(),
        load: [load_before, report::load_average()],
    }
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
    let header = run_header(today(), started, load_before);
    emit(&report::markdown(&results, &header), out)
}

fn established(rounds: u64, repeat: u32, objects: Vec<PathBuf>) -> Result<()> {
    ensure_root("bench established loads eBPF programs")?;
    netns::enter()?;
    let options = established::Options {
        rounds: usize::try_from(rounds).context("--rounds")?,
        repeat,
        objects,
    };
    emit(&established::run(&options)?, None)
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
    let felix = felix_binary(felix)?;
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
        run: run_header(today(), started, load_before),
        felix: origin,
    };
    emit(&control_plane::report::markdown(&results, &header), out)
}

/// `plain`, `iptables-nft`, `iptables-legacy`, `bpf` or `bpf-native`.
fn parse_mode(text: &str) -> Result<dataplane::results::Mode, String> {
    dataplane::results::Mode::ALL
        .into_iter()
        .find(|m| m.name() == text)
        .ok_or_else(|| {
            format!("{text:?}: expected plain, iptables-nft, iptables-legacy, bpf or bpf-native")
        })
}

fn run_loadgen(cmd: LoadgenCmd) -> Result<()> {
    match cmd {
        LoadgenCmd::Serve { port, size } => loadgen::serve(port, size),
        LoadgenCmd::Client {
            pattern,
            to,
            threads,
            seconds,
            size,
        } => {
            ensure!(seconds > 0.0, "--seconds must be positive");
            let out = loadgen::client(
                pattern,
                to,
                threads,
                std::time::Duration::from_secs_f64(seconds),
                size,
            )?;
            println!("{}", out.to_json());
            Ok(())
        }
        LoadgenCmd::Probe { to, timeout_ms } => {
            let timeout = std::time::Duration::from_millis(timeout_ms);
            println!("{}", dataplane::traffic::probe_here(to, timeout));
            Ok(())
        }
    }
}

/// `bench dataplane`'s settings given on the command line.
struct DataplaneOverrides {
    modes: Vec<dataplane::results::Mode>,
    rules: Vec<u32>,
    selectors: Vec<u32>,
    runs: Option<u64>,
    saturating_threads: Option<u64>,
}

fn dataplane(
    quick: bool,
    out: Option<PathBuf>,
    felix: Option<PathBuf>,
    overrides: DataplaneOverrides,
) -> Result<()> {
    ensure_root("bench dataplane builds labs and loads eBPF programs")?;
    let started = Instant::now();
    let load_before = report::load_average();
    let felix = felix_binary(felix)?;
    let mut settings = if quick {
        dataplane::Settings::quick()
    } else {
        dataplane::Settings::full()
    };
    if !overrides.modes.is_empty() {
        settings.modes = overrides.modes;
    }
    if !overrides.rules.is_empty() {
        settings.cidr_rules = overrides.rules;
    }
    if !overrides.selectors.is_empty() {
        settings.selector_rules = overrides.selectors;
    }
    if let Some(n) = overrides.runs {
        let n = usize::try_from(n).context("--runs")?;
        settings.runs = n;
        settings.curve_runs = n;
    }
    if let Some(n) = overrides.saturating_threads {
        settings.saturating_threads = usize::try_from(n).context("--saturating-threads")?;
    }
    let date = today();
    let out = out.unwrap_or_else(|| dataplane::default_out(workspace(), &date));
    let origin = felix_origin(&felix);
    let prog = dataplane::prog_cost::measure(quick).context("PROG_TEST_RUN per-packet cost")?;
    let results = dataplane::run(&settings, &felix)?;
    let plot = out.with_extension("svg");
    if let Some(dir) = plot.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    dataplane::plot::write(&results, &plot)?;
    let json = out.with_extension("json");
    let mut document = results.to_json();
    document["targets"] = dataplane::targets::targets(&results, Some(&prog))
        .iter()
        .map(dataplane::targets::Target::to_json)
        .collect();
    fs::write(&json, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("write {}", json.display()))?;
    let header = dataplane::report::Header {
        run: run_header(date, started, load_before),
        felix: origin,
        versions: dataplane::versions(),
        plot: plot.file_name().map(|n| n.to_string_lossy().into_owned()),
    };
    eprintln!("wrote {} and {}", plot.display(), json.display());
    emit(
        &dataplane::report::markdown(&results, Some(&prog), &settings, &header),
        Some(out),
    )
}
