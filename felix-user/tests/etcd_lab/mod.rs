//! A real etcd in a network namespace of the test's own: `ip netns add`, `lo` up, etcd started
//! with `ip netns exec`, and the test's tokio runtime on a thread that entered the namespace
//! (`setns`), so no test traffic leaves it. [`EtcdNs`]'s drop kills etcd (by the PID spawned),
//! deletes the namespace and the temporary directory, also when the test fails. The namespace
//! and etcd come from the test kit (`testkit::netns`, `testkit::etcd`).

pub mod proxy;
pub mod sync;

use std::{
    fs,
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use etcd_client::Client;
use testkit::etcd::{self, Etcd, EtcdArgs, LogMode};
use testkit::netns::{self, NetNs};

/// etcd's client port inside the namespace.
pub const ETCD_PORT: u16 = 2379;
/// How long etcd gets to answer after a start.
const ETCD_READY: Duration = Duration::from_secs(20);

/// A network namespace with an etcd in it.
pub struct EtcdNs {
    pub name: String,
    dir: PathBuf,
    etcd: Mutex<Option<Etcd>>,
    // Last: deleted after etcd is gone.
    _netns: NetNs,
}

impl EtcdNs {
    /// A new namespace `fxds-<pid>-<tag>` with `lo` up, and a temporary directory.
    fn create(tag: &str) -> Arc<Self> {
        let name = format!("fxds-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        // Leftovers of a killed run with the same pid.
        let _ = fs::remove_dir_all(&dir);
        let netns = NetNs::create(&name).unwrap_or_else(|e| panic!("{e}"));
        // From here on the guard cleans up, whatever fails next.
        let ns = Arc::new(EtcdNs {
            name,
            dir,
            etcd: Mutex::new(None),
            _netns: netns,
        });
        fs::create_dir_all(&ns.dir).expect("create the test directory");
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
        let data = self.dir.join("data");
        let url = self.url();
        let args = EtcdArgs {
            client_url: &url,
            ..EtcdArgs::loopback(&data)
        };
        let started = Etcd::start(&args, Some(&self.name), &self.log(), LogMode::Append);
        *etcd = Some(started.unwrap_or_else(|e| panic!("{e}")));
    }

    /// Kills etcd (SIGKILL) and reaps it.
    pub fn kill_etcd(&self) {
        let etcd = self
            .etcd
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(etcd);
    }

    /// Waits until etcd answers a read; panics (with its log) when it does not in time or exits.
    pub async fn wait_ready(&self) {
        let exited = || {
            self.etcd
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .is_none_or(Etcd::has_exited)
        };
        if let Err(e) =
            etcd::wait_ready_at(&self.url(), &self.log(), ETCD_READY, exited, || None).await
        {
            panic!("{e}");
        }
    }

    /// A client of this namespace's etcd (call from the namespace's thread).
    pub async fn client(&self) -> Client {
        Client::connect([self.url()], None)
            .await
            .expect("connect to etcd")
    }

    fn log_tail(&self) -> String {
        testkit::log::tail(&self.log(), 30)
    }
}

impl Drop for EtcdNs {
    fn drop(&mut self) {
        self.kill_etcd();
        let _ = fs::remove_dir_all(&self.dir);
    }
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
        // The thread never leaves the namespace: it ends with the test.
        let _entered = netns::enter(&inner.name).unwrap_or_else(|e| panic!("{e}"));
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
