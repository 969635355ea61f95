//! Pod addresses, obtained as in a Calico cluster: each host claims a block of the pool (`felix
//! ipam claim`: the pool's first free block), then each pod is assigned the next free address of
//! its host's block under its own handle (`felix ipam assign`), as Calico's CNI plugin does
//! before it wires the pod. Both run in the host's namespace, where etcd is reachable.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::felix;
use crate::state::{HostState, LabState, PodInfo};
use crate::{calico, etcd, names};

/// Claims a block of the lab's pool for `host`; returns its CIDR.
pub fn claim_block(felix_bin: &Path, state: &LabState, host: &HostState) -> Result<String> {
    felix::ipam::claim(
        felix_bin,
        &host.ns,
        &state.etcd_url,
        &host.node,
        names::POOL_CIDR,
        names::BLOCK_PREFIX,
    )
    .with_context(|| format!("claiming a block for {}", host.node))
}

/// Assigns `pod` an address from `host`'s block, with Calico's handle and attributes.
pub fn assign_pod(
    felix_bin: &Path,
    state: &LabState,
    host: &HostState,
    pod: &PodInfo,
) -> Result<Ipv4Addr> {
    let handle = calico::ipam_handle(pod);
    let attrs = [
        ("namespace", names::POD_NAMESPACE),
        ("node", host.node.as_str()),
        ("pod", pod.name.as_str()),
    ];
    let ip = felix::ipam::assign(
        felix_bin,
        &host.ns,
        &state.etcd_url,
        &host.node,
        &handle,
        &attrs,
    )
    .with_context(|| format!("assigning an address to {}", pod.name))?;
    ensure!(
        in_cidr(ip, &host.block)?,
        "felix ipam assign gave {} {ip}, outside {}'s block {}",
        pod.name,
        host.node,
        host.block
    );
    Ok(ip)
}

/// Calico's key of block `cidr`.
pub fn block_key(cidr: &str) -> String {
    format!(
        "/calico/ipam/v2/assignment/ipv4/block/{}",
        names::cidr_key(cidr)
    )
}

/// Calico's key of `node`'s affinity to block `cidr`.
pub fn affinity_key(node: &str, cidr: &str) -> String {
    format!(
        "/calico/ipam/v2/host/{node}/ipv4/block/{}",
        names::cidr_key(cidr)
    )
}

/// Releases `host`'s empty block `cidr` as Calico's IPAM does when it frees a block affinity
/// (`felix ipam` has no such command): the affinity marked `pendingDeletion`, then the block
/// deleted, then the affinity.
pub fn release_block(state: &LabState, host: &HostState, cidr: &str) -> Result<()> {
    let (fabric, url) = (state.fabric_ns.as_str(), state.etcd_url.as_str());
    let affinity = affinity_key(&host.node, cidr);
    ensure!(
        etcd::get(fabric, url, &affinity)?.is_some(),
        "{} holds no affinity {affinity}",
        host.node
    );
    let pending = serde_json::json!({"state": "pendingDeletion", "deleted": false});
    etcd::put(fabric, url, &affinity, &pending.to_string())?;
    ensure!(
        etcd::del(fabric, url, &block_key(cidr))? == 1,
        "no block {cidr} to delete"
    );
    etcd::del(fabric, url, &affinity).map(drop)
}

/// Whether `ip` is in `cidr` (`a.b.c.d/len`).
pub fn in_cidr(ip: Ipv4Addr, cidr: &str) -> Result<bool> {
    let (net, len) = cidr
        .split_once('/')
        .with_context(|| format!("{cidr:?} is not a CIDR"))?;
    let net: Ipv4Addr = net.parse().with_context(|| format!("{cidr:?}"))?;
    let len: u32 = len.parse().with_context(|| format!("{cidr:?}"))?;
    ensure!(len <= 32, "{cidr:?}: prefix longer than 32");
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Ok(u32::from(ip) & mask == u32::from(net) & mask)
}

/// Address `offset` of block `cidr` (e.g. an address felix never assigned to a lab pod).
pub fn nth_address(cidr: &str, offset: u32) -> Result<Ipv4Addr> {
    let net: Ipv4Addr = cidr
        .split_once('/')
        .map(|(net, _)| net)
        .with_context(|| format!("{cidr:?} is not a CIDR"))?
        .parse()
        .with_context(|| format!("{cidr:?}"))?;
    let ip = Ipv4Addr::from(u32::from(net).wrapping_add(offset));
    ensure!(in_cidr(ip, cidr)?, "{ip} is outside {cidr}");
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() -> Result<()> {
        let ip = |s: &str| s.parse::<Ipv4Addr>();
        assert!(in_cidr(ip("192.168.0.63")?, "192.168.0.0/26")?);
        assert!(!in_cidr(ip("192.168.0.64")?, "192.168.0.0/26")?);
        assert!(in_cidr(ip("10.1.2.3")?, "0.0.0.0/0")?);
        assert!(in_cidr(ip("1.2.3.4")?, "1.2.3.4").is_err());
        assert_eq!(nth_address("192.168.0.64/26", 50)?, ip("192.168.0.114")?);
        assert!(nth_address("192.168.0.64/26", 64).is_err());
        assert_eq!(
            block_key("192.168.0.128/26"),
            "/calico/ipam/v2/assignment/ipv4/block/192.168.0.128-26"
        );
        assert_eq!(
            affinity_key("fx0001-h1", "192.168.0.128/26"),
            "/calico/ipam/v2/host/fx0001-h1/ipv4/block/192.168.0.128-26"
        );
        Ok(())
    }
}
