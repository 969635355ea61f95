//! A cluster node in namespaces of the test's own, for driving `felix-cni` as a container
//! runtime does: a "host" network namespace with `lo` up and a real etcd on 127.0.0.1, pod
//! namespaces next to it, and the test's thread inside the host namespace so that the plugin
//! it spawns runs there (a child process inherits the spawning thread's namespace).
//!
//! [`Node`]'s drop kills etcd (by the PID it spawned), deletes every namespace it made (which
//! takes the veths with them) and the temporary directory, also when the test fails. The
//! namespaces and etcd come from the test kit (`testkit::netns`, `testkit::etcd`).

pub mod api;

use std::{
    fs,
    future::Future,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use etcd_client::Client;
use serde_json::Value;
use testkit::etcd::{self, Etcd, EtcdArgs, LogMode};
use testkit::netns::{self, NetNs};

/// etcd's client URL inside the host namespace.
pub const ETCD_URL: &str = etcd::LOOPBACK_URL;
const ETCD_READY: Duration = Duration::from_secs(20);

/// A host namespace with etcd, and the pod namespaces made for the test.
pub struct Node {
    /// Prefix of every namespace name: `fxcni-<pid>-<tag>`.
    pub id: String,
    pub host_ns: String,
    dir: PathBuf,
    etcd: Mutex<Option<Etcd>>,
    pods: Mutex<Vec<NetNs>>,
    // Last: deleted after etcd and the pods are gone.
    _host: NetNs,
}

/// What one plugin call printed and returned.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// stdout as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
        }
    }

    /// Asserts success and returns stdout as JSON.
    pub fn ok(&self) -> Value {
        assert!(
            self.success,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.json()
    }

    /// Asserts a CNI error with `code` and returns its message.
    pub fn error(&self, code: u64) -> String {
        assert!(
            !self.success,
            "plugin succeeded, expected error {code}: {self:?}"
        );
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "{self:?}");
        assert!(v["cniVersion"].is_string(), "{self:?}");
        v["msg"].as_str().unwrap_or_default().to_string()
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -j ARGS` parsed.
pub fn ip_json(args: &[&str]) -> Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let text = ip(&all);
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip {all:?}: {e}: {text}"))
}

impl Node {
    fn create(tag: &str) -> Arc<Self> {
        let id = format!("fxcni-{}-{tag}", std::process::id());
        let host_ns = format!("{id}-host");
        let dir = std::env::temp_dir().join(&id);
        // Leftovers of a killed run with the same pid.
        let _ = fs::remove_dir_all(&dir);
        let host = NetNs::create(&host_ns).unwrap_or_else(|e| panic!("{e}"));
        let node = Arc::new(Node {
            id,
            host_ns,
            dir,
            etcd: Mutex::new(None),
            pods: Mutex::new(Vec::new()),
            _host: host,
        });
        // From here on the guard cleans up, whatever fails next.
        fs::create_dir_all(&node.dir).expect("create the test directory");
        node
    }

    fn log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Starts etcd; call from the thread inside the host namespace.
    fn start_etcd(&self) {
        let data = self.dir.join("data");
        let started = Etcd::start(
            &EtcdArgs::loopback(&data),
            None,
            &self.log(),
            LogMode::Truncate,
        );
        *self.etcd.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(started.unwrap_or_else(|e| panic!("{e}")));
    }

    async fn wait_etcd(&self) {
        let exited = || {
            self.etcd
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .is_none_or(Etcd::has_exited)
        };
        if let Err(e) =
            etcd::wait_ready_at(ETCD_URL, &self.log(), ETCD_READY, exited, || None).await
        {
            panic!("{e}");
        }
    }

    fn log_tail(&self) -> String {
        testkit::log::tail(&self.log(), 30)
    }

    /// A client of the host's etcd (from the host namespace's thread).
    pub async fn etcd(&self) -> Client {
        Client::connect([ETCD_URL], None)
            .await
            .expect("connect to etcd")
    }

    /// Writes `text` to file `name` in the node's temporary directory; returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).expect("write a file");
        path
    }

    /// A new pod namespace `<id>-<name>` with `lo` up; returns its full name.
    pub fn add_pod_ns(&self, name: &str) -> String {
        let full = format!("{}-{name}", self.id);
        let pod = NetNs::create(&full).unwrap_or_else(|e| panic!("{e}"));
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pod);
        full
    }

    /// Deletes pod namespace `full` (as a runtime does when the sandbox goes).
    pub fn del_pod_ns(&self, full: &str) {
        ip(&["netns", "del", full]);
    }

    /// Runs the plugin as a runtime does: only the `CNI_*` variables (and PATH) in its
    /// environment, the configuration on stdin; stdout, stderr and the exit status back.
    pub fn cni(&self, vars: &[(&str, &str)], stdin: &str) -> Outcome {
        let mut child = Command::new(env!("CARGO_BIN_EXE_felix-cni"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(vars.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn felix-cni");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write the configuration");
        let out = child.wait_with_output().expect("wait for felix-cni");
        Outcome {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // etcd is killed (by its PID) and the pods' namespaces deleted, then the host's.
        drop(
            self.etcd
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `test` on a thread inside a fresh host namespace with a running etcd; everything is
/// removed afterwards, pass or fail.
pub fn run<F, Fut>(tag: &str, test: F)
where
    F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let node = Node::create(tag);
    let inner = node.clone();
    let outcome = std::thread::spawn(move || {
        // The thread never leaves the namespace: it ends with the test.
        let _entered = netns::enter(&inner.host_ns).unwrap_or_else(|e| panic!("{e}"));
        inner.start_etcd();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            inner.wait_etcd().await;
            test(inner).await;
        });
    })
    .join();
    if let Err(panic) = outcome {
        eprintln!("etcd log of {}:\n{}", node.id, node.log_tail());
        drop(node);
        std::panic::resume_unwind(panic);
    }
}
