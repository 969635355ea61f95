//! What every command shares: the `--json` / table output of rows, etcd and pin-root
//! arguments, and a small async runtime for the commands that make a few etcd calls.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;
use felix_user::dataplane::pins::{DEFAULT_PIN_ROOT, DEFAULT_RUN_ROOT};
use ipnet::Ipv4Net;

use crate::bpf::DumpArgs;

/// Prints `rows` as JSON (`{"node":..,"<field>":[..]}`) or as a table.
pub(crate) fn print_rows<T: serde::Serialize>(
    args: &DumpArgs,
    node: &str,
    field: &str,
    rows: &[T],
    table: impl Fn(&[T]) -> String,
) -> Result<()> {
    if args.json {
        let doc = serde_json::json!({ "node": node, field: rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("node {node}");
        print!("{}", table(rows));
    }
    Ok(())
}

/// A single-threaded runtime for the commands that make a few async calls.
pub(crate) fn small_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Runs an etcd client operation on a small runtime, with a bounded connect.
pub(crate) fn with_etcd<T>(
    endpoints: &[String],
    work: impl AsyncFnOnce(&mut etcd_client::Client) -> Result<T>,
) -> Result<T> {
    let runtime = small_runtime()?;
    runtime
        .block_on(async {
            let connect = etcd_client::Client::connect(endpoints, None);
            let mut client = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .context("etcd did not answer within 5 s")??;
            work(&mut client).await
        })
        .with_context(|| format!("etcd at {}", endpoints.join(",")))
}

#[derive(Args)]
pub(crate) struct EtcdArgs {
    /// etcd client URLs, comma-separated or repeated.
    #[arg(
        long,
        env = "FELIX_ETCDENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub(crate) etcd_endpoints: Vec<String>,
}

/// Accepts `KEY=VALUE`.
pub(crate) fn parse_attr(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE (example: pod=p1)"))
}

/// Accepts `a.b.c.d/len` or a bare address (as /32).
pub(crate) fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    text.parse::<Ipv4Net>()
        .or_else(|_| text.parse::<std::net::Ipv4Addr>().map(Ipv4Net::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not an IPv4 CIDR or address (example: 10.0.0.9/32)"))
}

#[derive(Args, Clone)]
pub(crate) struct Roots {
    /// Root of the per-node pin trees (on a bpffs mount).
    #[arg(long, default_value = DEFAULT_PIN_ROOT, global = true)]
    pub(crate) pin_root: PathBuf,
    /// Root of the per-node run files (pid files).
    #[arg(long, default_value = DEFAULT_RUN_ROOT, global = true)]
    pub(crate) run_root: PathBuf,
}
