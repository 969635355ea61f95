//! `bench dataplane --quick` (what `cargo xtask bench dataplane --quick` runs): every mode
//! comes up on its own lab, and every mode and placement yields nonzero throughput, RR and
//! new-connection rates at every rule configuration, with the report, plot and JSON written.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use lab::{cmd, paths};
use serde_json::Value;

const MODES: [&str; 5] = [
    "plain",
    "iptables-nft",
    "iptables-legacy",
    "bpf",
    "bpf-native",
];
const PLACEMENTS: [&str; 2] = ["same host", "two hosts"];
const METRICS: [&str; 3] = [
    "TCP Gbit/s (TSO/GSO on)",
    "RR transactions/s",
    "new connections/s",
];

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The medians of `mode`, `placement` and `metric` in the JSON, one per rule configuration.
fn medians<'a>(series: &'a [Value], mode: &str, placement: &str, metric: &str) -> Vec<&'a Value> {
    series
        .iter()
        .filter(|s| s["mode"] == mode && s["placement"] == placement && s["metric"] == metric)
        .collect()
}

#[test]
fn quick_dataplane_bench_measures_every_mode_and_placement() -> Result<()> {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("dataplane-bench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    let report = scratch.0.join("quick.md");
    cmd::inherit(
        Command::new(paths::cargo())
            .args([
                "run",
                "--release",
                "-p",
                "bench",
                "--",
                "dataplane",
                "--quick",
            ])
            .arg("--felix")
            .arg(paths::felix_bin())
            .arg("--out")
            .arg(&report)
            .current_dir(paths::repo_root())
            .env_remove("FELIX_EBPF_STUB"),
    )?;
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(report.with_extension("json")).context("the JSON results")?,
    )?;
    let modes: Vec<&str> = json["modes"]
        .as_array()
        .context("modes")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(modes, MODES, "modes that ran");
    assert_eq!(
        json["skipped"].as_array().map(Vec::len),
        Some(0),
        "{}",
        json["skipped"]
    );
    let series = json["series"].as_array().context("series")?;
    for mode in MODES {
        // plain has one configuration (no policy); the others 0 and 100 rules and 100 selectors.
        let configs = if mode == "plain" { 1 } else { 3 };
        for placement in PLACEMENTS {
            for metric in METRICS {
                let found = medians(series, mode, placement, metric);
                assert_eq!(
                    found.len(),
                    configs,
                    "{mode} {placement} {metric}: {found:?}"
                );
                for s in found {
                    let median = s["median"].as_f64().unwrap_or(0.0);
                    assert!(median > 0.0, "{mode} {placement} {metric}: {s}");
                }
            }
        }
    }
    let text = std::fs::read_to_string(&report)?;
    for mode in MODES {
        ensure!(
            text.contains(&format!("| {mode} |")),
            "report lacks {mode}:\n{text}"
        );
    }
    let svg = std::fs::read_to_string(report.with_extension("svg"))?;
    ensure!(
        svg.contains("<svg") && svg.contains("bpf"),
        "plot: {svg:.200}"
    );
    Ok(())
}
