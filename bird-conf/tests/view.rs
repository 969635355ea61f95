//! The decisions of the template context, checked one by one (the golden files show them
//! together).

use bird_conf::{
    fixture::Fixture,
    inputs::Inputs,
    view::{BirdView, ViewError},
};
use calico::store::EntryKind;

fn view(yaml: &str, node: &str) -> Result<BirdView, ViewError> {
    let store = Fixture::parse(yaml)
        .expect("fixture")
        .store()
        .expect("store");
    BirdView::build(&Inputs::from_store(&store, node))
}

fn node(name: &str, bgp: &str, labels: &str) -> String {
    format!(
        "  - {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: {name}, labels: {{{labels}}}}}, spec: {{bgp: {{{bgp}}}}}}}\n"
    )
}

fn world(resources: &[String]) -> String {
    format!("node: x\nresources:\n{}", resources.concat())
}

#[test]
fn needs_the_node_and_its_address() {
    let yaml = world(&[node("h1", "asNumber: 65000", "")]);
    assert_eq!(view(&yaml, "h9"), Err(ViewError::NoNode("h9".into())));
    assert_eq!(view(&yaml, "h1"), Err(ViewError::NoAddress("h1".into())));
}

#[test]
fn as_numbers_come_from_the_node_then_the_cluster() {
    let yaml = world(&[
        node("h1", "ipv4Address: 10.0.0.1/24", ""),
        node("h2", "ipv4Address: 10.0.0.2/24, asNumber: 65002", ""),
        "  - {apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {name: default}, spec: {asNumber: 65000}}\n".into(),
    ]);
    let v = view(&yaml, "h1").expect("view");
    assert_eq!(v.as_number, 65000);
    assert_eq!(v.peers.len(), 1);
    assert_eq!((v.peers[0].as_number, v.peers[0].ibgp), (65002, false));
    let v = view(&yaml, "h2").expect("view");
    assert_eq!(v.as_number, 65002);
    // The mesh session is opened by the higher address: h2 is active towards h1.
    assert!(!v.peers[0].passive);
}

#[test]
fn reflectors_of_one_cluster_are_not_each_others_clients() {
    let yaml = world(&[
        node("rr1", "ipv4Address: 10.0.0.10/24, routeReflectorClusterID: 224.0.0.1", "rr: \"y\""),
        node("rr2", "ipv4Address: 10.0.0.11/24, routeReflectorClusterID: 224.0.0.1", "rr: \"y\""),
        node("h1", "ipv4Address: 10.0.0.1/24", ""),
        node("e1", "ipv4Address: 10.0.0.5/24, asNumber: 65001", ""),
        "  - {apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {name: default}, spec: {nodeToNodeMeshEnabled: false}}\n".into(),
        "  - {apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {name: to-rr}, spec: {peerSelector: has(rr)}}\n".into(),
    ]);
    let v = view(&yaml, "rr1").expect("view");
    let clients: Vec<(&str, bool)> = v
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.rr_client))
        .collect();
    // h1: client; e1: eBGP, never a client; rr2: same cluster, not a client.
    assert_eq!(
        clients,
        [
            ("Node_10_0_0_1", true),
            ("Node_10_0_0_5", false),
            ("Global_10_0_0_11", false),
        ]
    );
    let v = view(&yaml, "h1").expect("view");
    let names: Vec<&str> = v.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Global_10_0_0_10", "Global_10_0_0_11"]);
    assert!(v.peers.iter().all(|p| !p.rr_client));
}

#[test]
fn only_the_relevant_kinds_trigger_a_render() {
    use calico::model::Kind;
    assert!(Inputs::depends_on(EntryKind::BlockAffinity));
    assert!(Inputs::depends_on(EntryKind::Resource(Kind::BgpPeer)));
    assert!(!Inputs::depends_on(EntryKind::IpamBlock));
    assert!(!Inputs::depends_on(EntryKind::Resource(
        Kind::WorkloadEndpoint
    )));
}

#[test]
fn never_peers_with_its_own_address() {
    let yaml = world(&[
        node("h1", "ipv4Address: 10.0.0.1/24", ""),
        node("h1-old", "ipv4Address: 10.0.0.1/24", ""),
        "  - {apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {name: me}, spec: {peerIP: 10.0.0.1, asNumber: 64512}}\n".into(),
    ]);
    let v = view(&yaml, "h1").expect("view");
    assert!(v.peers.is_empty(), "{:?}", v.peers);
    assert!(
        v.notes.iter().any(|n| n.contains("skipping ourselves")),
        "{:?}",
        v.notes
    );
}
