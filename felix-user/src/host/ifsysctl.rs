//! Per-interface settings Calico applies to every `cali*` interface: proxy ARP (the pod's
//! gateway 169.254.1.1 is answered by the host) without delay, forwarding, and strict reverse-path
//! filtering (a pod only sends from its own /32, routed back through the same interface). In
//! iptables mode the kernel forwards pod traffic, so the host and its uplink forward too
//! ([`apply_forwarding`]).

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

/// The host's forwarding settings for iptables mode.
fn forwarding(uplink: &str) -> [(String, &'static str); 2] {
    [
        ("ip_forward".to_owned(), "1"),
        (format!("conf/{uplink}/forwarding"), "1"),
    ]
}

/// Applies the settings to `iface` in this process's network namespace (values already right
/// are not rewritten).
pub fn apply(iface: &str) -> Result<(), SysctlError> {
    write(settings(iface))
}

/// Turns on IPv4 forwarding for the host and its `uplink` (iptables mode: the kernel routes
/// between the uplink and `cali*`), in this process's network namespace.
pub fn apply_forwarding(uplink: &str) -> Result<(), SysctlError> {
    write(forwarding(uplink))
}

fn write(settings: impl IntoIterator<Item = (String, &'static str)>) -> Result<(), SysctlError> {
    for (relative, value) in settings {
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
        assert_eq!(
            forwarding("eth0"),
            [
                ("ip_forward".to_owned(), "1"),
                ("conf/eth0/forwarding".to_owned(), "1")
            ]
        );
    }
}
