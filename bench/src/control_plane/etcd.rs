//! A real etcd (Debian's) in the lab's fabric namespace, started in the foreground as our
//! child and killed (by its PID) on drop; and the client side: readiness and bulk writes.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use etcd_client::{Client, Txn, TxnOp};
use serde_json::Value;

use super::{lab::Lab, proc};

/// How long etcd gets to answer after its start.
const READY: Duration = Duration::from_secs(20);
/// Puts per transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 128;

/// The running etcd.
pub struct Etcd {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Etcd {
    /// Starts etcd on a fresh data folder of the lab.
    pub fn start(lab: &Lab) -> Result<Self> {
        let url = lab.etcd_url();
        let data = lab.dir.join("etcd");
        let log = lab.dir.join("etcd.log");
        let file = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let peer = "http://127.0.0.1:2380";
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &lab.fabric, "etcd", "--name", "bench"])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("clone the log file")?)
            .stderr(file);
        let child = proc::spawn_owned(&mut command).context("start etcd")?;
        Ok(Etcd { child, url, log })
    }

    /// Connects, retrying until etcd answers a read; fails early when it exits.
    pub async fn connect(&mut self) -> Result<Client> {
        let deadline = Instant::now() + READY;
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(2), async {
                let mut client = Client::connect([self.url.as_str()], None).await?;
                client.get("/health-probe", None).await?;
                Ok::<_, etcd_client::Error>(client)
            })
            .await;
            if let Ok(Ok(client)) = attempt {
                return Ok(client);
            }
            if !matches!(self.child.try_wait(), Ok(None)) {
                bail!("etcd exited; log:\n{}", proc::tail(&self.log, 20));
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd not ready after {READY:?}; log:\n{}",
                    proc::tail(&self.log, 20)
                );
            }
            crate::signals::check()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        proc::kill_and_reap(&mut self.child);
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
