//! What `bench dataplane` measured: every run's value per mode, rule configuration, placement
//! and metric, medians and ratios against `plain`, and a JSON form for tests and tools.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::rules::Shape;
use crate::{report::thousands, stats::median};

/// A dataplane measured on the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Kernel routing with no policy and no felix rules: the ceiling.
    Plain,
    IptablesNft,
    IptablesLegacy,
    /// felix's eBPF programs, cross-host traffic over IPIP (pool `ipipMode: Always`).
    Bpf,
    /// felix's eBPF programs, cross-host traffic routed natively (pool `ipipMode: Never`).
    BpfNative,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Plain,
        Mode::IptablesNft,
        Mode::IptablesLegacy,
        Mode::Bpf,
        Mode::BpfNative,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::IptablesNft => "iptables-nft",
            Mode::IptablesLegacy => "iptables-legacy",
            Mode::Bpf => "bpf",
            Mode::BpfNative => "bpf-native",
        }
    }

    /// Whether the mode enforces policy (all but `plain`).
    pub fn has_policy(self) -> bool {
        self != Mode::Plain
    }
}

/// The policy in force: `rules` non-matching rules of `shape` before the Allow (none at all
/// in `plain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rules {
    pub shape: Shape,
    pub count: u32,
}

impl Rules {
    pub fn label(self) -> String {
        let n = thousands(u64::from(self.count));
        match self.shape {
            Shape::Cidr => n,
            Shape::Selector => format!("{n} (selectors/ipsets)"),
        }
    }
}

/// Where the two pods are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    /// h1-p1 to h1-p2.
    SameHost,
    /// h1-p1 to h2-p1.
    TwoHosts,
}

impl Placement {
    pub const ALL: [Placement; 2] = [Placement::SameHost, Placement::TwoHosts];

    pub fn name(self) -> &'static str {
        match self {
            Placement::SameHost => "same host",
            Placement::TwoHosts => "two hosts",
        }
    }
}

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// iperf3 TCP, Gbit/s, with TSO/GSO on (`true`) or off.
    Gbps { offload: bool },
    /// CPU seconds per gigabit over the iperf3 run.
    CpuPerGbit { offload: bool },
    /// Request/response transactions per second.
    Rr,
    /// New connections (connect, request, reply, close) per second.
    Crr,
}

impl Metric {
    pub fn name(self) -> String {
        let tso = |on: bool| if on { "TSO/GSO on" } else { "TSO/GSO off" };
        match self {
            Metric::Gbps { offload } => format!("TCP Gbit/s ({})", tso(offload)),
            Metric::CpuPerGbit { offload } => format!("CPU s per Gbit ({})", tso(offload)),
            Metric::Rr => "RR transactions/s".into(),
            Metric::Crr => "new connections/s".into(),
        }
    }

    /// Whether more is better (not for CPU time).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::CpuPerGbit { .. })
    }
}

/// One series of runs.
pub type Key = (Mode, Option<Rules>, Placement, Metric);

/// A rule configuration a mode could not run, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub mode: Mode,
    pub rules: Rules,
    pub reason: String,
}

/// Everything measured in one run.
#[derive(Clone, Debug, Default)]
pub struct Results {
    pub values: BTreeMap<Key, Vec<f64>>,
    /// Seconds from applying a configuration to its enforcement, per mode and rules.
    pub programmed: BTreeMap<(Mode, Rules), f64>,
    pub skipped: Vec<Skipped>,
    /// Modes that ran, in order.
    pub modes: Vec<Mode>,
}

impl Results {
    pub fn push(&mut self, key: Key, value: f64) {
        self.values.entry(key).or_default().push(value);
    }

    pub fn median(&self, key: &Key) -> Option<f64> {
        median(self.values.get(key)?)
    }

    /// `plain`'s median for the same placement and metric.
    pub fn ceiling(&self, placement: Placement, metric: Metric) -> Option<f64> {
        self.median(&(Mode::Plain, None, placement, metric))
    }

    /// The median of `key` over `plain`'s.
    pub fn vs_plain(&self, key: &Key) -> Option<f64> {
        let (_, _, placement, metric) = *key;
        let ceiling = self.ceiling(placement, metric)?;
        let value = self.median(key)?;
        (ceiling > 0.0).then(|| value / ceiling)
    }

    /// Rule configurations measured for `mode`, in order.
    pub fn rules_of(&self, mode: Mode) -> Vec<Option<Rules>> {
        let mut rules: Vec<Option<Rules>> = self
            .values
            .keys()
            .filter(|k| k.0 == mode)
            .map(|k| k.1)
            .collect();
        rules.dedup();
        rules.sort();
        rules.dedup();
        rules
    }

    /// Every series with its runs and median, as JSON.
    pub fn to_json(&self) -> Value {
        let series: Vec<Value> = self
            .values
            .iter()
            .map(|(key, runs)| {
                let (mode, rules, placement, metric) = key;
                json!({
                    "mode": mode.name(),
                    "rules": rules.map(|r| r.count),
                    "selectors": rules.is_some_and(|r| r.shape == Shape::Selector),
                    "placement": placement.name(),
                    "metric": metric.name(),
                    "runs": runs,
                    "median": median(runs),
                    "vs_plain": self.vs_plain(key),
                })
            })
            .collect();
        let skipped: Vec<Value> = self
            .skipped
            .iter()
            .map(|s| json!({"mode": s.mode.name(), "rules": s.rules.label(), "reason": s.reason}))
            .collect();
        json!({
            "modes": self.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "series": series,
            "skipped": skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_taken_against_plain_of_the_same_placement_and_metric() {
        let mut r = Results::default();
        let rules = Some(Rules {
            shape: Shape::Cidr,
            count: 100,
        });
        for v in [10.0, 12.0, 11.0] {
            r.push((Mode::Plain, None, Placement::SameHost, Metric::Crr), v);
        }
        r.push((Mode::Plain, None, Placement::TwoHosts, Metric::Crr), 100.0);
        for v in [5.5, 1.0, 9.0] {
            r.push((Mode::Bpf, rules, Placement::SameHost, Metric::Crr), v);
        }
        let key = (Mode::Bpf, rules, Placement::SameHost, Metric::Crr);
        assert_eq!(r.median(&key), Some(5.5));
        assert_eq!(r.vs_plain(&key), Some(0.5));
        assert_eq!(
            r.vs_plain(&(Mode::Bpf, rules, Placement::TwoHosts, Metric::Crr)),
            None
        );
        assert_eq!(r.rules_of(Mode::Bpf), vec![rules]);
        let json = r.to_json();
        assert_eq!(json["series"].as_array().map(Vec::len), Some(3));
    }
}
