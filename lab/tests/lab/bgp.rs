//! BGP in the lab: BIRD on every host driven by bird-conf from etcd, and the ToR router
//! (`<id>-tor`, 10.0.0.253, AS 65001) peering with every host (see `lab::bgp`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lab::pcap;
use lab::{EchoServer, Lab, bgp, bird, names, probe};

use crate::support::{PINGS, PROBE_GAP, TIMING_HANDSHAKE, poll_until, with_lab};

/// Sessions come up about a second after BIRD starts (`connect delay time 1`).
const SESSIONS: Duration = Duration::from_secs(15);
/// A block claimed or released reaches the ToR within this.
const ROUTE_DEADLINE: Duration = Duration::from_secs(5);
/// A policy change reaches the ToR's new flows within this.
const POLICY_DEADLINE: Duration = Duration::from_secs(1);
const ECHO_PORT: u16 = 7007;

/// The BGP sessions host `n` should have: the ToR, and with the mesh on, every other host.
fn expected_sessions(lab: &Lab, n: u8, mesh: bool) -> Vec<String> {
    let mut want = vec![bgp::tor_session()];
    if mesh {
        want.extend(
            lab.state()
                .hosts
                .iter()
                .filter(|h| h.n != n)
                .map(|h| bgp::session_name("Mesh", h.ip)),
        );
    }
    want.sort();
    want
}

/// Waits until every host's BGP sessions are `expected_sessions(mesh)`, all established.
fn wait_sessions(lab: &Lab, mesh: bool, timeout: Duration) -> Result<Duration> {
    let hosts: Vec<u8> = lab.state().hosts.iter().map(|h| h.n).collect();
    let what = format!("sessions with the mesh {}", if mesh { "on" } else { "off" });
    poll_until(timeout, &what, || {
        let mut wrong = Vec::new();
        for &n in &hosts {
            let protocols = lab.host_protocols(n)?;
            let names = bird::bgp_names(&protocols);
            let down: Vec<&str> = protocols
                .iter()
                .filter(|p| p.is_bgp() && !p.established())
                .map(|p| p.name.as_str())
                .collect();
            let want = expected_sessions(lab, n, mesh);
            if names != want || !down.is_empty() {
                wrong.push(format!("h{n}: {names:?} (want {want:?}), down {down:?}"));
            }
        }
        Ok(if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        })
    })
    .map(|((), took)| took)
}

/// Every host's block reaches the ToR's kernel via that host (`proto bird`, nothing else), the
/// hosts' kernels get no BIRD route (Always pool: felix routes remote blocks) although their
/// BIRD learns the other blocks through the mesh; a block claimed for h1 reaches the ToR within
/// seconds, and disappears once released (affinity and block deleted as Calico's IPAM does).
#[test]
fn bgp_tor_learns_each_hosts_block_and_follows_claims_and_releases() -> Result<()> {
    with_lab(|lab| {
        let took = lab.wait_bgp_established(SESSIONS)?;
        println!("BGP sessions established {took:?} after Lab::up returned");
        let hosts = lab.state().hosts.clone();
        let tor_sessions = bird::bgp_names(&lab.tor_protocols()?);
        let want: Vec<String> = hosts.iter().map(|h| bgp::tor_session_of(h.n)).collect();
        ensure!(tor_sessions == want, "ToR sessions {tor_sessions:?}");
        for host in &hosts {
            ensure!(
                bird::bgp_names(&lab.host_protocols(host.n)?)
                    == expected_sessions(lab, host.n, true),
                "h{} sessions",
                host.n
            );
            let took = lab.wait_tor_route(&host.block, Some(host.ip), ROUTE_DEADLINE)?;
            println!("ToR: {} via {} ({took:?})", host.block, host.ip);
        }
        let routes = lab.tor_routes()?;
        ensure!(
            routes.len() == hosts.len(),
            "ToR's BIRD routes: {routes:#?}"
        );
        for (route, host) in routes.iter().zip(&hosts) {
            ensure!(
                route.cidr() == host.block
                    && route.gateway == Some(host.ip)
                    && route.dev.as_deref() == Some("eth0"),
                "ToR route {route:?}, want {} via {} dev eth0",
                host.block,
                host.ip
            );
        }
        for host in &hosts {
            let other = hosts.iter().find(|o| o.n != host.n).context("two hosts")?;
            let mesh = bgp::session_name("Mesh", other.ip);
            poll_until(ROUTE_DEADLINE, "the other block in BIRD", || {
                let out = lab.host_birdc(host.n, &["show", "route", "protocol", &mesh])?;
                Ok(if out.contains(&other.block) {
                    Ok(())
                } else {
                    Err(out)
                })
            })?;
            let in_kernel = lab.host_bird_routes(host.n)?;
            ensure!(
                in_kernel.is_empty(),
                "h{}'s kernel has BIRD routes: {in_kernel:?}",
                host.n
            );
        }

        let h1 = lab.host(1)?.clone();
        let start = Instant::now();
        let block = lab.claim_block(1)?;
        let claimed = start.elapsed();
        ensure!(block != h1.block, "claimed h1's first block again: {block}");
        let took = lab
            .wait_tor_route(&block, Some(h1.ip), ROUTE_DEADLINE)
            .map_err(|e| e.context(export_diagnosis(lab, 1, &block)))?;
        println!("new block {block}: claimed in {claimed:?}, at the ToR {took:?} later");
        let status = lab.bird_conf_status(1)?;
        ensure!(
            status["announced"] == serde_json::json!([h1.block, block]),
            "bird-conf on h1 announces {}",
            status["announced"]
        );

        let start = Instant::now();
        lab.release_block(1, &block)?;
        let released = start.elapsed();
        let took = lab.wait_tor_route(&block, None, ROUTE_DEADLINE)?;
        println!("block {block}: released in {released:?}, gone from the ToR {took:?} later");
        for host in &hosts {
            lab.wait_tor_route(&host.block, Some(host.ip), Duration::ZERO)?;
        }
        let status = lab.bird_conf_status(1)?;
        ensure!(
            status["announced"] == serde_json::json!([h1.block]),
            "bird-conf on h1 announces {}",
            status["announced"]
        );
        ensure!(
            status["install"]["rejected"] == 0,
            "bird-conf status {status}"
        );
        Ok(())
    })
}

/// Why host `n`'s new block `block` did not reach the ToR, from its BIRD: whether its current
/// export filter accepts the block, and what the channel did with its updates.
fn export_diagnosis(lab: &Lab, n: u8, block: &str) -> String {
    let tor = bgp::tor_session();
    let export = lab
        .host_birdc(n, &["show", "route", "export", &tor])
        .unwrap_or_else(|e| format!("{e:#}"));
    let stats = lab
        .host_birdc(n, &["show", "protocols", "all", &tor])
        .unwrap_or_else(|e| format!("{e:#}"));
    let updates = stats
        .lines()
        .find(|l| l.trim_start().starts_with("Export updates"))
        .unwrap_or("(no export statistics)");
    let mut why = format!("h{n}'s {tor}: {}", updates.trim());
    if export.contains(block) {
        why.push_str(&format!(
            "; its current export filter accepts {block}, yet the channel filtered it: BIRD \
             announced the new static route through the old filter and, taking the new \
             filter (a changed CALICO_BLOCKS set) for the same one, never exported it again \
             (see bird-conf/README.md, bird-conf in the lab)"
        ));
    }
    why
}

/// `nodeToNodeMeshEnabled: false` in the BGPConfiguration (`felix apply -f`) removes the mesh
/// sessions from every host's BIRD, leaving the ToR's (and with it the ToR's routes); `true`
/// brings them back, established.
#[test]
fn bgp_mesh_off_and_on_changes_the_sessions() -> Result<()> {
    with_lab(|lab| {
        wait_sessions(lab, true, SESSIONS)?;
        let h2 = lab.host(2)?.clone();
        let before = lab.bird_conf_status(1)?["install"]["reloads"]
            .as_u64()
            .unwrap_or(0);

        let start = Instant::now();
        lab.apply_yaml("bgp-mesh-off", &bgp::bgp_configuration_yaml(false))?;
        let took = wait_sessions(lab, false, Duration::from_secs(10))?;
        println!(
            "mesh off: sessions {:?} on h1, {took:?} after `felix apply` started ({:?} total)",
            bird::bgp_names(&lab.host_protocols(1)?),
            start.elapsed()
        );
        print!("{}", lab.host_birdc(1, &["show", "protocols"])?);
        let learned = lab.host_birdc(1, &["show", "route", &h2.block])?;
        ensure!(
            !learned.contains(&h2.block),
            "h1's BIRD still has h2's block without the mesh:\n{learned}"
        );
        let status = lab.bird_conf_status(1)?;
        ensure!(
            status["peers"] == serde_json::json!([bgp::tor_session()]),
            "bird-conf on h1: {status}"
        );
        ensure!(
            status["install"]["reloads"].as_u64().unwrap_or(0) > before,
            "bird-conf did not reload BIRD: {status}"
        );
        for host in &lab.state().hosts {
            lab.wait_tor_route(&host.block, Some(host.ip), Duration::ZERO)?;
        }

        let start = Instant::now();
        lab.apply_yaml("bgp-mesh-on", &bgp::bgp_configuration_yaml(true))?;
        let took = wait_sessions(lab, true, SESSIONS)?;
        println!("mesh on: sessions established {took:?} after `felix apply` started");
        ensure!(
            start.elapsed() < SESSIONS,
            "the mesh came back only after {:?}",
            start.elapsed()
        );
        poll_until(ROUTE_DEADLINE, "h2's block back in h1's BIRD", || {
            let out = lab.host_birdc(1, &["show", "route", &h2.block])?;
            Ok(if out.contains(&h2.block) {
                Ok(())
            } else {
                Err(out)
            })
        })?;
        Ok(())
    })
}

/// One echo request from the ToR with a 1 s deadline (a new ICMP flow): whether it came back.
fn tor_ping_once(lab: &Lab, to: Ipv4Addr) -> Result<bool> {
    let (stats, _) = lab.ping_from(&lab.tor_ns(), to, 1, &["-W", "1"])?;
    Ok(stats.received == 1)
}

/// h1-p1's ingress: deny from the ToR's address, allow the rest.
const DENY_TOR_TO_H1_P1: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-tor-to-h1-p1
spec:
  selector: app == 'h1-p1'
  types: [Ingress]
  ingress:
    - action: Deny
      source:
        nets: [10.0.0.253/32]
    - action: Allow
"#;

/// The ToR reaches pods on both hosts by the routes it learned, natively: on the fabric the
/// pings are plain ICMP between 10.0.0.253 and the pod (no IPIP). On h1 they pass `uplink_in`
/// to the host stack, which routes them to the pod's cali, where `cali_to_wl` applies the pod's
/// ingress policy: a GlobalNetworkPolicy denying the ToR's address stops new TCP connections
/// and pings from the ToR (counted as `drop_policy`) while h1-p2 still gets through; deleting
/// it lets them through again.
#[test]
fn tor_reaches_pods_natively_subject_to_their_ingress_policy() -> Result<()> {
    with_lab(|lab| {
        let tor = lab.tor_ns();
        let target = lab.pod(1, 1)?.clone();
        let neighbour = lab.pod(1, 2)?.clone();
        for host in lab.state().hosts.clone() {
            lab.wait_tor_route(&host.block, Some(host.ip), SESSIONS)?;
        }
        let remote = lab.pod(2, 1)?;
        let (stats, text) = lab.ping_from(&tor, remote.ip, PINGS, &[])?;
        ensure!(stats.received == PINGS, "ToR -> {}:\n{text}", remote.name);

        let before = lab.counters(1)?;
        let cap = lab.capture(
            &lab.state().fabric_ns,
            "br0",
            "icmp or ip proto 4",
            2 * PINGS,
            Duration::from_secs(10),
        )?;
        let (stats, text) = lab.ping_from(&tor, target.ip, PINGS, &[])?;
        ensure!(stats.received == PINGS, "ToR -> {}:\n{text}", target.name);
        let frames_data = cap.wait()?;
        let (mut requests, mut replies) = (0, 0);
        for (i, frame) in pcap::frames(&frames_data)?.iter().enumerate() {
            let (ip, _) = pcap::frame_ipv4(frame)?
                .with_context(|| format!("frame {i} is not IPv4: {frame:02x?}"))?;
            ensure!(ip.proto == 1, "frame {i} is not plain ICMP: {ip:?}");
            match (ip.src, ip.dst) {
                (s, d) if s == names::TOR_IP && d == target.ip => requests += 1,
                (s, d) if s == target.ip && d == names::TOR_IP => replies += 1,
                _ => bail!("frame {i}: unexpected addresses {ip:?}"),
            }
        }
        ensure!(
            requests == PINGS && replies == PINGS,
            "{requests} requests, {replies} replies on the fabric"
        );
        let after = lab.counters(1)?;
        // Plain IP from the fabric to a pod: judged and redirected by uplink_in, past the host
        // stack; the pod's replies leave the same way (plainly, through the FIB).
        let delivered = after.grew(&before, "eth0", "from_uplink", "forwarded_local");
        let replied = after.grew(&before, &target.cali, "from_workload", "forwarded_native");
        ensure!(
            delivered >= u64::from(PINGS) && replied >= u64::from(PINGS),
            "h1: eth0 forwarded_local grew by {delivered}, {} forwarded_native by {replied}",
            target.cali
        );

        let _echo = EchoServer::start(&target.ns, ECHO_PORT)?;
        ensure!(
            probe::tcp_works(&tor, target.ip, ECHO_PORT)?,
            "no TCP from the ToR before any policy"
        );
        let before = lab.counters(1)?;
        let start = Instant::now();
        let file = lab.apply_yaml("deny-tor-to-h1-p1", DENY_TOR_TO_H1_P1)?;
        let denied = probe::time_until(start, false, Duration::from_secs(5), PROBE_GAP, || {
            probe::tcp_works_within(&tor, target.ip, ECHO_PORT, TIMING_HANDSHAKE)
        })?;
        println!(
            "ToR -> {}: new TCP connections denied {denied}",
            target.name
        );
        ensure!(denied.after < POLICY_DEADLINE, "denied only after {denied}");
        ensure!(!tor_ping_once(lab, target.ip)?, "a ping passed the deny");
        ensure!(
            probe::tcp_works(&neighbour.ns, target.ip, ECHO_PORT)?,
            "{} was denied too",
            neighbour.name
        );
        let dropped = lab
            .counters(1)?
            .grew(&before, "eth0", "from_uplink", "drop_policy");
        ensure!(dropped >= 2, "drop_policy on eth0 grew by {dropped}");

        let start = Instant::now();
        lab.delete(&file)?;
        let resumed = probe::time_until(start, true, Duration::from_secs(5), PROBE_GAP, || {
            probe::tcp_works_within(&tor, target.ip, ECHO_PORT, TIMING_HANDSHAKE)
        })?;
        println!("ToR -> {}: allowed again {resumed}", target.name);
        ensure!(
            resumed.after < POLICY_DEADLINE,
            "resumed only after {resumed}"
        );
        ensure!(tor_ping_once(lab, target.ip)?, "no ping after the delete");
        Ok(())
    })
}
