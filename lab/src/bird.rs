//! BIRD 2 daemons of the lab and `birdc` around them: `bird -f -c CONF -s CTL` started in a lab
//! namespace in the foreground (a recorded daemon, like etcd and felix), its control socket
//! polled until it answers, and `birdc show protocols` parsed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cmd;
use crate::proc::{self, ProcRecord};

/// The files of one BIRD daemon (in the lab's state folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirdFiles {
    /// `bird -c`: its configuration.
    pub config: PathBuf,
    /// `bird -s` / `birdc -s`: its control socket.
    pub ctl: PathBuf,
    /// BIRD's stderr (its log).
    pub log: PathBuf,
}

impl BirdFiles {
    /// `bird-<name>.conf`, `.ctl` and `.log` in `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            config: dir.join(format!("bird-{name}.conf")),
            ctl: dir.join(format!("bird-{name}.ctl")),
            log: dir.join(format!("bird-{name}.log")),
        }
    }
}

/// Starts `bird -f -c CONFIG -s CTL` in namespace `ns` (recorded as `what`).
pub fn start(ns: &str, what: &str, files: &BirdFiles) -> Result<ProcRecord> {
    let argv: Vec<String> = vec![
        "bird".into(),
        "-f".into(),
        "-c".into(),
        files.config.to_string_lossy().into_owned(),
        "-s".into(),
        files.ctl.to_string_lossy().into_owned(),
    ];
    proc::spawn_in_ns(proc::Enter::IpNetnsExec, ns, what, &argv, &[], &files.log)
}

/// `birdc -s CTL ARGS...` (the control socket is a path: reachable from any namespace): BIRD's
/// reply, also when it is an error such as `Network not found` (birdc then exits 1); an error
/// when BIRD did not answer.
pub fn birdc(ctl: &Path, args: &[&str]) -> Result<String> {
    let mut birdc = Command::new("birdc");
    birdc.arg("-s").arg(ctl).args(args);
    let out = birdc
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{}`", cmd::describe(&birdc)))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && !text.starts_with("BIRD ") {
        bail!(
            "`{}` failed ({}): {}{}",
            cmd::describe(&birdc),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(text)
}

/// Polls BIRD's control socket until it says it is up; fails early when BIRD exited.
pub fn wait_up(rec: &ProcRecord, ctl: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match birdc(ctl, &["show", "status"]) {
            Ok(text) if text.contains("Daemon is up and running") => return Ok(()),
            Ok(text) => text,
            Err(e) => format!("{e:#}"),
        };
        if let Some(how) = rec.exited() {
            bail!(
                "{} exited ({how}); log {}:\n{}",
                rec.what,
                rec.log.display(),
                proc::log_tail(&rec.log, 20)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} not up after {timeout:?} ({last}); log {}:\n{}",
                rec.what,
                rec.log.display(),
                proc::log_tail(&rec.log, 20)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// One row of `birdc show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    /// `BGP`, `Static`, `Kernel`, ...
    pub proto: String,
    /// `up`, `start`, `down`, ...
    pub state: String,
    /// For BGP: `Established`, `Idle`, `Connect`, `Passive`, ... (with an error, if any).
    pub info: String,
}

impl Protocol {
    pub fn is_bgp(&self) -> bool {
        self.proto == "BGP"
    }

    pub fn established(&self) -> bool {
        self.is_bgp() && self.state == "up" && self.info.starts_with("Established")
    }
}

/// Parses `birdc show protocols`: after the header line, `name proto table state since info...`.
pub fn parse_protocols(text: &str) -> Vec<Protocol> {
    text.lines()
        .skip_while(|l| !l.starts_with("Name "))
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?.to_owned();
            let proto = words.next()?.to_owned();
            let _table = words.next()?;
            let state = words.next()?.to_owned();
            let _since = words.next();
            Some(Protocol {
                name,
                proto,
                state,
                info: words.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

/// `birdc show protocols`, parsed.
pub fn protocols(ctl: &Path) -> Result<Vec<Protocol>> {
    Ok(parse_protocols(&birdc(ctl, &["show", "protocols"])?))
}

/// The BGP sessions of `protocols`, by name, sorted.
pub fn bgp_names(protocols: &[Protocol]) -> Vec<String> {
    let mut names: Vec<String> = protocols
        .iter()
        .filter(|p| p.is_bgp())
        .map(|p| p.name.clone())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW_PROTOCOLS: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     02:39:41.442  
kernel1    Kernel     master4    up     02:39:41.442  
calico_blocks Static     master4    up     02:39:41.442  
Mesh_10_0_0_2 BGP        ---        start  02:39:41.442  Active        Socket: Connection refused
Global_10_0_0_253 BGP        ---        up     02:39:42.501  Established   
";

    #[test]
    fn parses_show_protocols() {
        let all = parse_protocols(SHOW_PROTOCOLS);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].name, "device1");
        assert_eq!(all[2].proto, "Static");
        let mesh = &all[3];
        assert_eq!(mesh.state, "start");
        assert_eq!(mesh.info, "Active Socket: Connection refused");
        assert!(!mesh.established());
        assert!(all[4].established());
        assert_eq!(bgp_names(&all), ["Global_10_0_0_253", "Mesh_10_0_0_2"]);
        assert!(parse_protocols("Unable to connect").is_empty());
    }

    #[test]
    fn files_live_in_the_state_folder() {
        let files = BirdFiles::in_dir(Path::new("/run/felix-lab/fx0001"), "tor");
        assert_eq!(files.ctl, Path::new("/run/felix-lab/fx0001/bird-tor.ctl"));
        assert_eq!(files.log, Path::new("/run/felix-lab/fx0001/bird-tor.log"));
    }
}
