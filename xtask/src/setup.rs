//! Idempotent machine setup: Debian packages (with no service started by their scripts), rustup
//! components, bpf-linker in `.tools`, and bpffs. Each item reports "already present" or "installed".

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cmd, paths};

/// Debian packages the build, the lab and the tests need.
pub const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "etcd-server",
    "etcd-client",
    "bird2",
    "iptables",
    "ipset",
    "iperf3",
    "protobuf-compiler",
    "libprotobuf-dev",
    "tcpdump",
    "ethtool",
    "iputils-ping",
    "bpftool",
    "iproute2",
    "procps",
    "curl",
];
/// The rustup components tier 1 runs.
pub const RUSTUP_COMPONENTS: &[&str] = &["clippy", "rustfmt"];
/// bpf-linker release that matches aya-ebpf 0.2.1 and LLVM 22.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const BPFFS: &str = "/sys/fs/bpf";

/// What setup did for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    AlreadyPresent,
    Installed,
    /// Not needed this time (policy-rc.d when no package is installed).
    NotNeeded,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::AlreadyPresent => "already present",
            Outcome::Installed => "installed",
            Outcome::NotNeeded => "not needed",
        })
    }
}

/// One line of the setup report.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub outcome: Outcome,
}

impl Item {
    fn new(name: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            name: name.into(),
            outcome,
        }
    }
}

/// Runs every setup step, printing one line per item (`cargo xtask setup`).
pub fn run_verbose() -> Result<()> {
    for item in run()? {
        println!("{}: {}", item.name, item.outcome);
    }
    Ok(())
}

/// Makes sure everything is in place; cheap and quiet (one line) when it already is.
pub fn ensure() -> Result<()> {
    let items = run()?;
    let installed: Vec<&str> = items
        .iter()
        .filter(|i| i.outcome == Outcome::Installed)
        .map(|i| i.name.as_str())
        .collect();
    if installed.is_empty() {
        println!("setup: all {} items already present", items.len());
    } else {
        println!("setup: installed {}", installed.join(", "));
    }
    Ok(())
}

/// Runs every setup step and returns what each did.
pub fn run() -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let missing = missing_packages()?;
    if missing.is_empty() {
        items.push(Item::new("policy-rc.d", Outcome::NotNeeded));
    } else {
        let guard = PolicyRcD::ensure()?;
        items.push(Item::new("policy-rc.d", guard.outcome()));
        install_packages(&missing)?;
        guard.remove()?;
    }
    for pkg in APT_PACKAGES {
        let outcome = if missing.contains(pkg) {
            Outcome::Installed
        } else {
            Outcome::AlreadyPresent
        };
        items.push(Item::new(format!("apt {pkg}"), outcome));
    }
    items.extend(rustup_components()?);
    items.push(Item::new(
        format!("bpf-linker {BPF_LINKER_VERSION}"),
        bpf_linker()?,
    ));
    items.push(Item::new(format!("bpffs at {BPFFS}"), bpffs()?));
    Ok(items)
}

/// Packages of [`APT_PACKAGES`] that dpkg does not report as installed.
fn missing_packages() -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for pkg in APT_PACKAGES {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .context("running dpkg-query (is this Debian?)")?;
        // Unknown packages make dpkg-query exit non-zero: missing too.
        if !out.status.success() || !is_installed_status(&String::from_utf8_lossy(&out.stdout)) {
            missing.push(*pkg);
        }
    }
    Ok(missing)
}

fn is_installed_status(status: &str) -> bool {
    status.trim() == "install ok installed"
}

fn install_packages(missing: &[&str]) -> Result<()> {
    println!("setup: installing {}", missing.join(" "));
    cmd::inherit(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::inherit(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// A `policy-rc.d` that forbids package scripts to start services, removed again if we made it.
struct PolicyRcD {
    created: bool,
}

impl PolicyRcD {
    fn ensure() -> Result<Self> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(Self { created: false });
        }
        fs::write(
            path,
            "#!/bin/sh\n# written by cargo xtask setup\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {POLICY_RC_D}"))?;
        Ok(Self { created: true })
    }

    fn outcome(&self) -> Outcome {
        if self.created {
            Outcome::Installed
        } else {
            Outcome::AlreadyPresent
        }
    }

    fn remove(mut self) -> Result<()> {
        if self.created {
            self.created = false;
            fs::remove_file(POLICY_RC_D).with_context(|| format!("removing {POLICY_RC_D}"))?;
        }
        Ok(())
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if self.created
            && let Err(e) = fs::remove_file(POLICY_RC_D)
        {
            eprintln!("setup: could not remove {POLICY_RC_D}: {e}");
        }
    }
}

fn rustup_components() -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let cargo = paths::cargo();
    for component in RUSTUP_COMPONENTS {
        let sub = if *component == "rustfmt" {
            "fmt"
        } else {
            component
        };
        let present = Command::new(&cargo)
            .args([sub, "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let outcome = if present {
            Outcome::AlreadyPresent
        } else {
            cmd::inherit(Command::new("rustup").args(["component", "add", component]))?;
            Outcome::Installed
        };
        items.push(Item::new(format!("rustup {component}"), outcome));
    }
    Ok(items)
}

fn bpf_linker() -> Result<Outcome> {
    let bin = paths::bpf_linker();
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version_matches(&version, BPF_LINKER_VERSION) {
        return Ok(Outcome::AlreadyPresent);
    }
    let root = paths::tools_dir();
    let mut install = Command::new("/usr/bin/cargo");
    install
        .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
        .args(["--locked", "--no-default-features", "--features", "llvm-22"])
        .arg("--root")
        .arg(&root)
        .env("LLVM_PREFIX", "/usr/lib/llvm-22");
    // The Debian cargo must not inherit the settings of the (rustup) cargo running us.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO") || name.starts_with("RUSTC") || name == "RUSTFLAGS" {
            install.env_remove(name.as_ref());
        }
    }
    cmd::inherit(&mut install)?;
    Ok(Outcome::Installed)
}

/// `bpf-linker --version` prints e.g. `bpf-linker 0.13.0`.
fn version_matches(output: &str, want: &str) -> bool {
    output.split_whitespace().any(|word| word == want)
}

fn bpffs() -> Result<Outcome> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if bpffs_mounted(&mounts) {
        return Ok(Outcome::AlreadyPresent);
    }
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    Ok(Outcome::Installed)
}

fn bpffs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_dev, mountpoint, fstype) = (fields.next(), fields.next(), fields.next());
        mountpoint == Some(BPFFS) && fstype == Some("bpf")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status() {
        assert!(is_installed_status("install ok installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status(""));
    }

    #[test]
    fn linker_version() {
        assert!(version_matches("bpf-linker 0.13.0\n", "0.13.0"));
        assert!(!version_matches("bpf-linker 0.13.1\n", "0.13.0"));
        assert!(!version_matches("", "0.13.0"));
    }

    #[test]
    fn bpffs_in_mounts() {
        let with = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,nosuid 0 0\n";
        let without = "sysfs /sys sysfs rw 0 0\nnone /sys/fs/bpf/x bpf rw 0 0\n";
        assert!(bpffs_mounted(with));
        assert!(!bpffs_mounted(without));
    }
}
