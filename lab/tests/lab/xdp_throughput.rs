//! What an idle XDP program on the uplink costs: cross-host TCP throughput (iperf3, pod h1-p1 to
//! pod h2-p1, IPIP) with the deny lists empty (felix attaches no XDP) and with one entry on
//! each host (an unused address: XDP attached, dropping nothing), alternating. A measurement,
//! not a check: run it by name with `--ignored --nocapture`.

use std::time::Duration;

use anyhow::Result;
use lab::{Iperf, Lab, traffic};

use crate::support::with_lab;

/// Rounds of (no XDP, XDP) runs.
const ROUNDS: usize = 4;
const SECONDS: u32 = 5;
/// On both deny lists while XDP is wanted: an address nobody uses.
const UNUSED: &str = "10.99.0.1/32";

fn gbit(lab: &Lab) -> Result<f64> {
    let (client, server) = (lab.pod(1, 1)?.clone(), lab.pod(2, 1)?.clone());
    let report = traffic::iperf(
        &client.ns,
        &server.ns,
        &server.ip.to_string(),
        Iperf::Tcp { seconds: SECONDS },
    )?;
    Ok(report.received_bps / 1e9)
}

fn set_xdp(lab: &Lab, attached: bool) -> Result<()> {
    for n in [1, 2] {
        lab.xdp_deny(n, UNUSED, attached)?;
        lab.wait_uplink_xdp(n, attached, Duration::from_secs(3))?;
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[test]
#[ignore = "a measurement: run by name with --ignored --nocapture"]
fn uplink_xdp_throughput() -> Result<()> {
    with_lab(|lab| {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut current = false;
        for round in 0..ROUNDS {
            // Alternate which variant goes first, so that drift in the machine's load evens out.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for attached in order {
                if attached != current {
                    set_xdp(lab, attached)?;
                    current = attached;
                }
                let g = gbit(lab)?;
                println!(
                    "round {round}: XDP {}: {g:.2} Gbit/s",
                    if attached { "attached" } else { "none" }
                );
                if attached {
                    with.push(g);
                } else {
                    without.push(g);
                }
            }
        }
        if current {
            set_xdp(lab, false)?;
        }
        let (a, b) = (median(&mut without), median(&mut with));
        println!(
            "median over {ROUNDS} runs of {SECONDS} s: no XDP {a:.2} Gbit/s, XDP attached {b:.2} Gbit/s ({:.2}x)",
            a / b
        );
        Ok(())
    })
}
