//! Where things live: the repository, the project-local tools, the felix binary, lab state, pins.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Root of the lab state tree: one `<id>/` folder per lab, holding `state.json`, logs and etcd data.
pub const STATE_ROOT: &str = "/run/felix-lab";
/// felix's app-owned bpffs tree: one `<node>/` folder per felix instance.
pub const PIN_ROOT: &str = "/sys/fs/bpf/felix";
/// felix's run files (pid files): one `<node>/` folder per felix instance.
pub const FELIX_RUN_ROOT: &str = "/run/felix";
/// Environment variable naming another felix binary for the lab (default: the release build).
pub const FELIX_ENV: &str = "XTASK_FELIX";
/// Environment variable naming another bird-conf binary for the lab.
pub const BIRD_CONF_ENV: &str = "XTASK_BIRD_CONF";
/// Environment variable naming the xtask binary, for lab tests that run `xtask lab up` in a
/// process of their own (`cargo xtask test --tier lab` sets it).
pub const XTASK_BIN_ENV: &str = "XTASK_BIN";

/// The workspace root (the parent of this crate's folder).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Project-local install root for tools (`cargo install --root`).
pub fn tools_dir() -> PathBuf {
    repo_root().join(".tools")
}

/// The bpf-linker that felix-user's build.rs uses.
pub fn bpf_linker() -> PathBuf {
    tools_dir().join("bin").join("bpf-linker")
}

/// The felix binary the lab runs: `$XTASK_FELIX` if set, else `target/release/felix`.
pub fn felix_bin() -> PathBuf {
    match std::env::var_os(FELIX_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => repo_root().join("target").join("release").join("felix"),
    }
}

/// The bird-conf binary the lab runs: `$XTASK_BIRD_CONF` if set, else `target/release/bird-conf`.
pub fn bird_conf_bin() -> PathBuf {
    match std::env::var_os(BIRD_CONF_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => repo_root().join("target").join("release").join("bird-conf"),
    }
}

/// The xtask binary: `$XTASK_BIN` if set, else `target/release/xtask`.
pub fn xtask_bin() -> PathBuf {
    match std::env::var_os(XTASK_BIN_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => repo_root().join("target").join("release").join("xtask"),
    }
}

/// The cargo that runs us (`$CARGO` under `cargo run`), else `cargo` from PATH.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// The state folder of lab `id`.
pub fn state_dir(id: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(id)
}

/// The pin folder of felix on `node`.
pub fn pin_dir(node: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(node)
}

/// The run folder (pid file) of felix on `node`.
pub fn felix_run_dir(node: &str) -> PathBuf {
    Path::new(FELIX_RUN_ROOT).join(node)
}
