//! Who this node peers with, following Calico's confd:
//!
//! - **Mesh**: with the mesh on, every node with a BGP address peers with every other one,
//!   except route reflectors (a node with `routeReflectorClusterID`), which stay out of the mesh
//!   on both sides.
//! - **Explicit peers**, for each BGPPeer whose local side selects this node (no `node` nor
//!   `nodeSelector`: every node, a *global* peer; `node`: that node; `nodeSelector`: the nodes it
//!   matches): its `peerIP` (AS `asNumber`, or the cluster's), or every node its `peerSelector`
//!   matches (at the node's address and AS).
//! - **Reverse peerings**: a BGPPeer is symmetric between Calico nodes. When its remote side
//!   selects this node (`peerSelector` matches it, or `peerIP` is its address with its AS), this
//!   node peers with every node of the local side. So one `nodeSelector: all()`,
//!   `peerSelector: has(route-reflector)` peer gives clients their route reflectors and the
//!   reflectors their clients.
//!
//! Never with itself (by name or address). One session per address and port: when several sources ask for the same
//! one, the first in the order above names it and the others are listed as its reasons.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use crate::{
    bgp::{BgpPeer, LocalNodes, Remote},
    inputs::{Inputs, NodeInfo},
};

/// Where a session comes from; names the BIRD protocol (`Mesh_`, `Global_`, `Node_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The node-to-node mesh.
    Mesh,
    /// A BGPPeer for every node.
    Global,
    /// A BGPPeer for some nodes (`node`, `nodeSelector`), or a reverse peering.
    Node,
}

impl Origin {
    /// The prefix of the protocol name.
    pub fn prefix(self) -> &'static str {
        match self {
            Origin::Mesh => "Mesh",
            Origin::Global => "Global",
            Origin::Node => "Node",
        }
    }
}

/// One BGP session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peering {
    pub origin: Origin,
    pub ip: Ipv4Addr,
    pub port: Option<u16>,
    pub as_number: u32,
    /// The Calico node at that address.
    pub node: Option<String>,
    /// That node's route reflector cluster ID.
    pub rr_cluster_id: Option<Ipv4Addr>,
    pub keep_next_hop: bool,
    pub use_node_ip: bool,
    /// What asks for it: `node-to-node mesh`, `BGPPeer <name>`, `BGPPeer <name> (reverse)`.
    pub reasons: Vec<String>,
}

/// The sessions of `me` (at `my_ip`), in address order, and notes on what was left out.
pub fn peerings(inputs: &Inputs, me: &NodeInfo, my_ip: Ipv4Addr) -> (Vec<Peering>, Vec<String>) {
    let mut out = Collected::default();
    let mut notes = Vec::new();
    if !inputs.mesh_enabled() {
        notes.push("node-to-node mesh: disabled".to_string());
    } else if let Some(id) = me.rr_cluster_id {
        notes.push(format!(
            "node-to-node mesh: this node is a route reflector (cluster ID {id}); it stays out of the mesh"
        ));
    } else {
        for node in inputs.nodes.values() {
            if node.name == me.name || node.ipv4.is_none() {
                continue;
            }
            if let Some(id) = node.rr_cluster_id {
                notes.push(format!(
                    "node-to-node mesh: skipping {} (route reflector, cluster ID {id})",
                    node.name
                ));
                continue;
            }
            out.node(inputs, node, Origin::Mesh, "node-to-node mesh", None);
        }
    }
    for peer in &inputs.peers {
        if !local_selects(peer, me) {
            continue;
        }
        let origin = if peer.local == LocalNodes::All {
            Origin::Global
        } else {
            Origin::Node
        };
        let reason = format!("BGPPeer {}", peer.name);
        match &peer.remote {
            Remote::Nodes(selector) => {
                for node in inputs.nodes.values() {
                    if node.name != me.name && selector.matches(&node.labels, true) {
                        out.node(inputs, node, origin, &reason, Some(peer));
                    }
                }
            }
            Remote::Address {
                ip: IpAddr::V6(ip), ..
            } => notes.push(format!("{reason}: IPv6 peer {ip} skipped (IPv4 only)")),
            Remote::Address {
                ip: IpAddr::V4(ip),
                port,
                as_number,
            } => {
                if *ip == my_ip {
                    notes.push(format!("{reason}: skipping ourselves ({ip})"));
                    continue;
                }
                let node = inputs.node_at(IpAddr::V4(*ip));
                out.add(
                    Peering {
                        origin,
                        ip: *ip,
                        port: *port,
                        as_number: as_number.unwrap_or_else(|| inputs.cluster_as()),
                        node: node.map(|n| n.name.clone()),
                        rr_cluster_id: node.and_then(|n| n.rr_cluster_id),
                        keep_next_hop: peer.keep_next_hop,
                        use_node_ip: peer.use_node_ip,
                        reasons: Vec::new(),
                    },
                    reason,
                );
            }
        }
    }
    for peer in &inputs.peers {
        if !remote_selects(inputs, peer, me, my_ip) {
            continue;
        }
        let reason = format!("BGPPeer {} (reverse)", peer.name);
        for node in inputs.nodes.values() {
            if node.name != me.name && local_selects(peer, node) {
                out.node(inputs, node, Origin::Node, &reason, Some(peer));
            }
        }
    }
    let mut peerings: Vec<Peering> = out.0.into_values().collect();
    peerings.retain(|p| {
        let ours = p.ip == my_ip;
        if ours {
            notes.push(format!(
                "{}: skipping ourselves ({my_ip})",
                p.reasons.join(", ")
            ));
        }
        !ours
    });
    peerings.sort_by_key(|p| (p.ip, p.port));
    (peerings, notes)
}

/// Whether the local side of `peer` (node, nodeSelector, or every node) selects `node`.
fn local_selects(peer: &BgpPeer, node: &NodeInfo) -> bool {
    match &peer.local {
        LocalNodes::All => true,
        LocalNodes::Named(name) => *name == node.name,
        LocalNodes::Selected(selector) => selector.matches(&node.labels, true),
    }
}

/// Whether the remote side of `peer` is `me`: its peerSelector matches me, or its peerIP is my
/// address with my AS.
fn remote_selects(inputs: &Inputs, peer: &BgpPeer, me: &NodeInfo, my_ip: Ipv4Addr) -> bool {
    match &peer.remote {
        Remote::Nodes(selector) => selector.matches(&me.labels, true),
        Remote::Address { ip, as_number, .. } => {
            *ip == IpAddr::V4(my_ip)
                && as_number.unwrap_or_else(|| inputs.cluster_as()) == inputs.as_of(me)
        }
    }
}

/// Sessions by (address, port), first come first named.
#[derive(Default)]
struct Collected(BTreeMap<(Ipv4Addr, Option<u16>), Peering>);

impl Collected {
    fn add(&mut self, peering: Peering, reason: String) {
        let entry = self.0.entry((peering.ip, peering.port)).or_insert(peering);
        if !entry.reasons.contains(&reason) {
            entry.reasons.push(reason);
        }
    }

    /// A session with `node` (at its BGP address and AS), when it has an address.
    fn node(
        &mut self,
        inputs: &Inputs,
        node: &NodeInfo,
        origin: Origin,
        reason: &str,
        peer: Option<&BgpPeer>,
    ) {
        let Some(net) = node.ipv4 else { return };
        self.add(
            Peering {
                origin,
                ip: net.addr(),
                port: None,
                as_number: inputs.as_of(node),
                node: Some(node.name.clone()),
                rr_cluster_id: node.rr_cluster_id,
                keep_next_hop: peer.is_some_and(|p| p.keep_next_hop),
                use_node_ip: peer.is_none_or(|p| p.use_node_ip),
                reasons: Vec::new(),
            },
            reason.to_string(),
        );
    }
}
