//! Network namespaces named by path (`/run/netns/<name>`, `/proc/<pid>/ns/net`), and running a
//! closure with the calling thread inside one. felix-cni opens its pod-side netlink socket that
//! way: a socket stays in the namespace it was created in, so everything after that is
//! ordinary async netlink from the plugin's own namespace.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
};

/// Errors opening or entering a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetNsError {
    #[error("open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("enter {path}: {source}")]
    Enter { path: PathBuf, source: io::Error },
    #[error("return to the plugin's own network namespace: {0}")]
    Restore(io::Error),
}

impl NetNsError {
    /// Whether the namespace does not exist (any more): nothing is left to clean up in it.
    pub fn is_gone(&self) -> bool {
        matches!(self, NetNsError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

fn setns(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd; it changes only the calling thread's namespace.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl NetNs {
    /// Opens the namespace at `path`.
    pub fn open(path: &Path) -> Result<Self, NetNsError> {
        let file = File::open(path).map_err(|source| NetNsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The namespace's fd (for `IFLA_NET_NS_FD`).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` with the calling thread in this namespace, then moves it back. `f` must not
    /// yield to other tasks (it is synchronous, so it cannot).
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetNsError> {
        let own = File::open("/proc/thread-self/ns/net").map_err(|source| NetNsError::Open {
            path: "/proc/thread-self/ns/net".into(),
            source,
        })?;
        setns(self.fd()).map_err(|source| NetNsError::Enter {
            path: self.path.clone(),
            source,
        })?;
        let out = f();
        setns(own.as_raw_fd()).map_err(NetNsError::Restore)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_gone() {
        let e = NetNs::open(Path::new("/run/netns/felix-cni-no-such-ns")).unwrap_err();
        assert!(e.is_gone(), "{e}");
        assert!(e.to_string().contains("felix-cni-no-such-ns"));
    }

    #[test]
    fn a_regular_file_is_not_a_namespace() {
        let ns = NetNs::open(Path::new("/proc/self/status")).unwrap();
        let e = ns.run(|| ()).unwrap_err();
        assert!(matches!(e, NetNsError::Enter { .. }), "{e}");
    }
}
