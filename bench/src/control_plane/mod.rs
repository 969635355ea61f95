//! `bench control-plane`: felix's control plane against a real etcd, per scale (workload
//! endpoints / policies in etcd, see [`cluster`]):
//! - full sync: from spawning `felix run` (cold: no pins, no state) until every local
//!   endpoint in `felix_ep_v2` has both slots, each slot holds a set in `felix_pslot_v1`, and
//!   the policy state file has those slots with those sets (and the expected policy);
//! - a policy change: one put of a NetworkPolicy selecting a local endpoint (a port added to
//!   its ingress rule 0) until the endpoint's ingress slot flips to a new set;
//! - a label change: one put of a remote endpoint's WorkloadEndpoint whose `role` moves it in
//!   or out of the IP set behind a local endpoint's ingress rule 0, until that flip;
//! - large policies (full runs, largest scale, after the changes, see [`large`]): 10,000
//!   selector rules and 50,000 /32 rules selecting one local endpoint, from their etcd writes
//!   to the endpoint's ingress slot holding the complete set;
//! - felix's VmRSS and VmHWM after the sync and after the changes, and its CPU time.
//!
//! Changes are timed from just before the etcd put to the first poll (every
//! [`POLL`]) that sees the flip, then cross-checked, untimed, against the state file (the
//! rule's text has the new port, or the set's new size). One change at a time, [`Settings::gap`]
//! apart: felix delivers each at once, so none waits for another.

pub mod cluster;
mod etcd;
mod felixd;
mod lab;
pub mod large;
mod probe;
mod proc;
pub mod report;
pub mod targets;

use std::{
    collections::HashMap,
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use etcd_client::Client;
use felix_user::{
    calc::policy::PolicyDirection,
    dataplane::{pins::NodePaths, policy::state::GroupState},
};
use tokio::runtime::Runtime;

use self::{
    cluster::{CHANGED_PORT_BASE, Cluster, LOCAL_NODE, Pod, Role, Scale, node_name},
    etcd::Etcd,
    felixd::Felix,
    lab::Lab,
    probe::{Probe, Sides, programmed, rule_text, side, state_knows},
};
pub use self::{felixd::MILESTONES, proc::Memory};
use crate::signals;

/// How often the maps are read while waiting for a flip.
pub const POLL: Duration = Duration::from_millis(1);

/// How much to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    pub scales: Vec<Scale>,
    /// Cold starts of felix per scale (the last one stays for the changes).
    pub sync_runs: usize,
    /// Policy changes, and label changes, per scale.
    pub changes: usize,
    /// Pause after each change is programmed and checked.
    pub gap: Duration,
    /// Pause between the full sync and the first change (felix's own start-up writes to etcd,
    /// its Node and status, come back through its watch and would share a batch).
    pub settle: Duration,
    /// Longest wait for a sync or a change.
    pub timeout: Duration,
    /// Whether the largest scale also measures the [`large::MEASURED`] policies.
    pub large_policies: bool,
}

impl Settings {
    /// 1,000 / 100 and 10,000 / 1,000; 3 cold starts and 200 changes of each kind per scale.
    pub fn full() -> Self {
        Settings {
            scales: vec![
                Scale {
                    endpoints: 1_000,
                    policies: 100,
                },
                Scale {
                    endpoints: 10_000,
                    policies: 1_000,
                },
            ],
            sync_runs: 3,
            changes: 200,
            gap: Duration::from_millis(100),
            settle: Duration::from_secs(3),
            timeout: Duration::from_secs(120),
            large_policies: true,
        }
    }

    /// 1,000 / 100 only, one start, 20 changes of each kind: well under two minutes.
    pub fn quick() -> Self {
        Settings {
            scales: vec![Scale {
                endpoints: 1_000,
                policies: 100,
            }],
            sync_runs: 1,
            changes: 20,
            gap: Duration::from_millis(100),
            settle: Duration::from_secs(3),
            timeout: Duration::from_secs(60),
            large_policies: false,
        }
    }
}

/// One cold start.
#[derive(Clone, Debug)]
pub struct SyncRun {
    /// Spawn to programmed (maps and state file agree).
    pub programmed: Duration,
    /// Spawn to the first poll that saw every local endpoint's slots and sets in the maps.
    pub maps_ready: Duration,
    pub memory: Memory,
    /// felix's CPU time (user + system) at that point.
    pub cpu: Duration,
    /// Spawn to each of [`MILESTONES`].
    pub milestones: Vec<Option<Duration>>,
}

/// The changes of one kind.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Put to flip, per change.
    pub latencies: Vec<Duration>,
    /// The etcd put alone (until etcd answered), per change.
    pub puts: Vec<Duration>,
    /// When each put was made, since felix's spawn.
    pub at: Vec<Duration>,
    /// felix's CPU time over all of them (including the gaps).
    pub cpu: Duration,
}

/// Policy-map totals of the state file after the sync.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tables {
    pub groups: usize,
    pub ips: usize,
    pub ports: usize,
    pub verdicts: usize,
}

/// Everything measured at one scale.
#[derive(Clone, Debug)]
pub struct ScaleResult {
    pub scale: Scale,
    pub keys: usize,
    pub bytes: usize,
    /// Writing every key (transactions of 128 puts).
    pub load: Duration,
    pub syncs: Vec<SyncRun>,
    pub tables: Tables,
    pub policy: Changes,
    pub label: Changes,
    /// The large policies, when measured at this scale.
    pub large: Vec<large::LargePolicy>,
    /// After the policy and label changes (before any large policy).
    pub memory_changes: Memory,
    /// At the end: after the large policies when they were measured.
    pub memory_end: Memory,
    /// WARN and ERROR lines in the last felix's log.
    pub warnings: usize,
    pub errors: usize,
    /// The first few of them.
    pub sample_warnings: Vec<String>,
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct Results {
    pub settings: Settings,
    pub scales: Vec<ScaleResult>,
}

/// A local endpoint and what the changes touch.
#[derive(Clone, Debug)]
struct Target {
    pod: Pod,
    ifindex: u32,
    /// The policy selecting it.
    policy: usize,
}

/// Measures every scale of `settings` with the felix binary `felix`.
pub fn run(settings: &Settings, felix: &Path) -> Result<Results> {
    signals::install();
    lab::clean_stale();
    let mut scales = Vec::new();
    for &scale in &settings.scales {
        eprintln!(
            "== {} endpoints / {} policies",
            scale.endpoints, scale.policies
        );
        let largest = settings.scales.iter().map(|s| s.endpoints).max() == Some(scale.endpoints);
        scales.push(measure(
            settings,
            scale,
            felix,
            settings.large_policies && largest,
        )?);
    }
    Ok(Results {
        settings: settings.clone(),
        scales,
    })
}

/// What the changes need at hand.
struct Session<'a> {
    settings: &'a Settings,
    cluster: Cluster,
    rt: Runtime,
    client: Client,
    felix: Felix,
    probe: Probe,
}

fn measure(
    settings: &Settings,
    scale: Scale,
    felix_src: &Path,
    large_policies: bool,
) -> Result<ScaleResult> {
    let cluster = Cluster::new(scale)?;
    let locals: Vec<Pod> = cluster
        .locals
        .iter()
        .map(|i| cluster.pods[*i].clone())
        .collect();
    let calis: Vec<String> = locals.iter().map(Cluster::cali_name).collect();
    let lab = Lab::create(&calis)?;
    // A copy: a concurrent rebuild of target/release/felix does not change it mid-run.
    let felix_bin = lab.dir.join("felix");
    fs::copy(felix_src, &felix_bin)
        .with_context(|| format!("copy {} (build it first)", felix_src.display()))?;
    let mut etcd = Etcd::start(&lab)?;
    let fabric = lab.enter_fabric()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut client = rt.block_on(etcd.connect())?;
    let docs = cluster.documents();
    let started = Instant::now();
    let bytes = rt.block_on(etcd::put_all(&mut client, &docs))?;
    let load = started.elapsed();
    eprintln!(
        "wrote {} keys ({:.1} MB) in {:.2} s",
        docs.len(),
        bytes as f64 / 1e6,
        load.as_secs_f64()
    );
    let ifindexes = lab.ifindexes()?;
    let targets = locals
        .iter()
        .zip(&calis)
        .map(|(pod, cali)| {
            Ok(Target {
                pod: pod.clone(),
                ifindex: *ifindexes
                    .get(cali)
                    .with_context(|| format!("{cali} has no ifindex"))?,
                policy: cluster
                    .policy_of(pod)
                    .with_context(|| format!("no policy selects pod {}", pod.index))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let node = node_name(LOCAL_NODE);
    let paths = NodePaths::new(&lab.pin_root, &lab.run_root, &node)?;
    let mut syncs = Vec::new();
    let mut kept = None;
    for run in 0..settings.sync_runs {
        if run > 0 {
            lab.reset_felix()?;
        }
        let mut felix = Felix::start(&felix_bin, &lab, &node, run)?;
        eprintln!("felix started, pid {}", felix.pid);
        let (sync, probe, tables) = wait_synced(&mut felix, &paths, &targets, &cluster, settings)?;
        eprintln!(
            "sync {}: programmed after {:.3} s, VmRSS {} MiB, VmHWM {} MiB",
            run + 1,
            sync.programmed.as_secs_f64(),
            sync.memory.rss_kib / 1024,
            sync.memory.hwm_kib / 1024
        );
        syncs.push(sync);
        if run + 1 < settings.sync_runs {
            if !felix.stop() {
                eprintln!("warning: felix did not stop on SIGTERM within 10 s; killed");
            }
        } else {
            kept = Some((felix, probe, tables));
        }
    }
    let (felix, probe, tables) = kept.context("no sync run")?;
    thread::sleep(settings.settle);
    let mut session = Session {
        settings,
        cluster,
        rt,
        client,
        felix,
        probe,
    };
    let policy = policy_changes(&mut session, &targets)?;
    report_changes("policy", &policy);
    let label = label_changes(&mut session, &targets)?;
    report_changes("label", &label);
    let memory_changes = session.felix.memory()?;
    let mut large = Vec::new();
    if large_policies {
        for (&(shape, n), target) in large::MEASURED.iter().zip(&targets) {
            let measured = large::measure(&mut session, target, shape, n)?;
            eprintln!(
                "{}: programmed {:.3} s after the first write, {:.3} s after the first policy put",
                large::label(&measured),
                measured.from_first_write.as_secs_f64(),
                measured.from_policy_write.as_secs_f64()
            );
            large.push(measured);
        }
    }
    let memory_end = session.felix.memory()?;
    let log = fs::read_to_string(&session.felix.log).unwrap_or_default();
    let flagged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let result = ScaleResult {
        scale,
        keys: docs.len(),
        bytes,
        load,
        syncs,
        tables,
        policy,
        label,
        large,
        memory_changes,
        memory_end,
        warnings: flagged.iter().filter(|l| l.contains(" WARN ")).count(),
        errors: flagged.iter().filter(|l| l.contains(" ERROR ")).count(),
        sample_warnings: flagged.iter().take(5).map(|l| l.to_string()).collect(),
    };
    let Session { felix, .. } = session;
    if !felix.stop() {
        eprintln!("warning: felix did not stop on SIGTERM within 10 s; killed");
    }
    drop(fabric);
    drop(etcd);
    drop(lab);
    Ok(result)
}

fn report_changes(what: &str, changes: &Changes) {
    let ms: Vec<f64> = changes
        .latencies
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    eprintln!(
        "{} {what} changes: p50 {:.1} ms, p99 {:.1} ms",
        ms.len(),
        crate::stats::percentile(&ms, 50.0).unwrap_or_default(),
        crate::stats::percentile(&ms, 99.0).unwrap_or_default()
    );
}

/// An error unless felix still runs and there is time left.
fn alive(felix: &mut Felix, deadline: Instant, what: &str) -> Result<()> {
    signals::check()?;
    if !felix.running() {
        bail!("felix exited {what}; log:\n{}", felix.log_tail(30));
    }
    if Instant::now() > deadline {
        bail!("timed out {what}; felix log:\n{}", felix.log_tail(30));
    }
    Ok(())
}

/// Polls until every target is programmed and the state file agrees (see the module docs).
fn wait_synced(
    felix: &mut Felix,
    paths: &NodePaths,
    targets: &[Target],
    cluster: &Cluster,
    settings: &Settings,
) -> Result<(SyncRun, Probe, Tables)> {
    let deadline = felix.started + settings.timeout;
    let mut probe = None;
    let mut maps_ready = None;
    loop {
        alive(felix, deadline, "before the full sync")?;
        if probe.is_none() {
            probe = Probe::open(paths).ok();
        }
        if let Some(p) = &probe {
            let at = felix.started.elapsed();
            let sides: Vec<Option<Sides>> = targets
                .iter()
                .map(|t| p.live(t.ifindex))
                .collect::<Result<_>>()?;
            if sides.iter().all(|s| s.as_ref().is_some_and(programmed)) {
                let maps_ready = *maps_ready.get_or_insert(at);
                let state = p.state().ok();
                if let Some(state) = state
                    && sides.iter().flatten().all(|s| state_knows(&state, s))
                {
                    let memory = felix.memory()?;
                    let cpu = felix.cpu()?;
                    for (t, s) in targets.iter().zip(sides.iter().flatten()) {
                        check_synced(&state, cluster, t, s)?;
                    }
                    let tables = state.groups.iter().fold(
                        Tables {
                            groups: state.groups.len(),
                            ..Tables::default()
                        },
                        |acc, g| Tables {
                            ips: acc.ips + g.tables.ips,
                            ports: acc.ports + g.tables.ports,
                            verdicts: acc.verdicts + g.tables.verdicts,
                            ..acc
                        },
                    );
                    let sync = SyncRun {
                        programmed: at,
                        maps_ready,
                        memory,
                        cpu,
                        milestones: felix.milestones(),
                    };
                    if let Some(probe) = probe {
                        return Ok((sync, probe, tables));
                    }
                }
            }
        }
        thread::sleep(POLL);
    }
}

/// The endpoint's ingress group is its app's policy with the documented rule 0.
fn check_synced(
    state: &felix_user::dataplane::policy::state::PolicyState,
    cluster: &Cluster,
    target: &Target,
    sides: &Sides,
) -> Result<()> {
    let group = state
        .group(sides[side(PolicyDirection::Ingress)].slot)
        .context("ingress group")?;
    let want = cluster.policy(target.policy, None).0;
    ensure!(
        group.policies == [want.clone()],
        "endpoint of pod {}: ingress policies {:?}, expected [{want}]",
        target.pod.index,
        group.policies
    );
    let text = rule_text(group, &cluster.policy_ref(target.policy), 0).unwrap_or_default();
    ensure!(
        text.contains("dst port 8080,8443"),
        "endpoint of pod {}: ingress rule 0 is {text:?}",
        target.pod.index
    );
    Ok(())
}

/// Times one change: `key` := `value` until `target`'s ingress flips, then waits (untimed)
/// for the state file to show the flipped set with `verify` holding for its group.
/// One timed change.
struct Sample {
    latency: Duration,
    put: Duration,
    at: Duration,
}

impl Changes {
    fn push(&mut self, sample: Sample) {
        self.latencies.push(sample.latency);
        self.puts.push(sample.put);
        self.at.push(sample.at);
    }
}

fn one_change(
    s: &mut Session,
    target: &Target,
    key: &str,
    value: &serde_json::Value,
    verify: impl Fn(&GroupState) -> bool,
) -> Result<Sample> {
    let ingress = side(PolicyDirection::Ingress);
    let before = s
        .probe
        .live(target.ifindex)?
        .context("the endpoint left felix_ep_v2")?;
    let started = Instant::now();
    let at = s.felix.started.elapsed();
    s.rt.block_on(etcd::put(&mut s.client, key, value))?;
    let put = started.elapsed();
    let deadline = started + s.settings.timeout;
    let (latency, now) = loop {
        if let Some(now) = s.probe.live(target.ifindex)?
            && now[ingress] != before[ingress]
        {
            break (started.elapsed(), now[ingress]);
        }
        alive(&mut s.felix, deadline, &format!("after a change to {key}"))?;
        thread::sleep(POLL);
    };
    let mut last = String::new();
    loop {
        if let Ok(state) = s.probe.state()
            && let Some(group) = state.group(now.slot)
            && group.set == now.set
        {
            if verify(group) {
                break;
            }
            last = format!("{:?}", group.entries.first().map(|e| &e.matches));
        }
        alive(
            &mut s.felix,
            deadline,
            &format!("waiting for the state file to show {key} (last: {last})"),
        )?;
        thread::sleep(POLL);
    }
    thread::sleep(s.settings.gap);
    Ok(Sample { latency, put, at })
}

/// Change `i` adds port 20000 + i to ingress rule 0 of the policy of local endpoint `i % 20`.
fn policy_changes(s: &mut Session, targets: &[Target]) -> Result<Changes> {
    let mut changes = Changes::default();
    let cpu = s.felix.cpu()?;
    for i in 0..s.settings.changes {
        let target = &targets[i % targets.len()];
        let port = CHANGED_PORT_BASE + u16::try_from(i).context("too many changes")?;
        let (key, value) = s.cluster.policy(target.policy, Some(port));
        let name = s.cluster.policy_ref(target.policy);
        let sample = one_change(s, target, &key, &value, |group| {
            rule_text(group, &name, 0).is_some_and(|t| t.contains(&port.to_string()))
        })?;
        changes.push(sample);
    }
    changes.cpu = s.felix.cpu()?.saturating_sub(cpu);
    Ok(changes)
}

/// Change `i` toggles the role (frontend <-> backend) of the remote peer of local endpoint
/// `i % 20`, moving it out of or into the set of that endpoint's ingress rule 0.
fn label_changes(s: &mut Session, targets: &[Target]) -> Result<Changes> {
    let mut changes = Changes::default();
    let mut roles: HashMap<usize, Role> = HashMap::new();
    let cpu = s.felix.cpu()?;
    for i in 0..s.settings.changes {
        let target = &targets[i % targets.len()];
        let peer = s.cluster.pods[s.cluster.peer_of(&target.pod)].clone();
        let role = match roles.get(&peer.index).copied().unwrap_or(peer.role) {
            Role::Frontend => Role::Backend,
            _ => Role::Frontend,
        };
        roles.insert(peer.index, role);
        let frontends = s.cluster.count_role(peer.namespace, Role::Frontend, |p| {
            roles.get(&p.index).copied().unwrap_or(p.role)
        });
        let (key, value) = Cluster::workload_endpoint(&peer, role);
        let name = s.cluster.policy_ref(target.policy);
        let want = format!("{frontends} in all}}");
        let sample = one_change(s, target, &key, &value, |group| {
            rule_text(group, &name, 0).is_some_and(|t| t.contains(&want))
        })?;
        changes.push(sample);
    }
    changes.cpu = s.felix.cpu()?.saturating_sub(cpu);
    Ok(changes)
}
