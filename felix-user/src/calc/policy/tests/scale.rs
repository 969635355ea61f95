//! Large worlds shaped like `bench control-plane`'s cluster (namespaces of 100 pods, 10 apps,
//! one NetworkPolicy per (namespace, app), 20 local pods), plus a policy of 10,000 selector
//! rules over GlobalNetworkSets and one of 50,000 /32 rules. The test checks what the
//! calculation gives them; the `#[ignore]`d harness prints how long each step takes
//! (`cargo test --release -p felix-user --lib scale::timings -- --ignored --nocapture`).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use calico::model::Resource;
use serde_json::{Value, json};

use crate::calc::policy::{
    PolicyDirection, RuleRef,
    calc::PolicyCalc,
    compile::compile,
    program::{Probe, Program},
};

const PODS_PER_NAMESPACE: usize = 100;
const PODS_PER_APP: usize = 10;
const APPS: usize = 10;
const NAMESPACES_PER_TEAM: usize = 10;
const LOCAL_PODS: usize = 20;
/// The port the large policies' rules deny.
const DENIED_PORT: u16 = 9999;

fn resource(value: Value) -> Resource {
    Resource::from_value(value, None).expect("valid resource")
}

fn namespace(n: usize) -> String {
    format!("ns-{n:03}")
}

fn pod_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 0, 0)) + index as u32)
}

fn role(index: usize) -> &'static str {
    match index % PODS_PER_APP {
        0..=2 => "frontend",
        9 => "db",
        _ => "backend",
    }
}

/// The cluster: namespace and service account profiles, endpoints, policies.
struct Cluster {
    endpoints: usize,
    policies: usize,
}

impl Cluster {
    fn namespaces(&self) -> usize {
        self.endpoints / PODS_PER_NAMESPACE
    }

    /// Indexes of the pods felix programs (spread over the namespaces).
    fn locals(&self) -> Vec<usize> {
        let step = self.endpoints / LOCAL_PODS;
        (0..LOCAL_PODS).map(|i| i * step).collect()
    }

    fn endpoint_key(&self, index: usize) -> String {
        self.endpoint(index, role(index)).key()
    }

    fn endpoint(&self, index: usize, role: &str) -> Resource {
        let ns = namespace(index / PODS_PER_NAMESPACE);
        let app = (index % PODS_PER_NAMESPACE) / PODS_PER_APP;
        let node = if self.locals().contains(&index) {
            0
        } else {
            1 + index / 100
        };
        resource(json!({
            "kind": "WorkloadEndpoint",
            "metadata": {"name": format!("node--{node:03}-k8s-app{app}--{index:05}-eth0"),
                "namespace": ns,
                "labels": {"app": format!("app{app}"), "role": role,
                    "projectcalico.org/namespace": ns,
                    "projectcalico.org/orchestrator": "k8s",
                    "projectcalico.org/serviceaccount": "default"}},
            "spec": {"orchestrator": "k8s", "node": format!("node-{node:03}"),
                "pod": format!("app{app}-{index:05}"), "endpoint": "eth0",
                "ipNetworks": [format!("{}/32", pod_ip(index))],
                "profiles": [format!("kns.{ns}"), format!("ksa.{ns}.default")],
                "interfaceName": format!("cali{index:011}")}
        }))
    }

    fn policy(&self, k: usize, extra_port: Option<u16>) -> Resource {
        let ns = k % self.namespaces();
        let app = (k / self.namespaces()) % APPS;
        let round = k / (self.namespaces() * APPS);
        let mut ports = vec![8080, 8443];
        ports.extend(extra_port);
        resource(json!({
            "kind": "NetworkPolicy",
            "metadata": {"name": format!("allow-app{app}-{round}"), "namespace": namespace(ns)},
            "spec": {"tier": "default", "order": 1000.0,
                "selector": format!("app == 'app{app}'"), "types": ["Ingress", "Egress"],
                "ingress": [
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": "role == 'frontend'"}, "destination": {"ports": ports}},
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"namespaceSelector":
                        format!("team == 'team-{}'", ns / NAMESPACES_PER_TEAM)},
                     "destination": {"ports": [9090]}},
                    {"action": "Allow", "protocol": "ICMP", "source": {"nets": ["10.99.0.0/16"]}}],
                "egress": [
                    {"action": "Allow", "protocol": "UDP",
                     "destination": {"nets": ["10.96.0.10/32"], "ports": [53]}},
                    {"action": "Allow", "protocol": "TCP",
                     "destination": {"selector": "role == 'db'", "ports": [5432]}},
                    {"action": "Allow", "protocol": "TCP",
                     "destination": {"selector": format!("app == 'app{}'", (app + 1) % APPS),
                        "ports": [8080]}}]}
        }))
    }

    fn resources(&self) -> Vec<Resource> {
        let mut out = Vec::new();
        for n in 0..self.namespaces() {
            let ns = namespace(n);
            out.push(resource(json!({
                "kind": "Profile", "metadata": {"name": format!("kns.{ns}")},
                "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                    "labelsToApply": {"pcns.projectcalico.org/name": ns,
                        "pcns.team": format!("team-{}", n / NAMESPACES_PER_TEAM)}}
            })));
            out.push(resource(json!({
                "kind": "Profile", "metadata": {"name": format!("ksa.{ns}.default")},
                "spec": {"labelsToApply": {"pcsa.projectcalico.org/name": "default"}}
            })));
        }
        out.extend((0..self.endpoints).map(|i| self.endpoint(i, role(i))));
        out.extend((0..self.policies).map(|k| self.policy(k, None)));
        out
    }
}

/// GlobalNetworkSet `i` of the selector policy: two /32s, labelled `bench-set: s-<i>`.
fn network_set(i: usize) -> Resource {
    let base = u32::from(Ipv4Addr::new(10, 64, 0, 0)) + 2 * i as u32;
    resource(json!({
        "kind": "GlobalNetworkSet",
        "metadata": {"name": format!("set-{i}"), "labels": {"bench-set": format!("s-{i}")}},
        "spec": {"nets": [format!("{}/32", Ipv4Addr::from(base)),
            format!("{}/32", Ipv4Addr::from(base + 1))]}
    }))
}

/// A GlobalNetworkPolicy for app 0 whose ingress rule `i` denies TCP 9999 from what
/// `source(i)` gives (what it does not deny goes on to the pod's own policy).
fn deny_policy(name: &str, rules: usize, source: impl Fn(usize) -> Value) -> Resource {
    let ingress: Vec<Value> = (0..rules)
        .map(|i| {
            json!({"action": "Deny", "protocol": "TCP", "source": source(i),
            "destination": {"ports": [DENIED_PORT]}})
        })
        .collect();
    resource(json!({
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"order": 10.0, "selector": "app == 'app0'", "types": ["Ingress"],
            "ingress": ingress}
    }))
}

fn selector_policy(rules: usize) -> Resource {
    deny_policy(
        "bench-sets",
        rules,
        |i| json!({"selector": format!("bench-set == 's-{i}'")}),
    )
}

fn cidr_policy(rules: usize) -> Resource {
    deny_policy("bench-cidrs", rules, |i| {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 2 * i as u32);
        json!({"nets": [format!("{addr}/32")]})
    })
}

fn upsert(calc: &mut PolicyCalc, r: &Resource) {
    calc.upsert(&r.key(), r);
}

/// Every local endpoint's programs, as the agent asks for them after each change.
fn programs_of(calc: &mut PolicyCalc, keys: &[String]) -> Vec<[Program; 2]> {
    keys.iter()
        .map(|k| {
            let [(_, i), (_, e)] = calc.programs(k).expect("local endpoint");
            [i, e]
        })
        .collect()
}

/// Whether the compiled ingress program allows TCP from `remote` to `port`, and by which rule.
fn ingress_verdict(program: &Program, remote: Ipv4Addr, port: u16) -> (bool, RuleRef) {
    let probe = Probe {
        remote,
        proto: 6,
        dst_port: port,
        src_port: 40_000,
    };
    let outcome = compile(program)
        .expect("compiles")
        .lookup(&probe)
        .expect("tables answer");
    let by = outcome.entry.map_or(program.default_deny.clone(), |e| {
        program.entries[e].by.clone()
    });
    (outcome.allow, by)
}

fn is_rule(by: &RuleRef, policy: &str, index: usize) -> bool {
    matches!(by, RuleRef::Policy { policy: p, index: i, .. } if p == policy && *i == index)
}

#[test]
fn large_selector_and_cidr_policies_select_every_rule() {
    let cluster = Cluster {
        endpoints: 1_000,
        policies: 100,
    };
    let mut calc = PolicyCalc::from_resources(&cluster.resources());
    let sets = 2_000;
    for i in 0..sets {
        upsert(&mut calc, &network_set(i));
    }
    upsert(&mut calc, &selector_policy(sets));
    upsert(&mut calc, &cidr_policy(5_000));
    // Local pod 0 is app 0: both policies apply; pod 50 (app 5) has neither.
    let app0 = cluster.endpoint_key(0);
    let (_, program) = calc
        .program_for(&app0, PolicyDirection::Ingress)
        .expect("program");
    let by_policy = |name: &str| {
        program
            .entries
            .iter()
            .filter(|e| matches!(&e.by, RuleRef::Policy { policy, .. } if policy == name))
            .count()
    };
    assert_eq!(by_policy("bench-sets"), sets);
    assert_eq!(by_policy("bench-cidrs"), 5_000);
    for i in [0, 1, 777, sets - 1] {
        let remote = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + 2 * i as u32 + 1);
        let (allow, by) = ingress_verdict(&program, remote, DENIED_PORT);
        assert!(!allow && is_rule(&by, "bench-sets", i), "set {i}: {by}");
    }
    for i in [0, 4_999] {
        let remote = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 2 * i as u32);
        let (allow, by) = ingress_verdict(&program, remote, DENIED_PORT);
        assert!(!allow && is_rule(&by, "bench-cidrs", i), "cidr {i}: {by}");
    }
    // A pod's own policy still follows for what the large ones let through.
    let frontend = pod_ip(1);
    let (allow, by) = ingress_verdict(&program, frontend, 8080);
    assert!(allow && is_rule(&by, "ns-000/allow-app0-0", 0), "{by}");
    // Removing a set empties its rule; relabelling another moves it to a new rule.
    calc.remove(&network_set(777).key());
    let mut moved = network_set(778);
    moved
        .metadata_mut()
        .labels
        .insert("bench-set".into(), "s-3".into());
    upsert(&mut calc, &moved);
    let (_, program) = calc
        .program_for(&app0, PolicyDirection::Ingress)
        .expect("program");
    let set_addr = |i: usize| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + 2 * i as u32);
    let (_, by) = ingress_verdict(&program, set_addr(777), DENIED_PORT);
    assert!(!is_rule(&by, "bench-sets", 777), "{by}");
    let (_, by) = ingress_verdict(&program, set_addr(778), DENIED_PORT);
    assert!(is_rule(&by, "bench-sets", 3), "{by}");
    let other = cluster.endpoint_key(50);
    let (_, program) = calc
        .program_for(&other, PolicyDirection::Ingress)
        .expect("program");
    assert_eq!(by_policy_in(&program, "bench-sets"), 0);
}

fn by_policy_in(program: &Program, name: &str) -> usize {
    program
        .entries
        .iter()
        .filter(|e| matches!(&e.by, RuleRef::Policy { policy, .. } if policy == name))
        .count()
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    report(what, start.elapsed());
    out
}

fn report(what: &str, took: Duration) {
    println!("{what:<58} {:>9.1} ms", took.as_secs_f64() * 1e3);
}

/// Durations of the calculation at `bench control-plane`'s 10,000 endpoints / 1,000 policies.
#[test]
#[ignore = "timing harness, prints durations"]
fn timings() {
    let cluster = Cluster {
        endpoints: 10_000,
        policies: 1_000,
    };
    let resources = cluster.resources();
    let locals: Vec<String> = cluster
        .locals()
        .into_iter()
        .map(|i| cluster.endpoint_key(i))
        .collect();
    let mut calc = PolicyCalc::new();
    timed(
        "full sync: 10k endpoints + 1k policies, 20 programs",
        || {
            for r in &resources {
                upsert(&mut calc, r);
            }
            programs_of(&mut calc, &locals)
        },
    );
    timed("programs again, nothing changed", || {
        programs_of(&mut calc, &locals)
    });
    let local_pod = cluster.locals()[3];
    let policy_k = (local_pod % PODS_PER_NAMESPACE) / PODS_PER_APP * cluster.namespaces()
        + local_pod / PODS_PER_NAMESPACE;
    let changed = cluster.policy(policy_k, Some(20_000));
    timed("one policy change + 20 programs", || {
        upsert(&mut calc, &changed);
        programs_of(&mut calc, &locals)
    });
    // A remote frontend of the same namespace becomes a backend.
    let peer = local_pod / PODS_PER_NAMESPACE * PODS_PER_NAMESPACE + PODS_PER_APP + 1;
    let relabelled = cluster.endpoint(peer, "backend");
    timed("one label change + 20 programs", || {
        upsert(&mut calc, &relabelled);
        programs_of(&mut calc, &locals)
    });
    let sets: Vec<Resource> = (0..10_000).map(network_set).collect();
    timed("10k GlobalNetworkSets", || {
        for s in &sets {
            upsert(&mut calc, s);
        }
    });
    let policy = selector_policy(10_000);
    let programs = timed("10k-selector-rule policy + 20 programs", || {
        upsert(&mut calc, &policy);
        programs_of(&mut calc, &locals)
    });
    timed("  compile one 10k-selector program", || {
        compile(&programs[0][0]).expect("compiles")
    });
    let policy = cidr_policy(50_000);
    let programs = timed("50k-/32-rule policy + 20 programs", || {
        upsert(&mut calc, &policy);
        programs_of(&mut calc, &locals)
    });
    timed("  compile one 50k-/32 + 10k-selector program", || {
        compile(&programs[0][0]).expect("compiles")
    });
    timed(
        "one label change with both large policies + 20 programs",
        || {
            upsert(&mut calc, &cluster.endpoint(peer, "frontend"));
            programs_of(&mut calc, &locals)
        },
    );
}
