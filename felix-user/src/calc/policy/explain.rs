//! `felix policy explain`: which tier, policy and rule decide a packet, and why, computed from
//! the datastore the way felix computes what it programs (calculation, compiler, table lookup).

use std::fmt;

use serde::Serialize;

use super::{
    L4, Packet, PolicyDirection, RuleRef, calc::PolicyCalc, compile::compile, program::Probe,
};

/// One policy check on the packet's way: the sender's egress or the receiver's ingress.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Workload endpoint key.
    pub endpoint: String,
    pub direction: PolicyDirection,
    pub allow: bool,
    pub by: RuleRef,
    /// The deciding rule's criteria, in short.
    pub matches: String,
    /// Policies that apply to the endpoint in this direction, in order.
    pub policies: Vec<String>,
    pub profiles: Vec<String>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub packet: String,
    /// The workload endpoint holding the source address, if any.
    pub from: Option<String>,
    /// The workload endpoint holding the destination address, if any.
    pub to: Option<String>,
    pub checks: Vec<Check>,
    pub allowed: bool,
}

/// The fields of `packet` that an endpoint's policy in `direction` looks at.
pub fn probe_for(packet: &Packet, direction: PolicyDirection) -> Probe {
    let remote = match direction {
        PolicyDirection::Ingress => packet.src,
        PolicyDirection::Egress => packet.dst,
    };
    let (dst_port, src_port) = match packet.l4 {
        L4::Icmp { icmp_type, code } => (u16::from(icmp_type) << 8 | u16::from(code), 0),
        _ => (packet.dst_port(), packet.src_port()),
    };
    Probe {
        remote,
        proto: packet.proto,
        dst_port,
        src_port,
    }
}

fn check(
    calc: &mut PolicyCalc,
    key: &str,
    direction: PolicyDirection,
    packet: &Packet,
) -> Option<Check> {
    let (group, program) = calc.program_for(key, direction)?;
    let probe = probe_for(packet, direction);
    // A program the compiler refuses is denied by felix: explain it as the default deny.
    let outcome = compile(&program).ok().and_then(|c| c.lookup(&probe));
    let entry = outcome.and_then(|o| o.entry).map(|i| &program.entries[i]);
    Some(Check {
        endpoint: key.to_string(),
        direction,
        allow: outcome.is_some_and(|o| o.allow),
        by: entry.map_or_else(|| program.default_deny.clone(), |e| e.by.clone()),
        matches: entry
            .and_then(|e| e.matcher.as_ref())
            .map_or_else(|| "any".into(), |m| m.to_string()),
        policies: group.policies.clone(),
        profiles: group.profiles.clone(),
    })
}

/// Explains `packet`: the sender's egress policy (when it is a workload) and the receiver's
/// ingress policy (when it is one).
pub fn explain(calc: &mut PolicyCalc, packet: &Packet) -> Explanation {
    let from = calc.workload_holding(packet.src).map(str::to_string);
    let to = calc.workload_holding(packet.dst).map(str::to_string);
    let mut checks = Vec::new();
    if let Some(key) = &from {
        checks.extend(check(calc, key, PolicyDirection::Egress, packet));
    }
    if let Some(key) = &to {
        checks.extend(check(calc, key, PolicyDirection::Ingress, packet));
    }
    let allowed = checks.iter().all(|c| c.allow);
    Explanation {
        packet: describe(packet),
        from,
        to,
        checks,
        allowed,
    }
}

fn describe(p: &Packet) -> String {
    match p.l4 {
        L4::Ports { src, dst } => format!("{}:{src} -> {}:{dst} proto {}", p.src, p.dst, p.proto),
        L4::Icmp { icmp_type, code } => {
            format!("{} -> {} icmp type {icmp_type} code {code}", p.src, p.dst)
        }
        L4::Other => format!("{} -> {} proto {}", p.src, p.dst, p.proto),
    }
}

/// Short name of an endpoint key: `<namespace>/<name>` of the resource.
fn short(key: &str) -> String {
    calico::model::parse_key(key)
        .map(|(_, ns, name)| ns.map_or(name.clone(), |ns| format!("{ns}/{name}")))
        .unwrap_or_else(|| key.to_string())
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "packet: {}", self.packet)?;
        let who = |k: &Option<String>| {
            k.as_ref().map_or_else(
                || "not a workload endpoint".into(),
                |k| format!("workload {}", short(k)),
            )
        };
        writeln!(f, "source: {}", who(&self.from))?;
        writeln!(f, "destination: {}", who(&self.to))?;
        if self.checks.is_empty() {
            writeln!(
                f,
                "no workload endpoint on either side: felix's policy does not judge this packet"
            )?;
        }
        for c in &self.checks {
            let verdict = if c.allow { "ALLOW" } else { "DENY" };
            writeln!(
                f,
                "{} of {}: {verdict} by {}",
                c.direction.as_str().to_lowercase(),
                short(&c.endpoint),
                c.by
            )?;
            writeln!(f, "  rule matches: {}", c.matches)?;
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            writeln!(f, "  policies applying, in order: {}", list(&c.policies))?;
            writeln!(f, "  profiles: {}", list(&c.profiles))?;
        }
        writeln!(
            f,
            "verdict: {}",
            if self.allowed { "allowed" } else { "denied" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::policy::cases::{cases_dir, load};

    fn calc_of(file: &str) -> PolicyCalc {
        let scenario = load(&cases_dir().join(file)).expect("scenario loads");
        PolicyCalc::from_resources(&scenario.resources)
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], dport: u16) -> Packet {
        Packet {
            src: src.into(),
            dst: dst.into(),
            proto: 6,
            l4: L4::Ports {
                src: 40000,
                dst: dport,
            },
        }
    }

    #[test]
    fn both_sides_are_explained_and_the_first_deny_names_its_rule() {
        let mut calc = calc_of("01-rule-order.yaml");
        // pod-b (no policy, no profile) sends to pod-a (policy "rules").
        let answer = explain(&mut calc, &tcp([10, 65, 0, 2], [10, 65, 0, 1], 22));
        assert_eq!(answer.checks.len(), 2);
        assert_eq!(answer.checks[0].direction, PolicyDirection::Egress);
        assert_eq!(
            answer.checks[0].by,
            RuleRef::DefaultDeny {
                direction: PolicyDirection::Egress
            }
        );
        assert_eq!(
            answer.checks[1].by.to_string(),
            "tier default policy rules ingress rule 1"
        );
        assert_eq!(answer.checks[1].matches, "tcp dst port 22");
        assert_eq!(answer.checks[1].policies.len(), 1);
        assert!(!answer.allowed);
        let text = answer.to_string();
        assert!(text.contains("source: workload default/pod-b"), "{text}");
        assert!(
            text.contains(
                "ingress of default/pod-a: DENY by tier default policy rules ingress rule 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("verdict: denied\n"), "{text}");
    }

    #[test]
    fn addresses_outside_every_workload_are_not_judged() {
        let mut calc = calc_of("01-rule-order.yaml");
        let answer = explain(&mut calc, &tcp([192, 0, 2, 1], [198, 51, 100, 1], 80));
        assert!(answer.checks.is_empty());
        assert!(answer.allowed);
        assert!(answer.to_string().contains("does not judge"));
    }
}
