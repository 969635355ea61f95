//! BPF mode with the IP pool's `ipipMode` `Never` (native routing): pods on both hosts talk
//! (ping, TCP) with no IP protocol 4 on the fabric, felix's routes say `native`, the kernel's
//! remote-block routes carry no tunnel MTU, the receiving pod's ingress policy still stops new
//! flows (now at `cali_to_wl`), and a live switch of the pool's mode in etcd re-programs both
//! hosts.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::calico::IpipMode;
use lab::kroutes::{self, Check};
use lab::pcap;
use lab::{EchoServer, Iperf, Lab, LabOptions, PodInfo, policy};

use crate::support::{IPERF_PORT, PINGS, poll_until, with_lab, with_lab_options};

/// How long felix may take to re-program routes after a pool change.
const ROUTES_DEADLINE: Duration = Duration::from_secs(5);
/// How long new flows may take to be denied (or allowed again) after a policy change.
const POLICY_DEADLINE: Duration = Duration::from_secs(2);

/// Waits until both hosts' routes map shows the other's block with `encap` and the pool's mode,
/// and their kernels hold felix's routes as that mode wants them (MTU or not).
fn wait_programmed(lab: &Lab, mode: IpipMode) -> Result<Duration> {
    let encap = if mode.encapsulates_in_lab() {
        "ipip"
    } else {
        "native"
    };
    let (_, took) = poll_until(
        ROUTES_DEADLINE,
        &format!("remote blocks {encap} ({})", mode.as_str()),
        || {
            let mut wrong = Vec::new();
            for (n, other) in [(1, 2), (2, 1)] {
                let block = lab.host(other)?.block.clone();
                let routes = lab.routes(n)?;
                let route = routes.by_cidr(&block);
                let ok = route.is_some_and(|r| {
                    r.kind == "remote_block"
                        && r.encap.as_deref() == Some(encap)
                        && r.ipip_mode.as_deref() == Some(mode.as_str())
                });
                if !ok {
                    wrong.push(format!("h{n}: {block} is {route:?}"));
                }
                let host = lab.host(n)?.clone();
                let kernel = kroutes::show(&host.ns)?;
                wrong.extend(kroutes::missing(lab.state(), &host, &kernel, Check::Exact));
            }
            Ok(if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            })
        },
    )?;
    Ok(took)
}

/// Pings `to` from `from` and checks the fabric: `2 * PINGS` frames of the pods' addresses or
/// protocol 4, all plain ICMP between the pods (`ipip == false`) or all IPIP carrying it.
fn ping_and_check_fabric(lab: &Lab, from: &PodInfo, to: &PodInfo, ipip: bool) -> Result<()> {
    let want = 2 * PINGS;
    let cap = lab.capture(
        &lab.state().fabric_ns,
        "br0",
        "net 192.168.0.0/16 or ip proto 4",
        want,
        Duration::from_secs(10),
    )?;
    let (stats, text) = lab.ping(from, to.ip, PINGS)?;
    ensure!(
        stats.received == PINGS,
        "ping {} -> {}: {stats:?}\n{text}",
        from.name,
        to.name
    );
    let data = cap.wait()?;
    let frames = pcap::frames(&data)?;
    ensure!(
        frames.len() == usize::try_from(want)?,
        "captured {} frames, expected {want}",
        frames.len()
    );
    for (i, frame) in frames.iter().enumerate() {
        let (outer, _) = pcap::frame_ipv4(frame)?.context("not IPv4")?;
        let inner = if ipip {
            ensure!(
                outer.proto == pcap::IPPROTO_IPIP,
                "frame {i} is not IPIP: {outer:?}"
            );
            pcap::frame_ipip(frame)?.context("not IPIP")?.inner
        } else {
            ensure!(outer.proto == 1, "frame {i} is not plain ICMP: {outer:?}");
            outer
        };
        let pair = (inner.src, inner.dst);
        ensure!(
            pair == (from.ip, to.ip) || pair == (to.ip, from.ip),
            "frame {i} is not between the pods: {inner:?}"
        );
    }
    Ok(())
}

/// The lab with `ipipMode: Never`: ping and TCP across hosts without a single IPIP packet on the
/// fabric (a capture of protocol 4 runs through all of it), counted `forwarded_native` on the
/// sender's `cali*`; then `default-deny.yaml` (ingress of h2-p1) stops new connections and pings
/// from h1-p1, counted `drop_policy` where the plain packets reach h2-p1 (`cali_to_wl`), and its
/// deletion lets them through again.
#[test]
fn ipip_mode_never_routes_pods_natively_under_their_policy() -> Result<()> {
    let opts = LabOptions {
        pool_ipip_mode: IpipMode::Never,
        ..LabOptions::default()
    };
    with_lab_options(opts, |lab| {
        wait_programmed(lab, IpipMode::Never)?;
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();

        let ipip = lab.capture(
            &lab.state().fabric_ns,
            "br0",
            "ip proto 4",
            1,
            Duration::from_secs(30),
        )?;
        let before = lab.counters(1)?;
        ping_and_check_fabric(lab, &p1, &remote, false)?;
        let tcp = lab.iperf(&p1, &remote, Iperf::Tcp { seconds: 2 })?;
        ensure!(
            tcp.sent_bytes > 0 && tcp.received_bytes > 0,
            "TCP {} -> {}: {}",
            p1.name,
            remote.name,
            tcp.summary()
        );
        println!(
            "native TCP {} -> {}: {}",
            p1.name,
            remote.name,
            tcp.summary()
        );
        let ipip_frames = pcap::frames(&ipip.stop()?)?.len();
        ensure!(
            ipip_frames == 0,
            "{ipip_frames} IPIP frame(s) on the fabric with ipipMode Never"
        );
        let after = lab.counters(1)?;
        let native = after.grew(&before, &p1.cali, "from_workload", "forwarded_native");
        ensure!(
            native >= u64::from(PINGS),
            "h1 ({}, from_workload, forwarded_native) grew by {native}",
            p1.cali
        );
        let encapsulated = after.grew(&before, &p1.cali, "from_workload", "encapsulated");
        ensure!(encapsulated == 0, "{encapsulated} packets encapsulated");

        let _echo = EchoServer::start(&remote.ns, IPERF_PORT)?;
        ensure!(
            lab.tcp_works(&p1, &remote, IPERF_PORT)?,
            "no TCP {} -> {}:{IPERF_PORT} before the deny",
            p1.name,
            remote.name
        );
        let file = policy::example("default-deny.yaml")?;
        let drops_before = lab.counters(2)?;
        lab.apply(&file)?;
        let (_, took) = poll_until(POLICY_DEADLINE, "new flows to h2-p1 denied", || {
            Ok(if lab.tcp_works(&p1, &remote, IPERF_PORT)? {
                Err("a new connection got through".to_owned())
            } else {
                Ok(())
            })
        })?;
        println!("native: new connections denied {took:?} after `felix apply`");
        ensure!(!lab.ping_once(&p1, &remote)?, "a new ping got through");
        // Judged where the plain packets arrive: h2's uplink.
        let drops = lab
            .counters(2)?
            .grew(&drops_before, "eth0", "from_uplink", "drop_policy");
        ensure!(
            drops >= 2,
            "h2 (eth0, from_uplink, drop_policy) grew by {drops}"
        );
        lab.delete(&file)?;
        poll_until(POLICY_DEADLINE, "new flows to h2-p1 allowed", || {
            Ok(if lab.tcp_works(&p1, &remote, IPERF_PORT)? {
                Ok(())
            } else {
                Err("still denied".to_owned())
            })
        })?;
        ensure!(lab.ping_once(&p1, &remote)?, "ping after the delete");
        Ok(())
    })
}

/// The default lab (`ipipMode: Always`) switched to `Never` in etcd, back, then to
/// `CrossSubnet`: within seconds both hosts' routes say `native` (`ipip`, `native`), the kernels'
/// remote-block routes lose (regain, lose) the tunnel MTU, and the fabric carries plain ICMP
/// (IPIP, plain ICMP) between the pods.
#[test]
fn switching_the_pool_ipip_mode_in_etcd_reprograms_both_hosts() -> Result<()> {
    with_lab(|lab| {
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        ping_and_check_fabric(lab, &p1, &remote, true)?;

        for (mode, ipip) in [
            (IpipMode::Never, false),
            (IpipMode::Always, true),
            // Both hosts are on 10.0.0.0/24: native.
            (IpipMode::CrossSubnet, false),
        ] {
            lab.set_pool_ipip_mode(mode)?;
            let took = wait_programmed(lab, mode)?;
            println!(
                "ipipMode {}: both hosts re-programmed within {took:?}",
                mode.as_str()
            );
            ping_and_check_fabric(lab, &p1, &remote, ipip)?;
        }
        Ok(())
    })
}
