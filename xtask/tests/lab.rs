//! Lab tests: a real two-host lab (namespaces, etcd, felix) on this machine. Root only; run with
//! `cargo xtask test --tier lab` (which builds felix first).
#![cfg(feature = "lab-tests")]

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use xtask::felix;
use xtask::lab::{Lab, LabOptions, LabState, proc, state, teardown};

const PINGS: u32 = 3;

fn lab_ids() -> BTreeSet<String> {
    state::list().into_iter().map(|(id, _)| id).collect()
}

fn assert_gone(id: &str, processes: &[proc::ProcRecord]) {
    let left = teardown::leftovers(id, processes);
    assert!(left.is_empty(), "lab {id} left behind: {left:?}");
}

#[test]
fn same_host_pods_talk_and_counters_grow() -> Result<()> {
    let lab = Lab::up(LabOptions::default())?;
    let node = lab.node(1);
    let p1 = lab.pod(1, 1)?.clone();
    let p2 = lab.pod(1, 2)?.clone();

    let before = felix::counters(lab.felix_bin(), &node)?;
    let (stats, text) = lab.ping(&p1, p2.ip, PINGS)?;
    assert_eq!(stats.transmitted, PINGS, "{text}");
    assert_eq!(
        stats.received, PINGS,
        "ping {} -> {} lost packets:\n{text}",
        p1.name, p2.name
    );
    let report = lab.tcp_exchange(&p1, &p2)?;
    assert!(
        report.contains("receiver"),
        "no iperf3 receiver summary:\n{report}"
    );
    let after = felix::counters(lab.felix_bin(), &node)?;

    // Requests leave p1 through its cali, replies leave p2 through its own.
    for (pod, what) in [(&p1, "echo requests"), (&p2, "echo replies")] {
        let grew = after
            .packets(&pod.cali, "from_workload")
            .saturating_sub(before.packets(&pod.cali, "from_workload"));
        assert!(
            grew >= u64::from(PINGS),
            "from_workload on {} ({}) grew by {grew}, expected >= {PINGS} {what}; after: {after:?}",
            pod.cali,
            pod.name
        );
    }

    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    ensure!(
        processes.len() == 3,
        "expected etcd + 2 felix, got {processes:?}"
    );
    lab.teardown()?;
    assert_gone(&id, &processes);
    Ok(())
}

/// A lab left behind by a crashed run (`lab up` from another process, then its felix killed -9)
/// is cleaned by the next `Lab::up`.
#[test]
fn stale_lab_is_cleaned_by_next_up() -> Result<()> {
    let before = lab_ids();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lab", "up", "--no-build"])
        .output()
        .context("running xtask lab up")?;
    ensure!(
        out.status.success(),
        "xtask lab up failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let new: Vec<String> = lab_ids().difference(&before).cloned().collect();
    ensure!(new.len() == 1, "expected one new lab, found {new:?}");
    let stale_id = &new[0];
    let stale = LabState::load(&xtask::paths::state_dir(stale_id))?;
    ensure!(stale.owner.is_none(), "a `lab up` lab has no owner");
    // The crash: felix dies without cleaning up.
    for p in stale
        .processes
        .iter()
        .filter(|p| p.what.starts_with("felix"))
    {
        ensure!(
            p.is_ours_and_running(),
            "{} should run before the crash",
            p.what
        );
        let status = Command::new("kill")
            .args(["-9", &p.pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -9 {}", p.pid);
    }

    let lab = Lab::up(LabOptions::default())?;
    assert_ne!(lab.id(), stale_id.as_str());
    assert_gone(stale_id, &stale.processes);

    let (stats, text) = lab.ping(lab.pod(1, 1)?, lab.pod(1, 2)?.ip, 1)?;
    assert_eq!(
        stats.received, 1,
        "new lab works after the cleanup:\n{text}"
    );
    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    drop(lab); // the guard tears down
    assert_gone(&id, &processes);
    Ok(())
}
