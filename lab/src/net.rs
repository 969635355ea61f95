//! The lab's network: namespaces, the fabric bridge, host uplinks and pod veths with the pod side
//! configured. Every link is created inside a lab namespace (`ip -n NS link add ... netns OTHER`),
//! never in the root one. The host side of a pod (its /32 route, the `cali*` sysctls) and the
//! routes to other hosts' blocks are felix's job, as in Calico: the lab does not make them.

use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cmd::{self, ip};
use crate::names;
use crate::state::{HostState, PodInfo};

/// Names of all network namespaces (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>> {
    Ok(parse_netns_list(&ip(&["netns", "list"])?))
}

/// `ip netns list` lines look like `name (id: 3)` or just `name`.
pub fn parse_netns_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

pub fn add_netns(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"]).map(drop)
}

pub fn del_netns(name: &str) -> Result<()> {
    ip(&["netns", "del", name]).map(drop)
}

/// PIDs of processes inside namespace `name` (`ip netns pids`).
pub fn ns_pids(name: &str) -> Result<Vec<i32>> {
    Ok(ip(&["netns", "pids", name])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// `sysctl -w key=value` inside namespace `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    cmd::run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "sysctl",
        "-q",
        "-w",
        &format!("{key}={value}"),
    ]))
}

/// `sysctl -n key` inside namespace `ns` (read from that namespace's /proc/sys).
pub fn read_sysctl(ns: &str, key: &str) -> Result<String> {
    let out = cmd::stdout(Command::new("ip").args(["netns", "exec", ns, "sysctl", "-n", key]))?;
    Ok(out.trim().to_owned())
}

/// The fabric: bridge `br0` with the fabric IP and MTU `mtu`; host uplinks attach to it.
pub fn build_fabric(fabric: &str, mtu: u32) -> Result<()> {
    let addr = format!("{}/{}", names::FABRIC_IP, names::FABRIC_PREFIX);
    let mtu = mtu.to_string();
    ip(&[
        "-n", fabric, "link", "add", "br0", "mtu", &mtu, "type", "bridge",
    ])?;
    ip(&["-n", fabric, "addr", "add", &addr, "dev", "br0"])?;
    ip(&["-n", fabric, "link", "set", "br0", "up"]).map(drop)
}

/// Host uplink: `eth0` in the host with 10.0.0.N/24 and MTU `mtu`, peer `hN` on the fabric
/// bridge. No default route.
pub fn build_host(fabric: &str, host: &HostState, mtu: u32) -> Result<()> {
    let ns = host.ns.as_str();
    let port = names::fabric_port(host.n);
    let addr = format!("{}/{}", host.ip, names::FABRIC_PREFIX);
    let mtu = mtu.to_string();
    ip(&[
        "-n", ns, "link", "add", "eth0", "mtu", &mtu, "type", "veth", "peer", "name", &port, "mtu",
        &mtu, "netns", fabric,
    ])?;
    ip(&["-n", fabric, "link", "set", &port, "master", "br0", "up"])?;
    ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    sysctl(ns, "net.ipv4.conf.all.forwarding", "1")
}

/// The ToR router: `eth0` in namespace `tor` with [`names::TOR_IP`]/24, peer [`names::TOR_PORT`]
/// on the fabric bridge, both with MTU `mtu`; it forwards, and has no default route.
pub fn build_tor(fabric: &str, tor: &str, mtu: u32) -> Result<()> {
    let addr = format!("{}/{}", names::TOR_IP, names::FABRIC_PREFIX);
    let mtu = mtu.to_string();
    ip(&[
        "-n",
        tor,
        "link",
        "add",
        "eth0",
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        names::TOR_PORT,
        "mtu",
        &mtu,
        "netns",
        fabric,
    ])?;
    ip(&[
        "-n",
        fabric,
        "link",
        "set",
        names::TOR_PORT,
        "master",
        "br0",
        "up",
    ])?;
    ip(&["-n", tor, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", tor, "link", "set", "eth0", "up"])?;
    sysctl(tor, "net.ipv4.conf.all.forwarding", "1")
}

/// The outside: `eth0` in namespace `outside` with [`names::OUTSIDE_IP`]/24, peer
/// [`names::OUTSIDE_PORT`] on the fabric bridge; only its connected route (the hosts' /24), no
/// route to the pods' pool, no forwarding.
pub fn build_outside(fabric: &str, outside: &str) -> Result<()> {
    let addr = format!("{}/{}", names::OUTSIDE_IP, names::FABRIC_PREFIX);
    ip(&[
        "-n",
        outside,
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        names::OUTSIDE_PORT,
        "netns",
        fabric,
    ])?;
    ip(&[
        "-n",
        fabric,
        "link",
        "set",
        names::OUTSIDE_PORT,
        "master",
        "br0",
        "up",
    ])?;
    ip(&["-n", outside, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", outside, "link", "set", "eth0", "up"]).map(drop)
}

/// A pod the way Calico's CNI plugin makes it (veth, `cali*` with Calico's MAC, the pod's address,
/// routes and gateway neighbour, both ends with MTU `mtu`); returns the MAC of the pod's `eth0`.
/// The host side's /32 route and `cali*` sysctls come from felix.
pub fn build_pod(host: &HostState, pod: &PodInfo, mtu: u32) -> Result<String> {
    let (hns, pns, cali) = (host.ns.as_str(), pod.ns.as_str(), pod.cali.as_str());
    let mtu = mtu.to_string();
    let gw = names::GATEWAY.to_string();
    let ip32 = format!("{}/32", pod.ip);
    ip(&[
        "-n", hns, "link", "add", cali, "type", "veth", "peer", "name", "eth0", "netns", pns,
    ])?;
    ip(&[
        "-n",
        hns,
        "link",
        "set",
        cali,
        "address",
        names::CALI_MAC,
        "mtu",
        &mtu,
    ])?;
    ip(&["-n", hns, "link", "set", cali, "up"])?;

    ip(&["-n", pns, "link", "set", "eth0", "mtu", &mtu, "up"])?;
    ip(&["-n", pns, "addr", "add", &ip32, "dev", "eth0"])?;
    ip(&[
        "-n", pns, "route", "add", &gw, "dev", "eth0", "scope", "link",
    ])?;
    ip(&[
        "-n", pns, "route", "add", "default", "via", &gw, "dev", "eth0", "onlink",
    ])?;
    // The lab host has no default route, so its proxy ARP would not answer for 169.254.1.1.
    ip(&[
        "-n",
        pns,
        "neigh",
        "add",
        &gw,
        "lladdr",
        names::CALI_MAC,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    link_mac(pns, "eth0")
}

#[derive(Deserialize)]
struct LinkJson {
    address: String,
}

/// MAC address of `dev` in namespace `ns`.
pub fn link_mac(ns: &str, dev: &str) -> Result<String> {
    let out = ip(&["-j", "-n", ns, "link", "show", "dev", dev])?;
    let links: Vec<LinkJson> =
        serde_json::from_str(&out).with_context(|| format!("parsing `ip -j link show`: {out}"))?;
    links
        .into_iter()
        .next()
        .map(|l| l.address)
        .with_context(|| format!("no link {dev} in {ns}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_list_parsing() {
        let text = "fx0001-h1-p1 (id: 4)\nfx0001-fabric (id: 0)\nplain\n";
        assert_eq!(
            parse_netns_list(text),
            ["fx0001-h1-p1", "fx0001-fabric", "plain"]
        );
        assert!(parse_netns_list("").is_empty());
    }
}
