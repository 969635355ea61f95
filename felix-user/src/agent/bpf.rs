//! BPF mode: load the dataplane (adopting pinned maps), attach the programs to every workload
//! interface present and to come and to the uplink (adopting pinned links), keep the endpoints,
//! routes, config and policy maps in step, and collect expired conntrack entries.

use std::{collections::HashMap, path::PathBuf};

use aya::programs::TcAttachType;
use calico::model::Resource;
use felix_common::{HostConfig, IfaceInfo, IfaceRole, ifaces::attach_mode};
use tracing::{debug, error, info, warn};

use super::{AgentConfig, AgentError, Input, Plane};
use crate::{
    EBPF_OBJECT, PROG_FROM_UPLINK, PROG_FROM_WORKLOAD, PROG_TO_UPLINK, PROG_TO_WORKLOAD,
    calc::desired,
    dataplane::attach::{self, Attached, Holder, LinkId, attach_tc, attach_xdp},
    dataplane::ct_cleaner::{self, CleanError, CleanerPolicy},
    dataplane::failsafe::FailsafePorts,
    dataplane::kernel_log,
    dataplane::loader::{Dataplane, LoadError},
    dataplane::maps::conntrack,
    dataplane::maps::counter_cache,
    dataplane::pins::NodePaths,
    dataplane::policy::engine::PolicyEngine,
    dataplane::reconcile,
    dataplane::xdp::{self, XdpAction, XdpState},
    host::kroutes,
    host::links::LinkEvent,
    iptables,
    report::status::EndpointStatus,
};

/// The programs attached to one interface.
struct Attachment {
    name: String,
    role: IfaceRole,
    ingress: Option<Attached>,
    egress: Option<Attached>,
    xdp: Option<Attached>,
}

/// The BPF dataplane of one node.
pub(super) struct BpfPlane {
    dataplane: Dataplane,
    /// Where TCX/XDP links are pinned.
    links_dir: PathBuf,
    /// This node's pin tree and run files.
    paths: NodePaths,
    attached: HashMap<u32, Attachment>,
    /// Policy: the calculation and what is programmed.
    policy: PolicyEngine,
    /// Whether the maps were written once (the first write is always logged).
    written_once: bool,
    /// Whether the last host-config write lacked the host's address (logged once).
    warned_no_host_ip: bool,
    /// Whether felix's iptables mode rules were looked for (once this mode enforces policy).
    iptables_cleaned: bool,
    /// Warns when conntrack is near full.
    ct_fill: conntrack::NearFullWatch,
    /// The conntrack cleaner's share limit and pressure threshold.
    ct_cleaner: CleanerPolicy,
    /// Whether the fallback to user-space collection was logged.
    warned_ct_cleaner: bool,
    /// XDPEnabled: the uplink's prefilter may be attached (while the deny list has entries).
    xdp_enabled: bool,
    /// The uplink's XDP state, for the status.
    xdp_state: XdpState,
    /// Whether a failure to read the deny list was logged (once, until it reads again).
    warned_deny_unreadable: bool,
    /// Whether a failure to attach XDP was logged (once, until an attach works).
    warned_xdp_attach: bool,
    /// Whether "deny list entries but XDPEnabled is false" was logged (once while it lasts).
    warned_xdp_disabled: bool,
}

impl BpfPlane {
    /// Loads the dataplane into `paths`' pin tree (adopting what is pinned).
    pub(super) fn start(paths: &NodePaths, config: &AgentConfig) -> Result<Self, AgentError> {
        paths.create()?;
        let mut dataplane = Dataplane::load_sized(EBPF_OBJECT, paths, &config.map_sizes)?;
        let (inbound, outbound) = &config.failsafe;
        crate::dataplane::failsafe::program_dataplane(&mut dataplane, inbound, outbound)?;
        info!(inbound = %FailsafePorts(inbound.clone()), outbound = %FailsafePorts(outbound.clone()), "failsafe ports programmed");
        kernel_log::spawn_drain(dataplane.ebpf_mut());
        let mut plane = BpfPlane {
            dataplane,
            links_dir: paths.links_dir(),
            paths: paths.clone(),
            attached: HashMap::new(),
            policy: PolicyEngine::new(paths),
            written_once: false,
            warned_no_host_ip: false,
            iptables_cleaned: false,
            ct_fill: conntrack::NearFullWatch::new(config.conntrack_near_full_percent),
            ct_cleaner: CleanerPolicy {
                endpoint_share_percent: config.conntrack_endpoint_share_percent,
                pressure_percent: config.conntrack_near_full_percent,
            },
            warned_ct_cleaner: false,
            xdp_enabled: config.xdp_enabled,
            xdp_state: XdpState::Unknown,
            warned_deny_unreadable: false,
            warned_xdp_attach: false,
            warned_xdp_disabled: false,
        };
        // The interfaces map describes a previous felix's attachments. Empty it before this
        // felix claims the node, so that nobody reads them as this felix's: entries come back
        // as this felix attaches (adopting the pinned links).
        plane.clear_ifaces();
        Ok(plane)
    }
}

/// Removes felix's chains and ipsets of both iptables backends (a switch from iptables mode;
/// cheap when there are none, skipped where the tools are missing).
async fn clean_iptables() {
    match tokio::task::spawn_blocking(iptables::cleanup_all).await {
        Ok(Ok(cleaned)) => {
            if cleaned.chains + cleaned.jumps + cleaned.sets > 0 {
                info!(
                    chains = cleaned.chains,
                    jumps = cleaned.jumps,
                    sets = cleaned.sets,
                    "removed felix's iptables mode rules"
                );
            }
        }
        Ok(Err(error)) => warn!(%error, "removing felix's iptables mode rules failed"),
        Err(error) => warn!(%error, "removing felix's iptables mode rules failed"),
    }
}

impl Plane for BpfPlane {
    fn started(&mut self, present: &[LinkEvent]) {
        let live: Vec<u32> = present
            .iter()
            .filter_map(|event| match event {
                LinkEvent::Present { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        self.prune_counters(|ifindex| !live.contains(&ifindex));
        let names: Vec<&str> = present.iter().map(LinkEvent::name).collect();
        self.prune_link_pins(&names);
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
        // Every attachment now runs this felix's programs: maps replaced by ones of another
        // size get what the previous programs wrote meanwhile, then go.
        self.dataplane.finish_resize();
        // Every attachment now runs this felix's programs: maps of older layouts are unused.
        for name in
            crate::dataplane::pins::retire_superseded_maps(&self.paths, &felix_common::maps::PINNED)
        {
            info!(map = %name, "removed the pin of a map an earlier felix version used");
        }
    }

    fn link_present(&mut self, index: u32, name: &str, role: Option<IfaceRole>) {
        if self.attached.get(&index).is_some_and(|a| a.name == name) {
            return;
        }
        if self.attached.contains_key(&index) {
            // Renamed: start over under the new name.
            self.detach(index);
        }
        match role {
            Some(IfaceRole::Uplink) => self.attach_uplink(index, name.to_owned()),
            Some(IfaceRole::Workload) => self.attach_workload(index, name.to_owned()),
            None => {}
        }
    }

    fn link_gone(&mut self, index: u32, name: &str) {
        if self.attached.contains_key(&index) {
            info!(iface = %name, ifindex = index, "interface gone");
            self.detach(index);
            self.prune_counters(|ifindex| ifindex == index);
        }
        attach::remove_pins(&self.links_dir, name);
    }

    fn upsert(&mut self, key: &str, resource: &Resource) {
        self.policy.upsert(key, resource);
    }

    fn remove(&mut self, key: &str) {
        self.policy.remove(key);
    }

    /// Programs the policy, then the endpoints and routes maps, then the host configuration.
    /// Once that worked, the rules of a felix in iptables mode before this one are removed (until
    /// then they go on policing what the programs pass to the host stack).
    async fn apply(&mut self, input: Input<'_>) -> bool {
        let desired = input.desired;
        self.program_policy(desired);
        let written = match reconcile::apply(&mut self.dataplane, desired) {
            Ok(applied) => {
                if applied.upserted + applied.removed > 0 || !self.written_once {
                    info!(
                        endpoints = desired.endpoints.len(),
                        routes = desired.routes.len(),
                        upserted = applied.upserted,
                        removed = applied.removed,
                        malformed = input.malformed,
                        "dataplane maps updated"
                    );
                }
                self.written_once = true;
                true
            }
            Err(error) => {
                error!(%error, "updating the dataplane maps failed");
                false
            }
        };
        if let Err(error) = self.policy.finish(&mut self.dataplane) {
            error!(%error, "releasing unused policy failed");
        }
        let (uplink_ifindex, uplink_mtu) = input.uplink.unwrap_or((0, 0));
        let host = HostConfig {
            host_ip: desired.host_ip.map_or([0; 4], |ip| ip.octets()),
            uplink_ifindex,
            uplink_mtu,
            flags: 0,
        };
        if desired.host_ip.is_none() && !self.warned_no_host_ip {
            warn!("no IPv4 address for this node in the datastore yet: no IPIP until there is one");
        }
        self.warned_no_host_ip = desired.host_ip.is_none();
        if let Err(error) = reconcile::write_config(&mut self.dataplane, host) {
            error!(%error, "writing the host configuration failed");
        }
        if written && !self.iptables_cleaned {
            clean_iptables().await;
            self.iptables_cleaned = true;
        }
        written
    }

    fn remote_blocks(&self) -> kroutes::RemoteBlocks {
        kroutes::RemoteBlocks::Ipip
    }

    fn endpoint_status(&self, index: u32, iface: &str) -> EndpointStatus {
        match self.attached.get(&index) {
            Some(a) if a.ingress.is_some() && a.egress.is_some() => EndpointStatus::up(),
            _ => EndpointStatus::error(format!("attaching the programs to {iface} failed")),
        }
    }

    fn programs_loaded(&self) -> u32 {
        self.attached
            .values()
            .flat_map(|a| [&a.ingress, &a.egress, &a.xdp])
            .flatten()
            .count() as u32
    }

    fn housekeeping(&mut self) {
        let capacity = match self.dataplane.map(felix_common::maps::CONNTRACK) {
            Ok(map) => conntrack::capacity(map),
            Err(error) => {
                warn!(%error, "conntrack cleaning skipped");
                return;
            }
        };
        match ct_cleaner::clean(&mut self.dataplane, &self.ct_cleaner, capacity) {
            Ok(stats) => {
                self.ct_fill
                    .observe(stats.live, u64::from(capacity), std::time::Instant::now());
            }
            Err(CleanError::Unavailable(reason)) => {
                if !self.warned_ct_cleaner {
                    warn!(%reason, "conntrack cleaner skipped: collecting in user space");
                    self.warned_ct_cleaner = true;
                }
                if let Ok(mut map) = self.dataplane.conntrack() {
                    conntrack::collect(&mut map);
                    self.ct_fill.check(&map);
                }
            }
            Err(error) => warn!(%error, "conntrack cleaning failed"),
        }
    }

    /// Attaches the uplink's XDP prefilter when the deny list gained its first entry, detaches
    /// it when the list became empty (or XDP is disabled).
    fn check_xdp(&mut self) -> bool {
        let Some((index, name, attached)) = self
            .attached
            .iter()
            .find(|(_, a)| a.role == IfaceRole::Uplink)
            .map(|(index, a)| (*index, a.name.clone(), a.xdp.is_some()))
        else {
            return self.set_xdp_state(XdpState::Unknown);
        };
        let entries = self.deny_list_has_entries();
        match xdp::decide(self.xdp_enabled, entries, attached) {
            XdpAction::Attach => {
                if let Some(xdp) = self.attach_uplink_xdp(&name) {
                    info!(iface = %name, mode = attach_mode::name(xdp.mode), "XDP prefilter attached: the deny list has entries");
                    if let Some(attachment) = self.attached.get_mut(&index) {
                        attachment.xdp = Some(xdp);
                    }
                    self.write_iface(index);
                }
            }
            XdpAction::Detach => {
                if let Some(xdp) = self.attached.get_mut(&index).and_then(|a| a.xdp.take()) {
                    self.release(crate::PROG_UPLINK_XDP, xdp);
                    self.write_iface(index);
                    let why = if self.xdp_enabled {
                        "the deny list is empty"
                    } else {
                        "XDPEnabled is false"
                    };
                    info!(iface = %name, "XDP prefilter detached: {why}");
                }
            }
            XdpAction::Keep => {}
        }
        let state = self.uplink_xdp_state(index, entries);
        self.set_xdp_state(state)
    }

    fn xdp_state(&self) -> Option<&'static str> {
        Some(self.xdp_state.name())
    }

    /// Pinned links stay (the dataplane keeps running until the next felix adopts them);
    /// attachments only the program held (netlink filters) are removed.
    fn stop(&mut self) {
        let attached: Vec<(u32, Attachment)> = self.attached.drain().collect();
        for (index, attachment) in attached {
            let mut all_pinned = true;
            for (program, attached) in programs_of(attachment) {
                if let Holder::Owned(id) = attached.holder {
                    all_pinned = false;
                    self.drop_handle(program, id);
                }
            }
            if !all_pinned && let Ok(mut map) = self.dataplane.ifaces() {
                let _ = map.remove(&index);
            }
        }
        info!(
            "felix stopped; its programs stay attached through the links and maps pinned at {}",
            self.paths.pin_dir().display()
        );
    }
}

impl BpfPlane {
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

    fn attach_workload(&mut self, index: u32, name: String) {
        let attachment = Attachment {
            ingress: self.attach_tc(&name, PROG_FROM_WORKLOAD, TcAttachType::Ingress),
            egress: self.attach_tc(&name, PROG_TO_WORKLOAD, TcAttachType::Egress),
            xdp: None,
            name,
            role: IfaceRole::Workload,
        };
        self.record(index, attachment);
    }

    /// Attaches the TC programs to the uplink and, while the deny list has entries, the XDP
    /// prefilter (adopting a pinned link); a pinned XDP link that is not wanted is removed.
    fn attach_uplink(&mut self, index: u32, name: String) {
        let pin = attach::link_pin(&self.links_dir, &name, attach::XDP_HOOK);
        let pinned = pin.exists();
        let entries = self.deny_list_has_entries();
        let xdp = match xdp::decide(self.xdp_enabled, entries, pinned) {
            XdpAction::Attach => self.attach_uplink_xdp(&name),
            // Adopt the link an earlier felix pinned (the list could not be read, or it has
            // entries).
            XdpAction::Keep if pinned => self.attach_uplink_xdp(&name),
            XdpAction::Keep => None,
            XdpAction::Detach => {
                match std::fs::remove_file(&pin) {
                    Ok(()) => {
                        info!(iface = %name, "removed the uplink's pinned XDP link: no deny list entry, or XDPEnabled is false")
                    }
                    Err(error) => {
                        warn!(iface = %name, %error, "removing the uplink's pinned XDP link failed")
                    }
                }
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
        let state = self.uplink_xdp_state(index, entries);
        self.set_xdp_state(state);
    }

    /// Attaches (or adopts) the XDP prefilter on the uplink `name`; a failure is logged (once
    /// until an attach works again: the periodic check retries).
    fn attach_uplink_xdp(&mut self, name: &str) -> Option<Attached> {
        let links_dir = self.links_dir.clone();
        let result = self
            .dataplane
            .xdp()
            .map_err(|error| error.to_string())
            .and_then(|xdp| attach_xdp(xdp, name, &links_dir).map_err(|error| error.to_string()));
        match result {
            Ok(attached) => {
                self.warned_xdp_attach = false;
                Some(attached)
            }
            Err(error) => {
                if self.warned_xdp_attach {
                    debug!(iface = %name, %error, "XDP attach failed again");
                } else {
                    error!(iface = %name, %error, "XDP attach failed: the deny list is not enforced; retrying every second");
                    self.warned_xdp_attach = true;
                }
                None
            }
        }
    }

    /// Whether the deny list has an entry; `None` (logged once) when it cannot be read.
    fn deny_list_has_entries(&mut self) -> Option<bool> {
        let result = self
            .dataplane
            .xdp_deny()
            .and_then(|map| match map.keys().next() {
                None => Ok(false),
                Some(Ok(_)) => Ok(true),
                Some(Err(e)) => Err(LoadError::Map {
                    name: felix_common::maps::XDP_DENY,
                    reason: e.to_string(),
                }),
            });
        match result {
            Ok(entries) => {
                self.warned_deny_unreadable = false;
                Some(entries)
            }
            Err(error) => {
                if !self.warned_deny_unreadable {
                    error!(%error, "reading the XDP deny list failed: the uplink's XDP stays as it is");
                    self.warned_deny_unreadable = true;
                }
                None
            }
        }
    }

    /// The uplink's XDP state after a check (warns once when XDPEnabled is false while the deny
    /// list has entries: they are not enforced).
    fn uplink_xdp_state(&mut self, index: u32, entries: Option<bool>) -> XdpState {
        let attached = self.attached.get(&index).is_some_and(|a| a.xdp.is_some());
        let disabled_with_entries = !self.xdp_enabled && entries == Some(true);
        if disabled_with_entries && !self.warned_xdp_disabled {
            warn!("XDPEnabled is false: the XDP deny list has entries that are not enforced");
        }
        self.warned_xdp_disabled = disabled_with_entries;
        match (attached, self.xdp_enabled, entries) {
            (true, _, _) => XdpState::Attached,
            (false, false, _) => XdpState::Disabled,
            (false, true, Some(true)) => XdpState::Failed,
            (false, true, Some(false)) => XdpState::Idle,
            (false, true, None) => XdpState::Unknown,
        }
    }

    /// Records `state`; whether it changed.
    fn set_xdp_state(&mut self, state: XdpState) -> bool {
        let changed = state != self.xdp_state;
        self.xdp_state = state;
        changed
    }

    /// Writes the interfaces-map entry and remembers the attachment.
    fn record(&mut self, index: u32, attachment: Attachment) {
        let mode = |a: &Option<Attached>| a.as_ref().map_or(attach_mode::NONE, |a| a.mode);
        let adopted = [&attachment.ingress, &attachment.egress, &attachment.xdp]
            .into_iter()
            .flatten()
            .any(|a| a.adopted);
        // Its ordinary verdicts are counted at an array index from here on.
        if let Err(error) = self.dataplane.counter_cache().and_then(|mut map| {
            counter_cache::claim(&mut map, index, counter_cache::directions(attachment.role))
                .map_err(|e| LoadError::Map {
                    name: felix_common::maps::COUNTER_CACHE,
                    reason: e.to_string(),
                })
        }) {
            warn!(iface = %attachment.name, %error, "claiming counter cache lines failed");
        }
        info!(
            iface = %attachment.name,
            ifindex = index,
            role = attachment.role.name(),
            ingress = attach_mode::name(mode(&attachment.ingress)),
            egress = attach_mode::name(mode(&attachment.egress)),
            xdp = attach_mode::name(mode(&attachment.xdp)),
            adopted,
            "attached"
        );
        self.attached.insert(index, attachment);
        self.write_iface(index);
    }

    /// Writes the interfaces-map entry of attachment `index` (what is attached, and how).
    fn write_iface(&mut self, index: u32) {
        let Some(attachment) = self.attached.get(&index) else {
            return;
        };
        let mode = |a: &Option<Attached>| a.as_ref().map_or(attach_mode::NONE, |a| a.mode);
        let info = IfaceInfo::new(
            &attachment.name,
            attachment.role,
            mode(&attachment.ingress),
            mode(&attachment.egress),
            mode(&attachment.xdp),
        );
        let name = attachment.name.clone();
        if let Err(error) = self.dataplane.ifaces().and_then(|mut map| {
            map.insert(index, info, 0).map_err(|e| LoadError::Map {
                name: felix_common::maps::IFACES,
                reason: e.to_string(),
            })
        }) {
            warn!(iface = %name, %error, "recording the interface failed");
        }
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

    /// Detaches one program: its pin removed, its handle dropped.
    fn release(&mut self, program: &'static str, attached: Attached) {
        match attached.holder {
            Holder::Pinned { pin, owned } => {
                if let Err(error) = std::fs::remove_file(&pin)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(pin = %pin.display(), %error, "removing a link pin failed: the program stays attached");
                }
                if let Some(id) = owned {
                    self.drop_handle(program, id);
                }
            }
            Holder::Owned(id) => self.drop_handle(program, id),
        }
    }

    /// Detaches everything on interface `index`: pins removed, handles dropped.
    fn detach(&mut self, index: u32) {
        let Some(attachment) = self.attached.remove(&index) else {
            return;
        };
        for (program, attached) in programs_of(attachment) {
            self.release(program, attached);
        }
        if let Ok(mut map) = self.dataplane.ifaces() {
            let _ = map.remove(&index);
        }
    }

    /// Removes link pins of interfaces that no longer exist (their links are defunct).
    fn prune_link_pins(&self, present: &[&str]) {
        let Ok(entries) = std::fs::read_dir(&self.links_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let iface = attach::pin_iface(&file).unwrap_or(file.as_str());
            if !present.contains(&iface) {
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

    /// Removes counters of interfaces for which `stale` holds (gone, their ifindex reusable),
    /// in the counters map and the counter cache.
    fn prune_counters(&mut self, stale: impl Fn(u32) -> bool) {
        if let Ok(mut cache) = self.dataplane.counter_cache()
            && let Err(error) = counter_cache::free_stale(&mut cache, &stale)
        {
            warn!(%error, "freeing counter cache lines failed");
        }
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
