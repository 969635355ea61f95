//! The lab's own life cycle: a lab left behind by a crashed run is cleaned by the next one.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use lab::{Lab, LabOptions, LabState, state};

use crate::support::assert_gone;

fn lab_ids() -> BTreeSet<String> {
    state::list().into_iter().map(|(id, _)| id).collect()
}

/// A lab left behind by a crashed run (`lab up` from another process, then its felix killed -9)
/// is cleaned by the next `Lab::up`.
#[test]
fn stale_lab_is_cleaned_by_next_up() -> Result<()> {
    let before = lab_ids();
    let out = Command::new(lab::paths::xtask_bin())
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
    let stale = LabState::load(&lab::paths::state_dir(stale_id))?;
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
