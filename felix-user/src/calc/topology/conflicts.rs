//! Workload endpoints of one node that name the same interface. An interface carries one
//! endpoint: the one that holds it, which is the endpoint etcd created first (the lowest
//! `create_revision`, then the lower key). The others wait, reported as conflicting; when the
//! holder goes, the next one takes the interface over.
//!
//! etcd's creating revision does not change when an endpoint is modified and is the same after a
//! felix restart, so the holder is the same whichever felix looks and whenever: a second
//! endpoint written for a running pod's interface never takes the pod over. (Calico's felix
//! prefers the lower endpoint id, `endpoint_mgr.go`, so there a newcomer with a lower name wins.)

use std::collections::BTreeMap;

use super::Workload;

/// An endpoint that names an interface another endpoint holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The endpoint left out.
    pub loser: Workload,
    /// The key of the endpoint that holds the interface.
    pub holder: String,
}

/// Splits `workloads` into those that hold their interface (in their original order) and the
/// conflicting rest.
pub fn resolve(workloads: Vec<Workload>) -> (Vec<Workload>, Vec<Conflict>) {
    let mut holders: BTreeMap<&str, &Workload> = BTreeMap::new();
    for workload in &workloads {
        holders
            .entry(workload.interface.as_str())
            .and_modify(|holder| {
                if precedes(workload, holder) {
                    *holder = workload;
                }
            })
            .or_insert(workload);
    }
    let holder_keys: BTreeMap<String, String> = holders
        .into_iter()
        .map(|(iface, w)| (iface.to_owned(), w.key.clone()))
        .collect();
    let mut kept = Vec::with_capacity(workloads.len());
    let mut conflicts = Vec::new();
    for workload in workloads {
        match holder_keys.get(&workload.interface) {
            Some(holder) if *holder != workload.key => conflicts.push(Conflict {
                holder: holder.clone(),
                loser: workload,
            }),
            _ => kept.push(workload),
        }
    }
    (kept, conflicts)
}

/// Whether `a` holds an interface before `b`: created first, then the lower key.
fn precedes(a: &Workload, b: &Workload) -> bool {
    (a.created, &a.key) < (b.created, &b.key)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use calico::model::workload_endpoint::EndpointId;

    use super::*;

    fn workload(key: &str, interface: &str, created: i64) -> Workload {
        Workload {
            key: key.into(),
            node: "h1".into(),
            interface: interface.into(),
            ip: Ipv4Addr::new(10, 0, 0, 1),
            mac: None,
            created,
            id: EndpointId {
                orchestrator: "k8s".into(),
                workload: format!("ns/{key}"),
                endpoint: "eth0".into(),
            },
        }
    }

    fn keys(workloads: &[Workload]) -> Vec<&str> {
        workloads.iter().map(|w| w.key.as_str()).collect()
    }

    #[test]
    fn the_endpoint_created_first_holds_the_interface() {
        // "a" sorts first but was written after the pod's endpoint "pod".
        let (kept, conflicts) = resolve(vec![
            workload("a", "cali1", 9),
            workload("other", "cali2", 1),
            workload("pod", "cali1", 4),
        ]);
        assert_eq!(keys(&kept), ["other", "pod"]);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            (
                conflicts[0].loser.key.as_str(),
                conflicts[0].holder.as_str()
            ),
            ("a", "pod")
        );
    }

    #[test]
    fn the_rule_does_not_depend_on_the_order_seen() {
        let all = vec![
            workload("x", "cali1", 7),
            workload("y", "cali1", 3),
            workload("z", "cali1", 3),
        ];
        let mut reversed = all.clone();
        reversed.reverse();
        for input in [all, reversed] {
            let (kept, conflicts) = resolve(input);
            assert_eq!(keys(&kept), ["y"], "same revision: the lower key");
            let mut losers: Vec<&str> = conflicts.iter().map(|c| c.loser.key.as_str()).collect();
            losers.sort();
            assert_eq!(losers, ["x", "z"]);
            assert!(conflicts.iter().all(|c| c.holder == "y"));
        }
    }

    #[test]
    fn a_waiting_endpoint_takes_over_when_the_holder_goes() {
        let (kept, _) = resolve(vec![workload("new", "cali1", 9)]);
        assert_eq!(keys(&kept), ["new"]);
        let (kept, conflicts) = resolve(vec![workload("a", "cali1", 1), workload("b", "cali2", 2)]);
        assert_eq!((kept.len(), conflicts.len()), (2, 0), "no shared interface");
    }
}
