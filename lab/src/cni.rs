//! `felix-cni` driven in the lab as a container runtime drives it. The node's network
//! configuration list (what `/etc/cni/net.d/10-felix.conflist` holds) is turned into the
//! plugin's stdin the way libcni does it (`cniVersion` and `name` copied into the plugin's
//! object, the runtime's `args`, and for CHECK and DEL the cached ADD result as `prevResult`);
//! the plugin sees only the `CNI_*` variables and `PATH`, and runs in the host's network
//! namespace, where a runtime runs it. [`CniPod`] is a guard: dropping it runs DEL and deletes
//! the pod's namespace, whatever the test did before.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{HostState, LabState, PodInfo};
use crate::{Lab, calico, names, net, probe};
use crate::{cmd, paths};

/// Environment variable naming another felix-cni binary (default: the release build).
pub const FELIX_CNI_ENV: &str = "XTASK_FELIX_CNI";
/// The network's name, as in Calico's manifests (and so the IPAM handle's prefix).
pub const NETWORK: &str = "k8s-pod-network";
/// The version the lab's runtime speaks.
pub const CNI_VERSION: &str = "1.0.0";
/// The pod's interface (`CNI_IFNAME`).
pub const IFNAME: &str = "eth0";
/// Where a runtime looks for plugins (`CNI_PATH`; felix-cni delegates to none).
const PLUGIN_PATH: &str = "/opt/cni/bin";
/// The `PATH` a runtime passes on.
const RUNTIME_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The felix-cni binary: `$XTASK_FELIX_CNI` if set, else `target/release/felix-cni`.
pub fn felix_cni_bin() -> PathBuf {
    match std::env::var_os(FELIX_CNI_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => paths::repo_root()
            .join("target")
            .join("release")
            .join("felix-cni"),
    }
}

/// A CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Check,
    Del,
}

impl CniCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Check => "CHECK",
            Self::Del => "DEL",
        }
    }
}

/// The configuration list of `host`, as felix-cni/README.md's example installs it: felix-cni with the
/// lab's etcd, the node's name and the lab's pool; no `mtu`, so felix-cni detects it from the
/// host's uplink (its MTU less IPIP's 20 bytes).
pub fn conflist(state: &LabState, host: &HostState) -> Value {
    let mut plugin = json!({
        "type": "felix-cni",
        "etcd_endpoints": state.etcd_url,
        "nodename": host.node,
        "ipam": {"type": "felix-ipam", "ipv4_pools": [names::POOL_CIDR]}
    });
    if let Some(pki) = crate::etcd_tls::for_url(&state.fabric_ns, &state.etcd_url) {
        plugin["etcd_ca_cert_file"] = json!(pki.ca);
        plugin["etcd_cert_file"] = json!(pki.client.cert);
        plugin["etcd_key_file"] = json!(pki.client.key);
    }
    json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "plugins": [plugin]
    })
}

/// The plugin's stdin for one call, as libcni builds it from `conflist`'s first plugin:
/// `cniVersion` and `name` from the list, `args.cni.labels` from `labels` (the runtime's
/// `args`) and `prevResult` when given.
pub fn plugin_config(
    conflist: &Value,
    labels: &BTreeMap<String, String>,
    prev_result: Option<&Value>,
) -> Result<Value> {
    let mut conf = conflist["plugins"]
        .get(0)
        .filter(|p| p.is_object())
        .cloned()
        .context("the configuration list has no plugin")?;
    conf["cniVersion"] = conflist["cniVersion"].clone();
    conf["name"] = conflist["name"].clone();
    if !labels.is_empty() {
        let labels: Vec<Value> = labels
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        conf["args"] = json!({"cni": {"labels": labels}});
    }
    if let Some(prev) = prev_result {
        conf["prevResult"] = prev.clone();
    }
    Ok(conf)
}

/// `CNI_ARGS` as kubelet's runtime sets it for a pod of the lab's Kubernetes namespace.
pub fn cni_args(pod: &str, container_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={pod};\
         K8S_POD_INFRA_CONTAINER_ID={container_id}",
        names::POD_NAMESPACE
    )
}

/// What one plugin call printed and returned, and how long it took.
#[derive(Debug, Clone)]
pub struct CniCall {
    pub command: CniCommand,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl CniCall {
    /// stdout as JSON (`Null` when empty, as after a successful CHECK or DEL).
    pub fn json(&self) -> Result<Value> {
        if self.stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "{} printed no JSON: {:?}",
                self.command.as_str(),
                self.stdout
            )
        })
    }

    /// stdout as JSON, failing (with stdout and stderr) unless the call succeeded.
    pub fn ok(&self) -> Result<Value> {
        if !self.success {
            bail!(
                "felix-cni {} failed: {}\nstderr: {}",
                self.command.as_str(),
                self.stdout.trim(),
                self.stderr.trim()
            );
        }
        self.json()
    }

    /// The CNI error's `code`, failing if the call succeeded or printed no error.
    pub fn error_code(&self) -> Result<u64> {
        if self.success {
            bail!("felix-cni {} succeeded", self.command.as_str());
        }
        self.json()?["code"]
            .as_u64()
            .with_context(|| format!("no error code in {:?}", self.stdout))
    }
}

/// An ADD result (spec 1.0 "Success"), the fields the lab checks.
#[derive(Debug, Clone, Deserialize)]
pub struct AddResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub interfaces: Vec<ResultInterface>,
    pub ips: Vec<ResultIp>,
    #[serde(default)]
    pub routes: Vec<ResultRoute>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResultInterface {
    pub name: String,
    pub mac: String,
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResultIp {
    pub address: String,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResultRoute {
    pub dst: String,
    #[serde(default)]
    pub gw: Option<Ipv4Addr>,
}

impl AddResult {
    /// The pod's address: the result's only `ips` entry, a /32.
    pub fn pod_ip(&self) -> Result<Ipv4Addr> {
        let [ip] = self.ips.as_slice() else {
            bail!("expected one address, the result has {:?}", self.ips);
        };
        let addr = ip
            .address
            .strip_suffix("/32")
            .with_context(|| format!("{} is not a /32", ip.address))?;
        addr.parse()
            .with_context(|| format!("{} is not an IPv4 address", ip.address))
    }

    /// How this result differs from what ADD must report for a pod whose host veth is `cali`
    /// and whose namespace is `sandbox`: the host veth (Calico's MAC) then `eth0` in the
    /// sandbox, the /32 on `eth0` via 169.254.1.1, and the default route via it. Empty when it
    /// is all there.
    pub fn problems(&self, cali: &str, sandbox: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cni_version != CNI_VERSION {
            problems.push(format!("cniVersion {}", self.cni_version));
        }
        match self.interfaces.as_slice() {
            [host, pod] => {
                if host.name != cali || host.mac != names::CALI_MAC || host.sandbox.is_some() {
                    problems.push(format!("host interface {host:?}, expected {cali}"));
                }
                if pod.name != IFNAME || pod.sandbox.as_deref() != Some(sandbox) {
                    problems.push(format!(
                        "pod interface {pod:?}, expected {IFNAME} in {sandbox}"
                    ));
                }
            }
            other => problems.push(format!("interfaces {other:?}")),
        }
        if let Err(e) = self.pod_ip() {
            problems.push(format!("{e:#}"));
        }
        for ip in &self.ips {
            if ip.interface != Some(1) || ip.gateway != Some(names::GATEWAY) {
                problems.push(format!(
                    "address {ip:?} not on interface 1 via {}",
                    names::GATEWAY
                ));
            }
        }
        let default_via_gateway =
            |r: &ResultRoute| r.dst == "0.0.0.0/0" && r.gw == Some(names::GATEWAY);
        if !self.routes.iter().any(default_via_gateway) {
            problems.push(format!(
                "no default route via {} in {:?}",
                names::GATEWAY,
                self.routes
            ));
        }
        problems
    }
}

/// A pod made the way a runtime makes one: its own network namespace, wired by felix-cni.
/// Dropping it runs DEL (when ADD was tried and no DEL succeeded since) and deletes the
/// namespace, so a failing test leaves neither the veth, the endpoint, the address nor the
/// namespace behind.
#[derive(Debug)]
pub struct CniPod {
    bin: PathBuf,
    host_ns: String,
    /// The lab host it runs on.
    pub host: u8,
    /// The pod's name, which is also its network namespace (`<node>-<suffix>`, so the lab's
    /// teardown owns it too).
    pub name: String,
    /// `CNI_NETNS`: `/run/netns/<name>`.
    pub netns: String,
    /// `CNI_CONTAINERID`: 64 hex digits, as a runtime's sandbox id.
    pub container_id: String,
    node: String,
    conflist: Value,
    labels: BTreeMap<String, String>,
    /// The last successful ADD's result, which a runtime caches for CHECK and DEL.
    prev_result: Option<Value>,
    needs_del: bool,
}

impl CniPod {
    /// A new pod namespace `<node>-<suffix>` on `host` (with `lo` up), to be wired by ADD with
    /// `labels` on its endpoint.
    pub fn create(
        bin: &Path,
        state: &LabState,
        host: &HostState,
        suffix: &str,
        labels: &[(&str, &str)],
    ) -> Result<Self> {
        if !bin.is_file() {
            bail!(
                "{} not found (cargo build --release -p felix-cni)",
                bin.display()
            );
        }
        let name = format!("{}-{suffix}", host.node);
        let pod = Self {
            bin: bin.to_path_buf(),
            host_ns: host.ns.clone(),
            host: host.n,
            netns: format!("/run/netns/{name}"),
            container_id: container_id()?,
            node: host.node.clone(),
            conflist: conflist(state, host),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            prev_result: None,
            needs_del: false,
            name,
        };
        net::add_netns(&pod.name)?;
        // From here on the guard removes the namespace, whatever fails next.
        cmd::ip(&["-n", &pod.name, "link", "set", "lo", "up"])?;
        Ok(pod)
    }

    /// Calico's name for the pod's host veth, computed by the lab (not by the plugin).
    pub fn cali(&self) -> String {
        names::cali_name(names::POD_NAMESPACE, &self.name)
    }

    /// The IPAM handle the plugin takes the address under.
    pub fn handle(&self) -> String {
        format!("{NETWORK}.{}", self.container_id)
    }

    /// The WorkloadEndpoint's key in etcd.
    pub fn wep_key(&self) -> String {
        let name = names::wep_name(&self.node, &self.name, IFNAME);
        format!(
            "{}/workloadendpoints/{}/{name}",
            calico::RESOURCES,
            names::POD_NAMESPACE
        )
    }

    /// The pod as the lab's traffic helpers take it, with address `ip` (index 0: not one of the
    /// lab's own pods).
    pub fn info(&self, ip: Ipv4Addr) -> PodInfo {
        PodInfo {
            host: self.host,
            index: 0,
            name: self.name.clone(),
            ns: self.name.clone(),
            ip,
            cali: self.cali(),
            mac: None,
        }
    }

    /// Runs the plugin with `command` as a runtime does: from the host's network namespace,
    /// only the `CNI_*` variables and `PATH` set, the configuration on stdin (the plugin bounds
    /// its own etcd calls).
    pub fn run(&self, command: CniCommand) -> Result<CniCall> {
        let prev = match command {
            CniCommand::Add => None,
            CniCommand::Check | CniCommand::Del => self.prev_result.as_ref(),
        };
        let stdin = plugin_config(&self.conflist, &self.labels, prev)?.to_string();
        let vars = [
            ("CNI_COMMAND", command.as_str().to_owned()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", IFNAME.to_owned()),
            ("CNI_ARGS", cni_args(&self.name, &self.container_id)),
            ("CNI_PATH", PLUGIN_PATH.to_owned()),
            ("PATH", RUNTIME_PATH.to_owned()),
        ];
        let bin = self.bin.clone();
        probe::in_netns(&self.host_ns, move || {
            let start = Instant::now();
            let mut child = Command::new(&bin)
                .env_clear()
                .envs(vars)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            child
                .stdin
                .take()
                .context("the plugin's stdin")?
                .write_all(stdin.as_bytes())
                .context("writing the configuration to the plugin")?;
            let out = child.wait_with_output().context("waiting for the plugin")?;
            Ok(CniCall {
                command,
                success: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                took: start.elapsed(),
            })
        })
    }

    /// ADD; on success the parsed result (kept as the runtime's cache for CHECK and DEL).
    pub fn add(&mut self) -> Result<(AddResult, CniCall)> {
        self.needs_del = true;
        let call = self.run(CniCommand::Add)?;
        let value = call.ok()?;
        let result: AddResult = serde_json::from_value(value.clone())
            .with_context(|| format!("parsing the ADD result {value}"))?;
        self.prev_result = Some(value);
        Ok((result, call))
    }

    /// CHECK (its outcome, success or not).
    pub fn check(&self) -> Result<CniCall> {
        self.run(CniCommand::Check)
    }

    /// DEL (its outcome, success or not); after a success the guard has nothing left to delete.
    pub fn del(&mut self) -> Result<CniCall> {
        let call = self.run(CniCommand::Del)?;
        if call.success {
            self.needs_del = false;
        }
        Ok(call)
    }
}

impl Drop for CniPod {
    fn drop(&mut self) {
        if self.needs_del {
            match self.run(CniCommand::Del) {
                Ok(call) if call.success => {}
                Ok(call) => eprintln!(
                    "cleanup DEL of {} failed: {} {}",
                    self.name, call.stdout, call.stderr
                ),
                Err(e) => eprintln!("cleanup DEL of {}: {e:#}", self.name),
            }
        }
        if Path::new(&self.netns).exists()
            && let Err(e) = net::del_netns(&self.name)
        {
            eprintln!("cleanup of {}: {e:#}", self.name);
        }
    }
}

/// A sandbox id like a runtime's: 64 hex digits from /dev/urandom.
fn container_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Lab {
    /// A new pod namespace on host `n`, for felix-cni to wire ([`CniPod::create`]).
    pub fn cni_pod(&self, n: u8, suffix: &str, labels: &[(&str, &str)]) -> Result<CniPod> {
        CniPod::create(&felix_cni_bin(), &self.state, self.host(n)?, suffix, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), "cni-h1".to_owned())])
    }

    fn list() -> Value {
        let st = crate::state::addressed_plan("fx0001");
        conflist(&st, &st.hosts[0])
    }

    #[test]
    fn plugin_config_is_built_as_libcni_builds_it() -> Result<()> {
        let conf = plugin_config(&list(), &labels(), None)?;
        assert_eq!(conf["type"], "felix-cni");
        assert_eq!(conf["cniVersion"], CNI_VERSION);
        assert_eq!(conf["name"], NETWORK);
        assert_eq!(conf["nodename"], "fx0001-h1");
        assert_eq!(conf["etcd_endpoints"], "https://10.0.0.254:2379");
        assert!(
            conf["etcd_cert_file"]
                .as_str()
                .is_some_and(|f| f.ends_with("etcd-pki/client.pem")),
            "{conf}"
        );
        assert_eq!(
            conf["args"]["cni"]["labels"],
            json!([{"key": "app", "value": "cni-h1"}])
        );
        assert!(conf.get("prevResult").is_none());

        let prev = json!({"cniVersion": CNI_VERSION, "ips": []});
        let conf = plugin_config(&list(), &BTreeMap::new(), Some(&prev))?;
        assert_eq!(conf["prevResult"], prev);
        assert!(conf.get("args").is_none());
        assert!(plugin_config(&json!({"plugins": []}), &labels(), None).is_err());
        Ok(())
    }

    #[test]
    fn cni_args_name_the_pod() {
        assert_eq!(
            cni_args("fx0001-h1-cni", "abc"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=fx0001-h1-cni;\
             K8S_POD_INFRA_CONTAINER_ID=abc"
        );
    }

    fn result(ip: &str, cali: &str, sandbox: &str) -> Result<AddResult> {
        Ok(serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": cali, "mac": "ee:ee:ee:ee:ee:ee"},
                           {"name": "eth0", "mac": "12:34:56:78:9a:bc", "sandbox": sandbox}],
            "ips": [{"address": ip, "gateway": "169.254.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
        }))?)
    }

    #[test]
    fn add_result_is_checked_field_by_field() -> Result<()> {
        let good = result("192.168.0.2/32", "cali0123456789a", "/run/netns/p")?;
        assert_eq!(good.pod_ip()?, Ipv4Addr::new(192, 168, 0, 2));
        assert!(good.problems("cali0123456789a", "/run/netns/p").is_empty());

        let problems = good.problems("califfffffffff0", "/run/netns/q");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("califfffffffff0"), "{problems:?}");
        assert!(problems[1].contains("/run/netns/q"), "{problems:?}");

        let wide = result("192.168.0.2/26", "cali0123456789a", "/run/netns/p")?;
        assert!(wide.pod_ip().is_err());
        assert_eq!(wide.problems("cali0123456789a", "/run/netns/p").len(), 1);

        let mut no_route = good.clone();
        no_route.routes.clear();
        assert_eq!(
            no_route.problems("cali0123456789a", "/run/netns/p").len(),
            1
        );
        Ok(())
    }

    #[test]
    fn container_ids_are_distinct_hex() -> Result<()> {
        let (a, b) = (container_id()?, container_id()?);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        Ok(())
    }
}
