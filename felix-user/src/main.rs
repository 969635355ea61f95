//! `felix`: the per-host agent of an eBPF dataplane for Calico, and the tools to inspect it.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use felix_user::{
    agent::{self, AgentConfig},
    inspect,
    pins::{self, DEFAULT_PIN_ROOT, DEFAULT_RUN_ROOT},
};
use tracing_subscriber::EnvFilter;

/// An eBPF dataplane for Calico: attaches TC programs to workload (cali*) interfaces and keeps
/// their maps pinned under /sys/fs/bpf/felix/<node>/.
#[derive(Parser)]
#[command(name = "felix", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent for one node in the foreground (until SIGINT or SIGTERM).
    ///
    /// Example: felix run --node h1 --etcd-endpoints http://10.0.0.254:2379
    Run(RunArgs),
    /// Inspect the BPF maps of a running felix.
    #[command(subcommand)]
    Bpf(BpfCommand),
}

#[derive(Args)]
struct RunArgs {
    /// This host's Calico node name (also names the pin tree).
    #[arg(long, env = "FELIX_NODENAME")]
    node: String,
    /// etcd client URLs, comma-separated or repeated.
    #[arg(
        long,
        env = "FELIX_ETCDENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    etcd_endpoints: Vec<String>,
    /// Name prefixes of workload interfaces, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "cali")]
    workload_prefixes: Vec<String>,
    #[command(flatten)]
    roots: Roots,
}

#[derive(Args, Clone)]
struct Roots {
    /// Root of the per-node pin trees (on a bpffs mount).
    #[arg(long, default_value = DEFAULT_PIN_ROOT, global = true)]
    pin_root: PathBuf,
    /// Root of the per-node run files (pid files).
    #[arg(long, default_value = DEFAULT_RUN_ROOT, global = true)]
    run_root: PathBuf,
}

#[derive(Subcommand)]
enum BpfCommand {
    /// Packet and byte counters per interface, direction and verdict reason.
    #[command(subcommand)]
    Counters(DumpOnly),
    /// The interfaces felix manages and how its programs are attached to them.
    #[command(subcommand)]
    Ifaces(DumpOnly),
}

#[derive(Subcommand)]
enum DumpOnly {
    /// Print the map's contents.
    ///
    /// Example: felix bpf counters dump --node h1 --json
    Dump(DumpArgs),
}

#[derive(Args)]
struct DumpArgs {
    /// Node whose maps to read; may be left out when only one node has pinned maps.
    #[arg(long)]
    node: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Read the pinned maps even when that node's felix is not running.
    #[arg(long)]
    stale_ok: bool,
    #[command(flatten)]
    roots: Roots,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            // netlink-packet-route warns about every attribute newer than itself.
            EnvFilter::new("info,netlink_packet_route=error")
        }))
        .with_writer(std::io::stderr)
        .init();
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Bpf(BpfCommand::Counters(DumpOnly::Dump(args))) => dump_counters(&args),
        Command::Bpf(BpfCommand::Ifaces(DumpOnly::Dump(args))) => dump_ifaces(&args),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let config = AgentConfig {
        node: args.node,
        etcd_endpoints: args.etcd_endpoints,
        pin_root: args.roots.pin_root,
        run_root: args.roots.run_root,
        workload_prefixes: args.workload_prefixes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("install the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        agent::run(config, shutdown).await.context("felix run")
    })
}

/// Finds the node to read and refuses a node whose felix is not running unless asked.
fn node_for_dump(args: &DumpArgs) -> Result<pins::NodePaths> {
    let paths = pins::resolve_node(
        &args.roots.pin_root,
        &args.roots.run_root,
        args.node.as_deref(),
    )?;
    if !args.stale_ok && paths.running_pid().is_none() {
        anyhow::bail!(
            "felix for node {:?} is not running (its maps are still pinned at {}); start `felix run --node {}` or pass --stale-ok to read them anyway",
            paths.node(),
            paths.pin_dir().display(),
            paths.node()
        );
    }
    Ok(paths)
}

fn dump_counters(args: &DumpArgs) -> Result<()> {
    let paths = node_for_dump(args)?;
    let rows = inspect::read_counters(&paths)?;
    if args.json {
        let doc = serde_json::json!({ "node": paths.node(), "counters": rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("node {}", paths.node());
        print!("{}", inspect::counters_table(&rows));
    }
    Ok(())
}

fn dump_ifaces(args: &DumpArgs) -> Result<()> {
    let paths = node_for_dump(args)?;
    let rows = inspect::read_ifaces(&paths)?;
    if args.json {
        let doc = serde_json::json!({ "node": paths.node(), "interfaces": rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("node {}", paths.node());
        print!("{}", inspect::ifaces_table(&rows));
    }
    Ok(())
}
