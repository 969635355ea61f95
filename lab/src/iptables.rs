//! felix's iptables mode in the lab (`felix run --dataplane iptables`), seen from a host
//! namespace: its chains (`felix-*`) and hook jumps in `iptables-save`, its ipsets, and whether
//! every local pod's interface is dispatched to its policy chains.

use std::process::Command;

use anyhow::Result;

use crate::cmd;
use crate::state::HostState;

/// Prefix of felix's chains and ipsets.
pub const PREFIX: &str = "felix-";

/// An iptables backend (`--iptables-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Nft, Backend::Legacy];

    /// `nft` or `legacy`, as felix's flag and the tools' names (`iptables-nft-save`) have it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }
}

/// The filter table of `backend` in namespace `ns` (`iptables-*-save -t filter`).
pub fn save(ns: &str, backend: Backend) -> Result<String> {
    let program = format!("iptables-{}-save", backend.name());
    cmd::stdout(Command::new("ip").args(["netns", "exec", ns, &program, "-t", "filter"]))
}

/// felix's chains declared in `save` output, and the rules of other chains that jump to them.
pub fn felix_rules(save: &str) -> (Vec<String>, Vec<String>) {
    let chains = save
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with(PREFIX))
        .map(str::to_owned)
        .collect();
    let jumps = save
        .lines()
        .filter(|l| l.starts_with("-A ") && !l[3..].starts_with(PREFIX))
        .filter(|l| l.contains(" -j felix-") || l.contains(" -g felix-"))
        .map(str::to_owned)
        .collect();
    (chains, jumps)
}

/// felix's ipsets in namespace `ns` (`ipset list -n`).
pub fn felix_sets(ns: &str) -> Result<Vec<String>> {
    let out = cmd::stdout(Command::new("ip").args(["netns", "exec", ns, "ipset", "list", "-n"]))?;
    Ok(out
        .lines()
        .filter(|s| s.starts_with(PREFIX))
        .map(str::to_owned)
        .collect())
}

/// Everything of felix's in namespace `ns`, both backends and ipsets, one line each (empty:
/// nothing left).
pub fn leftovers(ns: &str) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for backend in Backend::ALL {
        let (chains, jumps) = felix_rules(&save(ns, backend)?);
        left.extend(
            chains
                .into_iter()
                .chain(jumps)
                .map(|r| format!("{}: {r}", backend.name())),
        );
    }
    left.extend(felix_sets(ns)?.into_iter().map(|s| format!("ipset {s}")));
    Ok(left)
}

/// What `save` lacks for felix to police `host`'s pods: the FORWARD hook and both dispatch
/// rules of every pod's interface (`None` when all are there).
pub fn dispatch_missing(host: &HostState, save: &str) -> Option<String> {
    let mut missing = Vec::new();
    if !save.lines().any(|l| l == "-A FORWARD -j felix-FORWARD") {
        missing.push("-A FORWARD -j felix-FORWARD".to_owned());
    }
    for pod in &host.pods {
        for chain in [
            format!("felix-fw-{}", pod.cali),
            format!("felix-tw-{}", pod.cali),
        ] {
            if !save.contains(&format!(" -g {chain}")) {
                missing.push(format!("dispatch to {chain}"));
            }
        }
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felix_chains_and_jumps_are_found() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:felix-FORWARD - [0:0]\n\
                    :other - [0:0]\n-A FORWARD -j felix-FORWARD\n-A FORWARD -j other\n\
                    -A felix-FORWARD -j ACCEPT\nCOMMIT\n";
        let (chains, jumps) = felix_rules(save);
        assert_eq!(chains, ["felix-FORWARD"]);
        assert_eq!(jumps, ["-A FORWARD -j felix-FORWARD"]);
        assert_eq!(felix_rules("*filter\nCOMMIT\n"), (vec![], vec![]));
    }
}
