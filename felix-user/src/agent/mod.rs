//! `felix run`: keep the dataplane in step with the datastore and the host's links, own the
//! host's kernel routes to its pods, register the Node and report status.
//!
//! The datastore arrives through the syncer ([`datastore`]) into the parsed cache ([`Store`]).
//! The syncer hands each watch response on at once; the loop applies every update queued by
//! then as one batch (so bursts batch themselves while felix is busy, and a lone change waits
//! for nothing). After a batch that changes the cache the dataplane is reconciled; the
//! forwarding view ([`Topology`]) is derived again only when the batch touches what it reads
//! ([`topology_inputs`]). What the dataplane is depends on the [`Mode`]; this module is the loop
//! both modes share (syncer, store, topology, links, kernel routes, Node, status, telemetry) and
//! a [`Plane`] does the rest:
//! - [`bpf`]: load the programs, attach them to every workload interface and the uplink, keep
//!   their maps and compiled policy in step, collect expired conntrack entries;
//! - [`iptables`]: no programs; the kernel routes pod traffic (remote blocks natively) and
//!   Calico-style iptables chains enforce the policy.
//!
//! Both modes masquerade what pods of `natOutgoing` pools send out of the pools with the same
//! nat rules ([`nat_outgoing`]), synced after each reconcile; they stay when felix exits.
//!
//! The data flow, layer by layer (BPF mode):
//!
//! ```text
//!  etcd -> calico::datastore (syncer) -> calico::store::Store
//!            -> calc::topology::Topology -> calc::desired -> dataplane::reconcile -> maps
//!                                                        -> host::kroutes -> kernel routes
//!            -> dataplane::policy::engine (calc::policy calculation and compiler) -> policy maps
//!  host::links (rtnetlink events) -> dataplane::attach (programs on cali* and the uplink)
//!  timers: dataplane::xdp (every second), dataplane::maps::conntrack GC and fill check (every
//!  `ct_gc_interval`); report::status and report::telemetry read what the loop holds
//! ```
//!
//! Starting in one mode removes the other's state from the host once its own first apply has
//! worked (so that policy is enforced throughout a switch): BPF mode removes felix's iptables
//! chains and ipsets (both backends); iptables mode unpins this node's programs and maps (as
//! `felix bpf uninstall` does) and cleans the other iptables backend.

mod bpf;
mod burst;
mod endpoint_conflicts;
mod iptables;
mod nat_outgoing;
mod topology_inputs;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use calico::{
    datastore,
    datastore::{SyncStatus, Syncer, SyncerConfig, Update},
    model::Resource,
    store::{Applied, Entry, Store},
};
use felix_common::IfaceRole;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::{
    calc::desired::{self, Desired},
    calc::topology::Topology,
    config::Mode,
    dataplane::loader::LoadError,
    dataplane::pins::{NodePaths, PinError},
    host::autodetect,
    host::ifsysctl,
    host::kroutes,
    host::links::{self, LinkEvent},
    host::node_register,
    report::status::{self, DatastoreStatus, EndpointStatus, Report},
    report::telemetry::{self, Heartbeat},
};

/// Settings of a running agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This host's Calico node name.
    pub node: String,
    /// The dataplane to program.
    pub mode: Mode,
    /// etcd client URLs.
    pub etcd_endpoints: Vec<String>,
    /// TLS files for `https://` etcd endpoints.
    pub etcd_tls: calico::etcd_access::TlsFiles,
    /// Root of the pin trees.
    pub pin_root: PathBuf,
    /// Root of the run files.
    pub run_root: PathBuf,
    /// Name prefixes of workload interfaces.
    pub workload_prefixes: Vec<String>,
    /// The host's uplink to the fabric (IPIP goes in and out here); `None`: the interface that
    /// holds the address `ip_autodetection` finds.
    pub uplink: Option<String>,
    /// OpenstackRegion: the region of the status keys (`None`: `no-region`).
    pub region: Option<String>,
    /// How often the conntrack cleaner runs.
    pub ct_gc_interval: Duration,
    /// How often the kernel routes are checked (they are also fixed when one is deleted).
    pub route_refresh_interval: Duration,
    /// Lifetime of the status keys in etcd without refresh.
    pub status_ttl: Duration,
    /// How the host's IPv4 address is found for its Node resource.
    pub ip_autodetection: autodetect::Method,
    /// The AS number written to the Node resource, if any.
    pub as_number: Option<u32>,
    /// Where `/metrics` (and the health paths) are served; `None`: not served.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Where `/liveness` and `/readiness` are served; `None`: not served.
    pub health_address: Option<std::net::SocketAddr>,
    /// Capacities of the configurable maps.
    pub map_sizes: crate::dataplane::loader::MapSizes,
    /// Conntrack fill level (percent) from which felix warns and counts near-full events.
    pub conntrack_near_full_percent: u8,
    /// Share (percent) of the conntrack table one endpoint may hold; 100: no limit.
    pub conntrack_endpoint_share_percent: u8,
    /// The configuration this agent runs with, to restart when FelixConfiguration changes it;
    /// `None`: FelixConfiguration changes are ignored.
    pub resolved: Option<crate::config::Resolved>,
    /// XDPEnabled: the uplink's XDP prefilter is attached while the deny list has entries;
    /// `false`: never.
    pub xdp_enabled: bool,
    /// Failsafe ports the uplink's XDP never drops: (inbound, outbound).
    pub failsafe: (
        Vec<crate::dataplane::failsafe::FailsafePort>,
        Vec<crate::dataplane::failsafe::FailsafePort>,
    ),
}

impl AgentConfig {
    /// etcd's endpoints and TLS files.
    pub fn etcd_access(&self) -> calico::etcd_access::EtcdAccess {
        calico::etcd_access::EtcdAccess::new(self.etcd_endpoints.clone())
            .with_tls(self.etcd_tls.clone())
    }
}

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Pins(#[from] PinError),
    #[error(transparent)]
    Listen(#[from] crate::report::telemetry::ListenError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Links(#[from] links::LinksError),
    #[error(transparent)]
    Failsafe(#[from] crate::dataplane::failsafe::FailsafeError),
    /// Another felix already serves this node.
    #[error(
        "cannot choose the uplink: {0}; set FELIX_UPLINK to the interface towards the other nodes, or FELIX_IP_AUTODETECTION_METHOD to one that finds this node's address"
    )]
    Uplink(autodetect::AutodetectError),
    #[error("felix for node {node:?} is already running as pid {pid}")]
    AlreadyRunning { node: String, pid: u32 },
    /// The link watcher stopped.
    #[error("the rtnetlink link watcher stopped")]
    WatcherStopped,
    /// The rtnetlink socket for routes could not be opened.
    #[error("open an rtnetlink socket: {0}")]
    Netlink(#[source] std::io::Error),
}

/// What a reconcile hands the dataplane.
struct Input<'a> {
    desired: &'a mut Desired,
    topology: &'a Topology,
    /// The uplink's (ifindex, MTU), when it exists.
    uplink: Option<(u32, u32)>,
    /// Datastore values skipped as malformed (for the log).
    malformed: usize,
}

/// What a dataplane mode does inside the shared loop.
trait Plane {
    /// The initial links have been through [`Plane::link_present`].
    fn started(&mut self, present: &[LinkEvent]);
    /// Interface `index` exists as `name` (new, changed or renamed); `role` when felix manages
    /// interfaces of its kind.
    fn link_present(&mut self, index: u32, name: &str, role: Option<IfaceRole>);
    /// Interface `index` was deleted.
    fn link_gone(&mut self, index: u32, name: &str);
    /// A datastore value was written (policy ignores kinds it does not use).
    fn upsert(&mut self, key: &str, resource: &Resource);
    /// A datastore value was deleted.
    fn remove(&mut self, key: &str);
    /// Programs the desired state and policy; whether the dataplane now holds it.
    async fn apply(&mut self, input: Input<'_>) -> bool;
    /// How remote blocks are routed.
    fn remote_blocks(&self) -> kroutes::RemoteBlocks;
    /// The status of a local endpoint whose interface `index` exists.
    fn endpoint_status(&self, index: u32, iface: &str) -> EndpointStatus;
    /// Programs attached to interfaces.
    fn programs_loaded(&self) -> u32;
    /// Periodic work (every `ct_gc_interval`).
    fn housekeeping(&mut self);
    /// Brings the uplink's XDP attachment in line with the deny list (every
    /// [`XDP_CHECK_INTERVAL`]); whether its reported state changed.
    fn check_xdp(&mut self) -> bool {
        false
    }
    /// The uplink's XDP state for the status (`None`: this mode has no XDP).
    fn xdp_state(&self) -> Option<&'static str> {
        None
    }
    /// At exit: what stays in the kernel stays enforcing until the next felix takes over.
    fn stop(&mut self);
}

/// How often the agent checks whether the uplink's XDP prefilter should be attached (the deny
/// list is edited by `felix bpf xdp-deny` in the pinned map, which notifies nobody). One map
/// lookup per check.
pub const XDP_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why the agent stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// `shutdown` completed.
    Shutdown,
    /// FelixConfiguration changed an effective setting: start again to apply it.
    Restart,
}

/// Runs the agent until `shutdown` completes or FelixConfiguration changes a setting.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, AgentError> {
    let paths = NodePaths::new(&config.pin_root, &config.run_root, &config.node)?;
    paths.create_run_dir()?;
    let pid = std::process::id();
    if let Some(other) = paths.running_pid().filter(|other| *other != pid) {
        return Err(AgentError::AlreadyRunning {
            node: config.node,
            pid: other,
        });
    }
    let uplink = uplink(&config).await?;
    let config = AgentConfig {
        uplink: Some(uplink.clone()),
        ..config
    };
    match config.mode {
        Mode::Bpf => {
            let plane = bpf::BpfPlane::start(&paths, &config)?;
            let maps = Some(Arc::new(paths.clone()));
            serve(plane, maps, &paths, &config, shutdown).await
        }
        Mode::Iptables(backend) => {
            let plane = iptables::IptablesPlane::start(&paths, backend, &uplink);
            serve(plane, None, &paths, &config, shutdown).await
        }
    }
}

/// The shared part: telemetry, the pid file, the loop, and the exit.
async fn serve<P: Plane>(
    plane: P,
    maps: Option<Arc<NodePaths>>,
    paths: &NodePaths,
    config: &AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, AgentError> {
    let (connection, netlink, _) = rtnetlink::new_connection().map_err(AgentError::Netlink)?;
    tokio::spawn(connection);
    let (syncer, updates, sync_status) = Syncer::new(
        SyncerConfig::new(config.etcd_endpoints.clone()).with_tls(config.etcd_tls.clone()),
    );
    let mut agent = Agent {
        plane,
        mode: config.mode.name(),
        netlink,
        last_sync: None,
        status: watch::channel(Report {
            dataplane: config.mode.name(),
            ..Report::default()
        })
        .0,
        node: config.node.clone(),
        prefixes: config.workload_prefixes.clone(),
        uplink: config.uplink.clone().unwrap_or_default(),
        links: HashMap::new(),
        store: Store::new(),
        topology: None,
        sync_status: sync_status.clone(),
        applied_once: false,
        heartbeat: Heartbeat::default(),
        resolved: config.resolved.clone(),
        restart: false,
        nat: nat_outgoing::NatOutgoingSync::new(config.mode),
        conflicts: endpoint_conflicts::ConflictLog::default(),
        last_batch_end: None,
    };
    let pin_dir = maps.as_ref().map(|p| p.pin_dir().display().to_string());
    let telemetry = telemetry::serve(
        config.metrics_address,
        config.health_address,
        telemetry::Sources {
            maps,
            report: agent.status.subscribe(),
            heartbeat: agent.heartbeat.clone(),
            fill: telemetry::metrics::FillCache::default(),
        },
    )
    .await?;
    let pid = std::process::id();
    paths.write_pid(pid)?;
    info!(
        node = %config.node,
        dataplane = config.mode.name(),
        pin_dir = pin_dir.as_deref().unwrap_or("-"),
        "dataplane loaded"
    );
    let result = agent
        .serve(config, syncer, updates, sync_status, shutdown)
        .await;
    for task in telemetry {
        task.abort();
    }
    agent.plane.stop();
    paths.remove_pid(pid);
    result
}

struct Agent<P> {
    /// The mode's own state.
    plane: P,
    /// [`Mode::name`], for the status.
    mode: &'static str,
    node: String,
    prefixes: Vec<String>,
    uplink: String,
    /// Every link of the host: name -> (ifindex, MTU).
    links: HashMap<String, (u32, u32)>,
    /// The parsed datastore.
    store: Store,
    /// The forwarding view of `store`; `None` until the first listing.
    topology: Option<Topology>,
    /// The syncer's state, for the status report.
    sync_status: watch::Receiver<SyncStatus>,
    /// Whether the dataplane has held the datastore's state once.
    applied_once: bool,
    /// The loop's last turn, for `/liveness`.
    heartbeat: Heartbeat,
    /// rtnetlink for routes and addresses.
    netlink: rtnetlink::Handle,
    /// When the dataplane was last brought in line with the datastore.
    last_sync: Option<SystemTime>,
    /// The state reported to etcd.
    status: watch::Sender<Report>,
    /// The configuration felix started with (FelixConfiguration changes are compared to it).
    resolved: Option<crate::config::Resolved>,
    /// Set when FelixConfiguration changed an effective setting.
    restart: bool,
    /// The pools' `natOutgoing` rules.
    nat: nat_outgoing::NatOutgoingSync,
    /// Workload endpoint conflicts already logged.
    conflicts: endpoint_conflicts::ConflictLog,
    /// When the last datastore batch was applied ([`burst`]).
    last_batch_end: Option<tokio::time::Instant>,
}

impl<P: Plane> Agent<P> {
    async fn serve(
        &mut self,
        config: &AgentConfig,
        syncer: Syncer,
        mut updates: mpsc::Receiver<Update>,
        mut sync_status: watch::Receiver<SyncStatus>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stopped, AgentError> {
        let (present, mut events) = links::watch().await?;
        for event in present.iter().cloned() {
            self.on_event(event);
        }
        self.plane.started(&present);

        let tasks = [
            tokio::spawn(syncer.run()),
            tokio::spawn(status::run(
                config.etcd_access(),
                status::StatusKeys::new(config.region.as_deref(), &self.node),
                config.status_ttl,
                self.status.subscribe(),
            )),
            tokio::spawn(register_node(
                config.clone(),
                self.links
                    .iter()
                    .map(|(name, (index, _))| (*index, name.clone()))
                    .collect(),
            )),
        ];
        // The first pass one interval in: it loads the cleaner program, whose verification
        // should not hold up the first sync.
        let mut housekeeping = tokio::time::interval_at(
            tokio::time::Instant::now() + config.ct_gc_interval,
            config.ct_gc_interval,
        );
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        let mut route_refresh = tokio::time::interval(config.route_refresh_interval);
        let mut xdp_check = tokio::time::interval(XDP_CHECK_INTERVAL);
        xdp_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(Stopped::Shutdown),
                event = events.recv() => match event {
                    Some(LinkEvent::OwnRouteRemoved) => self.reconcile_routes().await,
                    Some(event) => {
                        self.on_event(event);
                        self.reconcile().await;
                    }
                    None => break Err(AgentError::WatcherStopped),
                },
                Some(update) = updates.recv() => {
                    self.on_updates(update, &mut updates).await;
                    if self.restart {
                        break Ok(Stopped::Restart);
                    }
                }
                Ok(()) = sync_status.changed() => self.report(),
                _ = route_refresh.tick() => self.reconcile_routes().await,
                _ = housekeeping.tick() => self.plane.housekeeping(),
                _ = xdp_check.tick() => {
                    if self.plane.check_xdp() {
                        self.report();
                    }
                }
                _ = beat.tick() => self.heartbeat.beat(),
            }
        };
        for task in tasks {
            task.abort();
        }
        result
    }

    /// Applies `first` and every update queued behind it to the cache, hands their changes to
    /// the policy calculation and, when something changed, reconciles once for all of them;
    /// in a burst of changes, not sooner than [`burst::BURST_GAP`] after the last batch.
    async fn on_updates(&mut self, first: Update, queued: &mut mpsc::Receiver<Update>) {
        if let Some(start) = burst::next_start(self.last_batch_end, tokio::time::Instant::now()) {
            tokio::time::sleep_until(start).await;
        }
        self.apply_updates(first, queued).await;
        self.last_batch_end = Some(tokio::time::Instant::now());
    }

    /// The batch: `first` and what is queued behind it.
    async fn apply_updates(&mut self, first: Update, queued: &mut mpsc::Receiver<Update>) {
        let mut changed = false;
        let mut topology_changed = self.topology.is_none();
        let mut next = Some(first);
        while let Some(update) = next {
            let applied = self.store.apply(update);
            self.check_felix_configuration(&applied);
            self.feed_policy(&applied);
            changed |= !applied.changes.is_empty();
            topology_changed |=
                applied.resync || topology_inputs::touch_topology(&applied.changes, &self.node);
            next = queued.try_recv().ok();
        }
        if !changed && !topology_changed {
            // Malformed counts may have moved.
            self.report();
            return;
        }
        if !topology_changed {
            // Policy only: the routes and nat rules follow the topology, which is as it was.
            self.apply_dataplane().await;
            self.report();
            return;
        }
        let topology = Topology::from_store(&self.store, &self.node);
        self.conflicts.note(&topology.conflicts);
        self.topology = Some(topology);
        self.reconcile().await;
    }

    /// Sets `restart` when a change to FelixConfiguration `default` or `node.<node>` changes
    /// an effective setting (as Calico's felix, which restarts to apply its configuration).
    fn check_felix_configuration(&mut self, applied: &Applied) {
        use crate::config::etcd::{key, node_resource, spec_value};
        let Some(resolved) = &self.resolved else {
            return;
        };
        let (node_key, default_key) = (key(&node_resource(&self.node)), key("default"));
        if !applied
            .changes
            .iter()
            .any(|c| c.key == node_key || c.key == default_key)
        {
            return;
        }
        let spec = |key: &str| match self.store.get(key).and_then(Entry::as_resource) {
            Some(Resource::FelixConfiguration(object)) => spec_value(&object.spec).ok(),
            _ => None,
        };
        let changed = resolved.changed_by(spec(&node_key), spec(&default_key));
        if changed.is_empty() {
            return;
        }
        let mut layers = resolved.layers.clone();
        layers.node = spec(&node_key);
        layers.default = spec(&default_key);
        match crate::config::resolve(layers) {
            Ok(_) => {
                info!(
                    ?changed,
                    "FelixConfiguration changed: restarting to apply it"
                );
                self.restart = true;
            }
            Err(error) => warn!(
                %error,
                "FelixConfiguration changed to an invalid value: keeping the running configuration"
            ),
        }
    }

    /// Passes the changed resources to the policy calculation (it ignores kinds it does not use).
    fn feed_policy(&mut self, applied: &Applied) {
        for change in &applied.changes {
            match change.new.as_deref().and_then(Entry::as_resource) {
                Some(resource) => self.plane.upsert(&change.key, resource),
                None if change.old.as_deref().and_then(Entry::as_resource).is_some() => {
                    self.plane.remove(&change.key);
                }
                None => {}
            }
        }
    }

    /// What the datastore and the links ask of the dataplane.
    fn desired(&self) -> Option<Desired> {
        let topology = self.topology.as_ref()?;
        let indexes: HashMap<String, u32> = self
            .links
            .iter()
            .map(|(name, (index, _))| (name.clone(), *index))
            .collect();
        Some(desired::compute(&self.node, topology, &indexes))
    }

    /// Brings the dataplane, the kernel routes and the reported status in line with the
    /// datastore and the links.
    async fn reconcile(&mut self) {
        self.apply_dataplane().await;
        if let Some(topology) = &self.topology {
            self.nat.sync(topology).await;
            self.reconcile_routes().await;
        }
        self.report();
    }

    /// Programs the desired state and policy into the dataplane (once there is a topology).
    async fn apply_dataplane(&mut self) {
        let (Some(mut desired), Some(topology)) = (self.desired(), self.topology.as_ref()) else {
            return;
        };
        let input = Input {
            desired: &mut desired,
            topology,
            uplink: self.links.get(&self.uplink).copied(),
            malformed: self.store.malformed().count(),
        };
        if self.plane.apply(input).await {
            self.applied_once = true;
            self.last_sync = Some(SystemTime::now());
        }
    }

    /// Reconciles the kernel routes felix owns (also on a timer and when one is deleted).
    async fn reconcile_routes(&mut self) {
        let Some(desired) = self.desired() else {
            return;
        };
        let uplink = self.links.get(&self.uplink).copied();
        let wanted = kroutes::desired_routes(&desired, uplink, self.plane.remote_blocks());
        if let Err(error) = kroutes::reconcile(&self.netlink, &wanted).await {
            warn!(%error, "kernel route reconcile failed");
        }
    }

    /// Publishes the status the reporter writes to etcd.
    fn report(&self) {
        let mut endpoints = BTreeMap::new();
        if let Some(topology) = &self.topology {
            for workload in &topology.workloads {
                let iface = &workload.interface;
                let status = match self.links.get(iface) {
                    None => EndpointStatus::down(format!("interface {iface} missing")),
                    Some((index, _)) => self.plane.endpoint_status(*index, iface),
                };
                endpoints.insert(workload.id.clone(), status);
            }
            // A waiting endpoint with the same status id as a holder does not hide it.
            for conflict in &topology.conflicts {
                endpoints
                    .entry(conflict.loser.id.clone())
                    .or_insert_with(|| endpoint_conflicts::status(conflict));
            }
        }
        let report = Report {
            dataplane: self.mode,
            ready: self.applied_once && self.topology.is_some(),
            programs_loaded: self.plane.programs_loaded(),
            xdp: self.plane.xdp_state(),
            last_sync: self.last_sync,
            endpoints,
            endpoint_conflicts: self
                .topology
                .as_ref()
                .map_or(0, |t| t.conflicts.len() as u64),
            datastore: self.datastore_status(),
        };
        self.status.send_if_modified(|current| {
            // `last_sync` moves on every apply; a refresh every TTL/3 carries it anyway.
            let changed = current.ready != report.ready
                || current.programs_loaded != report.programs_loaded
                || current.xdp != report.xdp
                || current.endpoints != report.endpoints
                || current.endpoint_conflicts != report.endpoint_conflicts
                || current.last_sync.is_none() != report.last_sync.is_none()
                || current.datastore.differs_beyond_revision(&report.datastore);
            *current = report;
            changed
        });
    }

    /// The syncer's state and the cache's malformed counts, for the status report.
    fn datastore_status(&self) -> DatastoreStatus {
        let mut status = DatastoreStatus {
            sync: self.sync_status.borrow().clone(),
            ..DatastoreStatus::default()
        };
        for (kind, count) in self.store.malformed_counts() {
            if count.current > 0 {
                status.malformed.insert(kind.to_string(), count.current);
            }
            status.malformed_total.insert(kind.to_string(), count.total);
        }
        status
    }

    /// What felix does with interface `name`: the uplink, a workload's, or nothing.
    fn role(&self, name: &str) -> Option<IfaceRole> {
        if name == self.uplink {
            Some(IfaceRole::Uplink)
        } else if self
            .prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
        {
            Some(IfaceRole::Workload)
        } else {
            None
        }
    }

    fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Present { index, name, mtu } => {
                let known = self.links.get(&name).is_some_and(|(i, _)| *i == index);
                self.links.retain(|_, (i, _)| *i != index);
                self.links.insert(name.clone(), (index, mtu));
                let role = self.role(&name);
                if role == Some(IfaceRole::Workload)
                    && !known
                    && let Err(error) = ifsysctl::apply(&name)
                {
                    warn!(iface = %name, %error, "interface settings");
                }
                self.plane.link_present(index, &name, role);
            }
            LinkEvent::OwnRouteRemoved => {}
            LinkEvent::Gone { index, name } => {
                self.links.retain(|_, (i, _)| *i != index);
                self.plane.link_gone(index, &name);
            }
        }
    }
}

/// How long felix looks for the address that names its uplink before it gives up.
const UPLINK_DETECTION_ATTEMPTS: u32 = 30;

/// The uplink: FELIX_UPLINK when set, else the interface that holds the address
/// `ip_autodetection` finds (so one DaemonSet serves nodes whose NICs are named differently).
/// Retries for a while: at boot the address may come after felix.
async fn uplink(config: &AgentConfig) -> Result<String, AgentError> {
    if let Some(name) = &config.uplink {
        info!(uplink = %name, "uplink set by FELIX_UPLINK");
        return Ok(name.clone());
    }
    let mut attempt = 1;
    loop {
        match autodetect::detect_standalone(&config.ip_autodetection).await {
            Ok(found) => {
                info!(uplink = %found.iface, address = %found.net, "uplink: the interface of the autodetected address");
                return Ok(found.iface);
            }
            Err(error) if attempt < UPLINK_DETECTION_ATTEMPTS => {
                warn!(%error, attempt, "uplink: no autodetected address yet, retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                attempt += 1;
            }
            Err(error) => return Err(AgentError::Uplink(error)),
        }
    }
}

/// Detects this host's address and registers it in its Node resource, retrying until done.
/// Uses its own netlink socket: dumps on one socket cannot overlap (EBUSY).
async fn register_node(config: AgentConfig, names: HashMap<u32, String>) {
    let mut delay = Duration::from_millis(500);
    loop {
        let netlink = match rtnetlink::new_connection() {
            Ok((connection, handle, _)) => {
                tokio::spawn(connection);
                handle
            }
            Err(error) => {
                warn!(%error, "node registration: no rtnetlink socket");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let detected = autodetect::detect(&netlink, &config.ip_autodetection, |index| {
            names.get(&index).cloned()
        })
        .await;
        let result = match detected {
            Ok(address) => {
                let mut client = datastore::connect(&config.etcd_access()).await;
                node_register::register(
                    &mut client,
                    &config.node,
                    &address.net.to_string(),
                    config.as_number,
                )
                .await
                .map(|changed| (address, changed))
                .map_err(|e| e.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        match result {
            Ok((address, changed)) => {
                info!(address = %address.net, iface = %address.iface, changed, "node registered");
                return;
            }
            Err(error) => {
                warn!(%error, retry_in = ?delay, "node registration");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
