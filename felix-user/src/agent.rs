//! `felix run`: load the dataplane, attach it to every workload interface present and to come
//! and to the uplink, keep the endpoints/routes/config maps and the kernel routes in step with the
//! datastore and the host's links, register the Node, report status, and collect expired
//! conntrack entries.
//!
//! The datastore arrives through the syncer ([`datastore`]) into the parsed cache ([`Store`]);
//! after each batch that changes it, the forwarding view ([`Topology`]) is derived again and the
//! dataplane reconciled.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::programs::TcAttachType;
use felix_common::{HostConfig, IfaceInfo, IfaceRole, ifaces::attach_mode};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::{
    PROG_FROM_UPLINK, PROG_FROM_WORKLOAD, PROG_TO_UPLINK, PROG_TO_WORKLOAD,
    attach::{self, Attached, Holder, LinkId, attach_tc, attach_xdp},
    autodetect, ct_gc,
    datastore::{self, SyncStatus, Syncer, SyncerConfig, Update},
    desired, ifsysctl, kernel_log, kroutes,
    links::{self, LinkEvent},
    loader::{Dataplane, LoadError},
    node_register,
    pins::{NodePaths, PinError},
    policy::engine::PolicyEngine,
    status::{self, DatastoreStatus, EndpointStatus, Report},
    store::{Applied, Entry, Store},
    sync,
    telemetry::{self, Heartbeat},
    topology::Topology,
};

/// Settings of a running agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This host's Calico node name.
    pub node: String,
    /// etcd client URLs.
    pub etcd_endpoints: Vec<String>,
    /// Root of the pin trees.
    pub pin_root: PathBuf,
    /// Root of the run files.
    pub run_root: PathBuf,
    /// Name prefixes of workload interfaces.
    pub workload_prefixes: Vec<String>,
    /// The host's uplink to the fabric (IPIP goes in and out here).
    pub uplink: String,
    /// How often expired conntrack entries are removed.
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
}

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Pins(#[from] PinError),
    #[error(transparent)]
    Listen(#[from] crate::telemetry::ListenError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Links(#[from] links::LinksError),
    /// Another felix already serves this node.
    #[error("felix for node {node:?} is already running as pid {pid}")]
    AlreadyRunning { node: String, pid: u32 },
    /// The link watcher stopped.
    #[error("the rtnetlink link watcher stopped")]
    WatcherStopped,
    /// The rtnetlink socket for routes could not be opened.
    #[error("open an rtnetlink socket: {0}")]
    Netlink(#[source] std::io::Error),
}

/// The programs attached to one interface.
struct Attachment {
    name: String,
    role: IfaceRole,
    ingress: Option<Attached>,
    egress: Option<Attached>,
    xdp: Option<Attached>,
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let paths = NodePaths::new(&config.pin_root, &config.run_root, &config.node)?;
    paths.create()?;
    let pid = std::process::id();
    if let Some(other) = paths.running_pid().filter(|other| *other != pid) {
        return Err(AgentError::AlreadyRunning {
            node: config.node,
            pid: other,
        });
    }
    let mut dataplane = Dataplane::load(&paths)?;
    kernel_log::spawn_drain(dataplane.ebpf_mut());

    let (connection, netlink, _) = rtnetlink::new_connection().map_err(AgentError::Netlink)?;
    tokio::spawn(connection);
    let (syncer, updates, sync_status) =
        Syncer::new(SyncerConfig::new(config.etcd_endpoints.clone()));
    let mut agent = Agent {
        netlink,
        last_sync: None,
        status: watch::channel(Report::default()).0,
        warned_no_host_ip: false,
        dataplane,
        links_dir: paths.links_dir(),
        paths: paths.clone(),
        node: config.node.clone(),
        prefixes: config.workload_prefixes.clone(),
        uplink: config.uplink.clone(),
        links: HashMap::new(),
        attached: HashMap::new(),
        store: Store::new(),
        topology: None,
        sync_status: sync_status.clone(),
        applied_once: false,
        policy: PolicyEngine::new(&paths),
        heartbeat: Heartbeat::default(),
    };
    let telemetry = telemetry::serve(
        config.metrics_address,
        config.health_address,
        telemetry::Sources {
            paths: Arc::new(paths.clone()),
            report: agent.status.subscribe(),
            heartbeat: agent.heartbeat.clone(),
        },
    )
    .await?;
    // The interfaces map describes a previous felix's attachments. Empty it before this felix
    // claims the node, so that nobody reads them as this felix's: entries come back as this felix
    // attaches (adopting the pinned links).
    agent.clear_ifaces();
    paths.write_pid(pid)?;
    info!(node = %config.node, pin_dir = %paths.pin_dir().display(), "dataplane loaded");
    let result = agent
        .serve(&config, syncer, updates, sync_status, shutdown)
        .await;
    for task in telemetry {
        task.abort();
    }
    agent.release_all();
    paths.remove_pid(pid);
    info!(
        "felix stopped; its programs stay attached through the links and maps pinned at {}",
        paths.pin_dir().display()
    );
    result
}

struct Agent {
    dataplane: Dataplane,
    /// Where TCX/XDP links are pinned.
    links_dir: PathBuf,
    /// This node's pin tree and run files.
    paths: NodePaths,
    node: String,
    prefixes: Vec<String>,
    uplink: String,
    /// Every link of the host: name -> (ifindex, MTU).
    links: HashMap<String, (u32, u32)>,
    attached: HashMap<u32, Attachment>,
    /// The parsed datastore.
    store: Store,
    /// The forwarding view of `store`; `None` until the first listing.
    topology: Option<Topology>,
    /// The syncer's state, for the status report.
    sync_status: watch::Receiver<SyncStatus>,
    applied_once: bool,
    /// Policy: the calculation and what is programmed.
    policy: PolicyEngine,
    /// The loop's last turn, for `/liveness`.
    heartbeat: Heartbeat,
    /// rtnetlink for routes and addresses.
    netlink: rtnetlink::Handle,
    /// When the maps were last brought in line with the datastore.
    last_sync: Option<SystemTime>,
    /// The state reported to etcd.
    status: watch::Sender<Report>,
    /// Whether the last host-config write lacked the host's address (logged once).
    warned_no_host_ip: bool,
}

impl Agent {
    async fn serve(
        &mut self,
        config: &AgentConfig,
        syncer: Syncer,
        mut updates: mpsc::Receiver<Update>,
        mut sync_status: watch::Receiver<SyncStatus>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let (present, mut events) = links::watch().await?;
        let live: Vec<u32> = present
            .iter()
            .filter_map(|event| match event {
                LinkEvent::Present { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        self.prune_counters(|ifindex| !live.contains(&ifindex));
        let names: Vec<String> = present
            .iter()
            .map(|event| event.name().to_owned())
            .collect();
        self.prune_link_pins(&names);
        for event in present {
            self.on_event(event);
        }
        let adopted = self
            .attached
            .values()
            .flat_map(|a| [&a.ingress, &a.egress, &a.xdp])
            .flatten()
            .filter(|a| a.adopted)
            .count();
        info!(
            attached = self.attached.len(),
            adopted_links = adopted,
            "initial interfaces attached"
        );
        // Every attachment now runs this felix's programs: maps of older layouts are unused.
        for name in crate::pins::retire_superseded_maps(&self.paths, &felix_common::maps::PINNED) {
            info!(map = %name, "removed the pin of a map an earlier felix version used");
        }

        let tasks = [
            tokio::spawn(syncer.run()),
            tokio::spawn(status::run(
                config.etcd_endpoints.clone(),
                self.node.clone(),
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
        let mut gc = tokio::time::interval(config.ct_gc_interval);
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        let mut route_refresh = tokio::time::interval(config.route_refresh_interval);

        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                event = events.recv() => match event {
                    Some(LinkEvent::OwnRouteRemoved) => self.reconcile_routes().await,
                    Some(event) => {
                        self.on_event(event);
                        self.reconcile().await;
                    }
                    None => break Err(AgentError::WatcherStopped),
                },
                Some(update) = updates.recv() => self.on_update(update).await,
                Ok(()) = sync_status.changed() => self.report(),
                _ = route_refresh.tick() => self.reconcile_routes().await,
                _ = gc.tick() => {
                    ct_gc::collect(&mut self.dataplane);
                }
                _ = beat.tick() => self.heartbeat.beat(),
            }
        };
        for task in tasks {
            task.abort();
        }
        result
    }

    /// Applies a datastore update to the cache, hands its changes to the policy calculation
    /// and, when something changed, reconciles. (The syncer batches bursts of changes.)
    async fn on_update(&mut self, update: Update) {
        let applied = self.store.apply(update);
        self.feed_policy(&applied);
        if applied.changes.is_empty() && self.topology.is_some() {
            // Malformed counts may have moved.
            self.report();
            return;
        }
        self.topology = Some(Topology::from_store(&self.store, &self.node));
        self.reconcile().await;
    }

    /// Passes the changed resources to the policy calculation (it ignores kinds it does not use).
    fn feed_policy(&mut self, applied: &Applied) {
        for change in &applied.changes {
            match change.new.as_deref().and_then(Entry::as_resource) {
                Some(resource) => self.policy.upsert(&change.key, resource),
                None if change.old.as_deref().and_then(Entry::as_resource).is_some() => {
                    self.policy.remove(&change.key);
                }
                None => {}
            }
        }
    }

    /// What the datastore and the links ask of the dataplane.
    fn desired(&self) -> Option<desired::Desired> {
        let topology = self.topology.as_ref()?;
        let indexes: HashMap<String, u32> = self
            .links
            .iter()
            .map(|(name, (index, _))| (name.clone(), *index))
            .collect();
        Some(desired::compute(&self.node, topology, &indexes))
    }

    /// Brings the maps, the kernel routes and the reported status in line with the datastore
    /// and the links.
    async fn reconcile(&mut self) {
        let Some(mut desired) = self.desired() else {
            self.report();
            return;
        };
        self.program_policy(&mut desired);
        let malformed = self.store.malformed().count();
        match sync::apply(&mut self.dataplane, &desired) {
            Ok(applied) => {
                if applied.upserted + applied.removed > 0 || !self.applied_once {
                    info!(
                        endpoints = desired.endpoints.len(),
                        routes = desired.routes.len(),
                        upserted = applied.upserted,
                        removed = applied.removed,
                        malformed,
                        "dataplane maps updated"
                    );
                }
                self.applied_once = true;
                self.last_sync = Some(SystemTime::now());
            }
            Err(error) => error!(%error, "updating the dataplane maps failed"),
        }
        if let Err(error) = self.policy.finish(&mut self.dataplane) {
            error!(%error, "releasing unused policy failed");
        }
        let (uplink_ifindex, uplink_mtu) = self.links.get(&self.uplink).copied().unwrap_or((0, 0));
        let host = HostConfig {
            host_ip: desired.host_ip.map_or([0; 4], |ip| ip.octets()),
            uplink_ifindex,
            uplink_mtu,
            flags: 0,
        };
        if desired.host_ip.is_none() && !self.warned_no_host_ip {
            warn!(node = %self.node, "no IPv4 address for this node in the datastore yet: no IPIP until there is one");
        }
        self.warned_no_host_ip = desired.host_ip.is_none();
        if let Err(error) = sync::write_config(&mut self.dataplane, host) {
            error!(%error, "writing the host configuration failed");
        }
        self.reconcile_routes().await;
        self.report();
    }

    /// Programs the policy of the desired endpoints and points them at their slots. On
    /// failure the endpoints keep no slot, so they drop (fail closed).
    fn program_policy(&mut self, desired: &mut desired::Desired) {
        match self
            .policy
            .program(&mut self.dataplane, &desired.endpoint_keys)
        {
            Ok((slots, applied)) => {
                if applied.compiled + applied.failed > 0 {
                    info!(
                        compiled = applied.compiled,
                        unchanged = applied.unchanged,
                        failed = applied.failed,
                        "policy programmed"
                    );
                }
                for (ifindex, info) in desired.endpoints.iter_mut() {
                    if let Some(s) = slots.get(ifindex) {
                        info.policy_slots = *s;
                    }
                }
            }
            Err(error) => error!(%error, "programming policy failed"),
        }
    }

    /// Reconciles the kernel routes felix owns (also on a timer and when one is deleted).
    async fn reconcile_routes(&mut self) {
        let Some(desired) = self.desired() else {
            return;
        };
        let uplink = self.links.get(&self.uplink).copied();
        let wanted = kroutes::desired_routes(&desired, uplink);
        if let Err(error) = kroutes::reconcile(&self.netlink, &wanted).await {
            warn!(%error, "kernel route reconcile failed");
        }
    }

    /// Publishes the status the reporter writes to etcd.
    fn report(&self) {
        let mut endpoints = BTreeMap::new();
        if let Some(topology) = &self.topology {
            for workload in &topology.workloads {
                let id = workload.id.clone();
                let iface = &workload.interface;
                let status = match self.links.get(iface) {
                    None => EndpointStatus::down(format!("interface {iface} missing")),
                    Some((index, _)) => match self.attached.get(index) {
                        Some(a) if a.ingress.is_some() && a.egress.is_some() => {
                            EndpointStatus::up()
                        }
                        _ => EndpointStatus::error(format!(
                            "attaching the programs to {iface} failed"
                        )),
                    },
                };
                endpoints.insert(id, status);
            }
        }
        let programs_loaded = self
            .attached
            .values()
            .flat_map(|a| [&a.ingress, &a.egress, &a.xdp])
            .flatten()
            .count() as u32;
        let report = Report {
            ready: self.applied_once && self.topology.is_some(),
            programs_loaded,
            last_sync: self.last_sync,
            endpoints,
            datastore: self.datastore_status(),
        };
        self.status.send_if_modified(|current| {
            // `last_sync` moves on every apply; a refresh every TTL/3 carries it anyway.
            let changed = current.ready != report.ready
                || current.programs_loaded != report.programs_loaded
                || current.endpoints != report.endpoints
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

    fn is_workload(&self, name: &str) -> bool {
        self.prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
    }

    fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Present { index, name, mtu } => {
                self.links.retain(|_, (i, _)| *i != index);
                self.links.insert(name.clone(), (index, mtu));
                if self.attached.get(&index).is_some_and(|a| a.name == name) {
                    return;
                }
                if self.attached.contains_key(&index) {
                    // Renamed: start over under the new name.
                    self.detach(index);
                }
                if name == self.uplink {
                    self.attach_uplink(index, name);
                } else if self.is_workload(&name) {
                    self.attach_workload(index, name);
                }
            }
            LinkEvent::OwnRouteRemoved => {}
            LinkEvent::Gone { index, name } => {
                self.links.retain(|_, (i, _)| *i != index);
                if self.attached.contains_key(&index) {
                    info!(iface = %name, ifindex = index, "interface gone");
                    self.detach(index);
                    self.prune_counters(|ifindex| ifindex == index);
                }
                attach::remove_pins(&self.links_dir, &name);
            }
        }
    }

    fn attach_workload(&mut self, index: u32, name: String) {
        if let Err(error) = ifsysctl::apply(&name) {
            warn!(iface = %name, %error, "interface settings");
        }
        let attachment = Attachment {
            ingress: self.attach_tc(&name, PROG_FROM_WORKLOAD, TcAttachType::Ingress),
            egress: self.attach_tc(&name, PROG_TO_WORKLOAD, TcAttachType::Egress),
            xdp: None,
            name,
            role: IfaceRole::Workload,
        };
        self.record(index, attachment);
    }

    fn attach_uplink(&mut self, index: u32, name: String) {
        let links_dir = self.links_dir.clone();
        let xdp = match self.dataplane.xdp() {
            Ok(xdp) => match attach_xdp(xdp, &name, &links_dir) {
                Ok(attached) => Some(attached),
                Err(error) => {
                    error!(%error, "XDP attach failed");
                    None
                }
            },
            Err(error) => {
                error!(%error, "XDP program unavailable");
                None
            }
        };
        let attachment = Attachment {
            ingress: self.attach_tc(&name, PROG_FROM_UPLINK, TcAttachType::Ingress),
            egress: self.attach_tc(&name, PROG_TO_UPLINK, TcAttachType::Egress),
            xdp,
            name,
            role: IfaceRole::Uplink,
        };
        self.record(index, attachment);
    }

    /// Writes the interfaces-map entry and remembers the attachment.
    fn record(&mut self, index: u32, attachment: Attachment) {
        let mode = |a: &Option<Attached>| a.as_ref().map_or(attach_mode::NONE, |a| a.mode);
        let xdp_mode = mode(&attachment.xdp);
        let adopted = [&attachment.ingress, &attachment.egress, &attachment.xdp]
            .into_iter()
            .flatten()
            .any(|a| a.adopted);
        let info = IfaceInfo::new(
            &attachment.name,
            attachment.role,
            mode(&attachment.ingress),
            mode(&attachment.egress),
            xdp_mode,
        );
        if let Err(error) = self.dataplane.ifaces().and_then(|mut map| {
            map.insert(index, info, 0).map_err(|e| LoadError::Map {
                name: felix_common::maps::IFACES,
                reason: e.to_string(),
            })
        }) {
            warn!(iface = %attachment.name, %error, "recording the interface failed");
        }
        info!(
            iface = %attachment.name,
            ifindex = index,
            role = attachment.role.name(),
            ingress = attach_mode::name(mode(&attachment.ingress)),
            egress = attach_mode::name(mode(&attachment.egress)),
            xdp = attach_mode::name(xdp_mode),
            adopted,
            "attached"
        );
        self.attached.insert(index, attachment);
    }

    fn attach_tc(
        &mut self,
        iface: &str,
        program: &'static str,
        hook: TcAttachType,
    ) -> Option<Attached> {
        let links_dir = self.links_dir.clone();
        let classifier = match self.dataplane.classifier(program) {
            Ok(classifier) => classifier,
            Err(error) => {
                error!(%error, "program unavailable");
                return None;
            }
        };
        match attach_tc(classifier, iface, hook, &links_dir) {
            Ok(attached) => Some(attached),
            Err(error) => {
                error!(%error, "attach failed");
                None
            }
        }
    }

    /// Gives up the program's handle on a link (closing its fd; a netlink filter is removed).
    fn drop_handle(&mut self, program: &'static str, id: LinkId) {
        match id {
            LinkId::Tc(id) => {
                if let Ok(classifier) = self.dataplane.classifier(program) {
                    // Fails when the interface is already gone, taking its attachment with it.
                    let _ = classifier.detach(id);
                }
            }
            LinkId::Xdp(id) => {
                if let Ok(xdp) = self.dataplane.xdp() {
                    let _ = xdp.detach(id);
                }
            }
        }
    }

    /// Detaches everything on interface `index`: pins removed, handles dropped.
    fn detach(&mut self, index: u32) {
        let Some(attachment) = self.attached.remove(&index) else {
            return;
        };
        for (program, attached) in Self::programs_of(attachment) {
            match attached.holder {
                Holder::Pinned { pin, owned } => {
                    let _ = std::fs::remove_file(pin);
                    if let Some(id) = owned {
                        self.drop_handle(program, id);
                    }
                }
                Holder::Owned(id) => self.drop_handle(program, id),
            }
        }
        if let Ok(mut map) = self.dataplane.ifaces() {
            let _ = map.remove(&index);
        }
    }

    /// At exit: pinned links stay (the dataplane keeps running until the next felix adopts
    /// them); attachments only the program held (netlink filters) are removed.
    fn release_all(&mut self) {
        let attached: Vec<(u32, Attachment)> = self.attached.drain().collect();
        for (index, attachment) in attached {
            let mut all_pinned = true;
            for (program, attached) in Self::programs_of(attachment) {
                if let Holder::Owned(id) = attached.holder {
                    all_pinned = false;
                    self.drop_handle(program, id);
                }
            }
            if !all_pinned && let Ok(mut map) = self.dataplane.ifaces() {
                let _ = map.remove(&index);
            }
        }
    }

    /// The attached programs of an attachment, with their program names.
    fn programs_of(attachment: Attachment) -> Vec<(&'static str, Attached)> {
        let (ingress, egress) = match attachment.role {
            IfaceRole::Workload => (PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD),
            IfaceRole::Uplink => (PROG_FROM_UPLINK, PROG_TO_UPLINK),
        };
        [
            (ingress, attachment.ingress),
            (egress, attachment.egress),
            (crate::PROG_UPLINK_XDP, attachment.xdp),
        ]
        .into_iter()
        .filter_map(|(program, attached)| attached.map(|a| (program, a)))
        .collect()
    }

    /// Removes link pins of interfaces that no longer exist (their links are defunct).
    fn prune_link_pins(&self, present: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.links_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let iface = attach::pin_iface(&file).unwrap_or(file.as_str());
            if !present.iter().any(|name| name == iface) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn clear_ifaces(&mut self) {
        if let Ok(mut map) = self.dataplane.ifaces() {
            let keys: Vec<u32> = map.keys().flatten().collect();
            for key in keys {
                let _ = map.remove(&key);
            }
        }
    }

    /// Removes counters of interfaces for which `stale` holds (gone, their ifindex reusable).
    fn prune_counters(&mut self, stale: impl Fn(u32) -> bool) {
        let Ok(mut map) = self.dataplane.counters() else {
            return;
        };
        let keys: Vec<_> = map
            .keys()
            .flatten()
            .filter(|key| stale(key.ifindex))
            .collect();
        for key in keys {
            let _ = map.remove(&key);
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
                let mut client = datastore::connect(&config.etcd_endpoints).await;
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
