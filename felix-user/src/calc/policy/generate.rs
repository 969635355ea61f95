//! Random Calico worlds (profiles, workload endpoints with named ports and service accounts, a
//! host endpoint, network sets, tiers, policies with rules over a small vocabulary) and packets, for randomized tests that compare felix's compiled
//! policy with the reference evaluator, in user space and through the kernel.

use std::net::Ipv4Addr;

use calico::model::Resource;
use rand::{Rng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};

use super::{L4, Packet, PolicyDirection};

const NAMESPACES: [&str; 2] = ["default", "other"];
const SELECTORS: [&str; 9] = [
    "app == 'web'",
    "app == 'db'",
    "has(team)",
    "all()",
    "team in {'red'}",
    "!has(app)",
    "app != 'web' && has(role)",
    "role starts with 'fr'",
    "global()",
];
const NS_SELECTORS: [&str; 4] = ["all()", "global()", "team == 'red'", "!has(team)"];
const CIDRS: [&str; 6] = [
    "10.65.0.0/16",
    "10.65.0.2/32",
    "192.0.2.0/24",
    "192.0.2.128/25",
    "0.0.0.0/0",
    "10.65.1.0/24",
];
const REMOTES: [&str; 5] = [
    "192.0.2.7",
    "192.0.2.200",
    "198.51.100.9",
    "203.0.113.1",
    "10.66.0.1",
];

/// Service account names (each namespace has both, as `ksa.<ns>.<name>` profiles).
const SERVICE_ACCOUNTS: [&str; 2] = ["api", "web"];
/// Selectors over service account labels (`serviceAccounts.selector`, `serviceAccountSelector`).
const SA_SELECTORS: [&str; 4] = [
    "team == 'red'",
    "projectcalico.org/name == 'web'",
    "all()",
    "!has(team)",
];

/// A rule side's `serviceAccounts`: names, a selector, or both.
fn service_accounts(rng: &mut StdRng) -> Value {
    let mut m = serde_json::Map::new();
    let with_names = rng.random_bool(0.6);
    if with_names {
        let n = rng.random_range(1..=2);
        m.insert("names".into(), json!(SERVICE_ACCOUNTS[..n]));
    }
    if !with_names || rng.random_bool(0.4) {
        m.insert("selector".into(), json!(SA_SELECTORS.choose(rng)));
    }
    Value::Object(m)
}

/// Port names rules use and endpoints declare.
const PORT_NAMES: [&str; 2] = ["http", "dns"];

/// An endpoint's `spec.ports`: up to two named ports, numbers in the packets' range.
fn declared_ports(rng: &mut StdRng) -> Value {
    Value::Array(
        (0..rng.random_range(0..=2))
            .map(|_| {
                let name = PORT_NAMES.choose(rng);
                let protocol = ["TCP", "UDP"].choose(rng);
                json!({"name": name, "protocol": protocol, "port": rng.random_range(70..90)})
            })
            .collect(),
    )
}

fn labels(rng: &mut StdRng) -> Value {
    let mut m = serde_json::Map::new();
    if rng.random_bool(0.7) {
        m.insert("app".into(), json!(["web", "db", "cache"].choose(rng)));
    }
    if rng.random_bool(0.5) {
        m.insert("role".into(), json!(["front", "back"].choose(rng)));
    }
    if rng.random_bool(0.3) {
        m.insert("team".into(), json!(["red", "blue"].choose(rng)));
    }
    Value::Object(m)
}

fn ports(rng: &mut StdRng) -> Value {
    let n = rng.random_range(1..=2);
    Value::Array(
        (0..n)
            .map(|_| {
                let lo: u16 = rng.random_range(70..90);
                if rng.random_bool(0.25) {
                    json!(PORT_NAMES.choose(rng))
                } else if rng.random_bool(0.5) {
                    json!(lo)
                } else {
                    json!(format!("{lo}:{}", lo + rng.random_range(0..8)))
                }
            })
            .collect(),
    )
}

fn entity(rng: &mut StdRng, proto: Option<&str>) -> Value {
    let mut e = serde_json::Map::new();
    let pick = |rng: &mut StdRng| -> Vec<&str> {
        (0..rng.random_range(1..=2))
            .map(|_| *CIDRS.choose(rng).unwrap_or(&CIDRS[0]))
            .collect()
    };
    if rng.random_bool(0.25) {
        e.insert("nets".into(), json!(pick(rng)));
    }
    if rng.random_bool(0.15) {
        // Calico refuses a catch-all notNets (the rule would match nothing).
        let nets: Vec<&str> = pick(rng)
            .into_iter()
            .filter(|n| *n != "0.0.0.0/0")
            .collect();
        if !nets.is_empty() {
            e.insert("notNets".into(), json!(nets));
        }
    }
    if rng.random_bool(0.3) {
        // global() only in namespaceSelector, as Calico allows it.
        e.insert("selector".into(), json!(SELECTORS[..8].choose(rng)));
    }
    if rng.random_bool(0.12) {
        e.insert("notSelector".into(), json!(SELECTORS.choose(rng)));
    }
    if rng.random_bool(0.15) {
        e.insert("namespaceSelector".into(), json!(NS_SELECTORS.choose(rng)));
    }
    if rng.random_bool(0.15) {
        e.insert("serviceAccounts".into(), service_accounts(rng));
    }
    if matches!(proto, Some("TCP" | "UDP")) {
        if rng.random_bool(0.4) {
            e.insert("ports".into(), ports(rng));
        }
        if rng.random_bool(0.15) {
            e.insert("notPorts".into(), ports(rng));
        }
    }
    Value::Object(e)
}

fn rule(rng: &mut StdRng) -> Value {
    let action = ["Allow", "Allow", "Deny", "Deny", "Pass", "Log"]
        .choose(rng)
        .copied();
    let proto = [None, None, Some("TCP"), Some("UDP"), Some("ICMP")]
        .choose(rng)
        .copied()
        .flatten();
    let mut r = serde_json::Map::new();
    r.insert("action".into(), json!(action));
    if let Some(p) = proto {
        r.insert("protocol".into(), json!(p));
    } else if rng.random_bool(0.15) {
        r.insert("notProtocol".into(), json!(["TCP", "UDP"].choose(rng)));
    }
    if proto == Some("ICMP") && rng.random_bool(0.6) {
        let mut icmp = serde_json::Map::new();
        icmp.insert("type".into(), json!([0, 8, 3].choose(rng)));
        if rng.random_bool(0.4) {
            icmp.insert("code".into(), json!([0, 1].choose(rng)));
        }
        let field = if rng.random_bool(0.7) {
            "icmp"
        } else {
            "notICMP"
        };
        r.insert(field.into(), Value::Object(icmp));
    }
    r.insert("source".into(), entity(rng, proto));
    r.insert("destination".into(), entity(rng, proto));
    Value::Object(r)
}

fn rules(rng: &mut StdRng) -> Value {
    Value::Array((0..rng.random_range(0..4)).map(|_| rule(rng)).collect())
}

/// A random world: every resource validates.
pub fn world(rng: &mut StdRng) -> Vec<Resource> {
    let mut docs = Vec::new();
    for ns in NAMESPACES {
        let mut apply = serde_json::Map::new();
        apply.insert("pcns.projectcalico.org/name".into(), json!(ns));
        if rng.random_bool(0.5) {
            apply.insert("pcns.team".into(), json!(["red", "blue"].choose(rng)));
        }
        let (ingress, egress) = if rng.random_bool(0.6) {
            (json!([{"action": "Allow"}]), json!([{"action": "Allow"}]))
        } else {
            (rules(rng), rules(rng))
        };
        docs.push(
            json!({"kind": "Profile", "metadata": {"name": format!("kns.{ns}")},
            "spec": {"ingress": ingress, "egress": egress, "labelsToApply": apply}}),
        );
        for sa in SERVICE_ACCOUNTS {
            let mut apply = serde_json::Map::new();
            apply.insert("pcsa.projectcalico.org/name".into(), json!(sa));
            if rng.random_bool(0.5) {
                apply.insert("pcsa.team".into(), json!(["red", "blue"].choose(rng)));
            }
            docs.push(
                json!({"kind": "Profile", "metadata": {"name": format!("ksa.{ns}.{sa}")},
                "spec": {"labelsToApply": apply}}),
            );
        }
    }
    for i in 0..6u8 {
        let ns = *NAMESPACES.choose(rng).unwrap_or(&"default");
        let mut profiles = if rng.random_bool(0.9) {
            vec![format!("kns.{ns}")]
        } else {
            Vec::new()
        };
        let mut labels = labels(rng);
        if rng.random_bool(0.7) {
            // As the CNI plugin writes a pod with a service account.
            let sa = *SERVICE_ACCOUNTS.choose(rng).unwrap_or(&"api");
            if let Value::Object(m) = &mut labels {
                m.insert("projectcalico.org/serviceaccount".into(), json!(sa));
            }
            profiles.push(format!("ksa.{ns}.{sa}"));
        }
        docs.push(json!({"kind": "WorkloadEndpoint",
            "metadata": {"name": format!("pod-{i}"), "namespace": ns, "labels": labels},
            "spec": {"node": "h1", "interfaceName": format!("cali{i}"),
                     "ipNetworks": [format!("10.65.{}.{}/32", i % 2, i + 1)], "profiles": profiles,
                     "ports": declared_ports(rng)}}));
    }
    if rng.random_bool(0.5) {
        docs.push(json!({"kind": "HostEndpoint",
            "metadata": {"name": "h2-eth0", "labels": labels(rng)},
            "spec": {"node": "h2", "interfaceName": "eth0", "expectedIPs": ["192.0.2.7"],
                     "ports": declared_ports(rng)}}));
    }
    for (i, net) in ["192.0.2.0/25", "198.51.100.0/24"].iter().enumerate() {
        docs.push(json!({"kind": "GlobalNetworkSet",
            "metadata": {"name": format!("set-{i}"), "labels": labels(rng)},
            "spec": {"nets": [net]}}));
    }
    if rng.random_bool(0.6) {
        let action = ["Deny", "Pass"].choose(rng).copied();
        docs.push(json!({"kind": "Tier", "metadata": {"name": "security"},
            "spec": {"order": 10, "defaultAction": action}}));
    }
    for i in 0..rng.random_range(0..6) {
        let tier = *["default", "default", "security"]
            .choose(rng)
            .unwrap_or(&"default");
        let name = if tier == "default" {
            format!("p{i}")
        } else {
            format!("{tier}.p{i}")
        };
        let mut spec = serde_json::Map::new();
        spec.insert("tier".into(), json!(tier));
        if rng.random_bool(0.7) {
            spec.insert("order".into(), json!([1, 2, 10].choose(rng)));
        }
        spec.insert("selector".into(), json!(SELECTORS[..8].choose(rng)));
        if rng.random_bool(0.15) {
            spec.insert(
                "serviceAccountSelector".into(),
                json!(SA_SELECTORS.choose(rng)),
            );
        }
        spec.insert("ingress".into(), rules(rng));
        spec.insert("egress".into(), rules(rng));
        if rng.random_bool(0.3) {
            // One direction only: the other's rules must go.
            let (only, other) = *[("Ingress", "egress"), ("Egress", "ingress")]
                .choose(rng)
                .unwrap_or(&("Ingress", "egress"));
            spec.insert("types".into(), json!([only]));
            spec.insert(other.into(), json!([]));
        }
        let doc = if rng.random_bool(0.5) {
            let ns = NAMESPACES.choose(rng);
            json!({"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
        } else {
            if rng.random_bool(0.2) {
                spec.insert(
                    "namespaceSelector".into(),
                    json!(NS_SELECTORS[2..].choose(rng)),
                );
            }
            json!({"kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": spec})
        };
        docs.push(doc);
    }
    docs.into_iter()
        .filter_map(|d| Resource::from_value(d, None).ok())
        .collect()
}

/// A random packet to (ingress) or from (egress) the endpoint at `local`.
pub fn packet(rng: &mut StdRng, local: Ipv4Addr, direction: PolicyDirection) -> Packet {
    let remote: Ipv4Addr = if rng.random_bool(0.6) {
        let i: u8 = rng.random_range(0..6);
        Ipv4Addr::new(10, 65, i % 2, i + 1)
    } else {
        REMOTES
            .choose(rng)
            .and_then(|a| a.parse().ok())
            .unwrap_or(Ipv4Addr::new(203, 0, 113, 1))
    };
    let (proto, l4) = match rng.random_range(0..4) {
        0 => (
            6,
            L4::Ports {
                src: rng.random_range(68..95),
                dst: rng.random_range(68..95),
            },
        ),
        1 => (
            17,
            L4::Ports {
                src: rng.random_range(68..95),
                dst: rng.random_range(68..95),
            },
        ),
        2 => (
            1,
            L4::Icmp {
                icmp_type: *[0u8, 8, 3].choose(rng).unwrap_or(&8),
                code: rng.random_range(0..2),
            },
        ),
        _ => (47, L4::Other),
    };
    let (src, dst) = match direction {
        PolicyDirection::Ingress => (remote, local),
        PolicyDirection::Egress => (local, remote),
    };
    Packet {
        src,
        dst,
        proto,
        l4,
    }
}
