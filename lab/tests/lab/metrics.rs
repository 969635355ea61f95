//! felix's Prometheus metrics and health endpoints.

use std::time::Duration;

use anyhow::{Result, ensure};

use crate::support::{poll_until, with_lab};

/// felix serves Prometheus metrics and health on its host: dataplane counters that moved with
/// traffic, map capacities, the datastore in sync, per-rule policy hits; `/readiness` and
/// `/liveness` answer 200.
#[test]
fn metrics_and_health_endpoints_report_the_dataplane() -> Result<()> {
    with_lab(|lab| {
        let ns = lab::names::host_ns(lab.id(), 1);
        let p1 = lab.pod(1, 1)?.clone();
        let p2 = lab.pod(1, 2)?.clone();
        let (stats, text) = lab.ping(&p1, p2.ip, 3)?;
        ensure!(stats.received == 3, "{text}");
        let get = |url: &str| -> Result<(String, String)> {
            let out = lab.exec_in(&ns, &["curl", "-s", "-w", "\n%{http_code}", url])?;
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            let (body, code) = body.rsplit_once('\n').unwrap_or((&body, ""));
            Ok((code.to_string(), body.to_string()))
        };
        let (code, metrics) = get("http://127.0.0.1:9091/metrics")?;
        ensure!(code == "200", "/metrics answered {code}: {metrics}");
        for needle in [
            "felix_datastore_in_sync 1",
            "felix_map_capacity{map=\"felix_ct_v1\"} 262144",
            "felix_ready 1",
            "felix_policy_rule_packets_total{",
            "reason=\"forwarded_local\"",
        ] {
            ensure!(metrics.contains(needle), "no {needle:?} in:\n{metrics}");
        }
        let forwarded: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("felix_dataplane_packets_total{")
                    && l.contains("reason=\"forwarded_local\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        ensure!(forwarded >= 3, "forwarded_local packets {forwarded}");
        // Every keyed map reports its entries, the failsafe ports' too (Calico's defaults), from
        // the walk felix makes every 10 s.
        let entries = |metrics: &str| -> u64 {
            metrics
                .lines()
                .find(|l| l.starts_with("felix_map_entries{map=\"felix_fsafe_v1\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        };
        poll_until(Duration::from_secs(15), "failsafe entries counted", || {
            let (_, metrics) = get("http://127.0.0.1:9091/metrics")?;
            Ok(match entries(&metrics) {
                0 => Err(format!("no failsafe map entries in:\n{metrics}")),
                n => Ok(n),
            })
        })?;
        for path in ["readiness", "liveness"] {
            let (code, body) = get(&format!("http://127.0.0.1:9099/{path}"))?;
            ensure!(code == "200", "/{path} answered {code}: {body}");
        }
        Ok(())
    })
}
