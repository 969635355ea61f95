//! The policies `bench dataplane` applies through etcd (`felix apply`): `n` Deny rules that
//! the measured traffic never matches, placed before the Allow, on every pod's ingress.
//!
//! - [`Shape::Cidr`]: rule `i` denies one source address of 198.18.0.0/15 (benchmarking
//!   space no pod and no test uses); iptables mode writes each as one `-s` rule.
//! - [`Shape::Selector`]: rule `i` denies `source: selector: bench-set == 's<i>'`, which
//!   selects GlobalNetworkSet `bench-set-<i>` of [`SET_SIZE`] addresses of that range, none
//!   adjacent (so none merge and iptables mode needs an ipset per rule).
//!
//! The rules go into GlobalNetworkPolicies `bench-deny-<c>` of at most [`CHUNK`] rules each
//! (one etcd value stays well under etcd's 1.5 MiB request limit), orders 10, 11, ...; then
//! `bench-allow` (order 1000): ingress Deny TCP to a sentinel port, then Allow; egress Allow.
//! The sentinel differs per configuration: once a connection to it times out instead of being
//! refused, the dataplane enforces the configuration, and since `bench-allow` is applied last,
//! all of it.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// Rules per policy.
pub const CHUNK: u32 = 10_000;
/// Addresses per GlobalNetworkSet of [`Shape::Selector`].
pub const SET_SIZE: u32 = 8;
/// The range the rules name: 198.18.0.0/15.
const BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const RANGE: u32 = 1 << 17;
/// Distance between the addresses of one set (so no two are adjacent).
const SET_STRIDE: u32 = RANGE / SET_SIZE;
/// The label key of the network sets.
const SET_LABEL: &str = "bench-set";
/// Prefix of Calico's v3 resource keys in etcd.
const RESOURCES: &str = "/calico/resources/v3/projectcalico.org";

/// How each non-matching rule names its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    /// One /32 each.
    Cidr,
    /// A selector of a GlobalNetworkSet each (an ipset in iptables mode).
    Selector,
}

impl Shape {
    /// The largest rule count this shape can name distinct addresses for.
    pub fn max_rules(self) -> u32 {
        match self {
            Shape::Cidr => RANGE,
            Shape::Selector => SET_STRIDE,
        }
    }
}

/// Rule `i`'s source address (Cidr) or set `i`'s `j`-th address (Selector).
fn address(shape: Shape, i: u32, j: u32) -> Ipv4Addr {
    match shape {
        Shape::Cidr => Ipv4Addr::from(BASE + i),
        Shape::Selector => Ipv4Addr::from(BASE + i + j * SET_STRIDE),
    }
}

/// Whether `addr` is one the rules may name (the measured traffic must never come from there).
pub fn in_rule_range(addr: Ipv4Addr) -> bool {
    (BASE..BASE + RANGE).contains(&u32::from(addr))
}

/// Name of deny policy `chunk`.
pub fn deny_name(chunk: u32) -> String {
    format!("bench-deny-{chunk}")
}

/// The etcd key of GlobalNetworkPolicy `name`.
pub fn policy_key(name: &str) -> String {
    format!("{RESOURCES}/globalnetworkpolicies/{name}")
}

/// Deny policies `n` rules need.
pub fn chunks(n: u32) -> u32 {
    n.div_ceil(CHUNK)
}

fn rule(shape: Shape, i: u32) -> Value {
    match shape {
        Shape::Cidr => json!({
            "action": "Deny",
            "source": {"nets": [format!("{}/32", address(shape, i, 0))]}
        }),
        Shape::Selector => json!({
            "action": "Deny",
            "source": {"selector": format!("{SET_LABEL} == 's{i}'")}
        }),
    }
}

fn network_set(i: u32) -> Value {
    let nets: Vec<String> = (0..SET_SIZE)
        .map(|j| format!("{}/32", address(Shape::Selector, i, j)))
        .collect();
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": format!("bench-set-{i}"), "labels": {SET_LABEL: format!("s{i}")}},
        "spec": {"nets": nets}
    })
}

fn policy(
    name: &str,
    order: u32,
    types: &[&str],
    ingress: Vec<Value>,
    egress: Vec<Value>,
) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "order": order,
            "selector": "all()",
            "types": types,
            "ingress": ingress,
            "egress": egress
        }
    })
}

/// The documents for `n` rules of `shape` with `sentinel`, in the order to apply them:
/// network sets, deny policies, `bench-allow`.
pub fn documents(shape: Shape, n: u32, sentinel: u16) -> Vec<Value> {
    let mut docs = Vec::new();
    if shape == Shape::Selector {
        docs.extend((0..n).map(network_set));
    }
    for c in 0..chunks(n) {
        let rules = (c * CHUNK..n.min((c + 1) * CHUNK))
            .map(|i| rule(shape, i))
            .collect();
        docs.push(policy(&deny_name(c), 10 + c, &["Ingress"], rules, vec![]));
    }
    let sentinel_deny = json!({
        "action": "Deny",
        "protocol": "TCP",
        "destination": {"ports": [sentinel]}
    });
    docs.push(policy(
        "bench-allow",
        1000,
        &["Ingress", "Egress"],
        vec![sentinel_deny, json!({"action": "Allow"})],
        vec![json!({"action": "Allow"})],
    ));
    docs
}

/// `docs` as one file for `felix apply -f`: a stream of JSON documents, one per line.
pub fn file_text(docs: &[Value]) -> String {
    let parts: Vec<String> = docs.iter().map(Value::to_string).collect();
    parts.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn policies(docs: &[Value]) -> Vec<&Value> {
        docs.iter()
            .filter(|d| d["kind"] == "GlobalNetworkPolicy")
            .collect()
    }

    #[test]
    fn rules_split_into_chunks_before_the_allow() {
        let docs = documents(Shape::Cidr, 25_000, 7001);
        let pols = policies(&docs);
        assert_eq!(pols.len(), 4);
        let sizes: Vec<usize> = pols
            .iter()
            .map(|p| p["spec"]["ingress"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [10_000, 10_000, 5_000, 2]);
        let orders: Vec<u64> = pols
            .iter()
            .filter_map(|p| p["spec"]["order"].as_u64())
            .collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");
        let last = pols[3];
        assert_eq!(last["metadata"]["name"], "bench-allow");
        assert_eq!(last["spec"]["ingress"][0]["destination"]["ports"][0], 7001);
        assert_eq!(last["spec"]["ingress"][1]["action"], "Allow");
        assert_eq!(chunks(0), 0);
        assert_eq!(policies(&documents(Shape::Cidr, 0, 1)).len(), 1);
    }

    #[test]
    fn every_address_is_distinct_and_in_the_benchmark_range() {
        for shape in [Shape::Cidr, Shape::Selector] {
            let n = 2_000;
            let mut seen = HashSet::new();
            for i in 0..n {
                let per = if shape == Shape::Selector {
                    SET_SIZE
                } else {
                    1
                };
                for j in 0..per {
                    let a = address(shape, i, j);
                    assert!(in_rule_range(a), "{a}");
                    assert!(seen.insert(a), "{shape:?}: {a} twice");
                }
            }
        }
        assert!(!in_rule_range(Ipv4Addr::new(192, 168, 0, 1)));
        assert!(!in_rule_range(Ipv4Addr::new(198, 20, 0, 0)));
        let last = address(
            Shape::Selector,
            Shape::Selector.max_rules() - 1,
            SET_SIZE - 1,
        );
        assert!(in_rule_range(last));
    }

    #[test]
    fn set_members_are_never_adjacent() {
        let set = network_set(5);
        let nets = set["spec"]["nets"].as_array().cloned().unwrap_or_default();
        assert_eq!(nets.len(), SET_SIZE as usize);
        let addrs: Vec<u32> = nets
            .iter()
            .filter_map(|n| n.as_str()?.trim_end_matches("/32").parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .collect();
        assert_eq!(addrs.len(), SET_SIZE as usize);
        for w in addrs.windows(2) {
            assert!(w[1] - w[0] > 1, "{addrs:?}");
        }
    }

    #[test]
    fn selector_rules_name_their_sets_and_come_after_them() {
        let docs = documents(Shape::Selector, 3, 7002);
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "GlobalNetworkSet",
                "GlobalNetworkSet",
                "GlobalNetworkSet",
                "GlobalNetworkPolicy",
                "GlobalNetworkPolicy"
            ]
        );
        assert_eq!(docs[2]["metadata"]["labels"][SET_LABEL], "s2");
        assert_eq!(
            docs[3]["spec"]["ingress"][2]["source"]["selector"],
            "bench-set == 's2'"
        );
        let text = file_text(&docs);
        let parsed: Vec<Value> = serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(parsed, docs);
    }
}
