//! What CHECK compares: the pod side as read back from the kernel against what ADD makes.
//! Pure code; [`crate::dataplane::pod_state`] fills a [`PodState`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::names;

/// An interface as read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
}

/// A main-table IPv4 route as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteState {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub scope_link: bool,
}

/// The pod's interface, its IPv4 addresses, main-table routes and the gateway's neighbour entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    pub link: LinkState,
    pub addresses: Vec<Ipv4Net>,
    pub routes: Vec<RouteState>,
    /// The lladdr of the permanent neighbour entry for the gateway, if any.
    pub gateway_mac: Option<Vec<u8>>,
}

/// What differs between `state` and a pod wired with `ip` and `mtu`; empty when all is there.
pub fn pod_problems(state: &PodState, ifname: &str, ip: Ipv4Addr, mtu: u32) -> Vec<String> {
    let mut problems = Vec::new();
    let index = state.link.index;
    if !state.link.up {
        problems.push(format!("{ifname} is down"));
    }
    if state.link.mtu != mtu {
        problems.push(format!("{ifname} has MTU {}, not {mtu}", state.link.mtu));
    }
    let address = Ipv4Net::from(ip);
    if !state.addresses.contains(&address) {
        problems.push(format!("{ifname} lacks address {address}"));
    }
    let gateway = Ipv4Net::from(names::GATEWAY);
    if !state
        .routes
        .iter()
        .any(|r| r.dst == gateway && r.oif == Some(index) && r.scope_link && r.gateway.is_none())
    {
        problems.push(format!(
            "no route {} dev {ifname} scope link",
            names::GATEWAY
        ));
    }
    if !state.routes.iter().any(|r| {
        r.dst == Ipv4Net::default() && r.gateway == Some(names::GATEWAY) && r.oif == Some(index)
    }) {
        problems.push(format!(
            "no default route via {} dev {ifname}",
            names::GATEWAY
        ));
    }
    if state.gateway_mac.as_deref() != Some(&names::HOST_MAC[..]) {
        problems.push(format!(
            "no permanent neighbour {} lladdr {} on {ifname}",
            names::GATEWAY,
            names::format_mac(&names::HOST_MAC)
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wired() -> PodState {
        PodState {
            link: LinkState {
                index: 2,
                mac: vec![2, 0, 0, 0, 0, 1],
                mtu: 1480,
                up: true,
            },
            addresses: vec!["192.168.0.5/32".parse().unwrap()],
            routes: vec![
                RouteState {
                    dst: "169.254.1.1/32".parse().unwrap(),
                    gateway: None,
                    oif: Some(2),
                    scope_link: true,
                },
                RouteState {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gateway: Some(names::GATEWAY),
                    oif: Some(2),
                    scope_link: false,
                },
            ],
            gateway_mac: Some(names::HOST_MAC.to_vec()),
        }
    }

    const IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 5);

    #[test]
    fn a_wired_pod_has_no_problems() {
        assert!(pod_problems(&wired(), "eth0", IP, 1480).is_empty());
    }

    #[test]
    fn each_missing_piece_is_named() {
        let mut s = wired();
        s.link.up = false;
        s.link.mtu = 1500;
        s.addresses.clear();
        s.routes.clear();
        s.gateway_mac = None;
        let problems = pod_problems(&s, "eth0", IP, 1480);
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!(problems[2].contains("192.168.0.5/32"), "{problems:?}");

        let mut s = wired();
        s.routes[1].oif = Some(7);
        let problems = pod_problems(&s, "eth0", IP, 1480);
        assert_eq!(problems, ["no default route via 169.254.1.1 dev eth0"]);
        let problems = pod_problems(&wired(), "eth0", Ipv4Addr::new(192, 168, 0, 6), 1480);
        assert_eq!(problems, ["eth0 lacks address 192.168.0.6/32"]);
    }
}
