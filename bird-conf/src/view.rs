//! The template context: every decision about what BIRD gets is taken here, so that the
//! templates only lay the result out. Addresses and sets are given as BIRD writes them.
//!
//! Decisions (the rendered file repeats them as comments):
//! - Router ID and session source address: the node's `spec.bgp.ipv4Address`; without one
//!   there is nothing to render ([`ViewError::NoAddress`]).
//! - AS: the node's `asNumber`, else the `default` BGPConfiguration's, else 64512.
//! - Blocks: one blackhole route per confirmed (or state-less) affinity of this node whose block
//!   lies in an IPv4 pool without `disableBGPExport`; nothing else is announced. Pending,
//!   deleted and /32 affinities, and blocks outside every pool, are listed as not announced.
//! - Import from peers: a route inside a pool, no more specific than the pool's block size
//!   (`CIDR{len,blockSize}`); everything else, the /32s included, is refused.
//! - Kernel, per pool mode (pools cannot overlap, so one rule per pool decides):
//!   `ipipMode: Always` (or any `vxlanMode`): not programmed: felix owns routes to remote blocks
//!   and encapsulates in BPF (there is no `tunl0`); `Never`: programmed, via the peer (native
//!   routing); `CrossSubnet`: programmed when the BGP next hop is on this node's subnet (native),
//!   left to felix's IPIP otherwise.
//! - A disabled pool (`disabled: true`) only stops new allocations, as in Calico: its existing
//!   blocks stay announced and imported, like any other pool's.
//! - Route reflection: a node with `routeReflectorClusterID` treats every iBGP peer outside its
//!   cluster as a client (`rr client`) and passes routes learned from peers on to peers; any
//!   other node announces only its own blocks.

use std::net::Ipv4Addr;

use calico::model::EncapMode;
use ipnet::Ipv4Net;
use serde::Serialize;

use crate::{
    bgp::LogSeverity,
    inputs::{Inputs, PoolInfo},
    peers::{Origin, peerings},
};

/// Why no configuration can be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("node {0} has no Node resource yet")]
    NoNode(String),
    #[error("node {0} has no spec.bgp.ipv4Address yet (it is the router ID)")]
    NoAddress(String),
}

/// The whole template context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BirdView {
    pub node: String,
    pub router_id: String,
    pub as_number: u32,
    /// This node's subnet (`10.0.0.0/24`), for CrossSubnet pools.
    pub subnet: String,
    /// Set when this node is a route reflector.
    pub rr_cluster_id: Option<String>,
    /// `log stderr <classes>;`.
    pub log_classes: String,
    /// `debug protocols <debug>;`.
    pub debug: String,
    pub log_severity: String,
    pub peers: Vec<PeerView>,
    pub blocks: Vec<BlockView>,
    /// The CIDRs of the blocks announced.
    pub announced: Vec<String>,
    pub pools: Vec<PoolView>,
    /// Import prefix set: each pool with the lengths accepted (`192.168.0.0/16{16,26}`).
    pub pool_ranges: Vec<String>,
    /// Comments on what was left out and why.
    pub notes: Vec<String>,
}

/// One BGP session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerView {
    /// Protocol name (`Mesh_10_0_0_2`, `Global_10_0_0_254_port_1179`).
    pub name: String,
    pub ip: String,
    pub port: Option<u16>,
    pub as_number: u32,
    /// Same AS as this node.
    pub ibgp: bool,
    /// Wait for the peer to connect (the mesh connects from the lower address only).
    pub passive: bool,
    /// This node reflects routes to this peer.
    pub rr_client: bool,
    /// Keep the next hop of routes passed to this eBGP peer.
    pub next_hop_keep: bool,
    /// Bind the session to the node's address.
    pub source_address: bool,
    /// What it is and why it exists.
    pub description: String,
}

/// One of this node's blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockView {
    pub cidr: String,
    /// Gets a blackhole route and is announced.
    pub announced: bool,
    /// Why (not).
    pub note: String,
}

/// One IPv4 pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolView {
    pub name: String,
    pub cidr: String,
    pub block_size: u8,
    /// The mode as configured (`ipipMode Always`, `vxlanMode Always`, ...).
    pub mode: String,
    /// What the kernel export does with routes into it: `felix`, `native` or `cross_subnet`.
    pub kernel: String,
    pub disabled: bool,
    /// Its blocks are announced (no `disableBGPExport`).
    pub export: bool,
}

impl BirdView {
    /// Computes the context for `inputs.node`.
    pub fn build(inputs: &Inputs) -> Result<BirdView, ViewError> {
        let me = inputs
            .this_node()
            .ok_or_else(|| ViewError::NoNode(inputs.node.clone()))?;
        let net = me
            .ipv4
            .ok_or_else(|| ViewError::NoAddress(inputs.node.clone()))?;
        let my_ip = net.addr();
        let as_number = inputs.as_of(me);
        let mut notes: Vec<String> = inputs
            .skipped
            .iter()
            .map(|s| format!("skipped: {s}"))
            .collect();
        let (sessions, peer_notes) = peerings(inputs, me, my_ip);
        notes.extend(peer_notes);
        let peers = sessions
            .iter()
            .map(|p| {
                let ibgp = p.as_number == as_number;
                let mut name = format!("{}_{}", p.origin.prefix(), underscored(p.ip));
                if let Some(port) = p.port {
                    name.push_str(&format!("_port_{port}"));
                }
                let rr_client = ibgp
                    && me
                        .rr_cluster_id
                        .is_some_and(|id| p.rr_cluster_id != Some(id));
                let what = match &p.node {
                    Some(node) => format!("node {node}"),
                    None => "external peer".to_string(),
                };
                let what = format!("{what}, {}", if ibgp { "iBGP" } else { "eBGP" });
                PeerView {
                    name,
                    ip: p.ip.to_string(),
                    port: p.port,
                    as_number: p.as_number,
                    ibgp,
                    passive: p.origin == Origin::Mesh && p.ip > my_ip,
                    rr_client,
                    next_hop_keep: !ibgp && p.keep_next_hop,
                    source_address: p.use_node_ip,
                    description: format!("{what}; from {}", p.reasons.join(", ")),
                }
            })
            .collect();
        let severity = inputs
            .node_config
            .log_severity()
            .or(inputs.cluster_config.log_severity())
            .unwrap_or_default();
        let (log_classes, debug) = logging(severity);
        let pools: Vec<PoolView> = inputs.pools.iter().map(pool_view).collect();
        let pool_ranges = inputs
            .pools
            .iter()
            .map(|p| {
                let lo = p.cidr.prefix_len();
                let hi = p.block_size.max(lo);
                format!("{}{{{lo},{hi}}}", p.cidr)
            })
            .collect();
        let blocks = blocks(inputs);
        let announced = blocks
            .iter()
            .filter(|b| b.announced)
            .map(|b| b.cidr.clone())
            .collect();
        Ok(BirdView {
            node: inputs.node.clone(),
            router_id: my_ip.to_string(),
            as_number,
            subnet: net.trunc().to_string(),
            rr_cluster_id: me.rr_cluster_id.map(|id| id.to_string()),
            log_classes: log_classes.to_string(),
            debug: debug.to_string(),
            log_severity: format!("{severity:?}"),
            peers,
            blocks,
            announced,
            pools,
            pool_ranges,
            notes,
        })
    }
}

/// `10_0_0_2` for a protocol name.
fn underscored(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "_")
}

/// BIRD's log classes and protocol debug flags for a Calico log level.
fn logging(severity: LogSeverity) -> (&'static str, &'static str) {
    match severity {
        LogSeverity::Debug => ("all", "all"),
        LogSeverity::Info => (
            "{ trace, info, remote, warning, error, auth, fatal, bug }",
            "{ states }",
        ),
        LogSeverity::Warning => ("{ warning, error, auth, fatal, bug }", "off"),
        LogSeverity::Error => ("{ error, auth, fatal, bug }", "off"),
        LogSeverity::Fatal | LogSeverity::None => ("{ fatal, bug }", "off"),
    }
}

fn pool_view(pool: &PoolInfo) -> PoolView {
    let (mode, kernel) = if pool.vxlan != EncapMode::Never {
        (format!("vxlanMode {}", pool.vxlan), "felix")
    } else {
        let kernel = match pool.ipip {
            EncapMode::Always => "felix",
            EncapMode::CrossSubnet => "cross_subnet",
            EncapMode::Never => "native",
        };
        (format!("ipipMode {}", pool.ipip), kernel)
    };
    PoolView {
        name: pool.name.clone(),
        cidr: pool.cidr.to_string(),
        block_size: pool.block_size,
        mode,
        kernel: kernel.to_string(),
        disabled: pool.disabled,
        export: !pool.disable_bgp_export,
    }
}

/// This node's blocks, each with whether it is announced and why.
fn blocks(inputs: &Inputs) -> Vec<BlockView> {
    let pool_of = |cidr: Ipv4Net| inputs.pools.iter().find(|p| p.cidr.contains(&cidr));
    inputs
        .affinities
        .iter()
        .map(|a| {
            let state = if a.state.is_empty() {
                "confirmed"
            } else {
                a.state.as_str()
            };
            let not = |why: String| (false, why);
            let (announced, note) = if a.deleted {
                not("affinity deleted".into())
            } else if state != "confirmed" {
                not(format!("affinity {state}"))
            } else if a.cidr.prefix_len() == 32 {
                not("a /32 block is never announced".into())
            } else {
                match pool_of(a.cidr) {
                    None => not("not in any IPv4 pool".into()),
                    Some(p) if p.disable_bgp_export => {
                        not(format!("pool {} has disableBGPExport", p.name))
                    }
                    Some(p) if p.disabled => (
                        true,
                        format!("pool {}, disabled: no new blocks, this one stays", p.name),
                    ),
                    Some(p) => (true, format!("pool {}", p.name)),
                }
            };
            BlockView {
                cidr: a.cidr.to_string(),
                announced,
                note,
            }
        })
        .collect()
}
