//! Policy on Service traffic sees the backend, as in Calico's iptables mode (where the client's
//! egress and the backend's ingress rules run in FORWARD, after kube-proxy's DNAT): an egress
//! policy that allows only the `web` pods on TCP 8080 lets a pod reach a ClusterIP:80 whose
//! backend is such a pod (on the other host, and on its own) and refuses one whose backend is
//! not; an ingress Deny on a backend refuses the connection through its ClusterIP as well as
//! directly. The `web` pods are h2-p1 and h1-p1 (the lab's `app` labels); the client is h1-p2.
//! Runs in BPF mode and in iptables mode, with kube-proxy's rules installed on both hosts.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, ensure};
use lab::felixd::Dataplane;
use lab::iptables::Backend;
use lab::kube_proxy::{self, Endpoint, Protocol, Service, ServicePort, TrafficPolicy};
use lab::{EchoServer, Lab, LabOptions, names, probe};

use crate::support::{poll_until, with_lab_options};

const PORT: u16 = 80;
const TARGET: u16 = 8080;
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long felix may take to enforce an applied or deleted policy.
const POLICY_DEADLINE: Duration = Duration::from_secs(10);
/// ClusterIPs: `web` (backend h2-p1), `web-local` (h1-p1, the client's host), `other` (h2-p2).
const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 10);
const WEB_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 11);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 12);

const EGRESS_TO_WEB: &str = r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: client-egress-to-web
  namespace: default
spec:
  selector: app == 'h1-p2'
  types:
    - Egress
  egress:
    - action: Allow
      protocol: TCP
      destination:
        selector: app in {'h2-p1', 'h1-p1'}
        ports:
          - 8080
"#;

const DENY_INTO_WEB: &str = r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: web-deny-ingress
  namespace: default
spec:
  selector: app == 'h2-p1'
  types:
    - Ingress
  ingress:
    - action: Deny
"#;

fn service(name: &str, ip: Ipv4Addr, backend: Endpoint) -> Service {
    Service {
        namespace: names::POD_NAMESPACE.into(),
        name: name.into(),
        cluster_ip: ip,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: PORT,
            target_port: TARGET,
            node_port: None,
        }],
        external_traffic_policy: TrafficPolicy::Cluster,
        external_ips: vec![],
        health_check_node_port: None,
        endpoints: vec![backend],
    }
}

fn backend(lab: &Lab, n: u8, m: u8) -> Result<Endpoint> {
    Ok(Endpoint {
        ip: lab.pod(n, m)?.ip,
        node: lab.node(n),
        ready: true,
    })
}

/// Waits until every `(address, port, reachable)` probe from `ns` gives the wanted answer.
fn expect_reach(ns: &str, what: &str, wanted: &[(Ipv4Addr, u16, bool)]) -> Result<()> {
    poll_until(POLICY_DEADLINE, what, || {
        let mut wrong = Vec::new();
        for &(to, port, reachable) in wanted {
            let got = probe::tcp_works_within(ns, to, port, PROBE_TIMEOUT)?;
            if got != reachable {
                wrong.push(format!("{to}:{port} reachable={got}, want {reachable}"));
            }
        }
        Ok(if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        })
    })
    .map(drop)
}

fn policy_after_dnat(dataplane: Dataplane) -> Result<()> {
    let opts = LabOptions {
        dataplane,
        ..LabOptions::default()
    };
    with_lab_options(opts, |lab| {
        let services = [
            service("web", WEB, backend(lab, 2, 1)?),
            service("web-local", WEB_LOCAL, backend(lab, 1, 1)?),
            service("other", OTHER, backend(lab, 2, 2)?),
        ];
        kube_proxy::install(lab, &services)?;
        let mut servers = Vec::new();
        for (n, m) in [(2u8, 1u8), (1, 1), (2, 2)] {
            servers.push(EchoServer::start(&lab.pod(n, m)?.ns, TARGET)?);
        }
        let client = lab.pod(1, 2)?.ns.clone();
        let (web_pod, other_pod) = (lab.pod(2, 1)?.ip, lab.pod(2, 2)?.ip);
        expect_reach(
            &client,
            "every Service reachable without policy",
            &[
                (WEB, PORT, true),
                (WEB_LOCAL, PORT, true),
                (OTHER, PORT, true),
            ],
        )?;

        let egress = lab.apply_yaml("client-egress-to-web", EGRESS_TO_WEB)?;
        expect_reach(
            &client,
            "the egress policy judging the backends (web allowed, other refused)",
            &[
                (WEB, PORT, true),
                (WEB_LOCAL, PORT, true),
                (OTHER, PORT, false),
                (web_pod, TARGET, true),
                (other_pod, TARGET, false),
            ],
        )?;
        lab.delete(&egress)?;

        let deny = lab.apply_yaml("web-deny-ingress", DENY_INTO_WEB)?;
        expect_reach(
            &client,
            "web's ingress Deny refusing it through the ClusterIP and directly",
            &[
                (WEB, PORT, false),
                (web_pod, TARGET, false),
                (OTHER, PORT, true),
            ],
        )?;
        lab.delete(&deny)?;
        expect_reach(
            &client,
            "web reachable again once the Deny is deleted",
            &[(WEB, PORT, true)],
        )?;
        ensure!(servers.len() == 3);
        Ok(())
    })
}

#[test]
fn service_policy_sees_the_backend_bpf_mode() -> Result<()> {
    policy_after_dnat(Dataplane::Bpf)
}

#[test]
fn service_policy_sees_the_backend_iptables_mode() -> Result<()> {
    policy_after_dnat(Dataplane::Iptables(Backend::Nft))
}
