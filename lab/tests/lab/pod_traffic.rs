//! Pod traffic through felix: same host, across hosts over IPIP (as the fabric sees it), and
//! spoofed sources dropped.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::{Iperf, Lab, LabOptions, ipam, proc};
use lab::{felix, pcap};

use crate::support::{PINGS, assert_gone, with_lab};

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
