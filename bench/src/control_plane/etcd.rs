//! A real etcd (Debian's) in the lab's fabric namespace, started in the foreground as our
//! child and killed (by its PID) on drop; and the client side: readiness and bulk writes.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, Txn, TxnOp};
use serde_json::Value;
use testkit::etcd::{self as kit, EtcdArgs, LogMode};

use super::{lab::Lab, proc};

/// How long etcd gets to answer after its start.
const READY: Duration = Duration::from_secs(20);
/// Puts per transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 128;

/// The running etcd (the test kit's: killed by its PID and reaped on drop).
pub struct Etcd {
    etcd: kit::Etcd,
}

impl Etcd {
    /// Starts etcd on a fresh data folder of the lab, with a parent-death signal.
    pub fn start(lab: &Lab) -> Result<Self> {
        let url = lab.etcd_url();
        let data = lab.dir.join("etcd");
        let log = lab.dir.join("etcd.log");
        let args = EtcdArgs {
            name: "bench",
            data_dir: &data,
            client_url: &url,
            peer_url: kit::LOOPBACK_PEER_URL,
            tls: None,
        };
        let mut command = args.command(Some(&lab.fabric));
        kit::Etcd::redirect_to_log(&mut command, &log, LogMode::Truncate)?;
        let child = proc::spawn_owned(&mut command).context("start etcd")?;
        let etcd = kit::Etcd::from_child(child, &url, Some(&lab.fabric), &log);
        Ok(Etcd { etcd })
    }

    /// Connects, retrying until etcd answers a read; fails early when it exits or on
    /// SIGINT/SIGTERM.
    pub async fn connect(&mut self) -> Result<Client> {
        let stop = || crate::signals::check().err().map(|e| format!("{e:#}"));
        Ok(self.etcd.wait_ready_unless(READY, stop).await?)
    }
}

/// Writes `docs` in transactions of [`TXN_OPS`] puts; returns the bytes written.
pub async fn put_all(client: &mut Client, docs: &[(String, Value)]) -> Result<usize> {
    let mut bytes = 0;
    for chunk in docs.chunks(TXN_OPS) {
        crate::signals::check()?;
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(key, value)| {
                let text = value.to_string();
                bytes += key.len() + text.len();
                TxnOp::put(key.as_str(), text, None)
            })
            .collect();
        let response = client
            .txn(Txn::new().and_then(ops))
            .await
            .context("write the cluster to etcd")?;
        if !response.succeeded() {
            bail!("an unconditional etcd transaction did not succeed");
        }
    }
    Ok(bytes)
}

/// Writes one document.
pub async fn put(client: &mut Client, key: &str, value: &Value) -> Result<()> {
    client
        .put(key, value.to_string(), None)
        .await
        .with_context(|| format!("put {key}"))?;
    Ok(())
}
