//! IP pool `natOutgoing`, in BPF mode and in iptables mode: the outside (10.0.0.200, no route to
//! the pods) answers a pod on each host (TCP and UDP) only while the pool has `natOutgoing: true`,
//! and then sees the pod's host as the source; pod-to-pod traffic keeps the pod's address.
//! Flipping the pool in etcd takes effect on new flows within seconds.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, ensure};
use lab::felixd::Dataplane;
use lab::iptables::Backend;
use lab::names::OUTSIDE_IP;
use lab::outside::{WhoAmI, tcp_source, udp_source};
use lab::{Lab, LabOptions, PodInfo};

use crate::support::{poll_until, with_lab, with_lab_options};

/// The whoami servers' port.
const PORT: u16 = 8080;
/// How long felix may take to re-sync its nat rules after a pool change.
const NAT_DEADLINE: Duration = Duration::from_secs(5);

/// The sources the outside saw for a TCP connection and a UDP datagram from `pod` (`None`:
/// no answer came back).
fn seen_by_outside(pod: &PodInfo) -> Result<(Option<Ipv4Addr>, Option<Ipv4Addr>)> {
    Ok((
        tcp_source(&pod.ns, OUTSIDE_IP, PORT)?,
        udp_source(&pod.ns, OUTSIDE_IP, PORT)?,
    ))
}

/// Waits until `pod` reaches the outside as `want` says: `Some(host)`: TCP and UDP answered,
/// both seen from `host`; `None`: neither answered.
fn wait_outside(pod: &PodInfo, want: Option<Ipv4Addr>) -> Result<Duration> {
    let what = match want {
        Some(ip) => format!("{} reaching the outside as {ip}", pod.name),
        None => format!("{} cut off from the outside", pod.name),
    };
    let (_, took) = poll_until(NAT_DEADLINE, &what, || {
        let seen = seen_by_outside(pod)?;
        Ok(if seen == (want, want) {
            Ok(())
        } else {
            Err(format!("(TCP, UDP) sources seen: {seen:?}"))
        })
    })?;
    Ok(took)
}

/// The pool as seeded (`natOutgoing: false`): no pod reaches the outside; switched on, a pod on
/// each host does (TCP and UDP, replies back) with its host's address, while a pod on the other
/// host still sees the pod's own; switched off again, new flows are cut off.
fn nat_outgoing_follows_the_pool(lab: &mut Lab) -> Result<()> {
    let _outside = WhoAmI::start(&lab.outside_ns(), PORT)?;
    let pods = [lab.pod(1, 1)?.clone(), lab.pod(2, 1)?.clone()];
    let _in_pod = WhoAmI::start(&pods[1].ns, PORT)?;
    for pod in &pods {
        let seen = seen_by_outside(pod)?;
        ensure!(
            seen == (None, None),
            "natOutgoing false: {} reached the outside: {seen:?}",
            pod.name
        );
    }

    lab.set_pool_nat_outgoing(true)?;
    for pod in &pods {
        let host_ip = lab.host(pod.host)?.ip;
        let took = wait_outside(pod, Some(host_ip))?;
        println!(
            "natOutgoing true: {} reaches the outside as {host_ip} ({took:?})",
            pod.name
        );
    }
    let (from, to) = (&pods[0], &pods[1]);
    let seen = tcp_source(&from.ns, to.ip, PORT)?;
    ensure!(
        seen == Some(from.ip),
        "{} -> {} (pool to pool) seen from {seen:?}, not the pod's {}",
        from.name,
        to.name,
        from.ip
    );

    lab.set_pool_nat_outgoing(false)?;
    for pod in &pods {
        let took = wait_outside(pod, None)?;
        println!("natOutgoing false: {} cut off again ({took:?})", pod.name);
    }
    Ok(())
}

#[test]
fn nat_outgoing_in_bpf_mode() -> Result<()> {
    with_lab(nat_outgoing_follows_the_pool)
}

#[test]
fn nat_outgoing_in_iptables_mode() -> Result<()> {
    let opts = LabOptions {
        dataplane: Dataplane::Iptables(Backend::Nft),
        ..LabOptions::default()
    };
    with_lab_options(opts, nat_outgoing_follows_the_pool)
}
