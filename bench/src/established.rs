//! `bench established`: the per-packet cost of an established flow in `cali_to_wl` and
//! `cali_from_wl` against the empty program, under BPF_PROG_TEST_RUN: the fast-path part of
//! `policy-cost` alone, in seconds. Given several eBPF objects (`--object`), it measures them
//! side by side, round-robin in one run, so that variants compare under the same load.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{Context, Result};

use crate::{
    empty_prog::EmptyProgram,
    policies::{self, Shape, Tail},
    policy_cost::{self, Hook, Settings},
    rig::Rig,
    stats::{Summary, median},
};

/// What to measure.
pub struct Options {
    /// Rounds; the report gives medians over them.
    pub rounds: usize,
    /// Runs per BPF_PROG_TEST_RUN call.
    pub repeat: u32,
    /// eBPF objects to measure; empty means the object embedded in felix.
    pub objects: Vec<PathBuf>,
}

/// One measured object and its rounds.
struct Measured {
    name: String,
    rig: Rig,
    decider: u32,
    /// ns per packet per round, by hook ([`Hook::ALL`] order).
    rounds: [Vec<f64>; 2],
}

/// Measures (needs root and a private network namespace) and returns the markdown report.
pub fn run(options: &Options) -> Result<String> {
    let settings = Settings {
        rounds: options.rounds,
        repeat: options.repeat,
        singles: 0,
        rules: Vec::new(),
    };
    let park = policies::group(Shape::Cidr, 0, Tail::Allow);
    let park_program = policies::program(Shape::Cidr, 0, Tail::Allow);
    let objects: Vec<(String, Vec<u8>)> = if options.objects.is_empty() {
        vec![("embedded".into(), felix_user::EBPF_OBJECT.to_vec())]
    } else {
        options
            .objects
            .iter()
            .map(|path| {
                let bytes =
                    std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
                Ok((path.display().to_string(), bytes))
            })
            .collect::<Result<_>>()?
    };
    let mut measured = Vec::with_capacity(objects.len());
    for (name, bytes) in objects {
        let rig = Rig::load_object(&bytes, park.clone(), &park_program)
            .with_context(|| format!("load {name}"))?;
        let decider = rig
            .programmed(&park)?
            .rule_ids
            .get(policies::deciding_entry(0))
            .copied()
            .context("the allow-all rule has no counter")?;
        measured.push(Measured {
            name,
            rig,
            decider,
            rounds: [Vec::new(), Vec::new()],
        });
    }
    let empty_program = EmptyProgram::load().context("load the empty program")?;
    let mut empty = Vec::with_capacity(settings.rounds);
    for round in 0..settings.rounds {
        empty.push(policy_cost::empty_round(&empty_program, settings.repeat)?);
        // Rotate the order so that no object is always measured first.
        let count = measured.len();
        for k in 0..count {
            let m = &mut measured[(k + round) % count];
            for (i, hook) in Hook::ALL.into_iter().enumerate() {
                let ns = policy_cost::established(&mut m.rig, &settings, hook, m.decider)?;
                m.rounds[i].push(ns);
            }
        }
    }
    Ok(report(&measured, &empty, &settings))
}

fn report(measured: &[Measured], empty: &[f64], settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Established flow under BPF_PROG_TEST_RUN: ns per packet, median of {} rounds of {} \
         runs (min-max); ratio to the empty program: median of the per-round ratios.\n",
        settings.rounds, settings.repeat
    );
    let _ = writeln!(out, "| object | program | ns per packet | / empty |");
    let _ = writeln!(out, "|---|---|---:|---:|");
    let cell = |values: &[f64]| {
        Summary::of(values).map_or_else(
            || "-".to_string(),
            |s| format!("{:.0} ({:.0}-{:.0})", s.median, s.min, s.max),
        )
    };
    for m in measured {
        for (i, hook) in Hook::ALL.into_iter().enumerate() {
            let ratios: Vec<f64> = m.rounds[i]
                .iter()
                .zip(empty)
                .map(|(ns, e)| ns / e)
                .collect();
            let ratio = median(&ratios).map_or_else(|| "-".into(), |r| format!("{r:.2}"));
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {ratio} |",
                m.name,
                hook.program(),
                cell(&m.rounds[i])
            );
        }
    }
    let _ = writeln!(out, "| - | empty program | {} | 1.00 |", cell(empty));
    out
}
