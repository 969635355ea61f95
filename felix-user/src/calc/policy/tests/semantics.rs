//! The semantics table (tests/policy-cases) through the calculation and the compiled tables:
//! every check's verdict and deciding rule must be what the table says.

use crate::calc::policy::{
    calc::PolicyCalc,
    cases::{cases_dir, load_all},
    compile::compile,
    explain::probe_for,
};

#[test]
fn semantics_table_through_compiled_tables() {
    let scenarios = load_all(&cases_dir()).expect("policy cases load");
    let mut failures = Vec::new();
    let mut checked = 0;
    for scenario in &scenarios {
        let mut calc = PolicyCalc::from_resources(&scenario.resources);
        for (i, check) in scenario.checks.iter().enumerate() {
            let endpoint = scenario.endpoint(check).expect("endpoint in scenario");
            let key = calico::model::Resource::WorkloadEndpoint(endpoint.clone()).key();
            let (_, program) = calc
                .program_for(&key, check.direction)
                .expect("program for endpoint");
            let compiled = compile(&program).expect("compiles");
            let outcome = compiled
                .lookup(&probe_for(&check.packet, check.direction))
                .expect("tables answer");
            let by = outcome
                .entry
                .map_or(program.default_deny.clone(), |e| {
                    program.entries[e].by.clone()
                })
                .to_string();
            checked += 1;
            if outcome.allow != check.expect_allow || by != check.by {
                failures.push(format!(
                    "{} check {i}: expected {} by {:?}, got {} by {by:?}",
                    scenario.path.display(),
                    if check.expect_allow { "allow" } else { "deny" },
                    check.by,
                    if outcome.allow { "allow" } else { "deny" },
                ));
            }
        }
    }
    assert!(checked >= 40, "only {checked} checks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
