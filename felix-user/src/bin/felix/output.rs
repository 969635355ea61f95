//! What every command shares: the `--json` / table output of rows, etcd and pin-root
//! arguments, and a small async runtime for the commands that make a few etcd calls.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use calico::etcd_access::{EtcdAccess, TlsFiles};
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
    etcd: &EtcdArgs,
    work: impl AsyncFnOnce(&mut etcd_client::Client) -> Result<T>,
) -> Result<T> {
    let access = etcd.access()?;
    let runtime = small_runtime()?;
    runtime
        .block_on(async {
            let mut client = access
                .connect(etcd_client::ConnectOptions::new(), Duration::from_secs(5))
                .await?;
            work(&mut client).await
        })
        .with_context(|| format!("etcd at {}", access.joined()))
}

/// How the commands reach etcd, named as calicoctl names it (`ETCD_*`); felix's own
/// `FELIX_ETCD*` variables are read when those are unset.
#[derive(Args)]
pub(crate) struct EtcdArgs {
    /// etcd client URLs, comma-separated or repeated. [env: ETCD_ENDPOINTS,
    /// FELIX_ETCDENDPOINTS]
    #[arg(long, value_delimiter = ',')]
    pub(crate) etcd_endpoints: Vec<String>,
    /// The CA that signed etcd's server certificate (PEM; needed for https://).
    /// [env: ETCD_CA_CERT_FILE, FELIX_ETCDCAFILE]
    #[arg(long)]
    pub(crate) etcd_ca_cert_file: Option<PathBuf>,
    /// The client certificate for etcd's --client-cert-auth (PEM).
    /// [env: ETCD_CERT_FILE, FELIX_ETCDCERTFILE]
    #[arg(long)]
    pub(crate) etcd_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM). [env: ETCD_KEY_FILE, FELIX_ETCDKEYFILE]
    #[arg(long)]
    pub(crate) etcd_key_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// The flags, else the environment (calicoctl's names first, then felix's).
    pub(crate) fn access(&self) -> Result<EtcdAccess> {
        let env = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        };
        let endpoints: Vec<String> = if self.etcd_endpoints.is_empty() {
            env(["ETCD_ENDPOINTS", "FELIX_ETCDENDPOINTS"])
                .map(|list| {
                    list.split(',')
                        .map(|e| e.trim().to_owned())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            self.etcd_endpoints.clone()
        };
        if endpoints.is_empty() {
            bail!("no etcd endpoints: pass --etcd-endpoints or set ETCD_ENDPOINTS");
        }
        let file =
            |flag: &Option<PathBuf>, names| flag.clone().or_else(|| env(names).map(PathBuf::from));
        let tls = TlsFiles {
            ca: file(
                &self.etcd_ca_cert_file,
                ["ETCD_CA_CERT_FILE", "FELIX_ETCDCAFILE"],
            ),
            cert: file(
                &self.etcd_cert_file,
                ["ETCD_CERT_FILE", "FELIX_ETCDCERTFILE"],
            ),
            key: file(&self.etcd_key_file, ["ETCD_KEY_FILE", "FELIX_ETCDKEYFILE"]),
        };
        Ok(EtcdAccess::new(endpoints).with_tls(tls))
    }
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
