//! A real etcd for tests and benchmarks: one command line ([`EtcdArgs`]), started in a named
//! namespace (`ip netns exec`) or in the calling thread's namespace (on its loopback), with its
//! PID kept ([`Etcd`]), a bounded readiness poll that fails early when etcd exits, and SIGKILL
//! plus reaping on drop.
//!
//! Two readiness probes: [`Etcd::wait_ready`] reads through `etcd-client` from the calling
//! thread (which must reach the URL: in the namespace, or over a route to it), and
//! [`Etcd::wait_healthy`] runs `etcdctl endpoint health` inside etcd's namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "etcd-client")]
use etcd_client::Client;

use crate::log::tail as log_tail;
use crate::pki::EtcdPki;

/// etcd's client URL on loopback.
pub const LOOPBACK_URL: &str = "http://127.0.0.1:2379";
/// etcd's client URL on loopback, with TLS.
pub const LOOPBACK_TLS_URL: &str = "https://127.0.0.1:2379";
/// etcd's peer URL on loopback.
pub const LOOPBACK_PEER_URL: &str = "http://127.0.0.1:2380";
/// Lines of etcd's log that errors carry.
pub const LOG_TAIL_LINES: usize = 30;
/// Gap between two readiness probes.
const POLL_GAP: Duration = Duration::from_millis(100);
/// How long one `etcd-client` probe may take.
#[cfg(feature = "etcd-client")]
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What went wrong with etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("open the etcd log {path}: {source}")]
    Log { path: PathBuf, source: io::Error },
    #[error("spawn etcd: {0}")]
    Spawn(io::Error),
    #[error("etcd exited; log:\n{log}")]
    Exited { log: String },
    #[error("etcd not ready after {after:?}; log:\n{log}")]
    NotReady { after: Duration, log: String },
    #[error("{0}")]
    Stopped(String),
}

/// etcd's command line: a single-member cluster named `name` on `data_dir`.
#[derive(Debug, Clone)]
pub struct EtcdArgs<'a> {
    pub name: &'a str,
    pub data_dir: &'a Path,
    /// Listened on and advertised.
    pub client_url: &'a str,
    /// Listened on, advertised and the cluster's only member.
    pub peer_url: &'a str,
    /// Client-certificate authentication with these certificates (`client_url` must then be
    /// `https://`).
    pub tls: Option<&'a EtcdPki>,
}

impl<'a> EtcdArgs<'a> {
    /// Member `default` on loopback ([`LOOPBACK_URL`], [`LOOPBACK_PEER_URL`]).
    pub fn loopback(data_dir: &'a Path) -> Self {
        Self {
            name: "default",
            data_dir,
            client_url: LOOPBACK_URL,
            peer_url: LOOPBACK_PEER_URL,
            tls: None,
        }
    }

    /// Member `default` on loopback with client-certificate authentication
    /// ([`LOOPBACK_TLS_URL`]).
    pub fn loopback_tls(data_dir: &'a Path, pki: &'a EtcdPki) -> Self {
        Self {
            client_url: LOOPBACK_TLS_URL,
            tls: Some(pki),
            ..Self::loopback(data_dir)
        }
    }

    /// `etcd` and its arguments.
    pub fn argv(&self) -> Vec<String> {
        let (url, peer) = (self.client_url, self.peer_url);
        [
            "etcd",
            "--name",
            self.name,
            "--data-dir",
            &self.data_dir.to_string_lossy(),
            "--listen-client-urls",
            url,
            "--advertise-client-urls",
            url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            &format!("{}={peer}", self.name),
        ]
        .map(String::from)
        .into_iter()
        .chain(self.tls.map(EtcdPki::etcd_flags).unwrap_or_default())
        .collect()
    }

    /// The command: `ip netns exec <netns> etcd ...`, or `etcd ...` in the calling thread's
    /// namespace when `netns` is `None`. Standard streams are the caller's to set.
    pub fn command(&self, netns: Option<&str>) -> Command {
        in_netns(netns, &self.argv())
    }
}

/// `argv` run in `netns` (through `ip netns exec`) or as it is.
fn in_netns(netns: Option<&str>, argv: &[String]) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).args(argv);
            cmd
        }
        None => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
    }
}

/// How etcd's log file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMode {
    /// A fresh log.
    Truncate,
    /// Appended to (a restart on the same data keeps the earlier log).
    Append,
}

/// A running etcd, our child: killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    netns: Option<String>,
    url: String,
    log: PathBuf,
    /// The certificates clients (probes) connect with.
    tls: Option<EtcdPki>,
}

impl Etcd {
    /// Starts etcd with `args` in `netns` (see [`EtcdArgs::command`]), stdout and stderr to
    /// `log`.
    pub fn start(
        args: &EtcdArgs<'_>,
        netns: Option<&str>,
        log: &Path,
        mode: LogMode,
    ) -> Result<Self, EtcdError> {
        let mut cmd = args.command(netns);
        let file = open_log(log, mode)?;
        redirect(&mut cmd, file, log)?;
        let child = cmd.spawn().map_err(EtcdError::Spawn)?;
        Ok(Self::from_child(child, args.client_url, netns, log).with_tls(args.tls.cloned()))
    }

    /// Adopts an etcd the caller spawned itself (from [`EtcdArgs::command`] with
    /// [`Etcd::redirect_to_log`], e.g. with a parent-death signal).
    pub fn from_child(child: Child, url: &str, netns: Option<&str>, log: &Path) -> Self {
        Self {
            child,
            netns: netns.map(str::to_owned),
            url: url.to_owned(),
            log: log.to_path_buf(),
            tls: None,
        }
    }

    /// Probes connect with the client certificate of `tls`.
    pub fn with_tls(mut self, tls: Option<EtcdPki>) -> Self {
        self.tls = tls;
        self
    }

    /// The certificates etcd was started with.
    pub fn tls(&self) -> Option<&EtcdPki> {
        self.tls.as_ref()
    }

    /// Sets `cmd`'s stdin to null and its stdout and stderr to `log`.
    pub fn redirect_to_log(cmd: &mut Command, log: &Path, mode: LogMode) -> Result<(), EtcdError> {
        let file = open_log(log, mode)?;
        redirect(cmd, file, log)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether etcd has exited (or cannot be asked).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `n` lines of etcd's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    #[cfg(feature = "etcd-client")]
    /// Polls until a read through `etcd-client` from the calling thread succeeds (each
    /// attempt bounded); fails when etcd exits or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Client, EtcdError> {
        self.wait_ready_unless(timeout, || None).await
    }

    #[cfg(feature = "etcd-client")]
    /// [`Etcd::wait_ready`], also ending (with [`EtcdError::Stopped`]) when `stop` says why.
    pub async fn wait_ready_unless(
        &mut self,
        timeout: Duration,
        stop: impl FnMut() -> Option<String>,
    ) -> Result<Client, EtcdError> {
        let child = &mut self.child;
        let exited = || !matches!(child.try_wait(), Ok(None));
        let tls = self.tls.as_ref();
        wait_ready_tls_at(&self.url, tls, &self.log, timeout, exited, stop).await
    }

    /// Polls `etcdctl endpoint health` inside etcd's namespace until it answers; fails when
    /// etcd exits or `timeout` passes.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<(), EtcdError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.healthy() {
                return Ok(());
            }
            progress(self.has_exited(), timeout, deadline, &self.log)?;
            std::thread::sleep(POLL_GAP);
        }
    }

    /// One `etcdctl endpoint health` inside etcd's namespace.
    pub fn healthy(&self) -> bool {
        let mut argv = [
            "etcdctl",
            "--endpoints",
            &self.url,
            "--dial-timeout=1s",
            "--command-timeout=2s",
        ]
        .map(String::from)
        .to_vec();
        argv.extend(self.tls.as_ref().map(etcdctl_tls_flags).unwrap_or_default());
        argv.extend(["endpoint", "health"].map(String::from));
        in_netns(self.netns.as_deref(), &argv)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// SIGKILL and reap (nothing if it already exited).
    pub fn kill(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(feature = "etcd-client")]
/// Polls until a read of etcd at `url` through `etcd-client` from the calling thread succeeds
/// (each attempt bounded); fails when `exited` says etcd is gone, `stop` gives a reason, or
/// `timeout` passes (errors carry the tail of `log`). For an etcd the caller keeps elsewhere
/// (e.g. behind a lock that must not be held across the wait); [`Etcd::wait_ready`] otherwise.
pub async fn wait_ready_at(
    url: &str,
    log: &Path,
    timeout: Duration,
    exited: impl FnMut() -> bool,
    stop: impl FnMut() -> Option<String>,
) -> Result<Client, EtcdError> {
    wait_ready_tls_at(url, None, log, timeout, exited, stop).await
}

#[cfg(feature = "etcd-client")]
/// [`wait_ready_at`], connecting with the client certificate of `tls` when given.
pub async fn wait_ready_tls_at(
    url: &str,
    tls: Option<&EtcdPki>,
    log: &Path,
    timeout: Duration,
    mut exited: impl FnMut() -> bool,
    mut stop: impl FnMut() -> Option<String>,
) -> Result<Client, EtcdError> {
    let options = tls.map(client_options).transpose()?;
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut client = Client::connect([url], options.clone()).await?;
            client.get("/health-probe", None).await?;
            Ok::<_, etcd_client::Error>(client)
        })
        .await;
        if let Ok(Ok(client)) = attempt {
            return Ok(client);
        }
        progress(exited(), timeout, deadline, log)?;
        if let Some(why) = stop() {
            return Err(EtcdError::Stopped(why));
        }
        tokio::time::sleep(POLL_GAP).await;
    }
}

#[cfg(feature = "etcd-client")]
/// Connect options with `pki`'s CA and client certificate.
pub fn client_options(pki: &EtcdPki) -> Result<etcd_client::ConnectOptions, EtcdError> {
    use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| EtcdError::Stopped(format!("read {}: {e}", path.display())))
    };
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&pki.ca)?))
        .identity(Identity::from_pem(
            read(&pki.client.cert)?,
            read(&pki.client.key)?,
        ));
    Ok(ConnectOptions::new().with_tls(tls))
}

/// `etcdctl`'s flags for `pki`'s CA and client certificate.
pub fn etcdctl_tls_flags(pki: &EtcdPki) -> Vec<String> {
    vec![
        format!("--cacert={}", pki.ca.display()),
        format!("--cert={}", pki.client.cert.display()),
        format!("--key={}", pki.client.key.display()),
    ]
}

/// An error if etcd has `exited` or `deadline` passed.
fn progress(
    exited: bool,
    timeout: Duration,
    deadline: Instant,
    log: &Path,
) -> Result<(), EtcdError> {
    if exited {
        return Err(EtcdError::Exited {
            log: log_tail(log, LOG_TAIL_LINES),
        });
    }
    if Instant::now() >= deadline {
        return Err(EtcdError::NotReady {
            after: timeout,
            log: log_tail(log, LOG_TAIL_LINES),
        });
    }
    Ok(())
}

fn open_log(path: &Path, mode: LogMode) -> Result<File, EtcdError> {
    let mut options = OpenOptions::new();
    match mode {
        LogMode::Truncate => options.write(true).create(true).truncate(true),
        LogMode::Append => options.create(true).append(true),
    };
    options.open(path).map_err(|source| EtcdError::Log {
        path: path.to_path_buf(),
        source,
    })
}

fn redirect(cmd: &mut Command, file: File, path: &Path) -> Result<(), EtcdError> {
    let copy = file.try_clone().map_err(|source| EtcdError::Log {
        path: path.to_path_buf(),
        source,
    })?;
    cmd.stdin(Stdio::null()).stdout(copy).stderr(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_a_single_member_cluster() {
        let dir = Path::new("/tmp/data");
        let args = EtcdArgs::loopback(dir);
        assert_eq!(
            args.argv(),
            [
                "etcd",
                "--name",
                "default",
                "--data-dir",
                "/tmp/data",
                "--listen-client-urls",
                LOOPBACK_URL,
                "--advertise-client-urls",
                LOOPBACK_URL,
                "--listen-peer-urls",
                LOOPBACK_PEER_URL,
                "--initial-advertise-peer-urls",
                LOOPBACK_PEER_URL,
                "--initial-cluster",
                "default=http://127.0.0.1:2380",
            ]
        );
        let cmd = args.command(Some("ns1"));
        assert_eq!(cmd.get_program(), "ip");
        let first: Vec<_> = cmd.get_args().take(4).collect();
        assert_eq!(first, ["netns", "exec", "ns1", "etcd"]);
        assert_eq!(args.command(None).get_program(), "etcd");
    }
}
