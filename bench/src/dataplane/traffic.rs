//! The measured traffic between two lab pods: iperf3 TCP throughput with the machine's CPU
//! time over the run (`/proc/stat`), TSO/GSO switched with ethtool in the pods, and the
//! request/response load generator (`bench loadgen`) run in the pods' namespaces.

use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use lab::traffic::{self as lab_traffic, Iperf, in_ns};

use crate::{
    cpu_time::CpuSample,
    loadgen::{Outcome, Pattern},
};

/// The port of the load generator's servers.
pub const LOADGEN_PORT: u16 = 7000;
/// The interface of every lab pod.
const POD_IFACE: &str = "eth0";

/// One iperf3 run: the receiver's bit rate and the CPU time the machine spent meanwhile.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub gbps: f64,
    /// CPU seconds (all CPUs, busy time from `/proc/stat`) per gigabit received.
    pub cpu_s_per_gbit: f64,
}

/// iperf3 TCP for `seconds` from `client_ns` to `server_ip` (served in `server_ns`).
pub fn throughput(
    client_ns: &str,
    server_ns: &str,
    server_ip: Ipv4Addr,
    seconds: u32,
) -> Result<Throughput> {
    let before = CpuSample::now()?;
    let report = lab_traffic::iperf(
        client_ns,
        server_ns,
        &server_ip.to_string(),
        Iperf::Tcp { seconds },
    )?;
    let spent = before.until(CpuSample::now()?);
    let gbit = report.received_bytes as f64 * 8.0 / 1e9;
    ensure!(
        gbit > 0.0,
        "iperf3 {client_ns} -> {server_ip} moved no data"
    );
    let cpu_s = spent.busy_seconds();
    Ok(Throughput {
        gbps: report.received_bps / 1e9,
        cpu_s_per_gbit: cpu_s / gbit,
    })
}

/// `ethtool -K eth0 tso <on|off> gso <on|off>` in each of `pods`.
pub fn set_offloads(pods: &[&str], on: bool) -> Result<()> {
    let state = if on { "on" } else { "off" };
    for ns in pods {
        let out = in_ns(
            ns,
            &["ethtool", "-K", POD_IFACE, "tso", state, "gso", state],
        )
        .stdin(Stdio::null())
        .output()
        .context("running ethtool")?;
        ensure!(
            out.status.success(),
            "ethtool -K {POD_IFACE} tso/gso {state} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A load generator server in a pod, stopped (killed and reaped: it is our child) on drop.
pub struct Server {
    child: Child,
}

impl Server {
    /// `ip netns exec <ns> <bench> loadgen serve --port LOADGEN_PORT --size <size>`, once it
    /// says it listens.
    pub fn start(bench: &Path, ns: &str, size: usize) -> Result<Self> {
        let exe = bench.to_string_lossy();
        let port = LOADGEN_PORT.to_string();
        let size = size.to_string();
        let mut child = in_ns(
            ns,
            &[&exe, "loadgen", "serve", "--port", &port, "--size", &size],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the load generator server in {ns}"))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let server = Server { child };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the server's first line")?;
        ensure!(
            line.starts_with("listening"),
            "load generator server in {ns}: {line:?}"
        );
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bench loadgen client` of `pattern` in `client_ns` against `server_ip`.
pub fn transactions(
    bench: &Path,
    client_ns: &str,
    server_ip: Ipv4Addr,
    pattern: Pattern,
    threads: usize,
    seconds: f64,
    size: usize,
) -> Result<Outcome> {
    let exe = bench.to_string_lossy();
    let to = SocketAddr::from((server_ip, LOADGEN_PORT)).to_string();
    let pattern_name = match pattern {
        Pattern::Rr => "rr",
        Pattern::Crr => "crr",
    };
    let (threads, seconds, size) = (threads.to_string(), seconds.to_string(), size.to_string());
    let out = in_ns(
        client_ns,
        &[
            &exe,
            "loadgen",
            "client",
            "--pattern",
            pattern_name,
            "--to",
            &to,
            "--threads",
            &threads,
            "--seconds",
            &seconds,
            "--size",
            &size,
        ],
    )
    .stdin(Stdio::null())
    .output()
    .context("running the load generator client")?;
    ensure!(
        out.status.success(),
        "load generator {pattern_name} in {client_ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome::parse(&String::from_utf8_lossy(&out.stdout))
}

/// How a TCP connection attempt from a pod ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    Open,
    Refused,
    TimedOut,
}

/// `bench loadgen probe` in `ns`: one connection attempt to `to` with `timeout`.
pub fn probe(bench: &Path, ns: &str, to: SocketAddr, timeout: Duration) -> Result<Connect> {
    let exe = bench.to_string_lossy();
    let (to, ms) = (to.to_string(), timeout.as_millis().to_string());
    let out = in_ns(
        ns,
        &[&exe, "loadgen", "probe", "--to", &to, "--timeout-ms", &ms],
    )
    .stdin(Stdio::null())
    .output()
    .context("running the connection probe")?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "open" => Ok(Connect::Open),
        "refused" => Ok(Connect::Refused),
        "timeout" => Ok(Connect::TimedOut),
        other => bail!(
            "probe in {ns}: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One connection attempt from this namespace (what `bench loadgen probe` prints).
pub fn probe_here(to: SocketAddr, timeout: Duration) -> &'static str {
    match TcpStream::connect_timeout(&to, timeout) {
        Ok(_) => "open",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout",
        Err(_) => "error",
    }
}

/// How long a sentinel probe waits for an answer before it counts as denied.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// The pause between sentinel probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` from `ns` to `to` until it times out (the sentinel Deny is enforced), up to
/// `limit`; when the first denied probe started: the policy was enforced by then (and not
/// yet when the probe before it started), so its wait for the timeout is not counted.
pub fn wait_enforced(bench: &Path, ns: &str, to: SocketAddr, limit: Duration) -> Result<Instant> {
    let started = Instant::now();
    loop {
        let probed = Instant::now();
        if probe(bench, ns, to, PROBE_TIMEOUT)? == Connect::TimedOut {
            return Ok(probed);
        }
        if started.elapsed() > limit {
            bail!("{to} still answers from {ns} after {limit:?}: the policy is not enforced");
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// This process's executable, to run in the pods.
pub fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("current_exe")
}
