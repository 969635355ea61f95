//! How a remote block is reached, decided from its IP pool's `ipipMode` as Calico decides it:
//! `Always` through IPIP, `Never` natively, `CrossSubnet` natively only when the owning host's
//! address is on this node's subnet (the prefix of this node's `spec.bgp.ipv4Address`, the
//! subnet bird-conf also compares BGP next hops with). A block in no pool is routed natively, as
//! Calico does. felix has no VXLAN: a pool with a `vxlanMode` gets that mode done with IPIP
//! (bird-conf leaves such pools to felix as well).

use std::net::Ipv4Addr;

use calico::model::{EncapMode, IpPoolSpec};
use felix_common::routes::PoolIpipMode;
use ipnet::Ipv4Net;

/// An IPv4 pool, as far as routing to its blocks and traffic leaving it care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub cidr: Ipv4Net,
    pub mode: EncapMode,
    /// `natOutgoing`: traffic from the pool to addresses outside every pool is masqueraded.
    pub nat_outgoing: bool,
}

/// The encapsulation a pool asks for: its `ipipMode`, else its `vxlanMode` (done as IPIP).
pub fn effective_mode(spec: &IpPoolSpec) -> EncapMode {
    match spec.ipip() {
        EncapMode::Never => spec.vxlan(),
        mode => mode,
    }
}

/// The mode of the pool holding `block` (pools do not overlap); [`PoolIpipMode::NoPool`] when
/// none does.
pub fn pool_mode(pools: &[Pool], block: Ipv4Net) -> PoolIpipMode {
    match pools.iter().find(|pool| pool.cidr.contains(&block)) {
        None => PoolIpipMode::NoPool,
        Some(pool) => match pool.mode {
            EncapMode::Always => PoolIpipMode::Always,
            EncapMode::Never => PoolIpipMode::Never,
            EncapMode::CrossSubnet => PoolIpipMode::CrossSubnet,
        },
    }
}

/// Whether traffic to a block under `mode`, owned by the host at `remote`, goes natively (no
/// IPIP). `local_subnet` is this node's address with its prefix; unknown, `CrossSubnet`
/// encapsulates (it cannot tell the host is near).
pub fn is_native(mode: PoolIpipMode, local_subnet: Option<Ipv4Net>, remote: Ipv4Addr) -> bool {
    match mode {
        PoolIpipMode::Always => false,
        PoolIpipMode::Never | PoolIpipMode::NoPool => true,
        PoolIpipMode::CrossSubnet => local_subnet.is_some_and(|net| net.contains(&remote)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("a CIDR")
    }

    fn spec(yaml: &str) -> IpPoolSpec {
        serde_yaml_ng::from_str(yaml).expect("a pool spec")
    }

    #[test]
    fn each_mode_decides_as_calico_does() {
        let subnet = Some(net("10.0.0.1/24"));
        let near = Ipv4Addr::new(10, 0, 0, 2);
        let far = Ipv4Addr::new(10, 0, 1, 2);
        let cases = [
            (PoolIpipMode::Always, near, false),
            (PoolIpipMode::Always, far, false),
            (PoolIpipMode::Never, near, true),
            (PoolIpipMode::Never, far, true),
            (PoolIpipMode::CrossSubnet, near, true),
            (PoolIpipMode::CrossSubnet, far, false),
            (PoolIpipMode::NoPool, far, true),
        ];
        for (mode, remote, native) in cases {
            assert_eq!(
                is_native(mode, subnet, remote),
                native,
                "{mode:?} to {remote}"
            );
        }
    }

    #[test]
    fn cross_subnet_without_a_known_subnet_encapsulates() {
        let near = Ipv4Addr::new(10, 0, 0, 2);
        assert!(!is_native(PoolIpipMode::CrossSubnet, None, near));
        // A Node address without a prefix is a /32: no other host shares it.
        assert!(!is_native(
            PoolIpipMode::CrossSubnet,
            Some(net("10.0.0.1/32")),
            near
        ));
    }

    #[test]
    fn a_block_takes_the_mode_of_the_pool_holding_it() {
        let pools = [
            Pool {
                cidr: net("192.168.0.0/16"),
                mode: EncapMode::CrossSubnet,
                nat_outgoing: false,
            },
            Pool {
                cidr: net("172.16.0.0/16"),
                mode: EncapMode::Never,
                nat_outgoing: true,
            },
        ];
        assert_eq!(
            pool_mode(&pools, net("192.168.3.0/26")),
            PoolIpipMode::CrossSubnet
        );
        assert_eq!(
            pool_mode(&pools, net("172.16.0.64/26")),
            PoolIpipMode::Never
        );
        assert_eq!(pool_mode(&pools, net("10.9.0.0/26")), PoolIpipMode::NoPool);
        assert_eq!(pool_mode(&[], net("192.168.3.0/26")), PoolIpipMode::NoPool);
    }

    #[test]
    fn the_pool_mode_is_ipip_else_vxlan_else_never() {
        let mode = |yaml| effective_mode(&spec(yaml));
        assert_eq!(
            mode("{cidr: 10.0.0.0/16, ipipMode: Always}"),
            EncapMode::Always
        );
        assert_eq!(
            mode("{cidr: 10.0.0.0/16, ipipMode: CrossSubnet, vxlanMode: Never}"),
            EncapMode::CrossSubnet
        );
        assert_eq!(
            mode("{cidr: 10.0.0.0/16, vxlanMode: CrossSubnet}"),
            EncapMode::CrossSubnet
        );
        assert_eq!(mode("{cidr: 10.0.0.0/16}"), EncapMode::Never);
    }
}
