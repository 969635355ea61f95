//! bird-conf against real BIRD daemons, each in a network namespace of its own (nothing leaves
//! the namespaces; every daemon is killed by PID and every namespace deleted on drop).
//!
//! - `reload_path`: one BIRD in an empty namespace. BIRD down -> the reload is pending and
//!   retried; a valid change is reloaded and `show protocols` / `show route` reflect it; an
//!   unchanged render reloads nothing; a rejected render keeps the last good file, is counted,
//!   and is not checked again.
//! - `pool_modes_program_the_kernel`, `route_reflector_passes_routes_on`: two or three BIRDs on
//!   a bridge, configured by the installer, exchanging routes: what lands in each kernel table
//!   per IPIP mode, and routes between clients through a reflector.
//!
//! Needs root and `bird`/`birdc` (`cargo xtask setup` installs BIRD 2). `reload_path` also runs
//! without root, in a user namespace.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bird_conf::{
    bird::Bird,
    fixture::Fixture,
    inputs::Inputs,
    install::{Installer, Outcome},
    render::Templates,
    view::BirdView,
};

/// Whether the tests run as root (`id -u`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Renders the configuration of `node` for a fixture given as YAML.
fn render_with(templates: &Templates, yaml: &str, node: &str) -> String {
    let fixture = Fixture::parse(yaml).expect("fixture");
    let store = fixture.store().expect("store");
    let view = BirdView::build(&Inputs::from_store(&store, node)).expect("view");
    templates.render(&view).expect("render")
}

fn render(yaml: &str, node: &str) -> String {
    render_with(&Templates::built_in().expect("templates"), yaml, node)
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
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

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A BIRD daemon in the foreground; killed by PID on drop.
struct BirdDaemon {
    child: Child,
    ctl: PathBuf,
}

impl BirdDaemon {
    /// `bird -f -c config -s ctl`, run by `prefix` (a namespace entry command).
    fn start(prefix: &[&str], config: &Path, ctl: &Path, log: &Path) -> Self {
        let log = std::fs::File::create(log).expect("log file");
        let (program, args) = prefix.split_first().expect("prefix");
        let child = Command::new(program)
            .args(args)
            .arg("bird")
            .arg("-f")
            .arg("-c")
            .arg(config)
            .arg("-s")
            .arg(ctl)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start bird");
        let daemon = Self {
            child,
            ctl: ctl.to_path_buf(),
        };
        wait_for("BIRD's control socket", Duration::from_secs(10), || {
            birdc(&daemon.ctl, &["show", "status"])
                .contains("Daemon is up and running")
                .then_some(())
        });
        daemon
    }
}

impl Drop for BirdDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// birdc's output (stdout and stderr).
fn birdc(ctl: &Path, args: &[&str]) -> String {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(ctl)
        .args(args)
        .output()
        .expect("run birdc");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn protocol_names(bird: &Bird) -> Vec<String> {
    bird.protocols()
        .await
        .expect("show protocols")
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// When BIRD last took a configuration, in ms since midnight, from `show status`. BIRD derives
/// the wall-clock stamp from its monotonic clock at each `show status`, so two reads of the same
/// reconfiguration can differ by a millisecond: compare with [`same_reconfiguration`].
fn last_reconfiguration(ctl: &Path) -> i64 {
    let status = birdc(ctl, &["show", "status"]);
    let line = status
        .lines()
        .find(|l| l.starts_with("Last reconfiguration on "))
        .unwrap_or_else(|| panic!("no reconfiguration stamp in:\n{status}"));
    let time = line.rsplit(' ').next().expect("a time");
    let (hms, millis) = time.split_once('.').expect("HH:MM:SS.mmm");
    let fields: Vec<i64> = hms
        .split(':')
        .chain([millis])
        .map(|f| f.parse().expect("a number"))
        .collect();
    ((fields[0] * 60 + fields[1]) * 60 + fields[2]) * 1000 + fields[3]
}

/// Whether two [`last_reconfiguration`] stamps are the same reconfiguration (a reload made at
/// least [`RELOAD_GAP`] later would differ by more).
fn same_reconfiguration(a: i64, b: i64) -> bool {
    let apart = (a - b).rem_euclid(86_400_000);
    apart.min(86_400_000 - apart) <= 5
}

/// How long the test waits before an install that must not reload BIRD.
const RELOAD_GAP: Duration = Duration::from_millis(50);

const MESH: &str = r#"
node: h1
resources:
  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h1}, spec: {bgp: {ipv4Address: 10.0.0.1/24}}}
  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h2}, spec: {bgp: {ipv4Address: 10.0.0.2/24}}}
  - {apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: pool}, spec: {cidr: 192.168.0.0/16, ipipMode: Always}}
affinities:
  - {node: h1, cidr: 192.168.0.0/26}
"#;

#[tokio::test(flavor = "current_thread")]
async fn reload_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bird.conf");
    let ctl = dir.path().join("bird.ctl");
    let bird = Bird::new(&ctl);
    let mut installer = Installer::new(&config, bird.clone());

    // BIRD is not there yet: installed, reload pending, retry fails.
    let first = render(MESH, "h1");
    let outcome = installer.install(&first).await.expect("install");
    assert_eq!(outcome, Outcome::Installed { reloaded: false });
    assert!(installer.reload_pending());
    assert!(!installer.retry_reload().await);
    assert_eq!(installer.stats().reload_failures, 2);
    assert_eq!(std::fs::read_to_string(&config).expect("read"), first);

    // BIRD starts with the file; the retried reload goes through.
    let prefix: &[&str] = if is_root() {
        &["unshare", "--net", "--"]
    } else {
        &["unshare", "--user", "--map-root-user", "--net", "--"]
    };
    let log = dir.path().join("bird.log");
    let daemon = BirdDaemon::start(prefix, &config, &ctl, &log);
    assert!(installer.retry_reload().await);
    assert_eq!(installer.stats().reloads, 1);
    assert!(installer.stats().last_reload_error.is_none());
    let names = protocol_names(&bird).await;
    assert!(names.contains(&"Mesh_10_0_0_2".to_string()), "{names:?}");

    // A valid change (a third node, a second block) is installed and reloaded.
    let changed = MESH.replace(
        "affinities:",
        "  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h3}, spec: {bgp: {ipv4Address: 10.0.0.3/24}}}\naffinities:\n  - {node: h1, cidr: 192.168.0.64/26}",
    );
    let second = render(&changed, "h1");
    let outcome = installer.install(&second).await.expect("install");
    assert_eq!(outcome, Outcome::Installed { reloaded: true });
    assert_eq!(installer.stats().reloads, 2);
    let names = protocol_names(&bird).await;
    assert!(names.contains(&"Mesh_10_0_0_3".to_string()), "{names:?}");
    let routes = birdc(&ctl, &["show", "route", "protocol", "calico_blocks"]);
    assert!(routes.contains("192.168.0.64/26"), "{routes}");

    // The same text again: nothing written, no reload.
    let reconfigured_at = last_reconfiguration(&ctl);
    std::thread::sleep(RELOAD_GAP);
    let outcome = installer.install(&second).await.expect("install");
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(installer.stats().reloads, 2);
    let now = last_reconfiguration(&ctl);
    assert!(
        same_reconfiguration(now, reconfigured_at),
        "{now} vs {reconfigured_at}"
    );

    // A broken template: BIRD rejects the text, the last good file stays, counted once.
    let broken = tempfile::tempdir().expect("tempdir");
    let entry = bird_conf::render::BUILT_IN[0].1.replace(
        "router id {{ router_id }};",
        "router id {{ router_id }};\nthis is not bird syntax;",
    );
    std::fs::write(broken.path().join("bird.conf.tmpl"), entry).expect("write template");
    let templates = Templates::with_overrides(broken.path()).expect("templates");
    let bad = render_with(&templates, &changed, "h1");
    match installer.install(&bad).await.expect("install") {
        Outcome::Rejected { message } => {
            assert!(message.contains("syntax error"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(installer.stats().rejected, 1);
    assert!(installer.stats().last_rejection.is_some());
    assert_eq!(std::fs::read_to_string(&config).expect("read"), second);
    assert_eq!(
        installer.install(&bad).await.expect("install"),
        Outcome::StillRejected
    );
    assert_eq!(installer.stats().rejected, 1);
    assert_eq!(installer.stats().reloads, 2);
    let now = last_reconfiguration(&ctl);
    assert!(
        same_reconfiguration(now, reconfigured_at),
        "{now} vs {reconfigured_at}"
    );
    let staged: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".new"))
        .collect();
    assert!(staged.is_empty(), "left behind: {staged:?}");

    // BIRD goes away: the next change waits for it, and is reloaded once it is back.
    drop(daemon);
    let third = render(MESH, "h1");
    let outcome = installer.install(&third).await.expect("install");
    assert_eq!(outcome, Outcome::Installed { reloaded: false });
    let _daemon = BirdDaemon::start(prefix, &config, &ctl, &log);
    assert!(installer.retry_reload().await);
    let names = protocol_names(&bird).await;
    assert!(!names.contains(&"Mesh_10_0_0_3".to_string()), "{names:?}");
}

/// A fabric namespace with a bridge and one namespace per node on it (10.0.0.N/24 for the
/// given N); all deleted on drop.
struct Fabric {
    prefix: String,
    nodes: Vec<String>,
}

impl Fabric {
    fn new(test: &str, hosts: &[u8]) -> Self {
        let prefix = format!("bc{}{test}", std::process::id() % 100_000);
        let fabric_ns = format!("{prefix}f");
        run(Command::new("ip").args(["netns", "add", &fabric_ns]));
        let mut fabric = Fabric {
            prefix,
            nodes: vec![fabric_ns.clone()],
        };
        run(Command::new("ip").args(["-n", &fabric_ns, "link", "add", "br0", "type", "bridge"]));
        run(Command::new("ip").args(["-n", &fabric_ns, "link", "set", "br0", "up"]));
        for n in hosts {
            let ns = fabric.ns(*n);
            run(Command::new("ip").args(["netns", "add", &ns]));
            fabric.nodes.push(ns.clone());
            let outside = format!("h{n}");
            run(Command::new("ip").args([
                "-n", &fabric_ns, "link", "add", &outside, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]));
            run(Command::new("ip").args([
                "-n", &fabric_ns, "link", "set", &outside, "master", "br0", "up",
            ]));
            run(Command::new("ip").args([
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.0.0.{n}/24"),
                "dev",
                "eth0",
            ]));
            run(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]));
            run(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        }
        fabric
    }

    fn ns(&self, n: u8) -> String {
        format!("{}n{n}", self.prefix)
    }

    /// Routes BIRD put into the kernel of node `n` (`proto bird`, which `ip` then omits).
    fn bird_routes(&self, n: u8) -> String {
        run(Command::new("ip").args(["-n", &self.ns(n), "route", "show", "proto", "bird"]))
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        for ns in &self.nodes {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A node of a fabric: its installer and its BIRD (started on the first install).
struct LiveNode {
    n: u8,
    installer: Installer,
    config: PathBuf,
    ctl: PathBuf,
    daemon: Option<BirdDaemon>,
    dir: PathBuf,
}

impl LiveNode {
    fn new(dir: &Path, n: u8) -> Self {
        let config = dir.join(format!("n{n}.conf"));
        let ctl = dir.join(format!("n{n}.ctl"));
        Self {
            n,
            installer: Installer::new(&config, Bird::new(&ctl)),
            config,
            ctl,
            daemon: None,
            dir: dir.to_path_buf(),
        }
    }

    /// Installs the configuration of node `name` of `yaml`; starts BIRD the first time.
    async fn configure(&mut self, fabric: &Fabric, yaml: &str, name: &str) {
        let text = render(yaml, name);
        let outcome = self.installer.install(&text).await.expect("install");
        assert!(
            matches!(outcome, Outcome::Installed { .. } | Outcome::Unchanged),
            "{outcome:?}"
        );
        if self.daemon.is_none() {
            let ns = fabric.ns(self.n);
            let log = self.dir.join(format!("n{}.log", self.n));
            let prefix = ["ip", "netns", "exec", ns.as_str()];
            self.daemon = Some(BirdDaemon::start(&prefix, &self.config, &self.ctl, &log));
        } else {
            assert!(!self.installer.reload_pending());
        }
    }

    /// Waits until every BGP session of this BIRD is established.
    fn wait_established(&self) {
        wait_for("BGP sessions", Duration::from_secs(20), || {
            let out = birdc(&self.ctl, &["show", "protocols"]);
            let bgp: Vec<&str> = out.lines().filter(|l| l.contains(" BGP ")).collect();
            (!bgp.is_empty() && bgp.iter().all(|l| l.contains("Established"))).then_some(())
        });
    }
}

fn two_nodes(mode: &str, h2_address: &str) -> String {
    format!(
        r#"
node: h1
resources:
  - {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: h1}}, spec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}}}
  - {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: h2}}, spec: {{bgp: {{ipv4Address: {h2_address}}}}}}}
  - {{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {{name: pool}}, spec: {{cidr: 192.168.0.0/16, ipipMode: {mode}}}}}
affinities:
  - {{node: h1, cidr: 192.168.0.0/26}}
  - {{node: h2, cidr: 192.168.1.0/26}}
"#
    )
}

#[tokio::test(flavor = "current_thread")]
async fn pool_modes_program_the_kernel() {
    if !is_root() {
        eprintln!("skipped: needs root to create network namespaces");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fabric = Fabric::new("m", &[1, 2]);
    let mut h1 = LiveNode::new(dir.path(), 1);
    let mut h2 = LiveNode::new(dir.path(), 2);
    // (mode, h2's address, whether h2's kernel gets h1's block from BIRD)
    let cases = [
        ("Never", "10.0.0.2/24", true),
        ("Always", "10.0.0.2/24", false),
        ("CrossSubnet", "10.0.0.2/24", true),
        // h2 on 10.0.0.2/31: h1's next hop 10.0.0.1 is off h2's subnet, so IPIP (felix's).
        ("CrossSubnet", "10.0.0.2/31", false),
    ];
    for (mode, h2_address, programmed) in cases {
        let yaml = two_nodes(mode, h2_address);
        h1.configure(&fabric, &yaml, "h1").await;
        h2.configure(&fabric, &yaml, "h2").await;
        h1.wait_established();
        h2.wait_established();
        // h2's BIRD has h1's block from the session in every mode...
        wait_for("h1's block at h2", Duration::from_secs(10), || {
            birdc(&h2.ctl, &["show", "route", "protocol", "Mesh_10_0_0_1"])
                .contains("192.168.0.0/26")
                .then_some(())
        });
        // ...and puts it into the kernel only when the mode routes natively.
        let want = "192.168.0.0/26 via 10.0.0.1 dev eth0 metric 32";
        if programmed {
            wait_for(&format!("{mode}: {want}"), Duration::from_secs(10), || {
                fabric.bird_routes(2).contains(want).then_some(())
            });
        } else {
            wait_for(
                &format!("{mode}: no kernel route"),
                Duration::from_secs(10),
                || fabric.bird_routes(2).trim().is_empty().then_some(()),
            );
        }
        // A node's own block is never exported to its kernel (felix owns the blackhole).
        assert!(!fabric.bird_routes(1).contains("192.168.0.0/26"), "{mode}");
        assert!(!fabric.bird_routes(2).contains("192.168.1.0/26"), "{mode}");
    }
}

const REFLECTED: &str = r#"
node: rr
resources:
  - {apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {name: default}, spec: {nodeToNodeMeshEnabled: false}}
  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: rr, labels: {route-reflector: "true"}}, spec: {bgp: {ipv4Address: 10.0.0.10/24, routeReflectorClusterID: 224.0.0.1}}}
  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h1}, spec: {bgp: {ipv4Address: 10.0.0.1/24}}}
  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: h2}, spec: {bgp: {ipv4Address: 10.0.0.2/24}}}
  - {apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {name: to-rr}, spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}}
  - {apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: pool}, spec: {cidr: 192.168.0.0/16, ipipMode: Never}}
affinities:
  - {node: h1, cidr: 192.168.0.0/26}
  - {node: h2, cidr: 192.168.1.0/26}
"#;

#[tokio::test(flavor = "current_thread")]
async fn route_reflector_passes_routes_on() {
    if !is_root() {
        eprintln!("skipped: needs root to create network namespaces");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fabric = Fabric::new("r", &[1, 2, 10]);
    let mut rr = LiveNode::new(dir.path(), 10);
    let mut h1 = LiveNode::new(dir.path(), 1);
    let mut h2 = LiveNode::new(dir.path(), 2);
    rr.configure(&fabric, REFLECTED, "rr").await;
    h1.configure(&fabric, REFLECTED, "h1").await;
    h2.configure(&fabric, REFLECTED, "h2").await;
    for node in [&rr, &h1, &h2] {
        node.wait_established();
    }
    // The clients peer only with the reflector...
    let sessions = birdc(&h1.ctl, &["show", "protocols"]);
    let bgp: Vec<&str> = sessions.lines().filter(|l| l.contains(" BGP ")).collect();
    assert_eq!(bgp.len(), 1, "{sessions}");
    assert!(bgp[0].starts_with("Node_10_0_0_10"), "{sessions}");
    // ...and still learn each other's blocks through it, with the other client as next hop.
    wait_for("h1's block at h2 via rr", Duration::from_secs(10), || {
        fabric
            .bird_routes(2)
            .contains("192.168.0.0/26 via 10.0.0.1 dev eth0")
            .then_some(())
    });
    wait_for("h2's block at h1 via rr", Duration::from_secs(10), || {
        fabric
            .bird_routes(1)
            .contains("192.168.1.0/26 via 10.0.0.2 dev eth0")
            .then_some(())
    });
    let at_h2 = birdc(&h2.ctl, &["show", "route", "all", "192.168.0.0/26"]);
    assert!(at_h2.contains("BGP.originator_id: 10.0.0.1"), "{at_h2}");
    assert!(at_h2.contains("BGP.cluster_list: 224.0.0.1"), "{at_h2}");
}
