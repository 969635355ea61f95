//! Path MTU across hosts over IPIP, with a 1450-byte fabric and a 9000-byte one: pods get the
//! fabric's MTU less 20, iperf3 and a 10 MB transfer cross, the largest DF packet fits the
//! tunnel, and a pod whose MTU is raised past the tunnel learns the tunnel's MTU from felix's
//! ICMP "fragmentation needed".

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::{Iperf, Lab, LabOptions, PodInfo, traffic};
use serde_json::Value;

use crate::support::{ip_in, with_lab_options};

/// ICMP and IPv4 headers that ping's `-s` does not count.
const PING_HEADERS: u32 = 28;
/// The 10 MB transfer.
const TRANSFER_BYTES: u64 = 10_000_000;
/// The transfer's port (iperf3 has 5201).
const TRANSFER_PORT: &str = "5202";
/// Debian's Python (not a user's shim) runs both ends of the transfer.
const PYTHON: &str = "/usr/bin/python3";
/// Counts the bytes of one TCP connection on port `argv[1]` until EOF and prints the count.
const SINK: &str = "import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('', int(sys.argv[1])))
l.listen(1)
l.settimeout(20)
c, _ = l.accept()
c.settimeout(20)
n = 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    n += len(b)
print(n)
";
/// Sends `argv[3]` zero bytes to `argv[1]`:`argv[2]` (retrying the connection while the sink
/// does not listen yet), then closes.
const SOURCE: &str = "import socket, sys, time
deadline = time.time() + 5
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
        break
    except ConnectionRefusedError:
        if time.time() > deadline:
            raise
        time.sleep(0.1)
left = int(sys.argv[3])
chunk = bytes(1 << 16)
while left > 0:
    n = min(left, len(chunk))
    s.sendall(chunk[:n])
    left -= n
s.close()
";

#[test]
fn small_fabric_mtu_1450() -> Result<()> {
    path_mtu_with_fabric(1450)
}

#[test]
fn jumbo_fabric_mtu_9000() -> Result<()> {
    path_mtu_with_fabric(9000)
}

fn path_mtu_with_fabric(fabric_mtu: u32) -> Result<()> {
    let opts = LabOptions {
        fabric_mtu,
        ..LabOptions::default()
    };
    with_lab_options(opts, |lab| {
        let tunnel = fabric_mtu - 20;
        let p1 = lab.pod(1, 1)?.clone();
        let p2 = lab.pod(1, 2)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        let h1 = lab.host(1)?.clone();
        ensure!(
            link_mtu(&h1.ns, "eth0")? == fabric_mtu,
            "uplink MTU is not {fabric_mtu}"
        );
        for pod in [&p1, &remote] {
            let mtu = link_mtu(&pod.ns, "eth0")?;
            ensure!(mtu == tunnel, "{} has MTU {mtu}, not {tunnel}", pod.name);
        }

        let tcp = lab.iperf(&p1, &remote, Iperf::Tcp { seconds: 2 })?;
        ensure!(
            tcp.received_bytes > 0,
            "TCP {} -> {}: {}",
            p1.name,
            remote.name,
            tcp.summary()
        );
        println!("fabric {fabric_mtu}: TCP {}", tcp.summary());
        let received = transfer(&p1, &remote, TRANSFER_BYTES)?;
        ensure!(
            received == TRANSFER_BYTES,
            "10 MB {} -> {}: the receiver got {received} bytes",
            p1.name,
            remote.name
        );

        // The largest DF packet the pod may send fits the tunnel exactly.
        let fits = (tunnel - PING_HEADERS).to_string();
        let (stats, text) = lab.ping_from(&p1.ns, remote.ip, 2, &["-M", "do", "-s", &fits])?;
        ensure!(
            stats.received == 2,
            "ping -M do -s {fits}: {stats:?}\n{text}"
        );

        // One byte more, from a pod whose own MTU does not stop it: felix answers.
        raise_pod_mtu(lab, &p2, fabric_mtu)?;
        let too_big = (tunnel - PING_HEADERS + 1).to_string();
        // Without DF the host fragments it to the tunnel route's MTU: the ping crosses (before
        // the DF ping teaches the pod's kernel the path's MTU, which would fragment it first).
        let before = lab.counters(1)?;
        let (stats, text) = lab.ping_from(&p2.ns, remote.ip, 2, &["-M", "dont", "-s", &too_big])?;
        ensure!(
            stats.received == 2,
            "ping -M dont -s {too_big}: {stats:?}\n{text}"
        );
        let after = lab.counters(1)?;
        let fragmented = after.grew(&before, &p2.cali, "from_workload", "pass_fragment");
        ensure!(
            fragmented >= 2,
            "{} (from_workload, pass_fragment) grew by {fragmented}",
            p2.cali
        );
        // With DF felix answers with the tunnel's MTU.
        let before = lab.counters(1)?;
        let (_, text) = lab.ping_from(&p2.ns, remote.ip, 3, &["-M", "do", "-s", &too_big])?;
        let from_felix = format!("Frag needed and DF set (mtu = {tunnel})");
        ensure!(
            text.contains(&from_felix),
            "ping -M do -s {too_big} from {} (MTU {fabric_mtu}): no {from_felix:?}:\n{text}",
            p2.name
        );
        let after = lab.counters(1)?;
        let answered = after.grew(&before, &p2.cali, "from_workload", "icmp_frag_needed");
        ensure!(
            answered >= 1,
            "{} (from_workload, icmp_frag_needed) did not grow",
            p2.cali
        );
        // The pod's kernel now knows the path's MTU and refuses the size itself.
        let out = lab.exec_in(
            &p2.ns,
            &[
                "ping",
                "-n",
                "-c",
                "1",
                "-M",
                "do",
                "-s",
                &too_big,
                &remote.ip.to_string(),
            ],
        )?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let learned = format!("message too long, mtu={tunnel}");
        ensure!(
            text.contains(&learned),
            "second ping from {}: no {learned:?}:\n{text}",
            p2.name
        );
        Ok(())
    })
}

/// Sends `bytes` over one TCP connection from pod `from` to pod `to`; the bytes `to` received.
fn transfer(from: &PodInfo, to: &PodInfo, bytes: u64) -> Result<u64> {
    let mut sink = traffic::in_ns(&to.ns, &[PYTHON, "-c", SINK, TRANSFER_PORT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the sink")?;
    let to_ip = to.ip.to_string();
    let bytes = bytes.to_string();
    let sent = traffic::in_ns(
        &from.ns,
        &[PYTHON, "-c", SOURCE, &to_ip, TRANSFER_PORT, &bytes],
    )
    .stdin(Stdio::null())
    .output()
    .context("running the source");
    let sink_done = traffic::wait_child(&mut sink, Duration::from_secs(30), "sink");
    let sent = sent?;
    ensure!(
        sent.status.success(),
        "source {} -> {}: {}",
        from.name,
        to.name,
        String::from_utf8_lossy(&sent.stderr)
    );
    sink_done?;
    let mut out = String::new();
    sink.stdout
        .take()
        .context("the sink's stdout")?
        .read_to_string(&mut out)?;
    out.trim()
        .parse()
        .with_context(|| format!("the sink printed {out:?}"))
}

/// The MTU of `link` in namespace `ns`.
fn link_mtu(ns: &str, link: &str) -> Result<u32> {
    let text = ip_in(ns, &["-j", "link", "show", "dev", link])?;
    let links: Value = serde_json::from_str(&text).context("ip -j link")?;
    let mtu = links[0]["mtu"]
        .as_u64()
        .with_context(|| format!("no mtu for {link} in {ns}: {text}"))?;
    Ok(u32::try_from(mtu)?)
}

/// Sets both ends of `pod`'s veth to `mtu` (past the tunnel's).
fn raise_pod_mtu(lab: &Lab, pod: &PodInfo, mtu: u32) -> Result<()> {
    let mtu = mtu.to_string();
    let host = lab.host(pod.host)?;
    ip_in(&host.ns, &["link", "set", &pod.cali, "mtu", &mtu])?;
    ip_in(&pod.ns, &["link", "set", "eth0", "mtu", &mtu])?;
    Ok(())
}
