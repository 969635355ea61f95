//! What `bench dataplane` measured: every run's value per mode, rule configuration, placement
//! and metric, medians with their spread, ratios against `plain`, and a JSON form for tests
//! and tools.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::rules::Shape;
use crate::{
    loadgen::Pattern,
    report::thousands,
    stats::{Summary, median},
};

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

/// Where the two ends of the traffic are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    /// h1-p1 to h1-p2.
    SameHost,
    /// h1-p1 to h2-p1.
    TwoHosts,
    /// h1's host namespace to h2's over the fabric: no pod, no veth hop into a pod; measured
    /// in `plain` only, the limit of two hosts.
    HostToHost,
}

impl Placement {
    /// The placements between pods, measured in every mode.
    pub const PODS: [Placement; 2] = [Placement::SameHost, Placement::TwoHosts];

    pub fn name(self) -> &'static str {
        match self {
            Placement::SameHost => "same host",
            Placement::TwoHosts => "two hosts",
            Placement::HostToHost => "host to host",
        }
    }
}

/// How many client threads drive RR and CRR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Load {
    /// A few threads ([`super::Settings::threads`]): bound by latency, not by CPU.
    Fixed,
    /// Enough threads to keep every CPU busy ([`super::Settings::saturating_threads`]).
    Saturating,
}

impl Load {
    pub const ALL: [Load; 2] = [Load::Fixed, Load::Saturating];

    /// What metric names add for this load (nothing for the fixed one, as before it existed).
    fn suffix(self) -> &'static str {
        match self {
            Load::Fixed => "",
            Load::Saturating => " at saturation",
        }
    }
}

/// A percentile of the connect latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Percentile {
    P50,
    P99,
}

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// iperf3 TCP, Gbit/s, with TSO/GSO on (`true`) or off.
    Gbps { offload: bool },
    /// CPU seconds per gigabit over the iperf3 run.
    CpuPerGbit { offload: bool },
    /// RR transactions or CRR new connections (connect, request, reply, close) per second.
    Rate { pattern: Pattern, load: Load },
    /// The machine's busy CPU µs per RR transaction or per CRR connection.
    CpuUs { pattern: Pattern, load: Load },
    /// The machine's busy share of all CPUs during the run, %.
    Busy { pattern: Pattern, load: Load },
    /// CRR connect latency (start of `connect()` to its return), µs.
    Connect { load: Load, percentile: Percentile },
}

impl Metric {
    pub const RR: Metric = Metric::Rate {
        pattern: Pattern::Rr,
        load: Load::Fixed,
    };
    pub const CRR: Metric = Metric::Rate {
        pattern: Pattern::Crr,
        load: Load::Fixed,
    };
    pub const RR_SAT: Metric = Metric::Rate {
        pattern: Pattern::Rr,
        load: Load::Saturating,
    };
    pub const CRR_SAT: Metric = Metric::Rate {
        pattern: Pattern::Crr,
        load: Load::Saturating,
    };

    pub fn name(self) -> String {
        let tso = |on: bool| if on { "TSO/GSO on" } else { "TSO/GSO off" };
        match self {
            Metric::Gbps { offload } => format!("TCP Gbit/s ({})", tso(offload)),
            Metric::CpuPerGbit { offload } => format!("CPU s per Gbit ({})", tso(offload)),
            Metric::Rate { pattern, load } => {
                let what = match pattern {
                    Pattern::Rr => "RR transactions/s",
                    Pattern::Crr => "new connections/s",
                };
                format!("{what}{}", load.suffix())
            }
            Metric::CpuUs { pattern, load } => {
                let per = match pattern {
                    Pattern::Rr => "RR transaction",
                    Pattern::Crr => "connection",
                };
                format!("CPU µs per {per}{}", load.suffix())
            }
            Metric::Busy { pattern, load } => {
                let during = match pattern {
                    Pattern::Rr => "RR",
                    Pattern::Crr => "CRR",
                };
                format!("CPU busy % during {during}{}", load.suffix())
            }
            Metric::Connect { load, percentile } => {
                let p = match percentile {
                    Percentile::P50 => "p50",
                    Percentile::P99 => "p99",
                };
                format!("connect latency {p} µs{}", load.suffix())
            }
        }
    }

    /// Whether more is better, less is better (`Some(false)`: CPU time, latency), or neither
    /// (the busy share describes the load).
    pub fn higher_is_better(self) -> Option<bool> {
        match self {
            Metric::Gbps { .. } | Metric::Rate { .. } => Some(true),
            Metric::CpuPerGbit { .. } | Metric::CpuUs { .. } | Metric::Connect { .. } => {
                Some(false)
            }
            Metric::Busy { .. } => None,
        }
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

    /// The median of `key` with the runs' minimum and maximum.
    pub fn summary(&self, key: &Key) -> Option<Summary> {
        Summary::of(self.values.get(key)?)
    }

    /// The ratio of two series' medians, `a / b`.
    pub fn ratio(&self, a: &Key, b: &Key) -> Option<f64> {
        let (a, b) = (self.median(a)?, self.median(b)?);
        (b > 0.0).then(|| a / b)
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
                let summary = Summary::of(runs);
                json!({
                    "mode": mode.name(),
                    "rules": rules.map(|r| r.count),
                    "selectors": rules.is_some_and(|r| r.shape == Shape::Selector),
                    "placement": placement.name(),
                    "metric": metric.name(),
                    "runs": runs,
                    "median": summary.map(|s| s.median),
                    "min": summary.map(|s| s.min),
                    "max": summary.map(|s| s.max),
                    "vs_plain": self.vs_plain(key),
                })
            })
            .collect();
        let skipped: Vec<Value> = self
            .skipped
            .iter()
            .map(|s| json!({"mode": s.mode.name(), "rules": s.rules.label(), "reason": s.reason}))
            .collect();
        let enforced: Vec<Value> = self
            .programmed
            .iter()
            .map(|((mode, rules), seconds)| {
                json!({
                    "mode": mode.name(),
                    "rules": rules.count,
                    "selectors": rules.shape == Shape::Selector,
                    "seconds": seconds,
                })
            })
            .collect();
        json!({
            "modes": self.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "series": series,
            "policy_enforced_after": enforced,
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
            r.push((Mode::Plain, None, Placement::SameHost, Metric::CRR), v);
        }
        r.push((Mode::Plain, None, Placement::TwoHosts, Metric::CRR), 100.0);
        for v in [5.5, 1.0, 9.0] {
            r.push((Mode::Bpf, rules, Placement::SameHost, Metric::CRR), v);
        }
        let key = (Mode::Bpf, rules, Placement::SameHost, Metric::CRR);
        assert_eq!(r.median(&key), Some(5.5));
        assert_eq!(r.vs_plain(&key), Some(0.5));
        assert_eq!(
            r.vs_plain(&(Mode::Bpf, rules, Placement::TwoHosts, Metric::CRR)),
            None
        );
        assert_eq!(
            r.vs_plain(&(Mode::Bpf, rules, Placement::SameHost, Metric::CRR_SAT)),
            None,
            "the saturating load is its own series"
        );
        assert_eq!(r.rules_of(Mode::Bpf), vec![rules]);
        let json = r.to_json();
        let series = json["series"].as_array().cloned().unwrap_or_default();
        assert_eq!(series.len(), 3);
        let bpf = series
            .iter()
            .find(|s| s["mode"] == "bpf")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (
                bpf["median"].as_f64(),
                bpf["min"].as_f64(),
                bpf["max"].as_f64()
            ),
            (Some(5.5), Some(1.0), Some(9.0))
        );
    }

    #[test]
    fn metric_names_are_distinct_and_the_fixed_load_keeps_the_old_names() {
        assert_eq!(Metric::RR.name(), "RR transactions/s");
        assert_eq!(Metric::CRR.name(), "new connections/s");
        assert_eq!(Metric::CRR_SAT.name(), "new connections/s at saturation");
        let mut names = Vec::new();
        for load in Load::ALL {
            for pattern in [Pattern::Rr, Pattern::Crr] {
                names.push(Metric::Rate { pattern, load }.name());
                names.push(Metric::CpuUs { pattern, load }.name());
                names.push(Metric::Busy { pattern, load }.name());
            }
            for percentile in [Percentile::P50, Percentile::P99] {
                names.push(Metric::Connect { load, percentile }.name());
            }
        }
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
    }
}
