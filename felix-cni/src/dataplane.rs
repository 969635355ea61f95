//! The pod's network over rtnetlink: the veth pair (host end `cali*` with Calico's MAC, pod end
//! created directly in the pod's namespace as `CNI_IFNAME`), the pod's /32, its routes and the
//! gateway's neighbour entry; deletion; and reading the pod side back for CHECK.
//!
//! The gateway 169.254.1.1 gets a permanent neighbour entry with the host end's MAC (always
//! `ee:ee:ee:ee:ee:ee`) so that the pod never has to ARP for it: Calico relies on proxy ARP on
//! the host end, which answers only when the host has a route for the target (a lab host has
//! no default route), and proxy ARP stays on for anything else the pod asks.

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressScope},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope},
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::{
    names,
    netns::{NetNs, NetNsError},
    verify::{LinkState, PodState, RouteState},
};

/// A host link with global IPv4 addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressedLink {
    pub name: String,
    pub mtu: u32,
    pub addresses: Vec<Ipv4Addr>,
}

/// Errors of netlink operations.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("netlink socket: {0}")]
    Socket(io::Error),
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        source: rtnetlink::Error,
    },
}

fn failed(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> DataplaneError {
    let op = op.into();
    move |source| DataplaneError::Netlink { op, source }
}

/// Whether a netlink error says the device is not there.
fn is_no_device(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

/// A netlink connection in one namespace.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the plugin's own (the host's) namespace. Needs a tokio runtime.
    pub fn host() -> Result<Self, DataplaneError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(DataplaneError::Socket)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// A connection whose socket lives in `ns`.
    pub fn in_netns(ns: &NetNs) -> Result<Self, DataplaneError> {
        let (connection, handle, _) = ns
            .run(rtnetlink::new_connection)?
            .map_err(DataplaneError::Socket)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The interface called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Result<Option<LinkState>, DataplaneError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(message)) => Ok(Some(link_state(&message))),
            Ok(None) => Ok(None),
            Err(e) if is_no_device(&e) => Ok(None),
            Err(e) => Err(failed(format!("look up {name}"))(e)),
        }
    }

    /// Deletes interface `name` (with a veth, its peer goes too); false when it was not there.
    pub async fn delete_link(&self, name: &str) -> Result<bool, DataplaneError> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_no_device(&e) => Ok(false),
            Err(e) => Err(failed(format!("delete {name}"))(e)),
        }
    }

    /// Every link with a global IPv4 address: its name, MTU and those addresses.
    pub async fn addressed_links(&self) -> Result<Vec<AddressedLink>, DataplaneError> {
        let mut addresses: Vec<(u32, Ipv4Addr)> = Vec::new();
        let mut dump = self.handle.address().get().execute();
        while let Some(message) = dump.try_next().await.map_err(failed("list addresses"))? {
            let header = &message.header;
            if header.family != AddressFamily::Inet || header.scope != AddressScope::Universe {
                continue;
            }
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(v4))
                | AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            });
            if let Some(address) = address {
                addresses.push((header.index, address));
            }
        }
        let mut found = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(message) = links.try_next().await.map_err(failed("list links"))? {
            let index = message.header.index;
            let held: Vec<Ipv4Addr> = addresses
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, a)| *a)
                .collect();
            if held.is_empty() {
                continue;
            }
            let name = message.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            });
            found.push(AddressedLink {
                name: name.unwrap_or_default(),
                mtu: link_state(&message).mtu,
                addresses: held,
            });
        }
        Ok(found)
    }

    async fn set_up(&self, index: u32, name: &str) -> Result<(), DataplaneError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(failed(format!("set {name} up")))
    }
}

fn link_state(message: &LinkMessage) -> LinkState {
    let mut state = LinkState {
        index: message.header.index,
        up: message.header.flags.contains(LinkFlags::Up),
        ..LinkState::default()
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Address(mac) => state.mac = mac.clone(),
            LinkAttribute::Mtu(mtu) => state.mtu = *mtu,
            _ => {}
        }
    }
    state
}

/// Creates the veth pair: `host_veth` here (Calico's MAC, `mtu`, up) and `ifname` in `pod_ns`
/// (`mtu`, still down). A stale `host_veth` (an earlier sandbox of the same pod, or an ADD
/// that is retried) is deleted first.
pub async fn create_veth(
    host: &Netlink,
    pod_ns: &NetNs,
    host_veth: &str,
    ifname: &str,
    mtu: u32,
) -> Result<(), DataplaneError> {
    host.delete_link(host_veth).await?;
    let peer = LinkUnspec::new_with_name(ifname)
        .mtu(mtu)
        .setns_by_fd(pod_ns.fd())
        .build();
    let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_veth.to_string())
        .mtu(mtu)
        .address(names::HOST_MAC.to_vec())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    host.handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(failed(format!(
            "create veth {host_veth} with peer {ifname} in the pod"
        )))?;
    let link = host
        .link(host_veth)
        .await?
        .ok_or_else(|| DataplaneError::Netlink {
            op: format!("{host_veth} vanished after its creation"),
            source: rtnetlink::Error::RequestFailed,
        })?;
    host.set_up(link.index, host_veth).await
}

/// Configures the pod's end: up, `ip`/32, `169.254.1.1 dev <ifname> scope link`, `default via
/// 169.254.1.1`, and the gateway's permanent neighbour entry. Returns the interface.
pub async fn configure_pod(
    pod: &Netlink,
    ifname: &str,
    ip: Ipv4Addr,
) -> Result<LinkState, DataplaneError> {
    let link = pod
        .link(ifname)
        .await?
        .ok_or_else(|| DataplaneError::Netlink {
            op: format!("{ifname} is not in the pod after its creation"),
            source: rtnetlink::Error::RequestFailed,
        })?;
    let index = link.index;
    pod.set_up(index, ifname).await?;
    pod.handle
        .address()
        .add(index, IpAddr::V4(ip), 32)
        .execute()
        .await
        .map_err(failed(format!("add {ip}/32 to {ifname}")))?;
    let gateway_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(names::GATEWAY, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    pod.handle
        .route()
        .add(gateway_route)
        .execute()
        .await
        .map_err(failed(format!(
            "add route {} dev {ifname} scope link",
            names::GATEWAY
        )))?;
    let default_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(names::GATEWAY)
        .output_interface(index)
        .build();
    pod.handle
        .route()
        .add(default_route)
        .execute()
        .await
        .map_err(failed(format!(
            "add default route via {} dev {ifname}",
            names::GATEWAY
        )))?;
    pod.handle
        .neighbours()
        .add(index, IpAddr::V4(names::GATEWAY))
        .link_local_address(&names::HOST_MAC)
        .state(NeighbourState::Permanent)
        .execute()
        .await
        .map_err(failed(format!(
            "add neighbour {} on {ifname}",
            names::GATEWAY
        )))?;
    Ok(link)
}

/// The pod side as it is now: `None` when `ifname` does not exist.
pub async fn pod_state(pod: &Netlink, ifname: &str) -> Result<Option<PodState>, DataplaneError> {
    let Some(link) = pod.link(ifname).await? else {
        return Ok(None);
    };
    let addresses = pod
        .handle
        .address()
        .get()
        .set_link_index_filter(link.index)
        .execute()
        .try_filter_map(|message| async move {
            Ok(message.attributes.iter().find_map(|a| match a {
                netlink_packet_route::address::AddressAttribute::Address(IpAddr::V4(ip)) => {
                    Ipv4Net::new(*ip, message.header.prefix_len).ok()
                }
                _ => None,
            }))
        })
        .try_collect()
        .await
        .map_err(failed(format!("list the addresses of {ifname}")))?;
    let routes: Vec<RouteState> = pod
        .handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_filter_map(|message| async move { Ok(route_state(&message)) })
        .try_collect()
        .await
        .map_err(failed("list the pod's routes"))?;
    let neighbours: Vec<_> = pod
        .handle
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(failed("list the pod's neighbours"))?;
    let gateway = NeighbourAddress::Inet(names::GATEWAY);
    let gateway_mac = neighbours
        .iter()
        .filter(|n| n.header.ifindex == link.index && n.header.state == NeighbourState::Permanent)
        .filter(|n| {
            n.attributes
                .iter()
                .any(|a| *a == NeighbourAttribute::Destination(gateway.clone()))
        })
        .find_map(|n| {
            n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLocalAddress(mac) => Some(mac.clone()),
                _ => None,
            })
        });
    Ok(Some(PodState {
        link,
        addresses,
        routes,
        gateway_mac,
    }))
}

fn route_state(message: &RouteMessage) -> Option<RouteState> {
    if message.header.table != RouteHeader::RT_TABLE_MAIN {
        return None;
    }
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let (mut gateway, mut oif) = (None, None);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some(RouteState {
        dst: Ipv4Net::new(dst, message.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        scope_link: message.header.scope == RouteScope::Link,
    })
}
