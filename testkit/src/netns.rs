//! Network namespaces for tests: a private one for the calling thread ([`unshare_thread`]), a
//! named one removed on drop ([`NetNs`]), and entering a named one until a guard drops
//! ([`enter`]).
//!
//! `unshare(CLONE_NEWNET)` and `setns` move only the calling thread; a process spawned from
//! that thread starts in the thread's namespace.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where `ip netns add` puts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// What went wrong with a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("unshare(CLONE_NEWNET): {0}")]
    Unshare(io::Error),
    #[error("open {what}: {source}")]
    Open { what: String, source: io::Error },
    #[error("setns: {0}")]
    Setns(io::Error),
    #[error("running ip: {0}")]
    Spawn(io::Error),
    #[error("ip {args}: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("no interface {0}")]
    NoInterface(String),
}

/// `ip ARGS...`, checked; stdout on success, stderr in the error.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(NetnsError::Spawn)?;
    if !out.status.success() {
        return Err(NetnsError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Moves the calling thread into a new, unnamed network namespace; it disappears with the
/// thread (or process), and everything in it.
pub fn unshare_thread() -> Result<(), NetnsError> {
    // SAFETY: plain syscall; it affects only the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Unshare(io::Error::last_os_error()));
    }
    Ok(())
}

/// The ifindex of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> Result<u32, NetnsError> {
    let c_name = CString::new(name).map_err(|_| NetnsError::NoInterface(name.to_owned()))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(NetnsError::NoInterface(name.to_owned())),
        index => Ok(index),
    }
}

/// Deletes namespace `name` if it exists, saying nothing (leftovers of a killed run).
pub fn delete_quietly(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// A named network namespace with `lo` up, deleted on drop (with the interfaces in it).
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates namespace `name` (deleting a leftover of that name first) and sets `lo` up.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        delete_quietly(name);
        ip(&["netns", "add", name])?;
        // From here on drop deletes it, whatever fails next.
        let ns = Self {
            name: name.to_owned(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<Entered, NetnsError> {
        enter(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if Path::new(NETNS_DIR).join(&self.name).exists() {
            delete_quietly(&self.name);
        }
    }
}

fn setns(file: &File) -> Result<(), NetnsError> {
    // SAFETY: setns on an open namespace fd; it affects only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Setns(io::Error::last_os_error()));
    }
    Ok(())
}

fn open(path: String) -> Result<File, NetnsError> {
    File::open(&path).map_err(|source| NetnsError::Open { what: path, source })
}

/// Moves the calling thread into named namespace `name` until the guard drops (then back to
/// the namespace it was in).
pub fn enter(name: &str) -> Result<Entered, NetnsError> {
    let original = open("/proc/thread-self/ns/net".to_owned())?;
    let target = open(format!("{NETNS_DIR}/{name}"))?;
    setns(&target)?;
    Ok(Entered { original })
}

/// The calling thread is in another namespace until this drops.
#[derive(Debug)]
#[must_use = "the thread goes back to its namespace when this drops"]
pub struct Entered {
    original: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original) {
            eprintln!("warning: back to the original netns: {e}");
        }
    }
}
