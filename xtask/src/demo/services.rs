//! The demo's Kubernetes part: kube-proxy's iptables rules for two Services installed on both
//! hosts as kube-proxy writes them, then a pod on h1 reaching a backend on h2 through a ClusterIP
//! (TCP) and a DNS-like lookup on a connected UDP socket through another, in BPF mode, with the
//! conntrack entries that send these flows through the host stack (which undoes the NAT).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::kube_proxy::{self, Endpoint, Protocol, Service, ServicePort, TrafficPolicy};
use lab::udp_echo::{self, UdpEchoServer};
use lab::{EchoServer, Lab, names, probe};

use super::header;

const WEB_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 80);
const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
const WEB_TARGET: u16 = 8080;
const DNS_TARGET: u16 = 5353;
const TIMEOUT: Duration = Duration::from_secs(3);

fn service(name: &str, ip: Ipv4Addr, port: ServicePort, backend: Endpoint) -> Service {
    Service {
        namespace: names::POD_NAMESPACE.into(),
        name: name.into(),
        cluster_ip: ip,
        ports: vec![port],
        external_traffic_policy: TrafficPolicy::Cluster,
        external_ips: vec![],
        health_check_node_port: None,
        endpoints: vec![backend],
    }
}

pub fn run(lab: &Lab) -> Result<()> {
    let client = lab.pod(1, 1)?.clone();
    let backend_pod = lab.pod(2, 1)?.clone();
    let backend = Endpoint {
        ip: backend_pod.ip,
        node: lab.node(2),
        ready: true,
    };
    let web = ServicePort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 80,
        target_port: WEB_TARGET,
        node_port: None,
    };
    let dns = ServicePort {
        name: "dns".into(),
        protocol: Protocol::Udp,
        port: 53,
        target_port: DNS_TARGET,
        node_port: None,
    };
    let services = [
        service("web", WEB_IP, web, backend.clone()),
        service("dns", DNS_IP, dns, backend),
    ];
    header("kube-proxy's iptables rules for Services web and dns, on both hosts");
    kube_proxy::install(lab, &services)?;
    let rules = lab::cmd::stdout(std::process::Command::new("ip").args([
        "netns",
        "exec",
        &lab.node(1),
        "iptables-nft-save",
        "-t",
        "nat",
    ]))?;
    for line in rules.lines().filter(|l| l.contains("default/web")) {
        println!("{line}");
    }

    let _tcp = EchoServer::start(&backend_pod.ns, WEB_TARGET)?;
    let _udp = UdpEchoServer::start(&backend_pod.ns, DNS_TARGET)?;
    header(&format!(
        "{} -> ClusterIP {WEB_IP}:80 (TCP), backend {}:{WEB_TARGET} on {}",
        client.name,
        backend_pod.ip,
        lab.node(2)
    ));
    let mut stream = probe::connect(&client.ns, WEB_IP, 80, TIMEOUT)?
        .context("no connection through the ClusterIP")?;
    probe::exchange(&mut stream, b"hello through a Service", TIMEOUT)?;
    println!(
        "connected from {} to {}: echo received",
        stream.local_addr()?,
        stream.peer_addr()?
    );

    header(&format!(
        "{} -> ClusterIP {DNS_IP}:53 (UDP, connected socket, as a stub resolver)",
        client.name
    ));
    let seen = udp_echo::lookup(&client.ns, DNS_IP, 53, "web.default.svc", TIMEOUT)?
        .context("no answer through the ClusterIP")?;
    println!("answer from {DNS_IP}:53; the backend saw the client as {seen}");
    ensure!(
        seen == client.ip,
        "the backend saw {seen}, not the pod {}",
        client.ip
    );

    header(&format!(
        "felix bpf conntrack dump --node {}: the flow as sent (to the ClusterIP) and after DNAT, \
         both via_host",
        lab.node(1)
    ));
    print!("{}", lab.felix_cli(1, &["conntrack", "dump"])?);
    drop(stream);
    Ok(())
}
