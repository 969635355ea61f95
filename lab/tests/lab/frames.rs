//! Hostile and unusual frames from pods in the real lab: 802.1Q/802.1ad-tagged frames sent from
//! a pod's eth0 are dropped as `drop_vlan_tagged` and reach neither a pod nor the fabric;
//! 3000-byte UDP datagrams (fragmented by the sender) under a port policy arrive 5 of 5, same
//! host and across hosts, both ways; a packet whose TTL runs out gets an ICMP time exceeded from
//! each host on the path, as traceroute expects.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::{Lab, PodInfo, pcap, traffic};

use crate::support::with_lab;

/// Debian's Python runs both ends of the UDP exchange.
const PYTHON: &str = "/usr/bin/python3";
/// The port the policy allows, and one it does not.
const ALLOWED_PORT: u16 = 5353;
const DENIED_PORT: u16 = 5354;
/// Datagrams per exchange, and their size (more than the pods' MTU: fragmented).
const DATAGRAMS: u32 = 5;
const DATAGRAM_BYTES: usize = 3000;
/// Echoes every datagram on ports argv[1..] back to its sender, for 30 s at most.
const ECHO: &str = "import select, socket, sys, time
socks = []
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('', int(port)))
    socks.append(s)
print('ready', flush=True)
end = time.time() + 30
while time.time() < end:
    for s in select.select(socks, [], [], 0.5)[0]:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
";
/// Sends argv[3] datagrams of argv[4] bytes to argv[1]:argv[2], one at a time, waiting up to
/// 1 s for each echo; prints how many came back whole.
const CLIENT: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(1)
size = int(sys.argv[4])
back = 0
for i in range(int(sys.argv[3])):
    payload = bytes([i]) * size
    s.send(payload)
    try:
        if s.recv(65535) == payload:
            back += 1
    except OSError:
        pass
print(back)
";

/// Only UDP to 5353 in and out of every pod (replies pass as their flow's).
const UDP_5353_ONLY: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: udp-5353-only
spec:
  selector: has(app)
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: UDP
      destination:
        ports: [5353]
  egress:
    - action: Allow
      protocol: UDP
      destination:
        ports: [5353]
"#;

/// Datagrams of `DATAGRAM_BYTES` from `from` to `to`:`port` that came back whole (both ways
/// fragmented), of `DATAGRAMS`.
fn echoed(from: &PodInfo, to: &PodInfo, port: u16) -> Result<u32> {
    let out = traffic::in_ns(
        &from.ns,
        &[
            PYTHON,
            "-c",
            CLIENT,
            &to.ip.to_string(),
            &port.to_string(),
            &DATAGRAMS.to_string(),
            &DATAGRAM_BYTES.to_string(),
        ],
    )
    .stdin(Stdio::null())
    .output()
    .context("running the UDP client")?;
    ensure!(
        out.status.success(),
        "UDP client in {}: {}",
        from.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("UDP client output {text:?}"))
}

/// Starts the echo server in `pod` on both ports and waits until it listens.
fn start_echo(pod: &PodInfo) -> Result<std::process::Child> {
    use std::io::{BufRead, BufReader};
    let mut child = traffic::in_ns(
        &pod.ns,
        &[
            PYTHON,
            "-c",
            ECHO,
            &ALLOWED_PORT.to_string(),
            &DENIED_PORT.to_string(),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .context("starting the echo server")?;
    let stdout = child.stdout.take().context("echo server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    ensure!(
        line.trim() == "ready",
        "echo server in {}: {line:?}",
        pod.name
    );
    Ok(child)
}

/// Stops an echo server this test started.
fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn fragmented_udp_under_a_port_policy_arrives_same_host_and_across_hosts() -> Result<()> {
    with_lab(|lab| {
        let p1 = lab.pod(1, 1)?.clone();
        let p2 = lab.pod(1, 2)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        lab.apply_yaml("udp-5353-only", UDP_5353_ONLY)?;
        for n in [1, 2] {
            lab.wait_programmed(n, &["udp-5353-only"], true, Duration::from_secs(10))?;
        }
        let servers = [&p1, &p2, &remote]
            .into_iter()
            .map(start_echo)
            .collect::<Result<Vec<_>>>();
        let result = exchanges(lab, &p1, &p2, &remote);
        for child in servers?.into_iter() {
            stop(child);
        }
        result
    })
}

fn exchanges(lab: &Lab, p1: &PodInfo, p2: &PodInfo, remote: &PodInfo) -> Result<()> {
    let before = [lab.counters(1)?, lab.counters(2)?];
    for (from, to) in [(p1, p2), (p2, p1), (p1, remote), (remote, p1)] {
        let back = echoed(from, to, ALLOWED_PORT)?;
        println!(
            "{} -> {}:{ALLOWED_PORT}: {back} of {DATAGRAMS} datagrams of {DATAGRAM_BYTES} bytes echoed",
            from.name, to.name
        );
        ensure!(
            back == DATAGRAMS,
            "{} -> {}: {back} of {DATAGRAMS} echoed",
            from.name,
            to.name
        );
        // The policy still holds for the datagram as a whole.
        let denied = echoed(from, to, DENIED_PORT)?;
        ensure!(
            denied == 0,
            "{} -> {}:{DENIED_PORT} passed",
            from.name,
            to.name
        );
    }
    let after = [lab.counters(1)?, lab.counters(2)?];
    for (n, pod) in [(0, p1), (0, p2), (1, remote)] {
        let orphans = after[n].grew(&before[n], &pod.cali, "from_workload", "drop_frag_orphan");
        ensure!(orphans == 0, "{}: {orphans} fragments orphaned", pod.cali);
    }
    Ok(())
}

/// Sends three UDP datagrams from `argv[1]` to `argv[2]`:7777 out of eth0 in frames to the
/// gateway's MAC carrying the tags `argv[3]` (TPIDs, outermost first, VLAN 100), through a raw
/// socket (the lab's kernel has no VLAN interfaces).
const TAGGED_SENDER: &str = "import socket, struct, sys
src, dst, tpids = sys.argv[1], sys.argv[2], sys.argv[3].split(',')
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
mac = s.getsockname()[4]
payload = b'tagged'
udp = struct.pack('!HHHH', 40000, 7777, 8 + len(payload), 0) + payload
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
total = sum(struct.unpack('!10H', ip))
while total >> 16:
    total = (total & 0xffff) + (total >> 16)
ip = ip[:10] + struct.pack('!H', ~total & 0xffff) + ip[12:]
tags = b''.join(struct.pack('!HH', int(t, 16), 100) for t in tpids)
frame = b'\\xee' * 6 + mac + tags + b'\\x08\\x00' + ip + udp
for _ in range(3):
    s.send(frame)
";
/// Tags of the frames sent: 802.1Q, 802.1ad, and QinQ (802.1ad outside 802.1Q).
const TAG_STACKS: [&str; 3] = ["8100", "88a8", "88a8,8100"];

/// Three tagged frames from `from` to `to` (see [`TAGGED_SENDER`]).
fn send_tagged(from: &PodInfo, to: &PodInfo, tpids: &str) -> Result<()> {
    let out = traffic::in_ns(
        &from.ns,
        &[
            PYTHON,
            "-c",
            TAGGED_SENDER,
            &from.ip.to_string(),
            &to.ip.to_string(),
            tpids,
        ],
    )
    .stdin(Stdio::null())
    .output()
    .context("running the tagged sender")?;
    ensure!(
        out.status.success(),
        "tagged sender in {}: {}",
        from.name,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The kernel moves a frame's (outer) tag out of it before TC runs (`vlan_present`): tagged
/// frames from a pod, well-formed but for the tag, are dropped as `drop_vlan_tagged` and
/// reach neither the peer pod on the same host nor the fabric nor the pod on the other host.
#[test]
fn tagged_frames_from_a_pod_are_dropped_and_reach_no_one() -> Result<()> {
    with_lab(|lab| {
        let p1 = lab.pod(1, 1)?.clone();
        let p2 = lab.pod(1, 2)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        let fabric = lab.state().fabric_ns.clone();
        let limit = Duration::from_secs(10);
        let captures = [
            (
                &p2.name,
                lab.capture(&p2.ns, "eth0", "vlan or udp port 7777", 1, limit)?,
            ),
            (
                &remote.name,
                lab.capture(&remote.ns, "eth0", "vlan or udp port 7777", 1, limit)?,
            ),
            (
                &fabric,
                lab.capture(&fabric, "br0", "vlan or ip proto 4", 1, limit)?,
            ),
        ];
        let before = lab.counters(1)?;
        for peer in [&p2, &remote] {
            for tpids in TAG_STACKS {
                send_tagged(&p1, peer, tpids)?;
            }
        }
        // Time for a frame that did get through to show in the captures.
        std::thread::sleep(Duration::from_millis(500));
        let dropped = lab
            .counters(1)?
            .grew(&before, &p1.cali, "from_workload", "drop_vlan_tagged");
        let sent = 2 * TAG_STACKS.len() as u64 * 3;
        ensure!(
            dropped == sent,
            "{} drop_vlan_tagged grew by {dropped}, {sent} tagged frames sent",
            p1.cali
        );
        for (whom, capture) in captures {
            let seen = capture.stop()?;
            let frames = pcap::frames(&seen)?;
            ensure!(
                frames.is_empty(),
                "{whom} saw {} frames: {frames:02x?}",
                frames.len()
            );
        }
        Ok(())
    })
}

/// Traceroute from a pod to a pod on the other host: TTL 1 is answered by the pod's own host
/// (felix, `icmp_ttl_exceeded`), TTL 2 by the other host (its stack, `pass_ttl_exceeded`),
/// TTL 3 reaches the pod.
#[test]
fn a_pods_packet_whose_ttl_runs_out_is_answered_with_time_exceeded() -> Result<()> {
    with_lab(|lab| {
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        let hops = [lab.host(1)?.ip, lab.host(2)?.ip];
        let before = [lab.counters(1)?, lab.counters(2)?];
        for (ttl, hop) in [(1, hops[0]), (2, hops[1])] {
            let ttl = ttl.to_string();
            let (_, text) = lab.ping_from(&p1.ns, remote.ip, 1, &["-t", &ttl])?;
            let expected = format!("From {hop} icmp_seq=1 Time to live exceeded");
            ensure!(
                text.contains(&expected),
                "ping -t {ttl}: no {expected:?}:\n{text}"
            );
        }
        let after = [lab.counters(1)?, lab.counters(2)?];
        let answered = after[0].grew(&before[0], &p1.cali, "from_workload", "icmp_ttl_exceeded");
        ensure!(
            answered == 1,
            "{} icmp_ttl_exceeded grew by {answered}",
            p1.cali
        );
        let passed = after[1].grew(&before[1], "eth0", "from_uplink", "pass_ttl_exceeded");
        ensure!(passed == 1, "h2 eth0 pass_ttl_exceeded grew by {passed}");
        let (stats, text) = lab.ping_from(&p1.ns, remote.ip, 1, &["-t", "3"])?;
        ensure!(stats.received == 1, "ping -t 3:\n{text}");
        Ok(())
    })
}
