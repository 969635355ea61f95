//! Pod addresses from Calico IPAM in etcd, through [`calico::ipam`] (Calico's block
//! format, claims by transaction, assignment by compare-and-swap):
//! - the usable pools are the IPPools in etcd that are enabled, IPv4, for workloads
//!   (`allowedUses` empty or with `Workload`) and whose `nodeSelector` matches the Node's
//!   labels, narrowed and ordered by `ipam.ipv4_pools` when the configuration has it;
//! - an address comes from a block affine to the node, under the container's handle; when the
//!   node has no block with room, it claims the first free block of the first pool that has
//!   one (as `felix ipam assign` does, the address may come from any block affine to the node:
//!   `ipv4_pools` chooses the pools new blocks are claimed from);
//! - an ADD that is retried gets the address its handle already holds;
//! - release frees every address of a handle, checking the handle under compare-and-swap.

use std::{collections::BTreeMap, net::Ipv4Addr};

use calico::{
    etcd_access,
    ipam::{self, Block, IpamError},
    model::{self, Kind, Resource},
    selector::Selector,
};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnet::{IpNet, Ipv4Net};

const MAX_ATTEMPTS: usize = 16;

/// Errors of IPAM for a pod.
#[derive(Debug, thiserror::Error)]
pub enum PodIpamError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("ipam.ipv4_pools: {0}")]
    UnknownPool(String),
    #[error("no usable IPv4 IPPool for node {0} (enabled, for workloads, nodeSelector matching)")]
    NoPool(String),
    #[error("no free block left in pools {0}")]
    Exhausted(String),
    #[error("{0}")]
    Encode(String),
}

/// A pool blocks are claimed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub cidr: Ipv4Net,
    pub block_size: u8,
}

/// An IPPool read from etcd, with whether this node may use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEntry {
    pub pool: Pool,
    pub usable: bool,
    /// Its `ipipMode` is not `Never`: pods need room for the IPIP header.
    pub ipip: bool,
}

/// Whether IPPool `spec` serves workloads on a node with `labels`.
fn usable(spec: &model::IpPoolSpec, labels: &BTreeMap<String, String>) -> bool {
    let for_workloads =
        spec.allowed_uses.is_empty() || spec.allowed_uses.iter().any(|u| u == "Workload");
    let selected = match spec.node_selector.as_deref() {
        None => true,
        Some(text) => Selector::parse(text).is_ok_and(|s| s.matches(labels, true)),
    };
    !spec.disabled && for_workloads && selected
}

/// The pools to use, from every IPv4 pool in etcd and the configuration's `ipv4_pools` (names
/// or CIDRs, in the order to try them); every usable pool in name order when it is empty.
pub fn choose_pools(
    node: &str,
    entries: &[PoolEntry],
    wanted: &[String],
) -> Result<Vec<Pool>, PodIpamError> {
    let mut pools = Vec::new();
    if wanted.is_empty() {
        pools.extend(entries.iter().filter(|e| e.usable).map(|e| e.pool.clone()));
    }
    for w in wanted {
        let cidr = w.parse::<Ipv4Net>().ok();
        let Some(entry) = entries
            .iter()
            .find(|e| e.pool.name == *w || Some(e.pool.cidr) == cidr)
        else {
            return Err(PodIpamError::UnknownPool(format!(
                "no IPv4 IPPool is named or has CIDR {w:?}"
            )));
        };
        if !entry.usable {
            return Err(PodIpamError::UnknownPool(format!(
                "IPPool {} ({}) is disabled, not for workloads or not for node {node}",
                entry.pool.name, entry.pool.cidr
            )));
        }
        pools.push(entry.pool.clone());
    }
    if pools.is_empty() {
        return Err(PodIpamError::NoPool(node.to_string()));
    }
    Ok(pools)
}

/// Every IPv4 IPPool in etcd, by name, with whether `node` may use it. Values that do not parse
/// are skipped (felix skips them too).
pub async fn pool_entries(client: &mut Client, node: &str) -> Result<Vec<PoolEntry>, PodIpamError> {
    let node_key = model::key_for(Kind::Node, None, node);
    let labels = match client.get(node_key.as_str(), None).await?.kvs().first() {
        Some(kv) => Resource::from_etcd(&node_key, kv.value())
            .map(|r| r.metadata().labels.clone())
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let prefix = model::prefix_of(Kind::IpPool, None);
    let response = etcd_access::kv(client)
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut entries = Vec::new();
    for kv in response.kvs() {
        let key = kv.key_str().unwrap_or_default();
        let Ok(Resource::IpPool(pool)) = Resource::from_etcd(key, kv.value()) else {
            continue;
        };
        let IpNet::V4(cidr) = pool.spec.cidr.network() else {
            continue;
        };
        entries.push(PoolEntry {
            usable: usable(&pool.spec, &labels),
            ipip: pool.spec.ipip() != model::EncapMode::Never,
            pool: Pool {
                name: pool.metadata.name.clone(),
                cidr,
                block_size: pool.spec.block_size(),
            },
        });
    }
    entries.sort_by(|a, b| a.pool.name.cmp(&b.pool.name));
    Ok(entries)
}

/// Every block with its key and revision.
async fn blocks(client: &mut Client) -> Result<Vec<(String, i64, Block)>, PodIpamError> {
    let response = etcd_access::kv(client)
        .get(ipam::BLOCKS, Some(GetOptions::new().with_prefix()))
        .await?;
    let mut out = Vec::new();
    for kv in response.kvs() {
        let key = kv.key_str().unwrap_or_default().to_string();
        let block = Block::from_etcd(&key, kv.value())?;
        out.push((key, kv.mod_revision(), block));
    }
    Ok(out)
}

/// The addresses `handle` holds, in any block.
pub async fn addresses_of(
    client: &mut Client,
    handle: &str,
) -> Result<Vec<Ipv4Addr>, PodIpamError> {
    Ok(blocks(client)
        .await?
        .iter()
        .flat_map(|(_, _, b)| b.addresses_of(handle))
        .collect())
}

/// An address for `handle` on `node`: the one it already holds, else the next free one of the
/// node's blocks, claiming a block of `pools` when none has room.
pub async fn assign(
    client: &mut Client,
    node: &str,
    handle: &str,
    attributes: BTreeMap<String, String>,
    pools: &[Pool],
) -> Result<Ipv4Addr, PodIpamError> {
    if let Some(ip) = addresses_of(client, handle).await?.first() {
        return Ok(*ip);
    }
    for _ in 0..MAX_ATTEMPTS {
        match ipam::assign(client, node, handle, attributes.clone()).await {
            Ok(ip) => return Ok(ip),
            Err(IpamError::NoFreeAddress(_)) => {
                claim(client, node, pools).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(IpamError::Contended(format!("the blocks of node {node}")).into())
}

/// Claims a block of the first pool in `pools` that has one free.
async fn claim(client: &mut Client, node: &str, pools: &[Pool]) -> Result<Ipv4Net, PodIpamError> {
    for pool in pools {
        match ipam::claim(client, node, pool.cidr, pool.block_size).await {
            Ok(block) => return Ok(block),
            Err(IpamError::PoolFull { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let names: Vec<String> = pools.iter().map(|p| p.cidr.to_string()).collect();
    Err(PodIpamError::Exhausted(names.join(", ")))
}

/// Frees every address of `handle` and deletes its handle document; returns what was freed
/// (nothing when the handle holds nothing: release is idempotent).
pub async fn release(client: &mut Client, handle: &str) -> Result<Vec<Ipv4Addr>, PodIpamError> {
    let mut released = Vec::new();
    'attempt: for _ in 0..MAX_ATTEMPTS {
        for (key, revision, mut block) in blocks(client).await? {
            let ips = block.addresses_of(handle);
            if ips.is_empty() {
                continue;
            }
            for ip in &ips {
                block.release(*ip);
            }
            let value =
                serde_json::to_string(&block).map_err(|e| PodIpamError::Encode(e.to_string()))?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::put(key.as_str(), value, None)]);
            if !client.txn(txn).await?.succeeded() {
                continue 'attempt;
            }
            released.extend(ips);
        }
        client.delete(ipam::handle_key(handle), None).await?;
        return Ok(released);
    }
    Err(IpamError::Contended(format!("handle {handle}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> model::IpPoolSpec {
        serde_json::from_value(json).unwrap()
    }

    fn entry(name: &str, cidr: &str, usable: bool) -> PoolEntry {
        PoolEntry {
            pool: Pool {
                name: name.into(),
                cidr: cidr.parse().unwrap(),
                block_size: 26,
            },
            usable,
            ipip: true,
        }
    }

    #[test]
    fn pools_serve_workloads_on_selected_nodes() {
        let labels: BTreeMap<String, String> = [("zone".to_string(), "a".to_string())].into();
        assert!(usable(
            &spec(serde_json::json!({"cidr": "10.0.0.0/16"})),
            &labels
        ));
        for bad in [
            serde_json::json!({"cidr": "10.0.0.0/16", "disabled": true}),
            serde_json::json!({"cidr": "10.0.0.0/16", "allowedUses": ["Tunnel"]}),
            serde_json::json!({"cidr": "10.0.0.0/16", "nodeSelector": "zone == 'b'"}),
            serde_json::json!({"cidr": "10.0.0.0/16", "nodeSelector": "(("}),
        ] {
            assert!(!usable(&spec(bad.clone()), &labels), "{bad}");
        }
        let good = spec(serde_json::json!({"cidr": "10.0.0.0/16",
            "allowedUses": ["Workload", "Tunnel"], "nodeSelector": "zone == 'a'"}));
        assert!(usable(&good, &labels));
    }

    #[test]
    fn configured_pools_narrow_and_order() {
        let entries = [
            entry("a", "10.1.0.0/16", true),
            entry("b", "10.2.0.0/16", true),
            entry("off", "10.3.0.0/16", false),
        ];
        let names = |pools: Vec<Pool>| pools.into_iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(names(choose_pools("n", &entries, &[]).unwrap()), ["a", "b"]);
        let wanted = ["10.2.0.0/16".to_string(), "a".to_string()];
        assert_eq!(
            names(choose_pools("n", &entries, &wanted).unwrap()),
            ["b", "a"]
        );
        let e = choose_pools("n", &entries, &["10.9.0.0/16".into()]).unwrap_err();
        assert!(matches!(e, PodIpamError::UnknownPool(_)), "{e}");
        let e = choose_pools("n", &entries, &["off".into()]).unwrap_err();
        assert!(e.to_string().contains("disabled"), "{e}");
        let e = choose_pools("n", &entries[2..], &[]).unwrap_err();
        assert!(matches!(e, PodIpamError::NoPool(_)), "{e}");
    }
}
