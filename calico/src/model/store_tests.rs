//! What felix stores, compared with what Calico's client stores for the same input (the
//! expected values are written as clientv3 would marshal its Go structs; key order aside).

use serde_json::{Value, json};

use super::{Resource, document::parse_one, store::LABEL_TIER};

const UID: &str = "0b5d8e4c-3c1e-4a3a-9a43-7a6f2d1c9e11";
const NOW: &str = "2026-01-02T03:04:05Z";

/// `yaml` as `felix apply` writes it to a key that holds `stored` (if any).
fn stored_value(yaml: &str, stored: Option<&str>) -> Value {
    let r = parse_one(yaml).unwrap_or_else(|e| panic!("{e}"));
    let stored = stored.map(|s| parse_one(s).unwrap_or_else(|e| panic!("{e}")));
    let out = r.for_store(stored.as_ref(), || UID.to_string(), || NOW.to_string());
    serde_json::from_str(&out.to_json()).expect("json")
}

fn created(yaml: &str) -> Value {
    stored_value(yaml, None)
}

/// clientv3 `ippool.go` `validateAndSetDefaults`: blockSize 26 (IPv4) / 122 (IPv6),
/// nodeSelector `all()`, allowedUses Workload+Tunnel, assignmentMode Automatic, ipipMode and
/// vxlanMode Never; `resources.go` `Create` adds uid and creationTimestamp.
#[test]
fn ippool_defaults_are_stored() {
    let v = created(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n",
    );
    assert_eq!(
        v,
        json!({
            "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "p", "uid": UID, "creationTimestamp": NOW},
            "spec": {"cidr": "10.0.0.0/16", "vxlanMode": "Never", "ipipMode": "Never",
                     "blockSize": 26, "nodeSelector": "all()",
                     "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic"}
        })
    );
    let v6 = created("kind: IPPool\nmetadata: {name: p6}\nspec: {cidr: 'fd00::/64'}\n");
    assert_eq!(v6["spec"]["blockSize"], 122);
}

/// Given values are kept: clientv3 only fills what is empty.
#[test]
fn ippool_given_values_are_kept() {
    let v = created(
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 28, ipipMode: CrossSubnet, nodeSelector: 'zone == \"a\"', allowedUses: [Tunnel], assignmentMode: Manual}\n",
    );
    let s = &v["spec"];
    assert_eq!(s["blockSize"], 28);
    assert_eq!(s["ipipMode"], "CrossSubnet");
    assert_eq!(s["nodeSelector"], "zone == \"a\"");
    assert_eq!(s["allowedUses"], json!(["Tunnel"]));
    assert_eq!(s["assignmentMode"], "Manual");
}

/// `lib/resources/tier.go` `DefaultTierFields`: order 1000000 (`DefaultTierOrder`, written as
/// Go writes a float64: no fraction) and defaultAction Deny.
#[test]
fn tier_defaults_are_stored() {
    let v = created("kind: Tier\nmetadata: {name: security}\n");
    assert_eq!(
        v,
        json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Tier",
            "metadata": {"name": "security", "uid": UID, "creationTimestamp": NOW},
            "spec": {"order": 1000000, "defaultAction": "Deny"}
        })
    );
    let r = created("kind: Tier\nmetadata: {name: t}\nspec: {order: 100.5, defaultAction: Pass}\n");
    assert_eq!(r["spec"], json!({"order": 100.5, "defaultAction": "Pass"}));
}

/// `api/pkg/defaults/networkpolicy.go`: types defaulted, the `projectcalico.org/tier` label set
/// to the tier (replacing another value), `spec.tier` left empty when it was.
#[test]
fn policy_tier_label_is_stored() {
    let v = created(
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec: {selector: all()}\n",
    );
    assert_eq!(
        v,
        json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "prod", "uid": UID, "creationTimestamp": NOW,
                         "labels": {"projectcalico.org/tier": "default"}},
            "spec": {"selector": "all()", "types": ["Ingress"]}
        })
    );
    let g = created(
        "kind: GlobalNetworkPolicy\nmetadata: {name: g, labels: {projectcalico.org/tier: wrong, a: b}}\nspec: {tier: security, order: 10}\n",
    );
    assert_eq!(
        g["metadata"]["labels"],
        json!({LABEL_TIER: "security", "a": "b"})
    );
    assert_eq!(g["spec"]["tier"], "security");
    assert_eq!(g["spec"]["order"], 10);
}

/// calicoctl `prepareMetadataForCreate` keeps name, namespace, labels and annotations only;
/// every other ObjectMeta field is accepted (strict decoding knows them) and dropped.
#[test]
fn create_keeps_only_name_namespace_labels_annotations() {
    let v = created(
        r#"
kind: GlobalNetworkSet
metadata:
  name: s
  labels: {a: b}
  annotations: {note: x}
  uid: given-uid
  resourceVersion: "77"
  creationTimestamp: "2020-01-01T00:00:00Z"
  generation: 3
  generateName: s-
  selfLink: /x
  deletionTimestamp: "2020-01-02T00:00:00Z"
  deletionGracePeriodSeconds: 30
  finalizers: [example.com/f]
  ownerReferences:
  - {apiVersion: v1, kind: Namespace, name: ns, uid: u1, controller: true, blockOwnerDeletion: true}
  managedFields:
  - {manager: kubectl, operation: Update, apiVersion: v1, time: "2020-01-01T00:00:00Z", fieldsType: FieldsV1, fieldsV1: {"f:metadata": {}}}
spec: {nets: [10.1.0.0/16]}
"#,
    );
    assert_eq!(
        v["metadata"],
        json!({"name": "s", "labels": {"a": "b"}, "annotations": {"note": "x"},
               "uid": UID, "creationTimestamp": NOW})
    );
}

/// calicoctl `mergeMetadataForUpdate`: the stored metadata stays (uid, creationTimestamp and
/// the rest), only labels and annotations come from the input; resourceVersion is not stored.
#[test]
fn update_keeps_stored_metadata() {
    let stored = r#"{"apiVersion":"projectcalico.org/v3","kind":"Profile",
        "metadata":{"name":"kns.a","uid":"old-uid","creationTimestamp":"2020-01-01T00:00:00Z",
                    "resourceVersion":"5","finalizers":["f"],"labels":{"old":"1"}},
        "spec":{}}"#;
    let v = stored_value(
        "kind: Profile\nmetadata: {name: kns.a, uid: other, labels: {new: '2'}}\nspec: {labelsToApply: {x: y}}\n",
        Some(stored),
    );
    assert_eq!(
        v["metadata"],
        json!({"name": "kns.a", "uid": "old-uid", "creationTimestamp": "2020-01-01T00:00:00Z",
               "finalizers": ["f"], "labels": {"new": "2"}})
    );
    assert_eq!(v["spec"], json!({"labelsToApply": {"x": "y"}}));
}

/// A value stored without uid (by an older felix) gets one, keeping its creation time.
#[test]
fn update_of_value_without_uid_adds_one() {
    let stored = r#"{"kind":"Tier","metadata":{"name":"t","creationTimestamp":"2020-01-01T00:00:00Z"},"spec":{}}"#;
    let v = stored_value("kind: Tier\nmetadata: {name: t}\n", Some(stored));
    assert_eq!(v["metadata"]["uid"], UID);
    assert_eq!(v["metadata"]["creationTimestamp"], "2020-01-01T00:00:00Z");
}

/// clientv3 `felixconfig.go` `setDefaults`.
#[test]
fn felix_configuration_defaults_are_stored() {
    let v = created(
        "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Info}\n",
    );
    assert_eq!(
        v["spec"],
        json!({"logSeverityScreen": "Info", "floatingIPs": "Disabled",
               "bpfConnectTimeLoadBalancing": "TCP", "bpfHostNetworkedNATWithoutCTLB": "Enabled"})
    );
    let old = created(
        "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {bpfConnectTimeLoadBalancingEnabled: true}\n",
    );
    assert_eq!(old["spec"]["bpfConnectTimeLoadBalancing"], "Enabled");
    assert_eq!(old["spec"]["bpfHostNetworkedNATWithoutCTLB"], "Disabled");
}

/// Kinds clientv3 does not default are stored as given (plus uid and creationTimestamp).
#[test]
fn network_set_is_stored_as_given() {
    let v = created(
        "kind: NetworkSet\nmetadata: {name: ext, namespace: prod, labels: {role: db}}\nspec: {nets: [192.0.2.0/24]}\n",
    );
    assert_eq!(
        v,
        json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
            "metadata": {"name": "ext", "namespace": "prod", "labels": {"role": "db"},
                         "uid": UID, "creationTimestamp": NOW},
            "spec": {"nets": ["192.0.2.0/24"]}
        })
    );
    let r = parse_one("kind: NetworkSet\nmetadata: {name: ext}\nspec: {}\n").expect("parse");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/networksets/default/ext"
    );
    assert!(matches!(r, Resource::NetworkSet(_)));
}
