//! Per-interface settings Calico applies to every `cali*` interface: proxy ARP (the pod's
//! gateway 169.254.1.1 is answered by the host) without delay, forwarding, and strict reverse-path
//! filtering (a pod only sends from its own /32, routed back through the same interface).

use std::{fs, io, path::PathBuf};

/// The settings, as (path under /proc/sys/net/ipv4, value).
fn settings(iface: &str) -> [(String, &'static str); 4] {
    [
        (format!("conf/{iface}/proxy_arp"), "1"),
        (format!("neigh/{iface}/proxy_delay"), "0"),
        (format!("conf/{iface}/forwarding"), "1"),
        (format!("conf/{iface}/rp_filter"), "1"),
    ]
}

/// Errors writing a setting.
#[derive(Debug, thiserror::Error)]
#[error("set {path}: {source}")]
pub struct SysctlError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Applies the settings to `iface` in this process's network namespace (values already right
/// are not rewritten).
pub fn apply(iface: &str) -> Result<(), SysctlError> {
    for (relative, value) in settings(iface) {
        let path = PathBuf::from("/proc/sys/net/ipv4").join(relative);
        if fs::read_to_string(&path).is_ok_and(|current| current.trim() == value) {
            continue;
        }
        fs::write(&path, value).map_err(|source| SysctlError {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_interface() {
        let all = settings("cali0123456789a");
        assert!(
            all.iter()
                .all(|(path, _)| path.contains("/cali0123456789a/"))
        );
        assert_eq!(all[0], ("conf/cali0123456789a/proxy_arp".to_owned(), "1"));
    }
}
