//! A small model of how netfilter walks the rendered chains (jump, goto, return, marks,
//! ACCEPT/DROP, the matches felix uses), for tests that compare the rendered rules with the
//! plain program semantics without a kernel.

use std::net::Ipv4Addr;

use super::render::{Cond, CtState, Rendered, Side, Target};

/// A packet as the rules see it.
#[derive(Clone, Debug)]
pub struct SimPacket {
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Type and code, for ICMP.
    pub icmp: Option<(u8, u8)>,
    /// `None`: NEW.
    pub ct: Option<CtState>,
    pub mark: u32,
}

/// Where a packet ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Returned from our chain: the built-in chain goes on.
    Continue,
}

fn iface_matches(pattern: &str, iface: Option<&String>) -> bool {
    let Some(iface) = iface else { return false };
    match pattern.strip_suffix('+') {
        Some(prefix) => iface.starts_with(prefix),
        None => iface == pattern,
    }
}

fn holds(cond: &Cond, p: &SimPacket, rendered: &Rendered) -> bool {
    let addr = |side: &Side| match side {
        Side::Src => p.src,
        Side::Dst => p.dst,
    };
    match cond {
        Cond::InIface(i) => iface_matches(i, p.in_iface.as_ref()),
        Cond::OutIface(i) => iface_matches(i, p.out_iface.as_ref()),
        Cond::Proto { proto, negate } => (p.proto == *proto) != *negate,
        Cond::Net { side, net, negate } => net.contains(&addr(side)) != *negate,
        Cond::Set { side, name, negate } => {
            let members = rendered
                .sets
                .get(name)
                .unwrap_or_else(|| panic!("rule uses set {name} that the render lacks"));
            members.iter().any(|n| n.contains(&addr(side))) != *negate
        }
        Cond::Ports {
            side,
            ranges,
            negate,
        } => {
            assert!(
                matches!(p.proto, 6 | 17 | 132),
                "multiport on protocol {}",
                p.proto
            );
            assert!(
                ranges
                    .iter()
                    .map(|(a, b)| if a == b { 1 } else { 2 })
                    .sum::<usize>()
                    <= super::MULTIPORT_MAX
            );
            let port = match side {
                Side::Src => p.sport,
                Side::Dst => p.dport,
            };
            ranges.iter().any(|(lo, hi)| *lo <= port && port <= *hi) != *negate
        }
        Cond::Icmp {
            icmp_type,
            code,
            negate,
        } => {
            let (t, c) = p
                .icmp
                .unwrap_or_else(|| panic!("icmp match on a non-ICMP packet"));
            (t == *icmp_type && code.is_none_or(|want| want == c)) != *negate
        }
        Cond::Mark { value, mask } => p.mark & mask == *value,
        Cond::CtState(state) => p.ct == Some(*state),
    }
}

/// Runs `p` through `chain` as a built-in chain's first rule would jump to it.
pub fn run(rendered: &Rendered, chain: &str, p: &mut SimPacket) -> Verdict {
    // Frames: (chain, next rule index).
    let mut stack: Vec<(String, usize)> = vec![(chain.to_string(), 0)];
    let mut steps = 0;
    while let Some((name, index)) = stack.pop() {
        let chain = rendered
            .chain(&name)
            .unwrap_or_else(|| panic!("jump to missing chain {name}"));
        let Some(rule) = chain.rules.get(index) else {
            // End of chain: return to the caller.
            continue;
        };
        steps += 1;
        assert!(steps < 1_000_000, "rule walk does not end");
        if !rule.conds.iter().all(|c| holds(c, p, rendered)) {
            stack.push((name, index + 1));
            continue;
        }
        match &rule.target {
            Target::Accept => return Verdict::Accept,
            Target::Drop => return Verdict::Drop,
            Target::Return => {}
            Target::Jump(next) => {
                stack.push((name, index + 1));
                stack.push((next.clone(), 0));
            }
            Target::Goto(next) => stack.push((next.clone(), 0)),
            Target::SetMark { value, mask } => {
                p.mark = (p.mark & !mask) ^ value;
                stack.push((name, index + 1));
            }
        }
    }
    Verdict::Continue
}
