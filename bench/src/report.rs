//! The markdown report of `bench policy-cost`: machine, command, per-packet costs, ratios
//! against their targets, compile times and table sizes.

use std::{fmt::Write as _, fs, time::Duration};

use crate::{
    policies::{SET_SIZE, Shape},
    policy_cost::{Case, Hook, Results, Row},
    stats::{Summary, median},
};

/// Where the figures were taken.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu: String,
    pub nproc: usize,
    pub kernel: String,
}

impl Machine {
    /// This machine, from `/proc` (fields it cannot read say so).
    pub fn detect() -> Self {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        // SAFETY: sysconf has no memory effects.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        Machine {
            cpu,
            nproc: usize::try_from(online).unwrap_or(0),
            kernel,
        }
    }
}

/// The 1, 5 and 15-minute load averages, as `/proc/loadavg` has them.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// What the report says besides the results.
#[derive(Clone, Debug)]
pub struct Header {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub elapsed: Duration,
    /// Load averages before and after the run (other work on the machine adds noise).
    pub load: [String; 2],
}

impl Header {
    /// Writes the report's title and the date, machine, load and command lines every report
    /// opens with.
    pub fn write_intro(&self, out: &mut String, title: &str) {
        let m = &self.machine;
        let _ = writeln!(out, "# {title}\n");
        let _ = writeln!(out, "- date: {}", self.date);
        let _ = writeln!(
            out,
            "- machine: {}, nproc {}, kernel `{}`",
            m.cpu, m.nproc, m.kernel
        );
        let _ = writeln!(
            out,
            "- load average before / after: {} / {}",
            self.load[0], self.load[1]
        );
        let _ = writeln!(out, "- command (as root): `{}`", self.command);
    }
}

/// A ratio of two measurements: of their medians (held to `target`; `None`: for
/// information), the median of the ratios of rounds (both taken in the same round, so under
/// the same load), and of their minimums (load on the machine only ever adds time).
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    pub what: String,
    pub hook: Hook,
    pub value: f64,
    pub per_round: f64,
    pub of_minimums: f64,
    pub target: Option<f64>,
}

/// `YYYY-MM-DD` (UTC) of `secs` seconds since the Unix epoch.
pub fn utc_date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn case_name(case: Case) -> &'static str {
    match case {
        Case::FirstDenied => "first packet, denied",
        Case::FirstDeniedFar => "first packet, denied, far remote",
        Case::FirstAllowed => "first packet, allowed (+ conntrack insert)",
        Case::Established => "established",
    }
}

fn cell(summary: Option<Summary>) -> String {
    match summary {
        Some(s) => format!("{:.0} ({:.0}-{:.0})", s.median, s.min, s.max),
        None => "-".into(),
    }
}

fn find(results: &Results, shape: Shape, rules: u32) -> Option<&Row> {
    results
        .rows
        .iter()
        .find(|r| r.shape == shape && r.rules == rules)
}

/// The ratios the issue sets targets for (first packet: 10,000 rules at most 1.5 times 10
/// rules; established: within 3 times the allow-all baseline), for each shape, hook and the
/// largest rule count measured too.
pub fn ratios(results: &Results) -> Vec<Ratio> {
    let mut out = Vec::new();
    for shape in [Shape::Cidr, Shape::IpSet] {
        let largest = results
            .rows
            .iter()
            .filter(|r| r.shape == shape)
            .map(|r| r.rules)
            .max()
            .unwrap_or(0);
        let mut bigs = vec![10_000];
        if largest > 10_000 {
            bigs.push(largest);
        }
        for hook in Hook::ALL {
            for &big in &bigs {
                let (Some(small_row), Some(big_row), Some(base_row)) = (
                    find(results, shape, 10),
                    find(results, shape, big),
                    find(results, shape, 0),
                ) else {
                    continue;
                };
                let pairs = [
                    (Case::FirstDenied, small_row, Some(1.5)),
                    (Case::FirstAllowed, small_row, Some(1.5)),
                    (Case::Established, base_row, Some(3.0)),
                    (Case::FirstDenied, base_row, None),
                    (Case::FirstDeniedFar, small_row, None),
                ];
                for (case, below, target) in pairs {
                    let (Some(a_rounds), Some(b_rounds)) = (
                        big_row.rounds.get(&(hook, case)),
                        below.rounds.get(&(hook, case)),
                    ) else {
                        continue;
                    };
                    let (Some(a), Some(b)) = (Summary::of(a_rounds), Summary::of(b_rounds)) else {
                        continue;
                    };
                    let paired: Vec<f64> =
                        a_rounds.iter().zip(b_rounds).map(|(x, y)| x / y).collect();
                    let Some(per_round) = median(&paired) else {
                        continue;
                    };
                    if b.median <= 0.0 || b.min <= 0.0 {
                        continue;
                    }
                    out.push(Ratio {
                        what: format!(
                            "{}, {}: {} / {} rules",
                            shape.label(),
                            case_name(case),
                            thousands(big),
                            thousands(below.rules)
                        ),
                        hook,
                        value: a.median / b.median,
                        per_round,
                        of_minimums: a.min / b.min,
                        target,
                    });
                }
            }
        }
    }
    out
}

/// `n` with thousands separators.
pub fn thousands(n: impl Into<u64>) -> String {
    let n: u64 = n.into();
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// The whole report.
pub fn markdown(results: &Results, header: &Header) -> String {
    let s = &results.settings;
    let mut out = String::new();
    header.write_intro(&mut out, "Per-packet policy cost: BPF_PROG_TEST_RUN");
    let _ = writeln!(
        out,
        "- {} rounds; repeated cases: {} runs per BPF_PROG_TEST_RUN call (the kernel's average); \
         \"first packet, allowed\": {} single runs per round (their median); run took {:.0} s",
        s.rounds,
        thousands(s.repeat),
        thousands(s.singles),
        header.elapsed.as_secs_f64()
    );
    out.push_str(METHOD);
    for hook in Hook::ALL {
        let _ = writeln!(
            out,
            "\n## `{}`: ns per packet, median of rounds (min-max)\n",
            hook.program()
        );
        let _ = write!(out, "| rules | policy |");
        for case in Case::ALL {
            let _ = write!(out, " {} |", case_name(case));
        }
        let _ = writeln!(out, "\n|---:|---|---:|---:|---:|---:|");
        for row in &results.rows {
            let _ = write!(out, "| {} | {} |", thousands(row.rules), policy_name(row));
            for case in Case::ALL {
                let _ = write!(out, " {} |", cell(row.summary(hook, case)));
            }
            out.push('\n');
        }
    }
    out.push_str(
        "\n## Ratios\n\nOf the medians above (held to the target); the median of the ratios \
         within each round (both measured under the same load); of the minimums.\n\n\
         | ratio | program | medians | per round | minimums | target |\n\
         |---|---|---:|---:|---:|---|\n",
    );
    for r in ratios(results) {
        let target = match r.target {
            Some(t) if r.value <= t => format!("<= {t}: met"),
            Some(t) => format!("<= {t}: **not met**"),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | {:.2} | {:.2} | {:.2} | {target} |",
            r.what,
            r.hook.program(),
            r.value,
            r.per_round,
            r.of_minimums
        );
    }
    out.push_str(
        "\n## Compile time and table sizes (the allow policy: the rules, then Allow)\n\n\
         Compile: `policy::compile::compile` alone. Apply: `PolicyTables::apply` (compile again, \
         write the set's entries one syscall each, flip the slot).\n\n\
         | rules | policy | remote addresses | compile ms | apply ms | ips | ports | verdicts |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in &results.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            thousands(row.rules),
            policy_name(row),
            thousands(row.shape.addresses(row.rules)),
            ms(row.compile),
            ms(row.apply),
            thousands(row.sizes.ips as u64),
            thousands(row.sizes.ports as u64),
            thousands(row.sizes.verdicts as u64)
        );
    }
    if !results.skipped.is_empty() {
        out.push_str("\nNot measured:\n");
        for s in &results.skipped {
            let _ = writeln!(
                out,
                "- {}, {} rules: {}",
                s.shape.label(),
                thousands(s.rules),
                s.reason
            );
        }
    }
    out
}

fn policy_name(row: &Row) -> String {
    match (row.rules, row.shape) {
        (0, _) => format!("baseline ({})", row.shape.label()),
        (_, Shape::Cidr) => "/32 sources".into(),
        (_, Shape::IpSet) => format!("IP sets of {SET_SIZE}"),
    }
}

const METHOD: &str = "
Method: felix's real object is loaded under a private pin tree in a private network namespace;
one workload endpoint (192.168.2.1 behind `lo`) points its ingress and egress policy at the
measured policy. A policy of N rules is N Deny rules on TCP port 9999, each for a remote the
measured packet does not have (\"/32 sources\": one address 10.200.x.y each; \"IP sets\": a set of
32 addresses each, as a `selector` resolves to, every address in two sets), then a tail. The
measured remote is an odd address amid the rules' even ones, so the address lookup goes as deep
into the LPM trie as a near miss does. `cali_to_wl` judges a TCP packet from that remote to the
pod's port 9999 (ingress policy); `cali_from_wl` one from the pod to it (egress policy).

- first packet, denied: tail `Deny tcp 9999` then `Allow`. A denied packet creates no conntrack
  entry, so each of the repeated runs is a first packet (conntrack miss, full classification,
  drop counted).
- first packet, denied, far remote: the same from 172.16.0.1, far from every rule's address,
  so the address lookup ends near the trie's root.
- first packet, allowed: tail `Allow`; single runs, the conntrack entry the packet creates
  removed between them; includes the conntrack insert, the kernel's timer reads for one run and
  caches the syscalls in between have cooled: noisier, compare it within one section only.
- established: tail `Allow`; the flow's first packet is run once, then repeated ACKs of the flow,
  which conntrack accepts without policy.
- baseline (0 rules): the allow-all policy (1 rule) for the allow cases; `Deny tcp 9999` then
  `Allow` for the denied cases.

Each call's verdict and the deciding rule's counter (one per classified packet, none for
established ones) are checked. The rule counts of one shape are programmed side by side and
measured round-robin, so ratios within a shape share the machine's conditions; the two shapes
are measured one after the other and each has its own baseline.
";

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::policy_cost::{Settings, Sizes};

    /// Three rounds: `median` - 1, `median`, `median` + 2.
    fn rounds(median: f64) -> Vec<f64> {
        vec![median + 2.0, median - 1.0, median]
    }

    fn row(rules: u32, first: f64, established: f64) -> Row {
        let mut measured = HashMap::new();
        for hook in Hook::ALL {
            measured.insert((hook, Case::FirstDenied), rounds(first));
            measured.insert((hook, Case::FirstDeniedFar), rounds(first - 10.0));
            measured.insert((hook, Case::FirstAllowed), rounds(first + 50.0));
            measured.insert((hook, Case::Established), rounds(established));
        }
        Row {
            shape: Shape::Cidr,
            rules,
            compile: Duration::from_micros(1_500),
            apply: Duration::from_millis(20),
            sizes: Sizes {
                ips: rules as usize + 1,
                ports: 5,
                verdicts: 2 * rules as usize + 1,
            },
            rounds: measured,
        }
    }

    fn results() -> Results {
        Results {
            settings: Settings::quick(),
            rows: vec![
                row(0, 100.0, 40.0),
                row(10, 100.0, 40.0),
                row(10_000, 160.0, 44.0),
            ],
            skipped: vec![],
        }
    }

    #[test]
    fn ratios_hold_the_targets() {
        let ratios = ratios(&results());
        let first = ratios
            .iter()
            .find(|r| r.what == "/32 sources, first packet, denied: 10,000 / 10 rules")
            .expect("first-packet ratio");
        assert!((first.value - 1.6).abs() < 1e-9);
        assert!((first.of_minimums - 159.0 / 99.0).abs() < 1e-9);
        // Rounds 162/102, 159/99, 160/100: the middle one.
        assert!((first.per_round - 1.6).abs() < 1e-9);
        assert_eq!(first.target, Some(1.5));
        let established = ratios
            .iter()
            .find(|r| r.what == "/32 sources, established: 10,000 / 0 rules")
            .expect("established ratio");
        assert!((established.value - 1.1).abs() < 1e-9);
        // Five ratios per program; no IP-set rows, so none for them.
        assert_eq!(ratios.len(), 10);
    }

    #[test]
    fn markdown_has_rows_ratios_and_sizes() {
        let header = Header {
            date: "2025-01-02".into(),
            command: "cargo run -p bench --release -- policy-cost --quick".into(),
            machine: Machine {
                cpu: "cpu".into(),
                nproc: 2,
                kernel: "6.18.0".into(),
            },
            elapsed: Duration::from_secs(30),
            load: ["0.10 0.20 0.30".into(), "1.00 0.50 0.40".into()],
        };
        let md = markdown(&results(), &header);
        assert!(md.contains("nproc 2, kernel `6.18.0`"));
        assert!(md.contains("load average before / after: 0.10 0.20 0.30 / 1.00 0.50 0.40"));
        assert!(md.contains(
            "| 10,000 | /32 sources | 160 (159-162) | 150 (149-152) | 210 (209-212) | 44 (43-46) |"
        ));
        assert!(md.contains("| 0 | baseline (/32 sources) | 100 (99-102) |"));
        assert!(md.contains("| 1.60 | 1.60 | 1.61 | <= 1.5: **not met** |"));
        assert!(md.contains("| 1.10 | 1.10 | 1.10 | <= 3: met |"));
        assert!(
            md.contains("| 10,000 | /32 sources | 10,000 | 1.5 | 20.0 | 10,001 | 5 | 20,001 |")
        );
    }

    #[test]
    fn dates_and_thousands() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_767_225_600), "2026-01-01");
        assert_eq!(thousands(0u32), "0");
        assert_eq!(thousands(999u32), "999");
        assert_eq!(thousands(50_000u32), "50,000");
        assert_eq!(thousands(1_234_567u32), "1,234,567");
    }
}
