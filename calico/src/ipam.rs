//! Calico IPAM in etcd, in Calico's own block format: a node claims a block of a pool with an
//! etcd transaction (never read-then-write), then assigns and releases addresses in it by
//! compare-and-swap on the block's revision.
//!
//! Keys: blocks `/calico/ipam/v2/assignment/ipv4/block/<net>-<len>`, affinities
//! `/calico/ipam/v2/host/<node>/ipv4/block/<net>-<len>`, handles `/calico/ipam/v2/handle/<id>`.

use std::{collections::BTreeMap, net::Ipv4Addr};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::etcd_access;

/// Prefix of every IPv4 block key.
pub const BLOCKS: &str = "/calico/ipam/v2/assignment/ipv4/block/";
/// Prefix of every node's affinity keys.
pub const AFFINITIES: &str = "/calico/ipam/v2/host/";
const MAX_ATTEMPTS: usize = 16;

/// Errors of IPAM operations.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("{key}: {reason}")]
    Malformed { key: String, reason: String },
    #[error("pool {pool} has no free /{size} block left")]
    PoolFull { pool: Ipv4Net, size: u8 },
    #[error(
        "block size /{size} does not fit pool {pool} (it must be between the pool's prefix and 32)"
    )]
    BadBlockSize { pool: Ipv4Net, size: u8 },
    #[error("node {0} has no block with a free address: claim one first (felix ipam claim)")]
    NoFreeAddress(String),
    #[error("{0} is not allocated")]
    NotAllocated(String),
    #[error("{0} kept changing under us; try again")]
    Contended(String),
}

/// One allocation's attributes, as Calico stores them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

/// An IPAM block, as Calico stores it. Unknown fields are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub cidr: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Per ordinal: the index into `attributes`, or null when free.
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals, in the order they are handed out.
    pub unallocated: Vec<usize>,
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The key path element of a CIDR (`192.168.2.0-26`).
pub fn cidr_key(cidr: Ipv4Net) -> String {
    format!("{}-{}", cidr.network(), cidr.prefix_len())
}

/// Key of a block.
pub fn block_key(cidr: Ipv4Net) -> String {
    format!("{BLOCKS}{}", cidr_key(cidr))
}

/// Key of a node's affinity to a block.
pub fn affinity_key(node: &str, cidr: Ipv4Net) -> String {
    format!("/calico/ipam/v2/host/{node}/ipv4/block/{}", cidr_key(cidr))
}

/// The CIDR of a key's path element (`192.168.2.0-26`); `None` unless it is a network address
/// with its prefix length.
pub fn parse_cidr_key(element: &str) -> Option<Ipv4Net> {
    let (addr, len) = element.rsplit_once('-')?;
    let net = Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
    (net.network() == net.addr()).then_some(net)
}

/// What an IPAM key names, with its path elements (not yet checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpamKey<'a> {
    /// `/calico/ipam/v2/assignment/ipv4/block/<cidr>`.
    Block { cidr: &'a str },
    /// `/calico/ipam/v2/host/<node>/ipv4/block/<cidr>`.
    Affinity { node: &'a str, cidr: &'a str },
}

impl<'a> IpamKey<'a> {
    /// Classifies `key`; `None` for any other key (IPv6 blocks, handles, ...).
    pub fn parse(key: &'a str) -> Option<Self> {
        let plain = |s: &str| !s.is_empty() && !s.contains('/');
        if let Some(cidr) = key.strip_prefix(BLOCKS) {
            return plain(cidr).then_some(IpamKey::Block { cidr });
        }
        let (node, cidr) = key.strip_prefix(AFFINITIES)?.split_once("/ipv4/block/")?;
        (plain(node) && plain(cidr)).then_some(IpamKey::Affinity { node, cidr })
    }
}

/// A node's affinity to a block, as Calico stores it; the node and the block come from the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affinity {
    pub node: String,
    pub cidr: Ipv4Net,
    /// `confirmed`, `pending` or `pendingDeletion`.
    pub state: String,
    pub deleted: bool,
}

#[derive(Deserialize)]
struct AffinityValue {
    #[serde(default)]
    state: String,
    #[serde(default)]
    deleted: bool,
}

fn malformed(key: &str, reason: impl Into<String>) -> IpamError {
    IpamError::Malformed {
        key: key.into(),
        reason: reason.into(),
    }
}

fn key_cidr(key: &str, element: &str) -> Result<Ipv4Net, IpamError> {
    parse_cidr_key(element)
        .ok_or_else(|| malformed(key, format!("{element:?} in the key is not a CIDR")))
}

impl Affinity {
    /// Reads the affinity stored at `key`.
    pub fn from_etcd(key: &str, value: &[u8]) -> Result<Self, IpamError> {
        let Some(IpamKey::Affinity { node, cidr }) = IpamKey::parse(key) else {
            return Err(malformed(key, "not an affinity key"));
        };
        let cidr = key_cidr(key, cidr)?;
        let value: AffinityValue =
            serde_json::from_slice(value).map_err(|e| malformed(key, e.to_string()))?;
        Ok(Affinity {
            node: node.into(),
            cidr,
            state: value.state,
            deleted: value.deleted,
        })
    }
}

/// Key of a handle.
pub fn handle_key(handle: &str) -> String {
    format!("/calico/ipam/v2/handle/{handle}")
}

impl Block {
    /// A new, empty block affine to `node`.
    pub fn new(cidr: Ipv4Net, node: &str) -> Self {
        let size = 1usize << (32 - u32::from(cidr.prefix_len()));
        Self {
            cidr,
            affinity: Some(format!("host:{node}")),
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            deleted: false,
            other: BTreeMap::new(),
        }
    }

    /// Reads the block stored at `key`: its CIDR must be the key's, and its allocations must fit it.
    pub fn from_etcd(key: &str, value: &[u8]) -> Result<Self, IpamError> {
        let Some(IpamKey::Block { cidr }) = IpamKey::parse(key) else {
            return Err(malformed(key, "not a block key"));
        };
        let cidr = key_cidr(key, cidr)?;
        let block = parse_block(key, value)?;
        if block.cidr != cidr {
            return Err(malformed(
                key,
                format!("cidr {} is not the key's {cidr}", block.cidr),
            ));
        }
        let size = 1u64 << (32 - u32::from(cidr.prefix_len()));
        if block.allocations.len() as u64 != size {
            return Err(malformed(
                key,
                format!(
                    "{} allocations for a block of {size} addresses",
                    block.allocations.len()
                ),
            ));
        }
        if let Some(ordinal) = block.unallocated.iter().find(|o| **o as u64 >= size) {
            return Err(malformed(
                key,
                format!("unallocated ordinal {ordinal} is out of the block"),
            ));
        }
        if let Some(index) = block
            .allocations
            .iter()
            .flatten()
            .find(|i| **i >= block.attributes.len())
        {
            return Err(malformed(
                key,
                format!("allocation refers to missing attribute {index}"),
            ));
        }
        Ok(block)
    }

    /// The node it is affine to (`affinity: "host:<node>"`), if any.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    /// Takes the next free address for `attribute`; `None` when the block is full.
    pub fn assign(&mut self, attribute: Attribute) -> Option<Ipv4Addr> {
        let ordinal = *self.unallocated.first()?;
        self.unallocated.remove(0);
        let index = match self.attributes.iter().position(|a| *a == attribute) {
            Some(index) => index,
            None => {
                self.attributes.push(attribute);
                self.attributes.len() - 1
            }
        };
        *self.allocations.get_mut(ordinal)? = Some(index);
        Some(self.address(ordinal))
    }

    /// Frees `ip`; returns its attribute, or `None` when it was not allocated.
    pub fn release(&mut self, ip: Ipv4Addr) -> Option<Attribute> {
        let ordinal = self.ordinal(ip)?;
        let index = self.allocations.get_mut(ordinal)?.take()?;
        self.unallocated.push(ordinal);
        let attribute = self.attributes.get(index).cloned();
        self.compact_attributes();
        attribute
    }

    /// Addresses allocated under `handle`.
    pub fn addresses_of(&self, handle: &str) -> Vec<Ipv4Addr> {
        self.allocations
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.and_then(|i| self.attributes.get(i))
                    .is_some_and(|attr| attr.handle_id.as_deref() == Some(handle))
            })
            .map(|(ordinal, _)| self.address(ordinal))
            .collect()
    }

    /// How many addresses are in use.
    pub fn used(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    fn address(&self, ordinal: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + ordinal as u32)
    }

    fn ordinal(&self, ip: Ipv4Addr) -> Option<usize> {
        self.cidr
            .contains(&ip)
            .then(|| (u32::from(ip) - u32::from(self.cidr.network())) as usize)
    }

    /// Drops attributes no allocation refers to, renumbering the references.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for index in self.allocations.iter().flatten() {
            if let Some(slot) = used.get_mut(*index) {
                *slot = true;
            }
        }
        let mut renumber = Vec::with_capacity(used.len());
        let mut next = 0;
        for keep in &used {
            renumber.push(next);
            if *keep {
                next += 1;
            }
        }
        let mut index = 0;
        self.attributes.retain(|_| {
            let keep = used[index];
            index += 1;
            keep
        });
        for allocation in self.allocations.iter_mut().flatten() {
            *allocation = renumber[*allocation];
        }
    }
}

/// The `size`-prefix blocks of `pool`, in address order.
pub fn candidate_blocks(
    pool: Ipv4Net,
    size: u8,
) -> Result<impl Iterator<Item = Ipv4Net>, IpamError> {
    if size < pool.prefix_len() || size > 32 {
        return Err(IpamError::BadBlockSize { pool, size });
    }
    pool.subnets(size)
        .map_err(|_| IpamError::BadBlockSize { pool, size })
}

fn parse_block(key: &str, value: &[u8]) -> Result<Block, IpamError> {
    serde_json::from_slice(value).map_err(|e| IpamError::Malformed {
        key: key.into(),
        reason: e.to_string(),
    })
}

fn to_json(block: &Block) -> String {
    serde_json::to_string(block).unwrap_or_default()
}

/// Claims the first free block of `pool` for `node`: the block and the node's affinity are
/// created in one transaction that fails if another node took the block meanwhile.
pub async fn claim(
    client: &mut Client,
    node: &str,
    pool: Ipv4Net,
    size: u8,
) -> Result<Ipv4Net, IpamError> {
    let taken: Vec<String> = client
        .get(
            BLOCKS,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await?
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok().map(str::to_owned))
        .collect();
    for cidr in candidate_blocks(pool, size)? {
        let key = block_key(cidr);
        if taken.contains(&key) {
            continue;
        }
        let affinity = serde_json::json!({ "state": "confirmed", "deleted": false }).to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key.as_str(), to_json(&Block::new(cidr, node)), None),
                TxnOp::put(affinity_key(node, cidr), affinity, None),
            ]);
        if client.txn(txn).await?.succeeded() {
            return Ok(cidr);
        }
    }
    Err(IpamError::PoolFull { pool, size })
}

/// The blocks affine to `node`, with their revisions.
async fn blocks_of(
    client: &mut Client,
    node: &str,
) -> Result<Vec<(String, i64, Block)>, IpamError> {
    let affinity = format!("host:{node}");
    let response = etcd_access::kv(client)
        .get(BLOCKS, Some(GetOptions::new().with_prefix()))
        .await?;
    let mut blocks = Vec::new();
    for kv in response.kvs() {
        let key = kv.key_str().unwrap_or_default().to_owned();
        let block = parse_block(&key, kv.value())?;
        if block.affinity.as_deref() == Some(affinity.as_str()) && !block.deleted {
            blocks.push((key, kv.mod_revision(), block));
        }
    }
    Ok(blocks)
}

/// Assigns an address to `handle` from a block affine to `node`.
pub async fn assign(
    client: &mut Client,
    node: &str,
    handle: &str,
    secondary: BTreeMap<String, String>,
) -> Result<Ipv4Addr, IpamError> {
    for _ in 0..MAX_ATTEMPTS {
        let blocks = blocks_of(client, node).await?;
        let Some((key, revision, mut block)) = blocks
            .into_iter()
            .find(|(_, _, b)| !b.unallocated.is_empty())
        else {
            return Err(IpamError::NoFreeAddress(node.into()));
        };
        let attribute = Attribute {
            handle_id: Some(handle.into()),
            secondary: secondary.clone(),
        };
        let Some(ip) = block.assign(attribute) else {
            continue;
        };
        let handle_doc = serde_json::json!({
            "handleID": handle,
            "block": { block.cidr.to_string(): block.addresses_of(handle).len() },
            "deleted": false
        });
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([
                TxnOp::put(key.as_str(), to_json(&block), None),
                TxnOp::put(handle_key(handle), handle_doc.to_string(), None),
            ]);
        if client.txn(txn).await?.succeeded() {
            return Ok(ip);
        }
    }
    Err(IpamError::Contended(format!("the blocks of node {node}")))
}

/// Releases `ip` (whichever block holds it).
pub async fn release(client: &mut Client, ip: Ipv4Addr) -> Result<(), IpamError> {
    for _ in 0..MAX_ATTEMPTS {
        let response = etcd_access::kv(client)
            .get(BLOCKS, Some(GetOptions::new().with_prefix()))
            .await?;
        let mut found = None;
        for kv in response.kvs() {
            let key = kv.key_str().unwrap_or_default().to_owned();
            let block = parse_block(&key, kv.value())?;
            if block.cidr.contains(&ip) {
                found = Some((key, kv.mod_revision(), block));
                break;
            }
        }
        let Some((key, revision, mut block)) = found else {
            return Err(IpamError::NotAllocated(ip.to_string()));
        };
        let attribute = block
            .release(ip)
            .ok_or_else(|| IpamError::NotAllocated(ip.to_string()))?;
        let mut ops = vec![TxnOp::put(key.as_str(), to_json(&block), None)];
        if let Some(handle) = attribute.handle_id.as_deref()
            && block.addresses_of(handle).is_empty()
        {
            ops.push(TxnOp::delete(handle_key(handle), None));
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then(ops);
        if client.txn(txn).await?.succeeded() {
            return Ok(());
        }
    }
    Err(IpamError::Contended(ip.to_string()))
}

/// Every block, for `felix ipam show`.
pub async fn all_blocks(client: &mut Client) -> Result<Vec<Block>, IpamError> {
    let response = etcd_access::kv(client)
        .get(BLOCKS, Some(GetOptions::new().with_prefix()))
        .await?;
    response
        .kvs()
        .iter()
        .map(|kv| parse_block(kv.key_str().unwrap_or_default(), kv.value()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn keys_use_calico_layout() {
        let cidr = net("192.168.2.0/26");
        assert_eq!(
            block_key(cidr),
            "/calico/ipam/v2/assignment/ipv4/block/192.168.2.0-26"
        );
        assert_eq!(
            affinity_key("h1", cidr),
            "/calico/ipam/v2/host/h1/ipv4/block/192.168.2.0-26"
        );
        assert_eq!(
            handle_key("k8s-pod-network.abc"),
            "/calico/ipam/v2/handle/k8s-pod-network.abc"
        );
    }

    #[test]
    fn assign_and_release_keep_the_block_consistent() {
        let mut block = Block::new(net("192.168.2.0/30"), "h1");
        let a = Attribute {
            handle_id: Some("a".into()),
            ..Attribute::default()
        };
        let b = Attribute {
            handle_id: Some("b".into()),
            ..Attribute::default()
        };
        assert_eq!(block.assign(a.clone()), Some(Ipv4Addr::new(192, 168, 2, 0)));
        assert_eq!(block.assign(b.clone()), Some(Ipv4Addr::new(192, 168, 2, 1)));
        assert_eq!(block.assign(a.clone()), Some(Ipv4Addr::new(192, 168, 2, 2)));
        assert_eq!(block.attributes.len(), 2, "equal attributes are shared");
        assert_eq!(block.addresses_of("a").len(), 2);
        assert_eq!(block.release(Ipv4Addr::new(192, 168, 2, 1)), Some(b));
        assert_eq!(
            block.attributes,
            vec![a.clone()],
            "an unused attribute is dropped"
        );
        assert_eq!(block.allocations, vec![Some(0), None, Some(0), None]);
        assert_eq!(
            block.release(Ipv4Addr::new(192, 168, 2, 1)),
            None,
            "double release"
        );
        assert_eq!(
            block.release(Ipv4Addr::new(10, 0, 0, 1)),
            None,
            "outside the block"
        );
        assert_eq!(block.assign(a.clone()), Some(Ipv4Addr::new(192, 168, 2, 3)));
        assert_eq!(
            block.assign(a.clone()),
            Some(Ipv4Addr::new(192, 168, 2, 1)),
            "freed ordinals come back last"
        );
        assert_eq!(block.assign(a), None, "full");
        assert_eq!(block.used(), 4);
    }

    #[test]
    fn blocks_round_trip_calicos_json_and_keep_unknown_fields() {
        let json = r#"{"cidr":"192.168.2.0/30","affinity":"host:h1","strictAffinity":false,
            "allocations":[0,null,null,null],"unallocated":[1,2,3],
            "attributes":[{"handle_id":"k8s-pod-network.p1","secondary":{"node":"h1","pod":"p1"}}],"deleted":false}"#;
        let block: Block = serde_json::from_str(json).unwrap();
        assert_eq!(block.other.get("strictAffinity"), Some(&Value::Bool(false)));
        let again: Block = serde_json::from_str(&to_json(&block)).unwrap();
        assert_eq!(again, block);
        assert_eq!(
            block.addresses_of("k8s-pod-network.p1"),
            vec![Ipv4Addr::new(192, 168, 2, 0)]
        );
    }

    #[test]
    fn keys_and_values_read_from_etcd_are_checked() {
        let cidr = net("192.168.2.0/30");
        assert_eq!(parse_cidr_key("192.168.2.0-30"), Some(cidr));
        for bad in [
            "192.168.2.1-30",
            "192.168.2.0/30",
            "300.0.0.0-8",
            "10.0.0.0-33",
            "x",
        ] {
            assert_eq!(parse_cidr_key(bad), None, "{bad}");
        }
        assert_eq!(
            IpamKey::parse(&affinity_key("h1", cidr)),
            Some(IpamKey::Affinity {
                node: "h1",
                cidr: "192.168.2.0-30"
            })
        );
        assert_eq!(
            IpamKey::parse("/calico/ipam/v2/assignment/ipv6/block/fd00::-122"),
            None
        );
        assert_eq!(IpamKey::parse(&handle_key("h")), None);

        let key = block_key(cidr);
        let good = to_json(&Block::new(cidr, "h1"));
        let block = Block::from_etcd(&key, good.as_bytes()).unwrap();
        assert_eq!(block.host(), Some("h1"));
        let other = block_key(net("192.168.2.4/30"));
        let err = Block::from_etcd(&other, good.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("not the key's"), "{err}");
        let short = good.replace("[null,null,null,null]", "[null]");
        let err = Block::from_etcd(&key, short.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("1 allocations"), "{err}");
        let dangling = good.replace("[null,null,null,null]", "[0,null,null,null]");
        assert!(Block::from_etcd(&key, dangling.as_bytes()).is_err());
        let bad_cidr = good.replace("192.168.2.0/30", "300.168.2.0/30");
        assert!(Block::from_etcd(&key, bad_cidr.as_bytes()).is_err());

        let key = affinity_key("h1", cidr);
        let affinity =
            Affinity::from_etcd(&key, br#"{"state":"confirmed","deleted":false}"#).unwrap();
        assert_eq!((affinity.node.as_str(), affinity.cidr), ("h1", cidr));
        assert_eq!(affinity.state, "confirmed");
        assert!(Affinity::from_etcd(&key, br#"{"state":5}"#).is_err());
        let bad_key = "/calico/ipam/v2/host/h1/ipv4/block/192.168.2.9-30";
        assert!(Affinity::from_etcd(bad_key, b"{}").is_err());
    }

    #[test]
    fn candidate_blocks_cover_the_pool_in_order() {
        let blocks: Vec<_> = candidate_blocks(net("192.168.0.0/24"), 26)
            .unwrap()
            .collect();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[1], net("192.168.0.64/26"));
        assert!(candidate_blocks(net("192.168.0.0/24"), 20).is_err());
    }
}
