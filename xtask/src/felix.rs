//! Client of felix's inspection CLI (`felix bpf ifaces|counters dump`), with its JSON contract.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cmd;

/// `felix bpf ifaces dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct IfacesDump {
    pub node: String,
    pub interfaces: Vec<Iface>,
}

/// One interface felix manages, with how its TC hooks are attached (`tcx`, `netlink` or `none`).
#[derive(Debug, Clone, Deserialize)]
pub struct Iface {
    pub ifindex: u32,
    pub name: String,
    pub ingress: String,
    pub egress: String,
}

impl Iface {
    /// Both TC hooks carry a program.
    pub fn attached(&self) -> bool {
        self.ingress != "none" && self.egress != "none"
    }
}

impl IfacesDump {
    /// Whether every name in `names` is listed with programs attached.
    pub fn all_attached(&self, names: &[&str]) -> bool {
        names
            .iter()
            .all(|n| self.interfaces.iter().any(|i| i.name == *n && i.attached()))
    }
}

/// `felix bpf counters dump --node N --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct CountersDump {
    pub node: String,
    pub counters: Vec<Counter>,
}

/// One counter: interface, direction (`from_workload`/`to_workload`) and reason.
#[derive(Debug, Clone, Deserialize)]
pub struct Counter {
    pub ifindex: u32,
    pub interface: String,
    pub direction: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

impl CountersDump {
    /// Packets on `interface` in `direction`, summed over every reason.
    pub fn packets(&self, interface: &str, direction: &str) -> u64 {
        self.counters
            .iter()
            .filter(|c| c.interface == interface && c.direction == direction)
            .map(|c| c.packets)
            .sum()
    }
}

/// Runs `felix bpf ifaces dump --node NODE --json`.
pub fn ifaces(felix: &Path, node: &str) -> Result<IfacesDump> {
    let out =
        cmd::stdout(Command::new(felix).args(["bpf", "ifaces", "dump", "--node", node, "--json"]))?;
    serde_json::from_str(&out)
        .with_context(|| format!("parsing `felix bpf ifaces dump` output: {out}"))
}

/// Runs `felix bpf counters dump --node NODE --json`.
pub fn counters(felix: &Path, node: &str) -> Result<CountersDump> {
    let out = cmd::stdout(
        Command::new(felix).args(["bpf", "counters", "dump", "--node", node, "--json"]),
    )?;
    serde_json::from_str(&out)
        .with_context(|| format!("parsing `felix bpf counters dump` output: {out}"))
}

/// Runs `felix bpf counters dump --node NODE` (the table form).
pub fn counters_table(felix: &Path, node: &str) -> Result<String> {
    cmd::stdout(Command::new(felix).args(["bpf", "counters", "dump", "--node", node]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counters_over_reasons() -> Result<()> {
        let dump: CountersDump = serde_json::from_str(
            r#"{"node":"n","counters":[
              {"ifindex":3,"interface":"cali1","direction":"from_workload","reason":"allowed","packets":5,"bytes":500},
              {"ifindex":3,"interface":"cali1","direction":"from_workload","reason":"pass_arp","packets":2,"bytes":84},
              {"ifindex":3,"interface":"cali1","direction":"to_workload","reason":"allowed","packets":7,"bytes":700},
              {"ifindex":4,"interface":"cali2","direction":"from_workload","reason":"allowed","packets":1,"bytes":100}]}"#,
        )?;
        assert_eq!(dump.packets("cali1", "from_workload"), 7);
        assert_eq!(dump.packets("cali1", "to_workload"), 7);
        assert_eq!(dump.packets("cali2", "to_workload"), 0);
        Ok(())
    }

    #[test]
    fn attachment_check() -> Result<()> {
        let dump: IfacesDump = serde_json::from_str(
            r#"{"node":"n","interfaces":[
              {"ifindex":3,"name":"cali1","ingress":"tcx","egress":"tcx"},
              {"ifindex":4,"name":"cali2","ingress":"tcx","egress":"none"}]}"#,
        )?;
        assert!(dump.all_attached(&["cali1"]));
        assert!(!dump.all_attached(&["cali1", "cali2"]));
        assert!(!dump.all_attached(&["cali3"]));
        Ok(())
    }
}
