//! `felix run`: load the dataplane, attach it to every workload interface present and to come,
//! detach when one goes, and keep the pinned interfaces map true.

use std::{collections::HashMap, future::Future, path::PathBuf};

use aya::programs::TcAttachType;
use felix_common::{IfaceInfo, IfaceRole, ifaces::attach_mode};
use tracing::{error, info, warn};

use crate::{
    PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD,
    attach::{Attached, attach},
    datastore, kernel_log,
    links::{self, LinkEvent},
    loader::{Dataplane, LoadError},
    pins::{NodePaths, PinError},
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
}

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Pins(#[from] PinError),
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
}

/// The programs attached to one interface.
struct Attachment {
    name: String,
    ingress: Option<Attached>,
    egress: Option<Attached>,
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
    paths.write_pid(pid)?;
    info!(node = %config.node, pin_dir = %paths.pin_dir().display(), "dataplane loaded");

    let mut agent = Agent {
        dataplane,
        prefixes: config.workload_prefixes,
        attached: HashMap::new(),
    };
    let result = agent
        .serve(&config.etcd_endpoints, &config.node, shutdown)
        .await;
    agent.detach_all();
    paths.remove_pid(pid);
    info!(
        "felix stopped; maps stay pinned at {}",
        paths.pin_dir().display()
    );
    result
}

struct Agent {
    dataplane: Dataplane,
    prefixes: Vec<String>,
    attached: HashMap<u32, Attachment>,
}

impl Agent {
    async fn serve(
        &mut self,
        etcd_endpoints: &[String],
        node: &str,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let (present, mut events) = links::watch().await?;
        // Entries left by a previous run describe attachments that died with it.
        self.clear_ifaces();
        let live: Vec<u32> = present
            .iter()
            .filter_map(|event| match event {
                LinkEvent::Present { index, .. } => Some(*index),
                LinkEvent::Gone { .. } => None,
            })
            .collect();
        self.prune_counters(|ifindex| !live.contains(&ifindex));
        for event in present {
            self.on_event(event);
        }
        info!(
            attached = self.attached.len(),
            "initial interfaces attached"
        );
        datastore::spawn_report(etcd_endpoints.to_vec(), node.to_owned());

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => return Err(AgentError::WatcherStopped),
                },
            }
        }
    }

    fn is_workload(&self, name: &str) -> bool {
        self.prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
    }

    fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Present { index, name } => {
                let same = self.attached.get(&index).is_some_and(|a| a.name == name);
                if same {
                    return;
                }
                if self.attached.contains_key(&index) {
                    // Renamed: start over under the new name.
                    self.detach(index);
                }
                if self.is_workload(&name) {
                    self.attach(index, name);
                }
            }
            LinkEvent::Gone { index, name } => {
                if self.attached.contains_key(&index) {
                    info!(iface = %name, ifindex = index, "workload interface gone");
                    self.detach(index);
                    self.prune_counters(|ifindex| ifindex == index);
                }
            }
        }
    }

    fn attach(&mut self, index: u32, name: String) {
        let ingress = self.attach_one(&name, PROG_FROM_WORKLOAD, TcAttachType::Ingress);
        let egress = self.attach_one(&name, PROG_TO_WORKLOAD, TcAttachType::Egress);
        let mode = |a: &Option<Attached>| a.as_ref().map_or(attach_mode::NONE, |a| a.mode);
        let info = IfaceInfo::new(&name, IfaceRole::Workload, mode(&ingress), mode(&egress));
        if let Err(error) = self.dataplane.ifaces().and_then(|mut map| {
            map.insert(index, info, 0).map_err(|e| LoadError::Map {
                name: felix_common::maps::IFACES,
                reason: e.to_string(),
            })
        }) {
            warn!(iface = %name, %error, "recording the interface failed");
        }
        info!(
            iface = %name,
            ifindex = index,
            ingress = attach_mode::name(mode(&ingress)),
            egress = attach_mode::name(mode(&egress)),
            "attached workload interface"
        );
        self.attached.insert(
            index,
            Attachment {
                name,
                ingress,
                egress,
            },
        );
    }

    fn attach_one(
        &mut self,
        iface: &str,
        program: &'static str,
        hook: TcAttachType,
    ) -> Option<Attached> {
        let classifier = match self.dataplane.classifier(program) {
            Ok(classifier) => classifier,
            Err(error) => {
                error!(%error, "program unavailable");
                return None;
            }
        };
        match attach(classifier, iface, hook) {
            Ok(attached) => Some(attached),
            Err(error) => {
                error!(%error, "attach failed");
                None
            }
        }
    }

    fn detach(&mut self, index: u32) {
        let Some(attachment) = self.attached.remove(&index) else {
            return;
        };
        for (program, attached) in [
            (PROG_FROM_WORKLOAD, attachment.ingress),
            (PROG_TO_WORKLOAD, attachment.egress),
        ] {
            let Some(attached) = attached else { continue };
            if let Ok(classifier) = self.dataplane.classifier(program) {
                // Fails when the interface is already gone, taking its attachment with it.
                let _ = classifier.detach(attached.link);
            }
        }
        if let Ok(mut map) = self.dataplane.ifaces() {
            let _ = map.remove(&index);
        }
    }

    fn detach_all(&mut self) {
        let indexes: Vec<u32> = self.attached.keys().copied().collect();
        for index in indexes {
            self.detach(index);
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
