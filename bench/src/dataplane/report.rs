//! The markdown report of `bench dataplane`: machine, versions, command, per-placement tables
//! of medians with their ratio to `plain`, TSO/GSO off, the per-packet figures, the issue's
//! targets (met or not) and every place where an iptables mode beats BPF.

use std::fmt::Write as _;

use super::{
    Settings,
    prog_cost::ProgCost,
    results::{Metric, Mode, Placement, Results, Rules},
    rules::Shape,
};
use crate::report::thousands;

/// What the report says besides the results.
#[derive(Clone, Debug)]
pub struct Header {
    pub run: crate::report::Header,
    pub felix: String,
    pub versions: Vec<(String, String)>,
    /// The plot's file name, next to the report.
    pub plot: Option<String>,
}

/// The BPF modes the targets are about.
const BPF_MODES: [Mode; 2] = [Mode::Bpf, Mode::BpfNative];

const TEN_K: Rules = Rules {
    shape: Shape::Cidr,
    count: 10_000,
};

fn fmt_value(metric: Metric, v: Option<f64>) -> String {
    match (metric, v) {
        (_, None) => "-".into(),
        (Metric::Gbps { .. }, Some(v)) => format!("{v:.2}"),
        (Metric::CpuPerGbit { .. }, Some(v)) => format!("{v:.3}"),
        (Metric::Rr | Metric::Crr, Some(v)) => thousands(v.round() as u64),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0))
}

fn rules_label(rules: Option<Rules>) -> String {
    rules.map_or_else(|| "no policy".into(), Rules::label)
}

/// The main table of one placement: every mode and rule configuration.
fn placement_table(out: &mut String, results: &Results, placement: Placement) {
    let metrics = [Metric::Gbps { offload: true }, Metric::Rr, Metric::Crr];
    let _ = writeln!(out, "\n### {}\n", placement.name());
    let _ = writeln!(
        out,
        "| mode | non-matching rules | TCP Gbit/s | vs plain | RR tx/s | vs plain | new conn/s | vs plain | CPU s per Gbit | policy enforced after |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &mode in &results.modes {
        for rules in results.rules_of(mode) {
            let mut row = format!("| {} | {} ", mode.name(), rules_label(rules));
            for metric in metrics {
                let key = (mode, rules, placement, metric);
                let _ = write!(
                    row,
                    "| {} | {} ",
                    fmt_value(metric, results.median(&key)),
                    fmt_ratio(results.vs_plain(&key))
                );
            }
            let cpu = Metric::CpuPerGbit { offload: true };
            let _ = write!(
                row,
                "| {} ",
                fmt_value(cpu, results.median(&(mode, rules, placement, cpu)))
            );
            let programmed = rules
                .and_then(|r| results.programmed.get(&(mode, r)))
                .map_or_else(|| "-".into(), |s| format!("{s:.1} s"));
            let _ = writeln!(row, "| {programmed} |");
            out.push_str(&row);
        }
    }
}

/// iperf3 with TSO/GSO off, where measured.
fn offload_table(out: &mut String, results: &Results) {
    let off = Metric::Gbps { offload: false };
    let cpu_off = Metric::CpuPerGbit { offload: false };
    let cpu_on = Metric::CpuPerGbit { offload: true };
    let _ = writeln!(
        out,
        "\n## TCP throughput with TSO/GSO off (ethtool in both pods)\n\n| placement | mode | non-matching rules | Gbit/s | vs plain | CPU s per Gbit | same with TSO/GSO on |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for placement in Placement::ALL {
        for &mode in &results.modes {
            for rules in results.rules_of(mode) {
                let key = (mode, rules, placement, off);
                let Some(gbps) = results.median(&key) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    placement.name(),
                    mode.name(),
                    rules_label(rules),
                    fmt_value(off, Some(gbps)),
                    fmt_ratio(results.vs_plain(&key)),
                    fmt_value(cpu_off, results.median(&(mode, rules, placement, cpu_off))),
                    fmt_value(cpu_on, results.median(&(mode, rules, placement, cpu_on))),
                );
            }
        }
    }
}

/// One target line: `what`, the measured figure, and whether it meets `goal`.
struct Target {
    what: String,
    measured: Option<f64>,
    goal: String,
    met: Option<bool>,
}

fn targets(results: &Results, prog: Option<&ProgCost>) -> Vec<Target> {
    let mut out = Vec::new();
    let ten_k = Some(TEN_K);
    for bpf in BPF_MODES {
        for placement in Placement::ALL {
            for metric in [Metric::Crr, Metric::Rr, Metric::Gbps { offload: true }] {
                let r = results.vs_plain(&(bpf, ten_k, placement, metric));
                out.push(Target {
                    what: format!(
                        "{} at 10,000 rules, {}: {} vs plain",
                        bpf.name(),
                        placement.name(),
                        metric.name()
                    ),
                    measured: r,
                    goal: ">= 0.90".into(),
                    met: r.map(|r| r >= 0.90),
                });
            }
            for (other, goal) in [(Mode::IptablesNft, 2.5), (Mode::IptablesLegacy, 1.4)] {
                let b = results.median(&(bpf, ten_k, placement, Metric::Crr));
                let o = results.median(&(other, ten_k, placement, Metric::Crr));
                let r = b.zip(o).filter(|(_, o)| *o > 0.0).map(|(b, o)| b / o);
                out.push(Target {
                    what: format!(
                        "{} / {} new connections/s at 10,000 rules, {}",
                        bpf.name(),
                        other.name(),
                        placement.name()
                    ),
                    measured: r,
                    goal: format!(">= {goal}"),
                    met: r.map(|r| r >= goal),
                });
            }
        }
    }
    if let Some(p) = prog {
        out.push(Target {
            what: "PROG_TEST_RUN `cali_to_wl` first packet: 10,000 / 10 rules".into(),
            measured: Some(p.first_ratio()),
            goal: "<= 1.5".into(),
            met: Some(p.first_ratio() <= 1.5),
        });
        out.push(Target {
            what: "PROG_TEST_RUN `cali_to_wl` established flow / empty program".into(),
            measured: Some(p.established_ratio()),
            goal: "<= 3".into(),
            met: Some(p.established_ratio() <= 3.0),
        });
    }
    out
}

/// Every configuration, placement and metric where an iptables mode's median beats a BPF
/// mode's.
fn iptables_wins(results: &Results) -> Vec<String> {
    let mut wins = Vec::new();
    for bpf in BPF_MODES {
        for rules in results.rules_of(bpf) {
            for placement in Placement::ALL {
                for metric in [
                    Metric::Gbps { offload: true },
                    Metric::Gbps { offload: false },
                    Metric::Rr,
                    Metric::Crr,
                    Metric::CpuPerGbit { offload: true },
                ] {
                    let Some(b) = results.median(&(bpf, rules, placement, metric)) else {
                        continue;
                    };
                    for other in [Mode::IptablesNft, Mode::IptablesLegacy] {
                        let Some(o) = results.median(&(other, rules, placement, metric)) else {
                            continue;
                        };
                        let better = if metric.higher_is_better() {
                            o > b
                        } else {
                            o < b
                        };
                        if better && b > 0.0 {
                            wins.push(format!(
                                "{} at {}, {}: {} {} vs {} {} ({:.2}x)",
                                other.name(),
                                rules_label(rules),
                                placement.name(),
                                metric.name(),
                                fmt_value(metric, Some(o)),
                                bpf.name(),
                                fmt_value(metric, Some(b)),
                                o / b
                            ));
                        }
                    }
                }
            }
        }
    }
    wins
}

fn prog_section(out: &mut String, p: &ProgCost) {
    let _ = writeln!(
        out,
        "\n## Per packet: BPF_PROG_TEST_RUN (`bench policy-cost`'s rig)\n\n\
         `cali_to_wl`, ns per packet, median of {} rounds of {} runs (min-max). The empty program \
         is `r0 = 0; exit` run on the same established-flow frame: the kernel's fixed cost of a \
         run.\n\n| case | ns per packet |\n|---|---:|",
        p.rounds,
        thousands(p.repeat)
    );
    for (what, s) in [
        ("first packet, 10 rules (denied after them)", p.first_10),
        ("first packet, 10,000 rules", p.first_10k),
        ("established flow (conntrack hit)", p.established),
        ("empty program", p.empty),
    ] {
        let _ = writeln!(
            out,
            "| {what} | {:.0} ({:.0}-{:.0}) |",
            s.median, s.min, s.max
        );
    }
}

/// The whole report.
pub fn markdown(
    results: &Results,
    prog: Option<&ProgCost>,
    settings: &Settings,
    header: &Header,
) -> String {
    let mut out = String::new();
    header.run.write_intro(
        &mut out,
        "Dataplane: plain routing vs iptables (nft, legacy) vs BPF on the lab",
    );
    let _ = writeln!(
        out,
        "- felix: {}\n- run took {:.0} s",
        header.felix,
        header.run.elapsed.as_secs_f64()
    );
    for (tool, version) in &header.versions {
        let _ = writeln!(out, "- {tool}: {version}");
    }
    let _ = writeln!(
        out,
        "- every figure: median of {} runs; iperf3 {} s per run; RR and CRR {} s per run, {} \
         client threads, {}-byte request and reply",
        settings.runs,
        settings.iperf_seconds,
        settings.rr_seconds,
        settings.threads,
        settings.message
    );
    out.push_str(METHOD);
    if let Some(plot) = &header.plot {
        let _ = writeln!(
            out,
            "\n![throughput and new connections per second vs rules]({plot})"
        );
    }
    let _ = writeln!(
        out,
        "\n## Targets (issue #8)\n\n| target | measured | goal | met |\n|---|---:|---|---|"
    );
    for t in targets(results, prog) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.what,
            t.measured.map_or_else(|| "-".into(), |v| format!("{v:.2}")),
            t.goal,
            match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not measured",
            }
        );
    }
    let _ = writeln!(
        out,
        "\n## Medians, and their ratio to plain in the same run"
    );
    for placement in Placement::ALL {
        placement_table(&mut out, results, placement);
    }
    offload_table(&mut out, results);
    if let Some(p) = prog {
        prog_section(&mut out, p);
    }
    let wins = iptables_wins(results);
    let _ = writeln!(out, "\n## Where iptables mode beats BPF (medians)\n");
    if wins.is_empty() {
        let _ = writeln!(out, "Nowhere in this run.");
    }
    for w in wins {
        let _ = writeln!(out, "- {w}");
    }
    if !results.skipped.is_empty() {
        let _ = writeln!(out, "\n## Not measured\n");
        for s in &results.skipped {
            let _ = writeln!(
                out,
                "- {} at {}: {}",
                s.mode.name(),
                s.rules.label(),
                s.reason
            );
        }
    }
    out
}

const METHOD: &str = "
## Method

Each mode runs on a fresh lab (the `lab` crate: two hosts, two pods each, etcd, felix, BIRD),
torn down afterwards. Traffic goes from h1-p1 to h1-p2 (same host) and to h2-p1 (two hosts).

- `plain`: the lab comes up in iptables mode (nft), then felix is stopped on both hosts and
  its chains, hook jumps and ipsets (both backends) are flushed; the check that nothing of
  felix's is left must pass. The kernel routes the pods as felix left them (routes to `cali*`,
  remote blocks natively via the other host): no policy, no rule, no conntrack rule. The ceiling.
- `iptables-nft`, `iptables-legacy`: `felix run --dataplane iptables --iptables-backend ...`,
  natively routed across hosts.
- `bpf`: `felix run --dataplane bpf`, IPIP between hosts (the lab's pool has `ipipMode: Always`).
- `bpf-native`: the same with the pool's `ipipMode: Never`: BPF mode routes across hosts
  natively (bpf_fib_lookup and a redirect out of the uplink), as iptables mode and plain do.
- Rules: GlobalNetworkPolicies applied with `felix apply` through etcd: N ingress Deny rules,
  each for a source in 198.18.0.0/15 (no test sends from there) before the Allow, in policies of
  at most 10,000 rules (orders 10, 11, ...), then `bench-allow` (Deny TCP to a sentinel port,
  Allow; egress Allow). \"selectors/ipsets\": each rule's source is a selector matching its own
  GlobalNetworkSet of 8 non-adjacent addresses (an ipset each in iptables mode). The figures are
  taken once a connection to the sentinel port times out instead of being refused on both
  placements (\"policy enforced after\": from `felix apply` to that).
- Throughput: iperf3 TCP, one stream; CPU s per Gbit: busy time of all CPUs from `/proc/stat`
  over the iperf3 run divided by the gigabits received (the whole machine: other work on it
  counts too). TSO/GSO off: `ethtool -K eth0 tso off gso off` in both pods.
- RR: 4 threads, each a persistent connection, 64-byte request, 64-byte reply. CRR (new
  connections/s): 4 threads, each connect, 64-byte request and reply, close; the client closes
  with a RST (SO_LINGER 0) so that ephemeral ports do not run out in TIME_WAIT. Both are
  `bench loadgen`, run in the pods' namespaces.
- Runs of all metrics and placements are interleaved; ratios are against `plain` of the same
  run, placement and metric. Policy rules do not apply to `plain`: its one row is the ceiling
  for every rule count.
";
