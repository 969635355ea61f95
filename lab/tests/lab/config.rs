//! FelixConfiguration while felix runs (issue 6): a change to `node.<name>` that changes an
//! effective setting makes felix restart itself; the new process adopts the pinned dataplane
//! with the configured map size (entries copied) and serves on the configured port.

use std::time::Duration;

use anyhow::{Result, ensure};
use lab::{etcd, names};
use serde_json::json;

use crate::support::{poll_until, with_lab};

const FELIX_CONFIGURATIONS: &str = "/calico/resources/v3/projectcalico.org/felixconfigurations";

#[test]
fn a_felix_configuration_change_restarts_felix_with_the_new_map_size() -> Result<()> {
    with_lab(|lab| {
        let ns = names::host_ns(lab.id(), 1);
        let node = lab.host(1)?.node.clone();
        let log = lab.host(1)?.felix_log.clone();
        let (p1, remote) = (lab.pod(1, 1)?.clone(), lab.pod(2, 1)?.clone());
        let metrics = |port: u16| -> Result<String> {
            let url = format!("http://127.0.0.1:{port}/metrics");
            let out = lab.exec_in(&ns, &["curl", "-s", "--max-time", "2", &url])?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let capacity = "felix_map_capacity{map=\"felix_routes_v1\"}";
        ensure!(metrics(9091)?.contains(&format!("{capacity} 65536")));
        let routes_before = lab.routes(1)?.routes.len();

        let resource = json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": format!("node.{node}")},
            "spec": {"bpfMapSizeRoute": 1024, "prometheusMetricsPort": 9191,
                     "chainInsertMode": "Append"}});
        etcd::put_json(
            lab.state(),
            &format!("{FELIX_CONFIGURATIONS}/node.{node}"),
            &resource,
        )?;
        let (_, took) = poll_until(
            Duration::from_secs(30),
            "restarted with the new size",
            || {
                let text = metrics(9191)?;
                Ok(if text.contains(&format!("{capacity} 1024")) {
                    Ok(())
                } else {
                    Err(format!("port 9191 says: {}", text.lines().count()))
                })
            },
        )?;
        println!("felix restarted and serves the new map size after {took:?}");
        let text = std::fs::read_to_string(&log)?;
        ensure!(
            text.contains("FelixConfiguration changed: restarting to apply it"),
            "no restart in the log"
        );
        ensure!(
            text.contains("pinned map replaced by one of the configured size"),
            "no map replacement in the log"
        );
        ensure!(lab.routes(1)?.routes.len() == routes_before, "routes kept");
        let (stats, out) = lab.ping(&p1, remote.ip, 3)?;
        ensure!(stats.received == 3, "pods still talk across hosts: {out}");
        Ok(())
    })
}
