//! Client of felix's inspection CLI (`felix bpf ... dump --json`, `conntrack flush`, `xdp-deny
//! add|del`), with its JSON contract: `{"node": .., "<field>": [rows]}`; and of `felix status`,
//! which reads the status felix instances write to etcd. [`ipam`] and [`policy`] drive `felix
//! ipam`, `felix apply|delete`, `felix bpf policy dump` and `felix policy explain`.
//!
//! The types mirror felix's JSON output field by field (unknown fields are ignored), so the lab
//! reads felix the way a user's script would.

pub mod ipam;
pub mod policy;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::cmd;

/// The rows felix prints, shared with it ([`felix_rows`]).
pub use felix_rows::{
    ConntrackRow as CtEntry, CounterRow as Counter, DenyRow as DenyEntry, EndpointRow as Endpoint,
    IfaceRow as Iface, RouteRow as Route,
};

/// Both TC hooks of the interface carry a program (`tcx` or `netlink`, not `none`).
pub fn both_tc_hooks_attached(iface: &Iface) -> bool {
    iface.ingress != "none" && iface.egress != "none"
}

/// `felix bpf ifaces dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct IfacesDump {
    pub node: String,
    pub interfaces: Vec<Iface>,
}

impl IfacesDump {
    /// Whether every name in `names` is listed with programs attached.
    pub fn all_attached(&self, names: &[&str]) -> bool {
        names.iter().all(|n| {
            self.interfaces
                .iter()
                .any(|i| i.name == *n && both_tc_hooks_attached(i))
        })
    }

    /// Whether `name` is listed as the uplink with both TC hooks attached (its XDP prefilter
    /// is attached only while the deny list has entries: see [`IfacesDump::uplink_xdp`]).
    pub fn uplink_attached(&self, name: &str) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.name == name && i.role == "uplink" && both_tc_hooks_attached(i))
    }

    /// The XDP attach mode of the uplink `name` (`none` when detached); `None` when it is not
    /// listed as the uplink.
    pub fn uplink_xdp(&self, name: &str) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|i| i.name == name && i.role == "uplink")
            .map(|i| {
                if i.xdp.is_empty() {
                    "none"
                } else {
                    i.xdp.as_str()
                }
            })
    }
}

/// `felix bpf attached --json`: the TCX and XDP programs the kernel reports in the namespace
/// the command runs in.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachedDump {
    pub attached: Vec<Attached>,
}

/// One program on one hook (`tcx_ingress`, `tcx_egress`, `xdp_*`) of one interface.
#[derive(Debug, Clone, Deserialize)]
pub struct Attached {
    pub iface: String,
    pub hook: String,
    pub prog_id: u32,
    #[serde(default)]
    pub prog_name: String,
}

/// `felix bpf counters dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct CountersDump {
    pub node: String,
    pub counters: Vec<Counter>,
}

impl CountersDump {
    /// Packets on `interface` in `direction`, summed over every reason.
    pub fn packets(&self, interface: &str, direction: &str) -> u64 {
        self.packets_except(interface, direction, &[])
    }

    /// Packets on `interface` in `direction` for `reason` (0 when there is no such counter).
    pub fn get(&self, interface: &str, direction: &str, reason: &str) -> u64 {
        self.counters
            .iter()
            .filter(|c| c.interface == interface && c.direction == direction && c.reason == reason)
            .map(|c| c.packets)
            .sum()
    }

    /// Packets on `interface` in `direction`, summed over every reason but those in `except`.
    pub fn packets_except(&self, interface: &str, direction: &str, except: &[&str]) -> u64 {
        self.counters
            .iter()
            .filter(|c| c.interface == interface && c.direction == direction)
            .filter(|c| !except.contains(&c.reason.as_str()))
            .map(|c| c.packets)
            .sum()
    }

    /// How much counter (`interface`, `direction`, `reason`) grew since `before`.
    pub fn grew(
        &self,
        before: &CountersDump,
        interface: &str,
        direction: &str,
        reason: &str,
    ) -> u64 {
        self.get(interface, direction, reason)
            .saturating_sub(before.get(interface, direction, reason))
    }
}

/// `felix bpf endpoints dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointsDump {
    pub node: String,
    pub endpoints: Vec<Endpoint>,
}

impl EndpointsDump {
    /// The endpoint with address `ip`, if any.
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.ip == ip)
    }
}

/// `felix bpf routes dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RoutesDump {
    pub node: String,
    pub routes: Vec<Route>,
}

impl RoutesDump {
    /// The route for exactly `cidr`, if any.
    pub fn by_cidr(&self, cidr: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.cidr == cidr)
    }
}

/// `felix bpf conntrack dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConntrackDump {
    pub node: String,
    pub conntrack: Vec<CtEntry>,
}

impl ConntrackDump {
    /// Flows of `proto` from `src` to `dst`:`dport` (any source port).
    pub fn flows(&self, proto: &str, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<&CtEntry> {
        self.conntrack
            .iter()
            .filter(|c| c.proto == proto && c.src == src && c.dst == dst && c.dport == dport)
            .collect()
    }
}

/// `felix bpf xdp-deny dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct XdpDenyDump {
    pub node: String,
    pub xdp_deny: Vec<DenyEntry>,
}

/// `felix status --json`: what every felix reported to etcd.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusDump {
    pub nodes: Vec<NodeStatus>,
    pub endpoints: Vec<EndpointStatus>,
}

/// One felix's status (`/calico/felix/v2/no-region/host/<node>/status`).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub ready: bool,
    #[serde(default)]
    pub uptime: Option<f64>,
    #[serde(default)]
    pub dataplane: Option<String>,
    #[serde(default)]
    pub programs_loaded: Option<u64>,
    /// The uplink's XDP prefilter: `attached`, `idle`, `disabled`, `failed`, `unknown`.
    #[serde(default)]
    pub xdp: Option<String>,
    #[serde(default)]
    pub last_sync: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

/// One local endpoint's status as its felix reported it: `up`, `down` or `error`, with a reason.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointStatus {
    pub node: String,
    #[serde(default)]
    pub orchestrator: String,
    /// `<namespace>/<pod>`.
    pub workload: String,
    pub endpoint: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl EndpointStatus {
    /// Whether this is pod `pod`'s endpoint (`workload` is `<namespace>/<pod>`).
    pub fn is_pod(&self, pod: &str) -> bool {
        self.workload == pod
            || self.workload.ends_with(&format!("/{pod}"))
            || self.workload.ends_with(&format!("%2f{pod}"))
    }
}

impl StatusDump {
    pub fn node(&self, node: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// The status of pod `pod`'s endpoint on `node`.
    pub fn endpoint(&self, node: &str, pod: &str) -> Option<&EndpointStatus> {
        self.endpoints
            .iter()
            .find(|e| e.node == node && e.is_pod(pod))
    }
}

/// `nsenter --net=/run/netns/NS FELIX ARGS... --etcd-endpoints URL`: a felix command that talks to
/// etcd, run in network namespace `ns` (the lab's etcd is reachable only from lab namespaces; only
/// the network namespace is entered, so felix still sees the host's bpffs).
pub fn etcd_command(felix: &Path, ns: &str, etcd_url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .arg(felix)
        .args(args)
        .args(["--etcd-endpoints", etcd_url]);
    if let Some(pki) = crate::etcd_tls::for_url(ns, etcd_url) {
        cmd.envs(crate::etcd_tls::cli_env(&pki));
    }
    cmd
}

/// Runs [`etcd_command`]; its stdout, failing on a non-zero exit (stderr in the error).
pub fn run_etcd(felix: &Path, ns: &str, etcd_url: &str, args: &[&str]) -> Result<String> {
    cmd::stdout(&mut etcd_command(felix, ns, etcd_url, args))
}

/// `felix status --etcd-endpoints URL [--node N] [--json]`, run in network namespace `ns`.
pub fn status(
    felix: &Path,
    ns: &str,
    etcd_url: &str,
    node: Option<&str>,
    json: bool,
) -> Result<String> {
    let mut args = vec!["status"];
    if let Some(node) = node {
        args.extend(["--node", node]);
    }
    if json {
        args.push("--json");
    }
    run_etcd(felix, ns, etcd_url, &args)
}

/// `felix status --json` (see [`status`]), parsed.
pub fn status_json(felix: &Path, ns: &str, etcd_url: &str) -> Result<StatusDump> {
    let out = status(felix, ns, etcd_url, None, true)?;
    serde_json::from_str(&out).with_context(|| format!("parsing `felix status --json`: {out}"))
}

/// Runs `felix bpf <what...> --node NODE --json` and parses its output.
pub fn dump_json<T: DeserializeOwned>(felix: &Path, node: &str, what: &[&str]) -> Result<T> {
    let out = cmd::stdout(
        Command::new(felix)
            .arg("bpf")
            .args(what)
            .args(["--node", node, "--json"]),
    )?;
    serde_json::from_str(&out)
        .with_context(|| format!("parsing `felix bpf {}` output: {out}", what.join(" ")))
}

/// Runs `felix bpf <what...> --node NODE` (the table form, or a command's message).
pub fn run(felix: &Path, node: &str, what: &[&str]) -> Result<String> {
    cmd::stdout(
        Command::new(felix)
            .arg("bpf")
            .args(what)
            .args(["--node", node]),
    )
}

/// Runs `felix bpf ifaces dump --node NODE --json`.
pub fn ifaces(felix: &Path, node: &str) -> Result<IfacesDump> {
    dump_json(felix, node, &["ifaces", "dump"])
}

/// Runs `felix bpf counters dump --node NODE --json`.
pub fn counters(felix: &Path, node: &str) -> Result<CountersDump> {
    dump_json(felix, node, &["counters", "dump"])
}

/// Runs `felix bpf endpoints dump --node NODE --json`.
pub fn endpoints(felix: &Path, node: &str) -> Result<EndpointsDump> {
    dump_json(felix, node, &["endpoints", "dump"])
}

/// Runs `felix bpf routes dump --node NODE --json`.
pub fn routes(felix: &Path, node: &str) -> Result<RoutesDump> {
    dump_json(felix, node, &["routes", "dump"])
}

/// Runs `felix bpf conntrack dump --node NODE --json`.
pub fn conntrack(felix: &Path, node: &str) -> Result<ConntrackDump> {
    dump_json(felix, node, &["conntrack", "dump"])
}

/// Runs `felix bpf xdp-deny dump --node NODE --json`.
pub fn xdp_deny(felix: &Path, node: &str) -> Result<XdpDenyDump> {
    dump_json(felix, node, &["xdp-deny", "dump"])
}

/// Runs `felix bpf counters dump --node NODE` (the table form).
pub fn counters_table(felix: &Path, node: &str) -> Result<String> {
    run(felix, node, &["counters", "dump"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counters_over_reasons() -> Result<()> {
        let dump: CountersDump = serde_json::from_str(
            r#"{"node":"n","counters":[
              {"ifindex":3,"interface":"cali1","direction":"from_workload","reason":"allowed","packets":5,"bytes":500},
              {"ifindex":3,"interface":"cali1","direction":"from_workload","reason":"pass_arp","packets":2,"bytes":84},
              {"ifindex":3,"interface":"cali1","direction":"to_workload","reason":"allowed","packets":7,"bytes":700},
              {"ifindex":4,"interface":"cali2","direction":"from_workload","reason":"allowed","packets":1,"bytes":100}]}"#,
        )?;
        assert_eq!(dump.packets("cali1", "from_workload"), 7);
        assert_eq!(dump.packets("cali1", "to_workload"), 7);
        assert_eq!(dump.packets("cali2", "to_workload"), 0);
        Ok(())
    }

    #[test]
    fn attachment_check() -> Result<()> {
        let dump: IfacesDump = serde_json::from_str(
            r#"{"node":"n","interfaces":[
              {"ifindex":3,"name":"cali1","role":"workload","ingress":"tcx","egress":"tcx","xdp":"none"},
              {"ifindex":4,"name":"cali2","role":"workload","ingress":"tcx","egress":"none","xdp":"none"}]}"#,
        )?;
        assert!(dump.all_attached(&["cali1"]));
        assert!(!dump.all_attached(&["cali1", "cali2"]));
        assert!(!dump.all_attached(&["cali3"]));
        Ok(())
    }

    #[test]
    fn counter_lookup_and_growth() -> Result<()> {
        let parse = |json: &str| -> Result<CountersDump> { Ok(serde_json::from_str(json)?) };
        let before = parse(
            r#"{"node":"n","counters":[
              {"ifindex":2,"interface":"eth0","direction":"from_uplink","reason":"decapsulated","packets":5,"bytes":500}]}"#,
        )?;
        let after = parse(
            r#"{"node":"n","counters":[
              {"ifindex":2,"interface":"eth0","direction":"from_uplink","reason":"decapsulated","packets":9,"bytes":900},
              {"ifindex":2,"interface":"eth0","direction":"xdp_uplink","reason":"drop_xdp_denied","packets":3,"bytes":354},
              {"ifindex":3,"interface":"cali1","direction":"to_workload","reason":"drop_unsupported_l3","packets":2,"bytes":90},
              {"ifindex":3,"interface":"cali1","direction":"to_workload","reason":"allowed","packets":1,"bytes":98}]}"#,
        )?;
        assert_eq!(
            after.grew(&before, "eth0", "from_uplink", "decapsulated"),
            4
        );
        assert_eq!(
            after.grew(&before, "eth0", "xdp_uplink", "drop_xdp_denied"),
            3
        );
        assert_eq!(
            before.grew(&after, "eth0", "from_uplink", "decapsulated"),
            0
        );
        assert_eq!(after.get("eth0", "to_uplink", "encapsulated"), 0);
        assert_eq!(
            after.packets_except("cali1", "to_workload", &["drop_unsupported_l3"]),
            1
        );
        Ok(())
    }

    #[test]
    fn status_parses() -> Result<()> {
        let st: StatusDump = serde_json::from_str(
            r#"{"nodes":[{"node":"fx1-h1","ready":true,"uptime":12,"dataplane":"bpf",
              "programs_loaded":5,"last_sync":"2025-01-01T00:00:00Z","time":"2025-01-01T00:00:01Z"},
              {"node":"fx1-h2","ready":false,"uptime":1.5,"dataplane":"bpf","programs_loaded":0,
              "last_sync":null,"time":"2025-01-01T00:00:01Z"}],
              "endpoints":[{"node":"fx1-h1","orchestrator":"k8s","workload":"default/fx1-h1-p1",
              "endpoint":"eth0","status":"up","reason":null},
              {"node":"fx1-h1","orchestrator":"k8s","workload":"default/fx1-h1-p2",
              "endpoint":"eth0","status":"down","reason":"interface cali123 missing"}]}"#,
        )?;
        assert!(st.node("fx1-h1").is_some_and(|n| n.ready));
        assert!(
            st.node("fx1-h2")
                .is_some_and(|n| !n.ready && n.last_sync.is_none())
        );
        assert_eq!(
            st.endpoint("fx1-h1", "fx1-h1-p1")
                .map(|e| e.status.as_str()),
            Some("up")
        );
        let down = st.endpoint("fx1-h1", "fx1-h1-p2").context("p2")?;
        assert_eq!(down.reason.as_deref(), Some("interface cali123 missing"));
        assert!(st.endpoint("fx1-h2", "fx1-h1-p1").is_none());
        assert!(st.endpoint("fx1-h1", "h1-p1").is_none());
        Ok(())
    }

    #[test]
    fn maps_dumps_parse() -> Result<()> {
        let ct: ConntrackDump = serde_json::from_str(
            r#"{"node":"n","conntrack":[{"proto":"tcp","src":"192.168.2.1","sport":55134,
              "dst":"192.168.3.1","dport":5201,"state":"established","packets_forward":13,
              "packets_reverse":14,"age_s":1.2,"idle_s":0.2}]}"#,
        )?;
        let (a, b) = ("192.168.2.1".parse()?, "192.168.3.1".parse()?);
        assert_eq!(ct.flows("tcp", a, b, 5201).len(), 1);
        assert!(ct.flows("tcp", b, a, 5201).is_empty());
        assert!(ct.flows("udp", a, b, 5201).is_empty());
        let routes: RoutesDump = serde_json::from_str(
            r#"{"node":"n","routes":[{"cidr":"192.168.3.0/26","ifindex":0,"interface":null,
              "kind":"remote_block","next_hop":"10.0.0.2"}]}"#,
        )?;
        let r = routes.by_cidr("192.168.3.0/26").context("route")?;
        assert_eq!(r.next_hop, Some("10.0.0.2".parse()?));
        let eps: EndpointsDump = serde_json::from_str(
            r#"{"node":"n","endpoints":[{"ifindex":3,"interface":"cali1","ip":"192.168.2.1","mac":null}]}"#,
        )?;
        assert_eq!(eps.by_ip(a).map(|e| e.interface.as_str()), Some("cali1"));
        let ifs: IfacesDump = serde_json::from_str(
            r#"{"node":"n","interfaces":[{"ifindex":2,"name":"eth0","role":"uplink","ingress":"tcx",
              "egress":"tcx","xdp":"xdp_driver"}]}"#,
        )?;
        assert!(ifs.uplink_attached("eth0"));
        assert_eq!(ifs.uplink_xdp("eth0"), Some("xdp_driver"));
        let ifs: IfacesDump = serde_json::from_str(
            r#"{"node":"n","interfaces":[{"ifindex":2,"name":"eth0","role":"uplink","ingress":"tcx",
              "egress":"tcx","xdp":"none"}]}"#,
        )?;
        assert!(
            ifs.uplink_attached("eth0"),
            "XDP is not needed for the uplink to be attached"
        );
        assert_eq!(ifs.uplink_xdp("eth0"), Some("none"));
        assert_eq!(ifs.uplink_xdp("cali1"), None);
        Ok(())
    }
}
