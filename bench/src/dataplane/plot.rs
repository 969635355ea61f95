//! The SVG plot of `bench dataplane`: TCP throughput (TSO/GSO on), new connections per second
//! at the fixed and at the saturating load, and CPU µs per connection at saturation, against
//! the number of non-matching rules (/32 sources), one line per mode, `plain` as a dashed line
//! (it has no rules), one panel per metric and placement.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{
    results::{Load, Metric, Mode, Placement, Results, Rules},
    rules::Shape,
};
use crate::{loadgen::Pattern, report::thousands};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1600;

/// The panels' metrics (one row each) and their titles.
const METRICS: [(Metric, &str); 4] = [
    (Metric::Gbps { offload: true }, "TCP Gbit/s"),
    (Metric::CRR, "new connections/s, 4 threads"),
    (Metric::CRR_SAT, "new connections/s at saturation"),
    (
        Metric::CpuUs {
            pattern: Pattern::Crr,
            load: Load::Saturating,
        },
        "CPU µs per connection at saturation (lower is better)",
    ),
];

fn colour(mode: Mode) -> RGBColor {
    match mode {
        Mode::Plain => RGBColor(90, 90, 90),
        Mode::IptablesNft => RGBColor(214, 96, 77),
        Mode::IptablesLegacy => RGBColor(230, 160, 30),
        Mode::Bpf => RGBColor(33, 102, 172),
        Mode::BpfNative => RGBColor(27, 158, 119),
    }
}

/// The /32-source rule counts measured by any mode, ascending (the x axis, one slot each).
fn rule_counts(results: &Results) -> Vec<u32> {
    let mut counts: Vec<u32> = results
        .values
        .keys()
        .filter_map(|k| k.1)
        .filter(|r| r.shape == Shape::Cidr)
        .map(|r| r.count)
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// Writes the plot to `path`.
pub fn write(results: &Results, path: &Path) -> Result<()> {
    let counts = rule_counts(results);
    if counts.is_empty() {
        return Err(anyhow!("nothing to plot: no rule counts measured"));
    }
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(
            "felix dataplanes on the lab: medians vs non-matching rules before the allow",
            ("sans-serif", 20),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((METRICS.len(), Placement::PODS.len()));
    let cells = METRICS
        .iter()
        .flat_map(|&(metric, label)| Placement::PODS.map(|placement| (metric, label, placement)));
    for (area, (metric, label, placement)) in panels.iter().zip(cells) {
        panel(area, results, &counts, metric, label, placement)?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    results: &Results,
    counts: &[u32],
    metric: Metric,
    label: &str,
    placement: Placement,
) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
    let series = |mode: Mode| -> Vec<(f64, f64)> {
        counts
            .iter()
            .enumerate()
            .filter_map(|(x, &count)| {
                let rules = Some(Rules {
                    shape: Shape::Cidr,
                    count,
                });
                results
                    .median(&(mode, rules, placement, metric))
                    .map(|v| (x as f64, v))
            })
            .collect()
    };
    let ceiling = results.ceiling(placement, metric);
    let top = results
        .modes
        .iter()
        .flat_map(|&m| series(m))
        .map(|(_, v)| v)
        .chain(ceiling)
        .fold(0.0_f64, f64::max)
        * 1.15;
    let top = if top > 0.0 { top } else { 1.0 };
    let last = (counts.len() - 1).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{label}, {}", placement.name()), ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2..last + 0.2, 0.0..top)
        .map_err(err)?;
    let labels: Vec<String> = counts.iter().map(|&c| thousands(c)).collect();
    chart
        .configure_mesh()
        .x_labels(counts.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("non-matching rules")
        .y_label_formatter(&|y| {
            if *y >= 1000.0 {
                format!("{:.0}k", y / 1000.0)
            } else {
                format!("{y:.1}")
            }
        })
        .draw()
        .map_err(err)?;
    if let Some(c) = ceiling {
        let style = colour(Mode::Plain).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(-0.2, c), (last + 0.2, c)],
                8,
                6,
                style,
            ))
            .map_err(err)?
            .label("plain (no policy)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    for &mode in results.modes.iter().filter(|m| m.has_policy()) {
        let points = series(mode);
        let style = colour(mode).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(err)?
            .label(mode.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour(mode).filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}
