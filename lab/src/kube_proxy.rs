//! Kubernetes Services in the lab, the way kube-proxy's iptables mode implements them: its rules
//! rendered from Services and endpoints ([`render`], chain names from [`chains`]) and installed
//! in each host's namespace as kube-proxy installs them (jump rules ensured, stale service chains
//! deleted, one `iptables-restore --noflush` of the filter and nat tables).

pub mod chains;
pub mod model;
pub mod render;
mod sha256;
#[cfg(test)]
mod upstream_tests;

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::felixd::Dataplane;
use crate::iptables::Backend;
use crate::{Lab, cmd, names};
pub use model::{Config, Endpoint, Protocol, Service, ServicePort, TrafficPolicy};

/// The lab's Service range (kube-apiserver's `--service-cluster-ip-range` default).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// Installs kube-proxy's rules for `services` on every host of `lab` (cluster CIDR: the lab's
/// pool; the iptables backend felix uses in iptables mode, nft otherwise), and a route for
/// [`SERVICE_CIDR`] via the ToR: a node's default route covers Service addresses, so that
/// host processes can connect to them (their packets are DNATed in OUTPUT), but the lab's hosts
/// have no default route.
pub fn install(lab: &Lab, services: &[Service]) -> Result<()> {
    let backend = match lab.dataplane() {
        Dataplane::Iptables(backend) => backend,
        Dataplane::Bpf => Backend::Nft,
    };
    for host in &lab.state().hosts {
        let config = Config::for_node(&host.node, names::POOL_CIDR);
        apply(&host.ns, backend, &config, services)?;
        cmd::ip(&[
            "-n",
            &host.ns,
            "route",
            "replace",
            SERVICE_CIDR,
            "via",
            &names::TOR_IP.to_string(),
            "dev",
            "eth0",
        ])?;
    }
    Ok(())
}

/// One kube-proxy full sync in namespace `ns`: the jump rules from the built-in chains ensured
/// (created at the top when missing), then the rendered tables restored without flushing other
/// chains, deleting the service chains no Service uses any more.
pub fn apply(ns: &str, backend: Backend, config: &Config, services: &[Service]) -> Result<()> {
    let iptables = format!("iptables-{}", backend.name());
    for jump in render::jumps() {
        let base = ["netns", "exec", ns, &iptables, "-w", "5", "-t", jump.table];
        let exists = |args: &[&str]| -> Result<bool> {
            let out = Command::new("ip")
                .args(base)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {iptables} in {ns}"))?;
            Ok(out.status.success())
        };
        if !exists(&["-n", "-L", jump.to])? {
            cmd::run(Command::new("ip").args(base).args(["-N", jump.to]))?;
        }
        let mut check = vec!["-C", jump.from];
        check.extend(jump.args.iter().map(String::as_str));
        if !exists(&check)? {
            let mut insert = vec!["-I", jump.from];
            insert.extend(jump.args.iter().map(String::as_str));
            cmd::run(Command::new("ip").args(base).args(insert))?;
        }
    }
    let save = cmd::stdout(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        &format!("{iptables}-save"),
        "-t",
        "nat",
    ]))?;
    let input = with_stale_deleted(&render::restore_input(config, services), &save);
    restore(ns, &format!("{iptables}-restore"), &input)
}

/// `input` plus, in its nat table, the flush and deletion of every service chain in `save` (the
/// nat table now) that `input` does not declare.
fn with_stale_deleted(input: &str, save: &str) -> String {
    let declared = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    let active = declared(input);
    let stale: Vec<String> = declared(save)
        .into_iter()
        .filter(|c| chains::is_service_chain(c) && !active.contains(c))
        .collect();
    if stale.is_empty() {
        return input.to_owned();
    }
    let mut out = String::new();
    let mut in_nat = false;
    for line in input.lines() {
        if in_nat && line == "COMMIT" {
            out.extend(stale.iter().map(|c| format!("-X {c}\n")));
        }
        out.push_str(line);
        out.push('\n');
        if line == "*nat" {
            in_nat = true;
            out.extend(stale.iter().map(|c| format!(":{c} - [0:0]\n")));
        }
    }
    out
}

/// `<program> -w 5 --noflush --counters` in `ns` with `input` on stdin.
fn restore(ns: &str, program: &str, input: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            program,
            "-w",
            "5",
            "--noflush",
            "--counters",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program} in {ns}"))?;
    child
        .stdin
        .take()
        .context("restore's stdin")?
        .write_all(input.as_bytes())
        .with_context(|| format!("writing to {program}"))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} in {ns} failed: {}\n{input}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_service_chains_are_deleted() {
        let input = "*filter\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\nCOMMIT\n";
        let save = "*nat\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-B - [0:0]\n\
                    :felix-nat - [0:0]\nCOMMIT\n";
        assert_eq!(
            with_stale_deleted(input, save),
            "*filter\nCOMMIT\n*nat\n:KUBE-SEP-B - [0:0]\n:KUBE-SERVICES - [0:0]\n\
             :KUBE-SVC-A - [0:0]\n-X KUBE-SEP-B\nCOMMIT\n"
        );
        assert_eq!(with_stale_deleted(input, "*nat\nCOMMIT\n"), input);
    }
}
