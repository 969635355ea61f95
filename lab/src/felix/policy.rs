//! Network policy through felix's CLI: `felix apply|delete -f FILE` (Calico v3 YAML into etcd),
//! `felix bpf policy dump --json` (what the dataplane holds per endpoint and direction, with
//! per-rule packet counters) and `felix policy explain --json` (which rule decides a packet).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::{dump_json, run, run_etcd};

/// `felix apply -f FILE`, in network namespace `ns`; felix's report (`applied Kind name` lines).
pub fn apply(felix: &Path, ns: &str, etcd_url: &str, file: &Path) -> Result<String> {
    let file = file.to_string_lossy();
    run_etcd(felix, ns, etcd_url, &["apply", "-f", &file])
}

/// `felix delete -f FILE`, in network namespace `ns`; felix's report.
pub fn delete(felix: &Path, ns: &str, etcd_url: &str, file: &Path) -> Result<String> {
    let file = file.to_string_lossy();
    run_etcd(felix, ns, etcd_url, &["delete", "-f", &file])
}

/// `felix bpf policy dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyDump {
    pub node: String,
    pub policy: Vec<PolicyRow>,
}

/// One endpoint and direction: the slot and set the kernel maps hold and the compiled rules.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyRow {
    pub interface: String,
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    /// `Ingress` or `Egress`.
    pub direction: String,
    pub slot: u32,
    pub set: u32,
    /// What is wrong with the maps, if anything (e.g. a slot without a set).
    #[serde(default)]
    pub problem: Option<String>,
    /// The policies that apply, in order (their etcd keys).
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub rules: Vec<RuleRow>,
}

/// A compiled rule and its packet counter (first packets of flows it decided).
#[derive(Debug, Clone, Deserialize)]
pub struct RuleRow {
    /// The rule's counter id.
    pub rule: u32,
    pub packets: u64,
    /// `allow`, `deny`, `pass`, `end-of-tier deny`, `end-of-profile`, ...
    pub action: String,
    /// Which rule, as [`RuleRef`]'s `Display` spells it.
    pub by: String,
    pub matches: String,
}

impl PolicyDump {
    /// The row of `interface` in `direction` (`Ingress` or `Egress`).
    pub fn row(&self, interface: &str, direction: &str) -> Option<&PolicyRow> {
        self.policy
            .iter()
            .find(|r| r.interface == interface && r.direction == direction)
    }

    /// The counter of rule `by` of `interface` in `direction` (`None` when not programmed).
    pub fn packets(&self, interface: &str, direction: &str, by: &RuleRef) -> Option<u64> {
        let by = by.to_string();
        self.row(interface, direction)?
            .rules
            .iter()
            .find(|r| r.by == by)
            .map(|r| r.packets)
    }
}

/// `felix bpf policy dump --node NODE [--iface IFACE] --json`.
pub fn dump(felix: &Path, node: &str, iface: Option<&str>) -> Result<PolicyDump> {
    let mut what = vec!["policy", "dump"];
    if let Some(iface) = iface {
        what.extend(["--iface", iface]);
    }
    dump_json(felix, node, &what)
}

/// `felix bpf policy dump --node NODE [--iface IFACE]` as text.
pub fn dump_table(felix: &Path, node: &str, iface: Option<&str>) -> Result<String> {
    let mut what = vec!["policy", "dump"];
    if let Some(iface) = iface {
        what.extend(["--iface", iface]);
    }
    run(felix, node, &what)
}

/// What decided a packet, as `felix policy explain --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleRef {
    /// Rule `index` (from 0) of a policy; `policy` is `<namespace>/<name>` for a NetworkPolicy.
    Policy {
        tier: String,
        policy: String,
        direction: String,
        index: usize,
    },
    /// A tier's policies applied but none decided: the tier's default action.
    EndOfTier { tier: String, direction: String },
    /// Rule `index` of a profile.
    Profile {
        profile: String,
        direction: String,
        index: usize,
    },
    /// Nothing allowed the packet.
    DefaultDeny { direction: String },
}

impl RuleRef {
    /// Rule `index` of `policy` (`<name>`, or `<namespace>/<name>` for a NetworkPolicy) in `tier`.
    pub fn policy(tier: &str, policy: &str, direction: &str, index: usize) -> Self {
        RuleRef::Policy {
            tier: tier.to_owned(),
            policy: policy.to_owned(),
            direction: direction.to_owned(),
            index,
        }
    }
}

/// felix's own wording (the `by` column of `felix bpf policy dump`).
impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lower = |d: &str| d.to_lowercase();
        match self {
            RuleRef::Policy {
                tier,
                policy,
                direction,
                index,
            } => write!(
                f,
                "tier {tier} policy {policy} {} rule {index}",
                lower(direction)
            ),
            RuleRef::EndOfTier { tier, direction } => {
                write!(f, "end of tier {tier} ({})", lower(direction))
            }
            RuleRef::Profile {
                profile,
                direction,
                index,
            } => write!(f, "profile {profile} {} rule {index}", lower(direction)),
            RuleRef::DefaultDeny { direction } => write!(
                f,
                "default deny ({}): no policy or profile allowed it",
                lower(direction)
            ),
        }
    }
}

/// `felix policy explain --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Explanation {
    pub packet: String,
    /// The workload endpoint (etcd key) holding the source address, if any.
    pub from: Option<String>,
    pub to: Option<String>,
    pub checks: Vec<Check>,
    pub allowed: bool,
}

/// One policy check on the packet's way: the sender's egress or the receiver's ingress.
#[derive(Debug, Clone, Deserialize)]
pub struct Check {
    pub endpoint: String,
    /// `Ingress` or `Egress`.
    pub direction: String,
    pub allow: bool,
    pub by: RuleRef,
    pub matches: String,
    pub policies: Vec<String>,
    pub profiles: Vec<String>,
}

impl Explanation {
    /// The check in `direction` (`Ingress` or `Egress`).
    pub fn check(&self, direction: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.direction == direction)
    }

    /// The check that decided: the first that denied, else the last (both allowed).
    pub fn deciding(&self) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| !c.allow)
            .or_else(|| self.checks.last())
    }
}

/// A packet to explain.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
    /// `tcp`, `udp`, `icmp`, ...
    pub proto: &'a str,
    /// Destination port (TCP, UDP).
    pub port: Option<u16>,
}

impl Query<'_> {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["policy", "explain", "--from"].map(String::from).to_vec();
        args.push(self.from.to_string());
        args.extend(["--to".into(), self.to.to_string()]);
        args.extend(["--proto".into(), self.proto.to_owned()]);
        if let Some(port) = self.port {
            args.extend(["--port".into(), port.to_string()]);
        }
        args
    }
}

/// `felix policy explain ... --json`, run in network namespace `ns`.
pub fn explain(felix: &Path, ns: &str, etcd_url: &str, query: Query) -> Result<Explanation> {
    let mut args = query.args();
    args.push("--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_etcd(felix, ns, etcd_url, &args)?;
    serde_json::from_str(&out).with_context(|| format!("parsing `felix policy explain`: {out}"))
}

/// `felix policy explain ...` as text.
pub fn explain_text(felix: &Path, ns: &str, etcd_url: &str, query: Query) -> Result<String> {
    let args = query.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_etcd(felix, ns, etcd_url, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `felix bpf policy dump --json` of a pod with an egress policy (felix's output, trimmed).
    const DUMP: &str = r#"{"node":"fx1-h1","policy":[
      {"direction":"Ingress","ifindex":3,"interface":"cali1","ip":"192.168.0.0","policies":[],
       "problem":null,"profiles":["kns.default"],"rules":[
        {"action":"allow","by":"profile kns.default ingress rule 0","matches":"any","packets":0,"rule":0},
        {"action":"deny","by":"default deny (ingress): no policy or profile allowed it","matches":"any","packets":0,"rule":2}],
       "set":1,"slot":1,"tables":{"ips":1,"ports":2,"verdicts":1}},
      {"direction":"Egress","ifindex":3,"interface":"cali1","ip":"192.168.0.0",
       "policies":["/calico/resources/v3/projectcalico.org/globalnetworkpolicies/deny-icmp-from-h1-p1"],
       "problem":null,"profiles":["kns.default"],"rules":[
        {"action":"deny","by":"tier default policy deny-icmp-from-h1-p1 egress rule 0","matches":"icmp","packets":2,"rule":6},
        {"action":"end-of-tier deny","by":"end of tier default (egress)","matches":"any","packets":0,"rule":8}],
       "set":3,"slot":3,"tables":{"ips":1,"ports":4,"verdicts":2}}]}"#;

    /// `felix policy explain --json` of an allowed TCP packet (felix's output).
    const EXPLAIN: &str = r#"{"packet":"192.168.0.0:40000 -> 192.168.0.64:5201 proto 6",
      "from":"/calico/resources/v3/projectcalico.org/workloadendpoints/default/a","to":"/calico/resources/v3/projectcalico.org/workloadendpoints/default/b",
      "checks":[{"endpoint":"/calico/resources/v3/projectcalico.org/workloadendpoints/default/a","direction":"Egress","allow":true,
        "by":{"kind":"policy","tier":"default","policy":"deny-icmp-from-h1-p1","direction":"Egress","index":1},
        "matches":"any","policies":["/calico/resources/v3/projectcalico.org/globalnetworkpolicies/deny-icmp-from-h1-p1"],"profiles":["kns.default"]},
       {"endpoint":"/calico/resources/v3/projectcalico.org/workloadendpoints/default/b","direction":"Ingress","allow":true,
        "by":{"kind":"profile","profile":"kns.default","direction":"Ingress","index":0},
        "matches":"any","policies":[],"profiles":["kns.default"]}],
      "allowed":true}"#;

    #[test]
    fn dump_counters_by_rule() -> Result<()> {
        let dump: PolicyDump = serde_json::from_str(DUMP)?;
        let deny = RuleRef::policy("default", "deny-icmp-from-h1-p1", "Egress", 0);
        assert_eq!(dump.packets("cali1", "Egress", &deny), Some(2));
        assert_eq!(dump.packets("cali1", "Ingress", &deny), None);
        let end = RuleRef::EndOfTier {
            tier: "default".into(),
            direction: "Egress".into(),
        };
        assert_eq!(dump.packets("cali1", "Egress", &end), Some(0));
        let dd = RuleRef::DefaultDeny {
            direction: "Ingress".into(),
        };
        assert_eq!(dump.packets("cali1", "Ingress", &dd), Some(0));
        assert_eq!(dump.row("cali1", "Ingress").map(|r| r.slot), Some(1));
        Ok(())
    }

    #[test]
    fn explain_parses_and_names_rules_as_the_dump_does() -> Result<()> {
        let e: Explanation = serde_json::from_str(EXPLAIN)?;
        assert!(e.allowed);
        let egress = e.check("Egress").context("egress")?;
        assert_eq!(
            egress.by,
            RuleRef::policy("default", "deny-icmp-from-h1-p1", "Egress", 1)
        );
        assert_eq!(
            e.deciding().map(|c| c.by.to_string()),
            Some("profile kns.default ingress rule 0".to_owned())
        );
        assert_eq!(
            RuleRef::policy("security", "security.isolate-h2-p2", "Ingress", 0).to_string(),
            "tier security policy security.isolate-h2-p2 ingress rule 0"
        );
        assert_eq!(
            RuleRef::policy("default", "default/allow-iperf3", "Ingress", 0).to_string(),
            "tier default policy default/allow-iperf3 ingress rule 0"
        );
        let q = Query {
            from: "192.168.0.0".parse()?,
            to: "192.168.0.64".parse()?,
            proto: "tcp",
            port: Some(5201),
        };
        assert_eq!(
            q.args().join(" "),
            "policy explain --from 192.168.0.0 --to 192.168.0.64 --proto tcp --port 5201"
        );
        Ok(())
    }
}
