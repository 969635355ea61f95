//! Daemons the lab starts (etcd, felix): spawned detached with a saved record, and ended only by
//! that record (PID + start time + command line, against PID reuse).

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A process the lab started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcRecord {
    pub pid: i32,
    /// What it is, e.g. `etcd` or `felix h1`.
    pub what: String,
    /// The program's argv (after the launcher, which execs into it).
    pub argv: Vec<String>,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub starttime: u64,
    pub log: PathBuf,
}

/// The process a lab belongs to (it is torn down when that process is gone).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub starttime: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Result<Self> {
        let pid = i32::try_from(std::process::id()).context("pid out of range")?;
        let stat = stat(pid).context("reading our own /proc/self/stat")?;
        Ok(Self {
            pid,
            starttime: stat.starttime,
        })
    }

    /// Whether the owner still runs (same PID and start time, not a zombie).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.running() && s.starttime == self.starttime)
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub starttime: u64,
}

impl Stat {
    /// Not a zombie or dead task.
    pub fn running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/<pid>/stat` (the command may hold spaces and parentheses: split after the last `)`).
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); starttime is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `/proc/<pid>/cmdline` split into arguments.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// `/proc/<pid>/cmdline`, waiting briefly while it reads empty (it does during an exec).
fn settled_cmdline(pid: i32) -> Option<Vec<String>> {
    for _ in 0..40 {
        let args = cmdline(pid)?;
        if !args.is_empty() {
            return Some(args);
        }
        thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Whether `cmdline` is `argv`, possibly still behind the launcher ([`Enter`]) that execs into it.
pub fn cmdline_matches(cmdline: &[String], argv: &[String]) -> bool {
    !argv.is_empty() && cmdline.ends_with(argv)
}

impl ProcRecord {
    /// Whether the recorded process still runs and is still the one we started.
    pub fn is_ours_and_running(&self) -> bool {
        self.exited().is_none()
            && settled_cmdline(self.pid).is_some_and(|c| cmdline_matches(&c, &self.argv))
    }

    /// How the recorded process ended, once it surely has: its PID gone or now another
    /// process's, or a zombie (reaped here, with its exit status when it is our child). `None`
    /// while it runs. For waits on a process just started: unlike [`Self::is_ours_and_running`]
    /// it does not read the command line, which a launcher's exec leaves briefly unreadable.
    pub fn exited(&self) -> Option<String> {
        let Some(stat) = stat(self.pid) else {
            return Some("its pid is gone".into());
        };
        if stat.starttime != self.starttime {
            return Some("its pid is another process now".into());
        }
        if stat.running() {
            return None;
        }
        Some(reap(self.pid).unwrap_or_else(|| "a zombie we cannot reap".into()))
    }
}

/// How a daemon enters its network namespace; both exec into the program (same PID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enter {
    /// `ip netns exec NS`: also a private mount namespace with that netns's /sys, which hides
    /// the host's bpffs at /sys/fs/bpf.
    IpNetnsExec,
    /// `nsenter --net=/run/netns/NS`: network namespace only; the mounts (bpffs) stay the host's,
    /// so pins are visible to `felix bpf ... dump` and bpftool run from the root namespace.
    NsenterNet,
}

impl Enter {
    fn command(self, ns: &str) -> Command {
        match self {
            Enter::IpNetnsExec => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]);
                cmd
            }
            Enter::NsenterNet => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{ns}"));
                cmd
            }
        }
    }
}

/// Starts `argv` inside namespace `ns` in its own process group, stdout/stderr to `log`, without
/// waiting for it (it outlives us when we return).
pub fn spawn_in_ns(
    enter: Enter,
    ns: &str,
    what: &str,
    argv: &[String],
    envs: &[(&str, &str)],
    log: &Path,
) -> Result<ProcRecord> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone().context("duplicating the log file")?;
    let mut cmd = enter.command(ns);
    cmd.args(argv)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {what} in {ns}"))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    // Dropping `child` neither kills nor waits: the daemon runs on; teardown reaps it by PID.
    drop(child);
    let starttime = stat(pid)
        .map(|s| s.starttime)
        .with_context(|| format!("{what} (pid {pid}) vanished right after start"))?;
    Ok(ProcRecord {
        pid,
        what: what.to_owned(),
        argv: argv.to_vec(),
        starttime,
        log: log.to_path_buf(),
    })
}

/// Collects the exit status if `pid` is our child (no-op otherwise); how it ended, when known.
fn reap(pid: i32) -> Option<String> {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a pid only writes `status`; ECHILD if not our child.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (rc == pid).then(|| describe_wait_status(status))
}

/// A waitpid status in words: `exit code N` or `killed by signal N`.
fn describe_wait_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

fn signal(pid: i32, sig: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory effects; pid > 0 targets exactly one process.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn running(pid: i32) -> bool {
    match stat(pid) {
        Some(s) if s.running() => true,
        Some(_) => {
            let _ = reap(pid);
            false
        }
        None => false,
    }
}

/// SIGTERM each pid, wait up to `grace` for all to exit, SIGKILL the rest. Returns problems.
/// Callers pass only processes they verified as theirs.
pub fn terminate(pids: &[i32], grace: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    let pids: Vec<i32> = pids.iter().copied().filter(|&p| p > 1).collect();
    for &pid in &pids {
        if let Err(e) = signal(pid, libc::SIGTERM)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            problems.push(format!("SIGTERM {pid}: {e}"));
        }
    }
    if wait_gone(&pids, grace) {
        return problems;
    }
    for &pid in pids.iter().filter(|&&p| running(p)) {
        if let Err(e) = signal(pid, libc::SIGKILL)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            problems.push(format!("SIGKILL {pid}: {e}"));
        }
    }
    if !wait_gone(&pids, Duration::from_secs(2)) {
        let left: Vec<String> = pids
            .iter()
            .filter(|&&p| running(p))
            .map(i32::to_string)
            .collect();
        problems.push(format!("still running after SIGKILL: {}", left.join(" ")));
    }
    problems
}

fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !running(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a log, for error messages.
pub use testkit::log::tail as log_tail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let text = "1234 (we (ird) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(text);
        assert_eq!(
            stat,
            Some(Stat {
                state: 'S',
                starttime: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive() -> Result<()> {
        let me = Owner::current()?;
        assert!(me.alive());
        let reused = Owner {
            starttime: me.starttime + 1,
            ..me
        };
        assert!(!reused.alive());
        Ok(())
    }

    #[test]
    fn cmdline_match_accepts_exec_forms() {
        let argv: Vec<String> = ["etcd", "--name", "default"].map(String::from).to_vec();
        let direct = argv.clone();
        let wrapped: Vec<String> = [
            "ip",
            "netns",
            "exec",
            "fx0000-fabric",
            "etcd",
            "--name",
            "default",
        ]
        .map(String::from)
        .to_vec();
        let other: Vec<String> = ["sleep", "100"].map(String::from).to_vec();
        assert!(cmdline_matches(&direct, &argv));
        assert!(cmdline_matches(&wrapped, &argv));
        assert!(!cmdline_matches(&other, &argv));
        assert!(!cmdline_matches(&other, &[]));
    }

    #[test]
    fn terminates_a_child_and_guards_pid_reuse() -> Result<()> {
        let log = std::env::temp_dir().join(format!("xtask-proc-test-{}.log", std::process::id()));
        let child = Command::new("sleep").arg("30").spawn()?;
        let pid = i32::try_from(child.id())?;
        let rec = ProcRecord {
            pid,
            what: "sleep".into(),
            argv: vec!["sleep".into(), "30".into()],
            starttime: stat(pid).map(|s| s.starttime).unwrap_or_default(),
            log: log.clone(),
        };
        assert!(rec.is_ours_and_running());
        let wrong = ProcRecord {
            argv: vec!["etcd".into()],
            ..rec.clone()
        };
        assert!(!wrong.is_ours_and_running());
        assert!(terminate(&[pid], Duration::from_secs(5)).is_empty());
        assert!(!rec.is_ours_and_running());
        Ok(())
    }

    /// A record of `argv` spawned as a child (logging nowhere).
    fn spawn_child(argv: &[&str]) -> Result<ProcRecord> {
        let child = Command::new(argv[0]).args(&argv[1..]).spawn()?;
        let pid = i32::try_from(child.id())?;
        Ok(ProcRecord {
            pid,
            what: argv[0].into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            starttime: stat(pid).map(|s| s.starttime).context("no stat")?,
            log: PathBuf::from("/dev/null"),
        })
    }

    /// Waits up to 5 s for `rec` to end; how it ended.
    fn wait_exited(rec: &ProcRecord) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match rec.exited() {
                Some(how) => return Some(how),
                None if Instant::now() >= deadline => return None,
                None => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    #[test]
    fn exited_reports_the_exit_status_and_not_a_running_process() -> Result<()> {
        let code = spawn_child(&["sh", "-c", "exit 3"])?;
        assert_eq!(wait_exited(&code).as_deref(), Some("exit code 3"));
        // Reaped: the pid is gone now.
        assert_eq!(code.exited().as_deref(), Some("its pid is gone"));

        let sleeper = spawn_child(&["sleep", "30"])?;
        assert_eq!(sleeper.exited(), None);
        let moved = ProcRecord {
            starttime: sleeper.starttime + 1,
            ..sleeper.clone()
        };
        assert_eq!(
            moved.exited().as_deref(),
            Some("its pid is another process now")
        );
        signal(sleeper.pid, libc::SIGKILL)?;
        assert_eq!(wait_exited(&sleeper).as_deref(), Some("killed by signal 9"));
        Ok(())
    }
}
