//! felix per lab host: started inside the host namespace, ready once it reports programs attached
//! on all of the host's `cali*` interfaces and its uplink, its maps hold the lab's endpoints and
//! remote blocks, it has programmed the host's kernel routes and registered its Node's address.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::felix;
use crate::kroutes::{self, Check};
use crate::proc::{self, ProcRecord};
use crate::state::{HostState, LabState};
use crate::{calico, etcd, iptables};

/// The dataplane the lab's felix runs (`--dataplane`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dataplane {
    /// felix's eBPF programs.
    #[default]
    Bpf,
    /// iptables rules with this backend; the kernel routes natively.
    Iptables(iptables::Backend),
}

impl Dataplane {
    /// felix's flags for it.
    pub fn args(self) -> Vec<String> {
        match self {
            Dataplane::Bpf => vec!["--dataplane".into(), "bpf".into()],
            Dataplane::Iptables(backend) => vec![
                "--dataplane".into(),
                "iptables".into(),
                "--iptables-backend".into(),
                backend.name().into(),
            ],
        }
    }
}

/// How often the lab's felix re-checks its kernel routes (`--route-refresh-interval`, seconds).
pub const ROUTE_REFRESH_S: u64 = 2;
/// The TTL of the lease behind the lab's felix status keys (`--status-ttl`, seconds).
pub const STATUS_TTL_S: u64 = 6;

/// `felix run --node <node> --etcd-endpoints <url> --route-refresh-interval 2 --status-ttl 6` in
/// the host's network namespace, RUST_LOG=info, with `dataplane`'s flags. Short intervals so that
/// tests of the resync and of a dead felix's status expiry take seconds.
pub fn start(
    felix_bin: &Path,
    state: &LabState,
    host: &HostState,
    dataplane: Dataplane,
) -> Result<ProcRecord> {
    let mut argv: Vec<String> = vec![
        felix_bin.to_string_lossy().into_owned(),
        "run".into(),
        "--node".into(),
        host.node.clone(),
        "--etcd-endpoints".into(),
        state.etcd_url.clone(),
        "--route-refresh-interval".into(),
        ROUTE_REFRESH_S.to_string(),
        "--status-ttl".into(),
        STATUS_TTL_S.to_string(),
    ];
    argv.extend(dataplane.args());
    let tls: Vec<(&str, String)> = crate::etcd_tls::for_url(&host.ns, &state.etcd_url)
        .map(|pki| crate::etcd_tls::felix_env(&pki).to_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, path)| (name, path.to_string_lossy().into_owned()))
        .collect();
    let mut envs = vec![("RUST_LOG", "info")];
    envs.extend(tls.iter().map(|(name, path)| (*name, path.as_str())));
    // Not `ip netns exec`: its private /sys hides bpffs, and felix pins under /sys/fs/bpf/felix.
    proc::spawn_in_ns(
        proc::Enter::NsenterNet,
        &host.ns,
        &format!("felix h{}", host.n),
        &argv,
        &envs,
        &host.felix_log,
    )
}

/// Readiness of felix on `host`, in two bounded phases: first its programs are attached on every
/// `cali*` of the host and on the uplink `eth0` (TC both ways; XDP only while the deny list has
/// entries, so not at start), within `attach_timeout`;
/// then, within `sync_timeout`, its maps hold what the lab's etcd data says: both pods of the host
/// in the endpoints map and every other host's block as a `remote_block` via that host's IP.
/// Within `sync_timeout` too, the host's kernel table has felix's routes (pods' /32s, the block's
/// blackhole, the other blocks via their hosts, all `proto 80`) and the Node in etcd has the
/// address felix registered. Tests and the demo therefore never race felix's sync. In iptables
/// mode the first two phases are one: the FORWARD hook and every pod's dispatch rules in place.
pub fn wait_ready(
    felix_bin: &Path,
    state: &LabState,
    host: &HostState,
    rec: &ProcRecord,
    dataplane: Dataplane,
    attach_timeout: Duration,
    sync_timeout: Duration,
) -> Result<()> {
    if let Dataplane::Iptables(backend) = dataplane {
        poll(host, rec, "iptables rules programmed", sync_timeout, || {
            Ok(iptables::dispatch_missing(
                host,
                &iptables::save(&host.ns, backend)?,
            ))
        })?;
        return poll(
            host,
            rec,
            "kernel routes programmed and Node registered",
            sync_timeout,
            || host_missing(state, host),
        );
    }
    let want: Vec<&str> = host.pods.iter().map(|p| p.cali.as_str()).collect();
    poll(host, rec, "programs attached", attach_timeout, || {
        let dump = felix::ifaces(felix_bin, &host.node)?;
        Ok(if !dump.all_attached(&want) {
            Some(format!("not all of {want:?} attached yet: {dump:?}"))
        } else if !dump.uplink_attached("eth0") {
            Some(format!(
                "uplink eth0 not attached (TC both ways) yet: {dump:?}"
            ))
        } else {
            None
        })
    })?;
    let deadline = Instant::now() + sync_timeout;
    poll(
        host,
        rec,
        "endpoints and routes synced",
        sync_timeout,
        || sync_missing(felix_bin, state, host),
    )?;
    poll(
        host,
        rec,
        "kernel routes programmed and Node registered",
        deadline.saturating_duration_since(Instant::now()),
        || host_missing(state, host),
    )
}

/// What felix has not yet done on `host` itself: kernel routes (essential fields) and the Node's
/// `spec.bgp.ipv4Address` in etcd (`None` when done).
fn host_missing(state: &LabState, host: &HostState) -> Result<Option<String>> {
    let routes = kroutes::show(&host.ns)?;
    let mut missing: Vec<String> = kroutes::missing(state, host, &routes, Check::Essential)
        .into_iter()
        .map(|m| format!("kernel route {m}"))
        .collect();
    let want = calico::node_address(host);
    let key = calico::node_key(&host.node);
    let node = etcd::get(&state.fabric_ns, &state.etcd_url, &key)?;
    let have = node
        .as_deref()
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v["spec"]["bgp"]["ipv4Address"].as_str().map(str::to_owned));
    if have.as_deref() != Some(want.as_str()) {
        missing.push(format!(
            "Node {key} spec.bgp.ipv4Address {want} (have {have:?})"
        ));
    }
    Ok((!missing.is_empty()).then(|| missing.join("; ")))
}

/// What felix's maps on `host` still lack (`None` when synced).
fn sync_missing(felix_bin: &Path, state: &LabState, host: &HostState) -> Result<Option<String>> {
    let endpoints = felix::endpoints(felix_bin, &host.node)?;
    let mut missing = Vec::new();
    for pod in &host.pods {
        match endpoints.by_ip(pod.ip) {
            Some(ep) if ep.interface == pod.cali => {}
            other => missing.push(format!(
                "endpoint {} on {} (have {other:?})",
                pod.ip, pod.cali
            )),
        }
    }
    let routes = felix::routes(felix_bin, &host.node)?;
    for other in state.hosts.iter().filter(|o| o.n != host.n) {
        match routes.by_cidr(&other.block) {
            Some(r) if r.kind == "remote_block" && r.next_hop == Some(other.ip) => {}
            r => missing.push(format!(
                "route {} remote_block via {} (have {r:?})",
                other.block, other.ip
            )),
        }
    }
    Ok((!missing.is_empty()).then(|| missing.join("; ")))
}

/// Polls `check` every 250 ms until it reports nothing missing, felix exits, or `timeout` passes.
fn poll(
    host: &HostState,
    rec: &ProcRecord,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<String>>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let exited = rec.exited();
        let last = match check() {
            Ok(None) if exited.is_none() => return Ok(()),
            Ok(None) => "ok".to_owned(),
            Ok(Some(missing)) => missing,
            Err(e) => format!("{e:#}"),
        };
        if let Some(how) = exited {
            bail!(
                "felix on {} exited ({how}); log {}:\n{}",
                host.node,
                rec.log.display(),
                proc::log_tail(&rec.log, 30)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "felix on {}: not {what} after {timeout:?} ({last}); log {}:\n{}",
                host.node,
                rec.log.display(),
                proc::log_tail(&rec.log, 30)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}
