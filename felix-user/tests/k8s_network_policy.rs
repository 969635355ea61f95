//! The Kubernetes NetworkPolicy examples of the Kubernetes documentation, as Calico's
//! kube-controllers writes them into etcd (tests/k8s-netpol/): felix reads every value as it
//! reads etcd, keys it where kube-controllers put it, and judges each example's connections as
//! Kubernetes documents them, through the reference evaluator and the compiled tables the
//! kernel uses (egress of the client and ingress of the server both have to allow).

#[path = "k8s_netpol_fixtures.rs"]
mod fixtures;

use std::{net::Ipv4Addr, path::Path};

use calico::model::{Object, Resource, WorkloadEndpointSpec};
use felix_user::calc::policy::{
    L4, Packet, PolicyDirection, calc::PolicyCalc, compile::compile, explain::probe_for, reference,
};
use fixtures::{Entry, Example, Expect, load_all, pod_ref};
use serde::Deserialize as _;

const TCP: u8 = 6;

fn examples() -> (Example, Vec<(std::path::PathBuf, Example)>) {
    let dir = fixtures::dir(Path::new(env!("CARGO_MANIFEST_DIR")));
    load_all(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Reads `entry` as felix reads etcd, and checks that felix keys the resource where it is.
fn read(entry: &Entry) -> Resource {
    let resource = Resource::from_etcd(&entry.key, entry.value.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "{}: felix refuses what kube-controllers wrote: {e}",
            entry.key
        )
    });
    assert_eq!(resource.key(), entry.key, "felix keys it elsewhere");
    resource
}

fn endpoint<'a>(resources: &'a [Resource], pod: &str) -> &'a Object<WorkloadEndpointSpec> {
    let (namespace, name) = pod_ref(pod);
    resources
        .iter()
        .find_map(|r| match r {
            Resource::WorkloadEndpoint(o)
                if o.metadata.namespace.as_deref() == Some(namespace) && o.spec.pod == name =>
            {
                Some(o)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no pod {pod} in cluster.yaml"))
}

fn address(ep: &Object<WorkloadEndpointSpec>) -> Ipv4Addr {
    match ep.spec.ip_networks.first().map(|n| n.0) {
        Some(ipnet::IpNet::V4(net)) => net.addr(),
        other => panic!("{}: no IPv4 address ({other:?})", ep.metadata.name),
    }
}

/// The verdict of `packet` crossing `ep` in `direction`: the reference evaluator's, which the
/// compiled tables must agree with.
fn verdict(
    calc: &mut PolicyCalc,
    resources: &[Resource],
    ep: &Object<WorkloadEndpointSpec>,
    direction: PolicyDirection,
    packet: &Packet,
) -> bool {
    let expected = reference::evaluate(resources, ep, direction, packet);
    let key = Resource::WorkloadEndpoint(ep.clone()).key();
    let (_, program) = calc.program_for(&key, direction).expect("a program");
    let outcome = compile(&program)
        .expect("compiles")
        .lookup(&probe_for(packet, direction))
        .expect("the tables answer");
    assert_eq!(
        outcome.allow, expected.allow,
        "{} {direction:?} {packet:?}: the tables and the reference ({}) disagree",
        ep.metadata.name, expected.by
    );
    outcome.allow
}

#[test]
fn felix_reads_every_value_kube_controllers_writes() {
    let (cluster, examples) = examples();
    assert!(examples.len() >= 10, "only {} examples", examples.len());
    let mut kinds = std::collections::BTreeSet::new();
    for entry in cluster
        .etcd
        .iter()
        .chain(examples.iter().flat_map(|(_, e)| &e.etcd))
    {
        kinds.insert(read(entry).kind().as_str());
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["NetworkPolicy", "Profile", "Tier", "WorkloadEndpoint"]
    );
}

#[test]
fn each_kubernetes_policy_is_one_knp_default_policy_in_its_namespace() {
    let (_, examples) = examples();
    for (path, example) in &examples {
        let mut written: Vec<(String, String)> = example
            .etcd
            .iter()
            .map(read)
            .map(|r| {
                assert_eq!(r.kind().as_str(), "NetworkPolicy", "{}", path.display());
                (
                    r.namespace().unwrap_or_default().to_owned(),
                    r.name().to_owned(),
                )
            })
            .collect();
        let mut expected = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&example.kubernetes) {
            let value = serde_yaml_ng::Value::deserialize(doc).expect("Kubernetes YAML");
            assert_eq!(value["kind"].as_str(), Some("NetworkPolicy"));
            let name = value["metadata"]["name"].as_str().expect("a name");
            let namespace = value["metadata"]["namespace"]
                .as_str()
                .expect("a namespace");
            expected.push((namespace.to_owned(), format!("knp.default.{name}")));
        }
        written.sort();
        expected.sort();
        assert_eq!(written, expected, "{}", path.display());
    }
}

#[test]
fn connections_are_judged_as_kubernetes_documents() {
    let (cluster, examples) = examples();
    let base: Vec<Resource> = cluster.etcd.iter().map(read).collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (path, example) in &examples {
        let mut resources = base.clone();
        resources.extend(example.etcd.iter().map(read));
        let mut calc = PolicyCalc::from_resources(&resources);
        assert!(!example.checks.is_empty(), "{}: no checks", path.display());
        for check in &example.checks {
            let (from, to) = (endpoint(&base, &check.from), endpoint(&base, &check.to));
            let packet = Packet {
                src: address(from),
                dst: address(to),
                proto: TCP,
                l4: L4::Ports {
                    src: 40000,
                    dst: check.port,
                },
            };
            let egress = verdict(
                &mut calc,
                &resources,
                from,
                PolicyDirection::Egress,
                &packet,
            );
            let ingress = verdict(&mut calc, &resources, to, PolicyDirection::Ingress, &packet);
            let got = if egress && ingress {
                Expect::Allow
            } else {
                Expect::Deny
            };
            checked += 1;
            if got != check.expect {
                failures.push(format!(
                    "{}: {} -> {}:{}: expected {:?} ({}), got {got:?} (egress {egress}, ingress {ingress})",
                    path.display(),
                    check.from,
                    check.to,
                    check.port,
                    check.expect,
                    check.why
                ));
            }
        }
    }
    assert!(checked >= 35, "only {checked} checks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
