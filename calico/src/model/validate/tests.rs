//! Calico's accept/refuse outcomes, ported from libcalico-go v3.32.1
//! `lib/validator/v3/validator_test.go` (the quoted entry names are its own) and from the
//! client and CRD rules the module docs name. Each refusal names the field it expects.

use crate::model::{Resource, document::parse_documents};

use super::{endpoint, ippool};

/// Parses one YAML document: `Ok` when accepted, `Err((field, message))` when refused.
fn outcome(doc: &str) -> Result<Resource, (String, String)> {
    let mut all = parse_documents(doc);
    assert_eq!(all.len(), 1, "{doc}");
    all.remove(0).map_err(|e| (e.field.clone(), e.to_string()))
}

fn wep(spec: &str) -> String {
    format!(
        "kind: WorkloadEndpoint\nmetadata: {{name: n-k8s-p-eth0, namespace: ns}}\nspec: {{node: n, orchestrator: k8s, pod: p, endpoint: eth0, {spec}}}"
    )
}

fn rule(rule: &str) -> String {
    format!("kind: GlobalNetworkPolicy\nmetadata: {{name: thing}}\nspec: {{ingress: [{rule}]}}")
}

fn pool(spec: &str) -> String {
    format!("kind: IPPool\nmetadata: {{name: pool.name}}\nspec: {{{spec}}}")
}

fn tier(name: &str, spec: &str) -> String {
    format!("kind: Tier\nmetadata: {{name: {name}}}\nspec: {{{spec}}}")
}

/// (Calico's entry, document, `None` if calicoctl accepts it, else the refused field).
fn cases() -> Vec<(&'static str, String, Option<&'static str>)> {
    let n63 = "a".repeat(63);
    let n253 = "a".repeat(253);
    let v64 = "v".repeat(64);
    vec![
        // Actions, protocols and modes: Calico's regexes are case-sensitive.
        ("should accept allow action", rule("{action: Allow}"), None),
        ("should reject unknown action", rule("{action: allow}"), Some("spec.ingress[0].action")),
        ("should reject unknown action (allowfoo)", rule("{action: allowfoo}"), Some("spec.ingress[0].action")),
        ("should accept protocol UDPLite", rule("{action: Allow, protocol: UDPLite}"), None),
        ("should accept protocol 255 as string", rule("{action: Allow, protocol: '255'}"), None),
        ("should reject protocol tcp", rule("{action: Allow, protocol: tcp}"), Some("spec.ingress[0].protocol")),
        ("should reject protocol 0 as int", rule("{action: Allow, protocol: 0}"), Some("spec.ingress[0].protocol")),
        ("should reject protocol 256 as string", rule("{action: Allow, protocol: '256'}"), Some("spec.ingress[0].protocol")),
        ("should reject IPIP mode never (lower case)", pool("cidr: 1.2.3.0/24, ipipMode: never"), Some("spec.ipipMode")),
        ("should reject VXLAN mode never", pool("cidr: 1.2.3.0/24, vxlanMode: never"), Some("spec.vxlanMode")),
        ("should reject random ProtoPort.Protocol (tcp)", "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {failsafeInboundHostPorts: [{protocol: tcp, port: 22}]}".into(), Some("spec.failsafeInboundHostPorts[0].protocol")),
        ("should not accept invalid log severity", "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: info}".into(), Some("spec.logSeverityScreen")),
        ("should accept valid log severity", "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Warning, bpfLogLevel: Off}".into(), None),
        // ICMP.
        ("should accept ICMP with type with max value", rule("{action: Allow, protocol: ICMP, icmp: {type: 254, code: 255}}"), None),
        ("should reject ICMP with type too high", rule("{action: Allow, protocol: ICMP, icmp: {type: 255}}"), Some("spec.ingress[0].icmp.type")),
        ("should reject ICMP with code too high", rule("{action: Allow, protocol: ICMP, icmp: {type: 128, code: 256}}"), Some("spec.ingress[0].icmp.code")),
        ("should reject ICMP with code and no type", rule("{action: Allow, protocol: ICMP, icmp: {code: 0}}"), Some("spec.ingress[0].icmp.code")),
        ("should reject Rule with icmp fields and no protocol", rule("{action: Allow, icmp: {type: 3}}"), Some("spec.ingress[0].icmp")),
        ("should reject Rule with mismatched ipversion for icmp", rule("{action: Allow, protocol: ICMP, ipVersion: 6}"), Some("spec.ingress[0].protocol")),
        ("should reject Rule with mismatched ipversion for icmpv6", rule("{action: Allow, protocol: ICMPv6, ipVersion: 4}"), Some("spec.ingress[0].protocol")),
        ("(notProtocol) must set ipversion to '4' with protocol icmp", rule("{action: Allow, notProtocol: ICMP, ipVersion: 6}"), Some("spec.ingress[0].ipVersion")),
        ("should allow Rule with correct ipversion for icmpv6", rule("{action: Allow, protocol: ICMPv6, ipVersion: 6, icmp: {type: 128}}"), None),
        // Ports.
        ("should accept Rule with dest ports and protocol type tcp", rule("{action: Allow, protocol: TCP, destination: {ports: [80, '1:10', http]}}"), None),
        ("should reject Rule with dest ports and no protocol", rule("{action: Allow, destination: {ports: [80]}}"), Some("spec.ingress[0].destination.ports")),
        ("should reject Rule with source ports and protocol type 7", rule("{action: Allow, protocol: 7, source: {ports: [1]}}"), Some("spec.ingress[0].source.ports")),
        ("should reject Rule with invalid port (port 0)", rule("{action: Allow, protocol: TCP, destination: {ports: [0]}}"), Some("spec.ingress[0].destination.ports[0]")),
        ("should reject Rule with one invalid port in the port range (MinPort 0)", rule("{action: Allow, protocol: TCP, destination: {ports: ['0:10']}}"), Some("spec.ingress[0].destination.ports[0]")),
        ("port range invalid (min > max)", rule("{action: Allow, protocol: TCP, destination: {ports: ['10:1']}}"), Some("spec.ingress[0].destination.ports[0]")),
        // Nets and IP versions.
        ("should reject rule mixed IPv4 (src) and IPv6 (dest)", rule("{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ['fd00::/64']}}"), Some("spec.ingress[0].destination.nets[0]")),
        ("net list: should reject rule mixed IPv6 (src) and IPv4 (dest)", rule("{action: Allow, source: {notNets: ['fd00::/64']}, destination: {notNets: [10.0.0.0/8]}}"), Some("spec.ingress[0].destination.notNets[0]")),
        ("should reject rule mixed IPVersion and Source Net IP version", rule("{action: Allow, ipVersion: 6, source: {nets: [10.0.0.0/8]}}"), Some("spec.ingress[0].source.nets[0]")),
        ("catch-all CIDR in negation (v4)", rule("{action: Allow, source: {notNets: [0.0.0.0/0]}}"), Some("spec.ingress[0].source.notNets[0]")),
        ("catch-all CIDR in negation (v6)", rule("{action: Allow, destination: {notNets: ['::/0']}}"), Some("spec.ingress[0].destination.notNets[0]")),
        ("catch-all CIDR in nets is fine", rule("{action: Allow, destination: {nets: [0.0.0.0/0]}}"), None),
        ("net: not strictly masked", rule("{action: Allow, source: {nets: [10.0.0.1/8]}}"), Some("spec.ingress[0].source.nets[0]")),
        // global().
        ("disallow global() in EntityRule selector field", rule("{action: Allow, source: {selector: 'global()'}}"), Some("spec.ingress[0].source.selector")),
        ("allow global() and projectcalico.org/name in EntityRule namespaceSelector field", rule("{action: Allow, source: {namespaceSelector: 'global()'}, destination: {namespaceSelector: \"projectcalico.org/name == 'test'\"}}"), None),
        ("global() cannot be combined with other selectors", rule("{action: Allow, source: {namespaceSelector: 'global() && has(a)'}}"), Some("spec.ingress[0].source.namespaceSelector")),
        ("disallow global() in selector field", "kind: GlobalNetworkPolicy\nmetadata: {name: thing}\nspec: {selector: 'global()'}".into(), Some("spec.selector")),
        ("disallow global() in namespaceSelector field", "kind: GlobalNetworkPolicy\nmetadata: {name: thing}\nspec: {namespaceSelector: 'global()'}".into(), Some("spec.namespaceSelector")),
        ("disallow global() in serviceAccountSelector field", "kind: NetworkPolicy\nmetadata: {name: thing}\nspec: {serviceAccountSelector: 'global()'}".into(), Some("spec.serviceAccountSelector")),
        ("should reject invalid selector", rule("{action: Allow, source: {selector: 'thing=hello &'}}"), Some("spec.ingress[0].source.selector")),
        // Rule annotations.
        ("should reject Rule with invalid annotations", rule("{action: Allow, metadata: {annotations: {'a$b': x}}}"), Some("spec.ingress[0].metadata.annotations.a$b")),
        // Policies.
        ("allow valid name", "kind: NetworkPolicy\nmetadata: {name: thing}".into(), None),
        ("allow name with single dot - tier", "kind: NetworkPolicy\nmetadata: {name: th.ing}".into(), None),
        ("disallow name with multiple dot", "kind: NetworkPolicy\nmetadata: {name: t.h.i.ng}".into(), Some("metadata.name")),
        ("disallow name with mixed case", "kind: NetworkPolicy\nmetadata: {name: tHiNg}".into(), Some("metadata.name")),
        ("allow valid name of 253 chars", format!("kind: NetworkPolicy\nmetadata: {{name: {n253}}}"), None),
        ("disallow a name of 254 chars", format!("kind: NetworkPolicy\nmetadata: {{name: a{n253}}}"), Some("metadata.name")),
        ("allow k8s policy name", "kind: NetworkPolicy\nmetadata: {name: knp.default.thing}".into(), None),
        ("allow k8s policy name (kube-controllers, dotted)", "kind: NetworkPolicy\nmetadata: {name: knp.default.allow.from-ns}".into(), None),
        ("disallow name with invalid character", "kind: GlobalNetworkPolicy\nmetadata: {name: 't~!s.h.i.ng'}".into(), Some("metadata.name")),
        ("GlobalNetworkPolicy: knp.default. is not a GNP name", "kind: GlobalNetworkPolicy\nmetadata: {name: knp.default.thing}".into(), Some("metadata.name")),
        ("disallow egress Types with pre-DNAT (gnp)", "kind: GlobalNetworkPolicy\nmetadata: {name: thing}\nspec: {preDNAT: true, applyOnForward: true, types: [Ingress, Egress]}".into(), Some("spec.types")),
        ("NetworkPolicy: disallow junk in PerformanceHints field", "kind: NetworkPolicy\nmetadata: {name: thing}\nspec: {performanceHints: [Junk]}".into(), Some("spec.performanceHints[0]")),
        ("NetworkPolicy: disallow dupes in PerformanceHints field", "kind: NetworkPolicy\nmetadata: {name: thing}\nspec: {performanceHints: [AssumeNeededOnEveryNode, AssumeNeededOnEveryNode]}".into(), Some("spec.performanceHints[1]")),
        ("GlobalNetworkPolicy: allow PerfHintAssumeNeededOnEveryNode", "kind: GlobalNetworkPolicy\nmetadata: {name: thing}\nspec: {performanceHints: [AssumeNeededOnEveryNode]}".into(), None),
        ("tier: name validator", "kind: NetworkPolicy\nmetadata: {name: thing}\nspec: {tier: Bad_Tier}".into(), Some("spec.tier")),
        // Tiers.
        ("Tier: valid name with dash", tier("valid-tier", ""), None),
        ("Tier: disallow dot in name", tier("a.b", ""), Some("metadata.name")),
        ("Tier: allow valid name of 63 chars", tier(&n63, ""), None),
        ("Tier: disallow a name of 64 chars", tier(&format!("a{n63}"), ""), Some("metadata.name")),
        ("Tier: disallow other chars", tier("t~!s", ""), Some("metadata.name")),
        ("Tier: disallow default tier with an invalid order", tier("default", "order: 100, defaultAction: Deny"), Some("spec.order")),
        ("Tier: disallow default tier with an invalid default action", tier("default", "order: 1000000, defaultAction: Pass"), Some("spec.defaultAction")),
        ("Tier: allow default tier with the predefined order and default action", tier("default", "order: 1000000, defaultAction: Deny"), None),
        ("default tier: absent defaultAction defaults to Deny", tier("default", "order: 1000000"), None),
        ("default tier: absent order defaults to 1000000 (DefaultTierFields)", tier("default", ""), None),
        ("kube-admin: absent order defaults to 1000000", tier("kube-admin", "defaultAction: Pass"), Some("spec.order")),
        ("Tier: disallow kube-admin tier with an invalid order", tier("kube-admin", "order: 100, defaultAction: Pass"), Some("spec.order")),
        ("should reject kube-admin with wrong default action", tier("kube-admin", "order: 1000, defaultAction: Deny"), Some("spec.defaultAction")),
        ("kube-admin: absent defaultAction defaults to Deny", tier("kube-admin", "order: 1000"), Some("spec.defaultAction")),
        ("should accept kube-admin with correct default action", tier("kube-admin", "order: 1000, defaultAction: Pass"), None),
        ("should reject kube-baseline with wrong default action", tier("kube-baseline", "order: 10000000, defaultAction: Deny"), Some("spec.defaultAction")),
        ("Tier: allow kube-baseline tier with the predefined order and default action", tier("kube-baseline", "order: 10000000, defaultAction: Pass"), None),
        // IP pools.
        ("should accept IP pool with IPv4 CIDR /10", pool("cidr: 10.0.0.0/10"), None),
        ("should accept a disabled IP pool with IPv4 CIDR /27", pool("cidr: 1.2.3.0/27, disabled: true"), None),
        ("should reject IP pool with IPv4 CIDR /27", pool("cidr: 1.2.3.0/27"), Some("spec.cidr")),
        ("should reject IPv4 pool with a CIDR range overlapping with Link Local range", pool("cidr: 169.254.5.0/24, blockSize: 26"), Some("spec.cidr")),
        ("should reject IPv6 pool with a CIDR range overlapping with Link Local range", pool("cidr: 'fe80::/120', blockSize: 122"), Some("spec.cidr")),
        ("should reject IPIPMode 'Always' for IPv6 pool", pool("cidr: 'fd00::/64', ipipMode: Always"), Some("spec.ipipMode")),
        ("should reject IPIP mode and VXLAN mode", pool("cidr: 1.2.3.0/24, ipipMode: Always, vxlanMode: Always"), Some("spec.vxlanMode")),
        ("should accept IP pool with valid allowed uses", pool("cidr: 1.2.3.0/24, allowedUses: [Workload, Tunnel]"), None),
        ("should reject IP pool with invalid allowed uses combination", pool("cidr: 1.2.3.0/24, allowedUses: [LoadBalancer, Workload]"), Some("spec.allowedUses")),
        ("should reject IP pool with invalid allowed uses", pool("cidr: 1.2.3.0/24, allowedUses: [Wrong]"), Some("spec.allowedUses[0]")),
        ("should accept IP pool with valid AssignmentMode", pool("cidr: 1.2.3.0/24, assignmentMode: Manual"), None),
        ("should reject IP pool with invalid assignment mode", pool("cidr: 1.2.3.0/24, assignmentMode: manual"), Some("spec.assignmentMode")),
        ("should reject IP pool with LoadBlancer and disableBGPExport true", pool("cidr: 1.2.3.0/24, allowedUses: [LoadBalancer], disableBGPExport: true"), Some("spec.disableBGPExport")),
        ("should reject IP pool with LoadBlancer and VXLAN mode enabled", pool("cidr: 1.2.3.0/24, allowedUses: [LoadBalancer], vxlanMode: Always"), Some("spec.ipipMode")),
        ("should reject IP pool with LoadBlancer and IPIP mode enabled", pool("cidr: 1.2.3.0/24, allowedUses: [LoadBalancer], ipipMode: CrossSubnet"), Some("spec.ipipMode")),
        ("should reject IP pool with LoadBlancer and nodeSelector other than all()", pool("cidr: 1.2.3.0/24, allowedUses: [LoadBalancer], nodeSelector: '!all()'"), Some("spec.nodeSelector")),
        ("LoadBalancer pool with the defaults", pool("cidr: 1.2.3.0/24, allowedUses: [LoadBalancer], nodeSelector: all()"), None),
        ("should reject IP pool with invalid nodeSelector (global)", pool("cidr: 1.2.3.0/24, nodeSelector: 'global()'"), Some("spec.nodeSelector")),
        ("should accept IP pool with set-based nodeSelector", pool("cidr: 1.2.3.0/24, nodeSelector: \"zone in {'a', 'b'}\""), None),
        // Metadata.
        ("should accept a valid labelsToApply", format!("kind: Profile\nmetadata: {{name: p}}\nspec: {{labelsToApply: {{project.calico.org/my-valid-label: {}}}}}", "v".repeat(63)), None),
        ("should reject an excessively long value in labelsToApply", format!("kind: Profile\nmetadata: {{name: p}}\nspec: {{labelsToApply: {{a: {v64}}}}}"), Some("spec.labelsToApply.a")),
        ("should reject . at start of key in a labelsToApply", "kind: Profile\nmetadata: {name: p}\nspec: {labelsToApply: {.mylabel: value}}".into(), Some("spec.labelsToApply..mylabel")),
        ("should reject ! in a labelsToApply", "kind: Profile\nmetadata: {name: p}\nspec: {labelsToApply: {'my!nvalid-label': value}}".into(), Some("spec.labelsToApply.my!nvalid-label")),
        ("should reject invalid labels in metadata (uppercase domain)", "kind: GlobalNetworkSet\nmetadata: {name: s, labels: {Calico.org/x: y}}".into(), Some("metadata.labels.Calico.org/x")),
        ("should accept valid labels in metadata (uppercase name)", "kind: GlobalNetworkSet\nmetadata: {name: s, labels: {calico.org/X: y}}".into(), None),
        ("should accept valid annotations in metadata (uppercase domain and name)", "kind: GlobalNetworkSet\nmetadata: {name: s, annotations: {Calico.org/X: 'any value: even this'}}".into(), None),
        ("should reject invalid annotations in metadata", "kind: GlobalNetworkSet\nmetadata: {name: s, annotations: {'a/b/c': x}}".into(), Some("metadata.annotations.a/b/c")),
        ("should disallow annotations in metadata > 256k", format!("kind: GlobalNetworkSet\nmetadata: {{name: s, annotations: {{a: {}}}}}", "x".repeat(256 * 1024)), Some("metadata.annotations")),
        ("should allow annotations in metadata <= 256k", format!("kind: GlobalNetworkSet\nmetadata: {{name: s, annotations: {{a: {}}}}}", "x".repeat(256 * 1024 - 1)), None),
        ("should reject GlobalNetworkSet with bad name", "kind: GlobalNetworkSet\nmetadata: {name: test$set}".into(), Some("metadata.name")),
        ("should reject GlobalNetworkSet with reserved labels", "kind: GlobalNetworkSet\nmetadata: {name: s, labels: {projectcalico.org/namespace: foo}}\nspec: {nets: [10.0.0.1/8]}".into(), Some("metadata.labels.projectcalico.org/namespace")),
        ("should accept GlobalNetworkSetSpec with CIDRs and IPs", "kind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [10.0.0.1, 10.0.0.1/8, 'fd00::/64']}".into(), None),
        ("names are lower case (Node)", "kind: Node\nmetadata: {name: Node1}".into(), Some("metadata.name")),
        // Endpoints.
        ("should accept a valid interface", wep("interfaceName: Valid_Iface.0-9"), None),
        ("should reject an interface that is too long", wep("interfaceName: interfaceTooLong"), Some("spec.interfaceName")),
        ("should reject & in an interface", wep("interfaceName: Invalid&Intface"), Some("spec.interfaceName")),
        ("interface (no omitempty): an endpoint needs one", wep("mac: 'ee:ee:ee:ee:ee:ee'"), Some("spec.interfaceName")),
        ("should accept workload endpoint with mixed-case ContainerID", wep("interfaceName: cali0, containerID: AbCd12"), None),
        ("should reject workload endpoint containerID that starts with a dash", wep("interfaceName: cali0, containerID: -abc"), Some("spec.containerID")),
        ("should reject workload endpoint containerID that contains a period", wep("interfaceName: cali0, containerID: a.b"), Some("spec.containerID")),
        ("IP network contains multiple addresses", wep("interfaceName: cali0, ipNetworks: [10.0.0.0/24]"), Some("spec.ipNetworks[0]")),
        ("invalid IPv4 gateway address specified", wep("interfaceName: cali0, ipv4Gateway: 'fd00::1'"), Some("spec.ipv4Gateway")),
        ("should reject IPNAT mixed IPv4 (int) and IPv6 (ext)", wep("interfaceName: cali0, ipNetworks: [10.0.0.1/32], ipNATs: [{internalIP: 10.0.0.1, externalIP: 'fd00::1'}]"), Some("spec.ipNATs[0]")),
        ("NAT is not in the endpoint networks", wep("interfaceName: cali0, ipNetworks: [10.0.0.1/32], ipNATs: [{internalIP: 10.0.0.2, externalIP: 1.1.1.1}]"), Some("spec.ipNATs[0].internalIP")),
        ("profiles: name validator", wep("interfaceName: cali0, profiles: [Kns.default]"), Some("spec.profiles[0]")),
        ("should accept host endpoint with interfaceName *", "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n, interfaceName: '*'}".into(), None),
        ("should accept host endpoint with prefixed profile name", "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n, interfaceName: eth0, profiles: [knp.default.fun, knp.default.funner.11234-a]}".into(), None),
        ("should reject host endpoint with no prefix and dots at the start of the name", "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n, interfaceName: eth0, profiles: [.fun]}".into(), Some("spec.profiles[0]")),
        ("should reject host endpoint with blank interface an no IPs", "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n}".into(), Some("spec")),
        ("should reject : in an interface (host endpoint)", "kind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n, interfaceName: 'eth:0'}".into(), Some("spec.interfaceName")),
        // Nodes.
        ("should reject node with an empty BGP", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {}}".into(), Some("spec.bgp")),
        ("should accept node with tunnel IP in BGP", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4IPIPTunnelAddr: 10.0.0.1}}".into(), None),
        ("ipv4 tag on the IPIP tunnel address", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4IPIPTunnelAddr: 'fd00::1'}}".into(), Some("spec.bgp.ipv4IPIPTunnelAddr")),
    ]
}

#[test]
fn calicoctl_accepts_and_refuses_the_same() {
    let mut wrong = Vec::new();
    for (entry, doc, refused) in cases() {
        match (outcome(&doc), refused) {
            (Ok(_), None) => {}
            (Err((field, _)), Some(want)) if field == want => {}
            (got, want) => wrong.push(format!(
                "{entry}: want {want:?}, got {:?}",
                got.map(|r| r.qualified_name())
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn refusals_say_what_is_wanted() {
    for (doc, words) in [
        (
            rule("{action: Allow, source: {notNets: [0.0.0.0/0]}}"),
            "catch-all",
        ),
        (
            rule("{action: Allow, source: {nets: [10.0.0.1/8]}}"),
            "10.0.0.0/8",
        ),
        (
            rule("{action: Allow, protocol: tcp}"),
            "must be spelled TCP",
        ),
        (tier("default", "order: 5"), "order must be 1000000"),
        (tier("kube-admin", "order: 1000"), "defaultAction Pass"),
        (
            pool("cidr: 169.254.0.0/16"),
            "link-local range 169.254.0.0/16",
        ),
        (wep("interfaceName: 'eth#0'"), "1-15 characters"),
        (
            "kind: NetworkPolicy\nmetadata: {name: a.b.c}".into(),
            "knp.default.<name>",
        ),
    ] {
        let (_, msg) = outcome(&doc).unwrap_err();
        assert!(msg.contains(words), "{msg:?} lacks {words:?}");
    }
}

#[test]
fn read_from_etcd_under_the_same_rules() {
    let key = "/calico/resources/v3/projectcalico.org/tiers/kube-admin";
    let bad = br#"{"kind":"Tier","metadata":{"name":"kube-admin"},"spec":{"order":1000,"defaultAction":"Deny"}}"#;
    let err = Resource::from_etcd(key, bad).unwrap_err();
    assert_eq!(err.field, "spec.defaultAction");
    let good = br#"{"kind":"Tier","metadata":{"name":"kube-admin"},"spec":{"order":1000,"defaultAction":"Pass"}}"#;
    assert!(Resource::from_etcd(key, good).is_ok());
}

#[test]
fn workload_endpoint_names_follow_the_identifiers() {
    let Ok(Resource::WorkloadEndpoint(o)) = outcome(&wep(
        "interfaceName: cali0, node: my-node, pod: web-1, containerID: abc",
    )) else {
        panic!("accepted")
    };
    let mut spec = o.spec;
    assert_eq!(
        endpoint::expected_workload_endpoint_name(&spec).as_deref(),
        Ok("my--node-k8s-web--1-eth0")
    );
    assert!(endpoint::check_workload_endpoint_name("my--node-k8s-web--1-eth0", &spec).is_ok());
    let err = endpoint::check_workload_endpoint_name("n-k8s-p-eth0", &spec).unwrap_err();
    assert_eq!(err.field, "metadata.name");
    spec.orchestrator = "cni".into();
    assert_eq!(
        endpoint::expected_workload_endpoint_name(&spec).as_deref(),
        Ok("my--node-cni-abc-eth0")
    );
    spec.endpoint = "-eth0".into();
    let err = endpoint::expected_workload_endpoint_name(&spec).unwrap_err();
    assert_eq!(err.field, "spec.endpoint");
    spec.node.clear();
    let err = endpoint::expected_workload_endpoint_name(&spec).unwrap_err();
    assert_eq!(err.field, "spec.node");
}

#[test]
fn overlapping_pools_are_found() {
    let spec = |cidr: &str| match outcome(&pool(&format!("cidr: {cidr}"))) {
        Ok(Resource::IpPool(o)) => o.spec,
        other => panic!("{other:?}"),
    };
    let (a, b, c) = (
        spec("10.0.0.0/16"),
        spec("10.0.128.0/24"),
        spec("10.1.0.0/16"),
    );
    let others = [("a", &a), ("b", &b), ("c", &c)];
    assert_eq!(
        ippool::overlapping_pool("new", &spec("10.0.0.0/8"), others),
        Some("a")
    );
    assert_eq!(
        ippool::overlapping_pool("b", &b, [("b", &b), ("c", &c)]),
        None
    );
    assert_eq!(
        ippool::overlapping_pool("new", &spec("10.2.0.0/16"), others),
        None
    );
}

#[test]
fn network_set_rules_for_either_kind() {
    let labels = |k: &str| [(k.to_string(), "x".to_string())].into_iter().collect();
    let err = super::network_set::check(&labels("projectcalico.org/namespace"), &[]).unwrap_err();
    assert_eq!(err.field, "metadata.labels.projectcalico.org/namespace");
    assert!(super::network_set::check(&labels("role"), &[]).is_ok());
}
