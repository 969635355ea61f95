//! Tier 2: the policy semantics table (tests/policy-cases) and randomized policies through the
//! real programs. Each check's endpoint policy is calculated and compiled as felix does, written
//! to the maps, and the check's packet is run with BPF_PROG_TEST_RUN as a flow's first packet:
//! ingress checks through `cali_to_wl` (traffic the host stack delivers to the pod), egress
//! checks through `cali_from_wl`. The verdict must be the table's, and the deciding rule's
//! counter must be the one that moved. Needs root and bpffs (`--features privileged-tests`).
#![cfg(feature = "privileged-tests")]

mod support;

use felix_user::{
    PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD,
    model::Resource,
    policy::{PolicyDirection, calc::PolicyCalc, cases},
};
use support::{
    harness::{Harness, On, TC_ACT_OK, TC_ACT_SHOT, WORKLOAD_A},
    packet,
};

#[test]
fn semantics_table_through_the_kernel() {
    let mut h = Harness::new("policy-cases");
    let scenarios = cases::load_all(&cases::cases_dir()).expect("policy cases load");
    let mut failures = Vec::new();
    let mut checked = 0;
    for scenario in &scenarios {
        let mut calc = PolicyCalc::new();
        for r in &scenario.resources {
            calc.upsert(&r.key(), r);
        }
        for (i, check) in scenario.checks.iter().enumerate() {
            let endpoint = scenario.endpoint(check).expect("endpoint in scenario");
            let key = Resource::WorkloadEndpoint(endpoint.clone()).key();
            let programs = calc.programs(&key).expect("programs");
            let (group, program) = match check.direction {
                PolicyDirection::Ingress => &programs[0],
                PolicyDirection::Egress => &programs[1],
            };
            let slot = h.program_policy(group, program);
            let (program_name, endpoint_ip) = match check.direction {
                PolicyDirection::Ingress => (PROG_TO_WORKLOAD, check.packet.dst),
                PolicyDirection::Egress => (PROG_FROM_WORKLOAD, check.packet.src),
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
            let verdict = h
                .run(
                    program_name,
                    On::iface(WORKLOAD_A),
                    &packet::first_packet(&check.packet),
                )
                .verdict;
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
