//! Issue 18's control-plane targets, checked against a run's largest scale.

use super::{Changes, Results, ScaleResult, large::LargePolicy};
use crate::{
    dataplane::rules::Shape,
    stats::{Summary, percentile},
};

/// One target and what the run measured for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub what: &'static str,
    /// The target, as the issue states it.
    pub goal: &'static str,
    /// The measured value in the target's unit (ms, s or MiB); `None`: not measured.
    pub measured: Option<f64>,
    pub unit: &'static str,
    pub limit: f64,
}

impl Check {
    /// Whether it was measured and within the limit.
    pub fn met(&self) -> Option<bool> {
        self.measured.map(|m| m <= self.limit)
    }
}

fn p99_ms(changes: &Changes) -> Option<f64> {
    let ms: Vec<f64> = changes
        .latencies
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    percentile(&ms, 99.0)
}

fn large_s(r: &ScaleResult, shape: Shape) -> Option<f64> {
    r.large
        .iter()
        .find(|p: &&LargePolicy| p.shape == shape)
        .map(|p| p.from_policy_write.as_secs_f64())
}

/// The targets at the run's largest scale (by endpoints).
pub fn checks(results: &Results) -> Vec<Check> {
    let Some(r) = results.scales.iter().max_by_key(|r| r.scale.endpoints) else {
        return Vec::new();
    };
    let sync: Vec<f64> = r.syncs.iter().map(|s| s.programmed.as_secs_f64()).collect();
    let rss = r
        .syncs
        .iter()
        .map(|s| s.memory.rss_kib)
        .chain([r.memory_changes.rss_kib])
        .max()
        .map(|kib| kib as f64 / 1024.0);
    let check = |what, goal, measured, unit, limit| Check {
        what,
        goal,
        measured,
        unit,
        limit,
    };
    vec![
        check(
            "policy change p99",
            "<= 20 ms",
            p99_ms(&r.policy),
            "ms",
            20.0,
        ),
        check("label change p99", "<= 20 ms", p99_ms(&r.label), "ms", 20.0),
        check(
            "10,000 selector rules, from the policy put",
            "<= 1 s",
            large_s(r, Shape::Selector),
            "s",
            1.0,
        ),
        check(
            "50,000 /32 rules, from the first policy put",
            "<= 1 s",
            large_s(r, Shape::Cidr),
            "s",
            1.0,
        ),
        check(
            "full sync (median of the cold starts)",
            "<= 1 s",
            Summary::of(&sync).map(|s| s.median),
            "s",
            1.0,
        ),
        check(
            "VmRSS (highest of after sync and after the changes)",
            "<= 150 MiB",
            rss,
            "MiB",
            150.0,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_met_only_within_its_limit() {
        let mut c = Check {
            what: "x",
            goal: "<= 20 ms",
            measured: Some(20.0),
            unit: "ms",
            limit: 20.0,
        };
        assert_eq!(c.met(), Some(true));
        c.measured = Some(20.5);
        assert_eq!(c.met(), Some(false));
        c.measured = None;
        assert_eq!(c.met(), None);
    }
}
