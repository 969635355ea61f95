//! `felix bpf policy dump`: per endpoint and direction, the policy as the dataplane has it: the
//! slot and set the kernel maps hold, the rules felix compiled into that set, and each rule's
//! packet counter.

use std::{fmt::Write as _, net::Ipv4Addr};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use felix_common::{EndpointInfo, maps, policy::NO_SLOT};
use serde::Serialize;

use super::state::{PolicyState, TableSizes};
use crate::calc::policy::PolicyDirection;
use crate::{
    dataplane::maps::{
        InspectError, endpoints::EndpointsMap, ifaces::interface_names, map_error, open_as,
    },
    dataplane::pins::NodePaths,
};

/// Errors reading the policy of a node.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("read {path}: {source} (is felix running for this node?)")]
    State {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no endpoint on interface {0:?} (see `felix bpf endpoints dump`)")]
    NoSuchInterface(String),
}

/// One rule of a dumped policy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleRow {
    pub rule: u32,
    pub packets: u64,
    pub action: String,
    pub by: String,
    pub matches: String,
}

/// One endpoint and direction.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PolicyRow {
    pub interface: String,
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub direction: PolicyDirection,
    pub slot: u32,
    /// The set the kernel's slot map points at.
    pub set: u32,
    /// A problem with what the maps hold, if any.
    pub problem: Option<String>,
    pub policies: Vec<String>,
    pub profiles: Vec<String>,
    pub tables: TableSizes,
    pub rules: Vec<RuleRow>,
}

/// Reads the policy of every endpoint of `paths`' node (only `iface` when given).
pub fn read_policy(paths: &NodePaths, iface: Option<&str>) -> Result<Vec<PolicyRow>, DumpError> {
    let state_path = paths.policy_state_file();
    let state = PolicyState::load(&state_path).map_err(|source| DumpError::State {
        path: state_path.display().to_string(),
        source,
    })?;
    let names = interface_names(paths)?;
    let endpoints: EndpointsMap<MapData> = open_as(paths, maps::ENDPOINTS, HashMap::try_from)?;
    let slots: Array<MapData, u32> = open_as(paths, maps::POLICY_SLOTS, Array::try_from)?;
    let counters: PerCpuArray<MapData, u64> =
        open_as(paths, maps::RULE_COUNTERS, PerCpuArray::try_from)?;
    let packets = |id: u32| -> u64 {
        counters
            .get(&id, 0)
            .map(|v| v.iter().sum())
            .unwrap_or_default()
    };
    let mut list: Vec<(u32, EndpointInfo)> = endpoints
        .iter()
        .collect::<Result<_, _>>()
        .map_err(map_error(paths, maps::ENDPOINTS))?;
    list.sort_by_key(|(ifindex, _)| names.get(ifindex).cloned().unwrap_or_default());
    let mut rows = Vec::new();
    for (ifindex, info) in list {
        let interface = names.get(&ifindex).cloned().unwrap_or_else(|| "?".into());
        if iface.is_some_and(|i| i != interface) {
            continue;
        }
        for (direction, slot) in [
            (PolicyDirection::Ingress, info.policy_slots[0]),
            (PolicyDirection::Egress, info.policy_slots[1]),
        ] {
            let set = if slot == NO_SLOT {
                NO_SLOT
            } else {
                slots.get(&slot, 0).unwrap_or(NO_SLOT)
            };
            let group = state.group(slot);
            let problem = match group {
                _ if slot == NO_SLOT => Some("no policy slot: every packet is dropped".into()),
                _ if set == NO_SLOT => {
                    Some("the slot holds no set: every packet is dropped".into())
                }
                None => Some("felix's state file does not know this slot".into()),
                Some(g) if g.set != set => Some(format!(
                    "the kernel holds set {set}, felix's state file set {} (a change in flight?)",
                    g.set
                )),
                Some(_) => None,
            };
            let mut rules: Vec<RuleRow> = Vec::new();
            if let Some(g) = group {
                rules.extend(g.entries.iter().map(|e| RuleRow {
                    rule: e.rule,
                    packets: packets(e.rule),
                    action: e.step.clone(),
                    by: e.by.to_string(),
                    matches: e.matches.clone(),
                }));
                rules.push(RuleRow {
                    rule: g.default_deny_rule,
                    packets: packets(g.default_deny_rule),
                    action: "deny".into(),
                    by: crate::calc::policy::RuleRef::DefaultDeny { direction }.to_string(),
                    matches: "any".into(),
                });
            }
            rows.push(PolicyRow {
                interface: interface.clone(),
                ifindex,
                ip: Ipv4Addr::from(info.ip),
                direction,
                slot,
                set,
                problem,
                policies: group.map(|g| g.policies.clone()).unwrap_or_default(),
                profiles: group.map(|g| g.profiles.clone()).unwrap_or_default(),
                tables: group.map(|g| g.tables.clone()).unwrap_or_default(),
                rules,
            });
        }
    }
    if let Some(i) = iface
        && rows.is_empty()
    {
        return Err(DumpError::NoSuchInterface(i.to_string()));
    }
    Ok(rows)
}

/// The dump as text: a heading per endpoint and direction, then its rules.
pub fn policy_text(rows: &[PolicyRow]) -> String {
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(
            out,
            "{} (ifindex {}, {}) {}: slot {} set {} (tables: {} ips, {} ports, {} verdicts)",
            row.interface,
            row.ifindex,
            row.ip,
            row.direction.as_str().to_lowercase(),
            row.slot,
            row.set,
            row.tables.ips,
            row.tables.ports,
            row.tables.verdicts
        );
        if let Some(problem) = &row.problem {
            let _ = writeln!(out, "  problem: {problem}");
        }
        let cells: Vec<Vec<String>> = row
            .rules
            .iter()
            .map(|r| {
                vec![
                    r.rule.to_string(),
                    r.packets.to_string(),
                    r.action.clone(),
                    r.by.clone(),
                    r.matches.clone(),
                ]
            })
            .collect();
        for line in felix_rows::table(&["RULE", "PACKETS", "ACTION", "BY", "MATCH"], &cells).lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}
