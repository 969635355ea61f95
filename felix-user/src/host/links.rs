//! Interface discovery with rtnetlink: a dump of the links present at start, then every link
//! that appears, is renamed or goes away (and every deletion of a route felix owns).

use futures::{StreamExt, TryStreamExt, channel::mpsc::UnboundedReceiver};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage},
};
use rtnetlink::{MulticastGroup, new_multicast_connection};
use tokio::sync::mpsc;

/// Errors watching links.
#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// The netlink socket could not be opened or subscribed.
    #[error("open the rtnetlink socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The initial link dump failed.
    #[error("dump links: {0}")]
    Dump(#[from] rtnetlink::Error),
}

/// A change to the host's interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link exists (present at start, created, or changed, possibly renamed).
    Present { index: u32, name: String, mtu: u32 },
    /// The link was deleted.
    Gone { index: u32, name: String },
    /// A route felix owns (protocol [`crate::host::kroutes::FELIX_PROTO`]) was deleted.
    OwnRouteRemoved,
}

impl LinkEvent {
    /// The interface name the event is about.
    pub fn name(&self) -> &str {
        match self {
            LinkEvent::Present { name, .. } | LinkEvent::Gone { name, .. } => name,
            LinkEvent::OwnRouteRemoved => "",
        }
    }
}

/// Starts watching links: subscribes first, then dumps, so no link is missed in between.
/// Returns the links present now (as `Present` events) and a receiver of every later change.
pub async fn watch() -> Result<(Vec<LinkEvent>, mpsc::UnboundedReceiver<LinkEvent>), LinksError> {
    let (connection, handle, messages) =
        new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Ipv4Route])?;
    tokio::spawn(connection);

    let mut present_now = Vec::new();
    let mut dump = handle.link().get().execute();
    while let Some(message) = dump.try_next().await? {
        present_now.extend(present(&message));
    }
    let (events, receiver) = mpsc::unbounded_channel();
    tokio::spawn(forward(messages, events));
    Ok((present_now, receiver))
}

/// Turns multicast notifications into [`LinkEvent`]s.
async fn forward(
    mut messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    while let Some((message, _)) = messages.next().await {
        let event = match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => present(&link),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(route))
                if u8::from(route.header.protocol) == crate::host::kroutes::FELIX_PROTO =>
            {
                Some(LinkEvent::OwnRouteRemoved)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                name_of(&link).map(|name| LinkEvent::Gone {
                    index: link.header.index,
                    name,
                })
            }
            _ => None,
        };
        if let Some(event) = event
            && events.send(event).is_err()
        {
            return;
        }
    }
}

fn present(link: &LinkMessage) -> Option<LinkEvent> {
    let mtu = link
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .unwrap_or(0);
    name_of(link).map(|name| LinkEvent::Present {
        index: link.header.index,
        name,
        mtu,
    })
}

fn name_of(link: &LinkMessage) -> Option<String> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
}
