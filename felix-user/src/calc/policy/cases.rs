//! The policy semantics suite, as data: one YAML file per scenario in `tests/policy-cases/`, each
//! holding Calico v3 resources and checks (endpoint, direction, packet, expected verdict and the
//! rule that decides it). The reference evaluator, the compiled maps and the kernel programs all
//! run the same checks.
//!
//! ```yaml
//! description: Pass in a higher tier falls through to the next tier
//! resources:              # Calico v3 documents, read strictly as `felix apply` reads them
//!   - {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: security}, spec: {order: 100}}
//! checks:
//!   - endpoint: default/pod-a           # namespace/name of a WorkloadEndpoint in resources
//!     direction: ingress
//!     packet: {src: 10.65.0.2, dst: 10.65.0.1, proto: TCP, sport: 40000, dport: 80}
//!     expect: allow                     # allow | deny
//!     by: "tier default policy default/allow-web ingress rule 0"
//!     note: optional words on why        # shown when a check fails
//! ```
//!
//! A packet has `sport`/`dport` exactly when its protocol is TCP, UDP or SCTP, and `icmp: {type,
//! code}` exactly when it is ICMP. Its local address (`dst` for ingress, `src` for egress) must be
//! one of the endpoint's addresses. Addresses are only data: pods in 10.65.0.0/16, the rest in
//! 10.0.0.0/8 or 192.0.2.0/24.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use calico::model::{
    ModelError, Object, Protocol, Resource, WorkloadEndpointSpec, document::parse_documents,
};
use serde::Deserialize;

use super::{L4, Packet, PolicyDirection};

/// One scenario file.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub path: PathBuf,
    pub description: String,
    pub resources: Vec<Resource>,
    pub checks: Vec<Check>,
}

/// One expectation: `packet` crossing `endpoint` in `direction` is allowed or denied, by `by`.
#[derive(Clone, Debug)]
pub struct Check {
    /// `(namespace, name)` of a WorkloadEndpoint of the scenario.
    pub endpoint: (String, String),
    pub direction: PolicyDirection,
    pub packet: Packet,
    pub expect_allow: bool,
    /// The deciding rule, as [`super::RuleRef`] displays it.
    pub by: String,
    /// Why, in words (optional).
    pub note: Option<String>,
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("{}: resources: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: resources: {source}", path.display())]
    Resource {
        path: PathBuf,
        source: Box<ModelError>,
    },
    #[error("{}: resources: {message}", path.display())]
    Resources { path: PathBuf, message: String },
    #[error("{}: checks[{index}]: {message}", path.display())]
    Check {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("{}: no scenario files (*.yaml)", path.display())]
    Empty { path: PathBuf },
}

/// `tests/policy-cases` of this crate.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy-cases")
}

/// Loads every `*.yaml` scenario of `dir`, sorted by file name.
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>, CaseError> {
    let io = |source| CaseError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(CaseError::Empty {
            path: dir.to_path_buf(),
        });
    }
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// Loads one scenario file.
pub fn load(path: &Path) -> Result<Scenario, CaseError> {
    let text = std::fs::read_to_string(path).map_err(|source| CaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses a scenario's text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Scenario, CaseError> {
    let raw: RawScenario = serde_yaml_ng::from_str(text).map_err(|source| CaseError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let resources = parse_resources(path, &raw.resources)?;
    let mut scenario = Scenario {
        path: path.to_path_buf(),
        description: raw.description,
        resources,
        checks: Vec::new(),
    };
    for (index, raw_check) in raw.checks.into_iter().enumerate() {
        let check = raw_check
            .into_check()
            .and_then(|c| scenario.validate(&c).map(|()| c))
            .map_err(|message| CaseError::Check {
                path: path.to_path_buf(),
                index,
                message,
            })?;
        scenario.checks.push(check);
    }
    Ok(scenario)
}

/// Decodes the resources strictly (unknown fields are errors), with defaults applied.
fn parse_resources(path: &Path, values: &[serde_json::Value]) -> Result<Vec<Resource>, CaseError> {
    let json = serde_json::to_string(values).map_err(|source| CaseError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let resources = parse_documents(&json)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CaseError::Resource {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    let mut keys = BTreeSet::new();
    for r in &resources {
        if !keys.insert(r.key()) {
            return Err(CaseError::Resources {
                path: path.to_path_buf(),
                message: format!("{} {} is given twice", r.kind(), r.qualified_name()),
            });
        }
    }
    Ok(resources)
}

impl Scenario {
    /// The workload endpoint a check is about (always there in a loaded scenario).
    pub fn endpoint(&self, check: &Check) -> Option<&Object<WorkloadEndpointSpec>> {
        let (ns, name) = &check.endpoint;
        self.resources.iter().find_map(|r| match r {
            Resource::WorkloadEndpoint(o)
                if o.metadata.name == *name && o.metadata.namespace.as_deref() == Some(ns) =>
            {
                Some(o)
            }
            _ => None,
        })
    }

    /// Checks that the endpoint exists and owns the packet's local address.
    fn validate(&self, check: &Check) -> Result<(), String> {
        let (ns, name) = &check.endpoint;
        let ep = self
            .endpoint(check)
            .ok_or_else(|| format!("no WorkloadEndpoint {ns}/{name} in resources"))?;
        let local = match check.direction {
            PolicyDirection::Ingress => check.packet.dst,
            PolicyDirection::Egress => check.packet.src,
        };
        if ep
            .spec
            .ip_networks
            .iter()
            .any(|c| c.network().contains(&IpAddr::V4(local)))
        {
            Ok(())
        } else {
            Err(format!(
                "the local address {local} is not one of {ns}/{name}'s addresses"
            ))
        }
    }
}

impl Check {
    /// A one-line summary: endpoint, direction and packet.
    pub fn describe(&self) -> String {
        let (ns, name) = &self.endpoint;
        let p = &self.packet;
        let l4 = match p.l4 {
            L4::Ports { src, dst } => format!(":{src} -> {}:{dst}", p.dst),
            L4::Icmp { icmp_type, code } => {
                format!(" -> {} icmp {icmp_type}/{code}", p.dst)
            }
            L4::Other => format!(" -> {}", p.dst),
        };
        format!(
            "{ns}/{name} {} proto {} {}{l4}",
            self.direction.as_str().to_lowercase(),
            p.proto,
            p.src
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    resources: Vec<serde_json::Value>,
    checks: Vec<RawCheck>,
}

/// A check's direction in any case (`ingress`): the check format is felix's own, unlike the
/// resources, where Calico takes only `Ingress` / `Egress`.
fn direction_any_case<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PolicyDirection, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    endpoint: String,
    #[serde(deserialize_with = "direction_any_case")]
    direction: PolicyDirection,
    packet: RawPacket,
    expect: Verdict,
    by: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Allow,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPacket {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: Protocol,
    #[serde(default)]
    sport: Option<u16>,
    #[serde(default)]
    dport: Option<u16>,
    #[serde(default)]
    icmp: Option<RawIcmp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIcmp {
    #[serde(rename = "type")]
    icmp_type: u8,
    code: u8,
}

impl RawCheck {
    fn into_check(self) -> Result<Check, String> {
        let (ns, name) = self
            .endpoint
            .split_once('/')
            .ok_or_else(|| format!("endpoint {:?} is not namespace/name", self.endpoint))?;
        if self.by.trim().is_empty() {
            return Err("by is empty".into());
        }
        Ok(Check {
            endpoint: (ns.to_string(), name.to_string()),
            direction: self.direction,
            packet: self.packet.into_packet()?,
            expect_allow: matches!(self.expect, Verdict::Allow),
            by: self.by,
            note: self.note,
        })
    }
}

impl RawPacket {
    fn into_packet(self) -> Result<Packet, String> {
        let proto = self.proto.number();
        let has_ports = matches!(proto, 6 | 17 | 132);
        let l4 = match (self.sport, self.dport, self.icmp) {
            (Some(src), Some(dst), None) if has_ports => L4::Ports { src, dst },
            (None, None, Some(i)) if proto == 1 => L4::Icmp {
                icmp_type: i.icmp_type,
                code: i.code,
            },
            (None, None, None) if !has_ports && proto != 1 => L4::Other,
            _ => {
                return Err(format!(
                    "packet: protocol {} needs {}",
                    self.proto,
                    match proto {
                        1 => "icmp: {type, code} and no ports",
                        _ if has_ports => "sport and dport and no icmp",
                        _ => "no ports and no icmp",
                    }
                ));
            }
        };
        Ok(Packet {
            src: self.src,
            dst: self.dst,
            proto,
            l4,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{super::reference, *};

    #[test]
    fn the_reference_evaluator_passes_every_check() {
        let scenarios = load_all(&cases_dir()).unwrap();
        let mut failures = Vec::new();
        let mut total = 0;
        for s in &scenarios {
            for (i, check) in s.checks.iter().enumerate() {
                total += 1;
                let ep = s.endpoint(check).unwrap();
                let d = reference::evaluate(&s.resources, ep, check.direction, &check.packet);
                let verdict = |allow| if allow { "allow" } else { "deny" };
                if d.allow != check.expect_allow || d.by.to_string() != check.by {
                    failures.push(format!(
                        "{} checks[{i}] ({}): expected {} by {:?}, got {} by {:?}{}",
                        s.path.file_name().unwrap_or_default().to_string_lossy(),
                        check.describe(),
                        verdict(check.expect_allow),
                        check.by,
                        verdict(d.allow),
                        d.by.to_string(),
                        check
                            .note
                            .as_ref()
                            .map_or(String::new(), |n| format!(" [{n}]")),
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {total} checks failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn the_suite_is_big_enough_and_described() {
        let scenarios = load_all(&cases_dir()).unwrap();
        let checks: usize = scenarios.iter().map(|s| s.checks.len()).sum();
        assert!(scenarios.len() >= 15, "{} scenarios", scenarios.len());
        assert!(checks >= 60, "{checks} checks");
        for s in &scenarios {
            assert!(!s.description.trim().is_empty(), "{}", s.path.display());
            assert!(!s.checks.is_empty(), "{}", s.path.display());
        }
    }

    const BASE: &str = "
description: d
resources:
  - apiVersion: projectcalico.org/v3
    kind: WorkloadEndpoint
    metadata: {name: pod-a, namespace: default}
    spec: {interfaceName: calix1, ipNetworks: [10.65.0.1/32]}
checks:
";

    fn parse_check(check: &str) -> Result<Scenario, CaseError> {
        parse(Path::new("t.yaml"), &format!("{BASE}{check}"))
    }

    #[test]
    fn a_well_formed_check_loads() {
        let s = parse_check(
            "  - {endpoint: default/pod-a, direction: ingress, expect: deny, by: x,
       packet: {src: 10.0.0.9, dst: 10.65.0.1, proto: ICMP, icmp: {type: 8, code: 0}}}
  - {endpoint: default/pod-a, direction: Egress, expect: allow, by: y,
       packet: {src: 10.65.0.1, dst: 10.0.0.9, proto: 17, sport: 1, dport: 53}}",
        )
        .unwrap();
        assert_eq!(
            s.checks[0].packet.l4,
            L4::Icmp {
                icmp_type: 8,
                code: 0
            }
        );
        assert_eq!(s.checks[1].packet.proto, 17);
        assert_eq!(s.checks[1].direction, PolicyDirection::Egress);
        assert!(s.checks[1].expect_allow);
    }

    #[test]
    fn bad_checks_are_rejected_with_their_index() {
        for (check, want) in [
            (
                "{endpoint: default/pod-b, direction: ingress, expect: deny, by: x,
                  packet: {src: 10.0.0.9, dst: 10.65.0.1, proto: 47}}",
                "no WorkloadEndpoint default/pod-b",
            ),
            (
                "{endpoint: default/pod-a, direction: ingress, expect: deny, by: x,
                  packet: {src: 10.0.0.9, dst: 10.65.0.2, proto: 47}}",
                "local address 10.65.0.2",
            ),
            (
                "{endpoint: default/pod-a, direction: ingress, expect: deny, by: x,
                  packet: {src: 10.0.0.9, dst: 10.65.0.1, proto: TCP}}",
                "sport and dport",
            ),
            (
                "{endpoint: default/pod-a, direction: ingress, expect: deny, by: x,
                  packet: {src: 10.0.0.9, dst: 10.65.0.1, proto: ICMP, sport: 1, dport: 2}}",
                "icmp: {type, code}",
            ),
        ] {
            let err = parse_check(&format!("  - {check}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("checks[0]") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse_check(
            "  - {endpoint: default/pod-a, direction: ingress, expect: deny, by: x, typo: 1,
       packet: {src: 10.0.0.9, dst: 10.65.0.1, proto: 47}}",
        )
        .unwrap_err();
        assert!(err.to_string().contains("typo"), "{err}");
        let bad_resource = BASE.replace("ipNetworks", "ipNetwork") + "  []";
        let err = parse(Path::new("t.yaml"), &bad_resource).unwrap_err();
        assert!(matches!(err, CaseError::Resource { .. }), "{err}");
    }
}
