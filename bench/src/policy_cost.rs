//! `bench policy-cost`: what felix's policy costs per packet in the real `cali_to_wl` and
//! `cali_from_wl`, for policies of 0 to 50,000 rules, under BPF_PROG_TEST_RUN.
//!
//! Cases, per program and rule count:
//! - first packet, denied: the flow's first packet, judged by the whole policy and denied by
//!   the Deny after the `n` rules. A denied packet creates no conntrack entry, so every one of
//!   the `repeat` runs of one call is a first packet: the kernel's average is the cost of
//!   parsing, a conntrack miss and the full classification.
//! - first packet, denied, far remote: the same from [`policies::FAR_PEER`], an address far
//!   from every rule, whose address lookup ends near the trie's root.
//! - first packet, allowed: allowed by the final Allow, which also inserts the conntrack entry.
//!   That entry would make the next run established, so these are single runs (`repeat` 1)
//!   with the entry removed between them; the figure is the median run and includes the
//!   kernel's timer reads around one run.
//! - established: a flow whose first packet was allowed; then ACKs of that flow, `repeat`
//!   runs that conntrack accepts without looking at policy.
//!
//! Every call's verdict is checked, and so are the counters: the deciding rule's counter moves
//! by one per classified packet and not at all for established ones.
//!
//! All policies of one rule shape and one tail are programmed side by side (each its own
//! group and slot) and measured round-robin, the endpoint pointed at one after the other, so
//! that noise from the rest of the machine falls on every rule count alike.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use felix_common::{
    CtKey,
    maps::{POLICY_IPS_MAX_ENTRIES, POLICY_PORTS_MAX_ENTRIES, POLICY_VERDICTS_MAX_ENTRIES},
};
use felix_user::{PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD, calc::policy::compile::compile};

use crate::{
    empty_prog::EmptyProgram,
    packet::{self, ACK, SYN, Side},
    policies::{self, Shape, Tail},
    rig::{POD_IP, Rig, Run},
    stats::{Summary, median},
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const PROTO_TCP: u8 = 6;
/// The measured peer's source port (`cali_to_wl`) and the pod's (`cali_from_wl`).
const PEER_PORT: u16 = 40000;
const POD_PORT: u16 = 40001;

/// How much to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Rounds per case; the report gives their median.
    pub rounds: usize,
    /// Runs per BPF_PROG_TEST_RUN call for the repeated cases.
    pub repeat: u32,
    /// Single runs per round for "first packet, allowed".
    pub singles: u32,
    /// Rule counts (besides the 0-rule baseline).
    pub rules: Vec<u32>,
}

impl Settings {
    /// The full run: 7 rounds of 100,000 runs, 10 to 50,000 rules.
    pub fn full() -> Self {
        Settings {
            rounds: 7,
            repeat: 100_000,
            singles: 2_000,
            rules: vec![10, 100, 1_000, 10_000, 50_000],
        }
    }

    /// A run of well under a minute.
    pub fn quick() -> Self {
        Settings {
            rounds: 3,
            repeat: 20_000,
            singles: 300,
            rules: vec![10, 1_000, 10_000],
        }
    }
}

/// The program a packet goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// `cali_to_wl`: packets to the pod, judged by its ingress policy.
    ToWorkload,
    /// `cali_from_wl`: packets from the pod, judged by its egress policy.
    FromWorkload,
}

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Case {
    FirstDenied,
    FirstDeniedFar,
    FirstAllowed,
    Established,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::ToWorkload, Hook::FromWorkload];

    pub fn program(self) -> &'static str {
        match self {
            Hook::ToWorkload => PROG_TO_WORKLOAD,
            Hook::FromWorkload => PROG_FROM_WORKLOAD,
        }
    }
}

impl Case {
    pub const ALL: [Case; 4] = [
        Case::FirstDenied,
        Case::FirstDeniedFar,
        Case::FirstAllowed,
        Case::Established,
    ];

    fn tail(self) -> Tail {
        match self {
            Case::FirstDenied | Case::FirstDeniedFar => Tail::Deny,
            Case::FirstAllowed | Case::Established => Tail::Allow,
        }
    }
}

/// Entries of one compiled policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub ips: usize,
    pub ports: usize,
    pub verdicts: usize,
}

/// The figures of one rule shape and rule count. Compile figures are those of the allow
/// policy (`n` rules then the Allow).
#[derive(Clone, Debug)]
pub struct Row {
    pub shape: Shape,
    pub rules: u32,
    pub compile: Duration,
    pub apply: Duration,
    pub sizes: Sizes,
    /// ns per packet of each round, in round order.
    pub rounds: HashMap<(Hook, Case), Vec<f64>>,
}

impl Row {
    /// The rounds of `hook` and `case`, summarised.
    pub fn summary(&self, hook: Hook, case: Case) -> Option<Summary> {
        Summary::of(self.rounds.get(&(hook, case))?)
    }
}

/// A rule count that was not measured, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub shape: Shape,
    pub rules: u32,
    pub reason: String,
}

/// Everything measured.
#[derive(Clone, Debug)]
pub struct Results {
    pub settings: Settings,
    pub rows: Vec<Row>,
    pub skipped: Vec<Skipped>,
}

/// Measures every shape, rule count and case (needs root; enters no namespace itself).
pub fn run(settings: &Settings) -> Result<Results> {
    let park = policies::group(Shape::Cidr, 0, Tail::Allow);
    let mut rig = Rig::load(park, &policies::program(Shape::Cidr, 0, Tail::Allow))?;
    let mut results = Results {
        settings: settings.clone(),
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    for shape in [Shape::Cidr, Shape::IpSet] {
        let (mut rows, skipped) = prepare(shape, settings);
        results.skipped.extend(skipped);
        for tail in [Tail::Deny, Tail::Allow] {
            measure_tail(&mut rig, settings, tail, &mut rows)?;
        }
        results.rows.extend(rows);
    }
    Ok(results)
}

/// Compiles the allow policy of every rule count (timed), keeping those whose tables fit the
/// maps side by side.
fn prepare(shape: Shape, settings: &Settings) -> (Vec<Row>, Vec<Skipped>) {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    // The parked allow-all stays programmed throughout.
    let mut total = Sizes {
        ips: 1,
        ports: 2,
        verdicts: 1,
    };
    for rules in std::iter::once(0).chain(settings.rules.iter().copied()) {
        let started = Instant::now();
        let allow = compile(&policies::program(shape, rules, Tail::Allow));
        let compile_time = started.elapsed();
        let (allow, deny) = match (allow, compile(&policies::program(shape, rules, Tail::Deny))) {
            (Ok(a), Ok(d)) => (a, d),
            (Err(e), _) | (_, Err(e)) => {
                skipped.push(Skipped {
                    shape,
                    rules,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        // A phase holds the policies of every rule count at once.
        let next = Sizes {
            ips: total.ips + deny.ips.len().max(allow.ips.len()),
            ports: total.ports + deny.ports.len().max(allow.ports.len()),
            verdicts: total.verdicts + deny.verdicts.len().max(allow.verdicts.len()),
        };
        let over = [
            ("felix_pip_v1", next.ips, POLICY_IPS_MAX_ENTRIES),
            ("felix_pport_v1", next.ports, POLICY_PORTS_MAX_ENTRIES),
            ("felix_pvd_v1", next.verdicts, POLICY_VERDICTS_MAX_ENTRIES),
        ]
        .into_iter()
        .find(|(_, need, cap)| *need > *cap as usize);
        if let Some((map, need, cap)) = over {
            skipped.push(Skipped {
                shape,
                rules,
                reason: format!(
                    "{} addresses; with the smaller policies it needs {need} entries in {map}, \
                     which holds {cap}",
                    shape.addresses(rules)
                ),
            });
            continue;
        }
        total = next;
        rows.push(Row {
            shape,
            rules,
            compile: compile_time,
            apply: Duration::ZERO,
            sizes: Sizes {
                ips: allow.ips.len(),
                ports: allow.ports.len(),
                verdicts: allow.verdicts.len(),
            },
            rounds: HashMap::new(),
        });
    }
    (rows, skipped)
}

/// A measured policy as programmed: its slot and the counter of its deciding rule.
struct Target {
    slot: u32,
    decider: u32,
}

/// Programs the `tail` policies of every row, measures their cases round-robin, then deletes
/// them again.
fn measure_tail(rig: &mut Rig, settings: &Settings, tail: Tail, rows: &mut [Row]) -> Result<()> {
    let mut targets = Vec::with_capacity(rows.len());
    for row in rows.iter_mut() {
        let group = policies::group(row.shape, row.rules, tail);
        let program = policies::program(row.shape, row.rules, tail);
        let took = rig.program(&HashMap::from([(group.clone(), program)]))?;
        if tail == Tail::Allow {
            row.apply = took;
        }
        let programmed = rig.programmed(&group)?;
        let decider = programmed
            .rule_ids
            .get(policies::deciding_entry(row.rules))
            .copied()
            .context("the deciding rule has no counter")?;
        targets.push(Target {
            slot: programmed.slot,
            decider,
        });
    }
    let cases: Vec<Case> = Case::ALL.into_iter().filter(|c| c.tail() == tail).collect();
    for round in 0..settings.rounds {
        // Rotate the order so that no rule count is always measured first.
        for k in 0..rows.len() {
            let i = (k + round) % rows.len();
            rig.point_endpoint(targets[i].slot)?;
            for hook in Hook::ALL {
                let near = Flow::new(hook, rows[i].shape.peer(rows[i].rules).octets());
                let far = Flow::new(hook, policies::FAR_PEER.octets());
                for &case in &cases {
                    let flow = if case == Case::FirstDeniedFar {
                        &far
                    } else {
                        &near
                    };
                    let ns = measure(rig, settings, flow, case, targets[i].decider)?;
                    rows[i].rounds.entry((hook, case)).or_default().push(ns);
                }
            }
        }
    }
    rig.release_all()
}

/// The measured flow of one hook: its first packet, an established one and its conntrack key.
struct Flow {
    program: &'static str,
    first: Vec<u8>,
    established: Vec<u8>,
    key: CtKey,
}

impl Flow {
    /// Peer `remote` to the pod (`cali_to_wl`), or the pod to `remote` (`cali_from_wl`), TCP
    /// to port [`policies::PORT`].
    fn new(hook: Hook, remote: [u8; 4]) -> Self {
        let (src, dst) = match hook {
            Hook::ToWorkload => (
                Side {
                    addr: remote,
                    port: PEER_PORT,
                },
                Side {
                    addr: POD_IP,
                    port: policies::PORT,
                },
            ),
            Hook::FromWorkload => (
                Side {
                    addr: POD_IP,
                    port: POD_PORT,
                },
                Side {
                    addr: remote,
                    port: policies::PORT,
                },
            ),
        };
        Flow {
            program: hook.program(),
            first: packet::tcp(src, dst, SYN),
            established: packet::tcp(src, dst, ACK),
            key: CtKey::for_packet(src.addr, src.port, dst.addr, dst.port, PROTO_TCP).0,
        }
    }
}

/// One round of `case` on `flow`: ns per packet. `decider` is the counter of the rule that
/// decides the flow's first packet.
fn measure(
    rig: &mut Rig,
    settings: &Settings,
    flow: &Flow,
    case: Case,
    decider: u32,
) -> Result<f64> {
    ensure!(!rig.has_flow(&flow.key)?, "a conntrack entry is left over");
    let before = rig.rule_count(decider)?;
    let (ns, classified) = match case {
        Case::FirstDenied | Case::FirstDeniedFar => {
            let run = rig.run(flow.program, &flow.first, settings.repeat)?;
            expect(flow, run, TC_ACT_SHOT, "a denied first packet")?;
            ensure!(
                !rig.has_flow(&flow.key)?,
                "a denied packet created a conntrack entry"
            );
            (run.ns as f64, u64::from(settings.repeat))
        }
        Case::FirstAllowed => {
            let mut single = Vec::with_capacity(settings.singles as usize);
            for _ in 0..settings.singles {
                let run = rig.run(flow.program, &flow.first, 1)?;
                expect(flow, run, TC_ACT_OK, "an allowed first packet")?;
                rig.remove_flow(&flow.key)?;
                single.push(run.ns as f64);
            }
            (
                median(&single).unwrap_or_default(),
                u64::from(settings.singles),
            )
        }
        Case::Established => {
            let open = rig.run(flow.program, &flow.first, 1)?;
            expect(flow, open, TC_ACT_OK, "an allowed first packet")?;
            let run = rig.run(flow.program, &flow.established, settings.repeat)?;
            expect(flow, run, TC_ACT_OK, "an established packet")?;
            rig.remove_flow(&flow.key)?;
            (run.ns as f64, 1)
        }
    };
    let moved = rig.rule_count(decider)?.saturating_sub(before);
    ensure!(
        moved == classified,
        "{} {case:?}: the deciding rule counted {moved} packets, expected {classified}",
        flow.program
    );
    Ok(ns)
}

/// One round of the established case of `hook` on a rig whose endpoint points at the
/// allow-all policy (0 rules) with the deciding rule's counter `decider`: ns per packet.
pub fn established(rig: &mut Rig, settings: &Settings, hook: Hook, decider: u32) -> Result<f64> {
    let flow = Flow::new(hook, Shape::Cidr.peer(0).octets());
    measure(rig, settings, &flow, Case::Established, decider)
}

/// The empty baseline: a program of two instructions run on `cali_to_wl`'s established frame,
/// `settings.rounds` rounds of `settings.repeat` runs (needs the same private namespace as
/// [`run`]); ns per packet of each round.
pub fn empty_baseline(settings: &Settings) -> Result<Vec<f64>> {
    let program = EmptyProgram::load().context("load the empty program")?;
    (0..settings.rounds)
        .map(|_| empty_round(&program, settings.repeat))
        .collect()
}

/// One round of the empty baseline: `repeat` runs of `program` on the frame of [`empty_baseline`];
/// ns per packet.
pub fn empty_round(program: &EmptyProgram, repeat: u32) -> Result<f64> {
    let flow = Flow::new(Hook::ToWorkload, Shape::Cidr.peer(0).octets());
    Ok(program.run(&flow.established, repeat)? as f64)
}

/// Checks that `run` of `flow` returned `verdict` for `what`.
fn expect(flow: &Flow, run: Run, verdict: u32, what: &str) -> Result<()> {
    ensure!(
        run.verdict == verdict,
        "{}: verdict {} for {what}, expected {verdict}",
        flow.program,
        run.verdict
    );
    Ok(())
}
