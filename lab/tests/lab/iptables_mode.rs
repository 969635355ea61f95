//! iptables mode in the lab (`felix run --dataplane iptables`): no BPF program on any host
//! interface, pods routed by the kernel (remote blocks natively, no IPIP on the fabric), the
//! example policies enforced with the same outcomes as BPF mode, and a switch of modes that
//! leaves nothing of the other mode behind.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::felixd::Dataplane;
use lab::iptables::{self, Backend};
use lab::kroutes::{self, Check};
use lab::{EchoServer, Lab, LabOptions, PodInfo, policy};
use lab::{felix, pcap};

use crate::support::{
    IPERF_PORT, PINGS, example_outcomes_wrong, poll_until, with_lab, with_lab_options,
};

/// How long felix may take to program the example policies (or remove them).
const RULES_DEADLINE: Duration = Duration::from_secs(5);

/// Every ping from `from` to `to` answered.
fn ping_all(lab: &Lab, from: &str, to: std::net::Ipv4Addr) -> Result<()> {
    let (stats, text) = lab.ping_from(from, to, PINGS, &[])?;
    ensure!(
        stats.received == PINGS,
        "ping {from} -> {to}: {stats:?}\n{text}"
    );
    Ok(())
}

/// BPF programs attached to host `n`'s interfaces, as the kernel reports them: `bpftool net
/// show` for tc (clsact) and XDP, `felix bpf attached` for TCX (Debian 12's bpftool 7.1 does not
/// list TCX) and XDP.
fn bpf_programs(lab: &Lab, n: u8) -> Result<Vec<String>> {
    let ns = &lab.host(n)?.ns;
    let out = lab.exec_in_checked(ns, &["bpftool", "-j", "net", "show"])?;
    let json: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("bpftool net show: {out}"))?;
    let mut found = Vec::new();
    for section in json.as_array().into_iter().flatten() {
        for (hook, entries) in section.as_object().into_iter().flatten() {
            for entry in entries.as_array().into_iter().flatten() {
                found.push(format!("{hook}: {entry}"));
            }
        }
    }
    found.extend(
        lab.attached(n)?
            .iter()
            .map(|a| format!("{} {}: prog {} {}", a.iface, a.hook, a.prog_id, a.prog_name)),
    );
    Ok(found)
}

/// What iptables mode must look like on host `n` (felix removes BPF mode's state right after
/// its first apply, so this waits a little): no pin tree and no program on any interface,
/// felix's routes with remote blocks plain (no IPIP MTU), its status saying the mode.
fn check_host(lab: &Lab, n: u8, backend: Backend) -> Result<()> {
    let host = lab.host(n)?;
    let pins = Path::new("/sys/fs/bpf/felix").join(&host.node);
    let mode = format!("iptables-{}", backend.name());
    poll_until(RULES_DEADLINE, &format!("h{n} in iptables mode"), || {
        let mut wrong = Vec::new();
        if pins.exists() {
            wrong.push(format!("{} still exists", pins.display()));
        }
        let programs = bpf_programs(lab, n)?;
        if !programs.is_empty() {
            wrong.push(format!("BPF programs: {programs:?}"));
        }
        let routes = kroutes::show(&host.ns)?;
        wrong.extend(kroutes::missing(
            lab.state(),
            host,
            &routes,
            Check::Essential,
        ));
        for other in lab.state().hosts.iter().filter(|o| o.n != n) {
            match kroutes::find(&routes, &other.block) {
                Some(r) if r.is_felix() && r.gateway == Some(other.ip) && r.mtu().is_none() => {}
                r => wrong.push(format!("{} natively via {}: {r:?}", other.block, other.ip)),
            }
        }
        let status = lab.felix_status()?;
        match status.node(&host.node) {
            Some(own) if own.ready && own.dataplane.as_deref() == Some(mode.as_str()) => {}
            own => wrong.push(format!("status {own:?}")),
        }
        Ok(if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        })
    })
    .map(drop)
}

/// Pods talk on one host and across hosts, host h1 reaches a remote pod, and the fabric
/// carries the pods' own packets (no protocol 4).
fn check_native_routing(lab: &Lab) -> Result<()> {
    let p11 = lab.pod(1, 1)?.clone();
    let p12 = lab.pod(1, 2)?.clone();
    let p21 = lab.pod(2, 1)?.clone();
    ping_all(lab, &p11.ns, p12.ip)?;
    let want = 2 * PINGS;
    let cap = lab.capture(
        &lab.state().fabric_ns,
        "br0",
        "net 192.168.0.0/16 or ip proto 4",
        want,
        Duration::from_secs(10),
    )?;
    ping_all(lab, &p11.ns, p21.ip)?;
    let data = cap.wait()?;
    let frames = pcap::frames(&data)?;
    ensure!(
        frames.len() == usize::try_from(want)?,
        "captured {frames:?}"
    );
    for (i, frame) in frames.iter().enumerate() {
        let (header, _) = pcap::frame_ipv4(frame)?.context("not IPv4")?;
        let pair = (header.src, header.dst);
        ensure!(
            header.proto == 1 && (pair == (p11.ip, p21.ip) || pair == (p21.ip, p11.ip)),
            "frame {i} is not a plain ICMP packet between the pods: {header:?}"
        );
    }
    ping_all(lab, &lab.host(1)?.ns, p21.ip)
}

/// Waits until host `n`'s rules hold (`present`) or lack every one of `needles` (comments of
/// felix's rules name the policy and rule they come from).
fn wait_rules(lab: &Lab, n: u8, backend: Backend, needles: &[&str], present: bool) -> Result<()> {
    let ns = lab.host(n)?.ns.clone();
    let verb = if present { "programmed" } else { "removed" };
    poll_until(
        RULES_DEADLINE,
        &format!("{needles:?} {verb} on h{n}"),
        || {
            let save = iptables::save(&ns, backend)?;
            let done = needles.iter().all(|s| save.contains(s) == present);
            Ok(if done { Ok(()) } else { Err(save) })
        },
    )
    .map(drop)
}

/// examples/policy/*.yaml: the outcomes BPF mode gives (`EXAMPLE_OUTCOMES`), then everything
/// allowed again once the files are deleted.
fn check_examples(lab: &Lab, backend: Backend) -> Result<()> {
    let _echo = [
        EchoServer::start(&lab.pod(2, 1)?.ns, IPERF_PORT)?,
        EchoServer::start(&lab.pod(2, 2)?.ns, IPERF_PORT)?,
    ];
    let h1 = [
        "policy deny-icmp-from-h1-p1 ",
        "policy security.isolate-h2-p2 ",
    ];
    let h2 = [
        "policy default/allow-iperf3 ",
        "policy security.isolate-h2-p2 ",
        "end of tier default (ingress)",
    ];
    let files = policy::examples()?;
    for file in &files {
        print!("{}", lab.apply(file)?);
    }
    wait_rules(lab, 1, backend, &h1, true)?;
    wait_rules(lab, 2, backend, &h2, true)?;
    let wrong = example_outcomes_wrong(lab, false)?;
    ensure!(wrong.is_empty(), "with the examples: {wrong:#?}");
    for file in files.iter().rev() {
        print!("{}", lab.delete(file)?);
    }
    wait_rules(lab, 1, backend, &h1, false)?;
    wait_rules(lab, 2, backend, &h2, false)?;
    let wrong = example_outcomes_wrong(lab, true)?;
    ensure!(wrong.is_empty(), "after deleting the examples: {wrong:#?}");
    Ok(())
}

/// `/metrics` without BPF maps: the mode, readiness and datastore families; health answers.
fn check_metrics(lab: &Lab, backend: Backend) -> Result<()> {
    let ns = &lab.host(1)?.ns;
    let get = |url: &str| lab.exec_in_checked(ns, &["curl", "-sf", url]);
    let metrics = get("http://127.0.0.1:9091/metrics")?;
    let mode = format!("felix_dataplane{{mode=\"iptables-{}\"}} 1", backend.name());
    for needle in [mode.as_str(), "felix_ready 1", "felix_datastore_in_sync 1"] {
        ensure!(metrics.contains(needle), "no {needle:?} in:\n{metrics}");
    }
    ensure!(
        !metrics.contains("felix_map_capacity"),
        "map families without maps:\n{metrics}"
    );
    get("http://127.0.0.1:9099/readiness").map(drop)
}

/// Restarts host h1's felix in BPF mode: felix's chains and ipsets are gone from both
/// backends, its programs are attached again (the restart waits for that) and the remote
/// block routes leave room for IPIP again.
fn switch_h1_to_bpf(lab: &mut Lab) -> Result<()> {
    lab.restart_felix_as(1, Dataplane::Bpf)?;
    let h1 = lab.host(1)?.clone();
    poll_until(RULES_DEADLINE, "h1 back in BPF mode", || {
        let mut wrong = iptables::leftovers(&h1.ns)?;
        let routes = kroutes::show(&h1.ns)?;
        wrong.extend(kroutes::missing(lab.state(), &h1, &routes, Check::Exact));
        Ok(if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        })
    })?;
    let p12: PodInfo = lab.pod(1, 2)?.clone();
    ping_all(lab, &lab.pod(1, 1)?.ns, p12.ip)?;
    let ifaces = felix::ifaces(lab.felix_bin(), &h1.node)?;
    ensure!(ifaces.uplink_attached("eth0"), "{ifaces:?}");
    Ok(())
}

/// A BPF-mode lab whose felixes restart in iptables mode (nft): the BPF programs are detached
/// and unpinned, pods talk through native routing, the example policies decide as in BPF mode,
/// metrics and status name the mode; h1 then goes back to BPF mode and keeps no rule.
#[test]
fn iptables_mode_nft_routes_natively_enforces_the_examples_and_switches_back() -> Result<()> {
    with_lab(|lab| {
        let nft = Dataplane::Iptables(Backend::Nft);
        let programs = bpf_programs(lab, 1)?;
        ensure!(!programs.is_empty(), "BPF mode: no program seen on h1");
        for n in [1, 2] {
            lab.restart_felix_as(n, nft)?;
        }
        for n in [1, 2] {
            check_host(lab, n, Backend::Nft)?;
        }
        check_native_routing(lab)?;
        check_metrics(lab, Backend::Nft)?;
        check_examples(lab, Backend::Nft)?;
        switch_h1_to_bpf(lab)
    })
}

/// The same in a lab started in iptables mode with the legacy backend.
#[test]
fn iptables_mode_legacy_routes_natively_enforces_the_examples_and_switches_back() -> Result<()> {
    let opts = LabOptions {
        dataplane: Dataplane::Iptables(Backend::Legacy),
        ..LabOptions::default()
    };
    with_lab_options(opts, |lab| {
        for n in [1, 2] {
            check_host(lab, n, Backend::Legacy)?;
        }
        check_native_routing(lab)?;
        check_examples(lab, Backend::Legacy)?;
        switch_h1_to_bpf(lab)
    })
}
