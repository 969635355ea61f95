//! The measured traffic between two lab pods: iperf3 TCP throughput with the machine's CPU
//! time over the run (`/proc/stat`), TSO/GSO switched with ethtool in the pods, and the
//! request/response load generator (`bench loadgen`) run in the pods' namespaces.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use lab::traffic::{self as lab_traffic, Iperf, in_ns};

use crate::loadgen::{Outcome, Pattern};

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

/// Busy and total jiffies of all CPUs (`cpu` line of `/proc/stat`).
fn cpu_jiffies() -> Result<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    parse_cpu_line(&stat).context("no cpu line in /proc/stat")
}

/// (busy, total) from `/proc/stat`'s first line: busy is all but idle and iowait.
fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// iperf3 TCP for `seconds` from `client_ns` to `server_ip` (served in `server_ns`).
pub fn throughput(
    client_ns: &str,
    server_ns: &str,
    server_ip: Ipv4Addr,
    seconds: u32,
) -> Result<Throughput> {
    let (busy0, _) = cpu_jiffies()?;
    let report = lab_traffic::iperf(
        client_ns,
        server_ns,
        &server_ip.to_string(),
        Iperf::Tcp { seconds },
    )?;
    let (busy1, _) = cpu_jiffies()?;
    let gbit = report.received_bytes as f64 * 8.0 / 1e9;
    ensure!(
        gbit > 0.0,
        "iperf3 {client_ns} -> {server_ip} moved no data"
    );
    let cpu_s = busy1.saturating_sub(busy0) as f64 / clock_ticks();
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

/// Polls `probe` from `ns` to `to` until it times out (the sentinel Deny is enforced), up to
/// `limit`; the time it took.
pub fn wait_enforced(bench: &Path, ns: &str, to: SocketAddr, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if probe(bench, ns, to, Duration::from_millis(300))? == Connect::TimedOut {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("{to} still answers from {ns} after {limit:?}: the policy is not enforced");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// This process's executable, to run in the pods.
pub fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("current_exe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\n";
        assert_eq!(parse_cpu_line(stat), Some((165, 1185)));
        assert_eq!(parse_cpu_line("intr 1 2 3\n"), None);
    }
}
