//! The `bird-conf` binary end to end, in a network namespace of its own with a real etcd and a
//! real BIRD, started the way the lab should start them: `bird-conf --once` writes the first
//! configuration, BIRD starts with it, then `bird-conf` runs and follows etcd:
//! a new node adds a mesh session, turning the mesh off removes it, and an etcd outage keeps
//! the last configuration until etcd is back and the next change arrives.
//!
//! Needs root, `etcd`, `etcdctl`, `bird` and `birdc` (`cargo xtask setup`). The namespace and
//! etcd come from the test kit (`testkit::netns`, `testkit::etcd`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bird_conf::fixture::Fixture;
use testkit::etcd::{Etcd, EtcdArgs, LogMode};
use testkit::netns::NetNs;

const URL: &str = testkit::etcd::LOOPBACK_URL;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A network namespace with etcd, BIRD and bird-conf in it; everything killed by PID and the
/// namespace deleted on drop.
struct Host {
    ns: String,
    dir: PathBuf,
    etcd: Option<Etcd>,
    bird: Option<Child>,
    bird_conf: Option<Child>,
    // Last: deleted after the processes in it are gone.
    _netns: NetNs,
}

impl Host {
    fn new(dir: &Path) -> Self {
        let ns = format!("bcd{}", std::process::id() % 100_000);
        let netns = NetNs::create(&ns).unwrap_or_else(|e| panic!("{e}"));
        Self {
            ns,
            dir: dir.to_path_buf(),
            etcd: None,
            bird: None,
            bird_conf: None,
            _netns: netns,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, program]);
        cmd
    }

    fn exec(&self, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("program");
        let out = self.command(program).args(rest).output().expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&self, mut cmd: Command, log: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))
            .expect("log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn")
    }

    fn start_etcd(&mut self) {
        let data = self.dir.join("etcd");
        let log = self.dir.join("etcd.log");
        let args = EtcdArgs::loopback(&data);
        let mut etcd = Etcd::start(&args, Some(&self.ns), &log, LogMode::Append)
            .unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = etcd.wait_healthy(Duration::from_secs(15)) {
            panic!("timed out after 15s waiting for etcd: {e}");
        }
        self.etcd = Some(etcd);
    }

    fn kill(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Puts every key of the fixture into etcd.
    fn put(&self, yaml: &str) {
        let kvs = Fixture::parse(yaml)
            .expect("fixture")
            .key_values()
            .expect("keys");
        for kv in kvs {
            let value = String::from_utf8(kv.value).expect("utf-8");
            self.exec(&["etcdctl", "--endpoints", URL, "put", &kv.key, &value]);
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("bird.conf")
    }

    fn ctl(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    fn bird_conf(&self, extra: &[&str]) -> Command {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_bird-conf"));
        cmd.args(["--node", "h1", "--etcd-endpoints", URL])
            .arg("--config")
            .arg(self.config())
            .arg("--ctl")
            .arg(self.ctl())
            .arg("--status-file")
            .arg(self.dir.join("status.json"))
            .args(extra);
        cmd
    }

    fn birdc(&self, args: &[&str]) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.ctl())
            .args(args)
            .output()
            .expect("birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status(&self) -> serde_json::Value {
        std::fs::read_to_string(self.dir.join("status.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        Self::kill(&mut self.bird_conf);
        Self::kill(&mut self.bird);
        self.etcd = None;
    }
}

fn node(name: &str, ip: &str) -> String {
    format!(
        "node: h1\nresources:\n  - {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: {name}}}, spec: {{bgp: {{ipv4Address: {ip}}}}}}}\n"
    )
}

const START: &str = r#"
node: h1
resources:
  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h1}, spec: {bgp: {ipv4Address: 10.0.0.1/24}}}
  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h2}, spec: {bgp: {ipv4Address: 10.0.0.2/24}}}
  - {apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: pool}, spec: {cidr: 192.168.0.0/16, ipipMode: Always}}
affinities:
  - {node: h1, cidr: 192.168.0.0/26}
"#;

#[test]
fn follows_etcd_and_survives_its_outage() {
    if !is_root() {
        eprintln!("skipped: needs root to create a network namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut host = Host::new(dir.path());
    host.start_etcd();
    host.put(START);

    // The first configuration, before BIRD runs: written, the reload left pending.
    let once = host
        .bird_conf(&["--once"])
        .output()
        .expect("bird-conf --once");
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let first = std::fs::read_to_string(host.config()).expect("config written");
    assert!(first.contains("protocol bgp Mesh_10_0_0_2"), "{first}");

    let mut bird = host.command("bird");
    bird.arg("-f")
        .arg("-c")
        .arg(host.config())
        .arg("-s")
        .arg(host.ctl());
    host.bird = Some(host.spawn(bird, "bird.log"));
    wait_for("BIRD", Duration::from_secs(10), || {
        host.birdc(&["show", "protocols"])
            .contains("Mesh_10_0_0_2")
            .then_some(())
    });
    let daemon = host.bird_conf(&[]);
    host.bird_conf = Some(host.spawn(daemon, "bird-conf.log"));
    wait_for("bird-conf in sync", Duration::from_secs(15), || {
        let status = host.status();
        (status["datastore"]["in_sync"] == true && status["install"]["unchanged"] == 1)
            .then_some(())
    });
    // Started with the file it would write: nothing to reload.
    assert_eq!(host.status()["install"]["reloads"], 0, "{}", host.status());

    // A new node: a new mesh session, reloaded.
    host.put(&node("h3", "10.0.0.3/24"));
    wait_for("Mesh_10_0_0_3", Duration::from_secs(15), || {
        host.birdc(&["show", "protocols"])
            .contains("Mesh_10_0_0_3")
            .then_some(())
    });
    assert_eq!(host.status()["install"]["reloads"], 1, "{}", host.status());

    // etcd goes away: bird-conf stays up and BIRD keeps its configuration.
    host.etcd = None;
    std::thread::sleep(Duration::from_secs(2));
    wait_for("the status to say so", Duration::from_secs(15), || {
        (host.status()["datastore"]["in_sync"] == false).then_some(())
    });
    let bird_conf = host.bird_conf.as_mut().expect("running");
    assert!(
        bird_conf.try_wait().expect("wait").is_none(),
        "bird-conf exited"
    );
    assert!(host.birdc(&["show", "protocols"]).contains("Mesh_10_0_0_3"));

    // etcd is back: the next change (the mesh turned off) applies.
    host.start_etcd();
    host.put(
        "node: h1\nresources:\n  - {apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {name: default}, spec: {nodeToNodeMeshEnabled: false}}\n",
    );
    wait_for("the mesh to go", Duration::from_secs(30), || {
        (!host.birdc(&["show", "protocols"]).contains("Mesh_")).then_some(())
    });
    let status = host.status();
    assert_eq!(status["install"]["reloads"], 2, "{status}");
    assert_eq!(status["install"]["rejected"], 0, "{status}");
    assert!(
        status["datastore"]["reconnects"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(status["announced"], serde_json::json!(["192.168.0.0/26"]));
}
