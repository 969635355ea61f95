//! The demo's BGP part: the sessions of a host's BIRD (configured by bird-conf from etcd) and of
//! the ToR, the routes the ToR learned, and a ping from the ToR to a pod routed natively.

use std::time::Duration;

use anyhow::{Result, ensure};
use lab::{Capture, Lab, bgp, names};

use super::{header, tcpdump_read};
use crate::cmd;

/// Sessions come up about a second after the hosts' BIRD starts.
const SESSIONS: Duration = Duration::from_secs(15);

pub fn run(lab: &Lab) -> Result<()> {
    let (h1, tor) = (lab.node(1), lab.tor_ns());
    header("BGP: waiting for every session (hosts and ToR)");
    let took = lab.wait_bgp_established(SESSIONS)?;
    println!("all established (waited {took:.1?})");
    for host in &lab.state().hosts {
        lab.wait_tor_route(&host.block, Some(host.ip), SESSIONS)?;
    }

    header(&format!(
        "birdc show protocols on {h1} (bird-conf: mesh to the other host, global peer to the ToR)"
    ));
    print!("{}", lab.host_birdc(1, &["show", "protocols"])?);
    header(&format!(
        "birdc show protocols on the ToR {tor} ({}, AS {})",
        names::TOR_IP,
        bgp::TOR_AS
    ));
    print!("{}", lab.tor_birdc(&["show", "protocols"])?);
    header("birdc show route on the ToR: each host's block, learned from that host");
    print!("{}", lab.tor_birdc(&["show", "route"])?);
    header(&format!("ip route show proto bird in {tor}"));
    print!(
        "{}",
        cmd::ip(&["-n", &tor, "route", "show", "proto", "bird"])?
    );
    let in_h1 = cmd::ip(&["-n", &h1, "route", "show", "proto", "bird"])?;
    header(&format!(
        "ip route show proto bird in {h1}: {} (ipipMode Always: felix routes remote blocks)",
        if in_h1.trim().is_empty() {
            "nothing"
        } else {
            "UNEXPECTED"
        }
    ));
    print!("{in_h1}");
    ensure!(in_h1.trim().is_empty(), "BIRD routes in {h1}'s kernel");

    let pod = lab.pod(1, 1)?;
    header(&format!(
        "ping from the ToR to {} ({}), routed natively; tcpdump -i br0 in {}",
        pod.name,
        pod.ip,
        lab.state().fabric_ns
    ));
    let cap = Capture::start(
        &lab.state().fabric_ns,
        "br0",
        "icmp or ip proto 4",
        4,
        Duration::from_secs(10),
    )?;
    let (stats, text) = lab.ping_from(&tor, pod.ip, 2, &[])?;
    print!("{text}");
    ensure!(stats.received == 2, "ping from the ToR: {stats:?}");
    print!("{}", tcpdump_read(&cap.wait()?)?);
    Ok(())
}
