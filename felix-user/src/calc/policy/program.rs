//! An endpoint's policy for one direction, flattened: the ordered entries the compiler turns
//! into lookup tables. Selectors are already resolved to address sets and the local side of
//! every rule is already decided, so an entry only tests the packet's remote address, protocol
//! and ports.

use std::sync::Arc;

use ipnet::Ipv4Net;

use super::RuleRef;

/// A set of IPv4 networks (their union), sorted and deduplicated.
pub type NetSet = Arc<Vec<Ipv4Net>>;

/// An inclusive range of port values (ICMP: `type << 8 | code`).
pub type PortRange = (u16, u16);

/// Address criteria on the remote side: in every `all_of` set and in no `none_of` set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrMatch {
    pub all_of: Vec<NetSet>,
    pub none_of: Vec<NetSet>,
}

impl AddrMatch {
    /// Whether any address matches without looking (no criteria).
    pub fn is_any(&self) -> bool {
        self.all_of.is_empty() && self.none_of.is_empty()
    }

    /// Whether `addr` matches.
    pub fn matches(&self, addr: std::net::Ipv4Addr) -> bool {
        let holds = |set: &NetSet| set.iter().any(|n| n.contains(&addr));
        self.all_of.iter().all(holds) && !self.none_of.iter().any(holds)
    }
}

/// Port criteria: in one of `any_of` (when not empty) and in none of `none_of`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortMatch {
    pub any_of: Vec<PortRange>,
    pub none_of: Vec<PortRange>,
}

impl PortMatch {
    /// Whether every port matches (no criteria).
    pub fn is_any(&self) -> bool {
        self.any_of.is_empty() && self.none_of.is_empty()
    }

    /// Whether `port` matches.
    pub fn matches(&self, port: u16) -> bool {
        let within = |r: &PortRange| r.0 <= port && port <= r.1;
        (self.any_of.is_empty() || self.any_of.iter().any(within))
            && !self.none_of.iter().any(within)
    }
}

/// Protocol criteria.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProtoMatch {
    pub is: Option<u8>,
    pub not: Option<u8>,
}

impl ProtoMatch {
    /// Whether `proto` matches.
    pub fn matches(&self, proto: u8) -> bool {
        self.is.is_none_or(|p| p == proto) && self.not.is_none_or(|p| p != proto)
    }
}

/// What a rule tests. `dst_ports` holds ICMP `type << 8 | code` ranges for ICMP rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Match {
    pub proto: ProtoMatch,
    pub remote: AddrMatch,
    pub dst_ports: PortMatch,
    pub src_ports: PortMatch,
}

/// What an entry does to the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Allow, decided.
    Allow,
    /// Deny, decided.
    Deny,
    /// Skip the rest of this tier (or profile).
    Pass,
    /// End of a tier that applies: undecided packets get its default action (`Deny`, or go on
    /// when `pass`); passed ones go on.
    EndOfTier { pass: bool },
    /// End of a profile: passed packets go on to the next profile.
    EndOfProfile,
}

/// One entry of a flattened policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub by: RuleRef,
    pub step: Step,
    /// `None` for tier and profile ends (they match every packet).
    pub matcher: Option<Match>,
}

/// An endpoint's policy for one direction. Packets nothing decides are denied by
/// [`Program::default_deny`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Program {
    pub entries: Vec<Entry>,
    pub default_deny: RuleRef,
}

/// The packet fields a [`Program`] looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub remote: std::net::Ipv4Addr,
    pub proto: u8,
    /// Destination port, or ICMP `type << 8 | code`.
    pub dst_port: u16,
    /// Source port (0 for ICMP).
    pub src_port: u16,
}

impl Program {
    /// Evaluates entry by entry (the slow path the compiled tables must agree with): the
    /// verdict and the index of the deciding entry (`None` for the default deny).
    pub fn evaluate(&self, probe: &Probe) -> (bool, Option<usize>) {
        let mut passed = false;
        for (i, entry) in self.entries.iter().enumerate() {
            match entry.step {
                Step::EndOfTier { pass } => {
                    if !passed && !pass {
                        return (false, Some(i));
                    }
                    passed = false;
                }
                Step::EndOfProfile => passed = false,
                _ if passed => {}
                step => {
                    let hit = entry.matcher.as_ref().is_none_or(|m| m.matches(probe));
                    match (hit, step) {
                        (true, Step::Allow) => return (true, Some(i)),
                        (true, Step::Deny) => return (false, Some(i)),
                        (true, Step::Pass) => passed = true,
                        _ => {}
                    }
                }
            }
        }
        (false, None)
    }
}

impl Match {
    /// Whether `probe` matches every criterion.
    pub fn matches(&self, probe: &Probe) -> bool {
        self.proto.matches(probe.proto)
            && self.remote.matches(probe.remote)
            && self.dst_ports.matches(probe.dst_port)
            && self.src_ports.matches(probe.src_port)
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

fn write_nets(f: &mut std::fmt::Formatter<'_>, set: &NetSet) -> std::fmt::Result {
    const SHOWN: usize = 4;
    let shown: Vec<String> = set.iter().take(SHOWN).map(|n| n.to_string()).collect();
    write!(f, "{{{}", shown.join(", "))?;
    if set.len() > SHOWN {
        write!(f, ", ... {} in all", set.len())?;
    }
    f.write_str("}")
}

fn write_ports(f: &mut std::fmt::Formatter<'_>, ranges: &[PortRange]) -> std::fmt::Result {
    let list: Vec<String> = ranges
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    f.write_str(&list.join(","))
}

/// Short text of the criteria, e.g. `tcp remote in {10.0.0.0/8} dst port 80,443`.
impl std::fmt::Display for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = 0;
        let mut sep = |f: &mut std::fmt::Formatter<'_>| -> std::fmt::Result {
            parts += 1;
            if parts > 1 { f.write_str(" ") } else { Ok(()) }
        };
        if let Some(p) = self.proto.is {
            sep(f)?;
            f.write_str(&proto_name(p))?;
        }
        if let Some(p) = self.proto.not {
            sep(f)?;
            write!(f, "not {}", proto_name(p))?;
        }
        for set in &self.remote.all_of {
            sep(f)?;
            f.write_str("remote in ")?;
            write_nets(f, set)?;
        }
        for set in &self.remote.none_of {
            sep(f)?;
            f.write_str("remote not in ")?;
            write_nets(f, set)?;
        }
        let icmp = self.proto.is == Some(1);
        for (name, ports) in [("dst", &self.dst_ports), ("src", &self.src_ports)] {
            let what = if icmp { "icmp type<<8|code" } else { "port" };
            if !ports.any_of.is_empty() {
                sep(f)?;
                write!(f, "{name} {what} ")?;
                write_ports(f, &ports.any_of)?;
            }
            if !ports.none_of.is_empty() {
                sep(f)?;
                write!(f, "{name} {what} not ")?;
                write_ports(f, &ports.none_of)?;
            }
        }
        if parts == 0 {
            f.write_str("any")?;
        }
        Ok(())
    }
}

impl Step {
    /// Lower-case name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Step::Allow => "allow",
            Step::Deny => "deny",
            Step::Pass => "pass",
            Step::EndOfTier { pass: false } => "end-of-tier deny",
            Step::EndOfTier { pass: true } => "end-of-tier pass",
            Step::EndOfProfile => "end-of-profile",
        }
    }
}
