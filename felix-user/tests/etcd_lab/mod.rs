//! A real etcd in a network namespace of the test's own: `ip netns add`, `lo` up, etcd started
//! with `ip netns exec`, and the test's tokio runtime on a thread that entered the namespace
//! (`setns`), so no test traffic leaves it. [`EtcdNs`]'s drop kills etcd (by the PID spawned),
//! deletes the namespace and the temporary directory, also when the test fails.

pub mod proxy;
pub mod sync;

use std::{
    fs,
    future::Future,
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use etcd_client::Client;

/// etcd's client port inside the namespace.
pub const ETCD_PORT: u16 = 2379;
/// How long etcd gets to answer after a start.
const ETCD_READY: Duration = Duration::from_secs(20);

/// A network namespace with an etcd in it.
pub struct EtcdNs {
    pub name: String,
    dir: PathBuf,
    etcd: Mutex<Option<Child>>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl EtcdNs {
    /// A new namespace `fxds-<pid>-<tag>` with `lo` up, and a temporary directory.
    fn create(tag: &str) -> Arc<Self> {
        let name = format!("fxds-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        // Leftovers of a killed run with the same pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&dir);
        // From here on the guard cleans up, whatever fails next.
        let ns = Arc::new(EtcdNs {
            name,
            dir,
            etcd: Mutex::new(None),
        });
        fs::create_dir_all(&ns.dir).expect("create the test directory");
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The client URL of etcd (reachable only inside the namespace).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{ETCD_PORT}")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Starts etcd on the namespace's data directory (kept across restarts).
    pub fn start_etcd(&self) {
        let mut etcd = self.etcd.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(etcd.is_none(), "etcd is already running");
        let url = self.url();
        let peer = "http://127.0.0.1:2380";
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("open the etcd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "etcd", "--name", "default"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        *etcd = Some(child);
    }

    /// Kills etcd (SIGKILL) and reaps it.
    pub fn kill_etcd(&self) {
        let mut etcd = self.etcd.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = etcd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until etcd answers a read; panics (with its log) when it does not in time or exits.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + ETCD_READY;
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(2), async {
                let mut client = Client::connect([self.url()], None).await?;
                client.get("/health-probe", None).await
            })
            .await;
            if matches!(attempt, Ok(Ok(_))) {
                return;
            }
            let exited = self
                .etcd
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            assert!(
                !exited && tokio::time::Instant::now() < deadline,
                "etcd not ready (exited: {exited}); log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client of this namespace's etcd (call from the namespace's thread).
    pub async fn client(&self) -> Client {
        Client::connect([self.url()], None)
            .await
            .expect("connect to etcd")
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for EtcdNs {
    fn drop(&mut self) {
        self.kill_etcd();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Moves the calling thread into network namespace `name`.
fn enter(name: &str) {
    let file = fs::File::open(format!("/run/netns/{name}")).expect("open the namespace");
    // SAFETY: setns on an open namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Runs `test` on a current-thread tokio runtime, on a thread inside a fresh namespace with a
/// running etcd; everything is removed afterwards, pass or fail.
pub fn run<F, Fut>(tag: &str, test: F)
where
    F: FnOnce(Arc<EtcdNs>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ns = EtcdNs::create(tag);
    let inner = ns.clone();
    let outcome = std::thread::spawn(move || {
        enter(&inner.name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            inner.start_etcd();
            inner.wait_ready().await;
            test(inner).await;
        });
    })
    .join();
    if let Err(panic) = outcome {
        eprintln!("etcd log of {}:\n{}", ns.name, ns.log_tail());
        drop(ns);
        std::panic::resume_unwind(panic);
    }
}
