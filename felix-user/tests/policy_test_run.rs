//! Tier 2: the policy semantics table (tests/policy-cases) and randomized policies through the
//! real programs. Each check's endpoint policy is calculated and compiled as felix does, written
//! to the maps, and the check's packet is run with BPF_PROG_TEST_RUN as a flow's first packet:
//! ingress checks through `cali_to_wl` (traffic the host stack delivers to the pod), egress
//! checks through `cali_from_wl` and, for destinations outside the pod network (judged after the
//! host stack's NAT), `uplink_out`. The verdict must be the table's, and the deciding rule's
//! counter must be the one that moved. Needs root and bpffs (`--features privileged-tests`).
#![cfg(feature = "privileged-tests")]

mod support;

use calico::model::Resource;
use felix_user::{
    PROG_TO_WORKLOAD,
    calc::policy::{PolicyDirection, calc::PolicyCalc, cases},
};

use support::{
    harness::{Harness, On, TC_ACT_OK, TC_ACT_SHOT, WORKLOAD_A},
    packet,
};

/// Pod A's verdict on `frame` as a flow's first packet in `direction`.
fn run(h: &mut Harness, direction: PolicyDirection, frame: &[u8]) -> u32 {
    let on = On::iface(WORKLOAD_A);
    match direction {
        PolicyDirection::Ingress => h.run(PROG_TO_WORKLOAD, on, frame).verdict,
        PolicyDirection::Egress => h.run_from_workload(on, frame).verdict,
    }
}

#[test]
fn semantics_table_through_the_kernel() {
    let mut h = Harness::new("policy-cases");
    let scenarios = cases::load_all(&cases::cases_dir()).expect("policy cases load");
    let mut failures = Vec::new();
    let mut checked = 0;
    for scenario in &scenarios {
        let mut calc = PolicyCalc::from_resources(&scenario.resources);
        for (i, check) in scenario.checks.iter().enumerate() {
            let endpoint = scenario.endpoint(check).expect("endpoint in scenario");
            let key = Resource::WorkloadEndpoint(endpoint.clone()).key();
            let (group, program) = calc.program_for(&key, check.direction).expect("program");
            let (group, program) = (&group, &program);
            let slot = h.program_policy(group, program);
            let endpoint_ip = match check.direction {
                PolicyDirection::Ingress => check.packet.dst,
                PolicyDirection::Egress => check.packet.src,
            };
            h.set_endpoint(WORKLOAD_A, endpoint_ip.octets(), [slot, slot]);
            h.flush_conntrack();
            let programmed = h
                .policy
                .groups()
                .find(|(g, _)| *g == group)
                .map(|(_, p)| p.clone())
                .expect("programmed group");
            let expected_rule = program
                .entries
                .iter()
                .map(|e| &e.by)
                .chain([&program.default_deny])
                .position(|by| by.to_string() == check.by);
            let counter = expected_rule.map(|i| programmed.rule_ids[i]);
            let before = counter.map(|id| h.rule_count(id));
            let verdict = run(
                &mut h,
                check.direction,
                &packet::first_packet(&check.packet),
            );
            let allowed = verdict == TC_ACT_OK;
            checked += 1;
            let moved = match (counter, before) {
                (Some(id), Some(b)) => h.rule_count(id) == b + 1,
                _ => false,
            };
            if allowed != check.expect_allow || (!allowed && verdict != TC_ACT_SHOT) || !moved {
                failures.push(format!(
                    "{} check {i} ({:?} {:?}): expected {} by {:?}; kernel verdict {verdict}, rule counter moved: {moved}",
                    scenario.path.display(),
                    check.direction,
                    check.packet,
                    if check.expect_allow { "allow" } else { "deny" },
                    check.by,
                ));
            }
        }
    }
    assert!(checked >= 40, "only {checked} checks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Generated worlds and packets through the kernel: the verdict must be the reference
/// evaluator's, and the counter of the rule the reference names must be the one that moved.
#[test]
fn random_worlds_through_the_kernel_match_the_reference() {
    use felix_user::calc::policy::{generate, reference};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    let mut h = Harness::new("policy-random");
    let mut rng = StdRng::seed_from_u64(0x6e7_f311);
    let mut checked = 0;
    for world_no in 0..60 {
        let resources = generate::world(&mut rng);
        let mut calc = PolicyCalc::from_resources(&resources);
        let endpoints: Vec<_> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::WorkloadEndpoint(o) => Some(o),
                _ => None,
            })
            .collect();
        for _ in 0..20 {
            let endpoint = endpoints[rng.random_range(0..endpoints.len())];
            let key = Resource::WorkloadEndpoint(endpoint.clone()).key();
            let Some(ipnet::IpNet::V4(local)) = endpoint.spec.ip_networks.first().map(|c| c.0)
            else {
                panic!("generated endpoints have an IPv4 address");
            };
            let direction = if rng.random_bool(0.5) {
                PolicyDirection::Ingress
            } else {
                PolicyDirection::Egress
            };
            let p = generate::packet(&mut rng, local.addr(), direction);
            let expected = reference::evaluate(&resources, endpoint, direction, &p);
            let (group, program) = calc.program_for(&key, direction).expect("program");
            let (group, program) = (&group, &program);
            let slot = h.program_policy(group, program);
            h.set_endpoint(WORKLOAD_A, local.addr().octets(), [slot, slot]);
            h.flush_conntrack();
            let ids = h
                .policy
                .groups()
                .find(|(g, _)| *g == group)
                .map(|(_, p)| p.rule_ids.clone())
                .expect("programmed group");
            let position = program
                .entries
                .iter()
                .map(|e| &e.by)
                .chain([&program.default_deny])
                .position(|by| *by == expected.by)
                .expect("the reference's deciding rule is in the program");
            let before = h.rule_count(ids[position]);
            let verdict = run(&mut h, direction, &packet::first_packet(&p));
            let want = if expected.allow {
                TC_ACT_OK
            } else {
                TC_ACT_SHOT
            };
            assert_eq!(
                verdict, want,
                "world {world_no}: {direction:?} of {key} for {p:?}: reference {expected:?}"
            );
            assert_eq!(
                h.rule_count(ids[position]),
                before + 1,
                "world {world_no}: counter of {} for {p:?}",
                expected.by
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1_200);
}

/// Keys of every policy map entry that belongs to `set`.
fn entries_of_set(h: &mut Harness, set: u32) -> usize {
    let dp = h.dataplane();
    let ips = dp
        .policy_ips()
        .expect("ips")
        .keys()
        .flatten()
        .filter(|k| u32::from_be_bytes(k.data().set) == set)
        .count();
    let ports = dp
        .policy_ports()
        .expect("ports")
        .keys()
        .flatten()
        .filter(|k| u32::from_be_bytes(k.data().set) == set)
        .count();
    let verdicts = dp
        .policy_verdicts()
        .expect("verdicts")
        .keys()
        .flatten()
        .filter(|k| k.set == set)
        .count();
    ips + ports + verdicts
}

/// A changed policy gets a complete new set, then its slot flips, then the old set is deleted;
/// a restarted felix (new tables over the same maps) avoids the slots it finds, and collects
/// them and their sets once its endpoints point elsewhere.
#[test]
fn policy_changes_flip_slots_and_restarts_collect_leftovers() {
    use felix_user::{
        calc::policy::{
            RuleRef,
            program::{Entry, Match, Program, Step},
        },
        dataplane::policy::tables::PolicyTables,
    };
    use std::collections::{HashMap, HashSet};

    let mut h = Harness::new("policy-flip");
    let (group, allow) = support::harness::allow_all();
    let slot = h.program_policy(&group, &allow);
    let set_of = |h: &mut Harness, slot: u32| -> u32 {
        h.dataplane()
            .policy_slots()
            .expect("slots")
            .get(&slot, 0)
            .expect("slot")
    };
    let first_set = set_of(&mut h, slot);
    assert!(entries_of_set(&mut h, first_set) > 0);

    let deny = Program {
        entries: vec![Entry {
            by: RuleRef::DefaultDeny {
                direction: PolicyDirection::Ingress,
            },
            step: Step::Deny,
            matcher: Some(Match::default()),
        }],
        default_deny: allow.default_deny.clone(),
    };
    assert_eq!(
        h.program_policy(&group, &deny),
        slot,
        "same group, same slot"
    );
    let second_set = set_of(&mut h, slot);
    assert_ne!(second_set, first_set, "a change is a new set");
    assert!(
        entries_of_set(&mut h, first_set) > 0,
        "the old set stays until felix releases it after the flip"
    );
    assert_eq!(h.release_policy(&HashSet::from([group.clone()])), 0);
    assert_eq!(
        entries_of_set(&mut h, first_set),
        0,
        "the old set is deleted once released"
    );
    assert!(entries_of_set(&mut h, second_set) > 0);

    // A new felix over the same maps.
    let mut tables = PolicyTables::new();
    let mut ids = felix_user::calc::policy::rule_ids::RuleIds::new(64);
    let wanted = HashMap::from([(group.clone(), allow.clone())]);
    tables
        .apply(h.dataplane(), &wanted, &mut ids)
        .expect("apply after restart");
    let new_slot = tables.slot_of(&group).expect("slot");
    assert_ne!(
        new_slot, slot,
        "slots in use by the previous felix are avoided"
    );
    let keep: HashSet<_> = wanted.keys().cloned().collect();
    tables
        .release_unused(h.dataplane(), &keep)
        .expect("release");
    assert_eq!(
        set_of(&mut h, slot),
        0,
        "the previous felix's slot is cleared"
    );
    assert_eq!(entries_of_set(&mut h, second_set), 0, "and its set deleted");
    let new_set = set_of(&mut h, new_slot);
    assert!(entries_of_set(&mut h, new_set) > 0);
}
