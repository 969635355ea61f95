//! The renderer against kube-proxy's own expectations: `TestOverallIPTablesRules` in
//! pkg/proxy/iptables/proxier_test.go (Kubernetes 1.31/1.32), with its fake proxier's settings
//! (node `test-node`, cluster CIDR 10.0.0.0/8, mark 0x4000, no `--random-fully`, localhost
//! NodePorts and nfacct counters on). Its services svc1-svc4 and svc6 are rendered; the expected
//! dump is kube-proxy's minus what the renderer does not model (svc2's load balancer IP, and
//! svc5, a load balancer with source ranges and session affinity). Compared as kube-proxy's
//! test compares: the set of chains per table and each chain's rules in order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{Config, Endpoint, Protocol, Service, ServicePort, TrafficPolicy};
use super::render::restore_input;

const EXPECTED: &str = r#"*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3003 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"#;

/// Per table: the chains declared, and each chain's rules in order.
type Tables = BTreeMap<String, (BTreeSet<String>, BTreeMap<String, Vec<String>>)>;

fn tables(text: &str) -> Tables {
    let mut out = Tables::new();
    let mut table = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_owned();
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or_default();
            out.entry(table.clone())
                .or_default()
                .0
                .insert(name.to_owned());
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            out.entry(table.clone())
                .or_default()
                .1
                .entry(chain.to_owned())
                .or_default()
                .push(line.to_owned());
        }
    }
    out
}

fn port(node_port: Option<u16>) -> Vec<ServicePort> {
    vec![ServicePort {
        name: "p80".into(),
        protocol: Protocol::Tcp,
        port: 80,
        target_port: 80,
        node_port,
    }]
}

fn endpoint(ip: [u8; 4], node: &str) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::from(ip),
        node: node.into(),
        ready: true,
    }
}

fn service(n: u8, ports: Vec<ServicePort>, endpoints: Vec<Endpoint>) -> Service {
    Service {
        namespace: format!("ns{n}"),
        name: format!("svc{n}"),
        cluster_ip: Ipv4Addr::new(172, 30, 0, 40 + n),
        ports,
        external_traffic_policy: TrafficPolicy::Cluster,
        external_ips: vec![],
        health_check_node_port: None,
        endpoints,
    }
}

#[test]
fn overall_rules_match_kube_proxy() {
    let config = Config {
        node_name: "test-node".into(),
        cluster_cidr: "10.0.0.0/8".into(),
        masquerade_mark: "0x4000".into(),
        random_fully: false,
        localhost_nodeports: true,
        nfacct: true,
        conntrack_tcp_be_liberal: false,
    };
    let mut svc2 = service(2, port(Some(3001)), vec![endpoint([10, 180, 0, 2], "")]);
    svc2.external_traffic_policy = TrafficPolicy::Local;
    svc2.external_ips = vec![Ipv4Addr::new(192, 168, 99, 22)];
    svc2.health_check_node_port = Some(30000);
    let mut svc4 = service(
        4,
        port(None),
        vec![
            endpoint([10, 180, 0, 4], ""),
            endpoint([10, 180, 0, 5], "test-node"),
        ],
    );
    svc4.external_ips = vec![Ipv4Addr::new(192, 168, 99, 33)];
    let services = [
        service(1, port(None), vec![endpoint([10, 180, 0, 1], "")]),
        svc2,
        service(3, port(Some(3003)), vec![endpoint([10, 180, 0, 3], "")]),
        svc4,
        service(6, port(None), vec![]),
    ];
    let got = restore_input(&config, &services);
    assert_eq!(tables(&got), tables(EXPECTED), "rendered:\n{got}");
}

/// Local policy with a local endpoint: a `KUBE-SVL-` chain with only it, the EXT chain's
/// fall-through to it, no DROP; a not-ready endpoint is skipped; three endpoints take
/// probabilities 1/3 and 1/2.
#[test]
fn local_policy_and_probabilities() {
    let config = Config::for_node("node-a", "192.168.0.0/16");
    let mut svc = service(
        1,
        port(Some(30080)),
        vec![
            endpoint([192, 168, 0, 3], "node-b"),
            endpoint([192, 168, 0, 1], "node-a"),
            endpoint([192, 168, 0, 2], "node-b"),
            Endpoint {
                ready: false,
                ..endpoint([192, 168, 0, 9], "node-a")
            },
        ],
    );
    svc.external_traffic_policy = TrafficPolicy::Local;
    let text = restore_input(&config, &[svc]);
    let svc_chain = super::chains::cluster_policy("ns1/svc1:p80", "tcp");
    let svl_chain = super::chains::local_policy("ns1/svc1:p80", "tcp");
    let ext_chain = super::chains::external("ns1/svc1:p80", "tcp");
    let nat = &tables(&text)["nat"];
    let svc_rules = &nat.1[&svc_chain];
    assert_eq!(svc_rules.len(), 4, "{svc_rules:#?}");
    assert!(
        svc_rules[1]
            .contains("192.168.0.1:80\" -m statistic --mode random --probability 0.3333333333")
    );
    assert!(svc_rules[2].contains("--probability 0.5000000000"));
    assert!(!svc_rules[3].contains("statistic"));
    assert_eq!(nat.1[&svl_chain].len(), 1);
    assert!(nat.1[&svl_chain][0].contains("192.168.0.1:80"));
    assert_eq!(
        nat.1[&ext_chain].last().map(String::as_str),
        Some(format!("-A {ext_chain} -j {svl_chain}").as_str())
    );
    assert!(!text.contains("192.168.0.9"));
    assert!(!text.contains("has no local endpoints"));
    assert!(text.contains("-j MASQUERADE --random-fully"));
    assert!(text.contains("--or-mark 0x00004000"));
    assert!(text.contains("--dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"));
}
