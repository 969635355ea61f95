//! The felix under test: `felix run` inside the lab's host namespace (entered with `nsenter
//! --net`, not `ip netns exec`, whose private /sys hides bpffs), logging at info to a file;
//! its memory and CPU from `/proc`, and the milestones of its start from its log.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};

use super::{
    lab::{Lab, UPLINK},
    proc::{self, Memory},
};

/// Log lines of felix's start, in the order they come: (message, short name).
pub const MILESTONES: [(&str, &str); 5] = [
    ("dataplane loaded", "programs loaded"),
    ("initial interfaces attached", "interfaces attached"),
    ("datastore listed", "etcd listed"),
    ("policy programmed", "policy programmed"),
    ("dataplane maps updated", "maps updated"),
];

/// A running felix.
pub struct Felix {
    child: Child,
    pub pid: u32,
    /// When it was spawned.
    pub started: Instant,
    started_wall: SystemTime,
    pub log: PathBuf,
}

impl Felix {
    /// `felix run --node <node> ...` with the lab's etcd, uplink, pin root and run root.
    pub fn start(bin: &Path, lab: &Lab, node: &str, run: usize) -> Result<Self> {
        let log = lab.dir.join(format!("felix-{run}.log"));
        let file = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", lab.host))
            .arg(bin)
            .args(["run", "--node", node, "--etcd-endpoints", &lab.etcd_url()])
            .args(["--uplink", UPLINK])
            .arg("--pin-root")
            .arg(&lab.pin_root)
            .arg("--run-root")
            .arg(&lab.run_root)
            .env("RUST_LOG", "info,netlink_packet_route=error")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("clone the log file")?)
            .stderr(file);
        let started_wall = SystemTime::now();
        let started = Instant::now();
        let child = proc::spawn_owned(&mut command).context("start felix")?;
        Ok(Felix {
            pid: child.id(),
            child,
            started,
            started_wall,
            log,
        })
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn memory(&self) -> Result<Memory> {
        proc::memory(self.pid)
    }

    pub fn cpu(&self) -> Result<Duration> {
        proc::cpu_time(self.pid)
    }

    pub fn log_tail(&self, n: usize) -> String {
        proc::tail(&self.log, n)
    }

    /// Time from the spawn to each of [`MILESTONES`]' first log line (`None`: not logged).
    pub fn milestones(&self) -> Vec<Option<Duration>> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let start = self
            .started_wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        MILESTONES
            .iter()
            .map(|(message, _)| {
                let line = text.lines().find(|l| l.contains(message))?;
                let at = parse_timestamp(strip_ansi(line).split_whitespace().next()?)?;
                at.checked_sub(start)
            })
            .collect()
    }

    /// SIGTERM, then SIGKILL after 10 s; true when it stopped on SIGTERM.
    pub fn stop(mut self) -> bool {
        proc::stop(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for Felix {
    fn drop(&mut self) {
        proc::kill_and_reap(&mut self.child);
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-28T01:57:45.123456Z` (tracing's timestamps, UTC) as time since the Unix epoch.
pub fn parse_timestamp(text: &str) -> Option<Duration> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|s| s.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|s| s.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let secs = days_from_civil(y, m, day) * 86_400 + h * 3_600 + min * 60 + s;
    let digits = frac.get(..frac.len().min(9))?;
    let nanos: u64 = format!("{digits:0<9}").parse().ok()?;
    Some(Duration::from_secs(u64::try_from(secs).ok()?) + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01.5Z"),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00.000123Z"),
            Some(Duration::from_secs(1_767_225_600) + Duration::from_micros(123))
        );
        assert_eq!(
            parse_timestamp("2000-02-29T12:30:15Z"),
            Some(Duration::from_secs(951_827_415))
        );
        assert_eq!(parse_timestamp("INFO"), None);
        assert_eq!(
            strip_ansi("\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"),
            "2026-01-01T00:00:00Z  INFO x"
        );
    }
}
