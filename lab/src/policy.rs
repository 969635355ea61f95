//! Network policy in the lab, through felix's CLI as a user drives it: `felix apply|delete -f`
//! and `felix policy explain` run in host h1's namespace (where etcd is reachable), `felix bpf
//! policy dump` reads a node's pins; plus the example policies (`examples/policy/`) and a pod's
//! profiles rewritten the way Calico's CNI plugin writes its WorkloadEndpoint.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::felix::policy::{self, Explanation, PolicyDump, Query};
use crate::paths;
use crate::{Lab, PodInfo, calico, etcd, probe};

/// The example policies for the lab's pods.
pub fn examples_dir() -> PathBuf {
    paths::repo_root().join("examples").join("policy")
}

/// The example `name` (e.g. `default-deny.yaml`), checked to exist.
pub fn example(name: &str) -> Result<PathBuf> {
    let path = examples_dir().join(name);
    anyhow::ensure!(path.is_file(), "no example policy {}", path.display());
    Ok(path)
}

/// Every example file (`*.yaml`), sorted by name.
pub fn examples() -> Result<Vec<PathBuf>> {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// A policy's name from its etcd key: `<name>`, or `<namespace>/<name>` for a NetworkPolicy.
pub fn policy_name(key: &str) -> String {
    key.strip_prefix(calico::RESOURCES)
        .and_then(|rest| rest.trim_start_matches('/').split_once('/'))
        .map_or(key, |(_, name)| name)
        .to_owned()
}

impl Lab {
    /// `felix apply -f FILE`; felix's report.
    pub fn apply(&self, file: &Path) -> Result<String> {
        policy::apply(&self.felix, &self.node(1), &self.state.etcd_url, file)
    }

    /// `felix delete -f FILE`; felix's report.
    pub fn delete(&self, file: &Path) -> Result<String> {
        policy::delete(&self.felix, &self.node(1), &self.state.etcd_url, file)
    }

    /// Writes `yaml` to `<name>.yaml` in the lab's state folder (gone with the lab) and applies
    /// it; the file, for a later [`Lab::delete`].
    pub fn apply_yaml(&self, name: &str, yaml: &str) -> Result<PathBuf> {
        let file = self.state.state_dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).with_context(|| format!("writing {}", file.display()))?;
        self.apply(&file)?;
        Ok(file)
    }

    /// `felix bpf policy dump [--iface IFACE] --json` of host `n`.
    pub fn policy_dump(&self, n: u8, iface: Option<&str>) -> Result<PolicyDump> {
        policy::dump(&self.felix, &self.node(n), iface)
    }

    /// `felix bpf policy dump [--iface IFACE]` of host `n`, as text.
    pub fn policy_dump_table(&self, n: u8, iface: Option<&str>) -> Result<String> {
        policy::dump_table(&self.felix, &self.node(n), iface)
    }

    /// The policies host `n`'s dataplane applies to some endpoint, named as `felix policy
    /// explain` names them: `<name>`, or `<namespace>/<name>` for a NetworkPolicy.
    pub fn programmed_policies(&self, n: u8) -> Result<BTreeSet<String>> {
        let dump = self.policy_dump(n, None)?;
        Ok(dump
            .policy
            .iter()
            .flat_map(|row| row.policies.iter())
            .map(|key| policy_name(key))
            .collect())
    }

    /// Waits until host `n` applies every policy of `names` (`present`), or none of them; the
    /// time it took. felix programs a whole datastore state at once, so the last policy applied
    /// being in means the earlier ones are too.
    pub fn wait_programmed(
        &self,
        n: u8,
        names: &[&str],
        present: bool,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let have = self.programmed_policies(n)?;
            if names.iter().all(|name| have.contains(*name) == present) {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                let verb = if present { "programmed" } else { "removed" };
                bail!(
                    "{names:?} not all {verb} on {} after {timeout:?}: it applies {have:?}",
                    self.node(n)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `felix policy explain --json` of `query`.
    pub fn explain(&self, query: Query) -> Result<Explanation> {
        policy::explain(&self.felix, &self.node(1), &self.state.etcd_url, query)
    }

    /// `felix policy explain` of `query`, as text.
    pub fn explain_text(&self, query: Query) -> Result<String> {
        policy::explain_text(&self.felix, &self.node(1), &self.state.etcd_url, query)
    }

    /// Rewrites `pod`'s WorkloadEndpoint with `profiles` in place of its namespace's profile.
    pub fn set_profiles(&self, pod: &PodInfo, profiles: &[&str]) -> Result<()> {
        let host = self.host(pod.host)?;
        let (key, wep) = calico::workload_endpoint_with_profiles(host, pod, profiles);
        etcd::put_json(&self.state, &key, &wep)
    }

    /// Rewrites `pod`'s WorkloadEndpoint (with its namespace's profile) declaring `ports`
    /// (name, protocol, port) under `spec.ports`, as Calico's CNI plugin writes a pod's named
    /// container ports.
    pub fn set_named_ports(&self, pod: &PodInfo, ports: &[(&str, &str, u16)]) -> Result<()> {
        let host = self.host(pod.host)?;
        let (key, mut wep) = calico::workload_endpoint(host, pod);
        wep["spec"]["ports"] = ports
            .iter()
            .map(|(name, protocol, port)| {
                serde_json::json!({"name": name, "protocol": protocol, "port": port})
            })
            .collect();
        etcd::put_json(&self.state, &key, &wep)
    }

    /// A new TCP connection from `from` to an echo server on `to`:`port` carries data both ways
    /// (`false`: the handshake timed out).
    pub fn tcp_works(&self, from: &PodInfo, to: &PodInfo, port: u16) -> Result<bool> {
        probe::tcp_works(&from.ns, to.ip, port)
    }

    /// One echo request from `from` with a 1 s deadline, in a new `ping` process (a new ICMP
    /// identifier, so a new flow): whether the reply came.
    pub fn ping_once(&self, from: &PodInfo, to: &PodInfo) -> Result<bool> {
        let (stats, _) = self.ping_from(&from.ns, to.ip, 1, &["-W", "1"])?;
        Ok(stats.received == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_from_keys() {
        let gnp = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/security.x";
        assert_eq!(policy_name(gnp), "security.x");
        let np = "/calico/resources/v3/projectcalico.org/networkpolicies/default/allow-iperf3";
        assert_eq!(policy_name(np), "default/allow-iperf3");
        assert_eq!(policy_name("odd"), "odd");
    }

    #[test]
    fn examples_exist() -> Result<()> {
        let files = examples()?;
        assert!(files.len() >= 5, "{files:?}");
        assert!(example("default-deny.yaml")?.is_file());
        assert!(example("nope.yaml").is_err());
        Ok(())
    }
}
