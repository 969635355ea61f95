//! The bench's two network namespaces: `fabric` (etcd) and `host` (felix), joined by a veth
//! (`eth0` in the host: felix's uplink), plus a `cali*` veth per local pod in the host (its
//! peer `podN` stays in the host too: felix only needs the names and ifindexes). A private pin
//! root under /sys/fs/bpf and a private folder under /tmp. Everything is removed on drop, also
//! after an error or an interrupt; what a killed run left is removed by [`clean_stale`].

use std::{
    collections::HashMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use testkit::netns::{self, Entered};

/// Prefix of everything a run creates: `felix-cp-<pid>`.
const PREFIX: &str = "felix-cp-";
/// The fabric side of the uplink, where etcd listens.
pub const ETCD_IP: &str = "10.99.255.254";
pub const ETCD_PORT: u16 = 2379;
/// The host's uplink address (node 0's address in the cluster).
const HOST_CIDR: &str = "10.99.0.1/16";
const FABRIC_CIDR: &str = "10.99.255.254/16";
/// Felix's uplink in the host namespace.
pub const UPLINK: &str = "eth0";
/// The MAC Calico gives every `cali*` interface.
const CALI_MAC: &str = "ee:ee:ee:ee:ee:ee";

/// The namespaces, pin root and folder of one run.
pub struct Lab {
    pub fabric: String,
    pub host: String,
    /// Felix's `--pin-root`.
    pub pin_root: PathBuf,
    /// Felix's `--run-root`.
    pub run_root: PathBuf,
    /// Logs and etcd's data.
    pub dir: PathBuf,
}

fn tag() -> String {
    format!("{PREFIX}{}", std::process::id())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip -n <ns> -batch -` with `commands`, one a line.
fn ip_batch(ns: &str, commands: &[String]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run ip -batch")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.join("\n").as_bytes())
            .context("write to ip -batch")?;
    }
    let out = child.wait_with_output().context("wait for ip -batch")?;
    if !out.status.success() {
        bail!(
            "ip -n {ns} -batch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    /// Creates the namespaces, the uplink and a `cali*` veth per name in `calis`.
    pub fn create(calis: &[String]) -> Result<Self> {
        let tag = tag();
        let lab = Lab {
            fabric: format!("{tag}-fabric"),
            host: format!("{tag}-host"),
            pin_root: PathBuf::from("/sys/fs/bpf").join(&tag),
            run_root: std::env::temp_dir().join(&tag).join("run"),
            dir: std::env::temp_dir().join(&tag),
        };
        // From here on, drop removes whatever was made.
        fs::create_dir_all(&lab.dir).with_context(|| format!("create {}", lab.dir.display()))?;
        fs::create_dir_all(&lab.pin_root).with_context(|| {
            format!(
                "create {} (needs root and bpffs at /sys/fs/bpf)",
                lab.pin_root.display()
            )
        })?;
        for ns in [&lab.fabric, &lab.host] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n",
            &lab.host,
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            "fab0",
            "netns",
            &lab.fabric,
        ])?;
        ip(&["-n", &lab.fabric, "addr", "add", FABRIC_CIDR, "dev", "fab0"])?;
        ip(&["-n", &lab.fabric, "link", "set", "fab0", "up"])?;
        let mut host = vec![
            format!("addr add {HOST_CIDR} dev {UPLINK}"),
            format!("link set {UPLINK} up"),
        ];
        for (i, cali) in calis.iter().enumerate() {
            host.push(format!(
                "link add {cali} address {CALI_MAC} type veth peer name pod{i}"
            ));
            host.push(format!("link set {cali} up"));
            host.push(format!("link set pod{i} up"));
        }
        ip_batch(&lab.host, &host)?;
        Ok(lab)
    }

    /// The etcd URL (reachable from the fabric and the host namespace).
    pub fn etcd_url(&self) -> String {
        format!("http://{ETCD_IP}:{ETCD_PORT}")
    }

    /// Ifindexes of the host namespace's interfaces, by name.
    pub fn ifindexes(&self) -> Result<HashMap<String, u32>> {
        let out = Command::new("ip")
            .args(["-n", &self.host, "-j", "link", "show"])
            .output()
            .context("run ip link show")?;
        if !out.status.success() {
            bail!("ip link show: {}", String::from_utf8_lossy(&out.stderr));
        }
        let links: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).context("parse ip -j link show")?;
        Ok(links
            .iter()
            .filter_map(|l| {
                Some((
                    l["ifname"].as_str()?.to_string(),
                    u32::try_from(l["ifindex"].as_u64()?).ok()?,
                ))
            })
            .collect())
    }

    /// Removes a stopped felix's pins and run files, so that the next one starts cold. Its
    /// TCX/XDP links go with their pins.
    pub fn reset_felix(&self) -> Result<()> {
        for dir in [&self.pin_root, &self.run_root] {
            remove_tree(dir)?;
        }
        fs::create_dir_all(&self.pin_root)
            .with_context(|| format!("create {}", self.pin_root.display()))
    }

    /// Moves the calling thread into the fabric namespace until the guard drops (the etcd
    /// client's sockets are made there).
    pub fn enter_fabric(&self) -> Result<Entered> {
        Ok(netns::enter(&self.fabric)?)
    }
}

/// Removes a folder tree (on bpffs too: unlinking a pin releases its map or link).
fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove {}", dir.display())),
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.host, &self.fabric] {
            if Path::new("/run/netns").join(ns).exists()
                && let Err(e) = ip(&["netns", "del", ns])
            {
                eprintln!("warning: {e:#}");
            }
        }
        for dir in [&self.pin_root, &self.dir] {
            if let Err(e) = remove_tree(dir) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// The pid in a name made by [`tag`] (`felix-cp-<pid>[-...]`).
pub fn pid_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    rest.split('-').next()?.parse().ok()
}

/// Whether `pid` is a live (not zombie) process named like this one.
fn bench_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let own = fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let comm = stat
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(comm, rest)| (comm, rest.trim_start().chars().next()));
    matches!(comm, Some((c, Some(state))) if c == own.trim() && !matches!(state, 'Z' | 'X'))
}

/// Removes namespaces, pin roots and folders of runs whose process is gone (its felix and
/// etcd died with it: they are started with a parent-death signal).
pub fn clean_stale() {
    let stale = |name: &str| pid_of(name).is_some_and(|pid| !bench_alive(pid));
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if stale(&name) {
                eprintln!("removing netns {name} of a run that is gone");
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
    for root in [PathBuf::from("/sys/fs/bpf"), std::env::temp_dir()] {
        let Ok(entries) = fs::read_dir(&root) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if stale(&name) {
                eprintln!("removing {} of a run that is gone", e.path().display());
                let _ = remove_tree(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid() {
        assert_eq!(pid_of("felix-cp-4242-fabric"), Some(4242));
        assert_eq!(pid_of("felix-cp-17"), Some(17));
        assert_eq!(pid_of("felix-cp-x-host"), None);
        assert_eq!(pid_of("fxab12-h1"), None);
        assert_eq!(pid_of(&tag()), Some(std::process::id()));
        assert!(bench_alive(std::process::id()));
        assert!(!bench_alive(u32::MAX));
    }
}
