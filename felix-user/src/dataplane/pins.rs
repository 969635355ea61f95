//! The app-owned pin tree: `/sys/fs/bpf/felix/<node>/<map>`, one per felix instance, plus the
//! pid file that tells whether that instance is running.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// Default root of felix's pin trees.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/felix";
/// Default directory of felix's run files (pid files).
pub const DEFAULT_RUN_ROOT: &str = "/run/felix";

/// Errors locating a node's pinned state.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The node name would escape the pin root or is not a valid file name.
    #[error("invalid node name {node:?}: use letters, digits, '-', '_' or '.'")]
    InvalidNode { node: String },
    /// No pinned state exists for the node.
    #[error("no felix state for node {node:?} under {root}; known nodes: {known}")]
    UnknownNode {
        node: String,
        root: PathBuf,
        known: String,
    },
    /// `--node` was not given and there is not exactly one node to pick.
    #[error("{0}")]
    Ambiguous(String),
    /// The pin root is not on a bpffs mount.
    #[error(
        "{path} is not on a bpf file system: mount one (`mount -t bpf bpf /sys/fs/bpf`); \
         inside `ip netns exec`, which remounts /sys, enter only the network namespace instead \
         (`nsenter --net=/run/netns/NAME felix ...`)"
    )]
    NotBpffs { path: PathBuf },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where one node's felix keeps its pins and run files.
#[derive(Clone, Debug)]
pub struct NodePaths {
    node: String,
    pin_dir: PathBuf,
    run_dir: PathBuf,
}

impl NodePaths {
    /// Paths for `node` under the given roots; rejects names that are not plain file names.
    pub fn new(pin_root: &Path, run_root: &Path, node: &str) -> Result<Self, PinError> {
        let valid = !node.is_empty()
            && node != "."
            && node != ".."
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(PinError::InvalidNode { node: node.into() });
        }
        Ok(Self {
            node: node.into(),
            pin_dir: pin_root.join(node),
            run_dir: run_root.join(node),
        })
    }

    /// The node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Directory holding this node's pinned maps.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Directory holding this node's pinned TCX/XDP links.
    pub fn links_dir(&self) -> PathBuf {
        self.pin_dir.join("links")
    }

    /// Pin path of the map called `name`.
    pub fn map(&self, name: &str) -> PathBuf {
        self.pin_dir.join(name)
    }

    /// The pid file of this node's running felix.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("felix.pid")
    }

    /// What felix last programmed as policy (`felix bpf policy dump` reads it).
    pub fn policy_state_file(&self) -> PathBuf {
        self.run_dir.join("policy.json")
    }

    /// The rule counter ids of this node's felix.
    pub fn rule_ids_file(&self) -> PathBuf {
        self.run_dir.join("rule-ids.json")
    }

    /// Creates the pin and run directories; the pin directory must be on a bpffs mount.
    pub fn create(&self) -> Result<(), PinError> {
        if let Some(root) = self.pin_dir.parent() {
            ensure_bpffs(root)?;
        }
        for dir in [&self.pin_dir, &self.links_dir(), &self.run_dir] {
            create_dir(dir)?;
        }
        Ok(())
    }

    /// Creates the run directory only (iptables mode has no pin tree).
    pub fn create_run_dir(&self) -> Result<(), PinError> {
        create_dir(&self.run_dir)
    }

    /// Removes this node's BPF dataplane: its pin tree (unpinning a TCX or XDP link detaches
    /// its program; the maps go with their last user) and the policy files of its run
    /// directory. Whether there was a pin tree.
    pub fn remove_dataplane(&self) -> Result<bool, PinError> {
        for file in [self.policy_state_file(), self.rule_ids_file()] {
            let _ = fs::remove_file(file);
        }
        if !self.exists() {
            return Ok(false);
        }
        fs::remove_dir_all(&self.pin_dir).map_err(|source| PinError::Io {
            op: "remove",
            path: self.pin_dir.clone(),
            source,
        })?;
        Ok(true)
    }

    /// Records `pid` as this node's running felix.
    pub fn write_pid(&self, pid: u32) -> Result<(), PinError> {
        let path = self.pid_file();
        fs::write(&path, format!("{pid}\n")).map_err(|source| PinError::Io {
            op: "write",
            path,
            source,
        })
    }

    /// Removes the pid file if it still names `pid` (a newer felix may have replaced it).
    pub fn remove_pid(&self, pid: u32) {
        if self.recorded_pid() == Some(pid) {
            let _ = fs::remove_file(self.pid_file());
        }
    }

    /// The pid recorded in the pid file, if any.
    pub fn recorded_pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// The pid of this node's felix if that process is alive and is a felix. A killed felix
    /// whose parent has not reaped it yet (a zombie) is not running.
    pub fn running_pid(&self) -> Option<u32> {
        let pid = self.recorded_pid()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let alive = !matches!(process_state(&stat), Some('Z' | 'X'));
        (comm.trim() == "felix" && alive).then_some(pid)
    }

    /// Whether this node has a pin directory.
    pub fn exists(&self) -> bool {
        self.pin_dir.is_dir()
    }
}

fn create_dir(dir: &Path) -> Result<(), PinError> {
    fs::create_dir_all(dir).map_err(|source| PinError::Io {
        op: "create",
        path: dir.to_path_buf(),
        source,
    })
}

/// `f_type` of a bpf file system (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Checks that `path` (or its nearest existing ancestor) lives on a bpffs mount.
pub fn ensure_bpffs(path: &Path) -> Result<(), PinError> {
    use std::os::unix::ffi::OsStrExt as _;

    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let not_bpffs = || PinError::NotBpffs {
        path: path.to_path_buf(),
    };
    let c_path =
        std::ffi::CString::new(existing.as_os_str().as_bytes()).map_err(|_| not_bpffs())?;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid out-pointer for statfs.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(PinError::Io {
            op: "statfs",
            path: existing.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: statfs succeeded and filled the struct.
    let f_type = unsafe { stat.assume_init() }.f_type;
    #[allow(
        clippy::useless_conversion,
        reason = "f_type is i64 on x86_64 glibc but narrower elsewhere"
    )]
    if i64::from(f_type) == BPF_FS_MAGIC {
        Ok(())
    } else {
        Err(not_bpffs())
    }
}

/// The state letter of a `/proc/<pid>/stat` line (the field after the parenthesised name).
fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Nodes that have a pin tree under `pin_root`, sorted.
pub fn known_nodes(pin_root: &Path) -> Vec<String> {
    let mut nodes: Vec<String> = fs::read_dir(pin_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    nodes.sort();
    nodes
}

/// Resolves the node a CLI command reads: the one given, or the only one present.
pub fn resolve_node(
    pin_root: &Path,
    run_root: &Path,
    node: Option<&str>,
) -> Result<NodePaths, PinError> {
    let known = known_nodes(pin_root);
    let name = match node {
        Some(name) => name.to_owned(),
        None => match known.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(PinError::Ambiguous(format!(
                    "no felix state under {}: is `felix run` running on this host?",
                    pin_root.display()
                )));
            }
            many => {
                return Err(PinError::Ambiguous(format!(
                    "several nodes under {}: pass --node with one of {}",
                    pin_root.display(),
                    many.join(", ")
                )));
            }
        },
    };
    let paths = NodePaths::new(pin_root, run_root, &name)?;
    if !paths.exists() {
        return Err(PinError::UnknownNode {
            node: name,
            root: pin_root.to_path_buf(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    Ok(paths)
}

/// Whether `name` looks like one of felix's versioned map pins (`felix_<what>_v<N>`).
pub fn is_versioned_map_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("felix_") else {
        return false;
    };
    match rest.rsplit_once("_v") {
        Some((what, version)) => {
            !what.is_empty()
                && what
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Removes map pins of `paths`' node that a previous felix version used and this one does not
/// (a layout change gives a map a new versioned name; see `felix_common::maps`). Call it once
/// this felix's programs are attached, so that nothing uses the old maps any more: the kernel
/// frees them with their last reference. Returns the names removed.
pub fn retire_superseded_maps(paths: &NodePaths, current: &[&str]) -> Vec<String> {
    let Ok(entries) = fs::read_dir(paths.pin_dir()) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file
            && is_versioned_map_name(&name)
            && !current.contains(&name.as_str())
            && fs::remove_file(entry.path()).is_ok()
        {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("felix-pins-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn node_names_that_escape_the_root_are_rejected() {
        let root = Path::new("/nonexistent");
        for bad in ["", ".", "..", "a/b", "../x", "h 1"] {
            assert!(NodePaths::new(root, root, bad).is_err(), "{bad:?} accepted");
        }
        let ok = NodePaths::new(root, root, "fx12-h1").unwrap();
        assert_eq!(
            ok.map("felix_cnt_v1"),
            Path::new("/nonexistent/fx12-h1/felix_cnt_v1")
        );
    }

    #[test]
    fn resolve_picks_the_only_node_and_refuses_ambiguity() {
        let pins = temp_root("resolve");
        let run = pins.join("run");
        assert!(matches!(
            resolve_node(&pins.join("none"), &run, None),
            Err(PinError::Ambiguous(_))
        ));
        fs::create_dir_all(pins.join("h1")).unwrap();
        assert_eq!(resolve_node(&pins, &run, None).unwrap().node(), "h1");
        fs::create_dir_all(pins.join("h2")).unwrap();
        let err = resolve_node(&pins, &run, None).unwrap_err().to_string();
        assert!(err.contains("h1, h2"), "{err}");
        let err = resolve_node(&pins, &run, Some("h9"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("known nodes: h1, h2"), "{err}");
        fs::remove_dir_all(&pins).unwrap();
    }

    #[test]
    fn process_state_is_read_after_the_name() {
        assert_eq!(process_state("42 (felix) S 1 42"), Some('S'));
        assert_eq!(process_state("42 (a) b) Z 1 42"), Some('Z'));
        assert_eq!(process_state("garbage"), None);
    }

    #[test]
    fn a_temp_dir_is_not_bpffs() {
        let err = ensure_bpffs(&std::env::temp_dir()).unwrap_err();
        assert!(matches!(err, PinError::NotBpffs { .. }), "{err}");
        assert!(err.to_string().contains("nsenter --net"));
    }

    #[test]
    fn pid_file_round_trip_and_liveness() {
        let root = temp_root("pid");
        let paths = NodePaths::new(&root, &root.join("run"), "h1").unwrap();
        fs::create_dir_all(root.join("run/h1")).unwrap();
        assert_eq!(paths.running_pid(), None);
        paths.write_pid(std::process::id()).unwrap();
        assert_eq!(paths.recorded_pid(), Some(std::process::id()));
        // The test binary is not called "felix", so it does not count as a running felix.
        assert_eq!(paths.running_pid(), None);
        paths.remove_pid(std::process::id());
        assert_eq!(paths.recorded_pid(), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn removing_the_dataplane_takes_the_pin_tree_and_policy_files() {
        let root = temp_root("remove");
        let paths = NodePaths::new(&root, &root.join("run"), "h1").unwrap();
        assert!(!paths.remove_dataplane().unwrap(), "nothing there");
        fs::create_dir_all(paths.links_dir()).unwrap();
        paths.create_run_dir().unwrap();
        fs::write(paths.map("felix_ep_v1"), b"").unwrap();
        fs::write(paths.policy_state_file(), b"{}").unwrap();
        paths.write_pid(1).unwrap();
        assert!(paths.remove_dataplane().unwrap());
        assert!(!paths.exists());
        assert!(!paths.policy_state_file().exists());
        assert_eq!(paths.recorded_pid(), Some(1), "the pid file stays");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn versioned_map_names_are_recognised() {
        for name in ["felix_ep_v1", "felix_pslot_v12", "felix_ct_v1"] {
            assert!(is_versioned_map_name(name), "{name}");
        }
        for name in [
            "links",
            "felix_v1",
            "felix_ep_v",
            "felix_ep_vx",
            "other_ep_v1",
            "felix_Ep_v1",
        ] {
            assert!(!is_versioned_map_name(name), "{name}");
        }
    }

    #[test]
    fn superseded_map_pins_are_retired_and_current_ones_kept() {
        let root = temp_root("retire");
        let paths = NodePaths::new(&root, &root.join("run"), "n1").unwrap();
        fs::create_dir_all(paths.links_dir()).unwrap();
        for name in ["felix_ep_v1", "felix_ep_v2", "felix_cnt_v1", "notes"] {
            fs::write(paths.map(name), b"").unwrap();
        }
        let removed = retire_superseded_maps(&paths, &["felix_ep_v2", "felix_cnt_v1"]);
        assert_eq!(removed, vec!["felix_ep_v1".to_string()]);
        assert!(paths.map("felix_ep_v2").exists());
        assert!(paths.map("notes").exists(), "not felix's: left alone");
        assert!(paths.links_dir().is_dir());
        fs::remove_dir_all(&root).unwrap();
    }
}
