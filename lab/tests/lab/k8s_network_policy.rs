//! Kubernetes NetworkPolicy in etcd mode: the lab's four pods become pods of three Kubernetes
//! namespaces, with the profiles, WorkloadEndpoints and policies put into etcd exactly as
//! Calico's kube-controllers (and its CNI plugin) write them (felix-user/tests/k8s-netpol), and
//! every example's connections behave as the Kubernetes documentation says, in BPF and in
//! iptables mode.

#[path = "../../../felix-user/tests/k8s_netpol_fixtures.rs"]
mod fixtures;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use lab::iptables::Backend;
use lab::{EchoServer, Lab, LabOptions, PodInfo, calico, etcd, felixd::Dataplane, names, probe};
use serde_json::Value;

use crate::support::{poll_until, with_lab_options};
use fixtures::{Example, Expect, pod_ref};

/// How long felix may take to enforce (or drop) an example's policies.
const ENFORCE_DEADLINE: Duration = Duration::from_secs(15);
/// Handshake timeout of one probe (a denied SYN is dropped, so this is what a deny costs).
const HANDSHAKE: Duration = Duration::from_millis(300);
/// The port every pod serves for the open-network baseline.
const BASELINE_PORT: u16 = 8080;
/// The IPAM blocks the fixtures give hosts h1 and h2 (their addresses follow from them).
const FIXTURE_BLOCKS: [&str; 2] = ["192.168.0.0/26", "192.168.0.64/26"];

/// The fixtures' Kubernetes pods (`namespace/pod`) placed on the lab's pods: the k-th pod of
/// node hN in cluster.yaml is the lab's pod (N, k).
struct Cluster {
    pods: BTreeMap<String, PodInfo>,
}

fn fixtures() -> Result<(Example, Vec<(std::path::PathBuf, Example)>)> {
    let felix_user = Path::new(env!("CARGO_MANIFEST_DIR")).join("../felix-user");
    fixtures::load_all(&fixtures::dir(&felix_user)).map_err(anyhow::Error::msg)
}

/// Puts `value` at `key` byte for byte, as kube-controllers' etcd client does.
fn put(lab: &Lab, key: &str, value: &str) -> Result<()> {
    let state = lab.state();
    etcd::put(&state.fabric_ns, &state.etcd_url, key, value)
}

fn del(lab: &Lab, key: &str) -> Result<()> {
    let state = lab.state();
    etcd::del(&state.fabric_ns, &state.etcd_url, key).map(drop)
}

/// A fixture value with the fixture's IPAM blocks replaced by the lab's.
fn localized(lab: &Lab, value: &str) -> Result<String> {
    let mut out = value.to_owned();
    for (fixture, n) in FIXTURE_BLOCKS.iter().zip(names::HOSTS) {
        out = out.replace(fixture, &lab.host(n)?.block);
    }
    Ok(out)
}

/// Writes the cluster: profiles as they are; each WorkloadEndpoint as the fixture has it but on
/// its lab pod (node, name, address, interface, MAC), in place of the lab's own.
fn install_cluster(lab: &Lab, cluster: &Example) -> Result<Cluster> {
    let mut pods = BTreeMap::new();
    let mut per_node: BTreeMap<String, u8> = BTreeMap::new();
    for entry in &cluster.etcd {
        let mut value: Value = serde_json::from_str(&entry.value)?;
        if value["kind"] != "WorkloadEndpoint" {
            put(lab, &entry.key, &entry.value)?;
            continue;
        }
        let node = value["spec"]["node"]
            .as_str()
            .context("spec.node")?
            .to_owned();
        let n: u8 = node.trim_start_matches('h').parse().context("node hN")?;
        let index = per_node.entry(node).or_insert(0);
        *index += 1;
        let pod = lab.pod(n, *index)?.clone();
        let host = lab.host(n)?;
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .context("namespace")?
            .to_owned();
        let name = value["spec"]["pod"]
            .as_str()
            .context("spec.pod")?
            .to_owned();
        let wep = names::wep_name(&host.node, &name, "eth0");
        value["metadata"]["name"] = wep.clone().into();
        value["spec"]["node"] = host.node.clone().into();
        value["spec"]["ipNetworks"] = serde_json::json!([format!("{}/32", pod.ip)]);
        value["spec"]["interfaceName"] = pod.cali.clone().into();
        match &pod.mac {
            Some(mac) => value["spec"]["mac"] = mac.clone().into(),
            None => drop(value["spec"].as_object_mut().map(|s| s.remove("mac"))),
        }
        del(lab, &calico::workload_endpoint_key(host, &pod))?;
        put(
            lab,
            &format!("{}/workloadendpoints/{namespace}/{wep}", calico::RESOURCES),
            &value.to_string(),
        )?;
        pods.insert(format!("{namespace}/{name}"), pod);
    }
    ensure!(pods.len() == 4, "cluster.yaml places {} pods", pods.len());
    Ok(Cluster { pods })
}

impl Cluster {
    fn pod(&self, name: &str) -> Result<&PodInfo> {
        self.pods
            .get(name)
            .with_context(|| format!("no pod {name} in cluster.yaml"))
    }

    /// Whether a new TCP connection from `from` to `to`:`port` carries data both ways.
    fn connects(&self, from: &str, to: &str, port: u16) -> Result<bool> {
        let (from, to) = (self.pod(from)?, self.pod(to)?);
        probe::tcp_works_within(&from.ns, to.ip, port, HANDSHAKE)
    }

    /// `Ok(())` once every ordered pair of pods connects on the baseline port.
    fn open(&self) -> Result<std::result::Result<(), String>> {
        for from in self.pods.keys() {
            for to in self.pods.keys().filter(|t| *t != from) {
                if !self.connects(from, to, BASELINE_PORT)? {
                    return Ok(Err(format!("{from} -> {to}:{BASELINE_PORT} refused")));
                }
            }
        }
        Ok(Ok(()))
    }

    /// The checks of `example` whose outcome differs from the documented one.
    fn wrong(&self, example: &Example) -> Result<Vec<String>> {
        let mut wrong = Vec::new();
        for c in &example.checks {
            let got = if self.connects(&c.from, &c.to, c.port)? {
                Expect::Allow
            } else {
                Expect::Deny
            };
            if got != c.expect {
                wrong.push(format!(
                    "{} -> {}:{} {got:?}, expected {:?} ({})",
                    c.from, c.to, c.port, c.expect, c.why
                ));
            }
        }
        Ok(wrong)
    }
}

/// The policies `example` writes, as `felix policy explain` names them (`<namespace>/<name>`).
fn policy_names(example: &Example) -> Result<Vec<String>> {
    example
        .etcd
        .iter()
        .map(|e| {
            let value: Value = serde_json::from_str(&e.value)?;
            let md = &value["metadata"];
            Ok(format!(
                "{}/{}",
                md["namespace"].as_str().context("namespace")?,
                md["name"].as_str().context("name")?
            ))
        })
        .collect()
}

/// The example's policies that have rules: iptables mode names them in its rules' comments.
fn policies_with_rules(example: &Example) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in &example.etcd {
        let value: Value = serde_json::from_str(&entry.value)?;
        let has_rules = ["ingress", "egress"]
            .iter()
            .any(|d| value["spec"][d].as_array().is_some_and(|r| !r.is_empty()));
        if has_rules {
            names.push(
                value["metadata"]["name"]
                    .as_str()
                    .context("name")?
                    .to_owned(),
            );
        }
    }
    Ok(names)
}

/// Waits until a host's `backend` filter table names each policy of `names` in a rule's comment
/// (the hosts of the pods it selects render it; which those are, the example does not say).
fn wait_rendered(lab: &Lab, backend: Backend, names: &[String]) -> Result<()> {
    poll_until(ENFORCE_DEADLINE, "iptables rules name the policies", || {
        let saves = [1, 2]
            .into_iter()
            .map(|n| lab::iptables::save(&lab.host(n)?.ns, backend))
            .collect::<Result<Vec<_>>>()?;
        Ok(
            match names
                .iter()
                .find(|name| !saves.iter().any(|save| save.contains(name.as_str())))
            {
                Some(missing) => Err(format!("no host has a rule of {missing}")),
                None => Ok(()),
            },
        )
    })
    .map(|_| ())
}

/// Every example, one at a time on the open cluster: put, enforced as documented (also when
/// checked again), deleted, open again. felix must also show every policy of the example
/// applied before the checks count (BPF: its policy dump on h1, where prod/db lives, which
/// every example selects; iptables mode, `backend`: a rule naming each policy that has rules),
/// and, in BPF mode, none after the delete: an example whose checks all allow
/// proves nothing if it is judged before felix has it.
fn examples_are_enforced(lab: &mut Lab, iptables: Option<Backend>) -> Result<()> {
    let bpf = iptables.is_none();
    let (cluster_fixture, examples) = fixtures()?;
    let cluster = install_cluster(lab, &cluster_fixture)?;
    // An echo server on every port some check connects to, and on the baseline port.
    let mut ports: BTreeSet<(String, u16)> = cluster
        .pods
        .keys()
        .map(|p| (p.clone(), BASELINE_PORT))
        .collect();
    for (_, example) in &examples {
        for c in &example.checks {
            let (ns, name) = pod_ref(&c.to);
            ports.insert((format!("{ns}/{name}"), c.port));
        }
    }
    let _servers = ports
        .iter()
        .map(|(pod, port)| EchoServer::start(&cluster.pod(pod)?.ns, *port))
        .collect::<Result<Vec<_>>>()?;
    poll_until(ENFORCE_DEADLINE, "the cluster is open", || cluster.open())
        .context("before any policy, with kube-controllers' profiles")?;

    for (path, example) in &examples {
        let file = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        // Each policy is a put of its own, as kube-controllers writes them, and felix applies
        // each as it comes: the fixtures list a default deny before the policy that opens it
        // again, so put them last first (no moment denies what the example allows) and delete
        // them first first.
        for entry in example.etcd.iter().rev() {
            put(lab, &entry.key, &localized(lab, &entry.value)?)?;
        }
        let policies = policy_names(example)?;
        let policies: Vec<&str> = policies.iter().map(String::as_str).collect();
        match iptables {
            None => {
                lab.wait_programmed(1, &policies, true, ENFORCE_DEADLINE)
                    .with_context(|| format!("{file}: felix applies it"))?;
            }
            Some(backend) => wait_rendered(lab, backend, &policies_with_rules(example)?)
                .with_context(|| format!("{file}: felix renders it"))?,
        }
        let (_, took) = poll_until(ENFORCE_DEADLINE, &file, || {
            let wrong = cluster.wrong(example)?;
            Ok(if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            })
        })?;
        let again = cluster.wrong(example)?;
        if !again.is_empty() {
            bail!(
                "{file}: enforced after {took:?}, then not: {}",
                again.join("; ")
            );
        }
        eprintln!(
            "{file}: {} checks as documented (a round of probes took {took:?})",
            example.checks.len()
        );
        for entry in &example.etcd {
            del(lab, &entry.key)?;
        }
        if bpf {
            lab.wait_programmed(1, &policies, false, ENFORCE_DEADLINE)
                .with_context(|| format!("{file}: felix drops it"))?;
        }
        poll_until(ENFORCE_DEADLINE, "open again", || cluster.open())
            .with_context(|| format!("after deleting {file}"))?;
    }
    Ok(())
}

#[test]
fn kubernetes_network_policy_examples_bpf() -> Result<()> {
    with_lab_options(LabOptions::default(), |lab| {
        examples_are_enforced(lab, None)
    })
}

#[test]
fn kubernetes_network_policy_examples_iptables() -> Result<()> {
    let opts = LabOptions {
        dataplane: Dataplane::Iptables(Backend::Legacy),
        ..LabOptions::default()
    };
    with_lab_options(opts, |lab| {
        examples_are_enforced(lab, Some(Backend::Legacy))
    })
}
