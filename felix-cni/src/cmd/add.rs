//! ADD: address, veth, pod network, WorkloadEndpoint; on failure, what was made is undone.

use serde_json::Value;

use crate::{
    config::NetConf,
    dataplane::{self, Netlink},
    env::CniEnv,
    error::CniError,
    etcd, ipam, k8s, mtu, names,
    netns::NetNs,
    result::CniResult,
    wep,
};

/// Wires the pod and registers it; returns the result JSON.
pub async fn add(env: &CniEnv, conf: &NetConf) -> Result<Value, CniError> {
    let pod = super::pod_of(env)?;
    let node = conf.node_name()?;
    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::env("CNI_NETNS is missing"))?;
    let netns = NetNs::open(netns_path).map_err(|e| CniError::env(format!("CNI_NETNS: {e}")))?;
    let host = Netlink::host()?;
    // As Calico's plugin: with `policy.type: k8s` the pod is read before anything is made.
    let from_api = match conf.policy_k8s {
        true => k8s::pod_endpoint(conf.kubeconfig.as_deref(), pod).await?,
        false => k8s::pod::PodEndpoint {
            labels: conf.labels.clone(),
            profiles: vec![names::namespace_profile(&pod.namespace)],
            ..Default::default()
        },
    };
    let wanted_pools = match from_api.ipv4_pools.is_empty() {
        true => &conf.ipv4_pools,
        false => &from_api.ipv4_pools,
    };
    let mut client = etcd::connect(&conf.etcd_access()).await?;
    let entries = ipam::pool_entries(&mut client, &node).await?;
    let pools = ipam::choose_pools(&node, &entries, wanted_pools)?;
    let handle = names::handle_id(&conf.name, &env.container_id);
    let ip = ipam::assign(
        &mut client,
        &node,
        &handle,
        super::attributes(&node, pod),
        &pools,
    )
    .await?;

    let host_veth = names::host_veth_name(&pod.namespace, &pod.name);
    let wired = async {
        let mtu = mtu::pod_mtu(conf.mtu, &host, &mut client, &node, &entries).await?;
        dataplane::create_veth(&host, &netns, &host_veth, &env.ifname, mtu).await?;
        let pod_link = Netlink::in_netns(&netns)?;
        let link = dataplane::configure_pod(&pod_link, &env.ifname, ip).await?;
        let mac = names::format_mac(&link.mac);
        let endpoint = wep::build(&wep::Endpoint {
            node: &node,
            pod,
            ifname: &env.ifname,
            container_id: &env.container_id,
            host_veth: &host_veth,
            mac: &mac,
            ip,
            labels: &from_api.labels,
            profiles: &from_api.profiles,
            service_account_name: &from_api.service_account_name,
            ports: &from_api.ports,
            generate_name: &from_api.generate_name,
        })?;
        wep::put(&mut client, &endpoint).await?;
        Ok::<_, CniError>(mac)
    }
    .await;
    match wired {
        Ok(mac) => Ok(CniResult::for_pod(
            &host_veth,
            &env.ifname,
            &mac,
            &netns_path.to_string_lossy(),
            ip,
            conf.dns.clone(),
        )
        .to_json(&conf.cni_version)),
        Err(e) => {
            // Undo, best effort: the runtime calls DEL after a failed ADD anyway.
            let _ = host.delete_link(&host_veth).await;
            let _ = ipam::release(&mut client, &handle).await;
            Err(e)
        }
    }
}
