//! The compiled tables must give the verdict (and the deciding entry) of the plain entry-by-entry
//! evaluation, for hand-picked programs and for thousands of random ones.

use std::{net::Ipv4Addr, sync::Arc};

use ipnet::Ipv4Net;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::calc::policy::{
    PolicyDirection, RuleRef,
    compile::{Outcome, compile, range_prefixes},
    program::{AddrMatch, Entry, Match, NetSet, PortMatch, Probe, Program, ProtoMatch, Step},
};

fn rule_ref(index: usize) -> RuleRef {
    RuleRef::Policy {
        tier: "t".into(),
        policy: "p".into(),
        direction: PolicyDirection::Ingress,
        index,
    }
}

fn program(entries: Vec<(Step, Option<Match>)>) -> Program {
    Program {
        entries: entries
            .into_iter()
            .enumerate()
            .map(|(i, (step, matcher))| Entry {
                by: rule_ref(i),
                step,
                matcher,
            })
            .collect(),
        default_deny: RuleRef::DefaultDeny {
            direction: PolicyDirection::Ingress,
        },
    }
}

fn nets(list: &[&str]) -> NetSet {
    Arc::new(list.iter().map(|s| s.parse().unwrap()).collect())
}

fn probe(remote: &str, proto: u8, dst_port: u16) -> Probe {
    Probe {
        remote: remote.parse().unwrap(),
        proto,
        dst_port,
        src_port: 40000,
    }
}

fn check_agrees(program: &Program, probes: &[Probe]) {
    let compiled = compile(program).expect("compiles");
    for p in probes {
        let (allow, entry) = program.evaluate(p);
        let got = compiled.lookup(p);
        assert_eq!(
            got,
            Some(Outcome { allow, entry }),
            "probe {p:?} in {program:#?}\ntables: {compiled:#?}"
        );
    }
}

#[test]
fn range_prefixes_cover_exactly_the_range() {
    for (lo, hi) in [
        (0, 65535),
        (80, 80),
        (1, 65535),
        (1000, 2000),
        (0, 0),
        (65535, 65535),
    ] {
        let prefixes = range_prefixes(lo, hi);
        let mut covered = 0u32;
        for (start, bits) in &prefixes {
            let size = 1u32 << (16 - bits);
            assert_eq!(u32::from(*start) % size, 0, "aligned");
            covered += size;
            assert!(u32::from(*start) >= lo && u32::from(*start) + size - 1 <= hi);
        }
        assert_eq!(covered, hi - lo + 1, "{lo}-{hi}: {prefixes:?}");
    }
    assert_eq!(range_prefixes(0, 65535), vec![(0, 0)]);
    assert_eq!(range_prefixes(1, 65535).len(), 16);
}

#[test]
fn first_matching_rule_decides_across_nested_cidrs_and_ports() {
    let tcp80 = Match {
        proto: ProtoMatch {
            is: Some(6),
            not: None,
        },
        dst_ports: PortMatch {
            any_of: vec![(80, 80)],
            none_of: vec![],
        },
        ..Match::default()
    };
    let from_10 = Match {
        remote: AddrMatch {
            all_of: vec![nets(&["10.0.0.0/8"])],
            none_of: vec![nets(&["10.1.0.0/16"])],
        },
        ..Match::default()
    };
    let p = program(vec![
        (Step::Deny, Some(from_10)),
        (Step::Allow, Some(tcp80)),
        (Step::EndOfTier { pass: false }, None),
    ]);
    check_agrees(
        &p,
        &[
            probe("10.2.3.4", 6, 80),
            probe("10.1.3.4", 6, 80),
            probe("10.1.3.4", 6, 81),
            probe("192.0.2.1", 17, 80),
            probe("192.0.2.1", 6, 80),
        ],
    );
}

#[test]
fn pass_skips_to_the_next_tier_and_end_of_tier_denies() {
    let from = |n: &str| Match {
        remote: AddrMatch {
            all_of: vec![nets(&[n])],
            none_of: vec![],
        },
        ..Match::default()
    };
    let p = program(vec![
        (Step::Pass, Some(from("10.0.0.0/8"))),
        (Step::Allow, Some(from("10.1.0.0/16"))),
        (Step::EndOfTier { pass: false }, None),
        (Step::Allow, Some(from("10.2.0.0/16"))),
        (Step::EndOfTier { pass: true }, None),
        (Step::Deny, Some(from("10.3.0.0/16"))),
        (Step::EndOfProfile, None),
    ]);
    check_agrees(
        &p,
        &[
            probe("10.1.0.1", 6, 1),
            probe("10.2.0.1", 6, 1),
            probe("10.3.0.1", 6, 1),
            probe("10.4.0.1", 6, 1),
            probe("192.0.2.1", 6, 1),
        ],
    );
}

#[test]
fn ten_thousand_rules_compile_to_classes_not_combinations() {
    let mut entries: Vec<(Step, Option<Match>)> = (0..10_000u32)
        .map(|i| {
            let net = Ipv4Net::new(Ipv4Addr::from(0x0a40_0000 + i), 32).unwrap();
            let m = Match {
                proto: ProtoMatch {
                    is: Some(6),
                    not: None,
                },
                remote: AddrMatch {
                    all_of: vec![Arc::new(vec![net])],
                    none_of: vec![],
                },
                dst_ports: PortMatch {
                    any_of: vec![(9999, 9999)],
                    none_of: vec![],
                },
                ..Match::default()
            };
            (Step::Deny, Some(m))
        })
        .collect();
    entries.push((Step::Allow, None));
    let p = program(entries);
    let compiled = compile(&p).expect("compiles");
    assert!(compiled.ips.len() <= 10_001, "{}", compiled.ips.len());
    assert!(
        compiled.verdicts.len() <= 2 * 10_001,
        "{}",
        compiled.verdicts.len()
    );
    check_agrees(
        &p,
        &[
            probe("10.64.0.5", 6, 9999),
            probe("10.64.0.5", 6, 80),
            probe("10.65.0.5", 6, 9999),
        ],
    );
}

/// A small universe, so that random rules and probes collide often.
const CIDRS: [&str; 10] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3/32",
    "10.2.0.0/16",
    "192.0.2.0/24",
    "192.0.2.128/25",
    "0.0.0.0/0",
    "10.1.2.4/32",
    "172.16.0.0/12",
];
const ADDRS: [&str; 8] = [
    "10.1.2.3",
    "10.1.2.4",
    "10.1.9.9",
    "10.2.0.1",
    "10.9.9.9",
    "192.0.2.200",
    "192.0.2.1",
    "172.16.5.5",
];
const PROTOS: [u8; 4] = [1, 6, 17, 47];

fn random_nets(rng: &mut StdRng) -> NetSet {
    let n = rng.random_range(1..=3);
    Arc::new(
        (0..n)
            .map(|_| CIDRS[rng.random_range(0..CIDRS.len())].parse().unwrap())
            .collect(),
    )
}

fn random_ports(rng: &mut StdRng) -> PortMatch {
    let range = |rng: &mut StdRng| {
        let lo = rng.random_range(0..12u16) * 10;
        (lo, lo + rng.random_range(0..25u16))
    };
    let mut m = PortMatch::default();
    if rng.random_bool(0.4) {
        m.any_of = (0..rng.random_range(1..3)).map(|_| range(rng)).collect();
    }
    if rng.random_bool(0.2) {
        m.none_of = vec![range(rng)];
    }
    m
}

fn random_match(rng: &mut StdRng) -> Match {
    let mut m = Match::default();
    if rng.random_bool(0.5) {
        m.proto.is = Some(PROTOS[rng.random_range(0..PROTOS.len())]);
    } else if rng.random_bool(0.2) {
        m.proto.not = Some(PROTOS[rng.random_range(0..PROTOS.len())]);
    }
    if rng.random_bool(0.6) {
        m.remote.all_of = (0..rng.random_range(1..3))
            .map(|_| random_nets(rng))
            .collect();
    }
    if rng.random_bool(0.25) {
        m.remote.none_of = vec![random_nets(rng)];
    }
    if m.proto.is.is_some() {
        m.dst_ports = random_ports(rng);
        if rng.random_bool(0.2) {
            m.src_ports = random_ports(rng);
        }
    }
    m
}

fn random_program(rng: &mut StdRng) -> Program {
    let mut entries = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        for _ in 0..rng.random_range(0..7) {
            let step = match rng.random_range(0..10) {
                0..=3 => Step::Allow,
                4..=6 => Step::Deny,
                _ => Step::Pass,
            };
            let matcher = if rng.random_bool(0.1) {
                Match::default()
            } else {
                random_match(rng)
            };
            entries.push((step, Some(matcher)));
        }
        entries.push((
            Step::EndOfTier {
                pass: rng.random_bool(0.2),
            },
            None,
        ));
    }
    for _ in 0..rng.random_range(0..3) {
        for _ in 0..rng.random_range(0..4) {
            let step = if rng.random_bool(0.6) {
                Step::Allow
            } else {
                Step::Deny
            };
            entries.push((step, Some(random_match(rng))));
        }
        entries.push((Step::EndOfProfile, None));
    }
    program(entries)
}

fn random_probe(rng: &mut StdRng) -> Probe {
    Probe {
        remote: ADDRS[rng.random_range(0..ADDRS.len())].parse().unwrap(),
        proto: PROTOS[rng.random_range(0..PROTOS.len())],
        dst_port: rng.random_range(0..150),
        src_port: rng.random_range(0..150),
    }
}

#[test]
fn random_programs_compile_to_the_same_verdicts() {
    let mut rng = StdRng::seed_from_u64(0x5eed_f311);
    let mut checked = 0;
    for _ in 0..2_000 {
        let p = random_program(&mut rng);
        let probes: Vec<Probe> = (0..20).map(|_| random_probe(&mut rng)).collect();
        check_agrees(&p, &probes);
        checked += probes.len();
    }
    assert_eq!(checked, 40_000);
}
