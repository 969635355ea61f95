//! Traffic and captures inside lab namespaces: iperf3 runs with parsed JSON reports, and tcpdump
//! captures as guards (a capture still running when its guard drops is stopped and reaped).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Which iperf3 test to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iperf {
    /// TCP for this many seconds.
    Tcp { seconds: u32 },
    /// TCP, a fixed amount of bytes (`-n`).
    TcpBytes { bytes: u64 },
    /// TCP for this many seconds, the server sending (`-R`): data flows against the direction
    /// the connections were opened in.
    TcpReverse { seconds: u32 },
    /// UDP at `mbit` Mbit/s for this many seconds.
    Udp { seconds: u32, mbit: u32 },
}

impl Iperf {
    /// Client arguments after `-c IP -p PORT`.
    fn args(self) -> Vec<String> {
        match self {
            Iperf::Tcp { seconds } => vec!["-t".into(), seconds.to_string()],
            Iperf::TcpBytes { bytes } => vec!["-n".into(), bytes.to_string()],
            Iperf::TcpReverse { seconds } => vec!["-R".into(), "-t".into(), seconds.to_string()],
            Iperf::Udp { seconds, mbit } => vec![
                "-u".into(),
                "-b".into(),
                format!("{mbit}M"),
                "-t".into(),
                seconds.to_string(),
            ],
        }
    }
}

/// What an iperf3 client reported (`-J`), from both ends of the test.
#[derive(Debug, Clone)]
pub struct IperfReport {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// Receiver's bit rate.
    pub received_bps: f64,
    /// UDP only: datagrams the receiver got (sent minus lost as the receiver counts them).
    pub received_datagrams: Option<u64>,
    pub lost_datagrams: Option<u64>,
    /// The client's full JSON report.
    pub json: Value,
}

impl IperfReport {
    /// Parses `iperf3 -c ... -J` output (iperf 3.12: `end.sum_sent` / `end.sum_received`).
    pub fn parse(text: &str, udp: bool) -> Result<Self> {
        let json: Value = serde_json::from_str(text).context("iperf3 JSON")?;
        if let Some(err) = json.get("error").and_then(Value::as_str) {
            bail!("iperf3 error: {err}");
        }
        let end = &json["end"];
        let num = |v: &Value, what: &str| {
            v.as_u64()
                .or_else(|| v.as_f64().map(|f| f as u64))
                .with_context(|| format!("iperf3 JSON lacks {what}"))
        };
        let sent_bytes = num(&end["sum_sent"]["bytes"], "end.sum_sent.bytes")?;
        let received = &end["sum_received"];
        let received_bytes = num(&received["bytes"], "end.sum_received.bytes")?;
        let received_bps = received["bits_per_second"].as_f64().unwrap_or_default();
        let (received_datagrams, lost_datagrams) = if udp {
            let packets = num(&received["packets"], "end.sum_received.packets")?;
            let lost = num(&received["lost_packets"], "end.sum_received.lost_packets")?;
            (Some(packets.saturating_sub(lost)), Some(lost))
        } else {
            (None, None)
        };
        Ok(Self {
            sent_bytes,
            received_bytes,
            received_bps,
            received_datagrams,
            lost_datagrams,
            json,
        })
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "sent {:.1} MB, received {:.1} MB, {:.2} Gbit/s",
            self.sent_bytes as f64 / 1e6,
            self.received_bytes as f64 / 1e6,
            self.received_bps / 1e9
        );
        if let (Some(got), Some(lost)) = (self.received_datagrams, self.lost_datagrams) {
            line.push_str(&format!(", {got} datagrams received, {lost} lost"));
        }
        line
    }
}

/// `ip netns exec NS argv...`
pub fn in_ns(ns: &str, argv: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(argv);
    cmd
}

/// Runs iperf3 `test` from namespace `client_ns` to `server_ip` served in `server_ns` (one-off
/// server, `-1`); retries the client briefly while the server is not listening yet.
pub fn iperf(
    client_ns: &str,
    server_ns: &str,
    server_ip: &str,
    test: Iperf,
) -> Result<IperfReport> {
    let port = "5201";
    let mut srv = in_ns(server_ns, &["iperf3", "-s", "-1", "-p", port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the iperf3 server")?;
    let udp = matches!(test, Iperf::Udp { .. });
    let args = test.args();
    let mut argv = vec!["iperf3", "-c", server_ip, "-p", port, "-J"];
    argv.extend(args.iter().map(String::as_str));
    let deadline = Instant::now() + Duration::from_secs(5);
    let result = loop {
        let out = in_ns(client_ns, &argv)
            .stdin(Stdio::null())
            .output()
            .context("running the iperf3 client")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // iperf3 -J may exit 0 with {"error": ...}: parse either way.
        let parsed = if out.status.success() {
            IperfReport::parse(&text, udp)
        } else {
            Err(anyhow::anyhow!(
                "exit {}: {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        };
        // The server may not listen yet (connection refused): retry briefly.
        match parsed {
            Ok(report) => break Ok(report),
            Err(e) if Instant::now() >= deadline => {
                break Err(e.context(format!("iperf3 {client_ns} -> {server_ip}")));
            }
            Err(_) => {}
        }
        thread::sleep(Duration::from_millis(200));
    };
    let server_done = wait_child(&mut srv, Duration::from_secs(10), "iperf3 server");
    let report = result?;
    server_done?;
    Ok(report)
}

/// Waits for `child` up to `timeout`, killing it (we started it) if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration, what: &str) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!("{what} exited with {status}: {}", err.trim());
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            bail!("{what} still running after {timeout:?}; killed");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A running `tcpdump -w -` in a lab namespace, bounded by `timeout(1)`. Its pcap output is
/// collected in memory (no file, so tcpdump's privilege drop and AppArmor profile do not matter).
pub struct Capture {
    child: Option<Child>,
    reader: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
    what: String,
    limit: Duration,
}

impl Capture {
    /// Starts `tcpdump -i IFACE -nn -U -c COUNT -w - FILTER` in `ns`, at most `limit` long, and
    /// returns once tcpdump says it is listening.
    pub fn start(ns: &str, iface: &str, filter: &str, count: u32, limit: Duration) -> Result<Self> {
        let secs = limit.as_secs().max(1).to_string();
        let count = count.to_string();
        let what = format!("tcpdump -i {iface} '{filter}' in {ns}");
        let mut child = in_ns(
            ns,
            &[
                "timeout", "-s", "INT", &secs, "tcpdump", "-i", iface, "-nn", "-U", "-c", &count,
                "-w", "-", filter,
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
        let stdout: Option<ChildStdout> = child.stdout.take();
        let reader = stdout.map(|mut out| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                out.read_to_end(&mut buf).map(|_| buf)
            })
        });
        let mut cap = Self {
            child: None,
            reader,
            what,
            limit,
        };
        let stderr = child.stderr.take();
        cap.child = Some(child);
        // tcpdump prints `listening on IFACE, ...` once the socket is bound; any other line
        // before that is an error (which `timeout` bounds in any case).
        let mut said = String::new();
        if let Some(err) = stderr {
            let mut lines = BufReader::new(err).lines();
            loop {
                match lines.next() {
                    Some(Ok(line)) if line.contains("listening on") => break,
                    Some(Ok(line)) => {
                        said.push_str(&line);
                        said.push('\n');
                    }
                    Some(Err(e)) => bail!("{}: reading its stderr: {e}", cap.what),
                    None => bail!("{} exited before listening: {said}", cap.what),
                }
            }
            // Keep draining stderr so tcpdump never blocks on it.
            thread::spawn(move || for _ in lines {});
        }
        Ok(cap)
    }

    /// Waits until tcpdump ends by itself (COUNT packets or the time limit); the pcap bytes.
    pub fn wait(mut self) -> Result<Vec<u8>> {
        self.finish(false)
    }

    /// Stops the capture now (SIGTERM to `timeout`, which passes it on); the pcap bytes so far.
    pub fn stop(mut self) -> Result<Vec<u8>> {
        self.finish(true)
    }

    fn finish(&mut self, stop: bool) -> Result<Vec<u8>> {
        let Some(mut child) = self.child.take() else {
            bail!("{}: already finished", self.what);
        };
        if stop {
            terminate(&child);
        }
        let deadline = Instant::now() + self.limit + Duration::from_secs(3);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not end within {:?}; killed", self.what, self.limit);
            }
            thread::sleep(Duration::from_millis(50));
        };
        // 124: `timeout` ended it; 130/143: stopped by a signal we passed on.
        let by_our_signal = stop && status.signal().is_some();
        if !(status.success() || by_our_signal || matches!(status.code(), Some(124 | 130 | 143))) {
            bail!("{} exited with {status}", self.what);
        }
        let Some(reader) = self.reader.take() else {
            bail!("{}: no output reader", self.what);
        };
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("{}: reader thread panicked", self.what))?
            .with_context(|| format!("{}: reading its output", self.what))
    }
}

/// SIGTERM to the `timeout` process we started; it forwards the signal to tcpdump.
fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of our own, not yet reaped child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_udp_report() -> Result<()> {
        let text = r#"{"start":{},"intervals":[],"end":{
          "sum":{"bytes":1249500,"packets":875,"lost_packets":0},
          "sum_sent":{"bytes":1249500,"bits_per_second":9995300.3,"packets":875,"lost_packets":0},
          "sum_received":{"bytes":1249500,"bits_per_second":9993981.2,"packets":875,"lost_packets":5}}}"#;
        let r = IperfReport::parse(text, true)?;
        assert_eq!(r.sent_bytes, 1_249_500);
        assert_eq!(r.received_datagrams, Some(870));
        assert_eq!(r.lost_datagrams, Some(5));
        assert!(IperfReport::parse(r#"{"error":"unable to connect"}"#, false).is_err());
        assert!(IperfReport::parse(r#"{"end":{}}"#, false).is_err());
        Ok(())
    }
}
