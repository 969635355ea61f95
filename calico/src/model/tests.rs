use super::{document::parse_documents, *};

fn one(yaml: &str) -> Resource {
    let mut all = parse_documents(yaml);
    assert_eq!(all.len(), 1, "{all:?}");
    match all.remove(0) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// Parses, then checks that the JSON form and its re-parse (strict and lenient) give it back.
fn round_trip(yaml: &str) -> Resource {
    let r = one(yaml);
    let json = r.to_json();
    let again = one(&json);
    assert_eq!(again, r, "JSON round trip of {json}");
    let lenient = Resource::from_etcd(&r.key(), json.as_bytes()).expect("from_etcd");
    assert_eq!(lenient, r);
    let yaml_again = serde_yaml_ng::to_string(&r).expect("yaml");
    assert_eq!(one(&yaml_again), r, "YAML round trip of {yaml_again}");
    r
}

const NP: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-tcp-6379
  namespace: production
  labels: {team: db}
spec:
  tier: default
  order: 100.5
  selector: role == 'database'
  types:
    - Ingress
    - Egress
  ingress:
    - action: Log
      protocol: TCP
      source:
        selector: role == 'frontend'
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'frontend'
        notNets: [10.1.0.0/16]
      destination:
        ports:
          - 6379
          - "7000:7010"
          - redis
        notPorts: [7005]
    - action: Deny
      protocol: ICMP
      icmp: {type: 8, code: 0}
    - action: Pass
      notProtocol: 17
      destination:
        nets: [192.168.1.1, 10.0.0.0/8]
        namespaceSelector: projectcalico.org/name == 'dev'
  egress:
    - action: Allow
      protocol: UDP
      destination:
        ports: [53]
        notSelector: has(blocked)
"#;

#[test]
fn network_policy_round_trip() {
    let r = round_trip(NP);
    let Resource::NetworkPolicy(o) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(o.metadata.namespace.as_deref(), Some("production"));
    assert_eq!(o.spec.order, Some(100.5));
    assert_eq!(o.spec.tier(), "default");
    let allow = &o.spec.ingress[1];
    assert_eq!(allow.action, Action::Allow);
    assert_eq!(allow.protocol, Some(Protocol::Tcp));
    assert_eq!(
        allow.destination.ports,
        vec![
            Port::Single(6379),
            Port::Range { lo: 7000, hi: 7010 },
            Port::Named("redis".into())
        ]
    );
    assert_eq!(allow.source.not_nets[0].to_string(), "10.1.0.0/16");
    let deny = &o.spec.ingress[2];
    assert_eq!(
        deny.icmp,
        Some(Icmp {
            icmp_type: Some(8),
            code: Some(0)
        })
    );
    let pass = &o.spec.ingress[3];
    assert_eq!(pass.not_protocol, Some(Protocol::Number(17)));
    assert_eq!(pass.destination.nets[0].to_string(), "192.168.1.1/32");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/networkpolicies/production/allow-tcp-6379"
    );
    let v = r.to_value();
    assert_eq!(v["apiVersion"], "projectcalico.org/v3");
    assert_eq!(v["kind"], "NetworkPolicy");
    assert_eq!(
        v["spec"]["ingress"][1]["destination"]["ports"][1],
        "7000:7010"
    );
    assert_eq!(v["spec"]["ingress"][1]["destination"]["ports"][0], 6379);
    assert_eq!(v["spec"]["ingress"][2]["icmp"]["type"], 8);
    assert_eq!(v["spec"]["ingress"][3]["notProtocol"], 17);
    assert_eq!(
        v["spec"]["ingress"][1]["source"]["notNets"][0],
        "10.1.0.0/16"
    );
}

#[test]
fn defaults_namespace_tier_and_types() {
    let r = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  selector: all()\n",
    );
    let Resource::NetworkPolicy(o) = &r else {
        panic!()
    };
    assert_eq!(r.namespace(), Some("default"));
    // Calico's defaulting (api/pkg/defaults/networkpolicy.go) leaves an empty tier empty: the
    // stored spec has no `tier`, and readers take it as `default`.
    assert_eq!(o.spec.tier, None);
    assert_eq!(o.spec.tier(), "default");
    assert_eq!(o.spec.types, vec![PolicyType::Ingress]);
    assert_eq!(o.spec.order_or_inf(), f64::INFINITY);
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/networkpolicies/default/p"
    );
}

#[test]
fn default_types_follow_calico() {
    let types = |spec: &str| {
        let r = one(&format!(
            "kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n{spec}"
        ));
        let Resource::GlobalNetworkPolicy(o) = r else {
            panic!()
        };
        o.spec.types
    };
    use PolicyType::{Egress, Ingress};
    assert_eq!(types("  selector: all()\n"), vec![Ingress]);
    assert_eq!(types("  ingress: [{action: Allow}]\n"), vec![Ingress]);
    assert_eq!(types("  egress: [{action: Allow}]\n"), vec![Egress]);
    assert_eq!(
        types("  ingress: [{action: Deny}]\n  egress: [{action: Allow}]\n"),
        vec![Ingress, Egress]
    );
    assert_eq!(types("  types: [Egress]\n"), vec![Egress]);
}

#[test]
fn global_network_policy_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.block-bad
spec:
  tier: security
  order: 10
  selector: all()
  namespaceSelector: has(projectcalico.org/name)
  serviceAccountSelector: role == 'x'
  types: [Ingress]
  ingress:
    - action: Deny
      source:
        selector: type == 'bad-nets'
    - action: Allow
      protocol: 132
      destination:
        ports: [9000]
"#,
    );
    let Resource::GlobalNetworkPolicy(o) = &r else {
        panic!()
    };
    assert_eq!(o.spec.tier(), "security");
    assert_eq!(o.spec.order, Some(10.0));
    assert_eq!(
        o.spec.namespace_selector.as_deref(),
        Some("has(projectcalico.org/name)")
    );
    assert_eq!(r.namespace(), None);
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/security.block-bad"
    );
}

#[test]
fn host_policy_flags() {
    let r = round_trip(
        "kind: GlobalNetworkPolicy\nmetadata: {name: pre}\nspec:\n  preDNAT: true\n  applyOnForward: true\n  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}]\n",
    );
    assert_eq!(r.to_value()["spec"]["preDNAT"], true);
}

#[test]
fn workload_endpoint_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-frontend--5gs43-eth0
  namespace: default
  labels:
    app: frontend
spec:
  orchestrator: k8s
  node: node1
  pod: frontend-5gs43
  endpoint: eth0
  containerID: 1337495556942031415
  serviceAccountName: default
  ipNetworks:
    - 192.168.0.0/32
  profiles:
    - kns.default
    - ksa.default.default
  interfaceName: cali0ef24ba0b96
  mac: ca:fe:1d:52:bb:e9
  ports:
    - name: http
      port: 80
      protocol: TCP
    - name: dns
      port: 53
      protocol: UDP
      hostPort: 5353
"#,
    );
    let Resource::WorkloadEndpoint(o) = &r else {
        panic!()
    };
    assert_eq!(o.spec.ip_networks[0].to_string(), "192.168.0.0/32");
    assert_eq!(o.spec.container_id, "1337495556942031415");
    assert_eq!(o.spec.ports[1].host_port, Some(5353));
    assert_eq!(o.metadata.labels["projectcalico.org/namespace"], "default");
    assert_eq!(o.metadata.labels["projectcalico.org/orchestrator"], "k8s");
    assert_eq!(o.metadata.labels["app"], "frontend");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-k8s-frontend--5gs43-eth0"
    );
}

#[test]
fn workload_endpoint_from_etcd_as_cni_writes_it() {
    // The shape calico.rs already reads (no apiVersion needed, unknown fields ignored).
    let key = "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/h1-k8s-p1-eth0";
    let v = br#"{"kind":"WorkloadEndpoint","metadata":{"name":"h1-k8s-p1-eth0","namespace":"ns1",
        "uid":"u","futureField":1},"spec":{"orchestrator":"k8s","node":"h1","pod":"p1",
        "endpoint":"eth0","ipNetworks":["10.65.0.2/32"],"interfaceName":"cali1234",
        "mac":"ee:ee:ee:ee:ee:ee","somethingNew":{"x":1}}}"#;
    let r = Resource::from_etcd(key, v).expect("parse");
    assert_eq!(r.qualified_name(), "ns1/h1-k8s-p1-eth0");
    assert_eq!(r.key(), key);
}

#[test]
fn profile_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: kns.default
spec:
  ingress:
    - action: Allow
  egress:
    - action: Allow
  labelsToApply:
    projectcalico.org/name: default
"#,
    );
    let Resource::Profile(o) = &r else { panic!() };
    assert_eq!(o.spec.labels_to_apply["projectcalico.org/name"], "default");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/profiles/kns.default"
    );
}

#[test]
fn profile_without_spec() {
    let r = round_trip("kind: Profile\nmetadata:\n  name: empty\n");
    assert_eq!(
        r,
        Resource::Profile(Object {
            metadata: Metadata::named("empty"),
            spec: ProfileSpec::default()
        })
    );
}

#[test]
fn tier_round_trip() {
    let r = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 300\n  defaultAction: Pass\n",
    );
    let Resource::Tier(o) = &r else { panic!() };
    assert_eq!(o.spec.order_or_inf(), 300.0);
    assert_eq!(o.spec.default_action, Some(Action::Pass));
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/tiers/security"
    );
}

#[test]
fn ippool_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
  ipipMode: CrossSubnet
  vxlanMode: Never
  natOutgoing: true
  disabled: false
  blockSize: 26
  nodeSelector: all()
  allowedUses: [Workload, Tunnel]
"#,
    );
    let Resource::IpPool(o) = &r else { panic!() };
    assert_eq!(o.spec.ipip(), EncapMode::CrossSubnet);
    assert_eq!(o.spec.vxlan(), EncapMode::Never);
    assert!(o.spec.nat_outgoing);
    assert_eq!(o.spec.block_size(), 26);
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
    );
    // Host bits are cleared, block size defaults by family.
    let r = one("kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.1.2.3/16}\n");
    let Resource::IpPool(o) = &r else { panic!() };
    assert_eq!(o.spec.cidr.to_string(), "10.1.0.0/16");
    assert_eq!(o.spec.block_size(), 26);
    let r =
        one("kind: IPPool\nmetadata: {name: p6}\nspec: {cidr: 'fd00::/48', vxlanMode: Always}\n");
    let Resource::IpPool(o) = &r else { panic!() };
    assert_eq!(o.spec.block_size(), 122);
}

#[test]
fn node_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-hostname
spec:
  bgp:
    asNumber: 64512
    ipv4Address: 10.244.0.1/24
    ipv6Address: 2001:db8:85a3::8a2e:370:7334/120
    ipv4IPIPTunnelAddr: 192.168.0.1
    routeReflectorClusterID: 224.0.0.1
  ipv4VXLANTunnelAddr: 192.168.0.2
  vxlanTunnelMACAddr: 66:c5:6b:32:7e:2e
  orchRefs:
    - nodeName: node-hostname
      orchestrator: k8s
  addresses:
    - address: 10.244.0.1
      type: InternalIP
"#,
    );
    let Resource::Node(o) = &r else { panic!() };
    assert_eq!(o.spec.ipv4(), Some("10.244.0.1".parse().expect("ip")));
    let bgp = o.spec.bgp.as_ref().expect("bgp");
    assert_eq!(bgp.as_number, Some(AsNumber(64512)));
    assert_eq!(r.to_value()["spec"]["bgp"]["ipv4Address"], "10.244.0.1/24");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/nodes/node-hostname"
    );
    // asdot and string AS numbers.
    let r = one("kind: Node\nmetadata: {name: n}\nspec: {bgp: {asNumber: '1.10'}}\n");
    let Resource::Node(o) = &r else { panic!() };
    assert_eq!(
        o.spec.bgp.as_ref().and_then(|b| b.as_number),
        Some(AsNumber(65546))
    );
}

#[test]
fn node_as_felix_registers_it() {
    let v = br#"{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{"name":"h1"},
        "spec":{"bgp":{"ipv4Address":"10.0.0.1/24","asNumber":64512},
        "orchRefs":[{"nodeName":"h1","orchestrator":"k8s"}]}}"#;
    let r =
        Resource::from_etcd("/calico/resources/v3/projectcalico.org/nodes/h1", v).expect("node");
    assert_eq!(r.kind(), Kind::Node);
}

#[test]
fn global_network_set_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: a-name-for-the-set
  labels:
    role: external-database
spec:
  nets:
    - 198.51.100.0/28
    - 203.0.113.0/24
    - 198.51.100.7
"#,
    );
    let Resource::GlobalNetworkSet(o) = &r else {
        panic!()
    };
    assert_eq!(o.spec.nets.len(), 3);
    assert_eq!(o.spec.nets[2].to_string(), "198.51.100.7/32");
    assert_eq!(o.metadata.labels["role"], "external-database");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/globalnetworksets/a-name-for-the-set"
    );
}

#[test]
fn host_endpoint_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: some.name
  labels:
    type: production
spec:
  interfaceName: eth0
  node: myhost
  expectedIPs:
    - 192.168.0.1
    - 192.168.0.2
  profiles:
    - profile1
  ports:
    - name: some-port
      port: 1234
      protocol: TCP
"#,
    );
    let Resource::HostEndpoint(o) = &r else {
        panic!()
    };
    assert_eq!(o.spec.expected_ips.len(), 2);
    assert_eq!(r.to_value()["spec"]["expectedIPs"][1], "192.168.0.2");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/hostendpoints/some.name"
    );
}

#[test]
fn felix_configuration_round_trip() {
    let r = round_trip(
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  ipipEnabled: true
  ipipMTU: 1440
  logSeverityScreen: Info
  reportingInterval: 0s
  bpfEnabled: true
  defaultEndpointToHostAction: Accept
  failsafeInboundHostPorts:
    - protocol: TCP
      port: 22
    - protocol: UDP
      port: 68
  chainInsertMode: Insert
  iptablesRefreshInterval: 90s
"#,
    );
    let Resource::FelixConfiguration(o) = &r else {
        panic!()
    };
    assert_eq!(o.spec.ipip_mtu, Some(1440));
    assert_eq!(o.spec.other["chainInsertMode"], "Insert");
    assert_eq!(r.to_value()["spec"]["iptablesRefreshInterval"], "90s");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/felixconfigurations/default"
    );
}

#[test]
fn bgp_kinds_are_opaque() {
    let r = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: rack1-tor}\nspec:\n  peerIP: 192.20.30.40\n  asNumber: 64567\n  nodeSelector: rack == 'rack-1'\n",
    );
    assert_eq!(r.to_value()["spec"]["peerIP"], "192.20.30.40");
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/bgppeers/rack1-tor"
    );
    let r = round_trip(
        "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Info, nodeToNodeMeshEnabled: true, asNumber: 63400}\n",
    );
    assert_eq!(
        r.key(),
        "/calico/resources/v3/projectcalico.org/bgpconfigurations/default"
    );
}

#[test]
fn keys_parse_back() {
    for kind in Kind::ALL {
        let ns = kind.namespaced().then(|| "ns1".to_string());
        let key = key_for(kind, ns.as_deref(), "a.b-c");
        assert_eq!(
            parse_key(&key),
            Some((kind, ns.clone(), "a.b-c".to_string())),
            "{key}"
        );
        assert!(key.starts_with(&prefix_of(kind, ns.as_deref())));
        assert_eq!(Kind::from_user(kind.plural()), Some(kind));
        assert_eq!(Kind::from_user(&kind.as_str().to_lowercase()), Some(kind));
        assert_eq!(Kind::from_kind(kind.as_str()), Some(kind));
    }
    let p = "/calico/resources/v3/projectcalico.org/";
    assert_eq!(parse_key(&format!("{p}networkpolicies/onlyname")), None);
    assert_eq!(parse_key(&format!("{p}profiles/ns/name")), None);
    assert_eq!(parse_key(&format!("{p}profiles/")), None);
    assert_eq!(parse_key(&format!("{p}widgets/x")), None);
    assert_eq!(
        parse_key("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"),
        None
    );
    assert_eq!(
        parse_key(&format!("{p}ippools/default-ipv4-ippool")),
        Some((Kind::IpPool, None, "default-ipv4-ippool".into()))
    );
    assert_eq!(Kind::from_user("IPPool"), Some(Kind::IpPool));
    assert_eq!(Kind::from_user("bgppeer"), Some(Kind::BgpPeer));
}

/// (document, expected field path, expected text in the reason)
const INVALID: &[(&str, &str, &str)] = &[
    // Selectors.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {selector: \"role == \"}",
        "spec.selector",
        "bad selector",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {namespaceSelector: \"has(\"}",
        "spec.namespaceSelector",
        "bad selector",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {serviceAccountSelector: \"a = 'b'\"}",
        "spec.serviceAccountSelector",
        "bad selector",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow}, {action: Allow, source: {selector: \"a in {'x'\"}}]}",
        "spec.ingress[1].source.selector",
        "bad selector",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Deny, destination: {notSelector: \"&& b == 'c'\"}}]}",
        "spec.egress[0].destination.notSelector",
        "bad selector",
    ),
    (
        "kind: Profile\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, source: {namespaceSelector: \"!\"}}]}",
        "spec.ingress[0].source.namespaceSelector",
        "bad selector",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, nodeSelector: \"all(\"}",
        "spec.nodeSelector",
        "bad selector",
    ),
    // Ports.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow}, {action: Allow, protocol: TCP, destination: {ports: ['90:80']}}]}",
        "spec.ingress[1].destination.ports[0]",
        "lower bound 90 > upper bound 80",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: TCP, destination: {ports: [80, 0]}}]}",
        "spec.ingress[0].destination.ports[1]",
        "port 0 is out of range",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: TCP, source: {notPorts: [65536]}}]}",
        "spec.ingress[0].source.notPorts[0]",
        "port 65536 is out of range",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, protocol: UDP, destination: {ports: ['0:10']}}]}",
        "spec.egress[0].destination.ports[0]",
        "out of range",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, protocol: UDP, destination: {ports: ['1:x']}}]}",
        "spec.egress[0].destination.ports[0]",
        "not a port number",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, protocol: UDP, destination: {ports: ['-http']}}]}",
        "spec.egress[0].destination.ports[0]",
        "is not a port",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, protocol: UDP, destination: {ports: [-1]}}]}",
        "spec.egress[0].destination.ports[0]",
        "out of range",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, destination: {ports: [80]}}]}",
        "spec.ingress[0].destination.ports",
        "ports need protocol TCP, UDP or SCTP (got none)",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: ICMP, source: {ports: [80]}}]}",
        "spec.ingress[0].source.ports",
        "(got ICMP)",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, protocol: 47, destination: {notPorts: [1]}}]}",
        "spec.egress[0].destination.notPorts",
        "(got 47)",
    ),
    (
        "kind: Profile\nmetadata: {name: p}\nspec: {egress: [{action: Allow, notProtocol: TCP, destination: {ports: [http]}}]}",
        "spec.egress[0].destination.ports",
        "ports need protocol",
    ),
    // Protocols.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: 256}]}",
        "spec.ingress[0].protocol",
        "protocol 256 is out of range 1-255",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, notProtocol: 0}]}",
        "spec.ingress[0].notProtocol",
        "protocol 0 is out of range",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: GRE}]}",
        "spec.ingress[0].protocol",
        "unknown protocol \"GRE\"",
    ),
    // Actions.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow}, {action: Allow}, {action: Accept}]}",
        "spec.ingress[2].action",
        "unknown action \"Accept\"",
    ),
    (
        "kind: Profile\nmetadata: {name: p}\nspec: {ingress: [{protocol: TCP}]}",
        "spec.ingress[0]",
        "missing field `action`",
    ),
    // ICMP.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, icmp: {type: 8}}]}",
        "spec.ingress[0].icmp",
        "ICMP matches need protocol ICMP or ICMPv6 (got none)",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: TCP, notICMP: {type: 8}}]}",
        "spec.ingress[0].notICMP",
        "(got TCP)",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: ICMP, icmp: {type: 255}}]}",
        "spec.ingress[0].icmp.type",
        "255 is out of range 0-254",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: ICMP, icmp: {code: 1}}]}",
        "spec.ingress[0].icmp.code",
        "an ICMP code needs an ICMP type",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: ICMPv6, icmp: {type: 8, code: 256}}]}",
        "spec.ingress[0].icmp.code",
        "u8",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: ICMP, ipVersion: 6}]}",
        "spec.ingress[0].protocol",
        "does not match ipVersion 6",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, ipVersion: 5}]}",
        "spec.ingress[0].ipVersion",
        "must be 4 or 6",
    ),
    // Nets.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Deny, destination: {nets: [10.0.0.0/8, 10.0.0.300/8]}}]}",
        "spec.egress[0].destination.nets[1]",
        "\"10.0.0.300/8\" is not a CIDR or an IP address",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Deny, source: {notNets: [10.0.0.0/33]}}]}",
        "spec.egress[0].source.notNets[0]",
        "is not a CIDR",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Deny, ipVersion: 4, source: {nets: ['fd00::/8']}}]}",
        "spec.egress[0].source.nets[0]",
        "does not match ipVersion 4",
    ),
    (
        "kind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [1.2.3.4, bogus]}",
        "spec.nets[1]",
        "\"bogus\" is not a CIDR",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ipNetworks: [10.0.0.1/40]}",
        "spec.ipNetworks[0]",
        "is not a CIDR",
    ),
    // Types, order, tier.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {types: [Ingress, Sideways]}",
        "spec.types[1]",
        "unknown policy type \"Sideways\"",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {types: [Ingress, Ingress]}",
        "spec.types[1]",
        "listed twice",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {types: [Ingress], egress: [{action: Allow}]}",
        "spec.types",
        "egress rules are given but types does not include Egress",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {types: [Egress], ingress: [{action: Allow}]}",
        "spec.types",
        "does not include Ingress",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {order: high}",
        "spec.order",
        "invalid type",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {tier: 'a/b'}",
        "spec.tier",
        "not a valid name",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {doNotTrack: true, preDNAT: true, applyOnForward: true}",
        "spec.preDNAT",
        "cannot both be true",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {doNotTrack: true}",
        "spec.applyOnForward",
        "need applyOnForward",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {preDNAT: true, applyOnForward: true, egress: [{action: Allow}]}",
        "spec.egress",
        "cannot have egress rules",
    ),
    (
        "kind: Tier\nmetadata: {name: t}\nspec: {defaultAction: Allow}",
        "spec.defaultAction",
        "must be Deny or Pass",
    ),
    // Unsupported matches.
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, source: {serviceAccounts: {selector: 'a ='}}}]}",
        "spec.ingress[0].source.serviceAccounts.selector",
        "bad selector",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, http: {methods: [GET]}}]}",
        "spec.ingress[0].http",
        "no L7 proxy",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow, destination: {services: {name: kube-dns, namespace: kube-system}}}]}",
        "spec.egress[0].destination.services",
        "not supported",
    ),
    // Metadata.
    (
        "kind: NetworkPolicy\nmetadata: {namespace: x}\nspec: {}",
        "metadata.name",
        "name is missing",
    ),
    (
        "kind: Profile\nspec: {}",
        "metadata.name",
        "name is missing",
    ),
    (
        "kind: Profile\nmetadata: {name: 'a b'}",
        "metadata.name",
        "not a valid name",
    ),
    (
        "kind: Profile\nmetadata: {name: 'a/b'}",
        "metadata.name",
        "not a valid name",
    ),
    (
        "kind: GlobalNetworkPolicy\nmetadata: {name: g, namespace: prod}",
        "metadata.namespace",
        "GlobalNetworkPolicy is not namespaced, but namespace \"prod\" was given",
    ),
    (
        "kind: IPPool\nmetadata: {name: g, namespace: prod}\nspec: {cidr: 10.0.0.0/16}",
        "metadata.namespace",
        "not namespaced",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w, namespace: 'a/b'}",
        "metadata.namespace",
        "not a valid name",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p, labels: [a]}",
        "metadata.labels",
        "invalid type",
    ),
    // Envelope.
    (
        "apiVersion: projectcalico.org/v1\nkind: Profile\nmetadata: {name: p}",
        "apiVersion",
        "is not projectcalico.org/v3",
    ),
    (
        "kind: Widget\nmetadata: {name: p}",
        "kind",
        "unknown kind \"Widget\"",
    ),
    ("metadata: {name: p}", "kind", "kind is missing"),
    ("- a\n- b", "", "must be an object"),
    // Unknown fields (strict apply input).
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: TCP, destination: {port: [80]}}]}",
        "spec.ingress[0].destination.port",
        "unknown field",
    ),
    (
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {selectr: all()}",
        "spec.selectr",
        "unknown field",
    ),
    (
        "kind: Profile\nmetadata: {name: p, lables: {a: b}}",
        "metadata.lables.a",
        "unknown field",
    ),
    (
        "kind: Profile\nmetadata: {name: p}\nspec: {labelsToApply: {a: b}, egres: [{action: Allow}]}",
        "spec.egres",
        "unknown field",
    ),
    // IP pools.
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {ipipMode: Always}",
        "spec",
        "missing field `cidr`",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMode: Sometimes}",
        "spec.ipipMode",
        "unknown encapsulation mode",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMode: Always, vxlanMode: CrossSubnet}",
        "spec.vxlanMode",
        "cannot both be enabled",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 'fd00::/48', ipipMode: Always}",
        "spec.ipipMode",
        "not supported for IPv6",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 33}",
        "spec.blockSize",
        "33 is out of range 20-32",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/28}",
        "spec.cidr",
        "smaller than one block",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, allowedUses: [Workload, Pets]}",
        "spec.allowedUses[1]",
        "unknown use",
    ),
    (
        "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, natOutgoing: yes}",
        "spec.natOutgoing",
        "invalid type",
    ),
    // Endpoints and nodes.
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {mac: 'zz:zz'}",
        "spec.mac",
        "not a MAC address",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {interfaceName: 'cali0123456789abcdef'}",
        "spec.interfaceName",
        "not an interface name",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ports: [{name: http, protocol: ICMP, port: 80}]}",
        "spec.ports[0].protocol",
        "ports need protocol",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ports: [{name: '', protocol: TCP, port: 80}]}",
        "spec.ports[0].name",
        "needs a name",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ports: [{name: HTTP, protocol: TCP, port: 80}]}",
        "spec.ports[0].name",
        "not a port name",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ports: [{name: '8080', protocol: TCP, port: 80}]}",
        "spec.ports[0].name",
        "not a port name",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n, interfaceName: eth0, ports: [{name: web--1, protocol: TCP, port: 80}]}",
        "spec.ports[0].name",
        "not a port name",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ports: [{name: a-very-long-name, protocol: TCP, port: 80}]}",
        "spec.ports[0].name",
        "not a port name",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ports: [{name: a, protocol: TCP, port: 0}]}",
        "spec.ports[0].port",
        "0 is out of range 1-65535",
    ),
    (
        "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {profiles: ['kns.a', '']}",
        "spec.profiles[1]",
        "not a valid name",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}\nspec: {interfaceName: eth0}",
        "spec.node",
        "needs its node",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n1}",
        "spec",
        "interfaceName or expectedIPs",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n1, expectedIPs: [10.0.0.1, nope]}",
        "spec.expectedIPs[1]",
        "invalid IP address",
    ),
    (
        "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4Address: 'fd00::1/64'}}",
        "spec.bgp.ipv4Address",
        "not an IPv4 address",
    ),
    (
        "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4Address: ten}}",
        "spec.bgp.ipv4Address",
        "is not a CIDR",
    ),
    (
        "kind: Node\nmetadata: {name: n}\nspec: {bgp: {asNumber: 'x.y'}}",
        "spec.bgp.asNumber",
        "not an AS number",
    ),
    (
        "kind: Node\nmetadata: {name: n}\nspec: {vxlanTunnelMACAddr: 'nope'}",
        "spec.vxlanTunnelMACAddr",
        "not a MAC address",
    ),
    (
        "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {defaultEndpointToHostAction: Maybe}",
        "spec.defaultEndpointToHostAction",
        "not Drop, Accept or Return",
    ),
    (
        "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {failsafeInboundHostPorts: [{protocol: TCP, port: 22}, {protocol: ICMP, port: 1}]}",
        "spec.failsafeInboundHostPorts[1].protocol",
        "ports need protocol",
    ),
    (
        "kind: BGPPeer\nmetadata: {name: b}\nspec: [1]",
        "spec",
        "spec must be an object",
    ),
];

#[test]
fn invalid_documents_name_field_and_reason() {
    for (i, (doc, field, reason)) in INVALID.iter().enumerate() {
        let all = parse_documents(doc);
        assert_eq!(all.len(), 1, "case {i}: {doc}");
        let e = match &all[0] {
            Ok(r) => panic!("case {i}: accepted {doc}\n-> {r:?}"),
            Err(e) => e,
        };
        assert_eq!(e.field, *field, "case {i}: {e}");
        let msg = e.reason.to_string();
        assert!(msg.contains(reason), "case {i}: {msg:?} lacks {reason:?}");
        assert!(e.doc.is_some(), "case {i}");
    }
    assert!(INVALID.len() >= 60);
}

#[test]
fn error_message_names_document_kind_name_field() {
    let input = "kind: Profile\nmetadata: {name: ok}\n---\n# second\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: prod\nspec:\n  ingress:\n    - action: Allow\n    - action: Allow\n      protocol: TCP\n      destination: {ports: ['90:80']}\n";
    let all = parse_documents(input);
    let e = all[1].as_ref().expect_err("bad");
    assert_eq!(
        e.to_string(),
        "document 2 (line 5) NetworkPolicy \"prod/web\": spec.ingress[1].destination.ports[0]: \
         port range \"90:80\": lower bound 90 > upper bound 80"
    );
    assert_eq!(e.kind.as_deref(), Some("NetworkPolicy"));
    assert_eq!(e.name.as_deref(), Some("prod/web"));
}

#[test]
fn lenient_etcd_reading_ignores_unknown_fields_but_checks_values() {
    let key = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/g";
    let ok = br#"{"kind":"GlobalNetworkPolicy","metadata":{"name":"g"},"spec":{"newThing":1,"ingress":[{"action":"Allow","newMatch":2}]}}"#;
    assert!(Resource::from_etcd(key, ok).is_ok());
    let bad = br#"{"kind":"GlobalNetworkPolicy","metadata":{"name":"g"},"spec":{"ingress":[{"action":"Allow","protocol":"TCP","destination":{"ports":[70000]}}]}}"#;
    let e = Resource::from_etcd(key, bad).expect_err("bad port");
    assert_eq!(e.field, "spec.ingress[0].destination.ports[0]");
    assert_eq!(e.doc, None);
    let e = Resource::from_etcd(key, b"{not json").expect_err("bad json");
    assert!(matches!(
        e.reason,
        Reason::Syntax {
            format: Format::Json,
            ..
        }
    ));
    assert_eq!(e.kind.as_deref(), Some("GlobalNetworkPolicy"));
    // The key's kind is used when the value has none.
    let r = Resource::from_etcd(key, br#"{"metadata":{"name":"g"},"spec":{}}"#).expect("kindless");
    assert_eq!(r.kind(), Kind::GlobalNetworkPolicy);
}

#[test]
fn multi_document_yaml_with_a_bad_document_in_the_middle() {
    let input = r#"
# A file with several documents.
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: bad
spec:
  ingress:
    - action: Allow
      protocol: TCP
      destination:
        ports: [99999]
---
this: is: not: yaml
---
---
# only a comment
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: ext
spec:
  nets: [1.2.3.0/24]
--- 
kind: Profile
metadata: {name: last}
"#;
    let all = parse_documents(input);
    assert_eq!(all.len(), 5, "{all:#?}");
    assert_eq!(all[0].as_ref().map(Resource::kind), Ok(Kind::Tier));
    let e = all[1].as_ref().expect_err("bad port");
    assert_eq!(
        e.doc.as_ref().map(|d| (d.index, d.line)),
        Some((2, Some(10)))
    );
    assert_eq!(e.field, "spec.ingress[0].destination.ports[0]");
    assert_eq!(e.name.as_deref(), Some("bad"));
    let e = all[2].as_ref().expect_err("bad yaml");
    assert!(
        matches!(
            e.reason,
            Reason::Syntax {
                format: Format::Yaml,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.doc.as_ref().map(|d| d.index), Some(3));
    assert!(e.to_string().contains("line 21"), "{e}");
    assert_eq!(all[3].as_ref().map(Resource::name), Ok("ext"));
    assert_eq!(all[4].as_ref().map(Resource::name), Ok("last"));
    assert_eq!(all[4].as_ref().expect("last").metadata().name, "last");
}

#[test]
fn json_single_array_stream_and_list() {
    let single = r#"{"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"t"},"spec":{"order":1}}"#;
    let all = parse_documents(single);
    assert_eq!(all.len(), 1);
    assert!(all[0].is_ok());

    let array = r#"[
      {"kind":"Profile","metadata":{"name":"a"}},
      {"kind":"Profile","metadata":{"name":"b"},"spec":{"ingress":[{"action":"Nope"}]}},
      {"kind":"Profile","metadata":{"name":"c"}}
    ]"#;
    let all = parse_documents(array);
    assert_eq!(all.len(), 3);
    assert!(all[0].is_ok() && all[2].is_ok());
    let e = all[1].as_ref().expect_err("bad action");
    assert_eq!(e.doc.as_ref().map(|d| d.index), Some(2));
    assert_eq!(e.field, "spec.ingress[0].action");

    let stream = format!("{single}\n{single}\n{{\"kind\": ");
    let all = parse_documents(&stream);
    assert_eq!(all.len(), 3);
    assert!(all[0].is_ok() && all[1].is_ok());
    assert!(matches!(
        all[2].as_ref().map_err(|e| &e.reason),
        Err(Reason::Syntax {
            format: Format::Json,
            ..
        })
    ));

    let list = r#"{"apiVersion":"v1","kind":"List","items":[
      {"kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/16"}},
      {"kind":"IPPool","metadata":{"name":"q"},"spec":{"cidr":"nope"}}]}"#;
    let all = parse_documents(list);
    assert_eq!(all.len(), 2);
    assert!(all[0].is_ok());
    let e = all[1].as_ref().expect_err("bad cidr");
    assert_eq!(e.doc.as_ref().and_then(|d| d.item), Some(1));
    assert_eq!(e.field, "spec.cidr");
    assert!(
        e.to_string()
            .starts_with("document 1 items[1] IPPool \"q\": spec.cidr:"),
        "{e}"
    );
}

#[test]
fn yaml_list_kind_is_expanded() {
    let all = parse_documents(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicyList\nitems:\n- kind: NetworkPolicy\n  metadata: {name: a, namespace: x}\n- kind: NetworkPolicy\n  metadata: {name: b, namespace: y}\n",
    );
    let names: Vec<String> = all
        .iter()
        .map(|r| r.as_ref().map(Resource::qualified_name).unwrap_or_default())
        .collect();
    assert_eq!(names, ["x/a", "y/b"]);
}

#[test]
fn empty_input_gives_nothing() {
    assert!(parse_documents("").is_empty());
    assert!(parse_documents("---\n# nothing\n---\n").is_empty());
    assert!(parse_documents("[]").is_empty());
}

#[test]
fn values_parse_and_print() {
    assert_eq!("tcp".parse::<Protocol>(), Ok(Protocol::Tcp));
    assert_eq!("ICMPv6".parse::<Protocol>(), Ok(Protocol::IcmpV6));
    assert_eq!("udplite".parse::<Protocol>().map(Protocol::number), Ok(136));
    assert_eq!("6".parse::<Protocol>(), Ok(Protocol::Number(6)));
    assert!(Protocol::Number(6).supports_ports());
    assert!(!Protocol::UdpLite.supports_ports());
    assert_eq!(Protocol::Sctp.to_string(), "SCTP");
    assert_eq!("80".parse::<Port>(), Ok(Port::Single(80)));
    assert_eq!(" 1 : 2 ".parse::<Port>(), Ok(Port::Range { lo: 1, hi: 2 }));
    assert_eq!("5:5".parse::<Port>().map(|p| p.range()), Ok(Some((5, 5))));
    assert_eq!(
        "http-alt".parse::<Port>(),
        Ok(Port::Named("http-alt".into()))
    );
    assert!("1:2:3".parse::<Port>().is_err());
    assert!("".parse::<Port>().is_err());
    assert_eq!("allow".parse::<Action>(), Ok(Action::Allow));
    assert_eq!(
        "10.0.0.1".parse::<Cidr>().map(|c| c.to_string()),
        Ok("10.0.0.1/32".into())
    );
    assert_eq!(
        "fd00::1".parse::<Cidr>().map(|c| c.to_string()),
        Ok("fd00::1/128".into())
    );
    assert_eq!(
        "10.0.0.1/24"
            .parse::<Cidr>()
            .map(|c| c.network().to_string()),
        Ok("10.0.0.0/24".into())
    );
    assert_eq!("64512".parse::<AsNumber>(), Ok(AsNumber(64512)));
    assert!(values::is_mac("ee:ee:ee:ee:ee:ee"));
    assert!(!values::is_mac("ee:ee:ee:ee:ee"));
    // In a resource, names take Calico's exact spelling (its validator refuses `allow`, `tcp`).
    for (doc, field) in [
        ("{action: allow}", "spec.ingress[0].action"),
        ("{action: Allow, protocol: tcp}", "spec.ingress[0].protocol"),
    ] {
        let text =
            format!("kind: NetworkPolicy\nmetadata: {{name: p}}\nspec: {{ingress: [{doc}]}}");
        let err = parse_documents(&text).remove(0).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains("case-sensitive"), "{err}");
    }
    let r = one(
        "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: \"6\"}]}",
    );
    assert_eq!(r.to_value()["spec"]["ingress"][0]["protocol"], 6);
}

#[test]
fn resource_serde_traits() {
    let r = one(NP);
    let json = serde_json::to_string(&r).expect("ser");
    let back: Resource = serde_json::from_str(&json).expect("de");
    assert_eq!(back, r);
    assert!(serde_json::from_str::<Resource>(r#"{"kind":"Nope"}"#).is_err());
}

#[test]
fn macs_parse_with_either_separator() {
    use super::values::parse_mac;
    assert_eq!(parse_mac("02:00:0a:FF:00:01"), Some([2, 0, 10, 255, 0, 1]));
    assert_eq!(parse_mac("02-00-0a-ff-00-01"), Some([2, 0, 10, 255, 0, 1]));
    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:01:02",
        "+2:00:00:00:00:01",
        "zz:00:00:00:00:01",
        "2:00:00:00:00:001",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad:?}");
    }
}
