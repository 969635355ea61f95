//! `felix-cni` driven exactly as a container runtime drives it (`CNI_*` variables, the network
//! configuration on stdin, the result or error JSON on stdout, the exit status), in network
//! namespaces of the test's own: a host namespace with a real etcd and pod namespaces beside
//! it (see `support`). Needs root and the `etcd` binary (`cargo xtask setup`); built only with
//! `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod support;

use std::net::Ipv4Addr;

use calico::ipam::{self, Block};
use etcd_client::{Client, GetOptions};
use felix_cni::names;
use serde_json::{Value, json};

use support::{Node, api::ApiServer, ip_json};

const NETWORK: &str = "k8s-pod-network";
const NODE: &str = "node-1";
const POOLS: &str = "/calico/resources/v3/projectcalico.org/ippools/";
const WEPS: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/";

fn config(extra: Value) -> String {
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "felix-cni",
        "etcd_endpoints": support::ETCD_URL,
        "nodename": NODE,
        "ipam": {"type": "felix-ipam"}
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        conf[k] = v;
    }
    conf.to_string()
}

async fn put_pool(client: &mut Client, name: &str, cidr: &str, block_size: u8) {
    let pool = json!({
        "apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
        "spec": {"cidr": cidr, "blockSize": block_size, "ipipMode": "Always",
                 "nodeSelector": "all()"}
    });
    client
        .put(format!("{POOLS}{name}"), pool.to_string(), None)
        .await
        .expect("put the pool");
}

/// A pod as the runtime names it: its namespace path, container id and `CNI_ARGS`.
struct Pod {
    name: String,
    netns: String,
    container: String,
    args: String,
}

impl Pod {
    fn new(node: &Node, name: &str, container: &str) -> Self {
        let ns = node.add_pod_ns(name);
        Pod {
            name: name.into(),
            netns: format!("/run/netns/{ns}"),
            container: container.into(),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name};\
                 K8S_POD_INFRA_CONTAINER_ID={container}"
            ),
        }
    }

    fn ns(&self) -> &str {
        self.netns.trim_start_matches("/run/netns/")
    }

    fn vars<'a>(&'a self, command: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", self.container.as_str()),
            ("CNI_NETNS", self.netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", self.args.as_str()),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    }

    fn host_veth(&self) -> String {
        names::host_veth_name("default", &self.name)
    }

    fn handle(&self) -> String {
        names::handle_id(NETWORK, &self.container)
    }

    fn wep_key(&self) -> String {
        format!(
            "{WEPS}default/{}",
            names::wep_name(NODE, &self.name, "eth0")
        )
    }
}

async fn blocks(client: &mut Client) -> Vec<Block> {
    ipam::all_blocks(client).await.expect("read the blocks")
}

async fn addresses_of(client: &mut Client, handle: &str) -> Vec<Ipv4Addr> {
    blocks(client)
        .await
        .iter()
        .flat_map(|b| b.addresses_of(handle))
        .collect()
}

async fn get_json(client: &mut Client, key: &str) -> Option<Value> {
    let response = client.get(key, None).await.expect("get");
    response
        .kvs()
        .first()
        .map(|kv| serde_json::from_slice(kv.value()).expect("a JSON value"))
}

async fn count(client: &mut Client, prefix: &str) -> i64 {
    client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count keys")
        .count()
}

/// Links of a namespace (the test thread's own when `ns` is None), by name.
fn links(ns: Option<&str>) -> Vec<String> {
    let mut args = vec![];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["link", "show"]);
    ip_json(&args)
        .as_array()
        .expect("ip -j link: a list")
        .iter()
        .map(|l| l["ifname"].as_str().expect("a link has ifname").to_string())
        .collect()
}

/// The pod side is wired as Calico wires it.
fn assert_pod_wired(pod: &Pod, ip: Ipv4Addr, mtu: u64) -> String {
    let link = &ip_json(&["-4", "-n", pod.ns(), "addr", "show", "dev", "eth0"])[0];
    assert_eq!(link["mtu"], mtu, "{link}");
    assert!(
        link["flags"]
            .as_array()
            .expect("link flags")
            .contains(&json!("UP")),
        "{link}"
    );
    let addrs: Vec<(String, u64)> = link["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .map(|a| {
            (
                a["local"].as_str().expect("local").to_string(),
                a["prefixlen"].as_u64().expect("prefixlen"),
            )
        })
        .collect();
    assert_eq!(addrs, [(ip.to_string(), 32)]);
    let routes = ip_json(&["-n", pod.ns(), "route", "show"]);
    let routes = routes.as_array().expect("ip -j route: a list");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1" && r["dev"] == "eth0"),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["dev"] == "eth0" && r["scope"] == "link"),
        "{routes:?}"
    );
    let neigh = ip_json(&["-n", pod.ns(), "neigh", "show", "169.254.1.1"]);
    assert_eq!(neigh[0]["lladdr"], "ee:ee:ee:ee:ee:ee", "{neigh}");
    assert!(
        neigh[0]["state"]
            .as_array()
            .expect("neighbour state")
            .contains(&json!("PERMANENT")),
        "{neigh}"
    );
    ip_json(&["-n", pod.ns(), "link", "show", "dev", "eth0"])[0]["address"]
        .as_str()
        .expect("the pod's MAC")
        .to_string()
}

#[test]
fn add_check_del_as_a_runtime_does() {
    support::run("life", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "default-ipv4-ippool", "192.168.0.0/16", 26).await;
        let pod = Pod::new(&node, "web-1", "c0ffee01");
        let conf = config(json!({
            "mtu": 1450,
            "dns": {"nameservers": ["10.96.0.10"]},
            "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}}
        }));

        let result = node.cni(&pod.vars("ADD"), &conf).ok();
        let ip = Ipv4Addr::new(192, 168, 0, 0);
        let mac = assert_pod_wired(&pod, ip, 1450);
        assert_eq!(
            result,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": pod.host_veth(), "mac": "ee:ee:ee:ee:ee:ee"},
                    {"name": "eth0", "mac": mac, "sandbox": pod.netns}
                ],
                "ips": [{"address": "192.168.0.0/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {"nameservers": ["10.96.0.10"]}
            })
        );
        let host = &ip_json(&["link", "show", "dev", &pod.host_veth()])[0];
        assert_eq!(host["address"], "ee:ee:ee:ee:ee:ee");
        assert_eq!(host["mtu"], 1450);
        assert!(
            host["flags"].as_array().unwrap().contains(&json!("UP")),
            "{host}"
        );

        let wep = get_json(&mut etcd, &pod.wep_key())
            .await
            .expect("the WorkloadEndpoint");
        assert_eq!(wep["metadata"]["name"], "node--1-k8s-web--1-eth0");
        assert_eq!(
            wep["metadata"]["labels"]["projectcalico.org/namespace"],
            "default"
        );
        assert_eq!(
            wep["metadata"]["labels"]["projectcalico.org/orchestrator"],
            "k8s"
        );
        assert_eq!(wep["metadata"]["labels"]["app"], "web");
        let spec = &wep["spec"];
        assert_eq!(spec["node"], NODE);
        assert_eq!(spec["pod"], "web-1");
        assert_eq!(spec["endpoint"], "eth0");
        assert_eq!(spec["containerID"], pod.container);
        assert_eq!(spec["ipNetworks"], json!(["192.168.0.0/32"]));
        assert_eq!(spec["profiles"], json!(["kns.default"]));
        assert_eq!(spec["interfaceName"], pod.host_veth());
        assert_eq!(spec["mac"], mac);

        let all = blocks(&mut etcd).await;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].cidr.to_string(), "192.168.0.0/26");
        assert_eq!(all[0].host(), Some(NODE));
        assert_eq!(all[0].addresses_of(&pod.handle()), [ip]);
        assert!(
            get_json(&mut etcd, &ipam::affinity_key(NODE, all[0].cidr))
                .await
                .is_some(),
            "the node's affinity to its block"
        );
        assert!(
            get_json(&mut etcd, &ipam::handle_key(&pod.handle()))
                .await
                .is_some()
        );

        let check = node.cni(
            &pod.vars("CHECK"),
            &config(json!({"mtu": 1450, "prevResult": result})),
        );
        assert_eq!(check.ok(), Value::Null, "CHECK prints nothing on success");

        // A retried ADD (the runtime timed out) gets the same address and wiring.
        let again = node.cni(&pod.vars("ADD"), &conf).ok();
        assert_eq!(again["ips"], result["ips"]);
        assert_pod_wired(&pod, ip, 1450);
        assert_eq!(addresses_of(&mut etcd, &pod.handle()).await, [ip]);

        assert_eq!(node.cni(&pod.vars("DEL"), &conf).ok(), Value::Null);
        assert_eq!(links(Some(pod.ns())), ["lo"], "the pod keeps only lo");
        assert!(!links(None).contains(&pod.host_veth()), "host veth gone");
        assert_eq!(get_json(&mut etcd, &pod.wep_key()).await, None);
        assert!(addresses_of(&mut etcd, &pod.handle()).await.is_empty());
        assert_eq!(blocks(&mut etcd).await[0].used(), 0);
        assert_eq!(
            get_json(&mut etcd, &ipam::handle_key(&pod.handle())).await,
            None
        );

        // DEL again, and once more after the sandbox's namespace is gone: still success.
        node.cni(&pod.vars("DEL"), &conf).ok();
        node.del_pod_ns(pod.ns());
        node.cni(&pod.vars("DEL"), &conf).ok();
        // A DEL without CNI_NETNS (allowed by the spec) too.
        let vars: Vec<_> = pod
            .vars("DEL")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        node.cni(&vars, &conf).ok();
        // CHECK of a deleted pod fails.
        let pod2 = Pod::new(&node, "web-1", "c0ffee01");
        let msg = node.cni(&pod2.vars("CHECK"), &conf).error(999);
        assert!(msg.contains("no WorkloadEndpoint"), "{msg}");
    });
}

#[test]
fn without_an_mtu_the_pod_gets_the_uplinks_less_ipip() {
    support::run("mtu", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "default-ipv4-ippool", "192.168.0.0/16", 26).await;
        // The host's uplink: the interface with a global address (the test's host has only lo).
        for args in [
            &[
                "link", "add", "eth0", "mtu", "1450", "type", "veth", "peer", "name", "eth0p",
            ][..],
            &["addr", "add", "10.9.0.1/24", "dev", "eth0"],
            &["link", "set", "eth0", "up"],
        ] {
            ip_json(args);
        }
        let pod = Pod::new(&node, "web-1", "c0ffee01");
        let conf = config(json!({}));
        node.cni(&pod.vars("ADD"), &conf).ok();
        assert_pod_wired(&pod, Ipv4Addr::new(192, 168, 0, 0), 1430);
        let host = &ip_json(&["link", "show", "dev", &pod.host_veth()])[0];
        assert_eq!(host["mtu"], 1430);
        node.cni(&pod.vars("CHECK"), &conf).ok();
        // An explicit mtu wins: CHECK compares against it.
        let msg = node
            .cni(&pod.vars("CHECK"), &config(json!({"mtu": 1400})))
            .error(999);
        assert!(msg.contains("MTU 1430, not 1400"), "{msg}");
    });
}

#[test]
fn the_pod_mtu_follows_the_interface_that_holds_the_nodes_address() {
    support::run("uplinkmtu", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "default-ipv4-ippool", "192.168.0.0/16", 26).await;
        // Two addressed NICs with different MTUs and names other than eth0.
        for (name, mtu, addr) in [
            ("ens5", "9000", "10.9.1.1/24"),
            ("eth1", "1450", "10.9.2.1/24"),
        ] {
            let peer = format!("{name}p");
            for args in [
                &[
                    "link", "add", name, "mtu", mtu, "type", "veth", "peer", "name", &peer,
                ][..],
                &["addr", "add", addr, "dev", name],
                &["link", "set", name, "up"],
            ] {
                ip_json(args);
            }
        }
        let conf = config(json!({}));
        // Before felix registers the node's address: the smallest addressed link, less IPIP.
        let first = Pod::new(&node, "web-1", "c0ffee11");
        node.cni(&first.vars("ADD"), &conf).ok();
        assert_pod_wired(&first, Ipv4Addr::new(192, 168, 0, 0), 1430);
        // felix registered 10.9.1.1 (on ens5): pods follow ens5, the uplink felix also takes.
        let node_json = json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": NODE},
            "spec": {"bgp": {"ipv4Address": "10.9.1.1/24"}}
        });
        etcd.put(
            format!("/calico/resources/v3/projectcalico.org/nodes/{NODE}"),
            node_json.to_string(),
            None,
        )
        .await
        .expect("put the Node");
        let second = Pod::new(&node, "web-2", "c0ffee12");
        node.cni(&second.vars("ADD"), &conf).ok();
        assert_pod_wired(&second, Ipv4Addr::new(192, 168, 0, 1), 8980);
        node.cni(&second.vars("CHECK"), &conf).ok();
    });
}

#[test]
fn pods_fill_a_block_then_the_node_claims_another() {
    support::run("blocks", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "small", "10.70.0.0/24", 30).await;
        let pods: Vec<Pod> = (1..=5)
            .map(|i| Pod::new(&node, &format!("p{i}"), &format!("ctr{i}")))
            .collect();
        let conf = config(json!({"ipam": {"type": "felix-ipam", "ipv4_pools": ["10.70.0.0/24"]}}));
        let mut ips = Vec::new();
        for pod in &pods {
            let result = node.cni(&pod.vars("ADD"), &conf).ok();
            let address = result["ips"][0]["address"].as_str().unwrap().to_string();
            let ip: Ipv4Addr = address.trim_end_matches("/32").parse().unwrap();
            assert_pod_wired(pod, ip, 1480);
            ips.push(ip);
        }
        let expected: Vec<Ipv4Addr> = [0, 1, 2, 3, 4]
            .into_iter()
            .map(|i| Ipv4Addr::new(10, 70, 0, i))
            .collect();
        assert_eq!(
            ips, expected,
            "the first block's four addresses, then the next block's"
        );
        let all = blocks(&mut etcd).await;
        let cidrs: Vec<String> = all.iter().map(|b| b.cidr.to_string()).collect();
        assert_eq!(cidrs, ["10.70.0.0/30", "10.70.0.4/30"]);
        assert!(all.iter().all(|b| b.host() == Some(NODE)));
        assert_eq!(count(&mut etcd, WEPS).await, 5);
        let cali: Vec<String> = links(None)
            .into_iter()
            .filter(|l| l.starts_with("cali"))
            .collect();
        assert_eq!(cali.len(), 5, "{cali:?}");

        // The pods reach each other through the host's stack, given what felix would add
        // (forwarding, a /32 route per pod): the gateway's neighbour entry does its job.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable forwarding");
        for (pod, ip) in pods.iter().zip(&ips) {
            support::ip_json(&["route", "add", &format!("{ip}/32"), "dev", &pod.host_veth()]);
        }
        let ping = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                pods[0].ns(),
                "ping",
                "-c1",
                "-W2",
                &ips[4].to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "{}",
            String::from_utf8_lossy(&ping.stdout)
        );

        for pod in &pods {
            node.cni(&pod.vars("DEL"), &conf).ok();
        }
        assert_eq!(count(&mut etcd, WEPS).await, 0);
        assert!(blocks(&mut etcd).await.iter().all(|b| b.used() == 0));
        assert!(links(None).iter().all(|l| !l.starts_with("cali")));
    });
}

#[test]
fn concurrent_adds_and_dels_share_nothing() {
    support::run("parallel", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "default-ipv4-ippool", "10.90.0.0/24", 29).await;
        let pods: Vec<Pod> = (1..=8)
            .map(|i| Pod::new(&node, &format!("w{i}"), &format!("par{i}")))
            .collect();
        let conf = config(json!({}));
        // Threads start in the test thread's (host) namespace, and so do their children.
        let run_all = |command: &str| -> Vec<Value> {
            std::thread::scope(|scope| {
                let calls: Vec<_> = pods
                    .iter()
                    .map(|pod| scope.spawn(|| node.cni(&pod.vars(command), &conf).ok()))
                    .collect();
                calls
                    .into_iter()
                    .map(|c| c.join().expect("a plugin call"))
                    .collect()
            })
        };
        let results = run_all("ADD");
        let mut ips: Vec<Ipv4Addr> = results
            .iter()
            .map(|r| {
                let address = r["ips"][0]["address"].as_str().expect("an address");
                address
                    .trim_end_matches("/32")
                    .parse()
                    .expect("an IPv4 /32")
            })
            .collect();
        for (pod, ip) in pods.iter().zip(&ips) {
            assert_pod_wired(pod, *ip, 1480);
            assert_eq!(addresses_of(&mut etcd, &pod.handle()).await, [*ip]);
        }
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 8, "every pod its own address: {ips:?}");
        let all = blocks(&mut etcd).await;
        assert!(all.iter().all(|b| b.host() == Some(NODE)));
        assert_eq!(all.iter().map(Block::used).sum::<usize>(), 8);
        assert_eq!(count(&mut etcd, WEPS).await, 8);

        assert!(run_all("DEL").iter().all(Value::is_null));
        assert!(blocks(&mut etcd).await.iter().all(|b| b.used() == 0));
        assert_eq!(count(&mut etcd, WEPS).await, 0);
        assert_eq!(links(None), ["lo"]);
    });
}

#[test]
fn check_names_what_is_missing() {
    support::run("check", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "default-ipv4-ippool", "192.168.0.0/16", 26).await;
        let pod = Pod::new(&node, "db-0", "feed01");
        let conf = config(json!({}));
        node.cni(&pod.vars("ADD"), &conf).ok();
        node.cni(&pod.vars("CHECK"), &conf).ok();

        support::ip_json(&["-n", pod.ns(), "route", "del", "default"]);
        let msg = node.cni(&pod.vars("CHECK"), &conf).error(999);
        assert!(
            msg.contains("no default route via 169.254.1.1 dev eth0"),
            "{msg}"
        );

        support::ip_json(&["link", "set", &pod.host_veth(), "down"]);
        let msg = node.cni(&pod.vars("CHECK"), &conf).error(999);
        assert!(
            msg.contains(&format!("{} is down", pod.host_veth())),
            "{msg}"
        );

        let old = config(json!({"cniVersion": "0.3.1"}));
        node.cni(&pod.vars("CHECK"), &old).error(1);

        etcd.delete(pod.wep_key(), None).await.unwrap();
        let msg = node.cni(&pod.vars("CHECK"), &conf).error(999);
        assert!(msg.contains("no WorkloadEndpoint"), "{msg}");

        node.cni(&pod.vars("DEL"), &conf).ok();
        assert!(addresses_of(&mut etcd, &pod.handle()).await.is_empty());
        assert_eq!(links(Some(pod.ns())), ["lo"]);
    });
}

#[test]
fn failed_adds_are_error_json_and_leave_nothing_behind() {
    support::run("errors", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "default-ipv4-ippool", "192.168.0.0/16", 26).await;
        put_pool(&mut etcd, "other", "10.80.0.0/16", 26).await;
        let pod = Pod::new(&node, "api-0", "bad0001");
        let good = config(json!({}));
        let nothing_left = |what: &str| {
            assert_eq!(links(Some(pod.ns())), ["lo"], "{what}: pod");
            assert_eq!(links(None), ["lo"], "{what}: host");
        };

        let cases: Vec<(&str, String, u64, &str)> = vec![
            ("not JSON", "{\"cniVersion\": ".into(), 6, "not JSON"),
            (
                "old version",
                config(json!({"cniVersion": "0.2.0"})),
                1,
                "0.2.0",
            ),
            ("bad mtu", config(json!({"mtu": 20})), 7, "mtu"),
            (
                "no etcd",
                config(json!({"etcd_endpoints": ""})),
                7,
                "etcd_endpoints",
            ),
            (
                "tls certificate without key",
                config(json!({
                    "etcd_endpoints": "https://127.0.0.1:1",
                    "etcd_ca_cert_file": "/nonexistent/ca.pem",
                    "etcd_cert_file": "/nonexistent/c.pem"
                })),
                7,
                "key",
            ),
            (
                "unknown pool",
                config(json!({"ipam": {"type": "felix-ipam", "ipv4_pools": ["10.99.0.0/16"]}})),
                7,
                "10.99.0.0/16",
            ),
            (
                "other ipam",
                config(json!({"ipam": {"type": "host-local"}})),
                7,
                "ipam.type",
            ),
            (
                "etcd down",
                config(json!({"etcd_endpoints": "http://127.0.0.1:1"})),
                11,
                "unreachable",
            ),
        ];
        for (what, stdin, code, word) in cases {
            let msg = node.cni(&pod.vars("ADD"), &stdin).error(code);
            assert!(msg.contains(word), "{what}: {msg}");
            nothing_left(what);
        }

        let mut vars = pod.vars("ADD");
        vars.retain(|(k, _)| *k != "CNI_NETNS");
        let msg = node.cni(&vars, &good).error(4);
        assert!(msg.contains("CNI_NETNS"), "{msg}");
        let mut vars = pod.vars("ADD");
        vars.push(("CNI_NETNS", "/run/netns/fxcni-no-such-namespace"));
        let msg = node.cni(&vars, &good).error(4);
        assert!(msg.contains("CNI_NETNS"), "{msg}");
        nothing_left("missing netns");

        // A failure after the address was assigned: the pod already has an eth0.
        support::ip_json(&[
            "-n",
            pod.ns(),
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "x0",
        ]);
        let msg = node.cni(&pod.vars("ADD"), &good).error(999);
        assert!(msg.contains("create veth"), "{msg}");
        assert_eq!(links(None), ["lo"], "no host veth left");
        assert!(
            addresses_of(&mut etcd, &pod.handle()).await.is_empty(),
            "address released"
        );
        assert_eq!(count(&mut etcd, WEPS).await, 0);
    });
}

/// A pod as the API server returns it (`kubectl get pod -o json`, trimmed of status details).
fn api_pod(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": "web-5d4f8b7c9-",
            "namespace": "default",
            "uid": "0b7c2c3e-54a5-4bb1-9a0e-1c7d2f1f6a11",
            "resourceVersion": "123456",
            "creationTimestamp": "2026-12-07T10:00:00Z",
            "labels": {"app": "web", "pod-template-hash": "5d4f8b7c9"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "web-5d4f8b7c9", "uid": "9f1e", "controller": true}]
        },
        "spec": {
            "nodeName": NODE,
            "serviceAccountName": "web-sa",
            "serviceAccount": "web-sa",
            "restartPolicy": "Always",
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "imagePullPolicy": "IfNotPresent",
                "ports": [
                    {"name": "http", "containerPort": 80, "protocol": "TCP"},
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "metrics", "containerPort": 9090, "hostPort": 19090,
                     "protocol": "TCP"},
                    {"containerPort": 8443, "protocol": "TCP"}
                ],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log"
            }]
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"}
    })
}

#[test]
fn with_policy_k8s_the_endpoint_comes_from_the_pod_in_the_api() {
    support::run("k8s", |node| async move {
        let mut etcd = node.etcd().await;
        put_pool(&mut etcd, "default-ipv4-ippool", "192.168.0.0/16", 26).await;
        put_pool(&mut etcd, "pool-b", "10.70.0.0/24", 28).await;
        let api = ApiServer::start(
            "s3cret",
            vec![
                api_pod(
                    "web-1",
                    json!({"cni.projectcalico.org/ipv4pools": "[\"pool-b\"]"}),
                ),
                api_pod("web-2", json!({})),
            ],
        );
        let k8s_conf = |kubeconfig: &std::path::Path| {
            config(json!({
                "policy": {"type": "k8s"},
                "kubernetes": {"kubeconfig": kubeconfig},
                // Not used with policy k8s: the pod's labels are.
                "args": {"cni": {"labels": [{"key": "from-args", "value": "x"}]}}
            }))
        };
        let good = node.write_file("kubeconfig", &api.kubeconfig("s3cret"));

        let pod = Pod::new(&node, "web-1", "c0ffee11");
        let result = node.cni(&pod.vars("ADD"), &k8s_conf(&good)).ok();
        assert_eq!(result["ips"][0]["address"], "10.70.0.0/32", "from pool-b");
        let wep = get_json(&mut etcd, &pod.wep_key())
            .await
            .expect("the WorkloadEndpoint");
        assert_eq!(
            wep["metadata"]["labels"],
            json!({
                "app": "web",
                "pod-template-hash": "5d4f8b7c9",
                "projectcalico.org/namespace": "default",
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": "web-sa"
            })
        );
        assert_eq!(wep["metadata"]["generateName"], "web-5d4f8b7c9-");
        let spec = &wep["spec"];
        assert_eq!(
            spec["profiles"],
            json!(["kns.default", "ksa.default.web-sa"])
        );
        assert_eq!(spec["serviceAccountName"], "web-sa");
        assert_eq!(
            spec["ports"],
            json!([
                {"name": "http", "protocol": "TCP", "port": 80},
                {"name": "dns", "protocol": "UDP", "port": 53},
                {"name": "metrics", "protocol": "TCP", "port": 9090, "hostPort": 19090}
            ])
        );
        assert_eq!(spec["containerID"], "c0ffee11");

        // A wrong token, an unreachable server, a pod the API does not know: ADD fails with
        // the URL and the reason, and leaves no address, interface or endpoint behind.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address")
            .port();
        let wrong_token = node.write_file("wrong-token", &api.kubeconfig("nope"));
        let unreachable = node.write_file(
            "unreachable",
            &api.kubeconfig("s3cret")
                .replace(&format!(":{}", api.port), &format!(":{closed}")),
        );
        let server = format!("https://127.0.0.1:{}", api.port);
        let cases = [
            (
                "web-2",
                &wrong_token,
                server.clone(),
                "401 Unauthorized: Unauthorized",
            ),
            (
                "web-2",
                &unreachable,
                format!("https://127.0.0.1:{closed}"),
                "connect",
            ),
            (
                "web-3",
                &good,
                server.clone(),
                "404 Not Found: pods \"web-3\" not found",
            ),
        ];
        for (i, (name, kubeconfig, url, reason)) in cases.into_iter().enumerate() {
            let pod = Pod::new(&node, name, &format!("bad{i}"));
            let msg = node.cni(&pod.vars("ADD"), &k8s_conf(kubeconfig)).error(999);
            assert!(
                msg.starts_with(&format!(
                    "GET \"{url}/api/v1/namespaces/default/pods/{name}\": "
                )) && msg.contains(reason),
                "{msg}"
            );
            assert_eq!(get_json(&mut etcd, &pod.wep_key()).await, None, "{msg}");
            assert!(
                addresses_of(&mut etcd, &pod.handle()).await.is_empty(),
                "{msg}"
            );
            assert!(!links(None).contains(&pod.host_veth()), "{msg}");
        }
        assert_eq!(count(&mut etcd, WEPS).await, 1, "only web-1's");

        node.cni(&pod.vars("DEL"), &k8s_conf(&good)).ok();
        assert_eq!(count(&mut etcd, WEPS).await, 0);
        assert!(addresses_of(&mut etcd, &pod.handle()).await.is_empty());
    });
}
