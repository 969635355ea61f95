//! Kubernetes Services through kube-proxy's iptables rules ([`lab::kube_proxy`], installed on
//! both hosts as kube-proxy writes them), checked from pods, hosts and the ToR: ClusterIP over
//! TCP and over a connected UDP socket (a DNS-like lookup) with the backend on the client's node
//! and on the other one, a host's own processes to a ClusterIP, NodePorts with
//! `externalTrafficPolicy` Cluster (masqueraded) and Local (source kept, dropped on a node
//! without a local backend). One lab per dataplane (BPF, iptables); every row runs with the
//! pool's `ipipMode` Always, CrossSubnet and Never, switched in etcd. The matrix is printed as a
//! table, then every row is asserted.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use lab::calico::IpipMode;
use lab::felixd::Dataplane;
use lab::iptables::Backend;
use lab::kroutes::{self, Check};
use lab::kube_proxy::{self, Endpoint, Protocol, Service, ServicePort, TrafficPolicy};
use lab::udp_echo::{self, UdpEchoServer};
use lab::{EchoServer, Lab, LabOptions, names, probe};

use crate::support::{poll_until, with_lab_options};

/// The backends' TCP echo and UDP answering ports (the Services' `targetPort`s).
const TCP_TARGET: u16 = 8080;
const UDP_TARGET: u16 = 5353;
/// The Services' ports.
const TCP_PORT: u16 = 80;
const UDP_PORT: u16 = 53;
/// NodePorts of `echo-h1` (Cluster policy) and `echo-local` (Local), TCP and UDP alike.
const NODE_PORT_CLUSTER: u16 = 30081;
const NODE_PORT_LOCAL: u16 = 30090;
/// How long a probe waits for the handshake or the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long felix may take to re-program routes after a pool change.
const ROUTES_DEADLINE: Duration = Duration::from_secs(10);
const MODES: [IpipMode; 3] = [IpipMode::Always, IpipMode::CrossSubnet, IpipMode::Never];

/// `echo-hN`'s ClusterIP.
fn cluster_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 0, 10 + n)
}
const LOCAL_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

/// `echo-h1` (backend h1-p1, NodePorts), `echo-h2` (backend h2-p1) and `echo-local` (backend
/// h1-p1, NodePorts, `externalTrafficPolicy: Local`), each with a TCP and a UDP port.
fn services(lab: &Lab) -> Result<Vec<Service>> {
    let ports = |node_port: Option<u16>| {
        vec![
            ServicePort {
                name: "echo".into(),
                protocol: Protocol::Tcp,
                port: TCP_PORT,
                target_port: TCP_TARGET,
                node_port,
            },
            ServicePort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: UDP_PORT,
                target_port: UDP_TARGET,
                node_port,
            },
        ]
    };
    let backend = |n: u8| -> Result<Endpoint> {
        Ok(Endpoint {
            ip: lab.pod(n, 1)?.ip,
            node: lab.node(n),
            ready: true,
        })
    };
    let service = |name: &str, ip, node_port, policy, endpoint| Service {
        namespace: names::POD_NAMESPACE.into(),
        name: name.into(),
        cluster_ip: ip,
        ports: ports(node_port),
        external_traffic_policy: policy,
        external_ips: vec![],
        health_check_node_port: None,
        endpoints: vec![endpoint],
    };
    Ok(vec![
        service(
            "echo-h1",
            cluster_ip(1),
            Some(NODE_PORT_CLUSTER),
            TrafficPolicy::Cluster,
            backend(1)?,
        ),
        service(
            "echo-h2",
            cluster_ip(2),
            None,
            TrafficPolicy::Cluster,
            backend(2)?,
        ),
        service(
            "echo-local",
            LOCAL_CLUSTER_IP,
            Some(NODE_PORT_LOCAL),
            TrafficPolicy::Local,
            backend(1)?,
        ),
    ])
}

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// An answer (for UDP, the backend saw `source`, if given; `Not`: anything but it).
    Answer(Option<Source>),
    /// Dropped: no answer within the timeout.
    Blocked,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Is(Ipv4Addr),
    Not(Ipv4Addr),
}

struct Row {
    name: String,
    ns: String,
    protocol: Protocol,
    to: Ipv4Addr,
    port: u16,
    want: Want,
}

/// The matrix's rows for `lab`.
fn rows(lab: &Lab) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for c in [1u8, 2] {
        let o = 3 - c;
        let client = lab.pod(c, 2)?;
        for (backend, node) in [(c, "same node"), (o, "other node")] {
            rows.push(Row {
                name: format!("{} -> ClusterIP TCP, backend {node}", client.name_short()),
                ns: client.ns.clone(),
                protocol: Protocol::Tcp,
                to: cluster_ip(backend),
                port: TCP_PORT,
                want: Want::Answer(None),
            });
            rows.push(Row {
                name: format!(
                    "{} -> ClusterIP UDP (connected), backend {node}",
                    client.name_short()
                ),
                ns: client.ns.clone(),
                protocol: Protocol::Udp,
                to: cluster_ip(backend),
                port: UDP_PORT,
                want: Want::Answer(Some(Source::Is(client.ip))),
            });
        }
        for (backend, node) in [(c, "same node"), (o, "other node")] {
            rows.push(Row {
                name: format!("host h{c} -> ClusterIP TCP, backend {node}"),
                ns: lab.host(c)?.ns.clone(),
                protocol: Protocol::Tcp,
                to: cluster_ip(backend),
                port: TCP_PORT,
                want: Want::Answer(None),
            });
        }
    }
    let tor = names::tor_ns(lab.id());
    let tor_ip = names::TOR_IP;
    for (n, backend) in [(1u8, "local"), (2, "remote")] {
        let ip = lab.host(n)?.ip;
        rows.push(Row {
            name: format!("ToR -> h{n} NodePort TCP, Cluster, backend {backend}"),
            ns: tor.clone(),
            protocol: Protocol::Tcp,
            to: ip,
            port: NODE_PORT_CLUSTER,
            want: Want::Answer(None),
        });
        rows.push(Row {
            name: format!("ToR -> h{n} NodePort UDP, Cluster, backend {backend}: masqueraded"),
            ns: tor.clone(),
            protocol: Protocol::Udp,
            to: ip,
            port: NODE_PORT_CLUSTER,
            want: Want::Answer(Some(Source::Not(tor_ip))),
        });
    }
    let h1 = lab.host(1)?.ip;
    rows.push(Row {
        name: "ToR -> h1 NodePort TCP, Local, backend local".into(),
        ns: tor.clone(),
        protocol: Protocol::Tcp,
        to: h1,
        port: NODE_PORT_LOCAL,
        want: Want::Answer(None),
    });
    rows.push(Row {
        name: "ToR -> h1 NodePort UDP, Local: source kept".into(),
        ns: tor.clone(),
        protocol: Protocol::Udp,
        to: h1,
        port: NODE_PORT_LOCAL,
        want: Want::Answer(Some(Source::Is(tor_ip))),
    });
    rows.push(Row {
        name: "ToR -> h2 NodePort TCP, Local, no local backend: dropped".into(),
        ns: tor,
        protocol: Protocol::Tcp,
        to: lab.host(2)?.ip,
        port: NODE_PORT_LOCAL,
        want: Want::Blocked,
    });
    Ok(rows)
}

trait ShortName {
    fn name_short(&self) -> String;
}

impl ShortName for lab::PodInfo {
    /// `hN-pM` (the pod name without the lab id).
    fn name_short(&self) -> String {
        format!("h{}-p{}", self.host, self.index)
    }
}

/// Runs `row`'s probe: `Ok(())` when the outcome is the wanted one, else what happened.
fn run(row: &Row) -> std::result::Result<String, String> {
    let answer = match row.protocol {
        Protocol::Tcp => probe::tcp_works_within(&row.ns, row.to, row.port, PROBE_TIMEOUT)
            .map(|ok| ok.then_some(None)),
        Protocol::Udp => {
            udp_echo::lookup(&row.ns, row.to, row.port, "echo.default.svc", PROBE_TIMEOUT)
                .map(|seen| seen.map(Some))
        }
    };
    let answer = answer.map_err(|e| format!("error: {e:#}"))?;
    match (row.want, answer) {
        (Want::Blocked, None) => Ok("dropped".into()),
        (Want::Blocked, Some(_)) => Err("answered, expected a drop".into()),
        (Want::Answer(_), None) => Err("no answer".into()),
        (Want::Answer(want), Some(seen)) => {
            let said = seen.map_or("answered".to_owned(), |s| format!("answered, source {s}"));
            match (want, seen) {
                (Some(Source::Is(ip)), Some(s)) if s != ip => Err(format!("{said}, expected {ip}")),
                (Some(Source::Not(ip)), Some(s)) if s == ip => {
                    Err(format!("{said}, expected a node address"))
                }
                _ => Ok(said),
            }
        }
    }
}

/// Waits until both hosts route the other's block as `mode` wants: felix's routes map and the
/// kernel's routes in BPF mode; in iptables mode (native routing whatever the pool says, see
/// iptables_mode.rs) the kernel's essential routes.
fn wait_routes(lab: &Lab, mode: IpipMode) -> Result<()> {
    let bpf = lab.dataplane() == Dataplane::Bpf;
    let encap = if mode.encapsulates_in_lab() {
        "ipip"
    } else {
        "native"
    };
    poll_until(
        ROUTES_DEADLINE,
        &format!("routes for {}", mode.as_str()),
        || {
            let mut wrong = Vec::new();
            for (n, other) in [(1u8, 2u8), (2, 1)] {
                let host = lab.host(n)?.clone();
                let kernel = kroutes::show(&host.ns)?;
                if bpf {
                    let block = lab.host(other)?.block.clone();
                    let routes = lab.routes(n)?;
                    let route = routes.by_cidr(&block);
                    if !route.is_some_and(|r| {
                        r.encap.as_deref() == Some(encap)
                            && r.ipip_mode.as_deref() == Some(mode.as_str())
                    }) {
                        wrong.push(format!("h{n}: {block} is {route:?}"));
                    }
                    wrong.extend(kroutes::missing(lab.state(), &host, &kernel, Check::Exact));
                } else {
                    wrong.extend(kroutes::missing(
                        lab.state(),
                        &host,
                        &kernel,
                        Check::Essential,
                    ));
                }
            }
            Ok(if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            })
        },
    )
    .map(drop)
}

/// kube-proxy's jump into KUBE-SERVICES is in h1's nat PREROUTING once (installing again
/// keeps it once), and `echo-h1`'s chains are there under kube-proxy's names.
fn check_installed(lab: &Lab, backend: Backend) -> Result<()> {
    let ns = &lab.host(1)?.ns;
    let save = lab.exec_in_checked(
        ns,
        &[&format!("iptables-{}-save", backend.name()), "-t", "nat"],
    )?;
    let jumps = save
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING") && l.ends_with("-j KUBE-SERVICES"))
        .count();
    ensure!(
        jumps == 1,
        "{jumps} PREROUTING jumps to KUBE-SERVICES:\n{save}"
    );
    let port_name = format!("{}/echo-h1:echo", names::POD_NAMESPACE);
    let endpoint = format!("{}:{TCP_TARGET}", lab.pod(1, 1)?.ip);
    for chain in [
        kube_proxy::chains::cluster_policy(&port_name, "tcp"),
        kube_proxy::chains::external(&port_name, "tcp"),
        kube_proxy::chains::endpoint(&port_name, "tcp", &endpoint),
    ] {
        ensure!(
            save.contains(&format!(":{chain} ")),
            "no {chain} in:\n{save}"
        );
    }
    Ok(())
}

fn services_matrix(dataplane: Dataplane, label: &str) -> Result<()> {
    let opts = LabOptions {
        dataplane,
        ..LabOptions::default()
    };
    with_lab_options(opts, |lab| {
        let services = services(lab)?;
        kube_proxy::install(lab, &services)?;
        kube_proxy::install(lab, &services)?;
        let backend = match dataplane {
            Dataplane::Iptables(b) => b,
            Dataplane::Bpf => Backend::Nft,
        };
        check_installed(lab, backend)?;
        let mut servers = Vec::new();
        let mut udp = Vec::new();
        for n in [1u8, 2] {
            let ns = lab.pod(n, 1)?.ns.clone();
            servers.push(EchoServer::start(&ns, TCP_TARGET)?);
            udp.push(UdpEchoServer::start(&ns, UDP_TARGET)?);
        }
        let rows = rows(lab)?;
        let mut table = vec![format!(
            "| {:<62} | {:<8} | {:<11} | result",
            "row", "mode", "ipipMode"
        )];
        let mut failed = Vec::new();
        for mode in MODES {
            if lab.state().pool_ipip_mode != mode {
                lab.set_pool_ipip_mode(mode)?;
            }
            wait_routes(lab, mode)?;
            for row in &rows {
                let (mark, said) = match run(row) {
                    Ok(said) => ("ok", said),
                    Err(said) => {
                        failed.push(format!("{} [{label}, {}]: {said}", row.name, mode.as_str()));
                        ("FAIL", said)
                    }
                };
                table.push(format!(
                    "| {:<62} | {label:<8} | {:<11} | {mark}: {said}",
                    row.name,
                    mode.as_str()
                ));
            }
        }
        println!("{}", table.join("\n"));
        if !failed.is_empty() {
            bail!(
                "{} of {} rows failed:\n{}",
                failed.len(),
                table.len() - 1,
                failed.join("\n")
            );
        }
        Ok(())
    })
}

#[test]
fn services_iptables_mode() -> Result<()> {
    services_matrix(Dataplane::Iptables(Backend::Nft), "iptables")
}

#[test]
fn services_bpf_mode() -> Result<()> {
    services_matrix(Dataplane::Bpf, "bpf")
}

/// A connection through a ClusterIP to a backend on the other host keeps working after 25 s
/// idle, past the 20 s that conntrack gives a TCP flow whose handshake it has not seen complete:
/// the flow after NAT, which sends the backend's replies into the host stack, must see the
/// client's packets too.
#[test]
fn a_service_connection_outlives_the_half_open_timeout() -> Result<()> {
    const HALF_OPEN: Duration = Duration::from_secs(20);
    with_lab_options(LabOptions::default(), |lab| {
        let services = services(lab)?;
        kube_proxy::install(lab, &services)?;
        let _server = EchoServer::start(&lab.pod(2, 1)?.ns, TCP_TARGET)?;
        let client = lab.pod(1, 2)?.ns.clone();
        let mut stream = probe::connect(&client, cluster_ip(2), TCP_PORT, PROBE_TIMEOUT)?
            .ok_or_else(|| anyhow::anyhow!("no connection through the ClusterIP"))?;
        probe::exchange(&mut stream, b"first", PROBE_TIMEOUT)?;
        std::thread::sleep(HALF_OPEN + Duration::from_secs(5));
        probe::exchange(&mut stream, b"still there after idling", PROBE_TIMEOUT)?;
        Ok(())
    })
}
