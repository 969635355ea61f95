//! Namespaced NetworkSets through the incremental calculation: their labels follow their
//! namespace's `kns.<namespace>` profile whichever arrives first, and the compiled verdicts
//! follow the labels.

use std::net::Ipv4Addr;

use calico::model::{Resource, document::parse_one};

use crate::calc::policy::{
    PolicyDirection,
    calc::PolicyCalc,
    compile::compile,
    program::{Probe, Program},
};

fn doc(yaml: &str) -> Resource {
    parse_one(yaml).expect("resource")
}

fn upsert(calc: &mut PolicyCalc, yaml: &str) -> String {
    let r = doc(yaml);
    let key = r.key();
    calc.upsert(&key, &r);
    key
}

const POD: &str = "kind: WorkloadEndpoint\nmetadata: {name: db, namespace: prod}\nspec: {interfaceName: calia, ipNetworks: [10.65.0.1/32]}";
const SET: &str = "kind: NetworkSet\nmetadata: {name: clients, namespace: dev, labels: {role: client}}\nspec: {nets: [10.101.0.0/16]}";
const RED_DEV: &str =
    "kind: Profile\nmetadata: {name: kns.dev}\nspec: {labelsToApply: {pcns.team: red}}";
const BLUE_DEV: &str =
    "kind: Profile\nmetadata: {name: kns.dev}\nspec: {labelsToApply: {pcns.team: blue}}";
const FROM_RED: &str = "kind: GlobalNetworkPolicy\nmetadata: {name: from-red}\nspec:\n  selector: all()\n  ingress: [{action: Allow, source: {namespaceSelector: \"team == 'red'\", selector: \"role == 'client'\"}}]";

/// Whether the compiled ingress program of `key` allows TCP from `remote` to port 80.
fn allows(calc: &mut PolicyCalc, key: &str, remote: [u8; 4]) -> bool {
    let (_, program): (_, Program) = calc
        .program_for(key, PolicyDirection::Ingress)
        .expect("program");
    let probe = Probe {
        remote: Ipv4Addr::from(remote),
        proto: 6,
        dst_port: 80,
        src_port: 40000,
    };
    let compiled = compile(&program).expect("compiles");
    compiled.lookup(&probe).expect("tables answer").allow
}

#[test]
fn a_network_set_takes_its_namespace_label_and_profile_labels() {
    let mut calc = PolicyCalc::new();
    let set = upsert(&mut calc, SET);
    let labels = calc.labels_of(&set).expect("member").clone();
    assert_eq!(
        labels["projectcalico.org/namespace"], "dev",
        "its namespace"
    );
    assert_eq!(labels["role"], "client");
    assert!(!labels.contains_key("pcns.team"), "no profile yet");
    upsert(&mut calc, RED_DEV);
    assert_eq!(calc.labels_of(&set).expect("member")["pcns.team"], "red");
    let profile = doc(RED_DEV).key();
    calc.remove(&profile);
    assert!(
        !calc
            .labels_of(&set)
            .expect("member")
            .contains_key("pcns.team")
    );
    calc.remove(&set);
    assert!(calc.labels_of(&set).is_none());
}

#[test]
fn verdicts_follow_the_namespace_profile_of_a_set() {
    let mut calc = PolicyCalc::new();
    let pod = upsert(&mut calc, POD);
    upsert(&mut calc, FROM_RED);
    let set = upsert(&mut calc, SET);
    assert!(
        !allows(&mut calc, &pod, [10, 101, 0, 5]),
        "dev has no team yet"
    );
    upsert(&mut calc, RED_DEV);
    assert!(allows(&mut calc, &pod, [10, 101, 0, 5]), "dev is red");
    assert!(!allows(&mut calc, &pod, [10, 102, 0, 5]), "not in the set");
    upsert(&mut calc, BLUE_DEV);
    assert!(!allows(&mut calc, &pod, [10, 101, 0, 5]), "dev turned blue");
    upsert(&mut calc, RED_DEV);
    calc.remove(&set);
    assert!(!allows(&mut calc, &pod, [10, 101, 0, 5]), "the set is gone");
}
