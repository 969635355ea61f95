//! kube-proxy's iptables mode, rendered: the `iptables-restore` input of one full sync
//! (`syncProxyRules` in pkg/proxy/iptables/proxier.go, Kubernetes 1.31/1.32) and the jump rules
//! it ensures from the built-in chains before restoring. Same chains, rules, order and comments;
//! of the Service features only ClusterIP, NodePort, external IPs and `externalTrafficPolicy`
//! (no load balancers, session affinity, topology or terminating endpoints; internal traffic
//! policy `Cluster`).

use std::fmt::Write as _;

use super::chains;
use super::model::{Config, Endpoint, Service, ServicePort, TrafficPolicy};

/// A rule kube-proxy keeps at the top of a built-in chain (`EnsureRule(Prepend, ...)`), jumping to
/// one of its own chains (created first when missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub table: &'static str,
    /// The built-in chain (`PREROUTING`, `FORWARD`, ...).
    pub from: &'static str,
    /// kube-proxy's chain.
    pub to: &'static str,
    /// The rule's arguments, `-j` included, one argv element each (for `iptables -C/-I`).
    pub args: Vec<String>,
}

/// `iptablesJumpChains` then `iptablesKubeletJumpChains`, in kube-proxy's order.
pub fn jumps() -> Vec<Jump> {
    const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];
    let table: [(&str, &str, &str, &str, &[&str]); 14] = [
        (
            "filter",
            chains::EXTERNAL_SERVICES,
            "INPUT",
            "kubernetes externally-visible service portals",
            NEW,
        ),
        (
            "filter",
            chains::EXTERNAL_SERVICES,
            "FORWARD",
            "kubernetes externally-visible service portals",
            NEW,
        ),
        (
            "filter",
            chains::NODE_PORTS,
            "INPUT",
            "kubernetes health check service ports",
            &[],
        ),
        (
            "filter",
            chains::SERVICES,
            "FORWARD",
            "kubernetes service portals",
            NEW,
        ),
        (
            "filter",
            chains::SERVICES,
            "OUTPUT",
            "kubernetes service portals",
            NEW,
        ),
        (
            "filter",
            chains::FORWARD,
            "FORWARD",
            "kubernetes forwarding rules",
            &[],
        ),
        (
            "filter",
            chains::PROXY_FIREWALL,
            "INPUT",
            "kubernetes load balancer firewall",
            NEW,
        ),
        (
            "filter",
            chains::PROXY_FIREWALL,
            "OUTPUT",
            "kubernetes load balancer firewall",
            NEW,
        ),
        (
            "filter",
            chains::PROXY_FIREWALL,
            "FORWARD",
            "kubernetes load balancer firewall",
            NEW,
        ),
        (
            "nat",
            chains::SERVICES,
            "OUTPUT",
            "kubernetes service portals",
            &[],
        ),
        (
            "nat",
            chains::SERVICES,
            "PREROUTING",
            "kubernetes service portals",
            &[],
        ),
        (
            "nat",
            chains::POSTROUTING,
            "POSTROUTING",
            "kubernetes postrouting rules",
            &[],
        ),
        ("filter", chains::KUBELET_FIREWALL, "INPUT", "", &[]),
        ("filter", chains::KUBELET_FIREWALL, "OUTPUT", "", &[]),
    ];
    table
        .into_iter()
        .map(|(table, to, from, comment, extra)| {
            let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            if !comment.is_empty() {
                args.extend(["-m", "comment", "--comment", comment].map(str::to_owned));
            }
            args.extend(["-j".to_owned(), to.to_owned()]);
            Jump {
                table,
                from,
                to,
                args,
            }
        })
        .collect()
}

/// Chain declarations and rules of one table, in the order they are written.
#[derive(Default)]
struct Table {
    chains: Vec<String>,
    rules: Vec<String>,
}

impl Table {
    fn chain(&mut self, name: &str) {
        self.chains.push(format!(":{name} - [0:0]"));
    }

    fn rule(&mut self, parts: &[&str]) {
        self.rules.push(parts.join(" "));
    }

    fn write_into(&self, out: &mut String, name: &str) {
        let _ = writeln!(out, "*{name}");
        for line in self.chains.iter().chain(&self.rules) {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "COMMIT");
    }
}

/// The `iptables-restore` input of a full sync on `config.node_name` (filter table, then nat).
/// Service ports are written in the order of their `ns/name:port` (kube-proxy's is its map's).
pub fn restore_input(config: &Config, services: &[Service]) -> String {
    let mut filter = Table::default();
    let mut nat = Table::default();
    for chain in [
        chains::SERVICES,
        chains::EXTERNAL_SERVICES,
        chains::FORWARD,
        chains::NODE_PORTS,
        chains::PROXY_FIREWALL,
    ] {
        filter.chain(chain);
    }
    for chain in [
        chains::SERVICES,
        chains::NODE_PORTS,
        chains::POSTROUTING,
        chains::MARK_MASQ,
    ] {
        nat.chain(chain);
    }
    let mark = &config.masquerade_mark;
    let mark_mask = format!("{mark}/{mark}");
    nat.rule(&[
        "-A",
        chains::POSTROUTING,
        "-m",
        "mark",
        "!",
        "--mark",
        &mark_mask,
        "-j",
        "RETURN",
    ]);
    nat.rule(&["-A", chains::POSTROUTING, "-j", "MARK", "--xor-mark", mark]);
    let mut masq = vec![
        "-A",
        chains::POSTROUTING,
        "-m",
        "comment",
        "--comment",
        "\"kubernetes service traffic requiring SNAT\"",
        "-j",
        "MASQUERADE",
    ];
    if config.random_fully {
        masq.push("--random-fully");
    }
    nat.rule(&masq);
    nat.rule(&["-A", chains::MARK_MASQ, "-j", "MARK", "--or-mark", mark]);
    if config.localhost_nodeports {
        filter.chain(chains::KUBELET_FIREWALL);
        filter.rule(&[
            "-A",
            chains::KUBELET_FIREWALL,
            "-m",
            "comment",
            "--comment",
            "\"block incoming localnet connections\"",
            "-d",
            "127.0.0.0/8",
            "!",
            "-s",
            "127.0.0.0/8",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "DROP",
        ]);
    }

    let mut ports: Vec<(String, &Service, &ServicePort)> = services
        .iter()
        .flat_map(|svc| svc.ports.iter().map(move |p| (svc.port_name(p), svc, p)))
        .collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, svc, port) in &ports {
        write_service_port(config, &mut filter, &mut nat, name, svc, port);
    }

    let mut tail = vec![
        "-A",
        chains::SERVICES,
        "-m",
        "comment",
        "--comment",
        "\"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
    ];
    if !config.localhost_nodeports {
        tail.extend(["!", "-d", "127.0.0.0/8"]);
    }
    tail.extend(["-j", chains::NODE_PORTS]);
    nat.rule(&tail);

    if !config.conntrack_tcp_be_liberal {
        let mut invalid = vec![
            "-A",
            chains::FORWARD,
            "-m",
            "conntrack",
            "--ctstate",
            "INVALID",
        ];
        if config.nfacct {
            invalid.extend([
                "-m",
                "nfacct",
                "--nfacct-name",
                "ct_state_invalid_dropped_pkts",
            ]);
        }
        invalid.extend(["-j", "DROP"]);
        filter.rule(&invalid);
    }
    filter.rule(&[
        "-A",
        chains::FORWARD,
        "-m",
        "comment",
        "--comment",
        "\"kubernetes forwarding rules\"",
        "-m",
        "mark",
        "--mark",
        &mark_mask,
        "-j",
        "ACCEPT",
    ]);
    filter.rule(&[
        "-A",
        chains::FORWARD,
        "-m",
        "comment",
        "--comment",
        "\"kubernetes forwarding conntrack rule\"",
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
    ]);

    let mut out = String::new();
    filter.write_into(&mut out, "filter");
    nat.write_into(&mut out, "nat");
    out
}

/// Which endpoints each policy uses on this node (`CategorizeEndpoints` for ready endpoints,
/// internal policy Cluster): all ready ones for Cluster, this node's ready ones for Local.
struct Endpoints<'a> {
    cluster: Vec<(&'a Endpoint, String)>,
    local: Vec<(&'a Endpoint, String)>,
}

impl<'a> Endpoints<'a> {
    /// Sorted by `ip:port`, as kube-proxy's endpoints cache returns them.
    fn of(config: &Config, svc: &'a Service, port: &ServicePort) -> Self {
        let mut cluster: Vec<(&Endpoint, String)> = svc
            .endpoints
            .iter()
            .filter(|ep| ep.ready)
            .map(|ep| (ep, format!("{}:{}", ep.ip, port.target_port)))
            .collect();
        cluster.sort_by(|a, b| a.1.cmp(&b.1));
        let local = cluster
            .iter()
            .filter(|(ep, _)| ep.node == config.node_name)
            .cloned()
            .collect();
        Self { cluster, local }
    }
}

/// `"text"`: kube-proxy quotes the comments that have spaces.
fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

/// The rules of one service port, as the body of kube-proxy's per-service loop writes them.
fn write_service_port(
    config: &Config,
    filter: &mut Table,
    nat: &mut Table,
    name: &str,
    svc: &Service,
    port: &ServicePort,
) {
    let proto = port.protocol.as_str();
    let eps = Endpoints::of(config, svc, port);
    let externally_accessible = port.node_port.is_some() || !svc.external_ips.is_empty();
    let external_local =
        externally_accessible && svc.external_traffic_policy == TrafficPolicy::Local;
    let has_endpoints = !eps.cluster.is_empty();
    let cluster_chain = chains::cluster_policy(name, proto);
    let local_chain = chains::local_policy(name, proto);
    let ext_chain = chains::external(name, proto);
    let uses_local_chain = external_local && !eps.local.is_empty();
    let (external_policy_chain, has_external_endpoints) = if external_local {
        (&local_chain, !eps.local.is_empty())
    } else {
        (&cluster_chain, has_endpoints)
    };
    let uses_ext_chain = has_endpoints && externally_accessible;

    let (filter_target, internal_comment, external_comment) = if has_endpoints {
        (
            "DROP",
            String::new(),
            quoted(&format!("{name} has no local endpoints")),
        )
    } else {
        let comment = quoted(&format!("{name} has no endpoints"));
        ("REJECT", comment.clone(), comment)
    };
    let cluster_ip = svc.cluster_ip.to_string();
    let port_s = port.port.to_string();
    let cluster_ip_comment = quoted(&format!("{name} cluster IP"));

    if has_endpoints {
        nat.rule(&[
            "-A",
            chains::SERVICES,
            "-m",
            "comment",
            "--comment",
            &cluster_ip_comment,
            "-m",
            proto,
            "-p",
            proto,
            "-d",
            &cluster_ip,
            "--dport",
            &port_s,
            "-j",
            &cluster_chain,
        ]);
    } else {
        filter.rule(&[
            "-A",
            chains::SERVICES,
            "-m",
            "comment",
            "--comment",
            &internal_comment,
            "-m",
            proto,
            "-p",
            proto,
            "-d",
            &cluster_ip,
            "--dport",
            &port_s,
            "-j",
            filter_target,
        ]);
    }

    for ip in &svc.external_ips {
        let ip = ip.to_string();
        if has_endpoints {
            let comment = quoted(&format!("{name} external IP"));
            nat.rule(&[
                "-A",
                chains::SERVICES,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-m",
                proto,
                "-p",
                proto,
                "-d",
                &ip,
                "--dport",
                &port_s,
                "-j",
                &ext_chain,
            ]);
        }
        if !has_external_endpoints {
            filter.rule(&[
                "-A",
                chains::EXTERNAL_SERVICES,
                "-m",
                "comment",
                "--comment",
                &external_comment,
                "-m",
                proto,
                "-p",
                proto,
                "-d",
                &ip,
                "--dport",
                &port_s,
                "-j",
                filter_target,
            ]);
        }
    }

    if let Some(node_port) = port.node_port {
        let node_port = node_port.to_string();
        if has_endpoints {
            if config.localhost_nodeports && config.nfacct {
                nat.rule(&[
                    "-A",
                    chains::NODE_PORTS,
                    "-m",
                    "comment",
                    "--comment",
                    name,
                    "-m",
                    proto,
                    "-p",
                    proto,
                    "-d",
                    "127.0.0.0/8",
                    "--dport",
                    &node_port,
                    "-m",
                    "nfacct",
                    "--nfacct-name",
                    "localhost_nps_accepted_pkts",
                    "-j",
                    &ext_chain,
                ]);
            }
            nat.rule(&[
                "-A",
                chains::NODE_PORTS,
                "-m",
                "comment",
                "--comment",
                name,
                "-m",
                proto,
                "-p",
                proto,
                "--dport",
                &node_port,
                "-j",
                &ext_chain,
            ]);
        }
        if !has_external_endpoints {
            filter.rule(&[
                "-A",
                chains::EXTERNAL_SERVICES,
                "-m",
                "comment",
                "--comment",
                &external_comment,
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-m",
                proto,
                "-p",
                proto,
                "--dport",
                &node_port,
                "-j",
                filter_target,
            ]);
        }
    }

    if let Some(hc) = svc.health_check_node_port {
        let comment = quoted(&format!("{name} health check node port"));
        let hc = hc.to_string();
        filter.rule(&[
            "-A",
            chains::NODE_PORTS,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-m",
            "tcp",
            "-p",
            "tcp",
            "--dport",
            &hc,
            "-j",
            "ACCEPT",
        ]);
    }

    if has_endpoints {
        let not_local = format!("! -s {}", config.cluster_cidr);
        nat.rule(&[
            "-A",
            &cluster_chain,
            "-m",
            "comment",
            "--comment",
            &cluster_ip_comment,
            "-m",
            proto,
            "-p",
            proto,
            "-d",
            &cluster_ip,
            "--dport",
            &port_s,
            &not_local,
            "-j",
            chains::MARK_MASQ,
        ]);
    }

    if uses_ext_chain {
        nat.chain(&ext_chain);
        if !external_local {
            let comment = quoted(&format!(
                "masquerade traffic for {name} external destinations"
            ));
            nat.rule(&[
                "-A",
                &ext_chain,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                chains::MARK_MASQ,
            ]);
        } else {
            let pods = quoted(&format!("pod traffic for {name} external destinations"));
            let local = format!("-s {}", config.cluster_cidr);
            nat.rule(&[
                "-A",
                &ext_chain,
                "-m",
                "comment",
                "--comment",
                &pods,
                &local,
                "-j",
                &cluster_chain,
            ]);
            let masq = quoted(&format!(
                "masquerade LOCAL traffic for {name} external destinations"
            ));
            nat.rule(&[
                "-A",
                &ext_chain,
                "-m",
                "comment",
                "--comment",
                &masq,
                "-m",
                "addrtype",
                "--src-type",
                "LOCAL",
                "-j",
                chains::MARK_MASQ,
            ]);
            let route = quoted(&format!(
                "route LOCAL traffic for {name} external destinations"
            ));
            nat.rule(&[
                "-A",
                &ext_chain,
                "-m",
                "comment",
                "--comment",
                &route,
                "-m",
                "addrtype",
                "--src-type",
                "LOCAL",
                "-j",
                &cluster_chain,
            ]);
        }
        if has_external_endpoints {
            nat.rule(&["-A", &ext_chain, "-j", external_policy_chain]);
        }
    }

    if has_endpoints {
        nat.chain(&cluster_chain);
        write_service_to_endpoints(nat, name, proto, &cluster_chain, &eps.cluster);
    }
    if uses_local_chain {
        nat.chain(&local_chain);
        write_service_to_endpoints(nat, name, proto, &local_chain, &eps.local);
    }

    // Local endpoints are a subset of the cluster ones here (all ready).
    for (ep, addr) in &eps.cluster {
        let chain = chains::endpoint(name, proto, addr);
        let ip = ep.ip.to_string();
        nat.chain(&chain);
        nat.rule(&[
            "-A",
            &chain,
            "-m",
            "comment",
            "--comment",
            name,
            "-s",
            &ip,
            "-j",
            chains::MARK_MASQ,
        ]);
        nat.rule(&[
            "-A",
            &chain,
            "-m",
            "comment",
            "--comment",
            name,
            "-m",
            proto,
            "-p",
            proto,
            "-j",
            "DNAT",
            "--to-destination",
            addr,
        ]);
    }
}

/// `writeServiceToEndpointRules`: one rule per endpoint, each but the last taken with
/// probability 1/(endpoints left).
fn write_service_to_endpoints(
    nat: &mut Table,
    name: &str,
    proto: &str,
    chain: &str,
    endpoints: &[(&Endpoint, String)],
) {
    let n = endpoints.len();
    for (i, (_, addr)) in endpoints.iter().enumerate() {
        let comment = quoted(&format!("{name} -> {addr}"));
        let target = chains::endpoint(name, proto, addr);
        let mut rule = vec!["-A", chain, "-m", "comment", "--comment", &comment];
        let probability = probability(n - i);
        if i + 1 < n {
            rule.extend([
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
            ]);
        }
        rule.extend(["-j", &target]);
        nat.rule(&rule);
    }
}

/// `1/n` with 10 decimals (Go's `%0.10f`).
fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}
