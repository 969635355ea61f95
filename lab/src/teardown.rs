//! Best-effort, complete teardown: every step runs even after another failed, and problems are
//! reported. Finds labs by state file, and also by leftovers without one (namespaces and pin
//! folders named `fx????-*`).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::paths;
use crate::state::{self, LabState};
use crate::{names, net, proc};

const GRACE: Duration = Duration::from_secs(5);

/// Which labs to tear down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every lab (`lab down`).
    All,
    /// Every lab except those whose owner process still runs (another demo or test using it).
    Unowned,
}

/// What a teardown did.
#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<String>,
    pub skipped: Vec<String>,
    pub problems: Vec<String>,
}

impl Report {
    /// Prints what happened (problems to stderr).
    pub fn print(&self, what: &str) {
        for id in &self.removed {
            println!("{what}: removed lab {id}");
        }
        for id in &self.skipped {
            println!("{what}: left lab {id} alone (its owner process still runs)");
        }
        for p in &self.problems {
            eprintln!("{what}: problem: {p}");
        }
    }
}

/// Tears down the labs in `scope`.
pub fn teardown_labs(scope: Scope) -> Report {
    let mut report = Report::default();
    let mut labs: BTreeMap<String, Option<LabState>> = BTreeMap::new();
    for (id, st) in state::list() {
        match st {
            Ok(st) => {
                labs.insert(id, Some(st));
            }
            Err(e) => {
                report.problems.push(format!(
                    "lab {id}: unreadable state ({e:#}); cleaning by name"
                ));
                labs.insert(id, None);
            }
        }
    }
    match net::list_netns() {
        Ok(all) => {
            for ns in all {
                if let Some(id) = names::id_of(&ns) {
                    labs.entry(id.to_owned()).or_insert(None);
                }
            }
        }
        Err(e) => report.problems.push(format!("listing namespaces: {e:#}")),
    }
    for dir in dirs_named_like_labs(paths::PIN_ROOT)
        .into_iter()
        .chain(dirs_named_like_labs(paths::FELIX_RUN_ROOT))
    {
        if let Some(id) = dir
            .file_name()
            .and_then(|n| names::id_of(&n.to_string_lossy()).map(str::to_owned))
        {
            labs.entry(id).or_insert(None);
        }
    }
    for (id, st) in labs {
        let owned_by_live = st.as_ref().and_then(|s| s.owner).is_some_and(|o| o.alive());
        if scope == Scope::Unowned && owned_by_live {
            report.skipped.push(id);
            continue;
        }
        report.problems.extend(teardown_one(&id, st.as_ref()));
        report.removed.push(id);
    }
    report
}

/// Folders under `root` named `<lab id>-...`.
fn dirs_named_like_labs(root: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| names::id_of(&e.file_name().to_string_lossy()).is_some())
        .map(|e| e.path())
        .collect()
}

/// Tears down lab `id`: its processes, namespaces, pin folders and state folder. Returns problems.
pub fn teardown_one(id: &str, state: Option<&LabState>) -> Vec<String> {
    let mut problems = Vec::new();

    // 1. The daemons we recorded, only if each is still the process we started.
    if let Some(st) = state {
        let ours: Vec<i32> = st
            .processes
            .iter()
            .filter(|p| p.is_ours_and_running())
            .map(|p| p.pid)
            .collect();
        problems.extend(
            proc::terminate(&ours, GRACE)
                .into_iter()
                .map(|p| format!("lab {id}: {p}")),
        );
    }

    // 2. Anything else still inside our namespaces (ours by construction).
    let present: Vec<String> = match net::list_netns() {
        Ok(all) => all
            .into_iter()
            .filter(|ns| names::id_of(ns) == Some(id))
            .collect(),
        Err(e) => {
            problems.push(format!("lab {id}: listing namespaces: {e:#}"));
            Vec::new()
        }
    };
    let mut in_ns = Vec::new();
    for ns in &present {
        match net::ns_pids(ns) {
            Ok(pids) => in_ns.extend(pids),
            Err(e) => problems.push(format!("lab {id}: pids in {ns}: {e:#}")),
        }
    }
    problems.extend(
        proc::terminate(&in_ns, GRACE)
            .into_iter()
            .map(|p| format!("lab {id}: {p}")),
    );

    // 3. Namespaces (their links go with them).
    for ns in &present {
        if let Err(e) = net::del_netns(ns) {
            problems.push(format!("lab {id}: {e:#}"));
        }
    }

    // 4. felix pin folders and run folders of the lab's nodes.
    let mut dirs: Vec<PathBuf> = state
        .map(|s| s.pin_dirs.iter().chain(&s.run_dirs).cloned().collect())
        .unwrap_or_default();
    dirs.extend(dirs_of_lab(id));
    dirs.sort();
    dirs.dedup();
    for dir in dirs.iter().filter(|d| d.exists()) {
        if let Err(e) = fs::remove_dir_all(dir) {
            problems.push(format!("lab {id}: removing {}: {e}", dir.display()));
        }
    }

    // 5. The state folder (state file, logs, etcd data).
    let dir = paths::state_dir(id);
    if dir.exists()
        && let Err(e) = fs::remove_dir_all(&dir)
    {
        problems.push(format!("lab {id}: removing {}: {e}", dir.display()));
    }

    // 6. The shared roots, once nothing is left in them (`remove_dir` refuses a non-empty
    // folder, so another lab's or a real felix's state is never touched).
    for root in [paths::PIN_ROOT, paths::FELIX_RUN_ROOT, paths::STATE_ROOT] {
        let _ = fs::remove_dir(root);
    }
    problems
}

/// What is left of lab `id`: namespaces, still-running recorded processes, pin folders, state.
/// Empty after a complete teardown.
pub fn leftovers(id: &str, processes: &[proc::ProcRecord]) -> Vec<String> {
    let mut left = Vec::new();
    match net::list_netns() {
        Ok(all) => left.extend(
            all.into_iter()
                .filter(|ns| names::id_of(ns) == Some(id))
                .map(|ns| format!("namespace {ns}")),
        ),
        Err(e) => left.push(format!("cannot list namespaces: {e:#}")),
    }
    left.extend(
        processes
            .iter()
            .filter(|p| p.is_ours_and_running())
            .map(|p| format!("{} (pid {})", p.what, p.pid)),
    );
    left.extend(
        dirs_of_lab(id)
            .into_iter()
            .map(|d| format!("folder {}", d.display())),
    );
    let dir = paths::state_dir(id);
    if dir.exists() {
        left.push(format!("state folder {}", dir.display()));
    }
    left
}

/// felix pin and run folders of lab `id`'s nodes (`<id>-hN`).
fn dirs_of_lab(id: &str) -> Vec<PathBuf> {
    [paths::PIN_ROOT, paths::FELIX_RUN_ROOT]
        .into_iter()
        .flat_map(dirs_named_like_labs)
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| names::id_of(&n.to_string_lossy()) == Some(id))
        })
        .collect()
}
