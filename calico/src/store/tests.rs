use serde_json::json;

use super::*;

const WEPS: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/";
const NODES: &str = "/calico/resources/v3/projectcalico.org/nodes/";

fn wep(name: &str, ip: &str) -> Vec<u8> {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"node": "h1", "pod": name, "endpoint": "eth0", "interfaceName": "cali1",
                 "ipNetworks": [ip], "mac": "02:00:00:00:00:01"}
    })
    .to_string()
    .into_bytes()
}

fn node(name: &str, address: &str) -> Vec<u8> {
    json!({"kind": "Node", "metadata": {"name": name},
           "spec": {"bgp": {"ipv4Address": address}}})
    .to_string()
    .into_bytes()
}

fn kv(key: &str, value: impl Into<Vec<u8>>, revision: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        revision,
        created: revision,
    }
}

fn put(key: &str, value: impl Into<Vec<u8>>, revision: i64) -> Event {
    Event::Put(kv(key, value, revision))
}

fn events(revision: i64, events: Vec<Event>) -> Update {
    Update::Events { revision, events }
}

fn keys(applied: &Applied) -> Vec<(&str, bool, bool)> {
    applied
        .changes
        .iter()
        .map(|c| (c.key.as_str(), c.old.is_some(), c.new.is_some()))
        .collect()
}

fn current(store: &Store, kind: EntryKind) -> u64 {
    store.malformed_counts().get(&kind).map_or(0, |c| c.current)
}

fn total(store: &Store, kind: EntryKind) -> u64 {
    store.malformed_counts().get(&kind).map_or(0, |c| c.total)
}

const WEP: EntryKind = EntryKind::Resource(Kind::WorkloadEndpoint);

#[test]
fn a_listing_fills_the_cache_and_skips_what_it_cannot_read() {
    let a = format!("{WEPS}a");
    let bad = format!("{WEPS}bad");
    let block = "/calico/ipam/v2/assignment/ipv4/block/192.168.2.0-30";
    let affinity = "/calico/ipam/v2/host/h1/ipv4/block/192.168.2.0-30";
    let block_value = json!({"cidr": "192.168.2.0/30", "affinity": "host:h1",
        "allocations": [null, null, null, null], "unallocated": [0, 1, 2, 3],
        "attributes": [], "deleted": false});
    let mut store = Store::new();
    let applied = store.apply(Update::Snapshot {
        revision: 10,
        kvs: vec![
            kv(&a, wep("a", "192.168.2.1/32"), 3),
            kv(&bad, "{not json", 4),
            kv(&format!("{NODES}h1"), node("h1", "10.0.0.1/24"), 5),
            kv(block, block_value.to_string(), 6),
            kv(affinity, r#"{"state":"confirmed","deleted":false}"#, 7),
            kv("/calico/felix/v2/no-region/host/h1/status", "{}", 8),
            kv(
                "/calico/resources/v3/projectcalico.org/kubecontrollersconfigurations/x",
                "?",
                9,
            ),
            kv("/calico/ipam/v2/handle/x", "?", 9),
        ],
    });
    assert!(applied.resync && store.is_synced());
    assert_eq!(applied.revision, 10);
    assert_eq!(applied.changes.len(), 4, "{:?}", keys(&applied));
    assert_eq!(store.len(), 4);
    assert_eq!(store.workload_endpoints().count(), 1);
    assert_eq!(
        store
            .nodes()
            .map(|(_, n)| n.spec.ipv4())
            .collect::<Vec<_>>(),
        vec![Some("10.0.0.1".parse().unwrap())]
    );
    assert_eq!(
        store.blocks().next().and_then(|(_, b)| b.host()),
        Some("h1")
    );
    assert_eq!(
        store.affinities().next().map(|(_, a)| a.node.as_str()),
        Some("h1")
    );
    assert!(matches!(
        store.get(&a),
        Some(Entry::Resource(Resource::WorkloadEndpoint(_)))
    ));
    assert_eq!(store.revision_of(&a), Some(3));
    let (key, malformed) = store.malformed().next().unwrap();
    assert_eq!((key, malformed.kind), (bad.as_str(), WEP));
    assert!(malformed.reason.contains("JSON"), "{}", malformed.reason);
    assert_eq!((current(&store, WEP), total(&store, WEP)), (1, 1));
}

#[test]
fn watch_events_put_update_and_delete() {
    let a = format!("{WEPS}a");
    let mut store = Store::new();
    store.apply(Update::Snapshot {
        revision: 1,
        kvs: vec![],
    });
    let applied = store.apply(events(2, vec![put(&a, wep("a", "192.168.2.1/32"), 2)]));
    assert_eq!(keys(&applied), vec![(a.as_str(), false, true)]);
    assert_eq!(applied.changes[0].kind, WEP);

    let applied = store.apply(events(3, vec![put(&a, wep("a", "192.168.2.9/32"), 3)]));
    assert_eq!(keys(&applied), vec![(a.as_str(), true, true)]);
    assert_ne!(applied.changes[0].old, applied.changes[0].new);

    let same = store.apply(events(4, vec![put(&a, wep("a", "192.168.2.9/32"), 4)]));
    assert!(
        same.changes.is_empty(),
        "an identical value changes nothing"
    );
    assert_eq!(store.revision_of(&a), Some(4));

    let stale = store.apply(events(4, vec![put(&a, wep("a", "192.168.2.7/32"), 3)]));
    assert!(stale.changes.is_empty(), "an older revision is ignored");

    let applied = store.apply(events(
        5,
        vec![Event::Delete {
            key: a.clone(),
            revision: 5,
        }],
    ));
    assert_eq!(keys(&applied), vec![(a.as_str(), true, false)]);
    assert!(store.is_empty());
    assert_eq!(store.revision(), 5);
}

#[test]
fn changes_in_one_batch_are_folded_per_key() {
    let a = format!("{WEPS}a");
    let b = format!("{WEPS}b");
    let mut store = Store::new();
    store.apply(Update::Snapshot {
        revision: 1,
        kvs: vec![kv(&b, wep("b", "192.168.2.2/32"), 1)],
    });
    let applied = store.apply(events(
        6,
        vec![
            put(&a, wep("a", "192.168.2.1/32"), 2),
            put(&a, wep("a", "192.168.2.3/32"), 3),
            put(&b, wep("b", "192.168.2.5/32"), 4),
            put(&b, wep("b", "192.168.2.2/32"), 5),
            put("/calico/felix/v2/no-region/host/h1/status", "{}", 6),
        ],
    ));
    assert_eq!(
        keys(&applied),
        vec![(a.as_str(), false, true)],
        "b came back to where it was"
    );
    let applied = store.apply(events(
        8,
        vec![
            put(&a, wep("a", "192.168.2.4/32"), 7),
            Event::Delete {
                key: a.clone(),
                revision: 8,
            },
        ],
    ));
    assert_eq!(keys(&applied), vec![(a.as_str(), true, false)]);
}

#[test]
fn malformed_values_are_counted_once_and_replace_valid_ones() {
    let a = format!("{WEPS}a");
    let mut store = Store::new();
    store.apply(Update::Snapshot {
        revision: 1,
        kvs: vec![kv(&a, wep("a", "192.168.2.1/32"), 1)],
    });

    // Valid -> malformed: the old value goes.
    let applied = store.apply(events(2, vec![put(&a, wep("a", "192.168.2.300/32"), 2)]));
    assert_eq!(keys(&applied), vec![(a.as_str(), true, false)]);
    assert!(store.get(&a).is_none());
    assert_eq!((current(&store, WEP), total(&store, WEP)), (1, 1));
    let reason = &store.malformed().next().unwrap().1.reason;
    assert!(reason.contains("spec.ipNetworks"), "{reason}");

    // The same value listed again is not counted again.
    store.apply(Update::Snapshot {
        revision: 3,
        kvs: vec![kv(&a, wep("a", "192.168.2.300/32"), 2)],
    });
    assert_eq!((current(&store, WEP), total(&store, WEP)), (1, 1));

    // Malformed -> valid: applied.
    let applied = store.apply(events(4, vec![put(&a, wep("a", "192.168.2.4/32"), 4)]));
    assert_eq!(keys(&applied), vec![(a.as_str(), false, true)]);
    assert_eq!((current(&store, WEP), total(&store, WEP)), (0, 1));

    // Malformed, then deleted: nothing left.
    store.apply(events(
        6,
        vec![
            put(&a, "[]", 5),
            Event::Delete {
                key: a.clone(),
                revision: 6,
            },
        ],
    ));
    assert!(store.is_empty() && store.malformed().next().is_none());
    assert_eq!(total(&store, WEP), 2);
}

#[test]
fn validation_failures_are_malformed() {
    let policy = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/p";
    let block = "/calico/ipam/v2/assignment/ipv4/block/192.168.2.0-30";
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (policy.into(), br#"{"kind":"GlobalNetworkPolicy","metadata":{"name":"p"},"spec":{"selector":"app == "}}"#.to_vec(), "bad selector"),
        (policy.into(), br#"{"kind":"GlobalNetworkPolicy","metadata":{"name":"p"},"spec":{"order":"first"}}"#.to_vec(), "spec.order"),
        (policy.into(), br#"{"kind":"GlobalNetworkPolicy","metadata":{"name":"q"}}"#.to_vec(), "metadata.name \"q\" does not match the key"),
        (policy.into(), br#"{"kind":"Profile","metadata":{"name":"p"}}"#.to_vec(), "kind Profile does not match"),
        (format!("{WEPS}a"), wep("a", "10.0.0.0/33"), "spec.ipNetworks"),
        (format!("{WEPS}a"), wep("a", "0.0.0.0/0"), "spec.ipNetworks[0]"),
        (format!("{WEPS}a"), wep("a", "10.0.0.0/24"), "one address (/32 or /128)"),
        ("/calico/resources/v3/projectcalico.org/workloadendpoints/other/a".into(), wep("a", "10.0.0.1/32"), "metadata.namespace \"default\""),
        (format!("{NODES}h1"), node("h1", "ten"), "spec.bgp.ipv4Address"),
        (block.into(), br#"{"cidr":"300.168.2.0/30","allocations":[],"unallocated":[],"attributes":[]}"#.to_vec(), "invalid IP address"),
        ("/calico/ipam/v2/assignment/ipv4/block/192.168.2.1-30".into(), b"{}".to_vec(), "not a CIDR"),
        ("/calico/ipam/v2/host/h1/ipv4/block/192.168.2.0-30".into(), br#"{"deleted":"no"}"#.to_vec(), "invalid type"),
    ];
    for (i, (key, value, reason)) in cases.iter().enumerate() {
        let mut store = Store::new();
        store.apply(Update::Snapshot {
            revision: 1,
            kvs: vec![kv(key, value.clone(), 1)],
        });
        assert!(store.is_empty(), "case {i} accepted");
        let (_, malformed) = store.malformed().next().unwrap();
        assert!(
            malformed.reason.contains(reason),
            "case {i}: {:?} lacks {reason:?}",
            malformed.reason
        );
    }
}

#[test]
fn a_listing_reconciles_what_vanished() {
    let a = format!("{WEPS}a");
    let b = format!("{WEPS}b");
    let bad = format!("{WEPS}bad");
    let mut store = Store::new();
    store.apply(Update::Snapshot {
        revision: 3,
        kvs: vec![
            kv(&a, wep("a", "192.168.2.1/32"), 1),
            kv(&b, wep("b", "192.168.2.2/32"), 2),
            kv(&bad, "x", 3),
        ],
    });
    let applied = store.apply(Update::Snapshot {
        revision: 9,
        kvs: vec![
            kv(&b, wep("b", "192.168.2.2/32"), 2),
            kv(&format!("{WEPS}c"), wep("c", "192.168.2.3/32"), 8),
        ],
    });
    assert_eq!(
        keys(&applied),
        vec![
            (a.as_str(), true, false),
            (format!("{WEPS}c").as_str(), false, true)
        ]
    );
    assert_eq!(store.malformed().count(), 0);
    assert_eq!((current(&store, WEP), total(&store, WEP)), (0, 1));
    assert_eq!(store.revision(), 9);
}

#[test]
fn kinds_are_iterated_apart() {
    let gnp =
        |name: &str| format!(r#"{{"kind":"GlobalNetworkPolicy","metadata":{{"name":"{name}"}}}}"#);
    let np = |name: &str| {
        format!(r#"{{"kind":"NetworkPolicy","metadata":{{"name":"{name}","namespace":"ns"}}}}"#)
    };
    let mut store = Store::new();
    store.apply(Update::Snapshot {
        revision: 1,
        kvs: vec![
            kv(
                "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/g1",
                gnp("g1"),
                1,
            ),
            kv(
                "/calico/resources/v3/projectcalico.org/networkpolicies/ns/n1",
                np("n1"),
                1,
            ),
            kv(
                "/calico/resources/v3/projectcalico.org/networkpolicies/ns/n2",
                np("n2"),
                1,
            ),
        ],
    });
    let names = |kind| {
        store
            .resources(kind)
            .map(|(_, r)| r.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(Kind::GlobalNetworkPolicy), vec!["g1"]);
    assert_eq!(names(Kind::NetworkPolicy), vec!["n1", "n2"]);
    assert!(names(Kind::Profile).is_empty());
}

#[test]
fn keys_that_are_not_utf8_are_counted_once_per_value() {
    const KIND: EntryKind = EntryKind::NonUtf8Key;
    let raw = |revision, deleted| Event::NonUtf8 {
        key: b"/calico/resources/v3/projectcalico.org/nodes/\xff".to_vec(),
        revision,
        deleted,
    };
    let a = format!("{WEPS}a");
    let mut store = Store::new();
    store.apply(Update::Snapshot {
        revision: 3,
        kvs: vec![kv(&a, wep("a", "10.0.0.1/32"), 2)],
    });
    store.apply(events(3, vec![raw(3, false)]));
    assert_eq!((current(&store, KIND), total(&store, KIND)), (1, 1));
    assert_eq!(store.len(), 1, "the valid key still applies");
    // Listed again after a reconnect: the same value is not counted twice.
    store.apply(Update::Snapshot {
        revision: 4,
        kvs: vec![kv(&a, wep("a", "10.0.0.1/32"), 2)],
    });
    store.apply(events(4, vec![raw(3, false)]));
    assert_eq!((current(&store, KIND), total(&store, KIND)), (1, 1));
    // A new value is; a deletion clears the current count.
    store.apply(events(5, vec![raw(5, false)]));
    assert_eq!((current(&store, KIND), total(&store, KIND)), (1, 2));
    store.apply(events(6, vec![raw(6, true)]));
    assert_eq!((current(&store, KIND), total(&store, KIND)), (0, 2));
    // Gone from a later listing: no longer current.
    store.apply(events(7, vec![raw(7, false)]));
    store.apply(Update::Snapshot {
        revision: 8,
        kvs: vec![],
    });
    assert_eq!((current(&store, KIND), total(&store, KIND)), (0, 3));
}

#[test]
fn the_creating_revision_is_kept_across_modifications() {
    let a = format!("{WEPS}a");
    let mut store = Store::new();
    store.apply(events(
        2,
        vec![Event::Put(KeyValue {
            created: 2,
            ..kv(&a, wep("a", "10.0.0.1/32"), 2)
        })],
    ));
    store.apply(events(
        5,
        vec![Event::Put(KeyValue {
            created: 2,
            ..kv(&a, wep("a", "10.0.0.2/32"), 5)
        })],
    ));
    assert_eq!(store.revision_of(&a), Some(5));
    assert_eq!(store.created_revision(&a), Some(2));
}
