//! Lab tests: a real two-host lab (namespaces, etcd, felix, BIRD) on this machine. Root only;
//! run with `cargo xtask test --tier lab` (which builds felix and bird-conf first). The BGP tests
//! are in `lab/bgp.rs`.
#![cfg(feature = "lab-tests")]

#[path = "lab/bgp.rs"]
mod bgp;
#[path = "lab/cni.rs"]
mod cni;
#[path = "lab/config.rs"]
mod config;
#[path = "lab/dataplane_bench.rs"]
mod dataplane_bench;
#[path = "lab/iptables_mode.rs"]
mod iptables_mode;
#[path = "lab/native.rs"]
mod native;
#[path = "lab/ops.rs"]
mod ops;
#[path = "lab/xdp_throughput.rs"]
mod xdp_throughput;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use xtask::felix::policy::{Query, RuleRef};
use xtask::lab::kroutes::{self, Check};
use xtask::lab::{
    EchoServer, Iperf, Lab, LabOptions, LabState, calico, felixd, ipam, net, policy, probe, proc,
    state, teardown, traffic,
};
use xtask::{cmd, felix, pcap};

const PINGS: u32 = 3;

fn lab_ids() -> BTreeSet<String> {
    state::list().into_iter().map(|(id, _)| id).collect()
}

fn assert_gone(id: &str, processes: &[proc::ProcRecord]) {
    let left = teardown::leftovers(id, processes);
    assert!(left.is_empty(), "lab {id} left behind: {left:?}");
}

#[test]
fn same_host_pods_talk_and_counters_grow() -> Result<()> {
    let lab = Lab::up(LabOptions::default())?;
    let node = lab.node(1);
    let p1 = lab.pod(1, 1)?.clone();
    let p2 = lab.pod(1, 2)?.clone();

    let before = felix::counters(lab.felix_bin(), &node)?;
    let (stats, text) = lab.ping(&p1, p2.ip, PINGS)?;
    assert_eq!(stats.transmitted, PINGS, "{text}");
    assert_eq!(
        stats.received, PINGS,
        "ping {} -> {} lost packets:\n{text}",
        p1.name, p2.name
    );
    let report = lab.tcp_exchange(&p1, &p2)?;
    assert!(
        report.contains("receiver"),
        "no iperf3 receiver summary:\n{report}"
    );
    let after = felix::counters(lab.felix_bin(), &node)?;

    // Requests leave p1 through its cali, replies leave p2 through its own.
    for (pod, what) in [(&p1, "echo requests"), (&p2, "echo replies")] {
        let grew = after
            .packets(&pod.cali, "from_workload")
            .saturating_sub(before.packets(&pod.cali, "from_workload"));
        assert!(
            grew >= u64::from(PINGS),
            "from_workload on {} ({}) grew by {grew}, expected >= {PINGS} {what}; after: {after:?}",
            pod.cali,
            pod.name
        );
    }

    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    let mut what: Vec<&str> = processes.iter().map(|p| p.what.as_str()).collect();
    what.sort();
    ensure!(
        what == [
            "bird h1",
            "bird h2",
            "bird tor",
            "bird-conf h1",
            "bird-conf h2",
            "etcd",
            "felix h1",
            "felix h2"
        ],
        "expected etcd, the ToR's BIRD and felix, BIRD and bird-conf per host, got {processes:?}"
    );
    ensure!(
        processes.iter().all(proc::ProcRecord::is_ours_and_running),
        "not all running: {processes:?}"
    );
    lab.teardown()?;
    assert_gone(&id, &processes);
    Ok(())
}

/// A lab left behind by a crashed run (`lab up` from another process, then its felix killed -9)
/// is cleaned by the next `Lab::up`.
#[test]
fn stale_lab_is_cleaned_by_next_up() -> Result<()> {
    let before = lab_ids();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lab", "up", "--no-build"])
        .output()
        .context("running xtask lab up")?;
    ensure!(
        out.status.success(),
        "xtask lab up failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let new: Vec<String> = lab_ids().difference(&before).cloned().collect();
    ensure!(new.len() == 1, "expected one new lab, found {new:?}");
    let stale_id = &new[0];
    let stale = LabState::load(&xtask::paths::state_dir(stale_id))?;
    ensure!(stale.owner.is_none(), "a `lab up` lab has no owner");
    // The crash: felix dies without cleaning up.
    for p in stale
        .processes
        .iter()
        .filter(|p| p.what.starts_with("felix"))
    {
        ensure!(
            p.is_ours_and_running(),
            "{} should run before the crash",
            p.what
        );
        let status = Command::new("kill")
            .args(["-9", &p.pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -9 {}", p.pid);
    }

    let lab = Lab::up(LabOptions::default())?;
    assert_ne!(lab.id(), stale_id.as_str());
    assert_gone(stale_id, &stale.processes);

    let (stats, text) = lab.ping(lab.pod(1, 1)?, lab.pod(1, 2)?.ip, 1)?;
    assert_eq!(
        stats.received, 1,
        "new lab works after the cleanup:\n{text}"
    );
    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    drop(lab); // the guard tears down
    assert_gone(&id, &processes);
    Ok(())
}

/// Brings a lab up and checks, after the test body, that its teardown leaves nothing behind.
fn with_lab(body: impl FnOnce(&mut Lab) -> Result<()>) -> Result<()> {
    with_lab_options(LabOptions::default(), body)
}

/// [`with_lab`] with `opts`.
fn with_lab_options(opts: LabOptions, body: impl FnOnce(&mut Lab) -> Result<()>) -> Result<()> {
    let mut lab = Lab::up(opts)?;
    let result = body(&mut lab);
    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    if let Err(e) = &result {
        // First, so that a log truncated at its end still shows why the test failed.
        eprintln!("=== test failed: {e:#}");
        for rec in &processes {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                rec.what,
                rec.log.display(),
                proc::log_tail(&rec.log, 40)
            );
        }
    }
    lab.teardown()?;
    assert_gone(&id, &processes);
    result
}

/// Pod h1-p1 to pod h2-p1 (ping, TCP, UDP) and host h1 to pod h2-p1, all through felix's IPIP;
/// the conntrack table of h1 then holds the TCP flow with packets both ways.
#[test]
fn cross_host_pods_and_host_talk_through_ipip() -> Result<()> {
    with_lab(|lab| {
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        let h1 = lab.host(1)?.clone();

        let (stats, text) = lab.ping(&p1, remote.ip, PINGS)?;
        ensure!(
            stats.transmitted == PINGS && stats.received == PINGS,
            "ping {} -> {}: {stats:?}\n{text}",
            p1.name,
            remote.name
        );

        let tcp = lab.iperf(&p1, &remote, Iperf::Tcp { seconds: 2 })?;
        ensure!(
            tcp.sent_bytes > 0 && tcp.received_bytes > 0,
            "TCP {} -> {}: {}",
            p1.name,
            remote.name,
            tcp.summary()
        );
        println!("TCP {} -> {}: {}", p1.name, remote.name, tcp.summary());

        // The conntrack entries of the iperf3 flows (control and data) right after the exchange.
        let ct = lab.conntrack(1)?;
        let flows = ct.flows("tcp", p1.ip, remote.ip, 5201);
        ensure!(
            flows
                .iter()
                .any(|f| f.packets_forward > 0 && f.packets_reverse > 0),
            "no conntrack entry tcp {} -> {}:5201 with packets both ways on {}: {:?}",
            p1.ip,
            remote.ip,
            lab.node(1),
            ct.conntrack
        );

        let udp = lab.iperf(
            &p1,
            &remote,
            Iperf::Udp {
                seconds: 1,
                mbit: 10,
            },
        )?;
        ensure!(
            udp.received_datagrams.unwrap_or(0) > 0,
            "UDP {} -> {}: receiver got nothing: {}",
            p1.name,
            remote.name,
            udp.summary()
        );
        println!("UDP {} -> {}: {}", p1.name, remote.name, udp.summary());

        // Host-originated: the kernel routes it via 10.0.0.2, the uplink egress program wraps it.
        let before = lab.counters(1)?;
        let (stats, text) = lab.ping_from(&h1.ns, remote.ip, PINGS, &[])?;
        ensure!(
            stats.received == PINGS,
            "ping host {} -> {}: {stats:?}\n{text}",
            h1.node,
            remote.name
        );
        let after = lab.counters(1)?;
        let grew = after.grew(&before, "eth0", "to_uplink", "encapsulated");
        ensure!(
            grew >= u64::from(PINGS),
            "h1 (eth0, to_uplink, encapsulated) grew by {grew}, expected >= {PINGS}"
        );
        Ok(())
    })
}

/// The fabric sees IP protocol 4 with the host IPs outside and the pod IPs inside, checksums
/// right; h1 counts the encapsulations, h2 the decapsulations.
#[test]
fn fabric_capture_shows_ipip_with_host_and_pod_addresses() -> Result<()> {
    with_lab(|lab| {
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        let (h1, h2) = (lab.host(1)?.clone(), lab.host(2)?.clone());
        let before1 = lab.counters(1)?;
        let before2 = lab.counters(2)?;

        // Requests and replies: 2 * PINGS IPIP packets cross br0.
        let want = 2 * PINGS;
        let cap = lab.capture(
            &lab.state().fabric_ns,
            "br0",
            "ip proto 4",
            want,
            Duration::from_secs(10),
        )?;
        let (stats, text) = lab.ping(&p1, remote.ip, PINGS)?;
        ensure!(stats.received == PINGS, "ping: {stats:?}\n{text}");
        let data = cap.wait()?;
        let frames = pcap::frames(&data)?;
        ensure!(
            frames.len() == usize::try_from(want)?,
            "captured {} IPIP frames, expected {want}",
            frames.len()
        );
        let mut requests = 0;
        let mut replies = 0;
        for (i, frame) in frames.iter().enumerate() {
            let pkt = pcap::frame_ipip(frame)?
                .with_context(|| format!("frame {i} is not IPv4 protocol 4: {frame:02x?}"))?;
            ensure!(pkt.outer.proto == pcap::IPPROTO_IPIP);
            ensure!(
                pkt.outer.checksum_ok && pkt.inner.checksum_ok,
                "frame {i}: bad IPv4 checksum: {pkt:?}"
            );
            ensure!(
                usize::from(pkt.outer.total_len) == usize::from(pkt.inner.total_len) + 20,
                "frame {i}: outer length is not inner + 20: {pkt:?}"
            );
            ensure!(
                pkt.inner.proto == 1,
                "frame {i}: inner is not ICMP: {pkt:?}"
            );
            let outward = (pkt.outer.src, pkt.outer.dst, pkt.inner.src, pkt.inner.dst);
            if outward == (h1.ip, h2.ip, p1.ip, remote.ip) {
                requests += 1;
            } else if outward == (h2.ip, h1.ip, remote.ip, p1.ip) {
                replies += 1;
            } else {
                anyhow::bail!("frame {i}: unexpected addresses: {pkt:?}");
            }
        }
        ensure!(
            requests == PINGS && replies == PINGS,
            "{requests} requests and {replies} replies on the fabric, expected {PINGS} each"
        );

        let after1 = lab.counters(1)?;
        let after2 = lab.counters(2)?;
        let enc = after1.grew(&before1, &p1.cali, "from_workload", "encapsulated");
        let dec = after2.grew(&before2, "eth0", "from_uplink", "decapsulated");
        ensure!(
            enc >= u64::from(PINGS),
            "h1 ({}, from_workload, encapsulated) grew by {enc}",
            p1.cali
        );
        ensure!(
            dec >= u64::from(PINGS),
            "h2 (eth0, from_uplink, decapsulated) grew by {dec}"
        );
        Ok(())
    })
}

/// A pod sending from an address that is not its own (one of its host's block that felix did not
/// assign) gets no reply, the packets are counted as `drop_spoofed` on its cali, and none
/// reaches the destination pod.
#[test]
fn spoofed_source_is_dropped_and_counted() -> Result<()> {
    with_lab(|lab| {
        let p1 = lab.pod(1, 1)?.clone();
        let p2 = lab.pod(1, 2)?.clone();
        let spoofed = ipam::nth_address(&lab.host(1)?.block, 50)?.to_string();
        let spoofed = spoofed.as_str();
        lab.exec_in_checked(
            &p1.ns,
            &["ip", "addr", "add", &format!("{spoofed}/32"), "dev", "eth0"],
        )?;
        let before = lab.counters(1)?;
        let cap = lab.capture(
            &p2.ns,
            "eth0",
            &format!("src host {spoofed}"),
            1,
            Duration::from_secs(10),
        )?;
        let (stats, text) = lab.ping_from(&p1.ns, p2.ip, PINGS, &["-I", spoofed])?;
        // Replies would have come within ping's own wait; give stragglers a moment.
        std::thread::sleep(Duration::from_millis(300));
        let seen = pcap::frames(&cap.stop()?)?.len();
        let after = lab.counters(1)?;

        ensure!(stats.transmitted == PINGS, "{text}");
        ensure!(
            stats.received == 0,
            "spoofed ping got replies: {stats:?}\n{text}"
        );
        let dropped = after.grew(&before, &p1.cali, "from_workload", "drop_spoofed");
        ensure!(
            dropped >= u64::from(PINGS),
            "({}, from_workload, drop_spoofed) grew by {dropped}, expected >= {PINGS}",
            p1.cali
        );
        ensure!(
            seen == 0,
            "{seen} packet(s) from {spoofed} reached {}",
            p2.name
        );
        // Control: the real address still works.
        let (stats, text) = lab.ping(&p1, p2.ip, 1)?;
        ensure!(stats.received == 1, "ping from the pod's own IP: {text}");
        Ok(())
    })
}

/// How long felix may take to attach or detach the uplink's XDP after a deny list edit (it
/// checks every second; `felix bpf xdp-deny` itself waits up to 3 s).
const XDP_BOUND: Duration = Duration::from_secs(3);

/// The `ethtool -k` features of `dev` in `ns` that an XDP program on the veth's peer turns off
/// (`veth_xdp_set` clears NETIF_F_GSO_SOFTWARE from the peer): whether TCP segmentation is on.
fn tcp_segmentation(ns: &str, dev: &str) -> Result<bool> {
    let text = cmd::stdout(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-k", dev]))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("tx-tcp-segmentation:"))
        .with_context(|| format!("no tx-tcp-segmentation in ethtool -k {dev}:\n{text}"))?;
    Ok(line.starts_with("tx-tcp-segmentation: on"))
}

/// Host `n`'s XDP state as its felix reports it in `felix status`.
fn status_xdp(lab: &Lab, n: u8) -> Result<Option<String>> {
    let node = lab.node(n);
    Ok(lab
        .felix_status()?
        .nodes
        .into_iter()
        .find(|s| s.node == node)
        .and_then(|s| s.xdp))
}

/// The uplink's XDP prefilter follows h2's deny list: with the list empty (as the lab starts) no
/// XDP program is on either uplink and the fabric side of each uplink veth keeps TCP
/// segmentation (an XDP program on a veth turns its peer's software GSO off, which cost
/// cross-host TCP about two thirds of its throughput). Adding an entry attaches XDP within
/// [`XDP_BOUND`]; the denied source (host h1) is dropped at XDP (counted) and reaches neither the
/// TC program nor the pod. A second entry removed again keeps XDP; removing the last one detaches
/// it, the peer gets its GSO back and the same ping passes. FelixConfiguration `xdpEnabled:
/// false` (felix restarts) keeps XDP off whatever the list holds, and status says `disabled`.
#[test]
fn xdp_denied_source_is_dropped_before_the_pod() -> Result<()> {
    with_lab(|lab| {
        let (h1, h2) = (lab.host(1)?.clone(), lab.host(2)?.clone());
        let fabric = lab.state().fabric_ns.clone();
        let remote = lab.pod(2, 1)?.clone();
        let deny = format!("{}/32", h1.ip);
        // Pod counters that a delivery would move (IPv6 noise from the veth itself aside).
        let delivered = |c: &felix::CountersDump| {
            c.packets_except(&remote.cali, "to_workload", &["drop_unsupported_l3"])
        };

        for n in [1, 2] {
            let dump = felix::ifaces(lab.felix_bin(), &lab.node(n))?;
            ensure!(
                dump.uplink_xdp("eth0") == Some("none"),
                "h{n}: XDP attached with an empty deny list: {dump:?}"
            );
            let link = ip_in(&lab.host(n)?.ns, &["-d", "link", "show", "eth0"])?;
            ensure!(!link.contains("prog/xdp"), "h{n} eth0 has XDP: {link}");
            ensure!(
                tcp_segmentation(&fabric, &format!("h{n}"))?,
                "the fabric side of h{n}'s uplink lost TCP segmentation without XDP"
            );
        }
        poll_until(Duration::from_secs(10), "status says idle", || {
            let xdp = status_xdp(lab, 2)?;
            Ok(if xdp.as_deref() == Some("idle") {
                Ok(())
            } else {
                Err(format!("h2 status xdp {xdp:?}"))
            })
        })?;

        lab.xdp_deny(2, &deny, true)?;
        let took = lab.wait_uplink_xdp(2, true, XDP_BOUND)?;
        println!("XDP attached on h2 {took:?} after `felix bpf xdp-deny add` returned");
        println!(
            "fabric side of h2's uplink with XDP attached: tx-tcp-segmentation {}",
            if tcp_segmentation(&fabric, "h2")? {
                "on"
            } else {
                "off"
            }
        );
        let before = lab.counters(2)?;
        let (stats, text) = lab.ping_from(&h1.ns, remote.ip, PINGS, &["-W", "1"])?;
        let after = lab.counters(2)?;
        ensure!(
            stats.transmitted == PINGS && stats.received == 0,
            "ping {} -> {} with {deny} denied on {}: {stats:?}\n{text}",
            h1.node,
            remote.name,
            h2.node
        );
        let xdp = after.grew(&before, "eth0", "xdp_uplink", "drop_xdp_denied");
        ensure!(
            xdp >= u64::from(PINGS),
            "h2 (eth0, xdp_uplink, drop_xdp_denied) grew by {xdp}, expected >= {PINGS}"
        );
        let decap = after.grew(&before, "eth0", "from_uplink", "decapsulated");
        ensure!(
            decap == 0,
            "h2 decapsulated {decap} packet(s) of a denied source"
        );
        let to_pod = delivered(&after).saturating_sub(delivered(&before));
        ensure!(to_pod == 0, "{to_pod} packet(s) reached {}", remote.name);
        poll_until(Duration::from_secs(10), "status says attached", || {
            let xdp = status_xdp(lab, 2)?;
            Ok(if xdp.as_deref() == Some("attached") {
                Ok(())
            } else {
                Err(format!("h2 status xdp {xdp:?}"))
            })
        })?;

        // Not the last entry: XDP stays.
        lab.xdp_deny(2, "10.99.0.0/16", true)?;
        lab.xdp_deny(2, "10.99.0.0/16", false)?;
        std::thread::sleep(Duration::from_millis(1500));
        lab.wait_uplink_xdp(2, true, Duration::ZERO)
            .context("XDP detached while the deny list still had an entry")?;

        lab.xdp_deny(2, &deny, false)?;
        let took = lab.wait_uplink_xdp(2, false, XDP_BOUND)?;
        println!("XDP detached on h2 {took:?} after `felix bpf xdp-deny del` returned");
        ensure!(
            tcp_segmentation(&fabric, "h2")?,
            "the fabric side of h2's uplink did not get TCP segmentation back"
        );
        let before = lab.counters(2)?;
        let (stats, text) = lab.ping_from(&h1.ns, remote.ip, PINGS, &[])?;
        let after = lab.counters(2)?;
        ensure!(
            stats.received == PINGS,
            "ping after xdp-deny del: {stats:?}\n{text}"
        );
        // The same counters move once the source is allowed: the checks above can fail.
        let to_pod = delivered(&after).saturating_sub(delivered(&before));
        ensure!(
            to_pod >= u64::from(PINGS),
            "after xdp-deny del only {to_pod} packet(s) reached {}",
            remote.name
        );
        ensure!(
            after.grew(&before, "eth0", "xdp_uplink", "drop_xdp_denied") == 0,
            "XDP still drops after xdp-deny del"
        );

        // XDPEnabled false (FelixConfiguration, felix restarts): no XDP even with an entry.
        let key = format!(
            "/calico/resources/v3/projectcalico.org/felixconfigurations/node.{}",
            h2.node
        );
        let resource = serde_json::json!({"apiVersion": "projectcalico.org/v3",
            "kind": "FelixConfiguration", "metadata": {"name": format!("node.{}", h2.node)},
            "spec": {"xdpEnabled": false}});
        xtask::lab::etcd::put_json(lab.state(), &key, &resource)?;
        let (_, took) = poll_until(Duration::from_secs(30), "status says disabled", || {
            let xdp = status_xdp(lab, 2)?;
            Ok(if xdp.as_deref() == Some("disabled") {
                Ok(())
            } else {
                Err(format!("h2 status xdp {xdp:?}"))
            })
        })?;
        println!("h2 restarted with XDPEnabled false after {took:?}");
        lab.xdp_deny(2, &deny, true)?;
        std::thread::sleep(Duration::from_millis(1500));
        lab.wait_uplink_xdp(2, false, Duration::ZERO)
            .context("XDP attached with XDPEnabled false")?;
        let (stats, text) = lab.ping_from(&h1.ns, remote.ip, PINGS, &[])?;
        ensure!(
            stats.received == PINGS,
            "XDPEnabled false enforces no deny list: {stats:?}\n{text}"
        );
        lab.xdp_deny(2, &deny, false)?;
        Ok(())
    })
}

/// `bpftool -j <object> show pinned <path>` as JSON.
fn bpftool_show(object: &str, path: &std::path::Path) -> Result<serde_json::Value> {
    let out = Command::new("bpftool")
        .args(["-j", object, "show", "pinned"])
        .arg(path)
        .output()
        .context("run bpftool")?;
    ensure!(
        out.status.success(),
        "bpftool {object} show pinned {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("bpftool JSON")
}

/// (pin name, map id) of each pinned map.
type MapIds = Vec<(String, u64)>;
/// (pin name, link id, program id) of each pinned link.
type LinkIds = Vec<(String, u64, u64)>;

/// Map ids of every pinned map and (link id, program id) of every pinned link of a node.
fn pinned_ids(pin_dir: &std::path::Path) -> Result<(MapIds, LinkIds)> {
    let mut maps = Vec::new();
    let mut links = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(pin_dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names.iter().filter(|n| n.starts_with("felix_")) {
        let json = bpftool_show("map", &pin_dir.join(name))?;
        maps.push((name.clone(), json["id"].as_u64().context("map id")?));
    }
    let mut link_names: Vec<_> = std::fs::read_dir(pin_dir.join("links"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    link_names.sort();
    for name in link_names {
        let json = bpftool_show("link", &pin_dir.join("links").join(&name))?;
        links.push((
            name,
            json["id"].as_u64().context("link id")?,
            json["prog_id"].as_u64().context("prog id")?,
        ));
    }
    Ok((maps, links))
}

/// felix on h1 is killed with SIGKILL and started again while a TCP flow runs from h1-p1 to
/// h2-p1: the flow completes, and the new felix adopts the pinned state: the same maps (ids) and
/// the same links (ids) now running newly loaded programs. An upgrade's leftover (a pinned map
/// of an older layout version, `felix_ep_v1`) is removed once the new programs are attached.
#[test]
fn felix_restart_keeps_flows_and_adopts_pinned_maps_and_links() -> Result<()> {
    let mut lab = Lab::up(LabOptions::default())?;
    let result = (|| -> Result<()> {
        let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/felix/{}", lab.node(1)));
        // A deny list entry (an address nobody uses), so that the uplink carries XDP and its
        // pinned link is adopted too.
        lab.xdp_deny(1, "10.99.0.1/32", true)?;
        lab.wait_uplink_xdp(1, true, XDP_BOUND)?;
        let (maps_before, links_before) = pinned_ids(&pin_dir)?;
        // felix-common's maps::PINNED: 8 forwarding (counters and counter cache), 1 failsafe, 5
        // policy and 3 trace maps.
        ensure!(
            maps_before.len() == 17,
            "expected 17 pinned maps: {maps_before:?}"
        );
        ensure!(
            links_before.len() == 2 * 2 + 3,
            "expected TC in/out on two cali and TC in/out + XDP on eth0: {links_before:?}"
        );
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        let flow = std::thread::spawn(move || {
            traffic::iperf(
                &p1.ns,
                &remote.ns,
                &remote.ip.to_string(),
                Iperf::Tcp { seconds: 6 },
            )
        });
        std::thread::sleep(Duration::from_millis(1500));
        let old_layout = pin_dir.join("felix_ep_v1");
        cmd::run(Command::new("bpftool").args([
            "map",
            "create",
            &old_layout.to_string_lossy(),
            "type",
            "hash",
            "key",
            "4",
            "value",
            "12",
            "entries",
            "16",
            "name",
            "felix_ep_v1",
        ]))?;
        let restarted = lab.restart_felix(1);
        let report = flow
            .join()
            .map_err(|_| anyhow::anyhow!("iperf3 thread panicked"))??;
        restarted?;
        ensure!(
            report.received_bytes > 0 && report.sent_bytes > 0,
            "the flow across the restart moved no data: {report:?}"
        );
        ensure!(
            !old_layout.exists(),
            "the superseded map {} is still pinned",
            old_layout.display()
        );
        let (maps_after, links_after) = pinned_ids(&pin_dir)?;
        ensure!(
            maps_after == maps_before,
            "maps were recreated: {maps_before:?} -> {maps_after:?}"
        );
        ensure!(
            links_after.len() == links_before.len(),
            "{links_before:?} -> {links_after:?}"
        );
        for ((name, link, prog), (name_after, link_after, prog_after)) in
            links_before.iter().zip(&links_after)
        {
            ensure!(
                name == name_after && link == link_after,
                "link {name} was replaced: {link} -> {link_after}"
            );
            ensure!(
                prog != prog_after,
                "link {name} still runs the old program {prog}"
            );
        }
        Ok(())
    })();
    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    lab.teardown()?;
    assert_gone(&id, &processes);
    result
}

/// Calls `check` every 200 ms until it returns `Ok(Some(v))` (then `v` and the time it took) or
/// `timeout` passes (then an error with the last thing `check` said was missing, or its error).
fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Ok(v)) => return Ok((v, start.elapsed())),
            Ok(Err(missing)) => missing,
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= timeout {
            bail!("not {what} after {timeout:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut argv = vec!["-n", ns];
    argv.extend_from_slice(args);
    cmd::ip(&argv)
}

/// felix's host integration, on one lab: the kernel routes it programs (pods' /32s, the block's
/// blackhole, remote blocks via their hosts with the tunnel MTU, all `proto 80`), its resync of a
/// route deleted by hand while a foreign route stays untouched, the per-`cali*` sysctls, the
/// Node address it registers without clobbering the seeded fields, `felix status` with both
/// nodes ready and every endpoint up, an endpoint whose interface vanishes reported down, and
/// a killed felix's status expiring with its lease while the other's stays.
#[test]
fn felix_programs_routes_registers_nodes_and_reports_status() -> Result<()> {
    with_lab(|lab| {
        let st = lab.state().clone();
        let (h1, h2) = (lab.host(1)?.clone(), lab.host(2)?.clone());

        // Kernel routes, exactly as the contract says, and nothing else of felix's.
        for host in &st.hosts {
            let routes = lab.kernel_routes(host.n)?;
            let missing = kroutes::missing(&st, host, &routes, Check::Exact);
            ensure!(
                missing.is_empty(),
                "{}: felix's kernel routes: missing or wrong {missing:?}\ntable: {routes:?}",
                host.node
            );
            let extra = kroutes::unexpected(&st, host, &routes);
            ensure!(
                extra.is_empty(),
                "{}: unexpected proto 80 routes {extra:?}",
                host.node
            );
        }
        println!(
            "{} proto 80 routes:\n{}",
            h1.node,
            ip_in(&h1.ns, &["route", "show", "proto", kroutes::FELIX_PROTO])?
        );

        // Per-cali sysctls, read from the host namespace's /proc/sys.
        for host in &st.hosts {
            for pod in &host.pods {
                let c = &pod.cali;
                for (key, want) in [
                    (format!("net.ipv4.conf.{c}.proxy_arp"), "1"),
                    (format!("net.ipv4.neigh.{c}.proxy_delay"), "0"),
                    (format!("net.ipv4.conf.{c}.forwarding"), "1"),
                    (format!("net.ipv4.conf.{c}.rp_filter"), "1"),
                ] {
                    let have = net::read_sysctl(&host.ns, &key)?;
                    ensure!(
                        have == want,
                        "{}: {key} = {have}, expected {want}",
                        host.node
                    );
                }
            }
        }

        // Node registration: the detected address added, the seeded fields kept.
        for host in &st.hosts {
            let node = lab.node_resource(host.n)?;
            let (ann_key, ann_value) = calico::NODE_ANNOTATION;
            let checks = [
                (
                    "spec.bgp.ipv4Address",
                    node["spec"]["bgp"]["ipv4Address"] == calico::node_address(host).as_str(),
                ),
                (
                    "spec.bgp.asNumber",
                    node["spec"]["bgp"]["asNumber"] == calico::NODE_AS_NUMBER,
                ),
                ("labels.lab", node["metadata"]["labels"]["lab"] == lab.id()),
                (
                    "labels.kubernetes.io/hostname",
                    node["metadata"]["labels"]["kubernetes.io/hostname"] == host.node.as_str(),
                ),
                (
                    "annotation",
                    node["metadata"]["annotations"][ann_key] == ann_value,
                ),
                ("kind", node["kind"] == "Node"),
                (
                    "metadata.name",
                    node["metadata"]["name"] == host.node.as_str(),
                ),
            ];
            for (what, ok) in checks {
                ensure!(ok, "Node {}: {what} wrong: {node}", host.node);
            }
        }

        // felix status: both nodes ready, every endpoint up.
        let (status, took) = poll_until(Duration::from_secs(10), "all ready and up", || {
            let s = lab.felix_status()?;
            let mut missing = Vec::new();
            for host in &st.hosts {
                match s.node(&host.node) {
                    Some(n) if n.ready && n.last_sync.is_some() => {}
                    other => missing.push(format!("{} ready: {other:?}", host.node)),
                }
                for pod in &host.pods {
                    match s.endpoint(&host.node, &pod.name) {
                        Some(e) if e.status == "up" && e.endpoint == "eth0" => {}
                        other => missing.push(format!("{} up: {other:?}", pod.name)),
                    }
                }
            }
            Ok(if missing.is_empty() {
                Ok(s)
            } else {
                Err(missing.join("; "))
            })
        })?;
        println!("felix status: all ready and up {took:?} after the lab was ready");
        ensure!(
            status.nodes.len() == 2 && status.endpoints.len() == 4,
            "felix status lists more than the lab: {status:?}"
        );
        for n in &status.nodes {
            ensure!(
                n.dataplane.as_deref() == Some("bpf") && n.programs_loaded.unwrap_or(0) > 0,
                "node status {n:?}"
            );
        }
        let table = lab.felix_status_table(None)?;
        println!("felix status:\n{table}");
        ensure!(
            table.contains(&h1.node) && table.contains(&h2.node),
            "the table lacks a node:\n{table}"
        );
        for host in &st.hosts {
            ensure!(
                lab.etcd_get(&calico::felix_status_key(&host.node))?
                    .is_some(),
                "no {} in etcd",
                calico::felix_status_key(&host.node)
            );
        }

        // Resync: a pod route deleted by hand comes back; a foreign route stays untouched.
        let foreign = "198.51.100.0/24";
        ip_in(&h1.ns, &["route", "add", foreign, "dev", "eth0"])?;
        let foreign_added = Instant::now();
        let foreign_before = kroutes::find(&lab.kernel_routes(1)?, foreign)
            .cloned()
            .context("the foreign route was not added")?;
        ensure!(foreign_before.protocol() == "boot", "{foreign_before:?}");
        let p1 = h1.pods[0].clone();
        let p1_route = format!("{}/32", p1.ip);
        ip_in(&h1.ns, &["route", "del", &p1_route])?;
        let (_, back) = poll_until(Duration::from_secs(6), "route back", || {
            let routes = lab.kernel_routes(1)?;
            Ok(match kroutes::find(&routes, &p1_route) {
                Some(r) if r.is_felix() && r.dev.as_deref() == Some(p1.cali.as_str()) => Ok(()),
                other => Err(format!("{p1_route} on {}: {other:?}", h1.node)),
            })
        })?;
        println!("{p1_route} deleted by hand was back after {back:?}");
        let (stats, text) = lab.ping_from(&h1.ns, p1.ip, 1, &[])?;
        ensure!(stats.received == 1, "host -> pod after the resync: {text}");
        let settle = Duration::from_millis(2 * felixd::ROUTE_REFRESH_S * 1000 + 500);
        std::thread::sleep(settle.saturating_sub(foreign_added.elapsed()));
        let routes = lab.kernel_routes(1)?;
        let foreign_after = kroutes::find(&routes, foreign);
        ensure!(
            foreign_after == Some(&foreign_before),
            "foreign route {foreign} changed after {:?}: {foreign_before:?} -> {foreign_after:?}",
            foreign_added.elapsed()
        );
        ip_in(&h1.ns, &["route", "del", foreign])?;

        // An endpoint whose interface vanishes is reported down, with the interface named.
        let p2 = h1.pods[1].clone();
        ip_in(&h1.ns, &["link", "del", &p2.cali])?;
        let (down, took) = poll_until(Duration::from_secs(8), "reported down", || {
            let s = lab.felix_status()?;
            Ok(match s.endpoint(&h1.node, &p2.name) {
                Some(e)
                    if e.status == "down"
                        && e.reason.as_deref().is_some_and(|r| r.contains(&p2.cali)) =>
                {
                    Ok(e.clone())
                }
                other => Err(format!("{} after deleting {}: {other:?}", p2.name, p2.cali)),
            })
        })?;
        println!(
            "{} reported {down:?} {took:?} after its interface went",
            p2.name
        );
        let key = calico::endpoint_status_key(&h1.node, &p2.name);
        let raw = lab
            .etcd_get(&key)?
            .with_context(|| format!("no {key} in etcd"))?;
        let raw: serde_json::Value = serde_json::from_str(&raw)?;
        ensure!(raw["status"] == "down", "{key}: {raw}");
        let s = lab.felix_status()?;
        ensure!(
            s.endpoint(&h1.node, &p1.name)
                .is_some_and(|e| e.status == "up"),
            "{} should still be up: {s:?}",
            p1.name
        );

        // A felix killed -9 cannot clean up: its status goes when its lease expires.
        let prefix2 = calico::felix_status_prefix(&h2.node);
        ensure!(
            !lab.etcd_keys(&prefix2)?.is_empty(),
            "no status of {} before the kill",
            h2.node
        );
        lab.kill_felix(2)?;
        let ttl = Duration::from_secs(felixd::STATUS_TTL_S);
        let (_, gone) = poll_until(ttl + Duration::from_secs(3), "expired", || {
            let keys = lab.etcd_keys(&prefix2)?;
            Ok(if keys.is_empty() {
                Ok(())
            } else {
                Err(format!("{} still has {keys:?}", h2.node))
            })
        })?;
        println!(
            "killed felix {}: its status keys expired after {gone:?}",
            h2.node
        );
        let s = lab.felix_status()?;
        ensure!(
            s.node(&h2.node).is_none() && s.endpoints.iter().all(|e| e.node != h2.node),
            "felix status still shows {}: {s:?}",
            h2.node
        );
        ensure!(
            s.node(&h1.node).is_some_and(|n| n.ready),
            "{} lost its status: {s:?}",
            h1.node
        );
        ensure!(
            lab.etcd_get(&calico::felix_status_key(&h1.node))?.is_some(),
            "{}'s status key vanished",
            h1.node
        );
        Ok(())
    })
}

/// `felix <args> --etcd-endpoints <lab etcd>` inside host h1's namespace (where etcd is reachable).
fn felix_in_h1(lab: &Lab, args: &[&str]) -> Result<std::process::Output> {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.node(1)))
        .arg(lab.felix_bin())
        .args(args)
        .args(["--etcd-endpoints", &lab.state().etcd_url])
        .output()
        .context("run felix")
}

/// The lab's pods got their addresses from `felix ipam` (a block claimed per host, an address
/// assigned per pod under Calico's handle), which `felix ipam show` and the handle keys confirm.
fn lab_ipam_is_felixs(lab: &Lab) -> Result<()> {
    let st = lab.state();
    let blocks = felix::ipam::show(lab.felix_bin(), &lab.node(1), &st.etcd_url)?;
    for host in &st.hosts {
        let block = blocks
            .iter()
            .find(|b| b.cidr == host.block)
            .with_context(|| format!("no block {} in `felix ipam show`", host.block))?;
        let affinity = format!("host:{}", host.node);
        ensure!(
            block.affinity.as_deref() == Some(affinity.as_str()) && block.used() == host.pods.len(),
            "block {} of {}: {block:?}",
            host.block,
            host.node
        );
        let aff_key = format!(
            "/calico/ipam/v2/host/{}/ipv4/block/{}",
            host.node,
            xtask::lab::names::cidr_key(&host.block)
        );
        ensure!(lab.etcd_get(&aff_key)?.is_some(), "no affinity {aff_key}");
        let base = ipam::nth_address(&host.block, 0)?;
        for pod in &host.pods {
            let ordinal = usize::try_from(u32::from(pod.ip) - u32::from(base))?;
            let handle = calico::ipam_handle(pod);
            ensure!(
                block.handle_at(ordinal) == Some(handle.as_str()),
                "{} ({}) is not held by {handle} in {block:?}",
                pod.name,
                pod.ip
            );
            let key = format!("/calico/ipam/v2/handle/{handle}");
            ensure!(lab.etcd_get(&key)?.is_some(), "no handle {key}");
        }
    }
    Ok(())
}

/// `felix ipam` against the lab's real etcd: the lab's own pods came from it; two nodes claiming
/// at once get different blocks (none of the lab's), each with its affinity; an address assigned
/// from the claimed block is released once, and a second release is refused.
#[test]
fn ipam_claims_blocks_by_transaction_and_assigns_and_releases() -> Result<()> {
    with_lab(|lab| {
        let lab: &Lab = lab;
        lab_ipam_is_felixs(lab)?;
        let pool = xtask::lab::names::POOL_CIDR;
        let (n1, n2) = (lab.node(1), lab.node(2));
        let claims: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = [n1.as_str(), n2.as_str()]
                .into_iter()
                .map(|node| {
                    scope.spawn(move || {
                        felix_in_h1(lab, &["ipam", "claim", "--node", node, "--pool", pool])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    let out = h
                        .join()
                        .map_err(|_| anyhow::anyhow!("claim thread panicked"))??;
                    ensure!(
                        out.status.success(),
                        "claim: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
                })
                .collect::<Result<Vec<_>>>()
        })?;
        ensure!(claims[0] != claims[1], "both nodes got {}", claims[0]);
        for (node, block) in [(&n1, &claims[0]), (&n2, &claims[1])] {
            ensure!(
                lab.state().hosts.iter().all(|h| h.block != *block),
                "{node} got a block that was already taken: {block}"
            );
            let key_block = block.replace('/', "-");
            let stored = lab
                .etcd_get(&format!(
                    "/calico/ipam/v2/assignment/ipv4/block/{key_block}"
                ))?
                .context("block written")?;
            ensure!(
                stored.contains(&format!("\"affinity\":\"host:{node}\"")),
                "{stored}"
            );
            ensure!(
                lab.etcd_get(&format!(
                    "/calico/ipam/v2/host/{node}/ipv4/block/{key_block}"
                ))?
                .is_some(),
                "affinity of {node} to {block} missing"
            );
        }
        let out = felix_in_h1(
            lab,
            &[
                "ipam",
                "assign",
                "--node",
                &n1,
                "--handle",
                "k8s-pod-network.test",
                "--attr",
                "pod=test",
            ],
        )?;
        ensure!(
            out.status.success(),
            "assign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ip: std::net::Ipv4Addr = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        // The first of n1's blocks with a free address: its lab block (pods use 2 of 64).
        let lab_block = &lab.host(1)?.block;
        ensure!(
            ipam::in_cidr(ip, lab_block)?,
            "{ip} not in {n1}'s first block {lab_block} (new block {})",
            claims[0]
        );
        ensure!(
            lab.etcd_get("/calico/ipam/v2/handle/k8s-pod-network.test")?
                .is_some(),
            "handle missing"
        );
        let ip = ip.to_string();
        let out = felix_in_h1(lab, &["ipam", "release", "--ip", &ip])?;
        ensure!(
            out.status.success(),
            "release: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            lab.etcd_get("/calico/ipam/v2/handle/k8s-pod-network.test")?
                .is_none(),
            "handle left behind"
        );
        let again = felix_in_h1(lab, &["ipam", "release", "--ip", &ip])?;
        ensure!(!again.status.success(), "a second release succeeded");
        ensure!(String::from_utf8_lossy(&again.stderr).contains("is not allocated"));
        Ok(())
    })
}

/// `felix apply -f` with one invalid document among valid ones writes the valid ones at Calico's
/// keys, names the bad document and field, and exits 1; `felix get` reads them back; `felix
/// delete -f` removes them.
#[test]
fn apply_get_delete_write_calico_keys_and_skip_only_bad_documents() -> Result<()> {
    with_lab(|lab| {
        let lab: &Lab = lab;
        let file = std::env::temp_dir().join(format!("felix-apply-{}.yaml", std::process::id()));
        std::fs::write(
            &file,
            r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-dns
spec:
  selector: all()
  order: 100
  types: [Egress]
  egress:
    - action: Allow
      protocol: UDP
      destination:
        ports: [53]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: broken
  namespace: default
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      destination:
        ports: ["90:80"]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 10
"#,
        )?;
        let path = file.to_string_lossy().into_owned();
        let applied = felix_in_h1(lab, &["apply", "-f", &path]);
        let result = (|| -> Result<()> {
            let applied = applied?;
            let stderr = String::from_utf8_lossy(&applied.stderr);
            ensure!(
                !applied.status.success(),
                "apply with a bad document exited 0"
            );
            ensure!(
                stderr.contains("broken") && stderr.contains("ports[0]"),
                "error does not name the document and field: {stderr}"
            );
            let gnp = lab.etcd_get(
                "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/allow-dns",
            )?;
            ensure!(
                gnp.as_deref()
                    .is_some_and(|v| v.contains("\"kind\":\"GlobalNetworkPolicy\"")),
                "{gnp:?}"
            );
            ensure!(
                lab.etcd_get("/calico/resources/v3/projectcalico.org/tiers/security")?
                    .is_some(),
                "tier not written"
            );
            ensure!(
                lab.etcd_get(
                    "/calico/resources/v3/projectcalico.org/networkpolicies/default/broken"
                )?
                .is_none(),
                "the invalid document was written"
            );
            let got = felix_in_h1(lab, &["get", "globalnetworkpolicies"])?;
            let text = String::from_utf8_lossy(&got.stdout);
            ensure!(
                got.status.success() && text.contains("allow-dns"),
                "get: {text}"
            );
            let deleted = felix_in_h1(lab, &["delete", "-f", &path])?;
            ensure!(
                !deleted.status.success(),
                "delete with a bad document exited 0"
            );
            ensure!(
                lab.etcd_get(
                    "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/allow-dns"
                )?
                .is_none(),
                "delete left the policy"
            );
            let missing = felix_in_h1(lab, &["get", "globalnetworkpolicy", "allow-dns"])?;
            ensure!(
                !missing.status.success(),
                "get of a deleted policy succeeded"
            );
            Ok(())
        })();
        let _ = std::fs::remove_file(&file);
        result
    })
}

/// The port the policy tests' echo servers listen on: iperf3's, which
/// `examples/policy/allow-iperf3.yaml` allows.
const IPERF_PORT: u16 = 5201;
/// How long felix may take to enforce a policy change on new flows.
const POLICY_DEADLINE: Duration = Duration::from_secs(1);
/// Gap between two probes while waiting for a policy change.
const PROBE_GAP: Duration = Duration::from_millis(20);
/// Handshake timeout of the probes that time a policy change (the lab's RTT is ~0.1 ms).
const TIMING_HANDSHAKE: Duration = Duration::from_millis(40);

/// `felix policy explain` of ICMP echo from `from` to `to`.
fn icmp_query(from: &xtask::lab::PodInfo, to: &xtask::lab::PodInfo) -> Query<'static> {
    Query {
        from: from.ip,
        to: to.ip,
        proto: "icmp",
        port: None,
    }
}

/// `felix policy explain` of a TCP packet from `from` to `to`:`port`.
fn tcp_query(from: &xtask::lab::PodInfo, to: &xtask::lab::PodInfo, port: u16) -> Query<'static> {
    Query {
        from: from.ip,
        to: to.ip,
        proto: "tcp",
        port: Some(port),
    }
}

/// `examples/policy/default-deny.yaml` applied while h1-p1 talks to h2-p1: new TCP connections
/// (each one a new flow) stop within a second of `felix apply`, and so do new pings; a connection
/// opened before goes on (conntrack is checked before policy). `felix delete` of the same file
/// lets new connections through again within a second. Both times are printed.
#[test]
fn policy_deny_stops_new_flows_within_a_second_and_delete_resumes_them() -> Result<()> {
    with_lab(|lab| {
        let client = lab.pod(1, 1)?.clone();
        let server = lab.pod(2, 1)?.clone();
        let _echo = EchoServer::start(&server.ns, IPERF_PORT)?;
        ensure!(
            lab.tcp_works(&client, &server, IPERF_PORT)?,
            "no TCP {} -> {} before any policy",
            client.name,
            server.name
        );
        let mut open = probe::connect(&client.ns, server.ip, IPERF_PORT, Duration::from_secs(1))?
            .context("opening the long-lived connection")?;
        probe::exchange(&mut open, b"before\n", Duration::from_secs(2))?;

        let file = policy::example("default-deny.yaml")?;
        let start = Instant::now();
        lab.apply(&file)?;
        let apply_took = start.elapsed();
        let denied = probe::time_until(start, false, Duration::from_secs(5), PROBE_GAP, || {
            probe::tcp_works_within(&client.ns, server.ip, IPERF_PORT, TIMING_HANDSHAKE)
        })?;
        println!(
            "deny: `felix apply` took {apply_took:?}; new TCP connections {} -> {} denied {denied} after it started",
            client.name, server.name
        );
        ensure!(
            denied.after < POLICY_DEADLINE,
            "new connections were denied only after {denied}"
        );
        ensure!(
            !lab.ping_once(&client, &server)?,
            "a new ping got through the deny"
        );
        probe::exchange(&mut open, b"during\n", Duration::from_secs(2))
            .context("the connection opened before the deny was cut")?;

        let start = Instant::now();
        lab.delete(&file)?;
        let delete_took = start.elapsed();
        let resumed = probe::time_until(start, true, Duration::from_secs(5), PROBE_GAP, || {
            probe::tcp_works_within(&client.ns, server.ip, IPERF_PORT, TIMING_HANDSHAKE)
        })?;
        println!(
            "resume: `felix delete` took {delete_took:?}; new TCP connections allowed again {resumed} after it started"
        );
        ensure!(
            resumed.after < POLICY_DEADLINE,
            "new connections came back only after {resumed}"
        );
        ensure!(lab.ping_once(&client, &server)?, "ping after the delete");
        probe::exchange(&mut open, b"after\n", Duration::from_secs(2))?;
        Ok(())
    })
}

/// All ingress to h1-p1 denied (a temporary GlobalNetworkPolicy with one Deny rule).
const DENY_INGRESS_H1_P1: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-ingress-h1-p1
spec:
  selector: app == 'h1-p1'
  types: [Ingress]
  ingress:
    - action: Deny
"#;

/// h1-p1 may open TCP 5201 to h2-p1 (default-deny + allow-iperf3 on h2-p1) while every ingress
/// to h1-p1 is denied: the replies of h1-p1's connections pass (an echo of 1 MiB, and iperf3
/// with the server sending), but h2-p1 cannot open a connection or ping to h1-p1, and h1-p2 (not
/// selected by allow-iperf3) cannot reach h2-p1:5201. `felix policy explain` agrees.
#[test]
fn policy_replies_of_an_allowed_flow_pass_but_reverse_flows_are_denied() -> Result<()> {
    with_lab(|lab| {
        let a = lab.pod(1, 1)?.clone();
        let b = lab.pod(2, 1)?.clone();
        let other = lab.pod(1, 2)?.clone();
        for name in ["default-deny.yaml", "allow-iperf3.yaml"] {
            lab.apply(&policy::example(name)?)?;
        }
        lab.apply_yaml("deny-ingress-h1-p1", DENY_INGRESS_H1_P1)?;
        let wait = Duration::from_secs(5);
        lab.wait_programmed(1, &["deny-ingress-h1-p1"], true, wait)?;
        lab.wait_programmed(2, &["default-deny", "default/allow-iperf3"], true, wait)?;

        // The server sends: the data flows towards h1-p1, against its ingress policy.
        let reverse = lab.iperf(&a, &b, Iperf::TcpReverse { seconds: 1 })?;
        ensure!(
            reverse.received_bytes > 0,
            "iperf3 -R {} -> {}: {}",
            a.name,
            b.name,
            reverse.summary()
        );
        println!("iperf3 -R {} -> {}: {}", a.name, b.name, reverse.summary());

        let _echo_b = EchoServer::start(&b.ns, IPERF_PORT)?;
        let _echo_a = EchoServer::start(&a.ns, IPERF_PORT)?;
        let mut flow = probe::connect(&a.ns, b.ip, IPERF_PORT, Duration::from_secs(1))?
            .context("the allowed connection h1-p1 -> h2-p1:5201 did not open")?;
        probe::exchange(&mut flow, &vec![0x5a; 1 << 20], Duration::from_secs(5))
            .context("1 MiB echoed on the allowed connection")?;
        let ct = lab.conntrack(1)?;
        ensure!(
            ct.flows("tcp", a.ip, b.ip, IPERF_PORT)
                .iter()
                .any(|f| f.packets_forward > 0 && f.packets_reverse > 0),
            "no flow {} -> {}:{IPERF_PORT} with packets both ways: {:?}",
            a.ip,
            b.ip,
            ct.conntrack
        );

        ensure!(
            !lab.tcp_works(&b, &a, IPERF_PORT)?,
            "h2-p1 opened a connection to h1-p1"
        );
        ensure!(!lab.ping_once(&b, &a)?, "h2-p1 pinged h1-p1");
        ensure!(
            !lab.tcp_works(&other, &b, IPERF_PORT)?,
            "h1-p2 reached h2-p1:{IPERF_PORT}, which allows h1-p1 only"
        );
        probe::exchange(&mut flow, b"still\n", Duration::from_secs(2))?;

        let allowed = lab.explain(tcp_query(&a, &b, IPERF_PORT))?;
        let ingress = allowed.check("Ingress").context("ingress check")?;
        ensure!(
            allowed.allowed
                && ingress.by == RuleRef::policy("default", "default/allow-iperf3", "Ingress", 0),
            "explain {} -> {}:{IPERF_PORT}: {allowed:?}",
            a.name,
            b.name
        );
        let denied = lab.explain(tcp_query(&b, &a, IPERF_PORT))?;
        ensure!(
            !denied.allowed
                && denied.deciding().map(|c| &c.by)
                    == Some(&RuleRef::policy(
                        "default",
                        "deny-ingress-h1-p1",
                        "Ingress",
                        0
                    )),
            "explain {} -> {}:{IPERF_PORT}: {denied:?}",
            b.name,
            a.name
        );
        Ok(())
    })
}

/// A pod that no policy selects is judged by its profile (kns.default allows); with its
/// WorkloadEndpoint rewritten to carry the `deny-all` profile (examples/policy) new flows in and
/// out are denied by that profile's rule; with no profile at all, by felix's default deny. The
/// dump shows the profiles and counts the deciding rule; explain names it; restoring kns.default
/// lets traffic through again.
#[test]
fn policy_profiles_decide_without_policies_and_no_profile_is_default_deny() -> Result<()> {
    with_lab(|lab| {
        let client = lab.pod(1, 2)?.clone();
        let target = lab.pod(2, 2)?.clone();
        // The precondition, not the subject: a first ping may wait on ARP in a busy lab.
        let first = ping_works_within_5s(lab, &client, &target).context("ping with kns.default")?;
        println!("kns.default: ping works after {first}");
        let e = lab.explain(icmp_query(&client, &target))?;
        let kns = RuleRef::Profile {
            profile: calico::NAMESPACE_PROFILE.into(),
            direction: "Ingress".into(),
            index: 0,
        };
        ensure!(
            e.allowed && e.check("Ingress").map(|c| &c.by) == Some(&kns),
            "explain with kns.default: {e:?}"
        );

        lab.apply(&policy::example("profile-deny-all.yaml")?)?;
        lab.set_profiles(&target, &["deny-all"])?;
        let deny_all = RuleRef::Profile {
            profile: "deny-all".into(),
            direction: "Ingress".into(),
            index: 0,
        };
        let (row, took) = poll_until(Duration::from_secs(5), "deny-all programmed", || {
            let dump = lab.policy_dump(2, Some(&target.cali))?;
            Ok(match dump.row(&target.cali, "Ingress") {
                Some(r) if r.profiles == ["deny-all"] => Ok(r.clone()),
                other => Err(format!("{other:?}")),
            })
        })?;
        println!("{} carries deny-all after {took:?}: {row:?}", target.name);
        let before = lab.policy_dump(2, Some(&target.cali))?;
        ensure!(!lab.ping_once(&client, &target)?, "ping into deny-all");
        ensure!(!lab.ping_once(&target, &client)?, "ping out of deny-all");
        let after = lab.policy_dump(2, Some(&target.cali))?;
        let grew = after
            .packets(&target.cali, "Ingress", &deny_all)
            .unwrap_or(0)
            - before
                .packets(&target.cali, "Ingress", &deny_all)
                .unwrap_or(0);
        ensure!(
            grew >= 1,
            "deny-all ingress rule 0 counted {grew}: {after:?}"
        );
        let e = lab.explain(icmp_query(&client, &target))?;
        ensure!(
            !e.allowed && e.deciding().map(|c| &c.by) == Some(&deny_all),
            "explain with deny-all: {e:?}"
        );

        lab.set_profiles(&target, &[])?;
        let default_deny = RuleRef::DefaultDeny {
            direction: "Ingress".into(),
        };
        poll_until(Duration::from_secs(5), "no profile programmed", || {
            let dump = lab.policy_dump(2, Some(&target.cali))?;
            Ok(match dump.row(&target.cali, "Ingress") {
                Some(r) if r.profiles.is_empty() && r.problem.is_none() => Ok(()),
                other => Err(format!("{other:?}")),
            })
        })?;
        let before = lab.policy_dump(2, Some(&target.cali))?;
        ensure!(!lab.ping_once(&client, &target)?, "ping with no profile");
        let after = lab.policy_dump(2, Some(&target.cali))?;
        let grew = after
            .packets(&target.cali, "Ingress", &default_deny)
            .unwrap_or(0)
            - before
                .packets(&target.cali, "Ingress", &default_deny)
                .unwrap_or(0);
        ensure!(grew >= 1, "default deny counted {grew}: {after:?}");
        let e = lab.explain(icmp_query(&client, &target))?;
        ensure!(
            !e.allowed && e.deciding().map(|c| &c.by) == Some(&default_deny),
            "explain with no profile: {e:?}"
        );

        lab.set_profiles(&target, &[calico::NAMESPACE_PROFILE])?;
        let back = ping_works_within_5s(lab, &client, &target)?;
        println!("kns.default restored: ping works after {back}");
        Ok(())
    })
}

/// Single pings from `from` to `to` until one is answered, for up to 5 s; how long it took.
fn ping_works_within_5s(
    lab: &Lab,
    from: &xtask::lab::PodInfo,
    to: &xtask::lab::PodInfo,
) -> Result<probe::Change> {
    probe::time_until(
        Instant::now(),
        true,
        Duration::from_secs(5),
        PROBE_GAP,
        || lab.ping_once(from, to),
    )
}

/// An expected outcome of the example policies (applied all together).
struct Expect {
    from: (u8, u8),
    to: (u8, u8),
    /// `None`: ICMP echo; `Some(port)`: a TCP connection.
    tcp: Option<u16>,
    allowed: bool,
    why: &'static str,
}

/// What examples/policy/*.yaml, applied together, do to the lab's pods (their header comments).
const EXAMPLE_OUTCOMES: [Expect; 8] = [
    Expect {
        from: (1, 1),
        to: (2, 1),
        tcp: Some(IPERF_PORT),
        allowed: true,
        why: "allow-iperf3",
    },
    Expect {
        from: (1, 1),
        to: (2, 1),
        tcp: None,
        allowed: false,
        why: "deny-icmp-from-h1-p1",
    },
    Expect {
        from: (1, 2),
        to: (2, 1),
        tcp: None,
        allowed: false,
        why: "default-deny: end of the default tier",
    },
    Expect {
        from: (1, 2),
        to: (2, 1),
        tcp: Some(IPERF_PORT),
        allowed: false,
        why: "allow-iperf3 admits h1-p1 only",
    },
    Expect {
        from: (1, 2),
        to: (2, 2),
        tcp: None,
        allowed: false,
        why: "tier security isolates h2-p2",
    },
    Expect {
        from: (2, 2),
        to: (1, 2),
        tcp: None,
        allowed: false,
        why: "tier security isolates h2-p2",
    },
    Expect {
        from: (1, 2),
        to: (1, 1),
        tcp: None,
        allowed: true,
        why: "security passes, no default-tier policy: profile",
    },
    Expect {
        from: (2, 1),
        to: (1, 2),
        tcp: None,
        allowed: true,
        why: "h2-p1's egress is not restricted",
    },
];

/// Checks every expectation; the ones that did not hold.
fn example_outcomes_wrong(lab: &Lab, invert: bool) -> Result<Vec<String>> {
    let mut wrong = Vec::new();
    for e in &EXAMPLE_OUTCOMES {
        let from = lab.pod(e.from.0, e.from.1)?;
        let to = lab.pod(e.to.0, e.to.1)?;
        let got = match e.tcp {
            Some(port) => lab.tcp_works(from, to, port)?,
            None => lab.ping_once(from, to)?,
        };
        // With no policy at all, everything is allowed.
        let want = e.allowed || invert;
        if got != want {
            let what = e.tcp.map_or("ping".to_owned(), |p| format!("tcp {p}"));
            wrong.push(format!(
                "{what} {} -> {}: allowed {got}, expected {want} ({})",
                from.name, to.name, e.why
            ));
        }
    }
    Ok(wrong)
}

/// examples/policy/*.yaml applied together behave as their headers say (a matrix of pings and
/// TCP connections); the Deny rule of deny-icmp-from-h1-p1 counts each denied echo request in
/// `felix bpf policy dump`; `felix policy explain` names the deciding policy and rule for allowed
/// and denied packets (in the default tier, at the end of a tier, and in tier security); deleting
/// the files brings every flow back.
#[test]
fn policy_examples_behave_as_documented_and_dump_and_explain_agree() -> Result<()> {
    with_lab(|lab| {
        let p11 = lab.pod(1, 1)?.clone();
        let p12 = lab.pod(1, 2)?.clone();
        let p21 = lab.pod(2, 1)?.clone();
        let p22 = lab.pod(2, 2)?.clone();
        let _echo = [
            EchoServer::start(&p21.ns, IPERF_PORT)?,
            EchoServer::start(&p22.ns, IPERF_PORT)?,
        ];
        let files = policy::examples()?;
        ensure!(files.len() >= 5, "examples: {files:?}");
        for file in &files {
            print!("{}", lab.apply(file)?);
        }
        let (h1_policies, h2_policies) = (
            ["deny-icmp-from-h1-p1", "security.isolate-h2-p2"],
            [
                "default-deny",
                "default/allow-iperf3",
                "security.isolate-h2-p2",
            ],
        );
        let wait = Duration::from_secs(5);
        lab.wait_programmed(1, &h1_policies, true, wait)?;
        lab.wait_programmed(2, &h2_policies, true, wait)?;
        let wrong = example_outcomes_wrong(lab, false)?;
        ensure!(wrong.is_empty(), "with the examples: {wrong:#?}");

        // The Deny rule's counter grows by the denied echo requests (each one a first packet).
        let deny_icmp = RuleRef::policy("default", "deny-icmp-from-h1-p1", "Egress", 0);
        let count =
            |dump: &felix::policy::PolicyDump| dump.packets(&p11.cali, "Egress", &deny_icmp);
        let before = lab.policy_dump(1, Some(&p11.cali))?;
        ensure!(count(&before).is_some(), "rule not in the dump: {before:?}");
        let (stats, text) = lab.ping_from(&p11.ns, p21.ip, PINGS, &["-W", "1"])?;
        ensure!(stats.received == 0, "pings got through: {text}");
        let after = lab.policy_dump(1, Some(&p11.cali))?;
        let grew = count(&after).unwrap_or(0) - count(&before).unwrap_or(0);
        println!(
            "{deny_icmp}: {} -> {} packets after {PINGS} denied pings",
            count(&before).unwrap_or(0),
            count(&after).unwrap_or(0)
        );
        ensure!(
            grew >= u64::from(PINGS),
            "the deny rule counted {grew} of {PINGS} denied pings"
        );
        println!("{}", lab.policy_dump_table(1, Some(&p11.cali))?);

        // explain: the deciding policy and rule, allowed and denied.
        let cases = [
            (icmp_query(&p11, &p21), false, deny_icmp.clone()),
            (
                tcp_query(&p11, &p21, IPERF_PORT),
                true,
                RuleRef::policy("default", "default/allow-iperf3", "Ingress", 0),
            ),
            (
                icmp_query(&p12, &p21),
                false,
                RuleRef::EndOfTier {
                    tier: "default".into(),
                    direction: "Ingress".into(),
                },
            ),
            (
                tcp_query(&p12, &p22, 80),
                false,
                RuleRef::policy("security", "security.isolate-h2-p2", "Egress", 0),
            ),
            (
                icmp_query(&p12, &p11),
                true,
                RuleRef::Profile {
                    profile: calico::NAMESPACE_PROFILE.into(),
                    direction: "Ingress".into(),
                    index: 0,
                },
            ),
        ];
        for (query, allowed, by) in cases {
            let e = lab.explain(query)?;
            ensure!(
                e.allowed == allowed && e.deciding().map(|c| &c.by) == Some(&by),
                "explain {query:?}: expected allowed={allowed} by {by}, got {e:#?}"
            );
        }
        let allowed_check = lab.explain(tcp_query(&p11, &p21, IPERF_PORT))?;
        ensure!(
            allowed_check.check("Egress").map(|c| &c.by)
                == Some(&RuleRef::policy(
                    "default",
                    "deny-icmp-from-h1-p1",
                    "Egress",
                    1
                )),
            "the egress of an allowed TCP packet: {allowed_check:#?}"
        );
        print!("{}", lab.explain_text(icmp_query(&p11, &p21))?);

        for file in files.iter().rev() {
            print!("{}", lab.delete(file)?);
        }
        lab.wait_programmed(1, &h1_policies, false, wait)?;
        lab.wait_programmed(2, &h2_policies, false, wait)?;
        let wrong = example_outcomes_wrong(lab, true)?;
        ensure!(wrong.is_empty(), "after deleting the examples: {wrong:#?}");
        Ok(())
    })
}

/// felix serves Prometheus metrics and health on its host: dataplane counters that moved with
/// traffic, map capacities, the datastore in sync, per-rule policy hits; `/readiness` and
/// `/liveness` answer 200.
#[test]
fn metrics_and_health_endpoints_report_the_dataplane() -> Result<()> {
    with_lab(|lab| {
        let ns = xtask::lab::names::host_ns(lab.id(), 1);
        let p1 = lab.pod(1, 1)?.clone();
        let p2 = lab.pod(1, 2)?.clone();
        let (stats, text) = lab.ping(&p1, p2.ip, 3)?;
        ensure!(stats.received == 3, "{text}");
        let get = |url: &str| -> Result<(String, String)> {
            let out = lab.exec_in(&ns, &["curl", "-s", "-w", "\n%{http_code}", url])?;
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            let (body, code) = body.rsplit_once('\n').unwrap_or((&body, ""));
            Ok((code.to_string(), body.to_string()))
        };
        let (code, metrics) = get("http://127.0.0.1:9091/metrics")?;
        ensure!(code == "200", "/metrics answered {code}: {metrics}");
        for needle in [
            "felix_datastore_in_sync 1",
            "felix_map_capacity{map=\"felix_ct_v1\"} 262144",
            "felix_ready 1",
            "felix_policy_rule_packets_total{",
            "reason=\"forwarded_local\"",
        ] {
            ensure!(metrics.contains(needle), "no {needle:?} in:\n{metrics}");
        }
        let forwarded: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("felix_dataplane_packets_total{")
                    && l.contains("reason=\"forwarded_local\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        ensure!(forwarded >= 3, "forwarded_local packets {forwarded}");
        // Every keyed map reports its entries, the failsafe ports' too (Calico's defaults).
        let failsafe: u64 = metrics
            .lines()
            .find(|l| l.starts_with("felix_map_entries{map=\"felix_fsafe_v1\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0);
        ensure!(
            failsafe > 0,
            "failsafe map entries {failsafe} in:\n{metrics}"
        );
        for path in ["readiness", "liveness"] {
            let (code, body) = get(&format!("http://127.0.0.1:9099/{path}"))?;
            ensure!(code == "200", "/{path} answered {code}: {body}");
        }
        Ok(())
    })
}
