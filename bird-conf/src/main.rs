//! `bird-conf`: renders BIRD 2's configuration for one node from Calico's state in etcd,
//! validates it with `bird -p`, installs it atomically and reloads BIRD with `birdc configure`
//! when it changed. See the crate docs of `bird_conf` and the README.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bird_conf::{
    bird::Bird,
    daemon::{self, Options},
    install::Installer,
    render::Templates,
};
use calico::etcd_access::TlsFiles;
use clap::Parser;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Calico's confd for BIRD 2: keeps BIRD's configuration in step with etcd.
///
/// Example: bird-conf --node h1 --etcd-endpoints http://10.0.0.254:2379
///   --config /run/h1/bird.conf --ctl /run/h1/bird.ctl
///
/// Start BIRD with the same file: bird -f -c /run/h1/bird.conf -s /run/h1/bird.ctl.
/// BIRD may start before or after bird-conf: reloads are retried until it answers.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// This node's name (its Node resource and block affinities).
    #[arg(long, env = "NODENAME")]
    node: String,
    /// etcd client URLs, comma-separated.
    #[arg(long, env = "ETCD_ENDPOINTS", value_delimiter = ',', required = true)]
    etcd_endpoints: Vec<String>,
    /// The CA that signed etcd's server certificate (PEM; needed for https://).
    #[arg(long, env = "ETCD_CA_CERT_FILE")]
    etcd_ca_cert_file: Option<PathBuf>,
    /// The client certificate for etcd's --client-cert-auth (PEM).
    #[arg(long, env = "ETCD_CERT_FILE")]
    etcd_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "ETCD_KEY_FILE")]
    etcd_key_file: Option<PathBuf>,
    /// BIRD's configuration file (written atomically; BIRD must be started with it).
    #[arg(long)]
    config: PathBuf,
    /// BIRD's control socket (birdc -s).
    #[arg(long)]
    ctl: PathBuf,
    /// Directory whose *.conf.tmpl files replace the built-in templates of the same name.
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Write counters and state as JSON to this file after every change.
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Render and install once after the first datastore listing, then exit (non-zero when
    /// nothing could be installed). A pending reload is not waited for.
    #[arg(long)]
    once: bool,
    /// The bird program (for `bird -p -c`).
    #[arg(long, default_value = "bird")]
    bird: PathBuf,
    /// The birdc program.
    #[arg(long, default_value = "birdc")]
    birdc: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let templates = match &cli.templates {
        Some(dir) => Templates::with_overrides(dir),
        None => Templates::built_in(),
    }
    .context("load templates")?;
    for (name, origin) in templates.origins() {
        info!(template = name, from = origin, "template");
    }
    let bird = Bird {
        bird: cli.bird,
        birdc: cli.birdc,
        ctl: cli.ctl,
    };
    let options = Options {
        node: cli.node.clone(),
        endpoints: cli.etcd_endpoints,
        etcd_tls: TlsFiles {
            ca: cli.etcd_ca_cert_file.filter(|p| !p.as_os_str().is_empty()),
            cert: cli.etcd_cert_file.filter(|p| !p.as_os_str().is_empty()),
            key: cli.etcd_key_file.filter(|p| !p.as_os_str().is_empty()),
        },
        installer: Installer::new(&cli.config, bird),
        templates,
        status_file: cli.status_file,
        once: cli.once,
    };
    info!(node = cli.node, config = %cli.config.display(), "bird-conf starting");
    daemon::run(options, shutdown())
        .await
        .context("bird-conf")?;
    info!("bird-conf stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
