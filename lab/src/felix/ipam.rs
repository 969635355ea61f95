//! `felix ipam claim|assign|show`: Calico IPAM in etcd, as a user (or Calico's CNI plugin) drives
//! it. Each runs in a lab namespace, where etcd is reachable.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::run_etcd;

/// `felix ipam claim --node NODE --pool POOL --block-size SIZE`: the block felix claimed for
/// `node` (the pool's first free one), e.g. `192.168.0.0/26`.
pub fn claim(
    felix: &Path,
    ns: &str,
    etcd_url: &str,
    node: &str,
    pool: &str,
    block_size: u8,
) -> Result<String> {
    let size = block_size.to_string();
    let args = [
        "ipam",
        "claim",
        "--node",
        node,
        "--pool",
        pool,
        "--block-size",
        &size,
    ];
    let out = run_etcd(felix, ns, etcd_url, &args)?;
    let block = out.trim();
    block
        .split_once('/')
        .and_then(|(net, len)| net.parse::<Ipv4Addr>().ok().zip(len.parse::<u8>().ok()))
        .with_context(|| format!("`felix ipam claim` printed {out:?}, not a CIDR"))?;
    Ok(block.to_owned())
}

/// `felix ipam assign --node NODE --handle HANDLE --attr K=V ...`: the address felix assigned
/// (the first free one of a block affine to `node`).
pub fn assign(
    felix: &Path,
    ns: &str,
    etcd_url: &str,
    node: &str,
    handle: &str,
    attrs: &[(&str, &str)],
) -> Result<Ipv4Addr> {
    let pairs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["ipam", "assign", "--node", node, "--handle", handle];
    for pair in &pairs {
        args.extend(["--attr", pair.as_str()]);
    }
    let out = run_etcd(felix, ns, etcd_url, &args)?;
    out.trim()
        .parse()
        .with_context(|| format!("`felix ipam assign` printed {out:?}, not an address"))
}

/// One block of `felix ipam show --json` (Calico's stored block).
#[derive(Debug, Clone, Deserialize)]
pub struct Block {
    pub cidr: String,
    /// `host:<node>`.
    #[serde(default)]
    pub affinity: Option<String>,
    /// Per ordinal: the index into `attributes`, or null when free.
    pub allocations: Vec<Option<usize>>,
    pub attributes: Vec<Attribute>,
}

/// An allocation's owner: the handle and secondary attributes (`pod`, `namespace`, `node`).
#[derive(Debug, Clone, Deserialize)]
pub struct Attribute {
    #[serde(default)]
    pub handle_id: Option<String>,
    #[serde(default)]
    pub secondary: BTreeMap<String, String>,
}

impl Block {
    /// The handle that holds ordinal `ordinal`, if it is allocated.
    pub fn handle_at(&self, ordinal: usize) -> Option<&str> {
        let index = (*self.allocations.get(ordinal)?)?;
        self.attributes.get(index)?.handle_id.as_deref()
    }

    /// How many addresses are allocated.
    pub fn used(&self) -> usize {
        self.allocations.iter().flatten().count()
    }
}

/// `felix ipam show --json`: every block.
pub fn show(felix: &Path, ns: &str, etcd_url: &str) -> Result<Vec<Block>> {
    let out = run_etcd(felix, ns, etcd_url, &["ipam", "show", "--json"])?;
    serde_json::from_str(&out).with_context(|| format!("parsing `felix ipam show --json`: {out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_json_parses() -> Result<()> {
        let blocks: Vec<Block> = serde_json::from_str(
            r#"[{"cidr":"192.168.0.0/26","affinity":"host:fx1-h1","allocations":[0,1,null],
              "unallocated":[2],"attributes":[{"handle_id":"k8s-pod-network.fx1-h1-p1",
              "secondary":{"namespace":"default","node":"fx1-h1","pod":"fx1-h1-p1"}},
              {"handle_id":"k8s-pod-network.fx1-h1-p2"}],"deleted":false,"strictAffinity":false}]"#,
        )?;
        let b = &blocks[0];
        assert_eq!(b.used(), 2);
        assert_eq!(b.handle_at(0), Some("k8s-pod-network.fx1-h1-p1"));
        assert_eq!(b.handle_at(2), None);
        assert_eq!(b.handle_at(9), None);
        assert_eq!(b.attributes[0].secondary["pod"], "fx1-h1-p1");
        Ok(())
    }
}
