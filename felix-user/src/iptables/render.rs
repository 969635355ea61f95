//! Pure rendering: calculated programs to iptables chains (as data, then as
//! `iptables-restore` text) and ipsets (as `ipset restore` text). No process is run here.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use ipnet::Ipv4Net;

use super::{Config, RenderError};
use crate::calc::policy::{
    PolicyDirection, RuleRef,
    calc::{GroupKey, PolicyCalc},
    program::{Match, PortMatch, PortRange, Program, Step},
};

/// Prefix of every chain and ipset felix makes; cleanup removes everything that has it.
pub const PREFIX: &str = "felix-";
/// Longest chain name iptables accepts (`XT_EXTENSION_MAXNAMELEN` less the NUL).
pub const MAX_CHAIN_NAME: usize = 28;
/// Longest ipset name (`IPSET_MAXNAMELEN` less the NUL).
pub const MAX_SET_NAME: usize = 31;
/// Mark bit: policy accepted the packet.
pub const MARK_ACCEPT: u32 = 0x1_0000;
/// Mark bit: a Pass rule matched in the current tier or profile.
pub const MARK_PASS: u32 = 0x2_0000;
/// Ports one `-m multiport` match takes (a range counts twice).
pub const MULTIPORT_MAX: usize = 15;

/// Top-level chain jumped to from the built-in `FORWARD`.
pub const CHAIN_FORWARD: &str = "felix-FORWARD";
/// Top-level chain jumped to from the built-in `INPUT`.
pub const CHAIN_INPUT: &str = "felix-INPUT";
/// Top-level chain jumped to from the built-in `OUTPUT` (only when host-to-workload traffic is
/// policed).
pub const CHAIN_OUTPUT: &str = "felix-OUTPUT";
/// Packets from a workload to the host itself: egress policy, then accepted.
pub const CHAIN_WL_TO_HOST: &str = "felix-wl-to-host";
/// Dispatch by input interface to the endpoints' egress chains.
pub const CHAIN_FROM_WL_DISPATCH: &str = "felix-from-wl-dispatch";
/// Dispatch by output interface to the endpoints' ingress chains.
pub const CHAIN_TO_WL_DISPATCH: &str = "felix-to-wl-dispatch";
/// Sets the accept mark and returns to the chain that called the rules' chain.
pub const CHAIN_ALLOW: &str = "felix-allow";
/// Sets the pass mark and returns to the chain that called the rules' chain.
pub const CHAIN_PASS: &str = "felix-pass";
/// The ipset being filled before it is renamed to its final name.
pub const SET_TEMP: &str = "felix-tmp";
/// Options of every ipset felix creates (identical, so `-exist` always accepts them).
pub const SET_OPTIONS: &str = "hash:net family inet hashsize 1024 maxelem 1048576";

/// Which side of the packet an address test looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Src,
    Dst,
}

/// Conntrack states an endpoint chain tests first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    /// `RELATED,ESTABLISHED`.
    Established,
    /// `INVALID`.
    Invalid,
}

/// One match of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    /// `-i` (a trailing `+` matches a prefix).
    InIface(String),
    /// `-o`.
    OutIface(String),
    /// `-p`.
    Proto { proto: u8, negate: bool },
    /// `-s` / `-d`.
    Net {
        side: Side,
        net: Ipv4Net,
        negate: bool,
    },
    /// `-m set --match-set`.
    Set {
        side: Side,
        name: String,
        negate: bool,
    },
    /// `-m multiport --dports` / `--sports` (at most [`MULTIPORT_MAX`] ports).
    Ports {
        side: Side,
        ranges: Vec<PortRange>,
        negate: bool,
    },
    /// `-m icmp --icmp-type type[/code]`.
    Icmp {
        icmp_type: u8,
        code: Option<u8>,
        negate: bool,
    },
    /// `-m mark --mark value/mask`.
    Mark { value: u32, mask: u32 },
    /// `-m conntrack --ctstate`.
    CtState(CtState),
}

impl Cond {
    fn negated(&self) -> bool {
        match self {
            Cond::Proto { negate, .. }
            | Cond::Net { negate, .. }
            | Cond::Set { negate, .. }
            | Cond::Ports { negate, .. }
            | Cond::Icmp { negate, .. } => *negate,
            _ => false,
        }
    }

    /// Where the match goes in a rule's text (protocol before the matches that need it).
    fn rank(&self) -> u8 {
        match self {
            Cond::InIface(_) => 0,
            Cond::OutIface(_) => 1,
            Cond::Proto { .. } => 2,
            Cond::Net { .. } => 3,
            Cond::Set { .. } => 4,
            Cond::Ports {
                side: Side::Dst, ..
            } => 5,
            Cond::Ports {
                side: Side::Src, ..
            } => 6,
            Cond::Icmp { .. } => 7,
            Cond::Mark { .. } => 8,
            Cond::CtState(_) => 9,
        }
    }
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Accept,
    Drop,
    Return,
    /// `-j chain`.
    Jump(String),
    /// `-g chain`: the chain's end returns to this chain's caller.
    Goto(String),
    /// `-j MARK --set-xmark value/mask` (does not end the chain).
    SetMark {
        value: u32,
        mask: u32,
    },
}

/// One iptables rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub conds: Vec<Cond>,
    pub comment: Option<String>,
    pub target: Target,
}

impl Rule {
    fn new(conds: Vec<Cond>, target: Target) -> Self {
        Rule {
            conds,
            comment: None,
            target,
        }
    }

    fn commented(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

/// A chain felix owns and its rules in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// A jump from a built-in chain of the filter table to one of ours, kept first in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub builtin: &'static str,
    pub chain: &'static str,
}

/// An endpoint that could not be rendered (its interface is sent to the unknown-interface
/// drop instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub iface: String,
    pub reason: String,
}

/// The local endpoints and their group programs: what [`render`] renders.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub endpoints: Vec<Endpoint>,
    pub programs: HashMap<GroupKey, Program>,
}

/// One local workload endpoint: its interface and the groups of its two programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub iface: String,
    pub ingress: GroupKey,
    pub egress: GroupKey,
}

impl Desired {
    /// The programs of `endpoints` (interface name -> workload endpoint key) from `calc`;
    /// also the keys `calc` has no workload endpoint for (their interfaces drop everything).
    pub fn from_calc(
        calc: &mut PolicyCalc,
        endpoints: &BTreeMap<String, String>,
    ) -> (Desired, Vec<String>) {
        let mut desired = Desired::default();
        let mut missing = Vec::new();
        for (iface, key) in endpoints {
            let Some([(ingress, pi), (egress, pe)]) = calc.programs(key) else {
                missing.push(key.clone());
                continue;
            };
            desired.programs.entry(ingress.clone()).or_insert(pi);
            desired.programs.entry(egress.clone()).or_insert(pe);
            desired.endpoints.push(Endpoint {
                iface: iface.clone(),
                ingress,
                egress,
            });
        }
        (desired, missing)
    }
}

/// Everything felix wants in the filter table and in ipset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Our chains, in a fixed order (static chains, endpoint chains, group chains).
    pub chains: Vec<Chain>,
    /// Jumps from built-in chains.
    pub hooks: Vec<Hook>,
    /// ipsets by name: their members.
    pub sets: BTreeMap<String, Vec<Ipv4Net>>,
    /// Endpoints left out, and why.
    pub skipped: Vec<Skipped>,
    /// `ipset restore` text creating every set (each filled under [`SET_TEMP`], then renamed),
    /// for a host that has none of them; `apply` runs the part for the missing ones.
    pub ipsets: String,
    /// `iptables-restore --noflush` text for a filter table without felix's chains: the
    /// chains, their rules and the hook jumps, in one `*filter` ... `COMMIT`.
    pub rules: String,
}

impl Rendered {
    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// Number of rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

/// FNV-1a, 64 bits: stable names across runs and Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The chain holding the program of `key`: `felix-pi-<hash>` (ingress) or `felix-po-<hash>`
/// (egress), the hash over the policies, profiles, local mask and local named ports that define
/// the group.
pub fn group_chain(key: &GroupKey) -> String {
    let mut text = String::new();
    for p in &key.policies {
        text.push_str(p);
        text.push('\u{1f}');
    }
    text.push('\u{1e}');
    for p in &key.profiles {
        text.push_str(p);
        text.push('\u{1f}');
    }
    text.push('\u{1e}');
    text.extend(key.local_mask.iter().map(|b| if *b { '1' } else { '0' }));
    // Named ports the endpoints resolve on the local side (none: the text, and so the name,
    // is what it was before named ports).
    if !key.local_ports.is_empty() {
        text.push('\u{1e}');
        for numbers in &key.local_ports {
            let list: Vec<String> = numbers.iter().map(u16::to_string).collect();
            text.push_str(&list.join(","));
            text.push('\u{1f}');
        }
    }
    let dir = match key.direction {
        PolicyDirection::Ingress => "pi",
        PolicyDirection::Egress => "po",
    };
    format!(
        "{PREFIX}{dir}-{:012x}",
        fnv1a(text.as_bytes()) & 0xffff_ffff_ffff
    )
}

/// The ipset holding `nets`: named by a hash of its members, so a name always means the same
/// members.
pub fn set_name(nets: &[Ipv4Net]) -> String {
    let text: Vec<String> = nets.iter().map(ToString::to_string).collect();
    format!("{PREFIX}{:016x}", fnv1a(text.join(",").as_bytes()))
}

/// The egress ("from workload") chain of the endpoint on `iface`.
pub fn from_wl_chain(iface: &str) -> String {
    format!("{PREFIX}fw-{iface}")
}

/// The ingress ("to workload") chain of the endpoint on `iface`.
pub fn to_wl_chain(iface: &str) -> String {
    format!("{PREFIX}tw-{iface}")
}

/// A set of networks reduced to the ones no other member contains.
enum Nets {
    /// Holds no address.
    Empty,
    /// Holds every address.
    All,
    Some(Vec<Ipv4Net>),
}

fn normalize(nets: &[Ipv4Net]) -> Nets {
    if nets.is_empty() {
        return Nets::Empty;
    }
    // Contained networks dropped, adjacent ones merged.
    let merged = Ipv4Net::aggregate(&nets.to_vec());
    if merged.iter().any(|n| n.prefix_len() == 0) {
        return Nets::All;
    }
    Nets::Some(merged)
}

/// Sorted, overlapping and adjacent ranges merged.
fn merge(ranges: &[PortRange]) -> Vec<PortRange> {
    let mut sorted: Vec<PortRange> = ranges.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
    sorted.sort_unstable();
    let mut out: Vec<PortRange> = Vec::with_capacity(sorted.len());
    for (lo, hi) in sorted {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn covers_all(merged: &[PortRange]) -> bool {
    merged == [(0, u16::MAX)]
}

/// Ranges split into groups of at most [`MULTIPORT_MAX`] ports (a range counts twice).
fn multiport_chunks(merged: &[PortRange]) -> Vec<Vec<PortRange>> {
    let mut chunks: Vec<Vec<PortRange>> = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for &(lo, hi) in merged {
        let cost = if lo == hi { 1 } else { 2 };
        if used + cost > MULTIPORT_MAX {
            chunks.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push((lo, hi));
        used += cost;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The ICMP type and type/code matches covering `type << 8 | code` ranges.
fn icmp_specs(merged: &[PortRange], by: &RuleRef) -> Result<Vec<(u8, Option<u8>)>, RenderError> {
    let mut specs = Vec::new();
    for &(lo, hi) in merged {
        let hi = u32::from(hi);
        let mut v = u32::from(lo);
        while v <= hi {
            let (t, c) = (v >> 8, v & 0xff);
            // xt_icmp reads type 255 as "any type".
            if t == 255 {
                return Err(RenderError::IcmpType255 { by: by.to_string() });
            }
            let t8 = u8::try_from(t).unwrap_or(u8::MAX);
            if c == 0 && (t << 8 | 0xff) <= hi {
                specs.push((t8, None));
                v = (t + 1) << 8;
            } else {
                specs.push((t8, Some(u8::try_from(c).unwrap_or(u8::MAX))));
                v += 1;
            }
        }
    }
    Ok(specs)
}

/// Alternatives (OR) of conjunctions for one kind of test; `None` when nothing matches.
type Alternatives = Option<Vec<Vec<Cond>>>;

fn any() -> Alternatives {
    Some(vec![Vec::new()])
}

/// Ports of a TCP/UDP/SCTP rule: negated chunks go into `all`, positive chunks are the
/// alternatives.
fn port_alternatives(pm: &PortMatch, side: Side, all: &mut Vec<Cond>) -> Alternatives {
    let none = merge(&pm.none_of);
    if covers_all(&none) {
        return None;
    }
    for ranges in multiport_chunks(&none) {
        all.push(Cond::Ports {
            side,
            ranges,
            negate: true,
        });
    }
    let wanted = merge(&pm.any_of);
    if wanted.is_empty() || covers_all(&wanted) {
        return any();
    }
    Some(
        multiport_chunks(&wanted)
            .into_iter()
            .map(|ranges| {
                vec![Cond::Ports {
                    side,
                    ranges,
                    negate: false,
                }]
            })
            .collect(),
    )
}

/// ICMP type/code of an ICMP rule (held in `dst_ports`).
fn icmp_alternatives(
    pm: &PortMatch,
    all: &mut Vec<Cond>,
    by: &RuleRef,
) -> Result<Alternatives, RenderError> {
    let none = merge(&pm.none_of);
    if covers_all(&none) {
        return Ok(None);
    }
    for (icmp_type, code) in icmp_specs(&none, by)? {
        all.push(Cond::Icmp {
            icmp_type,
            code,
            negate: true,
        });
    }
    let wanted = merge(&pm.any_of);
    if wanted.is_empty() || covers_all(&wanted) {
        return Ok(any());
    }
    Ok(Some(
        icmp_specs(&wanted, by)?
            .into_iter()
            .map(|(icmp_type, code)| {
                vec![Cond::Icmp {
                    icmp_type,
                    code,
                    negate: false,
                }]
            })
            .collect(),
    ))
}

/// Keeps the ipsets a render uses, checking that one name never means two contents.
#[derive(Default)]
struct Sets {
    sets: BTreeMap<String, Vec<Ipv4Net>>,
}

impl Sets {
    fn name_for(&mut self, nets: Vec<Ipv4Net>) -> Result<String, RenderError> {
        let name = set_name(&nets);
        match self.sets.get(&name) {
            Some(existing) if *existing != nets => Err(RenderError::NameCollision { name }),
            Some(_) => Ok(name),
            None => {
                self.sets.insert(name.clone(), nets);
                Ok(name)
            }
        }
    }
}

/// The rules (alternatives, each a conjunction) that match what `m` matches, the remote
/// address being on `side`. Empty when `m` matches nothing.
fn match_alternatives(
    m: &Match,
    side: Side,
    config: &Config,
    sets: &mut Sets,
    by: &RuleRef,
) -> Result<Vec<Vec<Cond>>, RenderError> {
    let mut all = Vec::new();
    match (m.proto.is, m.proto.not) {
        (Some(p), Some(q)) if p == q => return Ok(Vec::new()),
        (Some(proto), _) => all.push(Cond::Proto {
            proto,
            negate: false,
        }),
        (None, Some(proto)) => all.push(Cond::Proto {
            proto,
            negate: true,
        }),
        (None, None) => {}
    }

    let mut positive = Vec::new();
    for set in &m.remote.all_of {
        match normalize(set) {
            Nets::Empty => return Ok(Vec::new()),
            Nets::All => {}
            Nets::Some(nets) => positive.push(nets),
        }
    }
    let mut negative = Vec::new();
    for set in &m.remote.none_of {
        match normalize(set) {
            Nets::All => return Ok(Vec::new()),
            Nets::Empty => {}
            Nets::Some(nets) => negative.push(nets),
        }
    }
    // One address test per rule can be inline (`-s`/`-d` appear once): the first small
    // positive set (one rule per network), else the first single-network negative set.
    let inline_positive = positive.iter().position(|n| n.len() <= config.inline_max);
    let inline_negative = match inline_positive {
        Some(_) => None,
        None if config.inline_max > 0 => negative.iter().position(|n| n.len() == 1),
        None => None,
    };
    let mut addr: Vec<Vec<Cond>> = vec![Vec::new()];
    for (i, nets) in positive.into_iter().enumerate() {
        if Some(i) == inline_positive {
            addr = nets
                .into_iter()
                .map(|net| {
                    vec![Cond::Net {
                        side,
                        net,
                        negate: false,
                    }]
                })
                .collect();
        } else {
            let name = sets.name_for(nets)?;
            all.push(Cond::Set {
                side,
                name,
                negate: false,
            });
        }
    }
    for (i, nets) in negative.into_iter().enumerate() {
        if Some(i) == inline_negative {
            all.extend(nets.into_iter().map(|net| Cond::Net {
                side,
                net,
                negate: true,
            }));
        } else {
            let name = sets.name_for(nets)?;
            all.push(Cond::Set {
                side,
                name,
                negate: true,
            });
        }
    }

    let (dst, src) = match m.proto.is {
        Some(6 | 17 | 132) => (
            port_alternatives(&m.dst_ports, Side::Dst, &mut all),
            port_alternatives(&m.src_ports, Side::Src, &mut all),
        ),
        // An ICMP packet's "destination port" is its type << 8 | code, its source port 0.
        Some(1) => (
            icmp_alternatives(&m.dst_ports, &mut all, by)?,
            m.src_ports.matches(0).then(|| vec![Vec::new()]),
        ),
        // Other protocols have port 0 on both sides.
        Some(_) => (
            m.dst_ports.matches(0).then(|| vec![Vec::new()]),
            m.src_ports.matches(0).then(|| vec![Vec::new()]),
        ),
        None if m.dst_ports.is_any() && m.src_ports.is_any() => (any(), any()),
        None => {
            return Err(RenderError::PortsWithoutProtocol { by: by.to_string() });
        }
    };
    let (Some(dst), Some(src)) = (dst, src) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(addr.len() * dst.len() * src.len());
    for a in &addr {
        for d in &dst {
            for s in &src {
                let mut conds: Vec<Cond> = all.iter().chain(a).chain(d).chain(s).cloned().collect();
                conds.sort_by_key(|c| (c.rank(), c.negated()));
                out.push(conds);
            }
        }
    }
    Ok(out)
}

fn mark_set(bit: u32) -> Cond {
    Cond::Mark {
        value: bit,
        mask: bit,
    }
}

fn mark_clear(bit: u32) -> Cond {
    Cond::Mark {
        value: 0,
        mask: bit,
    }
}

fn clear_marks(bits: u32) -> Target {
    Target::SetMark {
        value: 0,
        mask: bits,
    }
}

fn check_chain_name(name: &str) -> Result<(), RenderError> {
    if name.len() > MAX_CHAIN_NAME {
        return Err(RenderError::ChainName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// What a section (a tier, a profile, or trailing rules) is called in comments.
fn section_label(end: Option<&RuleRef>) -> String {
    match end {
        Some(RuleRef::EndOfTier { tier, .. }) => format!("tier {tier}"),
        Some(RuleRef::Profile { profile, .. }) => format!("profile {profile}"),
        _ => "rules".to_string(),
    }
}

/// The chains of one group program: the group chain (first; it may be empty, then the
/// program denies everything) and one chain per tier or profile that has rules.
fn render_group(
    name: &str,
    program: &Program,
    direction: PolicyDirection,
    config: &Config,
    sets: &mut Sets,
) -> Result<Vec<Chain>, RenderError> {
    let side = match direction {
        PolicyDirection::Ingress => Side::Src,
        PolicyDirection::Egress => Side::Dst,
    };
    let mut sections: Vec<(usize, usize, Option<usize>)> = Vec::new();
    let mut start = 0;
    for (i, entry) in program.entries.iter().enumerate() {
        if matches!(entry.step, Step::EndOfTier { .. } | Step::EndOfProfile) {
            sections.push((start, i, Some(i)));
            start = i + 1;
        }
    }
    if start < program.entries.len() {
        sections.push((start, program.entries.len(), None));
    }

    let mut group = Chain {
        name: name.to_string(),
        rules: Vec::new(),
    };
    let mut chains = Vec::new();
    for (n, (from, to, end)) in sections.into_iter().enumerate() {
        let end_entry = end.map(|i| &program.entries[i]);
        let label = section_label(end_entry.map(|e| &e.by));
        let mut rules = Vec::new();
        let (mut has_allow, mut has_pass) = (false, false);
        for entry in &program.entries[from..to] {
            let target = match entry.step {
                Step::Allow => Target::Goto(CHAIN_ALLOW.into()),
                Step::Deny => Target::Drop,
                Step::Pass => Target::Goto(CHAIN_PASS.into()),
                Step::EndOfTier { .. } | Step::EndOfProfile => continue,
            };
            let alternatives = match &entry.matcher {
                Some(m) => match_alternatives(m, side, config, sets, &entry.by)?,
                None => vec![Vec::new()],
            };
            if alternatives.is_empty() {
                continue;
            }
            has_allow |= entry.step == Step::Allow;
            has_pass |= entry.step == Step::Pass;
            let comment = entry.by.to_string();
            rules.extend(
                alternatives
                    .into_iter()
                    .map(|conds| Rule::new(conds, target.clone()).commented(comment.clone())),
            );
        }
        if !rules.is_empty() {
            let section = format!("{name}-{n}");
            check_chain_name(&section)?;
            group.rules.push(
                Rule::new(Vec::new(), Target::Jump(section.clone())).commented(label.clone()),
            );
            chains.push(Chain {
                name: section,
                rules,
            });
        }
        if has_allow {
            group.rules.push(
                Rule::new(vec![mark_set(MARK_ACCEPT)], Target::Return)
                    .commented(format!("{label}: allowed")),
            );
        }
        match end_entry.map(|e| (e.step, &e.by)) {
            Some((Step::EndOfTier { pass: false }, by)) if !has_pass => {
                // Nothing passes this tier: everything after it is unreachable.
                group
                    .rules
                    .push(Rule::new(Vec::new(), Target::Drop).commented(by.to_string()));
                break;
            }
            Some((Step::EndOfTier { pass: false }, by)) => {
                group.rules.push(
                    Rule::new(vec![mark_clear(MARK_PASS)], Target::Drop).commented(by.to_string()),
                );
                group
                    .rules
                    .push(Rule::new(Vec::new(), clear_marks(MARK_PASS)));
            }
            _ if has_pass => group
                .rules
                .push(Rule::new(Vec::new(), clear_marks(MARK_PASS))),
            _ => {}
        }
    }
    // A trailing "clear pass" before the end changes nothing.
    if group
        .rules
        .last()
        .is_some_and(|r| r.target == clear_marks(MARK_PASS) && r.conds.is_empty())
    {
        group.rules.pop();
    }
    let mut out = vec![group];
    out.extend(chains);
    Ok(out)
}

/// Whether `iface` can be named in rules and chain names.
fn valid_iface(iface: &str, prefix: &str) -> Result<(), String> {
    if !iface.starts_with(prefix) || iface.len() == prefix.len() {
        return Err(format!(
            "interface name does not start with the workload prefix {prefix:?}"
        ));
    }
    if iface.len() > 15 {
        return Err("interface name longer than 15 characters".into());
    }
    if !iface
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("interface name has characters other than [A-Za-z0-9._-]".into());
    }
    Ok(())
}

/// The endpoint chain: conntrack first, then the group program, then default deny.
fn endpoint_chain(name: String, group: Option<&str>, default_deny: &RuleRef) -> Chain {
    let mut rules = vec![
        Rule::new(vec![Cond::CtState(CtState::Established)], Target::Accept),
        Rule::new(vec![Cond::CtState(CtState::Invalid)], Target::Drop),
        Rule::new(Vec::new(), clear_marks(MARK_ACCEPT | MARK_PASS)),
    ];
    if let Some(group) = group {
        rules.push(Rule::new(Vec::new(), Target::Jump(group.to_string())));
        rules.push(Rule::new(vec![mark_set(MARK_ACCEPT)], Target::Return));
    }
    rules.push(Rule::new(Vec::new(), Target::Drop).commented(default_deny.to_string()));
    Chain { name, rules }
}

/// Renders the chains, hooks and ipsets for `desired`.
pub fn render(config: &Config, desired: &Desired) -> Result<Rendered, RenderError> {
    let wildcard = format!("{}+", config.iface_prefix);
    let mut sets = Sets::default();
    let mut skipped = Vec::new();

    // Groups: one chain (plus sections) per group key an endpoint uses.
    let mut endpoints: Vec<&Endpoint> = Vec::new();
    let mut seen_ifaces = std::collections::BTreeSet::new();
    let mut sorted: Vec<&Endpoint> = desired.endpoints.iter().collect();
    sorted.sort_by(|a, b| a.iface.cmp(&b.iface));
    for ep in sorted {
        let problem = valid_iface(&ep.iface, &config.iface_prefix)
            .err()
            .or_else(|| {
                (!seen_ifaces.insert(ep.iface.as_str()))
                    .then(|| "interface given for two endpoints".to_string())
            })
            .or_else(|| {
                (!desired.programs.contains_key(&ep.ingress)
                    || !desired.programs.contains_key(&ep.egress))
                .then(|| "no program for its group".to_string())
            });
        match problem {
            Some(reason) => skipped.push(Skipped {
                iface: ep.iface.clone(),
                reason,
            }),
            None => endpoints.push(ep),
        }
    }
    let mut group_names: BTreeMap<String, &GroupKey> = BTreeMap::new();
    for ep in &endpoints {
        for key in [&ep.ingress, &ep.egress] {
            let name = group_chain(key);
            match group_names.get(&name) {
                Some(other) if *other != key => {
                    return Err(RenderError::NameCollision { name });
                }
                _ => {
                    group_names.insert(name, key);
                }
            }
        }
    }
    let mut group_chains = Vec::new();
    let mut non_empty: BTreeMap<String, bool> = BTreeMap::new();
    for (name, key) in &group_names {
        let program = &desired.programs[*key];
        let chains = render_group(name, program, key.direction, config, &mut sets)?;
        let has_rules = chains.first().is_some_and(|g| !g.rules.is_empty());
        non_empty.insert(name.clone(), has_rules);
        if has_rules {
            group_chains.extend(chains);
        }
    }

    let mut chains = Vec::new();
    let mut forward = vec![
        Rule::new(Vec::new(), clear_marks(MARK_ACCEPT | MARK_PASS)),
        Rule::new(
            vec![Cond::InIface(wildcard.clone())],
            Target::Jump(CHAIN_FROM_WL_DISPATCH.into()),
        ),
        Rule::new(
            vec![Cond::OutIface(wildcard.clone())],
            Target::Jump(CHAIN_TO_WL_DISPATCH.into()),
        ),
    ];
    forward.push(
        Rule::new(vec![mark_set(MARK_ACCEPT)], Target::Accept)
            .commented("policy accepted the packet"),
    );
    chains.push(Chain {
        name: CHAIN_FORWARD.into(),
        rules: forward,
    });
    chains.push(Chain {
        name: CHAIN_INPUT.into(),
        rules: vec![Rule::new(
            vec![Cond::InIface(wildcard.clone())],
            Target::Goto(CHAIN_WL_TO_HOST.into()),
        )],
    });
    chains.push(Chain {
        name: CHAIN_WL_TO_HOST.into(),
        rules: vec![
            Rule::new(Vec::new(), Target::Jump(CHAIN_FROM_WL_DISPATCH.into())),
            Rule::new(Vec::new(), Target::Accept)
                .commented("workload to host: accepted after its egress policy"),
        ],
    });
    let mut hooks = vec![
        Hook {
            builtin: "INPUT",
            chain: CHAIN_INPUT,
        },
        Hook {
            builtin: "FORWARD",
            chain: CHAIN_FORWARD,
        },
    ];
    if config.police_host_to_workload {
        chains.push(Chain {
            name: CHAIN_OUTPUT.into(),
            rules: vec![
                Rule::new(
                    vec![Cond::OutIface(wildcard.clone())],
                    Target::Jump(CHAIN_TO_WL_DISPATCH.into()),
                ),
                Rule::new(
                    vec![Cond::OutIface(wildcard.clone()), mark_set(MARK_ACCEPT)],
                    Target::Accept,
                )
                .commented("policy accepted the packet"),
            ],
        });
        hooks.push(Hook {
            builtin: "OUTPUT",
            chain: CHAIN_OUTPUT,
        });
    }
    chains.push(Chain {
        name: CHAIN_ALLOW.into(),
        rules: vec![Rule::new(
            Vec::new(),
            Target::SetMark {
                value: MARK_ACCEPT,
                mask: MARK_ACCEPT,
            },
        )],
    });
    chains.push(Chain {
        name: CHAIN_PASS.into(),
        rules: vec![Rule::new(
            Vec::new(),
            Target::SetMark {
                value: MARK_PASS,
                mask: MARK_PASS,
            },
        )],
    });

    let mut from_dispatch = Vec::new();
    let mut to_dispatch = Vec::new();
    let mut endpoint_chains = Vec::new();
    for ep in &endpoints {
        let (fw, tw) = (from_wl_chain(&ep.iface), to_wl_chain(&ep.iface));
        from_dispatch.push(Rule::new(
            vec![Cond::InIface(ep.iface.clone())],
            Target::Goto(fw.clone()),
        ));
        to_dispatch.push(Rule::new(
            vec![Cond::OutIface(ep.iface.clone())],
            Target::Goto(tw.clone()),
        ));
        let group_of = |key: &GroupKey| {
            let name = group_chain(key);
            non_empty
                .get(&name)
                .copied()
                .unwrap_or(false)
                .then_some(name)
        };
        let deny_of = |key: &GroupKey| desired.programs[key].default_deny.clone();
        endpoint_chains.push(endpoint_chain(
            tw,
            group_of(&ep.ingress).as_deref(),
            &deny_of(&ep.ingress),
        ));
        endpoint_chains.push(endpoint_chain(
            fw,
            group_of(&ep.egress).as_deref(),
            &deny_of(&ep.egress),
        ));
    }
    from_dispatch.push(Rule::new(Vec::new(), Target::Drop).commented("unknown workload interface"));
    to_dispatch.push(Rule::new(Vec::new(), Target::Drop).commented("unknown workload interface"));
    chains.push(Chain {
        name: CHAIN_FROM_WL_DISPATCH.into(),
        rules: from_dispatch,
    });
    chains.push(Chain {
        name: CHAIN_TO_WL_DISPATCH.into(),
        rules: to_dispatch,
    });
    chains.extend(endpoint_chains);
    chains.extend(group_chains);
    for chain in &chains {
        check_chain_name(&chain.name)?;
    }

    let sets = sets.sets;
    let ipsets = ipset_script(sets.iter());
    let rules = restore_script(&chains, &hooks);
    Ok(Rendered {
        chains,
        hooks,
        sets,
        skipped,
        ipsets,
        rules,
    })
}

/// `ipset restore` text creating `sets`: each filled under [`SET_TEMP`] and renamed, so a set
/// exists under its name only once complete.
pub fn ipset_script<'a>(sets: impl Iterator<Item = (&'a String, &'a Vec<Ipv4Net>)>) -> String {
    let mut out = String::new();
    for (name, nets) in sets {
        let _ = writeln!(out, "create {SET_TEMP} {SET_OPTIONS} -exist");
        let _ = writeln!(out, "flush {SET_TEMP}");
        for net in nets {
            let _ = writeln!(out, "add {SET_TEMP} {net}");
        }
        let _ = writeln!(out, "rename {SET_TEMP} {name}");
    }
    out
}

/// The restore text for a table without our chains: declarations, rules, hook inserts.
fn restore_script(chains: &[Chain], hooks: &[Hook]) -> String {
    let mut out = String::from("*filter\n");
    for chain in chains {
        let _ = writeln!(out, ":{} - [0:0]", chain.name);
    }
    for chain in chains {
        write_chain_rules(&mut out, chain);
    }
    for hook in hooks {
        let _ = writeln!(out, "-I {} 1 -j {}", hook.builtin, hook.chain);
    }
    out.push_str("COMMIT\n");
    out
}

/// `-A chain rule` lines for every rule of `chain`.
pub fn write_chain_rules(out: &mut String, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(out, "-A {} {}", chain.name, rule_text(rule));
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

fn bang(negate: bool) -> &'static str {
    if negate { "! " } else { "" }
}

/// Comment text iptables-restore reads back as one word list in double quotes.
fn comment_text(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " ._:/()-,=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(255)
        .collect();
    clean
}

/// One rule as `iptables-restore` reads it (without `-A chain`).
pub fn rule_text(rule: &Rule) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cond in &rule.conds {
        parts.push(match cond {
            Cond::InIface(i) => format!("-i {i}"),
            Cond::OutIface(i) => format!("-o {i}"),
            Cond::Proto { proto, negate } => format!("{}-p {}", bang(*negate), proto_name(*proto)),
            Cond::Net { side, net, negate } => {
                let flag = match side {
                    Side::Src => "-s",
                    Side::Dst => "-d",
                };
                format!("{}{flag} {net}", bang(*negate))
            }
            Cond::Set { side, name, negate } => {
                let dir = match side {
                    Side::Src => "src",
                    Side::Dst => "dst",
                };
                format!("-m set {}--match-set {name} {dir}", bang(*negate))
            }
            Cond::Ports {
                side,
                ranges,
                negate,
            } => {
                let flag = match side {
                    Side::Src => "--sports",
                    Side::Dst => "--dports",
                };
                let list: Vec<String> = ranges
                    .iter()
                    .map(|(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}:{hi}")
                        }
                    })
                    .collect();
                format!("-m multiport {}{flag} {}", bang(*negate), list.join(","))
            }
            Cond::Icmp {
                icmp_type,
                code,
                negate,
            } => match code {
                Some(c) => format!("-m icmp {}--icmp-type {icmp_type}/{c}", bang(*negate)),
                None => format!("-m icmp {}--icmp-type {icmp_type}", bang(*negate)),
            },
            Cond::Mark { value, mask } => format!("-m mark --mark {value:#x}/{mask:#x}"),
            Cond::CtState(CtState::Established) => {
                "-m conntrack --ctstate RELATED,ESTABLISHED".to_string()
            }
            Cond::CtState(CtState::Invalid) => "-m conntrack --ctstate INVALID".to_string(),
        });
    }
    if let Some(c) = &rule.comment {
        parts.push(format!("-m comment --comment \"{}\"", comment_text(c)));
    }
    parts.push(match &rule.target {
        Target::Accept => "-j ACCEPT".into(),
        Target::Drop => "-j DROP".into(),
        Target::Return => "-j RETURN".into(),
        Target::Jump(c) => format!("-j {c}"),
        Target::Goto(c) => format!("-g {c}"),
        Target::SetMark { value, mask } => format!("-j MARK --set-xmark {value:#x}/{mask:#x}"),
    });
    parts.join(" ")
}
