//! Hostile datastore contents: a WorkloadEndpoint that names another pod's interface, and
//! values that make felix's start-up listing far larger than gRPC's 4 MiB default.

use std::{
    io::Write,
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use lab::{Lab, calico, etcd, names};
use serde_json::json;

use crate::support::{poll_until, with_lab};

/// How long felix may take to apply a datastore change.
const APPLY: Duration = Duration::from_secs(10);

/// felix's `/metrics` on host `n`.
fn metrics(lab: &Lab, n: u8) -> Result<String> {
    let ns = names::host_ns(lab.id(), n);
    let out = lab.exec_in(
        &ns,
        &[
            "curl",
            "-s",
            "--max-time",
            "2",
            "http://127.0.0.1:9091/metrics",
        ],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of the sample `name` (no labels) in `text`.
fn sample(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(str::to_owned)
}

/// A second WorkloadEndpoint naming pod h1-p1's interface (with a valid /32 of its own, a key
/// that sorts first) does not take the pod over: the pod keeps working both ways, the newcomer
/// is reported `error`, counted, and logged once with both keys; once it is deleted the count
/// returns to 0.
#[test]
fn a_second_endpoint_on_a_pods_interface_leaves_the_pod_working() -> Result<()> {
    with_lab(|lab| {
        let host = lab.host(1)?.clone();
        let (p1, p2, remote) = (
            lab.pod(1, 1)?.clone(),
            lab.pod(1, 2)?.clone(),
            lab.pod(2, 1)?.clone(),
        );
        let (_, mut intruder) = calico::workload_endpoint(&host, &p1);
        let name = "aaa-intruder";
        let octets = p1.ip.octets();
        let ip = Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3].wrapping_add(40));
        intruder["metadata"]["name"] = json!(name);
        intruder["spec"]["pod"] = json!(name);
        intruder["spec"]["ipNetworks"] = json!([format!("{ip}/32")]);
        let key = format!(
            "/calico/resources/v3/projectcalico.org/workloadendpoints/{}/{name}",
            names::POD_NAMESPACE
        );
        etcd::put_json(lab.state(), &key, &intruder)?;
        poll_until(APPLY, "the conflict counted", || {
            let text = metrics(lab, 1)?;
            let value = sample(&text, "felix_endpoint_conflicts");
            Ok(match value.as_deref() {
                Some("1") => Ok(()),
                other => Err(format!("felix_endpoint_conflicts {other:?}")),
            })
        })?;
        for (from, to) in [(&p1, &p2), (&p2, &p1), (&p1, &remote), (&remote, &p1)] {
            let (stats, text) = lab.ping(from, to.ip, 3)?;
            ensure!(
                stats.received == 3,
                "{} -> {} with a conflicting endpoint: {text}",
                from.name,
                to.name
            );
        }
        let endpoint = lab
            .endpoints(1)?
            .by_ip(p1.ip)
            .cloned()
            .context("the pod's endpoint is gone from the endpoints map")?;
        ensure!(
            lab.endpoints(1)?.by_ip(ip).is_none(),
            "the intruder's address is programmed: {endpoint:?}"
        );
        let (status, _) = poll_until(APPLY, "the intruder's status", || {
            let dump = lab.felix_status()?;
            Ok(match dump.endpoint(&host.node, name) {
                Some(s) if s.status == "error" => Ok(s.clone()),
                other => Err(format!("{other:?}")),
            })
        })?;
        ensure!(
            status
                .reason
                .as_deref()
                .is_some_and(|r| r.contains(&p1.cali)),
            "{status:?}"
        );
        let log = std::fs::read_to_string(&host.felix_log)?;
        let pod_key = calico::workload_endpoint_key(&host, &p1);
        let warned = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&key) && l.contains(&pod_key))
            .count();
        ensure!(warned == 1, "the conflict logged {warned} times");

        etcd::del(&lab.state().fabric_ns, &lab.state().etcd_url, &key)?;
        poll_until(APPLY, "the conflict gone", || {
            let text = metrics(lab, 1)?;
            let value = sample(&text, "felix_endpoint_conflicts");
            Ok(match value.as_deref() {
                Some("0") => Ok(()),
                other => Err(format!("felix_endpoint_conflicts {other:?}")),
            })
        })?;
        let (stats, text) = lab.ping(&p1, remote.ip, 3)?;
        ensure!(stats.received == 3, "after the delete: {text}");
        Ok(())
    })
}

/// Writes `value` at `key` through etcdctl's standard input (too large for an argument).
fn put_large(lab: &Lab, key: &str, value: &[u8]) -> Result<()> {
    let state = lab.state();
    let mut etcdctl = Command::new("ip");
    etcdctl
        .args(["netns", "exec", &state.fabric_ns, "etcdctl", "--endpoints"])
        .arg(&state.etcd_url)
        .env("ETCDCTL_API", "3");
    if let Some(pki) = lab::etcd_tls::for_url(&state.fabric_ns, &state.etcd_url) {
        etcdctl.args(testkit::etcd::etcdctl_tls_flags(&pki));
    }
    let mut child = etcdctl
        .args(["put", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("etcdctl stdin")?
        .write_all(value)?;
    let status = child.wait()?;
    ensure!(status.success(), "etcdctl put {key}: {status}");
    Ok(())
}

/// Three values of 1.5 MB under `/calico/` (one listing page of 4.5 MB): a restarted felix
/// reaches ready and its pods keep working.
#[test]
fn felix_starts_with_a_listing_larger_than_4_mib() -> Result<()> {
    with_lab(|lab| {
        for i in 0..3 {
            let value = format!("{{\"padding\":\"{}\"}}", "x".repeat(1_500_000));
            put_large(lab, &format!("/calico/lab-large/{i}"), value.as_bytes())?;
        }
        lab.restart_felix(1)?;
        // Ready within seconds of the restart (before, it answered 503 for as long as the
        // values stayed).
        let ns = names::host_ns(lab.id(), 1);
        poll_until(APPLY, "felix ready", || {
            let out = lab.exec_in(
                &ns,
                &[
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "http://127.0.0.1:9099/readiness",
                ],
            )?;
            let code = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok(if code == "200" {
                Ok(())
            } else {
                Err(format!("readiness answered {code}"))
            })
        })?;
        ensure!(
            sample(&metrics(lab, 1)?, "felix_datastore_in_sync").as_deref() == Some("1"),
            "not in sync"
        );
        let (p1, remote) = (lab.pod(1, 1)?.clone(), lab.pod(2, 1)?.clone());
        let (stats, text) = lab.ping(&p1, remote.ip, 3)?;
        ensure!(stats.received == 3, "{text}");
        Ok(())
    })
}
