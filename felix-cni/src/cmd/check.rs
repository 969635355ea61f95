//! CHECK: the pod's interface, address, routes and gateway neighbour, the host veth, the
//! WorkloadEndpoint (this container's, with the pod's address and MAC) and the IPAM allocation
//! are all as ADD left them; otherwise an error listing every difference.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::{
    config::NetConf,
    dataplane::{self, Netlink},
    env::CniEnv,
    error::{CniError, Code},
    etcd, ipam, mtu, names,
    netns::NetNs,
    result, verify, version, wep,
};

/// Checks the container's network; Ok when nothing differs.
pub async fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    if !version::has_check(&conf.cni_version) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "CHECK needs cniVersion 0.4.0 or later, not {}",
                conf.cni_version
            ),
        ));
    }
    let pod = super::pod_of(env)?;
    let node = conf.node_name()?;
    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::env("CNI_NETNS is missing"))?;
    let netns = NetNs::open(netns_path)?;
    let mut client = etcd::connect(&conf.etcd_access()).await?;
    let key = wep::key(&node, pod, &env.ifname);
    let Some((endpoint, _)) = wep::get(&mut client, &key).await? else {
        return Err(CniError::plugin(format!(
            "CHECK: no WorkloadEndpoint {key}"
        )));
    };
    let spec = &endpoint.spec;
    let mut problems = Vec::new();
    if spec.container_id != env.container_id {
        problems.push(format!(
            "{key} belongs to container {:?}",
            spec.container_id
        ));
    }
    let ips: Vec<Ipv4Addr> = spec
        .ip_networks
        .iter()
        .filter_map(|c| match c.0 {
            IpNet::V4(net) if net.prefix_len() == 32 => Some(net.addr()),
            _ => None,
        })
        .collect();
    let Some(&ip) = ips.first() else {
        return Err(CniError::plugin(format!(
            "CHECK: {key} has no IPv4 /32 in ipNetworks"
        )));
    };
    if let Some(prev) = &conf.prev_result {
        for net in result::prev_result_ips(prev)? {
            if net.addr() != ip {
                problems.push(format!("prevResult has {net}, the endpoint {ip}/32"));
            }
        }
    }

    let pools = ipam::pool_entries(&mut client, &node).await?;
    let mtu = mtu::pod_mtu(conf.mtu, &Netlink::host()?, &mut client, &node, &pools).await?;
    let pod_link = Netlink::in_netns(&netns)?;
    match dataplane::pod_state(&pod_link, &env.ifname).await? {
        None => problems.push(format!("no {} in {}", env.ifname, netns_path.display())),
        Some(state) => {
            problems.extend(verify::pod_problems(&state, &env.ifname, ip, mtu));
            let mac = names::format_mac(&state.link.mac);
            if !spec.mac.eq_ignore_ascii_case(&mac) {
                problems.push(format!(
                    "{key} has mac {:?}, {} has {mac}",
                    spec.mac, env.ifname
                ));
            }
        }
    }
    let host_veth = names::host_veth_name(&pod.namespace, &pod.name);
    if spec.interface_name != host_veth {
        problems.push(format!(
            "{key} has interfaceName {:?}, not {host_veth}",
            spec.interface_name
        ));
    }
    match Netlink::host()?.link(&host_veth).await? {
        None => problems.push(format!("no host interface {host_veth}")),
        Some(link) if !link.up => problems.push(format!("{host_veth} is down")),
        Some(_) => {}
    }
    let handle = names::handle_id(&conf.name, &env.container_id);
    if !ipam::addresses_of(&mut client, &handle)
        .await?
        .contains(&ip)
    {
        problems.push(format!("IPAM handle {handle} does not hold {ip}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::plugin(format!(
            "CHECK failed: {}",
            problems.join("; ")
        )))
    }
}
