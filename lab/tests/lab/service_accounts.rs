//! Policy on service accounts in the lab: two client pods that differ only in their service
//! account (the `projectcalico.org/serviceaccount` label and the `ksa.<ns>.<sa>` profile whose
//! `pcsa.` labels kube-controllers writes), one server whose ingress allows one account. The
//! same in BPF and iptables mode.

use std::time::Duration;

use anyhow::{Result, ensure};
use lab::felixd::Dataplane;
use lab::iptables::Backend;
use lab::{EchoServer, Lab, LabOptions, PodInfo, calico, etcd};

use crate::support::{IPERF_PORT, poll_until, with_lab, with_lab_options};

/// How long felix may take to enforce a change (policy, profile or endpoint).
const ENFORCED: Duration = Duration::from_secs(10);

/// The `ksa.` profiles of service accounts `sa-a` (team a) and `sa-b` (team b), as Calico's
/// kube-controllers writes them.
const ACCOUNTS: &str = "apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: ksa.default.sa-a}
spec: {labelsToApply: {pcsa.projectcalico.org/name: sa-a, pcsa.team: a}}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: ksa.default.sa-b}
spec: {labelsToApply: {pcsa.projectcalico.org/name: sa-b, pcsa.team: b}}
";

/// Rewrites `pod`'s WorkloadEndpoint as Calico's CNI plugin writes a pod running as `account`:
/// the label, `serviceAccountName` and the account's profile after the namespace's.
fn run_as(lab: &Lab, pod: &PodInfo, account: &str) -> Result<()> {
    let host = lab.host(pod.host)?;
    let profile = format!("ksa.{}.{account}", lab::names::POD_NAMESPACE);
    let (key, mut wep) =
        calico::workload_endpoint_with_profiles(host, pod, &[calico::NAMESPACE_PROFILE, &profile]);
    wep["metadata"]["labels"]["projectcalico.org/serviceaccount"] = account.into();
    wep["spec"]["serviceAccountName"] = account.into();
    etcd::put_json(lab.state(), &key, &wep)
}

/// A NetworkPolicy letting into `server` TCP [`IPERF_PORT`] from the pods `source` (a rule's
/// `source`, in flow-style YAML) selects; everything else into it is denied.
fn server_policy(server: &PodInfo, source: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: by-account, namespace: default}}
spec:
  selector: app == '{}'
  types: [Ingress]
  ingress:
    - {{action: Allow, protocol: TCP, source: {source}, destination: {{ports: [{IPERF_PORT}]}}}}
",
        calico::app_label(server)
    )
}

/// Waits until `allowed` reaches `server` and then checks that `refused` does not.
fn only_one_gets_through(
    lab: &Lab,
    allowed: &PodInfo,
    refused: &PodInfo,
    server: &PodInfo,
    what: &str,
) -> Result<()> {
    let ((), took) = poll_until(
        ENFORCED,
        &format!("{what}: {} allowed", allowed.name),
        || {
            Ok(if lab.tcp_works(allowed, server, IPERF_PORT)? {
                Ok(())
            } else {
                Err(format!("{} -> {} refused", allowed.name, server.name))
            })
        },
    )?;
    // The refusal of the other pod may lag the allow by a moment (one felix update).
    let ((), _) = poll_until(
        ENFORCED,
        &format!("{what}: {} refused", refused.name),
        || {
            Ok(if lab.tcp_works(refused, server, IPERF_PORT)? {
                Err(format!("{} -> {} still open", refused.name, server.name))
            } else {
                Ok(())
            })
        },
    )?;
    ensure!(
        lab.tcp_works(allowed, server, IPERF_PORT)?,
        "{what}: {} lost its access",
        allowed.name
    );
    println!(
        "{what}: {} -> {} allowed ({took:?}), {} refused",
        allowed.name, server.name, refused.name
    );
    Ok(())
}

/// h1-p1 runs as sa-a, h1-p2 as sa-b; both reach h2-p1 through the namespace's profile until
/// a policy on h2-p1 names sa-a (then only h1-p1 gets in), then one that selects team b by the
/// service account's labels (then only h1-p2).
fn service_accounts_decide(lab: &mut Lab) -> Result<()> {
    let a = lab.pod(1, 1)?.clone();
    let b = lab.pod(1, 2)?.clone();
    let server = lab.pod(2, 1)?.clone();
    let _echo = EchoServer::start(&server.ns, IPERF_PORT)?;
    lab.apply_yaml("accounts", ACCOUNTS)?;
    run_as(lab, &a, "sa-a")?;
    run_as(lab, &b, "sa-b")?;
    for pod in [&a, &b] {
        ensure!(
            lab.tcp_works(pod, &server, IPERF_PORT)?,
            "{} -> {} refused before any policy",
            pod.name,
            server.name
        );
    }

    lab.apply_yaml(
        "by-name",
        &server_policy(&server, "{serviceAccounts: {names: [sa-a]}}"),
    )?;
    only_one_gets_through(lab, &a, &b, &server, "names [sa-a]")?;

    lab.apply_yaml(
        "by-selector",
        &server_policy(&server, "{serviceAccounts: {selector: \"team == 'b'\"}}"),
    )?;
    only_one_gets_through(lab, &b, &a, &server, "selector team == 'b'")
}

#[test]
fn service_account_rules_allow_one_account_and_refuse_the_other() -> Result<()> {
    with_lab(service_accounts_decide)
}

#[test]
fn service_account_rules_in_iptables_mode() -> Result<()> {
    let opts = LabOptions {
        dataplane: Dataplane::Iptables(Backend::Nft),
        ..LabOptions::default()
    };
    with_lab_options(opts, service_accounts_decide)
}
