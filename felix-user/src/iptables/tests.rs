//! Rendering: golden text for hand-written programs, and the rendered chains walked by a model
//! of netfilter ([`super::sim`]) against the plain program semantics for the semantics table,
//! random Calico worlds and random programs. Also the restore planning from `iptables-save`
//! text.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    sync::Arc,
};

use calico::model::{Object, Resource, WorkloadEndpointSpec};
use ipnet::Ipv4Net;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

use super::{
    Config,
    render::{CHAIN_FORWARD, CHAIN_INPUT, CHAIN_OUTPUT, CtState, Desired, Endpoint, render},
    restore::{cleanup_plan, parse_save, parse_set_list, plan},
    sim::{SimPacket, Verdict, run},
};
use crate::calc::policy::{
    L4, Packet, PolicyDirection, RuleRef,
    calc::{GroupKey, PolicyCalc},
    cases::{cases_dir, load_all},
    explain::probe_for,
    generate::{packet, world},
    program::{AddrMatch, Entry, Match, NetSet, PortMatch, Probe, Program, ProtoMatch, Step},
};

fn key(direction: PolicyDirection, policies: &[&str]) -> GroupKey {
    GroupKey {
        direction,
        policies: policies.iter().map(|s| s.to_string()).collect(),
        profiles: vec!["kns.default".into()],
        local_mask: vec![true; policies.len()],
        local_ports: Vec::new(),
    }
}

fn rule(tier: &str, policy: &str, index: usize, direction: PolicyDirection) -> RuleRef {
    RuleRef::Policy {
        tier: tier.into(),
        policy: policy.into(),
        direction,
        index,
    }
}

fn nets(list: &[&str]) -> NetSet {
    Arc::new(list.iter().map(|s| s.parse().expect("net")).collect())
}

fn tcp_to(ports: &[(u16, u16)]) -> Match {
    Match {
        proto: ProtoMatch {
            is: Some(6),
            not: None,
        },
        dst_ports: PortMatch {
            any_of: ports.to_vec(),
            none_of: Vec::new(),
        },
        ..Match::default()
    }
}

fn end_of_tier(tier: &str, direction: PolicyDirection, pass: bool) -> Entry {
    Entry {
        by: RuleRef::EndOfTier {
            tier: tier.into(),
            direction,
        },
        step: Step::EndOfTier { pass },
        matcher: None,
    }
}

fn end_of_profile(profile: &str, direction: PolicyDirection, index: usize) -> Entry {
    Entry {
        by: RuleRef::Profile {
            profile: profile.into(),
            direction,
            index,
        },
        step: Step::EndOfProfile,
        matcher: None,
    }
}

fn one_endpoint(iface: &str, ingress: (GroupKey, Program), egress: (GroupKey, Program)) -> Desired {
    let mut programs = HashMap::new();
    programs.insert(ingress.0.clone(), ingress.1);
    programs.insert(egress.0.clone(), egress.1);
    Desired {
        endpoints: vec![Endpoint {
            iface: iface.into(),
            ingress: ingress.0,
            egress: egress.0,
        }],
        programs,
    }
}

/// Ingress: tier security (a Pass, then a Deny of a large set) and tier default (allow web);
/// egress: the profile allows everything.
fn golden_desired() -> Desired {
    use PolicyDirection::{Egress, Ingress};
    let big = nets(&[
        "192.0.2.0/28",
        "192.0.2.64/28",
        "192.0.2.128/28",
        "198.51.100.7/32",
        "203.0.113.0/24",
    ]);
    let ingress = Program {
        entries: vec![
            Entry {
                by: rule("security", "security.p", 0, Ingress),
                step: Step::Pass,
                matcher: Some(Match {
                    remote: AddrMatch {
                        all_of: vec![nets(&["10.65.0.0/16"])],
                        none_of: vec![nets(&["10.65.9.9/32"])],
                    },
                    ..Match::default()
                }),
            },
            Entry {
                by: rule("security", "security.p", 1, Ingress),
                step: Step::Deny,
                matcher: Some(Match {
                    remote: AddrMatch {
                        all_of: vec![big],
                        none_of: Vec::new(),
                    },
                    ..Match::default()
                }),
            },
            end_of_tier("security", Ingress, false),
            Entry {
                by: rule("default", "default/web", 0, Ingress),
                step: Step::Allow,
                matcher: Some(Match {
                    proto: ProtoMatch {
                        is: Some(6),
                        not: None,
                    },
                    remote: AddrMatch {
                        all_of: vec![nets(&["10.65.0.2/32", "10.65.0.7/32"])],
                        none_of: Vec::new(),
                    },
                    dst_ports: PortMatch {
                        any_of: vec![(80, 80), (8080, 8090)],
                        none_of: vec![(8085, 8085)],
                    },
                    src_ports: PortMatch::default(),
                }),
            },
            Entry {
                by: rule("default", "default/web", 1, Ingress),
                step: Step::Allow,
                matcher: Some(Match {
                    proto: ProtoMatch {
                        is: Some(1),
                        not: None,
                    },
                    dst_ports: PortMatch {
                        any_of: vec![(8 << 8, 8 << 8 | 0xff)],
                        none_of: vec![(8 << 8 | 1, 8 << 8 | 1)],
                    },
                    ..Match::default()
                }),
            },
            end_of_tier("default", Ingress, false),
        ],
        default_deny: RuleRef::DefaultDeny { direction: Ingress },
    };
    let egress = Program {
        entries: vec![
            Entry {
                by: RuleRef::Profile {
                    profile: "kns.default".into(),
                    direction: Egress,
                    index: 0,
                },
                step: Step::Allow,
                matcher: Some(Match::default()),
            },
            end_of_profile("kns.default", Egress, 1),
        ],
        default_deny: RuleRef::DefaultDeny { direction: Egress },
    };
    one_endpoint(
        "calia",
        (key(Ingress, &["security.p", "default/web"]), ingress),
        (key(Egress, &[]), egress),
    )
}

const GOLDEN_RULES: &str = r#"*filter
:felix-FORWARD - [0:0]
:felix-INPUT - [0:0]
:felix-wl-to-host - [0:0]
:felix-allow - [0:0]
:felix-pass - [0:0]
:felix-from-wl-dispatch - [0:0]
:felix-to-wl-dispatch - [0:0]
:felix-tw-calia - [0:0]
:felix-fw-calia - [0:0]
:felix-pi-28ed5b6ac66b - [0:0]
:felix-pi-28ed5b6ac66b-0 - [0:0]
:felix-pi-28ed5b6ac66b-1 - [0:0]
:felix-po-8edba5e0d2a7 - [0:0]
:felix-po-8edba5e0d2a7-0 - [0:0]
-A felix-FORWARD -j MARK --set-xmark 0x0/0x30000
-A felix-FORWARD -i cali+ -j felix-from-wl-dispatch
-A felix-FORWARD -o cali+ -j felix-to-wl-dispatch
-A felix-FORWARD -m mark --mark 0x10000/0x10000 -m comment --comment "policy accepted the packet" -j ACCEPT
-A felix-INPUT -i cali+ -g felix-wl-to-host
-A felix-wl-to-host -j felix-from-wl-dispatch
-A felix-wl-to-host -m comment --comment "workload to host: accepted after its egress policy" -j ACCEPT
-A felix-allow -j MARK --set-xmark 0x10000/0x10000
-A felix-pass -j MARK --set-xmark 0x20000/0x20000
-A felix-from-wl-dispatch -i calia -g felix-fw-calia
-A felix-from-wl-dispatch -m comment --comment "unknown workload interface" -j DROP
-A felix-to-wl-dispatch -o calia -g felix-tw-calia
-A felix-to-wl-dispatch -m comment --comment "unknown workload interface" -j DROP
-A felix-tw-calia -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A felix-tw-calia -m conntrack --ctstate INVALID -j DROP
-A felix-tw-calia -j MARK --set-xmark 0x0/0x30000
-A felix-tw-calia -j felix-pi-28ed5b6ac66b
-A felix-tw-calia -m mark --mark 0x10000/0x10000 -j RETURN
-A felix-tw-calia -m comment --comment "default deny (ingress): no policy or profile allowed it" -j DROP
-A felix-fw-calia -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A felix-fw-calia -m conntrack --ctstate INVALID -j DROP
-A felix-fw-calia -j MARK --set-xmark 0x0/0x30000
-A felix-fw-calia -j felix-po-8edba5e0d2a7
-A felix-fw-calia -m mark --mark 0x10000/0x10000 -j RETURN
-A felix-fw-calia -m comment --comment "default deny (egress): no policy or profile allowed it" -j DROP
-A felix-pi-28ed5b6ac66b -m comment --comment "tier security" -j felix-pi-28ed5b6ac66b-0
-A felix-pi-28ed5b6ac66b -m mark --mark 0x0/0x20000 -m comment --comment "end of tier security (ingress)" -j DROP
-A felix-pi-28ed5b6ac66b -j MARK --set-xmark 0x0/0x20000
-A felix-pi-28ed5b6ac66b -m comment --comment "tier default" -j felix-pi-28ed5b6ac66b-1
-A felix-pi-28ed5b6ac66b -m mark --mark 0x10000/0x10000 -m comment --comment "tier default: allowed" -j RETURN
-A felix-pi-28ed5b6ac66b -m comment --comment "end of tier default (ingress)" -j DROP
-A felix-pi-28ed5b6ac66b-0 -s 10.65.0.0/16 -m set ! --match-set felix-223ee717a3d30495 src -m comment --comment "tier security policy security.p ingress rule 0" -g felix-pass
-A felix-pi-28ed5b6ac66b-0 -m set --match-set felix-daf5e25fe49b30ce src -m comment --comment "tier security policy security.p ingress rule 1" -j DROP
-A felix-pi-28ed5b6ac66b-1 -p tcp -s 10.65.0.2/32 -m multiport --dports 80,8080:8090 -m multiport ! --dports 8085 -m comment --comment "tier default policy default/web ingress rule 0" -g felix-allow
-A felix-pi-28ed5b6ac66b-1 -p tcp -s 10.65.0.7/32 -m multiport --dports 80,8080:8090 -m multiport ! --dports 8085 -m comment --comment "tier default policy default/web ingress rule 0" -g felix-allow
-A felix-pi-28ed5b6ac66b-1 -p icmp -m icmp --icmp-type 8 -m icmp ! --icmp-type 8/1 -m comment --comment "tier default policy default/web ingress rule 1" -g felix-allow
-A felix-po-8edba5e0d2a7 -m comment --comment "profile kns.default" -j felix-po-8edba5e0d2a7-0
-A felix-po-8edba5e0d2a7 -m mark --mark 0x10000/0x10000 -m comment --comment "profile kns.default: allowed" -j RETURN
-A felix-po-8edba5e0d2a7-0 -m comment --comment "profile kns.default egress rule 0" -g felix-allow
-I INPUT 1 -j felix-INPUT
-I FORWARD 1 -j felix-FORWARD
COMMIT
"#;

#[test]
fn golden_tiers_pass_sets_ports_icmp() {
    let config = Config {
        inline_max: 2,
        ..Config::default()
    };
    let rendered = render(&config, &golden_desired()).expect("renders");
    assert_eq!(rendered.rules, GOLDEN_RULES, "actual:\n{}", rendered.rules);
}

#[test]
fn golden_ipsets() {
    let config = Config {
        inline_max: 2,
        ..Config::default()
    };
    let rendered = render(&config, &golden_desired()).expect("renders");
    // A negative single network is inline only when no positive set is: rule 0's positive
    // 10.65.0.0/16 is, so its 10.65.9.9/32 becomes a set; rule 1's five networks are a set.
    let expected = "\
create felix-tmp hash:net family inet hashsize 1024 maxelem 1048576 -exist
flush felix-tmp
add felix-tmp 10.65.9.9/32
rename felix-tmp felix-223ee717a3d30495
create felix-tmp hash:net family inet hashsize 1024 maxelem 1048576 -exist
flush felix-tmp
add felix-tmp 192.0.2.0/28
add felix-tmp 192.0.2.64/28
add felix-tmp 192.0.2.128/28
add felix-tmp 198.51.100.7/32
add felix-tmp 203.0.113.0/24
rename felix-tmp felix-daf5e25fe49b30ce
";
    assert_eq!(rendered.ipsets, expected, "actual:\n{}", rendered.ipsets);
}

#[test]
fn many_ports_split_over_multiport_matches() {
    use PolicyDirection::Ingress;
    let ports: Vec<(u16, u16)> = (1..=20)
        .map(|p| (p * 10, p * 10))
        .chain([(1000, 1999)])
        .collect();
    let mut m = tcp_to(&ports);
    m.dst_ports.none_of = (0..17).map(|p| (3000 + 2 * p, 3000 + 2 * p)).collect();
    let program = Program {
        entries: vec![Entry {
            by: rule("default", "p", 0, Ingress),
            step: Step::Allow,
            matcher: Some(m),
        }],
        default_deny: RuleRef::DefaultDeny { direction: Ingress },
    };
    let k = key(Ingress, &["p"]);
    let desired = one_endpoint(
        "calia",
        (k.clone(), program.clone()),
        (
            key(PolicyDirection::Egress, &[]),
            Program {
                entries: Vec::new(),
                default_deny: RuleRef::DefaultDeny {
                    direction: PolicyDirection::Egress,
                },
            },
        ),
    );
    let rendered = render(&Config::default(), &desired).expect("renders");
    let section = rendered
        .chain(&format!("{}-0", super::group_chain(&k)))
        .expect("section chain");
    let text: Vec<String> = section.rules.iter().map(super::rule_text).collect();
    // 20 ports + one range (2) = 22 slots: 15 + 7, two rules; 17 negated ports: 15 + 2, two
    // matches in each rule.
    assert_eq!(
        text,
        [
            "-p tcp -m multiport --dports 10,20,30,40,50,60,70,80,90,100,110,120,130,140,150 \
             -m multiport ! --dports 3000,3002,3004,3006,3008,3010,3012,3014,3016,3018,3020,3022,3024,3026,3028 \
             -m multiport ! --dports 3030,3032 -m comment --comment \"tier default policy p ingress rule 0\" -g felix-allow",
            "-p tcp -m multiport --dports 160,170,180,190,200,1000:1999 \
             -m multiport ! --dports 3000,3002,3004,3006,3008,3010,3012,3014,3016,3018,3020,3022,3024,3026,3028 \
             -m multiport ! --dports 3030,3032 -m comment --comment \"tier default policy p ingress rule 0\" -g felix-allow",
        ]
    );
    // The egress program is empty: its endpoint chain goes straight to the default deny.
    let fw = rendered.chain("felix-fw-calia").expect("fw chain");
    assert_eq!(fw.rules.len(), 4);
    check_program_through_rules(
        &rendered,
        "calia",
        PolicyDirection::Ingress,
        &program,
        &[
            probe("10.1.1.1", 6, 50),
            probe("10.1.1.1", 6, 200),
            probe("10.1.1.1", 6, 1500),
            probe("10.1.1.1", 6, 3004),
            probe("10.1.1.1", 6, 3032),
            probe("10.1.1.1", 6, 3033),
            probe("10.1.1.1", 17, 50),
        ],
    );
}

#[test]
fn endpoints_with_one_group_share_its_chains() {
    use PolicyDirection::{Egress, Ingress};
    let mut desired = golden_desired();
    let first = desired.endpoints[0].clone();
    desired.endpoints.push(Endpoint {
        iface: "calib".into(),
        ..first
    });
    // A bad name and a duplicate are left out, not an error.
    desired.endpoints.push(Endpoint {
        iface: "eth0".into(),
        ingress: key(Ingress, &["security.p", "default/web"]),
        egress: key(Egress, &[]),
    });
    desired.endpoints.push(desired.endpoints[1].clone());
    let rendered = render(&Config::default(), &desired).expect("renders");
    let groups: Vec<&str> = rendered
        .chains
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| n.starts_with("felix-pi-") || n.starts_with("felix-po-"))
        .collect();
    assert_eq!(groups.len(), 5, "{groups:?}");
    assert!(rendered.chain("felix-tw-calib").is_some());
    assert_eq!(
        rendered
            .skipped
            .iter()
            .map(|s| s.iface.as_str())
            .collect::<Vec<_>>(),
        ["calib", "eth0"]
    );
    for chain in &rendered.chains {
        assert!(chain.name.len() <= super::MAX_CHAIN_NAME, "{}", chain.name);
        assert!(chain.name.starts_with(super::PREFIX));
    }
}

#[test]
fn host_to_workload_is_policed_only_when_asked() {
    let desired = golden_desired();
    let off = render(&Config::default(), &desired).expect("renders");
    assert!(off.chain(CHAIN_OUTPUT).is_none());
    assert_eq!(off.hooks.len(), 2);
    let on = render(
        &Config {
            police_host_to_workload: true,
            ..Config::default()
        },
        &desired,
    )
    .expect("renders");
    assert!(on.rules.contains("-I OUTPUT 1 -j felix-OUTPUT"));
    let mut to_pod = sim_packet(None, Some("calia"), "10.0.0.1", "10.65.0.1", 6, 80);
    assert_eq!(run(&off, CHAIN_FORWARD, &mut to_pod.clone()), Verdict::Drop);
    // From the host itself: OUTPUT, not FORWARD.
    assert_eq!(run(&on, CHAIN_OUTPUT, &mut to_pod), Verdict::Drop);
    let mut web = sim_packet(None, Some("calia"), "10.65.0.2", "10.65.0.1", 6, 80);
    assert_eq!(run(&on, CHAIN_OUTPUT, &mut web), Verdict::Accept);
    // Not to a workload: left to the rest of OUTPUT.
    let mut other = sim_packet(None, Some("eth0"), "10.0.0.1", "10.0.0.2", 6, 80);
    assert_eq!(run(&on, CHAIN_OUTPUT, &mut other), Verdict::Continue);
    // From a workload to the host: egress policy (the profile allows), then accepted.
    let mut to_host = sim_packet(Some("calia"), None, "10.65.0.1", "10.0.0.1", 6, 22);
    assert_eq!(run(&off, CHAIN_INPUT, &mut to_host), Verdict::Accept);
    // Established flows are accepted before any policy.
    let mut established = sim_packet(Some("eth0"), Some("calia"), "10.0.0.1", "10.65.0.1", 6, 9);
    established.ct = Some(CtState::Established);
    assert_eq!(run(&off, CHAIN_FORWARD, &mut established), Verdict::Accept);
    let mut invalid = sim_packet(Some("calia"), Some("eth0"), "10.65.0.1", "10.0.0.1", 6, 9);
    invalid.ct = Some(CtState::Invalid);
    assert_eq!(run(&off, CHAIN_FORWARD, &mut invalid), Verdict::Drop);
    // Neither side a workload: untouched.
    let mut transit = sim_packet(Some("eth0"), Some("eth1"), "10.0.0.1", "10.0.0.2", 6, 9);
    assert_eq!(run(&off, CHAIN_FORWARD, &mut transit), Verdict::Continue);
    // A workload interface felix does not know: dropped.
    let mut unknown = sim_packet(Some("eth0"), Some("calizz"), "10.0.0.1", "10.65.0.9", 6, 80);
    assert_eq!(run(&off, CHAIN_FORWARD, &mut unknown), Verdict::Drop);
}

fn sim_packet(
    in_iface: Option<&str>,
    out_iface: Option<&str>,
    src: &str,
    dst: &str,
    proto: u8,
    dport: u16,
) -> SimPacket {
    SimPacket {
        in_iface: in_iface.map(String::from),
        out_iface: out_iface.map(String::from),
        src: src.parse().expect("src"),
        dst: dst.parse().expect("dst"),
        proto,
        sport: 40000,
        dport,
        icmp: None,
        ct: None,
        mark: 0,
    }
}

fn probe(remote: &str, proto: u8, dst_port: u16) -> Probe {
    Probe {
        remote: remote.parse().expect("remote"),
        proto,
        dst_port,
        src_port: if matches!(proto, 6 | 17 | 132) {
            40000
        } else {
            0
        },
    }
}

/// The local address used for the endpoint under test in simulated packets.
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 1);

/// A simulated forwarded packet crossing `iface` in `direction` that `probe` describes.
fn forwarded(iface: &str, direction: PolicyDirection, probe: &Probe) -> SimPacket {
    let (in_iface, out_iface, src, dst) = match direction {
        PolicyDirection::Ingress => ("eth0", iface, probe.remote, LOCAL),
        PolicyDirection::Egress => (iface, "eth0", LOCAL, probe.remote),
    };
    let icmp = (probe.proto == 1).then(|| {
        (
            u8::try_from(probe.dst_port >> 8).unwrap_or(0),
            (probe.dst_port & 0xff) as u8,
        )
    });
    SimPacket {
        in_iface: Some(in_iface.into()),
        out_iface: Some(out_iface.into()),
        src,
        dst,
        proto: probe.proto,
        sport: probe.src_port,
        dport: if icmp.is_some() { 0 } else { probe.dst_port },
        icmp,
        ct: None,
        mark: 0,
    }
}

fn through_rules(
    rendered: &super::Rendered,
    iface: &str,
    dir: PolicyDirection,
    p: &Probe,
) -> Verdict {
    run(rendered, CHAIN_FORWARD, &mut forwarded(iface, dir, p))
}

fn check_program_through_rules(
    rendered: &super::Rendered,
    iface: &str,
    direction: PolicyDirection,
    program: &Program,
    probes: &[Probe],
) {
    for p in probes {
        let (allow, _) = program.evaluate(p);
        let got = through_rules(rendered, iface, direction, p);
        let want = if allow {
            Verdict::Accept
        } else {
            Verdict::Drop
        };
        assert_eq!(
            got, want,
            "{direction:?} {p:?} through {iface}\n{}",
            rendered.rules
        );
    }
}

fn calc_of(resources: &[Resource]) -> PolicyCalc {
    let mut calc = PolicyCalc::new();
    for r in resources {
        calc.upsert(&r.key(), r);
    }
    calc
}

fn endpoint_key(o: &Object<WorkloadEndpointSpec>) -> String {
    Resource::WorkloadEndpoint(o.clone()).key()
}

fn sim_of_packet(packet: &Packet, in_iface: &str, out_iface: &str) -> SimPacket {
    let icmp = match packet.l4 {
        L4::Icmp { icmp_type, code } => Some((icmp_type, code)),
        _ => None,
    };
    SimPacket {
        in_iface: Some(in_iface.into()),
        out_iface: Some(out_iface.into()),
        src: packet.src,
        dst: packet.dst,
        proto: packet.proto,
        sport: packet.src_port(),
        dport: packet.dst_port(),
        icmp,
        ct: None,
        mark: 0,
    }
}

#[test]
fn semantics_table_through_rendered_rules() {
    let scenarios = load_all(&cases_dir()).expect("policy cases load");
    let mut checked = 0;
    let mut failures = Vec::new();
    for inline_max in [0, 1, 4] {
        let config = Config {
            inline_max,
            ..Config::default()
        };
        for scenario in &scenarios {
            let mut calc = calc_of(&scenario.resources);
            // Every endpoint of the scenario is local, on its own interface.
            let endpoints: BTreeMap<String, String> = scenario
                .resources
                .iter()
                .filter_map(|r| match r {
                    Resource::WorkloadEndpoint(o) => {
                        Some((o.spec.interface_name.clone(), endpoint_key(o)))
                    }
                    _ => None,
                })
                .filter(|(iface, _)| iface.starts_with("cali"))
                .collect();
            let (desired, missing) = Desired::from_calc(&mut calc, &endpoints);
            assert!(missing.is_empty());
            let rendered = render(&config, &desired).expect("renders");
            assert!(rendered.skipped.is_empty(), "{:?}", rendered.skipped);
            for (i, check) in scenario.checks.iter().enumerate() {
                let ep = scenario.endpoint(check).expect("endpoint");
                let iface = &ep.spec.interface_name;
                // From (or to) a non-workload interface: only this endpoint's policy applies.
                let mut p = match check.direction {
                    PolicyDirection::Ingress => sim_of_packet(&check.packet, "eth0", iface),
                    PolicyDirection::Egress => sim_of_packet(&check.packet, iface, "eth0"),
                };
                let got = run(&rendered, CHAIN_FORWARD, &mut p);
                let want = if check.expect_allow {
                    Verdict::Accept
                } else {
                    Verdict::Drop
                };
                checked += 1;
                if got != want {
                    failures.push(format!(
                        "{} check {i} (inline_max {inline_max}): {}: want {want:?}, got {got:?}",
                        scenario.path.display(),
                        check.describe()
                    ));
                }
            }
        }
    }
    assert!(checked >= 3 * 150, "only {checked} checks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn random_worlds_through_rendered_rules() {
    let mut rng = StdRng::seed_from_u64(0x1b7a_b1e5);
    let mut checked = 0;
    let mut denied = 0;
    for world_no in 0..300 {
        let resources = world(&mut rng);
        let mut calc = calc_of(&resources);
        let workloads: Vec<&Object<WorkloadEndpointSpec>> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::WorkloadEndpoint(o) => Some(o),
                _ => None,
            })
            .collect();
        let endpoints: BTreeMap<String, String> = workloads
            .iter()
            .map(|o| (o.spec.interface_name.clone(), endpoint_key(o)))
            .collect();
        let config = Config {
            inline_max: rng.random_range(0..3),
            police_host_to_workload: rng.random_bool(0.5),
            ..Config::default()
        };
        let (desired, _) = Desired::from_calc(&mut calc, &endpoints);
        let rendered = render(&config, &desired).expect("renders");
        for _ in 0..20 {
            let a = workloads[rng.random_range(0..workloads.len())];
            let local = match a.spec.ip_networks[0].0 {
                ipnet::IpNet::V4(n) => n.addr(),
                ipnet::IpNet::V6(_) => unreachable!("generated IPv4"),
            };
            let direction = if rng.random_bool(0.5) {
                PolicyDirection::Ingress
            } else {
                PolicyDirection::Egress
            };
            let p = packet(&mut rng, local, direction);
            let programs = calc.programs(&endpoint_key(a)).expect("programs");
            let allowed = |dir: PolicyDirection, programs: &[(GroupKey, Program); 2]| {
                let program = match dir {
                    PolicyDirection::Ingress => &programs[0].1,
                    PolicyDirection::Egress => &programs[1].1,
                };
                program.evaluate(&probe_for(&p, dir)).0
            };
            let own = allowed(direction, &programs);
            // The remote may be another local workload: then pod to pod, both policies.
            let remote = match direction {
                PolicyDirection::Ingress => p.src,
                PolicyDirection::Egress => p.dst,
            };
            let other = calc
                .workload_holding(remote)
                .map(str::to_string)
                .and_then(|k| workloads.iter().find(|o| endpoint_key(o) == k).copied());
            let (expected, mut sim) = match (direction, other) {
                (PolicyDirection::Ingress, Some(b)) => {
                    let pb = calc.programs(&endpoint_key(b)).expect("programs");
                    let sim = sim_of_packet(&p, &b.spec.interface_name, &a.spec.interface_name);
                    (own && allowed(PolicyDirection::Egress, &pb), sim)
                }
                (PolicyDirection::Egress, Some(b)) => {
                    let pb = calc.programs(&endpoint_key(b)).expect("programs");
                    let sim = sim_of_packet(&p, &a.spec.interface_name, &b.spec.interface_name);
                    (own && allowed(PolicyDirection::Ingress, &pb), sim)
                }
                (PolicyDirection::Ingress, None) => {
                    (own, sim_of_packet(&p, "eth0", &a.spec.interface_name))
                }
                (PolicyDirection::Egress, None) => {
                    (own, sim_of_packet(&p, &a.spec.interface_name, "eth0"))
                }
            };
            let got = run(&rendered, CHAIN_FORWARD, &mut sim);
            let want = if expected {
                Verdict::Accept
            } else {
                Verdict::Drop
            };
            assert_eq!(
                got, want,
                "world {world_no}: {direction:?} of {} for {p:?}\n{}",
                a.metadata.name, rendered.rules
            );
            checked += 1;
            denied += usize::from(!expected);
        }
    }
    assert_eq!(checked, 6_000);
    assert!(
        denied > 600 && denied < 5_400,
        "{denied} of {checked} denied"
    );
}

const NET_POOL: [&str; 10] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3/32",
    "10.2.0.0/16",
    "192.0.2.0/24",
    "192.0.2.128/25",
    "192.0.2.7/32",
    "198.51.100.0/24",
    "0.0.0.0/0",
];
const REMOTE_POOL: [&str; 8] = [
    "10.1.2.3",
    "10.1.2.4",
    "10.1.9.9",
    "10.2.3.4",
    "10.9.9.9",
    "192.0.2.7",
    "192.0.2.200",
    "198.51.100.1",
];

fn random_set(rng: &mut StdRng) -> NetSet {
    let n = *[0usize, 1, 1, 2, 3, 5, 8].choose(rng).unwrap_or(&1);
    let mut list: Vec<Ipv4Net> = (0..n)
        .filter_map(|_| NET_POOL[..9].choose(rng).and_then(|s| s.parse().ok()))
        .collect();
    if rng.random_bool(0.05) {
        list.push(Ipv4Net::default());
    }
    list.sort();
    list.dedup();
    Arc::new(list)
}

fn random_ranges(rng: &mut StdRng, max: u16, count: usize) -> Vec<(u16, u16)> {
    (0..count)
        .map(|_| {
            let lo = rng.random_range(0..max);
            let hi = if rng.random_bool(0.7) {
                lo
            } else {
                lo.saturating_add(rng.random_range(0..6)).min(max)
            };
            (lo, hi)
        })
        .collect()
}

fn random_match(rng: &mut StdRng) -> Match {
    let is = *[None, Some(6), Some(17), Some(1), Some(47), Some(132)]
        .choose(rng)
        .unwrap_or(&None);
    let not = if rng.random_bool(0.2) {
        *[Some(6), Some(17), Some(1)].choose(rng).unwrap_or(&None)
    } else {
        None
    };
    let mut m = Match {
        proto: ProtoMatch { is, not },
        ..Match::default()
    };
    if rng.random_bool(0.3) {
        // Broad matches, so that later tiers and Pass are reached often.
        m.proto.not = None;
        return m;
    }
    for _ in 0..rng.random_range(0..3) {
        m.remote.all_of.push(random_set(rng));
    }
    for _ in 0..rng.random_range(0..3) {
        m.remote.none_of.push(random_set(rng));
    }
    match is {
        Some(6 | 17 | 132) => {
            // Up to 40 ports so that multiport splits.
            for (pm, max) in [(&mut m.dst_ports, 60), (&mut m.src_ports, 60)] {
                if rng.random_bool(0.5) {
                    let n = rng.random_range(1..40);
                    pm.any_of = random_ranges(rng, max, n);
                }
                if rng.random_bool(0.3) {
                    let n = rng.random_range(1..20);
                    pm.none_of = random_ranges(rng, max, n);
                }
            }
        }
        Some(1) => {
            let icmp = |rng: &mut StdRng| -> (u16, u16) {
                let t: u16 = rng.random_range(0..4);
                match rng.random_range(0..3) {
                    0 => {
                        let v = t << 8 | rng.random_range(0..3);
                        (v, v)
                    }
                    1 => (t << 8, t << 8 | 0xff),
                    _ => (0, u16::MAX),
                }
            };
            if rng.random_bool(0.6) {
                m.dst_ports.any_of.push(icmp(rng));
            }
            if rng.random_bool(0.3) {
                m.dst_ports.none_of.push(icmp(rng));
            }
        }
        Some(_) if rng.random_bool(0.3) => {
            // Validation forbids this; the semantics (port 0) are still rendered.
            m.dst_ports.any_of = random_ranges(rng, 3, 1);
        }
        _ => {}
    }
    m
}

fn random_program(rng: &mut StdRng, direction: PolicyDirection) -> Program {
    let mut entries = Vec::new();
    let sections = rng.random_range(0..5);
    for s in 0..sections {
        let tier = format!("t{s}");
        for i in 0..rng.random_range(0..6) {
            let step = *[Step::Allow, Step::Deny, Step::Pass]
                .choose(rng)
                .unwrap_or(&Step::Allow);
            entries.push(Entry {
                by: rule(&tier, "p", i, direction),
                step,
                matcher: rng.random_bool(0.95).then(|| random_match(rng)),
            });
        }
        let end = if rng.random_bool(0.6) {
            end_of_tier(&tier, direction, rng.random_bool(0.3))
        } else {
            end_of_profile(&tier, direction, 9)
        };
        if rng.random_bool(0.9) {
            entries.push(end);
        }
    }
    Program {
        entries,
        default_deny: RuleRef::DefaultDeny { direction },
    }
}

fn random_probe(rng: &mut StdRng) -> Probe {
    let remote = REMOTE_POOL
        .choose(rng)
        .and_then(|s| s.parse().ok())
        .unwrap_or(Ipv4Addr::new(10, 9, 9, 9));
    let proto = *[6u8, 17, 1, 47, 132].choose(rng).unwrap_or(&6);
    let (dst_port, src_port) = match proto {
        6 | 17 | 132 => (rng.random_range(0..64), rng.random_range(0..64)),
        1 => (rng.random_range(0u16..4) << 8 | rng.random_range(0..3), 0),
        _ => (0, 0),
    };
    Probe {
        remote,
        proto,
        dst_port,
        src_port,
    }
}

#[test]
fn random_programs_through_rendered_rules() {
    let mut rng = StdRng::seed_from_u64(0x00dd_ba11);
    let mut checked = 0;
    let mut allowed = 0;
    for n in 0..2_000 {
        let config = Config {
            inline_max: rng.random_range(0..5),
            ..Config::default()
        };
        let ingress = random_program(&mut rng, PolicyDirection::Ingress);
        let egress = random_program(&mut rng, PolicyDirection::Egress);
        let desired = one_endpoint(
            "cali0",
            (key(PolicyDirection::Ingress, &["x"]), ingress.clone()),
            (key(PolicyDirection::Egress, &["y"]), egress.clone()),
        );
        let rendered = render(&config, &desired).expect("renders");
        for _ in 0..30 {
            let p = random_probe(&mut rng);
            for (dir, program) in [
                (PolicyDirection::Ingress, &ingress),
                (PolicyDirection::Egress, &egress),
            ] {
                let (allow, _) = program.evaluate(&p);
                let got = through_rules(&rendered, "cali0", dir, &p);
                let want = if allow {
                    Verdict::Accept
                } else {
                    Verdict::Drop
                };
                assert_eq!(
                    got, want,
                    "program {n} {dir:?} {p:?}\n{program:#?}\n{}",
                    rendered.rules
                );
                checked += 1;
                allowed += usize::from(allow);
            }
        }
    }
    assert_eq!(checked, 120_000);
    assert!(allowed > 10_000 && allowed < 110_000, "{allowed} allowed");
}

#[test]
fn ports_without_protocol_are_an_error() {
    use PolicyDirection::Ingress;
    let mut m = tcp_to(&[(80, 80)]);
    m.proto.is = None;
    let program = Program {
        entries: vec![Entry {
            by: rule("default", "p", 0, Ingress),
            step: Step::Allow,
            matcher: Some(m),
        }],
        default_deny: RuleRef::DefaultDeny { direction: Ingress },
    };
    let desired = one_endpoint(
        "calia",
        (key(Ingress, &["p"]), program.clone()),
        (key(Ingress, &["q"]), program),
    );
    let err = render(&Config::default(), &desired).expect_err("no protocol");
    assert!(
        err.to_string().contains("ports without a protocol"),
        "{err}"
    );
}

const SAVED: &str = "\
# Generated by iptables-nft-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j felix-nat-not-ours
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:felix-FORWARD - [0:0]
:felix-old - [0:0]
-A INPUT -j felix-INPUT
-A FORWARD -j DOCKER
-A FORWARD -j felix-FORWARD
-A OUTPUT -m comment --comment \"host rule\" -j ACCEPT
-A DOCKER -j felix-old
-A felix-FORWARD -j felix-old
-A felix-old -j DROP
COMMIT
";

#[test]
fn save_output_is_read_for_our_chains_and_jumps() {
    let saved = parse_save(SAVED);
    assert_eq!(
        saved.ours,
        BTreeMap::from([
            ("felix-FORWARD".to_string(), 1),
            ("felix-old".to_string(), 1)
        ])
    );
    assert_eq!(saved.others["FORWARD"], ["-j DOCKER", "-j felix-FORWARD"]);
    assert_eq!(
        saved.others["OUTPUT"],
        ["-m comment --comment \"host rule\" -j ACCEPT"]
    );
    assert!(!saved.others.contains_key("PREROUTING"));
}

#[test]
fn plan_rewrites_changed_chains_deletes_stale_ones_and_puts_hooks_first() {
    let rendered = render(&Config::default(), &golden_desired()).expect("renders");
    let p = plan(&rendered, &parse_save(SAVED), None);
    let script = p.script.expect("a transaction");
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(lines[0], "*filter");
    assert_eq!(*lines.last().expect("lines"), "COMMIT");
    // Every wanted chain declared (flushed) and written, the stale one flushed then deleted.
    assert_eq!(p.written, rendered.chains.len());
    assert_eq!(p.deleted, 1);
    assert!(lines.contains(&":felix-old - [0:0]"));
    assert_eq!(lines[lines.len() - 2], "-X felix-old");
    // FORWARD's jump is not first: moved; INPUT's is: kept; DOCKER's jump to the stale chain goes.
    assert!(lines.contains(&"-D FORWARD -j felix-FORWARD"));
    assert!(lines.contains(&"-I FORWARD 1 -j felix-FORWARD"));
    assert!(lines.contains(&"-D DOCKER -j felix-old"));
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("INPUT 1") || l.starts_with("-D INPUT"))
    );
    assert!(!lines.iter().any(|l| l.contains("OUTPUT")));
    assert_eq!(p.hook_changes, 3);

    // Applied: the same render again changes nothing.
    let mut after = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n");
    after.push_str(":OUTPUT ACCEPT [0:0]\n-A INPUT -j felix-INPUT\n-A FORWARD -j felix-FORWARD\n");
    for chain in &rendered.chains {
        after.push_str(&format!(":{} - [0:0]\n", chain.name));
        super::render::write_chain_rules(&mut after, chain);
    }
    after.push_str("COMMIT\n");
    let again = plan(&rendered, &parse_save(&after), Some(&rendered));
    assert_eq!(again.script, None);
    assert_eq!(again.unchanged, rendered.chains.len());
    // Without memory of the last apply every chain is rewritten.
    let full = plan(&rendered, &parse_save(&after), None);
    assert_eq!(full.written, rendered.chains.len());
    assert_eq!(full.hook_changes, 0);
    // One group changes: only its chains are rewritten.
    let mut changed_desired = golden_desired();
    for program in changed_desired.programs.values_mut() {
        if let Some(m) = program.entries[0].matcher.as_mut() {
            m.remote.none_of.clear();
        }
    }
    let changed = render(&Config::default(), &changed_desired).expect("renders");
    let partial = plan(&changed, &parse_save(&after), Some(&rendered));
    assert_eq!(partial.written, 1, "{:?}", partial.script);
    assert_eq!(partial.deleted, 0);
}

#[test]
fn plan_on_a_table_that_does_not_exist_yet_inserts_the_hooks() {
    let rendered = render(&Config::default(), &golden_desired()).expect("renders");
    let p = plan(&rendered, &parse_save(""), None);
    let script = p.script.expect("a transaction");
    assert!(script.contains("-I INPUT 1 -j felix-INPUT\n"));
    assert!(script.contains("-I FORWARD 1 -j felix-FORWARD\n"));
    assert!(!script.contains("-D "));
}

#[test]
fn cleanup_removes_every_chain_and_jump_of_ours() {
    let script = cleanup_plan(&parse_save(SAVED)).expect("something to clean");
    assert_eq!(
        script,
        "*filter\n:felix-FORWARD - [0:0]\n:felix-old - [0:0]\n-D DOCKER -j felix-old\n\
         -D FORWARD -j felix-FORWARD\n-D INPUT -j felix-INPUT\n-X felix-FORWARD\n-X felix-old\nCOMMIT\n"
    );
    assert_eq!(
        cleanup_plan(&parse_save("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")),
        None
    );
}

#[test]
fn ipset_listing_is_read_for_our_sets() {
    let text = "Name: felix-00ff\nType: hash:net\nReferences: 2\nNumber of entries: 1\n\
                Name: other\nType: hash:ip\nReferences: 0\n\
                Name: felix-tmp\nType: hash:net\nReferences: 0\n";
    let sets = parse_set_list(text);
    assert_eq!(sets.len(), 2);
    assert_eq!(
        (sets[0].name.as_str(), sets[0].references),
        ("felix-00ff", 2)
    );
    assert_eq!(
        (sets[1].name.as_str(), sets[1].references),
        ("felix-tmp", 0)
    );
}

/// A named port on the remote side renders as one rule per port number, each matching the
/// addresses that declare the name with that number (Calico's `hash:ip,port` set, split by
/// port so that address and port stay paired); on the local side it is the endpoint's own port.
#[test]
fn named_ports_render_paired_sets_and_the_local_port() {
    let resources: Vec<Resource> = calico::model::document::parse_documents(
        "
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {interfaceName: calic, ipNetworks: [10.65.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec: {interfaceName: caliw, ipNetworks: [10.65.0.2/32], ports: [{name: http, protocol: TCP, port: 80}]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web-2, namespace: default, labels: {app: web}}
spec: {interfaceName: calix1, ipNetworks: [10.65.0.3/32, 10.65.0.4/32], ports: [{name: http, protocol: TCP, port: 8080}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  egress: [{action: Deny, protocol: TCP, destination: {ports: [http]}}, {action: Allow}]
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]
",
    )
    .into_iter()
    .map(|r| r.expect("resource"))
    .collect();
    let mut calc = calc_of(&resources);
    let endpoints: BTreeMap<String, String> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::WorkloadEndpoint(o) if !o.spec.interface_name.is_empty() => {
                Some((o.spec.interface_name.clone(), endpoint_key(o)))
            }
            _ => None,
        })
        .collect();
    let (desired, missing) = Desired::from_calc(&mut calc, &endpoints);
    assert!(missing.is_empty());
    let config = Config {
        inline_max: 1,
        ..Config::default()
    };
    let rendered = render(&config, &desired).expect("renders");
    let set_of = |members: &[&str]| -> String {
        let want: Vec<Ipv4Net> = members.iter().map(|m| m.parse().expect("net")).collect();
        rendered
            .sets
            .iter()
            .find(|(_, nets)| **nets == want)
            .map(|(name, _)| name.clone())
            .expect("a set of these members")
    };
    let web2 = set_of(&["10.65.0.3/32", "10.65.0.4/32"]);
    let lines: Vec<&str> = rendered.rules.lines().collect();
    let deny_80 = lines.iter().any(|l| {
        l.contains("-d 10.65.0.2/32") && l.contains("--dports 80 ") && l.contains("-j DROP")
    });
    let deny_8080 = lines.iter().any(|l| {
        l.contains(&format!("--match-set {web2} dst"))
            && l.contains("--dports 8080 ")
            && l.contains("-j DROP")
    });
    assert!(
        deny_80,
        "web-1's http (inline address):\n{}",
        rendered.rules
    );
    assert!(deny_8080, "web-2's http (a set):\n{}", rendered.rules);
    // Ingress: web-1's own http is 80; the client declares none, so its ingress rule is gone.
    let local_80 = lines
        .iter()
        .filter(|l| l.starts_with("-A felix-pi-") && l.contains("--dports 80 "))
        .count();
    assert_eq!(local_80, 1, "{}", rendered.rules);
    // Through the rules: the client's egress to web-2 (not local: out of eth0).
    for (dport, want) in [(8080, Verdict::Drop), (80, Verdict::Accept)] {
        let p = Packet {
            src: Ipv4Addr::new(10, 65, 0, 1),
            dst: Ipv4Addr::new(10, 65, 0, 3),
            proto: 6,
            l4: L4::Ports {
                src: 40000,
                dst: dport,
            },
        };
        let mut sim = sim_of_packet(&p, "calic", "eth0");
        assert_eq!(run(&rendered, CHAIN_FORWARD, &mut sim), want, "{p:?}");
    }
}
