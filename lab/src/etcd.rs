//! The lab's etcd: a real Debian etcd in the fabric namespace, and the etcdctl calls around it.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use testkit::etcd::EtcdArgs;

use crate::cmd;
use crate::proc::{self, ProcRecord};
use crate::state::LabState;
use crate::{calico, etcd_tls, names};

/// How long a restarted etcd may take to answer its health check.
pub(crate) const RESTART_TIMEOUT: Duration = Duration::from_secs(10);
/// Marks the firewall rule [`cut_hosts`] adds, so that only that rule is removed.
const CUT_COMMENT: &str = "felix-lab-etcd-cut";

/// Starts etcd in the fabric namespace (foreground daemon, log in the state folder).
pub fn start(state: &LabState) -> Result<ProcRecord> {
    let pki = etcd_tls::for_url(&state.fabric_ns, &state.etcd_url);
    let argv = EtcdArgs {
        client_url: &state.etcd_url,
        tls: pki.as_ref(),
        ..EtcdArgs::loopback(&state.etcd_data_dir)
    }
    .argv();
    proc::spawn_in_ns(
        proc::Enter::IpNetnsExec,
        &state.fabric_ns,
        "etcd",
        &argv,
        &[],
        &state.etcd_log,
    )
}

fn etcdctl(fabric: &str, url: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", fabric, "etcdctl", "--endpoints", url])
        .env("ETCDCTL_API", "3");
    if let Some(pki) = etcd_tls::for_url(fabric, url) {
        cmd.args(testkit::etcd::etcdctl_tls_flags(&pki));
    }
    cmd
}

/// One `etcdctl endpoint health`.
pub fn health(fabric: &str, url: &str) -> Result<()> {
    cmd::run(etcdctl(fabric, url).args([
        "--dial-timeout=1s",
        "--command-timeout=2s",
        "endpoint",
        "health",
    ]))
}

/// Polls health until it answers or `timeout` passes; fails early if etcd exited.
pub fn wait_healthy(state: &LabState, rec: &ProcRecord, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match health(&state.fabric_ns, &state.etcd_url) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some(how) = rec.exited() {
            bail!(
                "etcd exited ({how}); log {}:\n{}",
                rec.log.display(),
                proc::log_tail(&rec.log, 20)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "etcd not healthy after {timeout:?}: {last:#}; log {}:\n{}",
                rec.log.display(),
                proc::log_tail(&rec.log, 20)
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

pub fn put(fabric: &str, url: &str, key: &str, value: &str) -> Result<()> {
    cmd::run(etcdctl(fabric, url).args(["put", key, value]))
}

/// Deletes `key`; the number of keys deleted (0 or 1).
pub fn del(fabric: &str, url: &str, key: &str) -> Result<u32> {
    let out = cmd::stdout(etcdctl(fabric, url).args(["--command-timeout=3s", "del", key]))?;
    out.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("`etcdctl del {key}` printed {out:?}: {e}"))
}

/// The value at `key`, `None` when there is no such key.
pub fn get(fabric: &str, url: &str, key: &str) -> Result<Option<String>> {
    let out = cmd::stdout(etcdctl(fabric, url).args([
        "--command-timeout=3s",
        "get",
        key,
        "--print-value-only",
    ]))?;
    let value = out.trim_end_matches('\n');
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// The keys under `prefix`, sorted.
pub fn keys(fabric: &str, url: &str, prefix: &str) -> Result<Vec<String>> {
    let out = cmd::stdout(etcdctl(fabric, url).args([
        "--command-timeout=3s",
        "get",
        prefix,
        "--prefix",
        "--keys-only",
    ]))?;
    let mut keys: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    keys.sort();
    Ok(keys)
}

/// Writes what an installer writes before any pod exists (pool, namespace profile, Nodes).
pub fn seed(state: &LabState) -> Result<usize> {
    let docs = calico::cluster(&state.id, &state.hosts, state.pool_ipip_mode);
    for (key, value) in &docs {
        put_json(state, key, value)?;
    }
    Ok(docs.len())
}

/// Writes `value` at `key` in the lab's etcd.
pub fn put_json(state: &LabState, key: &str, value: &serde_json::Value) -> Result<()> {
    put(&state.fabric_ns, &state.etcd_url, key, &value.to_string())
}

pub use crate::names::etcd_url as url;

/// The fabric's `iptables` rule that drops etcd client traffic arriving over the fabric (every
/// host, the ToR), leaving the fabric namespace's own clients (etcdctl, `felix apply` run there)
/// on loopback untouched.
fn cut_rule(op: &str) -> Vec<String> {
    let port = names::ETCD_PORT.to_string();
    [
        op,
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &port,
        "!",
        "-i",
        "lo",
        "-m",
        "comment",
        "--comment",
        CUT_COMMENT,
        "-j",
        "DROP",
    ]
    .map(String::from)
    .to_vec()
}

/// Cuts (`cut`) or restores the hosts' access to etcd with a firewall rule inside the fabric
/// namespace: packets are dropped, not refused, as in a network partition. Gone with the
/// namespace at teardown.
pub fn cut_hosts(state: &LabState, cut: bool) -> Result<()> {
    let rule = cut_rule(if cut { "-I" } else { "-D" });
    let mut argv = vec!["netns", "exec", &state.fabric_ns, "iptables", "-w"];
    argv.extend(rule.iter().map(String::as_str));
    cmd::run(Command::new("ip").args(&argv))
}
