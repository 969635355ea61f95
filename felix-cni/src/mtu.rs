//! The pod's MTU, in Calico's order: the configuration's `mtu` when set (non-zero); else the
//! MTU Calico's node wrote to [`MTU_FILE`]; else detected from the uplink: the interface that
//! holds the node's address (its Node's `spec.bgp.ipv4Address`, which felix autodetects and
//! registers; felix takes the same interface as its uplink), or, before felix registered it,
//! the smallest MTU of the host's interfaces with a global IPv4 address (Calico's own
//! excepted); less the IPIP header when an IPv4 pool encapsulates; else [`DEFAULT_MTU`].

use std::{io, net::Ipv4Addr, path::Path};

use calico::model::{self, Kind, Resource};
use etcd_client::Client;

use crate::{
    dataplane::{AddressedLink, Netlink},
    error::CniError,
    ipam::PoolEntry,
};

/// Where Calico's node writes the MTU it detected for pods.
pub const MTU_FILE: &str = "/var/lib/calico/mtu";
/// Pod MTU when nothing else tells: room for the IPIP header under a 1500 uplink.
pub const DEFAULT_MTU: u32 = 1480;
/// Bytes the outer IPIP header takes.
pub const IPIP_OVERHEAD: u32 = 20;
/// Interfaces Calico makes itself: never an uplink.
const CALICO_PREFIXES: [&str; 3] = ["cali", "tunl", "vxlan.calico"];

/// The pod MTU from what is known: the configured one, [`MTU_FILE`]'s, the host's addressed
/// links, the node's registered address and whether a pool encapsulates with IPIP.
pub fn choose(
    configured: Option<u32>,
    from_file: Option<u32>,
    links: &[AddressedLink],
    node_address: Option<Ipv4Addr>,
    ipip: bool,
) -> u32 {
    if let Some(mtu) = configured.or(from_file) {
        return mtu;
    }
    let candidates = || {
        links
            .iter()
            .filter(|l| !CALICO_PREFIXES.iter().any(|p| l.name.starts_with(p)))
            .filter(|l| l.mtu > IPIP_OVERHEAD)
    };
    let uplink = node_address
        .and_then(|address| candidates().find(|l| l.addresses.contains(&address)))
        .map(|l| l.mtu);
    match uplink.or_else(|| candidates().map(|l| l.mtu).min()) {
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

/// The MTU for a pod's veth on `node`, given every IPv4 pool in etcd.
pub async fn pod_mtu(
    configured: Option<u32>,
    host: &Netlink,
    client: &mut Client,
    node: &str,
    pools: &[PoolEntry],
) -> Result<u32, CniError> {
    if let Some(mtu) = configured {
        return Ok(mtu);
    }
    let from_file = read_mtu_file(Path::new(MTU_FILE))?;
    let (links, node_address) = match from_file {
        Some(_) => (Vec::new(), None),
        None => (
            host.addressed_links().await?,
            node_address(client, node).await,
        ),
    };
    let ipip = pools.iter().any(|p| p.ipip);
    Ok(choose(configured, from_file, &links, node_address, ipip))
}

/// The IPv4 address registered in `node`'s Node resource; `None` when there is none yet, or it
/// cannot be read (the MTU then falls back to the smallest addressed link).
async fn node_address(client: &mut Client, node: &str) -> Option<Ipv4Addr> {
    let key = model::key_for(Kind::Node, None, node);
    let response = client.get(key.as_str(), None).await.ok()?;
    match Resource::from_etcd(&key, response.kvs().first()?.value()).ok()? {
        Resource::Node(n) => n.spec.ipv4(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Links named `name` with `mtu`, each holding 10.0.<n>.1 (n = its position).
    fn links(list: &[(&str, u32)]) -> Vec<AddressedLink> {
        list.iter()
            .zip(1u8..)
            .map(|(&(name, mtu), n)| AddressedLink {
                name: name.to_string(),
                mtu,
                addresses: vec![Ipv4Addr::new(10, 0, n, 1)],
            })
            .collect()
    }

    #[test]
    fn configured_wins_then_the_file() {
        let uplinks = links(&[("eth0", 9000)]);
        let node = Some(Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(choose(Some(1400), Some(1300), &uplinks, node, true), 1400);
        assert_eq!(choose(None, Some(1300), &uplinks, node, true), 1300);
    }

    #[test]
    fn detected_from_the_interface_of_the_nodes_address() {
        let uplinks = links(&[("eth0", 9000), ("ens5", 1450), ("cali1234", 1000)]);
        let eth0 = Some(Ipv4Addr::new(10, 0, 1, 1));
        let ens5 = Some(Ipv4Addr::new(10, 0, 2, 1));
        assert_eq!(choose(None, None, &uplinks, eth0, true), 8980);
        assert_eq!(choose(None, None, &uplinks, ens5, true), 1430);
        assert_eq!(choose(None, None, &uplinks, ens5, false), 1450);
    }

    #[test]
    fn without_the_nodes_address_the_smallest_link_less_ipip() {
        let uplinks = links(&[("eth0", 9000), ("eth1", 1450), ("cali1234", 1000)]);
        assert_eq!(choose(None, None, &uplinks, None, true), 1430);
        assert_eq!(choose(None, None, &uplinks, None, false), 1450);
        let elsewhere = Some(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(choose(None, None, &uplinks, elsewhere, true), 1430);
        assert_eq!(
            choose(None, None, &links(&[("eth0", 9000)]), None, true),
            8980
        );
    }

    #[test]
    fn no_uplink_gives_the_default() {
        assert_eq!(
            choose(None, None, &links(&[("tunl0", 1480)]), None, true),
            DEFAULT_MTU
        );
        assert_eq!(choose(None, None, &[], None, false), DEFAULT_MTU);
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
