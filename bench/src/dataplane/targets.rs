//! The targets of issue #18, computed from one run: BPF at 10,000 rules against `plain` and
//! against iptables (nft, legacy) at saturation, CPU per operation, the time from `felix
//! apply` to enforcement, and the per-packet PROG_TEST_RUN ratios.

use serde_json::{Value, json};

use super::{
    SATURATED, TARGET_RULES,
    prog_cost::ProgCost,
    results::{Key, Load, Metric, Mode, Placement, Results, Rules},
    rules::Shape,
};
use crate::{loadgen::Pattern, report::thousands};

/// The BPF modes the targets are about.
pub const BPF_MODES: [Mode; 2] = [Mode::Bpf, Mode::BpfNative];
/// At least this many times the other's operations per second.
const FASTER: f64 = 1.10;
/// At most this share of the other's CPU per operation.
const CHEAPER: f64 = 0.85;
/// At most this long from `felix apply` to enforcement in BPF mode, seconds.
const ENFORCED_WITHIN_S: f64 = 1.0;

/// How a target compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Reported for comparison, no goal.
    None,
}

impl Goal {
    fn met(self, value: f64) -> Option<bool> {
        match self {
            Goal::AtLeast(g) => Some(value >= g),
            Goal::AtMost(g) => Some(value <= g),
            Goal::None => None,
        }
    }

    pub fn text(self) -> String {
        match self {
            Goal::AtLeast(g) => format!(">= {g:.2}"),
            Goal::AtMost(g) => format!("<= {g:.2}"),
            Goal::None => "reported".into(),
        }
    }
}

/// One target line.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub what: String,
    /// The figures the value comes from, e.g. `12,000 / 10,000 conn/s`.
    pub figures: String,
    /// The ratio (or the time, for enforcement).
    pub value: Option<f64>,
    pub goal: Goal,
    /// A reason to doubt the line (a saturating run that did not saturate).
    pub caveat: Option<String>,
}

impl Target {
    /// Met, not met, or `None` when not measured or without a goal.
    pub fn met(&self) -> Option<bool> {
        self.goal.met(self.value?)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "target": self.what,
            "figures": self.figures,
            "value": self.value,
            "goal": self.goal.text(),
            "met": self.met(),
            "caveat": self.caveat,
        })
    }
}

/// A value with the unit its metric is read in.
pub fn figure(metric: Metric, v: f64) -> String {
    match metric {
        Metric::Gbps { .. } => format!("{v:.2}"),
        Metric::CpuPerGbit { .. } => format!("{v:.3}"),
        Metric::Rate { .. } => thousands(v.round() as u64),
        Metric::CpuUs { .. } | Metric::Connect { .. } => {
            if v < 100.0 {
                format!("{v:.1}")
            } else {
                thousands(v.round() as u64)
            }
        }
        Metric::Busy { .. } => format!("{v:.0}"),
    }
}

fn unit(metric: Metric) -> &'static str {
    match metric {
        Metric::Gbps { .. } => "Gbit/s",
        Metric::CpuPerGbit { .. } => "CPU s/Gbit",
        Metric::Rate {
            pattern: Pattern::Rr,
            ..
        } => "tx/s",
        Metric::Rate {
            pattern: Pattern::Crr,
            ..
        } => "conn/s",
        Metric::CpuUs {
            pattern: Pattern::Rr,
            ..
        } => "CPU µs/tx",
        Metric::CpuUs {
            pattern: Pattern::Crr,
            ..
        } => "CPU µs/conn",
        Metric::Busy { .. } => "% busy",
        Metric::Connect { .. } => "µs",
    }
}

/// The busy share (%) of the runs behind `key` when it falls short of saturation.
fn unsaturated(results: &Results, key: &Key) -> Option<f64> {
    let (mode, rules, placement, metric) = *key;
    let (Metric::Rate { pattern, load } | Metric::CpuUs { pattern, load }) = metric else {
        return None;
    };
    if load != Load::Saturating {
        return None;
    }
    let busy = results.median(&(mode, rules, placement, Metric::Busy { pattern, load }))?;
    (busy < SATURATED * 100.0).then_some(busy)
}

/// `a / b` of two series as a target line.
fn ratio_target(results: &Results, what: String, a: Key, b: Key, goal: Goal) -> Target {
    let metric = a.3;
    let (ma, mb) = (results.median(&a), results.median(&b));
    let figures = match (ma, mb) {
        (Some(x), Some(y)) => format!(
            "{} / {} {}",
            figure(metric, x),
            figure(metric, y),
            unit(metric)
        ),
        _ => "-".into(),
    };
    let short: Vec<String> = [a, b]
        .iter()
        .filter_map(|k| unsaturated(results, k).map(|busy| format!("{} {busy:.0}%", k.0.name())))
        .collect();
    Target {
        what,
        figures,
        value: results.ratio(&a, &b),
        goal,
        caveat: (!short.is_empty()).then(|| format!("CPUs not saturated: {}", short.join(", "))),
    }
}

/// Every target line of the run.
pub fn targets(results: &Results, prog: Option<&ProgCost>) -> Vec<Target> {
    let mut out = Vec::new();
    let cidr = Rules {
        shape: Shape::Cidr,
        count: TARGET_RULES,
    };
    let selectors = Rules {
        shape: Shape::Selector,
        count: TARGET_RULES,
    };
    let sat = |pattern| Metric::Rate {
        pattern,
        load: Load::Saturating,
    };
    let cpu_sat = |pattern| Metric::CpuUs {
        pattern,
        load: Load::Saturating,
    };
    for bpf in BPF_MODES {
        for placement in Placement::PODS {
            let vs_plain = [
                (sat(Pattern::Rr), Goal::AtLeast(FASTER)),
                (sat(Pattern::Crr), Goal::AtLeast(FASTER)),
                (cpu_sat(Pattern::Rr), Goal::AtMost(CHEAPER)),
                (cpu_sat(Pattern::Crr), Goal::AtMost(CHEAPER)),
                (Metric::CpuPerGbit { offload: true }, Goal::AtMost(CHEAPER)),
                (Metric::CpuPerGbit { offload: false }, Goal::AtMost(CHEAPER)),
            ];
            for (metric, goal) in vs_plain {
                out.push(ratio_target(
                    results,
                    format!(
                        "{} at 10,000 rules / plain, {}: {}",
                        bpf.name(),
                        placement.name(),
                        metric.name()
                    ),
                    (bpf, Some(cidr), placement, metric),
                    (Mode::Plain, None, placement, metric),
                    goal,
                ));
            }
        }
    }
    for bpf in BPF_MODES {
        for rules in [cidr, selectors] {
            for other in [Mode::IptablesNft, Mode::IptablesLegacy] {
                for placement in Placement::PODS {
                    for (metric, goal) in [
                        (sat(Pattern::Crr), Goal::AtLeast(FASTER)),
                        (cpu_sat(Pattern::Crr), Goal::AtMost(CHEAPER)),
                    ] {
                        out.push(ratio_target(
                            results,
                            format!(
                                "{} / {} at {} rules, {}: {}",
                                bpf.name(),
                                other.name(),
                                rules.label(),
                                placement.name(),
                                metric.name()
                            ),
                            (bpf, Some(rules), placement, metric),
                            (other, Some(rules), placement, metric),
                            goal,
                        ));
                    }
                }
            }
        }
    }
    out.extend(enforcement(results));
    if let Some(p) = prog {
        out.push(Target {
            what: "PROG_TEST_RUN `cali_to_wl` first packet: 10,000 / 10 rules".into(),
            figures: format!("{:.0} / {:.0} ns", p.first_10k.median, p.first_10.median),
            value: Some(p.first_ratio()),
            goal: Goal::AtMost(1.5),
            caveat: None,
        });
        out.push(Target {
            what: "PROG_TEST_RUN `cali_to_wl` established flow / empty program".into(),
            figures: format!("{:.0} / {:.0} ns", p.established.median, p.empty.median),
            value: Some(p.established_ratio()),
            goal: Goal::AtMost(3.0),
            caveat: None,
        });
    }
    out
}

/// Seconds from `felix apply` to enforcement of 10,000 selector rules and of 50,000 /32 rules,
/// per mode: held to [`ENFORCED_WITHIN_S`] in BPF mode, reported for iptables.
fn enforcement(results: &Results) -> Vec<Target> {
    let cases = [
        Rules {
            shape: Shape::Selector,
            count: TARGET_RULES,
        },
        Rules {
            shape: Shape::Cidr,
            count: 50_000,
        },
    ];
    let mut out = Vec::new();
    for rules in cases {
        for &mode in results.modes.iter().filter(|m| m.has_policy()) {
            let seconds = results.programmed.get(&(mode, rules)).copied();
            out.push(Target {
                what: format!(
                    "{}: {} rules enforced after `felix apply`, s",
                    mode.name(),
                    rules.label()
                ),
                figures: seconds.map_or_else(|| "-".into(), |s| format!("{s:.2} s")),
                value: seconds,
                goal: if BPF_MODES.contains(&mode) {
                    Goal::AtMost(ENFORCED_WITHIN_S)
                } else {
                    Goal::None
                },
                caveat: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_K: Option<Rules> = Some(Rules {
        shape: Shape::Cidr,
        count: TARGET_RULES,
    });

    fn find<'a>(targets: &'a [Target], what: &str) -> &'a Target {
        targets
            .iter()
            .find(|t| t.what == what)
            .unwrap_or_else(|| panic!("no target {what:?}"))
    }

    #[test]
    fn ratios_at_saturation_are_judged_against_their_goals() {
        let mut r = Results {
            modes: vec![Mode::Plain, Mode::Bpf],
            ..Results::default()
        };
        let same = Placement::SameHost;
        r.push((Mode::Plain, None, same, Metric::CRR_SAT), 10_000.0);
        r.push((Mode::Bpf, TEN_K, same, Metric::CRR_SAT), 12_000.0);
        r.push((Mode::Plain, None, same, Metric::RR_SAT), 100_000.0);
        r.push((Mode::Bpf, TEN_K, same, Metric::RR_SAT), 90_000.0);
        let cpu = Metric::CpuUs {
            pattern: Pattern::Crr,
            load: Load::Saturating,
        };
        r.push((Mode::Plain, None, same, cpu), 100.0);
        r.push((Mode::Bpf, TEN_K, same, cpu), 80.0);
        let busy = Metric::Busy {
            pattern: Pattern::Rr,
            load: Load::Saturating,
        };
        r.push((Mode::Bpf, TEN_K, same, busy), 80.0);
        r.push((Mode::Plain, None, same, busy), 99.0);
        r.programmed.insert(
            (
                Mode::Bpf,
                Rules {
                    shape: Shape::Selector,
                    count: TARGET_RULES,
                },
            ),
            0.4,
        );
        let t = targets(&r, None);

        let crr = find(
            &t,
            "bpf at 10,000 rules / plain, same host: new connections/s at saturation",
        );
        assert_eq!(crr.value, Some(1.2));
        assert_eq!(crr.met(), Some(true));
        assert_eq!(crr.figures, "12,000 / 10,000 conn/s");
        assert_eq!(crr.caveat, None);

        let rr = find(
            &t,
            "bpf at 10,000 rules / plain, same host: RR transactions/s at saturation",
        );
        assert_eq!(rr.met(), Some(false));
        assert!(
            rr.caveat.as_deref().is_some_and(|c| c.contains("bpf 80%")),
            "{rr:?}"
        );

        let cpu = find(
            &t,
            "bpf at 10,000 rules / plain, same host: CPU µs per connection at saturation",
        );
        assert_eq!(cpu.value, Some(0.8));
        assert_eq!(cpu.met(), Some(true));

        let unmeasured = find(
            &t,
            "bpf-native at 10,000 rules / plain, two hosts: new connections/s at saturation",
        );
        assert_eq!((unmeasured.value, unmeasured.met()), (None, None));

        let enforced = find(
            &t,
            "bpf: 10,000 (selectors/ipsets) rules enforced after `felix apply`, s",
        );
        assert_eq!(enforced.met(), Some(true));
        let json = enforced.to_json();
        assert_eq!(json["met"], true);
        assert_eq!(json["goal"], "<= 1.00");
    }

    #[test]
    fn figures_read_in_their_units() {
        assert_eq!(figure(Metric::CRR_SAT, 12_345.4), "12,345");
        let cpu = Metric::CpuUs {
            pattern: Pattern::Rr,
            load: Load::Fixed,
        };
        assert_eq!(figure(cpu, 42.24), "42.2");
        assert_eq!(figure(cpu, 1_234.0), "1,234");
        assert_eq!(Goal::AtLeast(1.1).met(1.05), Some(false));
        assert_eq!(Goal::None.met(3.0), None);
    }
}
