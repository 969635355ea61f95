//! The per-packet side of `bench dataplane`: `policy-cost`'s BPF_PROG_TEST_RUN measurement of
//! `cali_to_wl` at 10 and 10,000 rules (/32 sources), with the empty program as the floor,
//! run on a thread of its own in a private network namespace.

use std::thread;

use anyhow::{Context, Result};

use crate::{
    netns,
    policies::Shape,
    policy_cost::{self, Case, Hook},
    stats::Summary,
};

/// ns per packet, summarised over rounds.
#[derive(Clone, Copy, Debug)]
pub struct ProgCost {
    /// A first packet judged by 10 rules (denied after them).
    pub first_10: Summary,
    /// The same at 10,000 rules.
    pub first_10k: Summary,
    /// A packet of an established flow (0 rules: the allow-all policy).
    pub established: Summary,
    /// The empty program on the same frame.
    pub empty: Summary,
    pub rounds: usize,
    pub repeat: u32,
}

impl ProgCost {
    /// First packet at 10,000 rules over 10 rules (target: <= 1.5).
    pub fn first_ratio(&self) -> f64 {
        self.first_10k.median / self.first_10.median
    }

    /// Established flow over the empty program (target: <= 3).
    pub fn established_ratio(&self) -> f64 {
        self.established.median / self.empty.median
    }
}

/// Measures on a new thread that enters a private network namespace (the process's other
/// threads stay where they are).
pub fn measure(quick: bool) -> Result<ProgCost> {
    let mut settings = if quick {
        policy_cost::Settings::quick()
    } else {
        policy_cost::Settings::full()
    };
    settings.rules = vec![10, 10_000];
    thread::spawn(move || -> Result<ProgCost> {
        netns::enter()?;
        let results = policy_cost::run(&settings)?;
        let empty = policy_cost::empty_baseline(&settings)?;
        let row = |rules: u32| {
            results
                .rows
                .iter()
                .find(|r| r.shape == Shape::Cidr && r.rules == rules)
                .with_context(|| format!("policy-cost has no row of {rules} /32 rules"))
        };
        let summary = |rules: u32, case: Case| -> Result<Summary> {
            row(rules)?
                .summary(Hook::ToWorkload, case)
                .with_context(|| format!("no {case:?} at {rules} rules"))
        };
        Ok(ProgCost {
            first_10: summary(10, Case::FirstDenied)?,
            first_10k: summary(10_000, Case::FirstDenied)?,
            established: summary(0, Case::Established)?,
            empty: Summary::of(&empty).context("no empty-program rounds")?,
            rounds: settings.rounds,
            repeat: settings.repeat,
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the PROG_TEST_RUN thread panicked"))?
}
