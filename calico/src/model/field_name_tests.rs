//! Field names as calicoctl decodes them: YAML is turned into JSON (`sigs.k8s.io/yaml`) and
//! decoded by Go's `encoding/json`, which matches a key to a field ignoring case when no field
//! has exactly its name; strict mode (`UnmarshalStrict`) refuses keys that match no field.

use serde_json::json;

use super::{Reason, Resource, document::parse_one};

fn parsed(yaml: &str) -> Resource {
    parse_one(yaml).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn field_names_match_ignoring_case_and_are_stored_canonically() {
    let r = parsed(
        "kind: IPPool\nMetadata: {Name: p, LABELS: {Keep-Case: Blue}}\nspec: {CIDR: 10.0.0.0/16, ipipmode: Always, NatOutgoing: true, blocksize: 28, disablebgpexport: true}\n",
    );
    assert_eq!(
        r.to_value(),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
               "metadata": {"name": "p", "labels": {"Keep-Case": "Blue"}},
               "spec": {"cidr": "10.0.0.0/16", "ipipMode": "Always", "natOutgoing": true,
                        "blockSize": 28, "disableBGPExport": true}})
    );
}

#[test]
fn nested_rule_fields_match_ignoring_case() {
    let r = parsed(
        "kind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  Ingress:\n  - Action: Allow\n    Protocol: TCP\n    Source: {NotNets: [10.0.0.0/8]}\n    destination: {PORTS: [80]}\n    noticmp: null\n",
    );
    let v = r.to_value();
    assert_eq!(
        v["spec"]["ingress"][0],
        json!({"action": "Allow", "protocol": "TCP", "source": {"notNets": ["10.0.0.0/8"]},
               "destination": {"ports": [80]}})
    );
}

#[test]
fn map_keys_are_not_folded() {
    let r = parsed(
        "kind: Profile\nmetadata: {name: kns.a}\nspec: {LabelsToApply: {Pcns.Team: Blue}}\n",
    );
    assert_eq!(
        r.to_value()["spec"],
        json!({"labelsToApply": {"Pcns.Team": "Blue"}})
    );
}

#[test]
fn unknown_fields_are_still_refused() {
    let e = parse_one(
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMod: Always}\n",
    )
    .expect_err("unknown field");
    assert_eq!(e.field, "spec.ipipMod");
    assert_eq!(e.reason, Reason::UnknownField);
}

/// A field given under two spellings: Go keeps the later one in input order, which a JSON object
/// here does not keep, so felix refuses it (a deliberate difference).
#[test]
fn a_field_given_twice_in_different_case_is_refused() {
    let e = parse_one("kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMode: Always, IPIPMode: Never}\n")
        .expect_err("twice");
    assert!(e.to_string().contains("given twice"), "{e}");
}

/// `sigs.k8s.io/yaml` turns YAML numbers and booleans into strings where the Go field is a
/// string (`yamlToJSONTarget`), so `labels: {version: 1}` is the label "1".
#[test]
fn yaml_scalars_become_strings_for_string_fields() {
    let r = parsed(
        "kind: GlobalNetworkSet\nmetadata: {name: s, labels: {version: 1, enabled: true}}\nspec: {}\n",
    );
    assert_eq!(
        r.to_value()["metadata"]["labels"],
        json!({"version": "1", "enabled": "true"})
    );
}

/// What is read back from etcd is decoded as Go's JSON decoding does: names ignoring case too,
/// but a number is not a string there.
#[test]
fn etcd_values_fold_names_but_not_scalars() {
    let r = Resource::from_etcd(
        "/calico/resources/v3/projectcalico.org/tiers/t",
        br#"{"kind":"Tier","metadata":{"name":"t"},"spec":{"Order":5}}"#,
    )
    .expect("folded");
    assert_eq!(r.to_value()["spec"], json!({"order": 5}));
    assert!(
        Resource::from_etcd(
            "/calico/resources/v3/projectcalico.org/globalnetworksets/s",
            br#"{"kind":"GlobalNetworkSet","metadata":{"name":"s","labels":{"v":1}},"spec":{}}"#,
        )
        .is_err()
    );
}
