//! Which datastore changes the forwarding view ([`Topology`](crate::calc::topology::Topology))
//! reads, so that a batch of policy, network set or remote endpoint changes does not rebuild it
//! from every endpoint in the store.

use calico::{
    model::{Kind, Resource},
    store::{Change, Entry, EntryKind},
};

/// Whether any of `changes` can change the topology of `node`: a node, an IP pool, an IPAM
/// block, or a workload endpoint that is on `node` before or after the change.
pub(super) fn touch_topology(changes: &[Change], node: &str) -> bool {
    changes.iter().any(|change| match change.kind {
        EntryKind::IpamBlock | EntryKind::Resource(Kind::Node | Kind::IpPool) => true,
        EntryKind::Resource(Kind::WorkloadEndpoint) => [&change.old, &change.new]
            .into_iter()
            .flatten()
            .any(|entry| on_node(entry, node)),
        _ => false,
    })
}

/// Whether `entry` is a workload endpoint of `node`.
fn on_node(entry: &Entry, node: &str) -> bool {
    matches!(entry.as_resource(), Some(Resource::WorkloadEndpoint(wep)) if wep.spec.node == node)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn entry(key: &str, json: &str) -> Arc<Entry> {
        match Entry::parse(key, json.as_bytes()) {
            Some(Ok(entry)) => Arc::new(entry),
            other => panic!("{key}: {other:?}"),
        }
    }

    const WEP_KEY: &str =
        "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/node--a-k8s-pod-eth0";

    fn wep(node: &str, role: &str) -> Arc<Entry> {
        entry(
            WEP_KEY,
            &format!(
                r#"{{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3",
                "metadata":{{"name":"node--a-k8s-pod-eth0","namespace":"ns1","labels":{{"role":"{role}"}}}},
                "spec":{{"node":"{node}","orchestrator":"k8s","workload":"pod","endpoint":"eth0",
                "interfaceName":"cali1","ipNetworks":["10.0.0.1/32"]}}}}"#
            ),
        )
    }

    fn change(key: &str, old: Option<Arc<Entry>>, new: Option<Arc<Entry>>) -> Change {
        Change {
            key: key.into(),
            kind: EntryKind::of_key(key).expect("a key the store holds"),
            old,
            new,
        }
    }

    #[test]
    fn remote_endpoint_changes_leave_the_topology_alone() {
        let relabel = change(
            WEP_KEY,
            Some(wep("node-b", "frontend")),
            Some(wep("node-b", "backend")),
        );
        assert!(!touch_topology(&[relabel], "node-a"));
    }

    #[test]
    fn local_endpoint_changes_touch_it_before_and_after() {
        let arrives = change(WEP_KEY, None, Some(wep("node-a", "db")));
        let leaves = change(
            WEP_KEY,
            Some(wep("node-a", "db")),
            Some(wep("node-b", "db")),
        );
        assert!(touch_topology(&[arrives], "node-a"));
        assert!(touch_topology(&[leaves], "node-a"));
    }

    #[test]
    fn policies_do_not_touch_it_and_nodes_do() {
        let policy = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/p1";
        let policy = change(policy, None, None);
        assert!(!touch_topology(std::slice::from_ref(&policy), "node-a"));
        let node = change(
            "/calico/resources/v3/projectcalico.org/nodes/node-b",
            None,
            None,
        );
        assert!(touch_topology(&[policy, node], "node-a"));
    }
}
