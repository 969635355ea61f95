//! The markdown report of `bench control-plane`.

use std::{fmt::Write as _, time::Duration};

use super::{Changes, MILESTONES, Results, ScaleResult, large, targets};
use crate::{
    report::{self, thousands},
    stats::{Summary, percentile},
};

/// What the report says besides the results.
#[derive(Clone, Debug)]
pub struct Header {
    pub run: report::Header,
    /// The felix binary and where it was built from.
    pub felix: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// `median (min-max)` of durations, in `unit` (seconds or ms).
fn spread(values: &[Duration], seconds: bool) -> String {
    let scaled: Vec<f64> = values
        .iter()
        .map(|d| if seconds { d.as_secs_f64() } else { ms(*d) })
        .collect();
    match Summary::of(&scaled) {
        Some(s) if scaled.len() == 1 => format!("{:.2}", s.median),
        Some(s) => format!("{:.2} ({:.2}-{:.2})", s.median, s.min, s.max),
        None => "-".into(),
    }
}

/// p50, p99, min, max and mean of the latencies, in ms.
fn latency_cells(changes: &Changes) -> String {
    let lat: Vec<f64> = changes.latencies.iter().map(|d| ms(*d)).collect();
    let puts: Vec<f64> = changes.puts.iter().map(|d| ms(*d)).collect();
    let (Some(p50), Some(p99), Some(s)) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        Summary::of(&lat),
    ) else {
        return "| - | - | - | - | - | - | - | - |".into();
    };
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    let cpu = changes.cpu.as_secs_f64() * 1e3 / lat.len() as f64;
    format!(
        "| {} | {p50:.1} | {p99:.1} | {:.1} | {:.1} | {mean:.1} | {:.1} | {cpu:.1} |",
        lat.len(),
        s.min,
        s.max,
        percentile(&puts, 50.0).unwrap_or_default()
    )
}

/// The `n` slowest changes as `latency ms at s`.
fn slowest(changes: &Changes, n: usize) -> String {
    let mut list: Vec<(Duration, Duration)> = changes
        .latencies
        .iter()
        .copied()
        .zip(changes.at.iter().copied())
        .collect();
    list.sort_by_key(|x| std::cmp::Reverse(x.0));
    let parts: Vec<String> = list
        .iter()
        .take(n)
        .map(|(l, at)| format!("{:.1} at {:.1}", ms(*l), at.as_secs_f64()))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn scale_name(r: &ScaleResult) -> String {
    format!(
        "{} / {}",
        thousands(r.scale.endpoints as u64),
        thousands(r.scale.policies as u64)
    )
}

/// The whole report.
pub fn markdown(results: &Results, header: &Header) -> String {
    let s = &results.settings;
    let mut out = String::new();
    header
        .run
        .write_intro(&mut out, "Control plane: etcd to programmed BPF maps");
    let _ = writeln!(out, "- felix: {}", header.felix);
    let _ = writeln!(
        out,
        "- {} cold start(s) of felix per scale, then {} s of rest, {} policy changes and {} \
         label changes, {} ms apart; run took {:.0} s",
        s.sync_runs,
        s.settle.as_secs(),
        s.changes,
        s.changes,
        s.gap.as_millis(),
        header.run.elapsed.as_secs_f64()
    );
    out.push_str(METHOD);

    out.push_str(
        "\n## Full sync (felix start to every local endpoint's policy programmed)\n\n\
         Seconds, median (min-max) of the cold starts. Memory and CPU: of the felix kept for \
         the changes (the last start), when its sync was detected.\n\n\
         | endpoints / policies | keys in etcd | MB | written in, s | programmed, s | maps ready, s | VmRSS MiB | VmHWM MiB | felix CPU s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &results.scales {
        let programmed: Vec<Duration> = r.syncs.iter().map(|x| x.programmed).collect();
        let ready: Vec<Duration> = r.syncs.iter().map(|x| x.maps_ready).collect();
        let last = r.syncs.last();
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.2} | {} | {} | {} | {} | {} |",
            scale_name(r),
            thousands(r.keys as u64),
            r.bytes as f64 / 1e6,
            r.load.as_secs_f64(),
            spread(&programmed, true),
            spread(&ready, true),
            last.map_or("-".into(), |x| mib(x.memory.rss_kib)),
            last.map_or("-".into(), |x| mib(x.memory.hwm_kib)),
            last.map_or("-".into(), |x| format!("{:.2}", x.cpu.as_secs_f64()))
        );
    }

    out.push_str(
        "\n### Where the start goes (felix's own log, seconds after the spawn, per start)\n\n\
         | endpoints / policies | start |",
    );
    for (_, name) in MILESTONES {
        let _ = write!(out, " {name} |");
    }
    out.push_str(" programmed |\n|---|---:|");
    for _ in 0..=MILESTONES.len() {
        out.push_str("---:|");
    }
    out.push('\n');
    for r in &results.scales {
        for (i, run) in r.syncs.iter().enumerate() {
            let _ = write!(out, "| {} | {} |", scale_name(r), i + 1);
            for at in &run.milestones {
                match at {
                    Some(d) => {
                        let _ = write!(out, " {:.3} |", d.as_secs_f64());
                    }
                    None => out.push_str(" - |"),
                }
            }
            let _ = writeln!(out, " {:.3} |", run.programmed.as_secs_f64());
        }
    }

    out.push_str(
        "\n## Single changes to programmed maps (ms)\n\n\
         From the etcd put to the poll that saw the local endpoint's ingress slot flip to the \
         new set. p50/p99 by nearest rank. \"put\": the etcd put alone (p50). \"felix CPU\": \
         felix's CPU time per change, gaps included.\n\n\
         | endpoints / policies | change | n | p50 | p99 | min | max | mean | put | felix CPU |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &results.scales {
        for (what, changes) in [
            ("policy (NetworkPolicy port added)", &r.policy),
            ("label (remote endpoint in/out of an IP set)", &r.label),
        ] {
            let _ = writeln!(
                out,
                "| {} | {what} {}",
                scale_name(r),
                latency_cells(changes)
            );
        }
    }

    out.push_str(
        "\nThe slowest changes (ms, and when the put was made, s after felix's spawn):\n\n",
    );
    for r in &results.scales {
        for (what, changes) in [("policy", &r.policy), ("label", &r.label)] {
            let _ = writeln!(out, "- {}, {what}: {}", scale_name(r), slowest(changes, 3));
        }
    }

    large_section(&mut out, results);

    out.push_str(
        "\n## Memory and policy tables\n\n\
         | endpoints / policies | VmRSS after sync MiB | VmRSS after changes MiB | VmRSS at the end MiB | VmHWM MiB | groups | ips | ports | verdicts | felix WARN / ERROR lines |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &results.scales {
        let after_sync = r.syncs.last().map(|x| x.memory.rss_kib).unwrap_or(0);
        let t = &r.tables;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            scale_name(r),
            mib(after_sync),
            mib(r.memory_changes.rss_kib),
            mib(r.memory_end.rss_kib),
            mib(r.memory_end.hwm_kib),
            t.groups,
            thousands(t.ips as u64),
            thousands(t.ports as u64),
            thousands(t.verdicts as u64),
            r.warnings,
            r.errors
        );
    }
    let flagged: Vec<&String> = results
        .scales
        .iter()
        .flat_map(|r| &r.sample_warnings)
        .collect();
    if !flagged.is_empty() {
        out.push_str("\nFirst WARN/ERROR lines of felix's logs:\n\n```\n");
        for line in flagged {
            let _ = writeln!(out, "{line}");
        }
        out.push_str("```\n");
    }
    targets_section(&mut out, results);
    out
}

/// The large policies, where measured.
fn large_section(out: &mut String, results: &Results) {
    if results.scales.iter().all(|r| r.large.is_empty()) {
        return;
    }
    out.push_str(
        "\n## Large policies (etcd writes to the endpoint's complete set in its slot)\n\n\
         Seconds. One local endpoint selected; written after the changes, sets first.\n\n\
         | endpoints / policies | rules | sets | policies | MB | written in | from the first write | from the first policy put | ips in the set |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &results.scales {
        for p in &r.large {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.3} | {} |",
                scale_name(r),
                large::label(p),
                thousands(p.sets as u64),
                p.policies,
                p.bytes as f64 / 1e6,
                p.written.as_secs_f64(),
                p.from_first_write.as_secs_f64(),
                p.from_policy_write.as_secs_f64(),
                thousands(p.ips as u64)
            );
        }
    }
}

/// Issue 18's targets at the largest scale, met or not.
fn targets_section(out: &mut String, results: &Results) {
    let checks = targets::checks(results);
    if checks.is_empty() {
        return;
    }
    out.push_str(
        "\n## Targets (issue 18, at the largest scale)\n\n\
         | target | goal | measured | met |\n\
         |---|---|---:|---|\n",
    );
    for c in &checks {
        let (measured, met) = match (c.measured, c.met()) {
            (Some(m), Some(met)) => (
                format!("{m:.*} {}", if c.unit == "s" { 3 } else { 1 }, c.unit),
                if met { "met" } else { "not met" },
            ),
            _ => ("-".into(), "not measured"),
        };
        let _ = writeln!(out, "| {} | {} | {measured} | {met} |", c.what, c.goal);
    }
}

const METHOD: &str = concat!(
    "
Method: everything runs in two network namespaces the bench creates and removes: `fabric`
with a real etcd (Debian's 3.4, data on disk) and `host` with felix (`cargo build --release
-p felix-user`, the real eBPF object) started as `nsenter --net=... felix run --node node-000
--etcd-endpoints http://10.99.255.254:2379 --uplink eth0 --pin-root <private> --run-root
<private>`, with its uplink `eth0` (a veth to the fabric) and 20 `cali*` veths, the host
ends of the 20 local pods. The bench, etcd and felix share the machine's CPUs.

The cluster in etcd (Calico's v3 keys, written in transactions of 128 puts before felix
starts): namespaces of 100 pods, 10 apps of 10 pods each (3 `role: frontend`, 6 `backend`,
1 `db` per app); Calico's namespace and service-account profiles; one NetworkPolicy per
app (order 1000), selector `app == 'appJ'`, with k8s-like allow rules:
ingress TCP 8080,8443 from `role == 'frontend'` (the namespace's frontends: 30 pods),
TCP 9090 from `namespaceSelector: team == 'team-T'` (every pod of 10 namespaces: 1,000
pods), ICMP from 10.99.0.0/16; egress UDP 53 to 10.96.0.10/32, TCP 5432 to `role == 'db'`
(10 pods), TCP 8080 to the next app (10 pods). Nodes of 100 pods with their IPAM blocks
(/26), affinities and handles; node-000 (felix) holds 20 pods, spread over the namespaces,
each selected by its app's policy (20 distinct policies, so 40 groups: 20 ingress, 20
egress). Everything else sits on ",
    "other (fake) nodes.

- full sync: felix starts cold (no pins, no state files). Done when every local
  endpoint in `felix_ep_v2` has an ingress and an egress slot, each slot holds a set in
  `felix_pslot_v1`, and felix's state file (`policy.json`) has those slots with those sets;
  then each endpoint's ingress group is checked to be exactly its app's policy with rule 0
  as written. \"maps ready\": the first poll at which the maps alone were complete. Polled
  every 1 ms.
- policy change `i`: one put of the NetworkPolicy of local endpoint `i mod 20` with port
  20000+i added to its ingress rule 0; done when that endpoint's ingress slot (in
  `felix_ep_v2`) or the set in that slot (`felix_pslot_v1`) differs from before the put,
  polled every 1 ms. Then, untimed, the state file must show the rule with the new port.
- label change `i`: one put of the WorkloadEndpoint of a remote frontend (on another node)
  in the namespace of local endpoint `i mod 20`, its `role` toggled between `frontend` and
  `backend`: it leaves or joins the IP set of that endpoint's ingress rule 0. Timed the same
  way; the state file must then show the set's new size.
- one change at a time: the first put comes a few seconds after the sync (felix's own
  start-up writes to etcd, its Node and status, come back through its watch), each next one
  after the check and a pause. felix applies each watch response as it arrives (no batching
  window); what arrives while it applies one batch forms the next, so felix's periodic
  status write (every 10 s) can still share a batch with one of our changes.
- large policies (full runs, largest scale, after the changes): the deny policies of `bench
  dataplane` (10,000 rules `source: selector: bench-set == 's<i>'`, each naming its own
  GlobalNetworkSet of 8 addresses; then 50,000 rules `source: nets: [<a>/32]` in
  GlobalNetworkPolicies of 10,000 rules), their selector narrowed to one local endpoint
  (another for each). The sets are written first (transactions of 128 puts), then each
  policy (one put each). Timed from the first write, and from the first policy put (what
  felix takes once the rules reach it), to the first poll that saw the endpoint's ingress
  slot and set that the state file then shows with every deny policy in its group.
- targets: issue 18's, at the largest scale; the large policies from the first policy put,
  VmRSS the highest of after the sync and after the changes (the scale the target names; the
  large policies add 60,000 rules and 10,000 sets: VmRSS at the end is reported beside it).
- memory: VmRSS and VmHWM from `/proc/<pid>/status`; CPU: utime + stime from
  `/proc/<pid>/stat`.
"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::{Memory, Settings, SyncRun, Tables, cluster::Scale};
    use crate::report::Machine;

    fn result() -> ScaleResult {
        let sync = |s: u64| SyncRun {
            programmed: Duration::from_millis(s),
            maps_ready: Duration::from_millis(s - 5),
            memory: Memory {
                rss_kib: 20_480,
                hwm_kib: 30_720,
            },
            cpu: Duration::from_millis(900),
            milestones: vec![Some(Duration::from_millis(100)), None, None, None, None],
        };
        let changes = Changes {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            puts: vec![Duration::from_millis(3); 100],
            at: (1..=100).map(Duration::from_secs).collect(),
            cpu: Duration::from_millis(500),
        };
        ScaleResult {
            scale: Scale {
                endpoints: 10_000,
                policies: 1_000,
            },
            keys: 21_413,
            bytes: 12_300_000,
            load: Duration::from_secs(3),
            syncs: vec![sync(2_000), sync(1_500), sync(2_500)],
            tables: Tables {
                groups: 40,
                ips: 20_000,
                ports: 100,
                verdicts: 300,
            },
            policy: changes.clone(),
            label: changes,
            large: vec![large::LargePolicy {
                shape: crate::dataplane::rules::Shape::Cidr,
                rules: 50_000,
                sets: 0,
                policies: 5,
                bytes: 3_000_000,
                written: Duration::from_millis(200),
                from_first_write: Duration::from_millis(900),
                from_policy_write: Duration::from_millis(900),
                ips: 50_001,
            }],
            memory_changes: Memory {
                rss_kib: 25_600,
                hwm_kib: 30_720,
            },
            memory_end: Memory {
                rss_kib: 40_960,
                hwm_kib: 40_960,
            },
            warnings: 1,
            errors: 0,
            sample_warnings: vec!["2026 WARN x".into()],
        }
    }

    #[test]
    fn markdown_has_the_numbers() {
        let results = Results {
            settings: Settings::full(),
            scales: vec![result()],
        };
        let header = Header {
            run: report::Header {
                date: "2026-11-28".into(),
                command: "cargo run -p bench --release -- control-plane".into(),
                machine: Machine {
                    cpu: "cpu".into(),
                    nproc: 2,
                    kernel: "6.18".into(),
                },
                elapsed: Duration::from_secs(60),
                load: ["1".into(), "2".into()],
            },
            felix: "target/release/felix".into(),
        };
        let md = markdown(&results, &header);
        assert!(md.contains(
            "| 10,000 / 1,000 | 21,413 | 12.3 | 3.00 | 2.00 (1.50-2.50) | 2.00 (1.50-2.50) | 20.0 | 30.0 | 0.90 |"
        ));
        assert!(md.contains(
            "| 10,000 / 1,000 | policy (NetworkPolicy port added) | 100 | 50.0 | 99.0 | 1.0 | 100.0 | 50.5 | 3.0 | 5.0 |"
        ));
        assert!(md.contains("| 10,000 / 1,000 | 3 | 0.100 | - | - | - | - | 2.500 |"));
        assert!(md.contains("| 20.0 | 25.0 | 40.0 | 40.0 | 40 | 20,000 | 100 | 300 | 1 / 0 |"));
        assert!(md.contains(
            "| VmRSS (highest of after sync and after the changes) | <= 150 MiB | 25.0 MiB | met |"
        ));
        assert!(md.contains("2026 WARN x"));
        assert!(md.contains(
            "| 10,000 / 1,000 | 50,000 /32 rules | 0 | 5 | 3.0 | 0.200 | 0.900 | 0.900 | 50,001 |"
        ));
        assert!(md.contains("| policy change p99 | <= 20 ms | 99.0 ms | not met |"));
        assert!(
            md.contains("| 50,000 /32 rules, from the first policy put | <= 1 s | 0.900 s | met |")
        );
        assert!(md.contains(
            "| 10,000 selector rules, from the policy put | <= 1 s | - | not measured |"
        ));
        assert!(md.contains("- 10,000 / 1,000, label: 100.0 at 100.0, 99.0 at 99.0, 98.0 at 98.0"));
    }
}
