//! The host's kernel routes for its pods, owned by felix and marked with [`FELIX_PROTO`]:
//! a /32 per local workload via its `cali*` interface (so the host reaches its pods and BIRD sees
//! them), a blackhole per block affine to this node (what BIRD exports), and routes to remote
//! blocks via their hosts: in BPF mode with room for the IPIP header where the route's pool
//! encapsulates (host-originated traffic, which the uplink program wraps) and plain where it
//! routes natively, in iptables mode always plain (the kernel forwards pod traffic
//! unencapsulated, [`RemoteBlocks::Native`]). Routes of any other protocol are never touched.

use std::{collections::BTreeMap, net::Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use tracing::{debug, info, warn};

/// The routing protocol number felix marks its routes with (`ip route ... proto 80`).
pub const FELIX_PROTO: u8 = 80;
/// Bytes the outer IPIP header takes from the uplink MTU.
const IPIP_OVERHEAD: u32 = 20;

/// Errors reconciling routes.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("list routes: {0}")]
    List(rtnetlink::Error),
}

/// How traffic to remote blocks leaves the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteBlocks {
    /// As each dataplane route says (BPF mode): wrapped in IPIP by felix's programs, with a
    /// route MTU that leaves room for the outer header, unless the route is native (its pool's
    /// `ipipMode`), which takes the uplink's own MTU.
    Ipip,
    /// Routed as is (iptables mode): the uplink's own MTU.
    Native,
}

/// A route felix wants in the main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelRoute {
    /// `<pod>/32 dev <cali> scope link`.
    Workload { ifindex: u32 },
    /// `blackhole <block>`.
    Blackhole,
    /// `<block> via <host> dev <uplink> onlink [mtu <uplink mtu - 20>]` (the MTU with IPIP).
    Remote {
        via: Ipv4Addr,
        ifindex: u32,
        mtu: Option<u32>,
    },
}

/// What one reconcile changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    pub added: usize,
    pub removed: usize,
    /// Destinations held by another protocol's route, left alone.
    pub foreign: usize,
}

/// The kernel routes for a desired state. `uplink` is (ifindex, MTU) when known.
pub fn desired_routes(
    desired: &crate::calc::desired::Desired,
    uplink: Option<(u32, u32)>,
    remote: RemoteBlocks,
) -> BTreeMap<Ipv4Net, KernelRoute> {
    use felix_common::RouteKind;
    let mut routes = BTreeMap::new();
    for (cidr, value) in &desired.routes {
        let route = match RouteKind::from_u32(value.kind) {
            Some(RouteKind::LocalWorkload) => KernelRoute::Workload {
                ifindex: value.ifindex,
            },
            Some(RouteKind::LocalBlock) => KernelRoute::Blackhole,
            Some(RouteKind::RemoteBlock) => {
                let via = Ipv4Addr::from(value.next_hop);
                let remote = if value.is_native() {
                    RemoteBlocks::Native
                } else {
                    remote
                };
                match (uplink, remote) {
                    (Some((ifindex, mtu)), RemoteBlocks::Ipip) if mtu > IPIP_OVERHEAD => {
                        KernelRoute::Remote {
                            via,
                            ifindex,
                            mtu: Some(mtu - IPIP_OVERHEAD),
                        }
                    }
                    (Some((ifindex, _)), RemoteBlocks::Native) => KernelRoute::Remote {
                        via,
                        ifindex,
                        mtu: None,
                    },
                    _ => continue,
                }
            }
            _ => continue,
        };
        routes.insert(*cidr, route);
    }
    routes
}

fn message(cidr: Ipv4Net, route: KernelRoute) -> RouteMessage {
    let builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.addr(), cidr.prefix_len())
        .protocol(RouteProtocol::from(FELIX_PROTO));
    match route {
        KernelRoute::Workload { ifindex } => builder
            .output_interface(ifindex)
            .scope(RouteScope::Link)
            .build(),
        KernelRoute::Blackhole => builder.kind(RouteType::BlackHole).build(),
        KernelRoute::Remote { via, ifindex, mtu } => {
            let mut message = builder
                .gateway(via)
                .output_interface(ifindex)
                .onlink()
                .build();
            if let Some(mtu) = mtu {
                message
                    .attributes
                    .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
            }
            message
        }
    }
}

/// The route's metric (`RTA_PRIORITY`; none is 0, the metric felix's routes have).
fn priority(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

/// Reads a route of the main table back into (destination, protocol, what it is).
fn parse(message: &RouteMessage) -> Option<(Ipv4Net, u8, Option<KernelRoute>)> {
    if message.header.table != RouteHeader::RT_TABLE_MAIN {
        return None;
    }
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let (mut oif, mut gateway, mut mtu) = (None, None, None);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => dst = *addr,
            RouteAttribute::Oif(index) => oif = Some(*index),
            RouteAttribute::Gateway(RouteAddress::Inet(addr)) => gateway = Some(*addr),
            RouteAttribute::Metrics(metrics) => {
                mtu = metrics.iter().find_map(|m| match m {
                    RouteMetric::Mtu(v) => Some(*v),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    let cidr = Ipv4Net::new(dst, message.header.destination_prefix_length).ok()?;
    let route = match (message.header.kind, oif, gateway) {
        (RouteType::BlackHole, _, _) => Some(KernelRoute::Blackhole),
        (RouteType::Unicast, Some(ifindex), Some(via)) => {
            Some(KernelRoute::Remote { via, ifindex, mtu })
        }
        (RouteType::Unicast, Some(ifindex), None) => Some(KernelRoute::Workload { ifindex }),
        _ => None,
    };
    Some((cidr, u8::from(message.header.protocol), route))
}

/// Brings the main table's felix routes in line with `wanted`: adds what is missing, replaces
/// what differs, removes ours that are no longer wanted. A destination another protocol holds
/// at felix's metric (0) is left to it; one at another metric (BIRD's native routes to other
/// nodes' blocks, metric 32) sits beside felix's and does not stop it.
pub async fn reconcile(
    handle: &Handle,
    wanted: &BTreeMap<Ipv4Net, KernelRoute>,
) -> Result<RouteChanges, RoutesError> {
    let mut ours: BTreeMap<Ipv4Net, (RouteMessage, Option<KernelRoute>)> = BTreeMap::new();
    let mut foreign: Vec<Ipv4Net> = Vec::new();
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(message) = routes.try_next().await.map_err(RoutesError::List)? {
        let Some((cidr, proto, route)) = parse(&message) else {
            continue;
        };
        if proto == FELIX_PROTO {
            ours.insert(cidr, (message, route));
        } else if wanted.contains_key(&cidr) && priority(&message) == 0 {
            foreign.push(cidr);
        }
    }
    let mut changes = RouteChanges {
        foreign: foreign.len(),
        ..RouteChanges::default()
    };
    for (cidr, (message, route)) in &ours {
        if wanted.get(cidr) != route.as_ref() {
            match handle.route().del(message.clone()).execute().await {
                Ok(()) => changes.removed += 1,
                Err(error) => warn!(%cidr, %error, "removing a felix route failed"),
            }
        }
    }
    for (cidr, route) in wanted {
        if foreign.contains(cidr)
            || ours
                .get(cidr)
                .is_some_and(|(_, r)| r.as_ref() == Some(route))
        {
            continue;
        }
        match handle
            .route()
            .add(message(*cidr, *route))
            .replace()
            .execute()
            .await
        {
            Ok(()) => changes.added += 1,
            Err(error) if interface_gone(route, &error) => {
                // A pod torn down: its route went with its interface, and the link event
                // that follows drops it from what is wanted.
                debug!(%cidr, ?route, %error, "not adding a felix route: its interface is gone");
            }
            Err(error) => warn!(%cidr, ?route, %error, "adding a felix route failed"),
        }
    }
    if changes.added + changes.removed > 0 {
        info!(?changes, "kernel routes reconciled");
    }
    Ok(changes)
}

/// Whether adding `route` failed because its workload interface no longer exists (`ENODEV`).
fn interface_gone(route: &KernelRoute, error: &rtnetlink::Error) -> bool {
    matches!(route, KernelRoute::Workload { .. })
        && matches!(error, rtnetlink::Error::NetlinkError(message)
            if message.raw_code().abs() == libc::ENODEV)
}

#[cfg(test)]
mod tests {
    use felix_common::{RouteKind, RouteValue};

    use super::*;
    use crate::calc::desired::Desired;

    #[test]
    fn desired_kernel_routes_follow_the_dataplane_routes() {
        let mut desired = Desired::default();
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        desired.routes.insert(
            net("192.168.2.1/32"),
            RouteValue::new(RouteKind::LocalWorkload, 7, [0; 4]),
        );
        desired.routes.insert(
            net("192.168.2.0/26"),
            RouteValue::new(RouteKind::LocalBlock, 0, [0; 4]),
        );
        desired.routes.insert(
            net("192.168.3.0/26"),
            RouteValue::new(RouteKind::RemoteBlock, 0, [10, 0, 0, 2]),
        );
        desired.routes.insert(
            net("10.0.0.2/32"),
            RouteValue::new(RouteKind::RemoteHost, 0, [0; 4]),
        );
        let routes = desired_routes(&desired, Some((2, 1500)), RemoteBlocks::Ipip);
        assert_eq!(
            routes.len(),
            3,
            "host routes are not kernel routes felix owns"
        );
        assert_eq!(
            routes[&net("192.168.2.1/32")],
            KernelRoute::Workload { ifindex: 7 }
        );
        assert_eq!(routes[&net("192.168.2.0/26")], KernelRoute::Blackhole);
        assert_eq!(
            routes[&net("192.168.3.0/26")],
            KernelRoute::Remote {
                via: Ipv4Addr::new(10, 0, 0, 2),
                ifindex: 2,
                mtu: Some(1480)
            }
        );
        assert!(
            !desired_routes(&desired, None, RemoteBlocks::Ipip)
                .contains_key(&net("192.168.3.0/26"))
        );
        let native = desired_routes(&desired, Some((2, 1500)), RemoteBlocks::Native);
        assert_eq!(
            native[&net("192.168.3.0/26")],
            KernelRoute::Remote {
                via: Ipv4Addr::new(10, 0, 0, 2),
                ifindex: 2,
                mtu: None
            },
            "native routing: no room for a tunnel header"
        );
        routes
            .iter()
            .filter(|(cidr, _)| cidr.prefix_len() == 32 || **cidr == net("192.168.2.0/26"))
            .for_each(|(cidr, route)| {
                assert_eq!(
                    native.get(cidr),
                    Some(route),
                    "local routes are the same in both modes"
                );
            });
    }

    #[test]
    fn native_remote_blocks_get_no_tunnel_mtu_in_bpf_mode() {
        use felix_common::routes::PoolIpipMode;
        let mut desired = Desired::default();
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        desired.routes.insert(
            net("192.168.3.0/26"),
            RouteValue::remote_block([10, 0, 0, 2], PoolIpipMode::Never, true),
        );
        desired.routes.insert(
            net("192.168.4.0/26"),
            RouteValue::remote_block([10, 0, 1, 3], PoolIpipMode::CrossSubnet, false),
        );
        let routes = desired_routes(&desired, Some((2, 1500)), RemoteBlocks::Ipip);
        assert_eq!(
            routes[&net("192.168.3.0/26")],
            KernelRoute::Remote {
                via: Ipv4Addr::new(10, 0, 0, 2),
                ifindex: 2,
                mtu: None
            }
        );
        assert_eq!(
            routes[&net("192.168.4.0/26")],
            KernelRoute::Remote {
                via: Ipv4Addr::new(10, 0, 1, 3),
                ifindex: 2,
                mtu: Some(1480)
            }
        );
    }

    #[test]
    fn built_messages_parse_back_to_the_same_route() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        for (cidr, route) in [
            (net("192.168.2.1/32"), KernelRoute::Workload { ifindex: 7 }),
            (net("192.168.2.0/26"), KernelRoute::Blackhole),
            (
                net("192.168.3.0/26"),
                KernelRoute::Remote {
                    via: Ipv4Addr::new(10, 0, 0, 2),
                    ifindex: 2,
                    mtu: Some(1480),
                },
            ),
            (
                net("192.168.4.0/26"),
                KernelRoute::Remote {
                    via: Ipv4Addr::new(10, 0, 0, 3),
                    ifindex: 2,
                    mtu: None,
                },
            ),
        ] {
            let mut message = message(cidr, route);
            message.header.table = RouteHeader::RT_TABLE_MAIN;
            assert_eq!(parse(&message), Some((cidr, FELIX_PROTO, Some(route))));
        }
    }

    #[test]
    fn a_route_at_another_metric_does_not_hold_felixs_destination() {
        let remote = KernelRoute::Remote {
            via: Ipv4Addr::new(10, 0, 0, 2),
            ifindex: 2,
            mtu: None,
        };
        let ours = message("192.168.0.64/26".parse().unwrap(), remote);
        assert_eq!(priority(&ours), 0, "felix's routes have metric 0");
        let mut birds = ours.clone();
        birds.attributes.push(RouteAttribute::Priority(32));
        assert_eq!(priority(&birds), 32);
    }

    #[test]
    fn only_a_workload_route_whose_interface_is_gone_is_quiet() {
        use netlink_packet_core::ErrorMessage;
        let netlink = |errno: i32| {
            let mut message = ErrorMessage::default();
            message.code = std::num::NonZeroI32::new(-errno);
            rtnetlink::Error::NetlinkError(message)
        };
        let workload = KernelRoute::Workload { ifindex: 7 };
        assert!(interface_gone(&workload, &netlink(libc::ENODEV)));
        assert!(!interface_gone(&workload, &netlink(libc::EPERM)));
        assert!(!interface_gone(&workload, &netlink(libc::EEXIST)));
        assert!(!interface_gone(
            &KernelRoute::Blackhole,
            &netlink(libc::ENODEV)
        ));
        assert!(!interface_gone(&workload, &rtnetlink::Error::RequestFailed));
    }
}
