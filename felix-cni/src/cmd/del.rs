//! DEL: the pod's interface, its WorkloadEndpoint (unless a newer sandbox owns it), the host
//! veth, and every address of the container's handle. Whatever is already gone is skipped, a
//! namespace that no longer exists included, so DEL can be repeated.

use crate::{
    config::NetConf,
    dataplane::Netlink,
    env::CniEnv,
    error::CniError,
    etcd, ipam, names,
    netns::NetNs,
    wep::{self, Deleted},
};

/// Tears the container's network down.
pub async fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    if let Some(path) = &env.netns {
        match NetNs::open(path) {
            Ok(netns) => {
                Netlink::in_netns(&netns)?.delete_link(&env.ifname).await?;
            }
            Err(e) if e.is_gone() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut client = etcd::connect(&conf.etcd_access()).await?;
    if let Some(pod) = &env.pod {
        let node = conf.node_name()?;
        let key = wep::key(&node, pod, &env.ifname);
        match wep::delete_if_owned(&mut client, &key, &env.container_id).await? {
            Deleted::Removed | Deleted::Absent => {
                let host_veth = names::host_veth_name(&pod.namespace, &pod.name);
                Netlink::host()?.delete_link(&host_veth).await?;
            }
            Deleted::OtherContainer(owner) => {
                eprintln!(
                    "felix-cni: {key} belongs to container {owner}: it and its interface stay"
                );
            }
        }
    }
    let handle = names::handle_id(&conf.name, &env.container_id);
    ipam::release(&mut client, &handle).await?;
    Ok(())
}
