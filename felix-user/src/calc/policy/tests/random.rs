//! Randomized: generated Calico resources and packets; the verdict and deciding rule from the
//! calculation and the compiled tables must equal the reference evaluator's, thousands of times.

use calico::model::{Object, Resource, WorkloadEndpointSpec};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::calc::policy::{
    PolicyDirection,
    calc::PolicyCalc,
    compile::compile,
    explain::probe_for,
    generate::{packet, world},
    reference,
};

#[test]
fn random_worlds_compile_to_the_reference_verdicts() {
    let mut rng = StdRng::seed_from_u64(0xca11_c0de);
    let mut checked = 0;
    let mut denied = 0;
    for world_no in 0..300 {
        let resources = world(&mut rng);
        let mut calc = PolicyCalc::from_resources(&resources);
        let endpoints: Vec<&Object<WorkloadEndpointSpec>> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::WorkloadEndpoint(o) => Some(o),
                _ => None,
            })
            .collect();
        for _ in 0..20 {
            let endpoint = endpoints[rng.random_range(0..endpoints.len())];
            let key = Resource::WorkloadEndpoint(endpoint.clone()).key();
            let local = match endpoint.spec.ip_networks[0].0 {
                ipnet::IpNet::V4(n) => n.addr(),
                ipnet::IpNet::V6(_) => unreachable!("generated IPv4"),
            };
            let direction = if rng.random_bool(0.5) {
                PolicyDirection::Ingress
            } else {
                PolicyDirection::Egress
            };
            let p = packet(&mut rng, local, direction);
            let expected = reference::evaluate(&resources, endpoint, direction, &p);
            let (_, program) = calc.program_for(&key, direction).expect("program");
            let outcome = compile(&program)
                .expect("compiles")
                .lookup(&probe_for(&p, direction))
                .expect("tables answer");
            let by = outcome.entry.map_or(program.default_deny.clone(), |e| {
                program.entries[e].by.clone()
            });
            assert_eq!(
                (outcome.allow, &by),
                (expected.allow, &expected.by),
                "world {world_no}: {direction:?} of {key} for {p:?}\nresources: {resources:#?}"
            );
            checked += 1;
            denied += usize::from(!expected.allow);
        }
    }
    assert_eq!(checked, 6_000);
    // Both verdicts are common, so the comparison means something.
    assert!(
        denied > 600 && denied < 5_400,
        "{denied} of {checked} denied"
    );
}

/// The generator's service accounts survive validation: some worlds have rules on them and
/// policies narrowed by a `serviceAccountSelector`.
#[test]
fn random_worlds_hold_service_account_matches() {
    let mut rng = StdRng::seed_from_u64(0x5a5a);
    let (mut rules, mut policies) = (0, 0);
    for _ in 0..100 {
        for r in world(&mut rng) {
            let json = r.to_json();
            rules += usize::from(json.contains("\"serviceAccounts\""));
            policies += usize::from(json.contains("\"serviceAccountSelector\""));
        }
    }
    assert!(
        rules > 10 && policies > 10,
        "{rules} rules, {policies} policies"
    );
}
