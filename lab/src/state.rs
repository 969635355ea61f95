//! The per-lab state file `/run/felix-lab/<id>/state.json`: what a lab made, so that any later
//! run can tear it down.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::names;
use crate::paths;
use crate::proc::{Owner, ProcRecord};

/// A pod of the lab.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodInfo {
    pub host: u8,
    /// Ordinal in the host (1-based).
    pub index: u8,
    /// The pod name, which is also its network namespace.
    pub name: String,
    pub ns: String,
    /// Assigned by `felix ipam assign` while the lab is built (unspecified in a plan).
    pub ip: Ipv4Addr,
    /// Host-side veth name (`cali...`).
    pub cali: String,
    /// MAC of the pod's `eth0`, once created.
    pub mac: Option<String>,
}

/// A host of the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub n: u8,
    /// The node name, which is also its network namespace.
    pub node: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// The IPAM block claimed by `felix ipam claim` while the lab is built (empty in a plan).
    pub block: String,
    pub felix_log: PathBuf,
    pub pods: Vec<PodInfo>,
}

/// Everything one lab made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub id: String,
    /// The process whose lifetime the lab is tied to (demo, tests); `None` for `lab up`.
    pub owner: Option<Owner>,
    pub state_dir: PathBuf,
    pub namespaces: Vec<String>,
    pub fabric_ns: String,
    pub etcd_url: String,
    pub etcd_data_dir: PathBuf,
    pub etcd_log: PathBuf,
    pub hosts: Vec<HostState>,
    pub processes: Vec<ProcRecord>,
    pub pin_dirs: Vec<PathBuf>,
    /// felix's run folders (`/run/felix/<node>`, pid files).
    #[serde(default)]
    pub run_dirs: Vec<PathBuf>,
    /// The pool's `ipipMode`, as seeded or last set ([`crate::Lab::set_pool_ipip_mode`]).
    #[serde(default)]
    pub pool_ipip_mode: crate::ipip::IpipMode,
    /// The pool's `natOutgoing`, as seeded (`false`) or last set
    /// ([`crate::Lab::set_pool_nat_outgoing`]).
    #[serde(default)]
    pub pool_nat_outgoing: bool,
    /// The MTU of the fabric: every host uplink, the bridge and the ToR.
    #[serde(default = "default_fabric_mtu")]
    pub fabric_mtu: u32,
}

fn default_fabric_mtu() -> u32 {
    names::DEFAULT_FABRIC_MTU
}

impl LabState {
    /// The MTU of felix's routes to remote blocks with IPIP: the uplink's less the outer header.
    pub fn tunnel_mtu(&self) -> u32 {
        self.fabric_mtu - names::IPIP_OVERHEAD
    }

    /// The pods' MTU as Calico's detection picks it: the uplink's, less the IPIP header unless
    /// the pool never encapsulates.
    pub fn pod_mtu(&self) -> u32 {
        if self.pool_ipip_mode == crate::ipip::IpipMode::Never {
            self.fabric_mtu
        } else {
            self.tunnel_mtu()
        }
    }

    /// The planned lab `id` (nothing created yet; pod addresses and blocks come later, from
    /// `felix ipam`).
    pub fn plan(id: &str, owner: Option<Owner>) -> Self {
        let state_dir = paths::state_dir(id);
        let hosts = names::HOSTS
            .iter()
            .map(|&n| {
                let node = names::host_ns(id, n);
                let pods = (1..=names::PODS_PER_HOST)
                    .map(|index| {
                        let name = names::pod_ns(id, n, index);
                        PodInfo {
                            host: n,
                            index,
                            cali: names::cali_name(names::POD_NAMESPACE, &name),
                            ns: name.clone(),
                            name,
                            ip: Ipv4Addr::UNSPECIFIED,
                            mac: None,
                        }
                    })
                    .collect();
                HostState {
                    n,
                    ns: node.clone(),
                    felix_log: state_dir.join(format!("felix-h{n}.log")),
                    node,
                    ip: names::host_ip(n),
                    block: String::new(),
                    pods,
                }
            })
            .collect::<Vec<_>>();
        Self {
            id: id.to_owned(),
            owner,
            namespaces: names::all_namespaces(id),
            fabric_ns: names::fabric_ns(id),
            etcd_url: names::etcd_url(),
            etcd_data_dir: state_dir.join("etcd"),
            etcd_log: state_dir.join("etcd.log"),
            pin_dirs: hosts.iter().map(|h| paths::pin_dir(&h.node)).collect(),
            run_dirs: hosts
                .iter()
                .map(|h| paths::felix_run_dir(&h.node))
                .collect(),
            hosts,
            processes: Vec::new(),
            state_dir,
            pool_ipip_mode: crate::ipip::IpipMode::default(),
            pool_nat_outgoing: false,
            fabric_mtu: names::DEFAULT_FABRIC_MTU,
        }
    }

    pub fn file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// Writes the state file atomically (temp file + rename), creating the state folder.
    pub fn save(&self) -> Result<()> {
        fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("creating {}", self.state_dir.display()))?;
        let tmp = self.state_dir.join("state.json.tmp");
        let json = serde_json::to_string_pretty(self).context("serialising lab state")?;
        fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, self.file()).with_context(|| format!("writing {}", self.file().display()))
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let file = dir.join("state.json");
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    }

    pub fn host(&self, n: u8) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.n == n)
    }

    pub fn pods(&self) -> impl Iterator<Item = &PodInfo> {
        self.hosts.iter().flat_map(|h| h.pods.iter())
    }
}

/// Lab ids that have a folder under [`paths::STATE_ROOT`], with their state if readable.
pub fn list() -> Vec<(String, Result<LabState>)> {
    let Ok(entries) = fs::read_dir(paths::STATE_ROOT) else {
        return Vec::new();
    };
    let mut labs: Vec<(String, Result<LabState>)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            names::is_id(&name).then(|| (name, LabState::load(&e.path())))
        })
        .collect();
    labs.sort_by(|a, b| a.0.cmp(&b.0));
    labs
}

/// A plan with the blocks and addresses `felix ipam` hands out on a fresh etcd (hosts claim in
/// order, pods are assigned in order): h1 192.168.0.0/26 (pods .0, .1), h2 192.168.0.64/26.
#[cfg(test)]
pub fn addressed_plan(id: &str) -> LabState {
    let mut plan = LabState::plan(id, None);
    for (h, host) in plan.hosts.iter_mut().enumerate() {
        let base = u32::from(Ipv4Addr::new(192, 168, 0, 0)) + 64 * h as u32;
        host.block = format!("{}/{}", Ipv4Addr::from(base), names::BLOCK_PREFIX);
        for (p, pod) in host.pods.iter_mut().enumerate() {
            pod.ip = Ipv4Addr::from(base + p as u32);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips() -> Result<()> {
        let plan = LabState::plan("fx00ff", None);
        assert_eq!(plan.hosts.len(), 2);
        assert_eq!(plan.pods().count(), 4);
        assert_eq!(plan.pin_dirs[1], Path::new("/sys/fs/bpf/felix/fx00ff-h2"));
        assert_eq!(plan.state_dir, Path::new("/run/felix-lab/fx00ff"));
        let json = serde_json::to_string(&plan)?;
        let back: LabState = serde_json::from_str(&json)?;
        assert_eq!(
            back.pods().cloned().collect::<Vec<_>>(),
            plan.pods().cloned().collect::<Vec<_>>()
        );
        Ok(())
    }
}
