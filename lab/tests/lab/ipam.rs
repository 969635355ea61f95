//! `felix ipam` against the lab's etcd.

use anyhow::{Context, Result, ensure};
use lab::felix;
use lab::{Lab, calico, ipam};

use crate::support::{felix_in_h1, with_lab};

/// The lab's pods got their addresses from `felix ipam` (a block claimed per host, an address
/// assigned per pod under Calico's handle), which `felix ipam show` and the handle keys confirm.
fn lab_ipam_is_felixs(lab: &Lab) -> Result<()> {
    let st = lab.state();
    let blocks = felix::ipam::show(lab.felix_bin(), &lab.node(1), &st.etcd_url)?;
    for host in &st.hosts {
        let block = blocks
            .iter()
            .find(|b| b.cidr == host.block)
            .with_context(|| format!("no block {} in `felix ipam show`", host.block))?;
        let affinity = format!("host:{}", host.node);
        ensure!(
            block.affinity.as_deref() == Some(affinity.as_str()) && block.used() == host.pods.len(),
            "block {} of {}: {block:?}",
            host.block,
            host.node
        );
        let aff_key = format!(
            "/calico/ipam/v2/host/{}/ipv4/block/{}",
            host.node,
            lab::names::cidr_key(&host.block)
        );
        ensure!(lab.etcd_get(&aff_key)?.is_some(), "no affinity {aff_key}");
        let base = ipam::nth_address(&host.block, 0)?;
        for pod in &host.pods {
            let ordinal = usize::try_from(u32::from(pod.ip) - u32::from(base))?;
            let handle = calico::ipam_handle(pod);
            ensure!(
                block.handle_at(ordinal) == Some(handle.as_str()),
                "{} ({}) is not held by {handle} in {block:?}",
                pod.name,
                pod.ip
            );
            let key = format!("/calico/ipam/v2/handle/{handle}");
            ensure!(lab.etcd_get(&key)?.is_some(), "no handle {key}");
        }
    }
    Ok(())
}

/// `felix ipam` against the lab's real etcd: the lab's own pods came from it; two nodes claiming
/// at once get different blocks (none of the lab's), each with its affinity; an address assigned
/// from the claimed block is released once, and a second release is refused.
#[test]
fn ipam_claims_blocks_by_transaction_and_assigns_and_releases() -> Result<()> {
    with_lab(|lab| {
        let lab: &Lab = lab;
        lab_ipam_is_felixs(lab)?;
        let pool = lab::names::POOL_CIDR;
        let (n1, n2) = (lab.node(1), lab.node(2));
        let claims: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = [n1.as_str(), n2.as_str()]
                .into_iter()
                .map(|node| {
                    scope.spawn(move || {
                        felix_in_h1(lab, &["ipam", "claim", "--node", node, "--pool", pool])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    let out = h
                        .join()
                        .map_err(|_| anyhow::anyhow!("claim thread panicked"))??;
                    ensure!(
                        out.status.success(),
                        "claim: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
                })
                .collect::<Result<Vec<_>>>()
        })?;
        ensure!(claims[0] != claims[1], "both nodes got {}", claims[0]);
        for (node, block) in [(&n1, &claims[0]), (&n2, &claims[1])] {
            ensure!(
                lab.state().hosts.iter().all(|h| h.block != *block),
                "{node} got a block that was already taken: {block}"
            );
            let key_block = block.replace('/', "-");
            let stored = lab
                .etcd_get(&format!(
                    "/calico/ipam/v2/assignment/ipv4/block/{key_block}"
                ))?
                .context("block written")?;
            ensure!(
                stored.contains(&format!("\"affinity\":\"host:{node}\"")),
                "{stored}"
            );
            ensure!(
                lab.etcd_get(&format!(
                    "/calico/ipam/v2/host/{node}/ipv4/block/{key_block}"
                ))?
                .is_some(),
                "affinity of {node} to {block} missing"
            );
        }
        let out = felix_in_h1(
            lab,
            &[
                "ipam",
                "assign",
                "--node",
                &n1,
                "--handle",
                "k8s-pod-network.test",
                "--attr",
                "pod=test",
            ],
        )?;
        ensure!(
            out.status.success(),
            "assign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ip: std::net::Ipv4Addr = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        // The first of n1's blocks with a free address: its lab block (pods use 2 of 64).
        let lab_block = &lab.host(1)?.block;
        ensure!(
            ipam::in_cidr(ip, lab_block)?,
            "{ip} not in {n1}'s first block {lab_block} (new block {})",
            claims[0]
        );
        ensure!(
            lab.etcd_get("/calico/ipam/v2/handle/k8s-pod-network.test")?
                .is_some(),
            "handle missing"
        );
        let ip = ip.to_string();
        let out = felix_in_h1(lab, &["ipam", "release", "--ip", &ip])?;
        ensure!(
            out.status.success(),
            "release: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            lab.etcd_get("/calico/ipam/v2/handle/k8s-pod-network.test")?
                .is_none(),
            "handle left behind"
        );
        let again = felix_in_h1(lab, &["ipam", "release", "--ip", &ip])?;
        ensure!(!again.status.success(), "a second release succeeded");
        ensure!(String::from_utf8_lossy(&again.stderr).contains("is not allocated"));
        Ok(())
    })
}
