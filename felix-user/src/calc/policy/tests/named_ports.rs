//! Named ports through the calculation: what a rule's port name resolves to (per side, per
//! protocol, per endpoint) and what the compiled tables then decide.

use std::net::Ipv4Addr;

use calico::model::{Resource, document::parse_documents};

use crate::calc::policy::{
    PolicyDirection,
    calc::{GroupKey, PolicyCalc},
    compile::compile,
    program::{Probe, Program},
};

const PODS: &str = "
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {interfaceName: calix1, ipNetworks: [10.65.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec: {interfaceName: calix2, ipNetworks: [10.65.0.2/32], ports: [{name: http, protocol: TCP, port: 80}]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web-2, namespace: default, labels: {app: web}}
spec:
  interfaceName: calix3
  ipNetworks: [10.65.0.3/32]
  ports: [{name: http, protocol: TCP, port: 8080}, {name: http, protocol: UDP, port: 8081}]
";

fn calc(extra: &str) -> (PolicyCalc, Vec<Resource>) {
    let resources: Vec<Resource> = parse_documents(&format!("{PODS}---\n{extra}"))
        .into_iter()
        .map(|r| r.expect("resource"))
        .collect();
    (PolicyCalc::from_resources(&resources), resources)
}

fn key_of(resources: &[Resource], name: &str) -> String {
    resources
        .iter()
        .find(|r| matches!(r, Resource::WorkloadEndpoint(o) if o.metadata.name == name))
        .expect("endpoint")
        .key()
}

fn program(calc: &mut PolicyCalc, key: &str, direction: PolicyDirection) -> (GroupKey, Program) {
    calc.program_for(key, direction).expect("program")
}

/// The compiled verdict for a TCP or UDP packet whose remote side is `remote` and destination
/// port `dport`.
fn verdict(program: &Program, remote: [u8; 4], proto: u8, dport: u16) -> bool {
    let probe = Probe {
        remote: Ipv4Addr::from(remote),
        proto,
        dst_port: dport,
        src_port: 40000,
    };
    let compiled = compile(program).expect("compiles");
    let outcome = compiled.lookup(&probe).expect("tables answer");
    assert_eq!(
        (outcome.allow, outcome.entry),
        program.evaluate(&probe),
        "compiled tables and entry-by-entry evaluation differ for {probe:?}"
    );
    outcome.allow
}

const EGRESS_DENY: &str = "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: app == 'client'
  egress:
    - {action: Deny, protocol: TCP, destination: {ports: [http]}}
    - {action: Allow}
";

#[test]
fn a_remote_named_port_becomes_one_entry_per_number_pairing_addresses_and_port() {
    let (mut calc, rs) = calc(EGRESS_DENY);
    let (_, p) = program(&mut calc, &key_of(&rs, "client"), PolicyDirection::Egress);
    let rule0: Vec<_> = p
        .entries
        .iter()
        .filter(|e| e.by.to_string() == "tier default policy p egress rule 0")
        .map(|e| e.matcher.clone().expect("rule entry matches"))
        .collect();
    let pairs: Vec<(String, Vec<(u16, u16)>)> = rule0
        .iter()
        .map(|m| {
            let sets: Vec<String> = m.remote.all_of.iter().map(|s| format!("{s:?}")).collect();
            (sets.join(" "), m.dst_ports.any_of.clone())
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("[10.65.0.2/32]".to_string(), vec![(80, 80)]),
            ("[10.65.0.3/32]".to_string(), vec![(8080, 8080)]),
        ],
        "the UDP http port of web-2 is not a TCP named port"
    );
}

#[test]
fn a_named_port_deny_denies_only_the_declared_pairs() {
    let (mut calc, rs) = calc(EGRESS_DENY);
    let (_, p) = program(&mut calc, &key_of(&rs, "client"), PolicyDirection::Egress);
    assert!(!verdict(&p, [10, 65, 0, 2], 6, 80), "web-1's http");
    assert!(!verdict(&p, [10, 65, 0, 3], 6, 8080), "web-2's http");
    assert!(
        verdict(&p, [10, 65, 0, 2], 6, 8080),
        "8080 is web-2's, not web-1's"
    );
    assert!(
        verdict(&p, [10, 65, 0, 3], 6, 80),
        "80 is web-1's, not web-2's"
    );
    assert!(
        verdict(&p, [10, 65, 0, 3], 17, 8081),
        "a UDP packet, a TCP rule"
    );
    assert!(
        verdict(&p, [10, 65, 0, 1], 6, 80),
        "client declares no port"
    );
}

#[test]
fn a_named_port_allow_allows_and_protocol_must_match() {
    let (mut calc, rs) = calc(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: app == 'client'
  egress:
    - {action: Allow, protocol: UDP, destination: {selector: app == 'web', ports: [http]}}
",
    );
    let (key, p) = program(&mut calc, &key_of(&rs, "client"), PolicyDirection::Egress);
    assert_eq!(key.local_mask, vec![true]);
    assert!(verdict(&p, [10, 65, 0, 3], 17, 8081), "web-2's UDP http");
    assert!(
        !verdict(&p, [10, 65, 0, 3], 17, 8080),
        "8080 is web-2's TCP http"
    );
    assert!(
        !verdict(&p, [10, 65, 0, 2], 17, 80),
        "web-1 has no UDP http"
    );
}

#[test]
fn a_name_nobody_declares_leaves_no_entry() {
    let (mut calc, rs) = calc(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: app == 'client'
  egress:
    - {action: Allow, protocol: TCP, destination: {ports: [grpc]}}
    - {action: Allow, protocol: TCP, destination: {notPorts: [grpc]}}
",
    );
    let (key, p) = program(&mut calc, &key_of(&rs, "client"), PolicyDirection::Egress);
    assert_eq!(key.local_mask, vec![false, true]);
    assert!(
        verdict(&p, [10, 65, 0, 2], 6, 80),
        "notPorts [grpc] excludes nothing"
    );
}

#[test]
fn a_local_named_port_is_the_endpoints_own_and_keys_its_group() {
    let (mut calc, rs) = calc(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: app == 'web'
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [http]}}
    - {action: Deny, protocol: TCP, source: {ports: [http]}}
",
    );
    let (k1, p1) = program(&mut calc, &key_of(&rs, "web-1"), PolicyDirection::Ingress);
    let (k2, p2) = program(&mut calc, &key_of(&rs, "web-2"), PolicyDirection::Ingress);
    assert_eq!(k1.local_ports, vec![vec![80]]);
    assert_eq!(k2.local_ports, vec![vec![8080]]);
    assert_ne!(k1, k2, "different programs must not share a group");
    assert!(verdict(&p1, [10, 65, 0, 1], 6, 80));
    assert!(!verdict(&p1, [10, 65, 0, 1], 6, 8080));
    assert!(verdict(&p2, [10, 65, 0, 1], 6, 8080));
    assert!(!verdict(&p2, [10, 65, 0, 1], 6, 80));
}

#[test]
fn the_sets_follow_endpoints_that_change_their_ports() {
    let (mut calc, rs) = calc(EGRESS_DENY);
    let client = key_of(&rs, "client");
    let (_, before) = program(&mut calc, &client, PolicyDirection::Egress);
    assert!(!verdict(&before, [10, 65, 0, 2], 6, 80));
    let moved = parse_documents(
        "
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec: {interfaceName: calix4, ipNetworks: [10.65.0.2/32], ports: [{name: http, protocol: TCP, port: 81}]}
",
    )
    .remove(0)
    .expect("resource");
    calc.upsert(&moved.key(), &moved);
    let (_, after) = program(&mut calc, &client, PolicyDirection::Egress);
    assert!(verdict(&after, [10, 65, 0, 2], 6, 80));
    assert!(!verdict(&after, [10, 65, 0, 2], 6, 81));
    calc.remove(&moved.key());
    let (_, gone) = program(&mut calc, &client, PolicyDirection::Egress);
    assert!(verdict(&gone, [10, 65, 0, 2], 6, 81));
}
