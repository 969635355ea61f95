//! `felix`: the per-host agent of an eBPF dataplane for Calico, and the tools to inspect it.
//! This file parses the command line and dispatches; each command group has a file of its own.

mod bpf;
mod ipam;
mod output;
mod policy;
mod resources;
mod run;
mod status;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::{
    bpf::BpfCommand,
    ipam::{IpamCommand, run_ipam},
    policy::{PolicyCommand, explain_policy},
    resources::{FileArgs, GetArgs, apply_file, get_resources},
    run::{RunArgs, run},
    status::{StatusArgs, show_status},
};

/// An eBPF dataplane for Calico: attaches TC programs to workload (cali*) interfaces and keeps
/// their maps pinned under /sys/fs/bpf/felix/<node>/.
#[derive(Parser)]
#[command(name = "felix", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the agent for one node in the foreground (until SIGINT or SIGTERM).
    ///
    /// Example: felix run --node h1 --etcd-endpoints http://10.0.0.254:2379
    Run(Box<RunArgs>),
    /// Inspect the BPF maps of a running felix.
    #[command(subcommand)]
    Bpf(BpfCommand),
    /// Validate Calico v3 resources from a YAML or JSON file (one or many documents) and write
    /// them at Calico's keys. A document that does not validate is reported (document, field,
    /// reason) and not written; the others are.
    ///
    /// Example: felix apply -f policy.yaml --etcd-endpoints http://10.0.0.254:2379
    Apply(FileArgs),
    /// Delete the Calico v3 resources a file names (by kind, namespace and name).
    Delete(FileArgs),
    /// Print stored resources of a kind (YAML, or JSON with --json).
    ///
    /// Example: felix get globalnetworkpolicies --etcd-endpoints URL
    Get(GetArgs),
    /// Calico IPAM in etcd: claim blocks for nodes, assign and release pod addresses.
    #[command(subcommand)]
    Ipam(IpamCommand),
    /// Show what every felix reports in etcd: its own state, its datastore sync (revision,
    /// reconnects, resyncs, malformed values per kind) and its endpoints.
    ///
    /// Example: felix status --etcd-endpoints http://10.0.0.254:2379 --node h1
    Status(StatusArgs),
    /// Network policy as felix computes it from the datastore.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// Swaps the log filter once `felix run` knows its configured level.
pub(crate) type LogFilter =
    tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// The filter for a log level: netlink-packet-route warns about every attribute newer than
/// itself, so it only logs errors.
pub(crate) fn level_filter(level: tracing::Level) -> EnvFilter {
    EnvFilter::new(format!(
        "{},netlink_packet_route=error",
        level.as_str().to_ascii_lowercase()
    ))
}

fn main() -> ExitCode {
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| level_filter(tracing::Level::INFO));
    let (filter, log_filter) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let result = match cli.command {
        Command::Run(args) => {
            let run_matches = matches.subcommand_matches("run").unwrap_or(&matches);
            run(*args, run_matches, &log_filter)
        }
        command => dispatch(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every command but `felix run` (which needs the parsed matches and the log filter).
fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(_) => unreachable!("felix run is dispatched by main"),
        Command::Status(args) => show_status(&args),
        Command::Ipam(command) => run_ipam(command),
        Command::Apply(args) => apply_file(&args, true),
        Command::Delete(args) => apply_file(&args, false),
        Command::Get(args) => get_resources(&args),
        Command::Bpf(command) => bpf::dispatch(command),
        Command::Policy(PolicyCommand::Explain(args)) => explain_policy(&args),
    }
}
