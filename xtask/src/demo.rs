//! `cargo xtask demo`: build, bring a lab up, show traffic and counters, the BGP sessions and
//! the routes the ToR learned ([`bgp`]), Services through kube-proxy's rules ([`services`]),
//! apply the example policies and show what they allow and
//! deny ([`policy`]), tear down.

mod bgp;
mod policy;
mod services;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::{Capture, Iperf, Lab, LabOptions, PodInfo, status};

use crate::{build, cmd, felix, paths, pcap};

fn header(title: &str) {
    println!("\n=== {title} ===");
}

pub fn run() -> Result<()> {
    header("build");
    let felix_bin = build::felix()?;

    header("lab up");
    let lab = Lab::up(LabOptions {
        felix: felix_bin.clone(),
        ..LabOptions::default()
    })?;
    status::print_summary(lab.state());
    let node = lab.node(1);
    let p1 = lab.pod(1, 1)?.clone();
    let p2 = lab.pod(1, 2)?.clone();
    let remote = lab.pod(2, 1)?.clone();

    header(&format!("counters on {node} before traffic"));
    print!("{}", felix::counters_table(&felix_bin, &node)?);

    header(&format!(
        "ping {} ({}) -> {} ({}), same host",
        p1.name, p1.ip, p2.name, p2.ip
    ));
    let (stats, text) = lab.ping(&p1, p2.ip, 3)?;
    print!("{text}");
    ensure!(
        stats.received == stats.transmitted,
        "ping lost packets: {stats:?}"
    );

    header(&format!("TCP (iperf3, 1 MB) {} -> {}", p1.name, p2.name));
    print!("{}", lab.tcp_exchange(&p1, &p2)?);

    header(&format!("counters on {node} after traffic"));
    print!("{}", felix::counters_table(&felix_bin, &node)?);

    let pins = paths::pin_dir(&node);
    header(&format!("pinned maps: ls {}", pins.display()));
    print!("{}", cmd::stdout(Command::new("ls").arg("-l").arg(&pins))?);

    let cnt = pins.join("felix_cnt_v1");
    header(&format!("bpftool map dump pinned {}", cnt.display()));
    print!(
        "{}",
        cmd::stdout(
            Command::new("bpftool")
                .args(["map", "dump", "pinned"])
                .arg(&cnt)
        )?
    );

    cross_host(&lab, &p1, &remote)?;
    host_integration(&lab)?;
    bgp::run(&lab)?;
    services::run(&lab)?;
    policy::run(&lab)?;

    header("lab down");
    let id = lab.id().to_owned();
    lab.teardown()?;
    println!("lab {id} removed");
    Ok(())
}

/// Pod to pod across hosts through felix's IPIP, seen on the fabric, and the maps behind it.
fn cross_host(lab: &Lab, p1: &PodInfo, remote: &PodInfo) -> Result<()> {
    let (h1, h2) = (lab.node(1), lab.node(2));
    header(&format!(
        "cross-host ping {} ({}) -> {} ({}), IPIP done in BPF",
        p1.name, p1.ip, remote.name, remote.ip
    ));
    let (stats, text) = lab.ping(p1, remote.ip, 3)?;
    print!("{text}");
    ensure!(
        stats.received == stats.transmitted,
        "cross-host ping lost packets: {stats:?}"
    );

    header(&format!(
        "TCP (iperf3, 2 s) {} -> {} through IPIP",
        p1.name, remote.name
    ));
    let tcp = lab.iperf(p1, remote, Iperf::Tcp { seconds: 2 })?;
    println!("{}", tcp.summary());

    header(&format!(
        "tcpdump -i br0 'ip proto 4' -c 3 in {} while {} pings {}",
        lab.state().fabric_ns,
        p1.name,
        remote.name
    ));
    let cap = Capture::start(
        &lab.state().fabric_ns,
        "br0",
        "ip proto 4",
        3,
        Duration::from_secs(10),
    )?;
    let (stats, _) = lab.ping(p1, remote.ip, 2)?;
    ensure!(stats.received == 2, "ping during the capture: {stats:?}");
    let data = cap.wait()?;
    print!("{}", tcpdump_read(&data)?);
    for frame in pcap::frames(&data)? {
        if let Some(p) = pcap::frame_ipip(frame)? {
            println!(
                "  outer {} > {} proto {} | inner {} > {} proto {}",
                p.outer.src, p.outer.dst, p.outer.proto, p.inner.src, p.inner.dst, p.inner.proto
            );
        }
    }

    for what in ["endpoints", "routes", "conntrack"] {
        header(&format!("felix bpf {what} dump --node {h1}"));
        print!("{}", lab.felix_cli(1, &[what, "dump"])?);
    }
    for node in [&h1, &h2] {
        header(&format!("felix bpf counters dump --node {node}"));
        print!("{}", felix::counters_table(lab.felix_bin(), node)?);
    }
    Ok(())
}

/// What felix did to the host and reported back: its kernel routes on h1, both Nodes' registered
/// addresses, and `felix status` read back from etcd.
fn host_integration(lab: &Lab) -> Result<()> {
    let h1 = lab.node(1);
    // The whole table: `ip route show proto 80` would drop the `proto 80` it filters on.
    header(&format!(
        "ip route show in {h1} (proto 80: programmed by felix)"
    ));
    print!("{}", cmd::ip(&["-n", &h1, "route", "show"])?);
    header("Node addresses registered by felix (spec.bgp in etcd)");
    for n in [1, 2] {
        let node = lab.node_resource(n)?;
        println!("{}: {}", lab.node(n), node["spec"]["bgp"]);
    }
    // The lab's etcd requires a client certificate: the CLI takes calicoctl's variables.
    let tls: Vec<String> = lab
        .etcd_cli_env()
        .iter()
        .map(|(name, path)| format!("{name}={}", path.display()))
        .collect();
    header(&format!(
        "{} nsenter --net=/run/netns/{h1} felix status --etcd-endpoints {}",
        tls.join(" "),
        lab.state().etcd_url
    ));
    print!("{}", lab.felix_status_table(None)?);
    Ok(())
}

/// `tcpdump -nn -r -` over pcap bytes: tcpdump's own one-line decode of each packet.
fn tcpdump_read(pcap: &[u8]) -> Result<String> {
    let mut child = Command::new("tcpdump")
        .args(["-nn", "-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tcpdump -r -")?;
    child
        .stdin
        .take()
        .context("tcpdump stdin")?
        .write_all(pcap)
        .context("feeding tcpdump")?;
    let out = child.wait_with_output().context("tcpdump -r -")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
