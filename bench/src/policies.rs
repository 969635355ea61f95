//! The measured policies, built as felix's calculation would hand them to the compiler.
//!
//! A policy of `n` rules is `n` Deny rules that the measured packet does not match, all on TCP
//! port [`PORT`], then a tail: for a first packet that must be classified on every run, a Deny of
//! TCP [`PORT`] (no conntrack entry is created, see `policy_cost`) then an Allow; for flows that
//! must be allowed, an Allow. With `n = 0` the allow tail is the allow-all baseline.
//!
//! Remote addresses come from a range in which the rules take the even addresses and the
//! measured peer is an odd one in the middle, so the LPM lookup walks the trie as deep as a
//! near miss goes; [`FAR_PEER`], far from every rule, leaves the trie near its root.

use std::{net::Ipv4Addr, sync::Arc};

use felix_user::calc::policy::{
    PolicyDirection, RuleRef,
    calc::GroupKey,
    program::{AddrMatch, Entry, Match, NetSet, PortMatch, Program, ProtoMatch, Step},
};
use ipnet::Ipv4Net;

/// Destination port every rule names and the measured packet uses.
pub const PORT: u16 = 9999;
const PROTO_TCP: u8 = 6;
/// First address of the /32-source rules (10.200.0.0, as the iptables comparison uses).
const CIDR_BASE: u32 = u32::from_be_bytes([10, 200, 0, 0]);
/// First address of the IP-set rules (10.64.0.0/10 holds them all).
const SET_BASE: u32 = u32::from_be_bytes([10, 64, 0, 0]);
/// A remote address outside every rule's range.
pub const FAR_PEER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
/// Addresses per IP set, and the step between consecutive sets (so each address is in two).
pub const SET_SIZE: u32 = 32;
const SET_STRIDE: u32 = SET_SIZE / 2;

/// How each rule names its remote side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Rule `i` denies one /32 source.
    Cidr,
    /// Rule `i` denies an IP set of [`SET_SIZE`] addresses (what a `selector` resolves to),
    /// overlapping half of its neighbours' sets.
    IpSet,
}

/// What the policy does with the measured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Denied by the Deny of TCP [`PORT`] after the `n` rules.
    Deny,
    /// Allowed by the final Allow.
    Allow,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::Cidr => "/32 sources",
            Shape::IpSet => "IP sets",
        }
    }

    /// Remote addresses the policy's rules hold, in all.
    pub fn addresses(self, n: u32) -> u64 {
        match self {
            Shape::Cidr => u64::from(n),
            Shape::IpSet if n == 0 => 0,
            Shape::IpSet => u64::from(n + 1) * u64::from(SET_STRIDE),
        }
    }

    /// The measured remote address: odd, in the middle of the rules' range.
    pub fn peer(self, n: u32) -> Ipv4Addr {
        let base = match self {
            Shape::Cidr => CIDR_BASE,
            Shape::IpSet => SET_BASE,
        };
        Ipv4Addr::from(base + 2 * (self.addresses(n) / 2) as u32 + 1)
    }

    fn remote(self, i: u32) -> NetSet {
        let addrs: Vec<Ipv4Net> = match self {
            Shape::Cidr => vec![host(CIDR_BASE + 2 * i)],
            Shape::IpSet => (0..SET_SIZE)
                .map(|j| host(SET_BASE + 2 * (i * SET_STRIDE + j)))
                .collect(),
        };
        Arc::new(addrs)
    }
}

fn host(addr: u32) -> Ipv4Net {
    Ipv4Net::from(Ipv4Addr::from(addr))
}

fn rule(policy: &str, index: usize) -> RuleRef {
    RuleRef::Policy {
        tier: "default".into(),
        policy: policy.into(),
        direction: PolicyDirection::Ingress,
        index,
    }
}

fn tcp_port(port: u16) -> Match {
    Match {
        proto: ProtoMatch {
            is: Some(PROTO_TCP),
            not: None,
        },
        dst_ports: PortMatch {
            any_of: vec![(port, port)],
            none_of: vec![],
        },
        ..Match::default()
    }
}

/// The policy of `n` rules of `shape` with `tail`. Rule references are shared between policies
/// (rule `i` is always `bench` rule `i`), so rule counter ids stay below the largest `n` + 2.
pub fn program(shape: Shape, n: u32, tail: Tail) -> Program {
    let mut entries: Vec<Entry> = (0..n)
        .map(|i| Entry {
            by: rule("bench", i as usize),
            step: Step::Deny,
            matcher: Some(Match {
                remote: AddrMatch {
                    all_of: vec![shape.remote(i)],
                    none_of: vec![],
                },
                ..tcp_port(PORT)
            }),
        })
        .collect();
    if tail == Tail::Deny {
        entries.push(Entry {
            by: rule("bench-tail", 0),
            step: Step::Deny,
            matcher: Some(tcp_port(PORT)),
        });
    }
    entries.push(Entry {
        by: rule("bench-tail", 1),
        step: Step::Allow,
        matcher: Some(Match::default()),
    });
    Program {
        entries,
        default_deny: RuleRef::DefaultDeny {
            direction: PolicyDirection::Ingress,
        },
    }
}

/// Index (in the program's entries) of the rule that decides the measured packet: the tail's
/// first rule, right after the `n` rules.
pub fn deciding_entry(n: u32) -> usize {
    n as usize
}

/// A group of its own for each measured policy.
pub fn group(shape: Shape, n: u32, tail: Tail) -> GroupKey {
    GroupKey {
        direction: PolicyDirection::Ingress,
        policies: vec![format!("bench-{shape:?}-{n}-{tail:?}")],
        profiles: vec![],
        local_mask: vec![],
        local_ports: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use felix_user::calc::policy::program::Probe;

    use super::*;

    #[test]
    fn the_peer_misses_every_rule_and_the_tail_decides() {
        for shape in [Shape::Cidr, Shape::IpSet] {
            for n in [0, 1, 10, 100] {
                for tail in [Tail::Deny, Tail::Allow] {
                    let p = program(shape, n, tail);
                    for remote in [shape.peer(n), FAR_PEER] {
                        let probe = Probe {
                            remote,
                            proto: PROTO_TCP,
                            dst_port: PORT,
                            src_port: 40000,
                        };
                        let (allow, by) = p.evaluate(&probe);
                        assert_eq!(allow, tail == Tail::Allow, "{shape:?} {n} {tail:?}");
                        assert_eq!(by, Some(deciding_entry(n)));
                    }
                }
            }
        }
    }

    #[test]
    fn each_rule_denies_its_own_addresses() {
        let p = program(Shape::IpSet, 4, Tail::Allow);
        let first = p.entries[1]
            .matcher
            .as_ref()
            .map(|m| m.remote.all_of[0].clone());
        let nets = first.expect("rule 1 has a remote set");
        assert_eq!(nets.len(), SET_SIZE as usize);
        let probe = Probe {
            remote: nets[0].addr(),
            proto: PROTO_TCP,
            dst_port: PORT,
            src_port: 1,
        };
        // The first half of set 1 is also the second half of set 0: rule 0 decides.
        assert_eq!(p.evaluate(&probe), (false, Some(0)));
    }
}
