//! The pod's MTU, in Calico's order: the configuration's `mtu` when set (non-zero); else the
//! MTU Calico's node wrote to [`MTU_FILE`]; else detected as felix does it: the smallest MTU of
//! the host's uplinks (interfaces with a global IPv4 address, Calico's own excepted), less the
//! IPIP header when an IPv4 pool encapsulates; else [`DEFAULT_MTU`].

use std::{io, path::Path};

use crate::{dataplane::Netlink, error::CniError, ipam::PoolEntry};

/// Where Calico's node writes the MTU it detected for pods.
pub const MTU_FILE: &str = "/var/lib/calico/mtu";
/// Pod MTU when nothing else tells: room for the IPIP header under a 1500 uplink.
pub const DEFAULT_MTU: u32 = 1480;
/// Bytes the outer IPIP header takes.
pub const IPIP_OVERHEAD: u32 = 20;
/// Interfaces Calico makes itself: never an uplink.
const CALICO_PREFIXES: [&str; 3] = ["cali", "tunl", "vxlan.calico"];

/// The pod MTU from what is known: the configured one, [`MTU_FILE`]'s, the uplinks' (name,
/// MTU) and whether a pool encapsulates with IPIP.
pub fn choose(
    configured: Option<u32>,
    from_file: Option<u32>,
    uplinks: &[(String, u32)],
    ipip: bool,
) -> u32 {
    if let Some(mtu) = configured.or(from_file) {
        return mtu;
    }
    let smallest = uplinks
        .iter()
        .filter(|(name, _)| !CALICO_PREFIXES.iter().any(|p| name.starts_with(p)))
        .map(|&(_, mtu)| mtu)
        .filter(|&mtu| mtu > IPIP_OVERHEAD)
        .min();
    match smallest {
        Some(mtu) if ipip => mtu - IPIP_OVERHEAD,
        Some(mtu) => mtu,
        None => DEFAULT_MTU,
    }
}

/// [`MTU_FILE`]'s value: `None` when the file is missing or holds 0 (Calico's reading).
pub fn read_mtu_file(path: &Path) -> Result<Option<u32>, CniError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CniError::plugin(format!("reading {}", path.display())).details(e));
        }
    };
    match text.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(mtu) => Ok(Some(mtu)),
        Err(e) => Err(CniError::plugin(format!(
            "{} holds {:?}, not an MTU: {e}",
            path.display(),
            text.trim()
        ))),
    }
}

/// The MTU for a pod's veth on this host, given every IPv4 pool in etcd.
pub async fn pod_mtu(
    configured: Option<u32>,
    host: &Netlink,
    pools: &[PoolEntry],
) -> Result<u32, CniError> {
    if let Some(mtu) = configured {
        return Ok(mtu);
    }
    let from_file = read_mtu_file(Path::new(MTU_FILE))?;
    let uplinks = match from_file {
        Some(_) => Vec::new(),
        None => host.addressed_links().await?,
    };
    let ipip = pools.iter().any(|p| p.ipip);
    Ok(choose(configured, from_file, &uplinks, ipip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|&(n, m)| (n.to_string(), m)).collect()
    }

    #[test]
    fn configured_wins_then_the_file() {
        let uplinks = links(&[("eth0", 9000)]);
        assert_eq!(choose(Some(1400), Some(1300), &uplinks, true), 1400);
        assert_eq!(choose(None, Some(1300), &uplinks, true), 1300);
    }

    #[test]
    fn detected_from_the_smallest_uplink_less_ipip() {
        let uplinks = links(&[("eth0", 9000), ("eth1", 1450), ("cali1234", 1000)]);
        assert_eq!(choose(None, None, &uplinks, true), 1430);
        assert_eq!(choose(None, None, &uplinks, false), 1450);
        assert_eq!(choose(None, None, &links(&[("eth0", 9000)]), true), 8980);
    }

    #[test]
    fn no_uplink_gives_the_default() {
        assert_eq!(
            choose(None, None, &links(&[("tunl0", 1480)]), true),
            DEFAULT_MTU
        );
        assert_eq!(choose(None, None, &[], false), DEFAULT_MTU);
    }

    #[test]
    fn the_file_reads_as_calico_reads_it() {
        let dir = std::env::temp_dir().join(format!("felix-cni-mtu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mtu");
        assert_eq!(read_mtu_file(&file).unwrap(), None, "missing");
        std::fs::write(&file, "1430\n").unwrap();
        assert_eq!(read_mtu_file(&file).unwrap(), Some(1430));
        std::fs::write(&file, "0").unwrap();
        assert_eq!(read_mtu_file(&file).unwrap(), None);
        std::fs::write(&file, "big").unwrap();
        assert!(read_mtu_file(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
