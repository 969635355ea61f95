//! felix's host integration: kernel routes, sysctls, Node registration and status.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::kroutes::{self, Check};
use lab::{calico, felixd, net};

use crate::support::{ip_in, poll_until, with_lab};

/// felix's host integration, on one lab: the kernel routes it programs (pods' /32s, the block's
/// blackhole, remote blocks via their hosts with the tunnel MTU, all `proto 80`), its resync of a
/// route deleted by hand while a foreign route stays untouched, the per-`cali*` sysctls, the
/// Node address it registers without clobbering the seeded fields, `felix status` with both
/// nodes ready and every endpoint up, an endpoint whose interface vanishes reported down, and
/// a killed felix's status expiring with its lease while the other's stays.
#[test]
fn felix_programs_routes_registers_nodes_and_reports_status() -> Result<()> {
    with_lab(|lab| {
        let st = lab.state().clone();
        let (h1, h2) = (lab.host(1)?.clone(), lab.host(2)?.clone());

        // Kernel routes, exactly as the contract says, and nothing else of felix's.
        for host in &st.hosts {
            let routes = lab.kernel_routes(host.n)?;
            let missing = kroutes::missing(&st, host, &routes, Check::Exact);
            ensure!(
                missing.is_empty(),
                "{}: felix's kernel routes: missing or wrong {missing:?}\ntable: {routes:?}",
                host.node
            );
            let extra = kroutes::unexpected(&st, host, &routes);
            ensure!(
                extra.is_empty(),
                "{}: unexpected proto 80 routes {extra:?}",
                host.node
            );
        }
        println!(
            "{} proto 80 routes:\n{}",
            h1.node,
            ip_in(&h1.ns, &["route", "show", "proto", kroutes::FELIX_PROTO])?
        );

        // Per-cali sysctls, read from the host namespace's /proc/sys.
        for host in &st.hosts {
            for pod in &host.pods {
                let c = &pod.cali;
                for (key, want) in [
                    (format!("net.ipv4.conf.{c}.proxy_arp"), "1"),
                    (format!("net.ipv4.neigh.{c}.proxy_delay"), "0"),
                    (format!("net.ipv4.conf.{c}.forwarding"), "1"),
                    (format!("net.ipv4.conf.{c}.rp_filter"), "1"),
                ] {
                    let have = net::read_sysctl(&host.ns, &key)?;
                    ensure!(
                        have == want,
                        "{}: {key} = {have}, expected {want}",
                        host.node
                    );
                }
            }
        }

        // Node registration: the detected address added, the seeded fields kept.
        for host in &st.hosts {
            let node = lab.node_resource(host.n)?;
            let (ann_key, ann_value) = calico::NODE_ANNOTATION;
            let checks = [
                (
                    "spec.bgp.ipv4Address",
                    node["spec"]["bgp"]["ipv4Address"] == calico::node_address(host).as_str(),
                ),
                (
                    "spec.bgp.asNumber",
                    node["spec"]["bgp"]["asNumber"] == calico::NODE_AS_NUMBER,
                ),
                ("labels.lab", node["metadata"]["labels"]["lab"] == lab.id()),
                (
                    "labels.kubernetes.io/hostname",
                    node["metadata"]["labels"]["kubernetes.io/hostname"] == host.node.as_str(),
                ),
                (
                    "annotation",
                    node["metadata"]["annotations"][ann_key] == ann_value,
                ),
                ("kind", node["kind"] == "Node"),
                (
                    "metadata.name",
                    node["metadata"]["name"] == host.node.as_str(),
                ),
            ];
            for (what, ok) in checks {
                ensure!(ok, "Node {}: {what} wrong: {node}", host.node);
            }
        }

        // felix status: both nodes ready, every endpoint up.
        let (status, took) = poll_until(Duration::from_secs(10), "all ready and up", || {
            let s = lab.felix_status()?;
            let mut missing = Vec::new();
            for host in &st.hosts {
                match s.node(&host.node) {
                    Some(n) if n.ready && n.last_sync.is_some() => {}
                    other => missing.push(format!("{} ready: {other:?}", host.node)),
                }
                for pod in &host.pods {
                    match s.endpoint(&host.node, &pod.name) {
                        Some(e) if e.status == "up" && e.endpoint == "eth0" => {}
                        other => missing.push(format!("{} up: {other:?}", pod.name)),
                    }
                }
            }
            Ok(if missing.is_empty() {
                Ok(s)
            } else {
                Err(missing.join("; "))
            })
        })?;
        println!("felix status: all ready and up {took:?} after the lab was ready");
        ensure!(
            status.nodes.len() == 2 && status.endpoints.len() == 4,
            "felix status lists more than the lab: {status:?}"
        );
        for n in &status.nodes {
            ensure!(
                n.dataplane.as_deref() == Some("bpf") && n.programs_loaded.unwrap_or(0) > 0,
                "node status {n:?}"
            );
        }
        let table = lab.felix_status_table(None)?;
        println!("felix status:\n{table}");
        ensure!(
            table.contains(&h1.node) && table.contains(&h2.node),
            "the table lacks a node:\n{table}"
        );
        for host in &st.hosts {
            ensure!(
                lab.etcd_get(&calico::felix_status_key(&host.node))?
                    .is_some(),
                "no {} in etcd",
                calico::felix_status_key(&host.node)
            );
        }

        // Resync: a pod route deleted by hand comes back; a foreign route stays untouched.
        let foreign = "198.51.100.0/24";
        ip_in(&h1.ns, &["route", "add", foreign, "dev", "eth0"])?;
        let foreign_added = Instant::now();
        let foreign_before = kroutes::find(&lab.kernel_routes(1)?, foreign)
            .cloned()
            .context("the foreign route was not added")?;
        ensure!(foreign_before.protocol() == "boot", "{foreign_before:?}");
        let p1 = h1.pods[0].clone();
        let p1_route = format!("{}/32", p1.ip);
        ip_in(&h1.ns, &["route", "del", &p1_route])?;
        let (_, back) = poll_until(Duration::from_secs(6), "route back", || {
            let routes = lab.kernel_routes(1)?;
            Ok(match kroutes::find(&routes, &p1_route) {
                Some(r) if r.is_felix() && r.dev.as_deref() == Some(p1.cali.as_str()) => Ok(()),
                other => Err(format!("{p1_route} on {}: {other:?}", h1.node)),
            })
        })?;
        println!("{p1_route} deleted by hand was back after {back:?}");
        let (stats, text) = lab.ping_from(&h1.ns, p1.ip, 1, &[])?;
        ensure!(stats.received == 1, "host -> pod after the resync: {text}");
        let settle = Duration::from_millis(2 * felixd::ROUTE_REFRESH_S * 1000 + 500);
        std::thread::sleep(settle.saturating_sub(foreign_added.elapsed()));
        let routes = lab.kernel_routes(1)?;
        let foreign_after = kroutes::find(&routes, foreign);
        ensure!(
            foreign_after == Some(&foreign_before),
            "foreign route {foreign} changed after {:?}: {foreign_before:?} -> {foreign_after:?}",
            foreign_added.elapsed()
        );
        ip_in(&h1.ns, &["route", "del", foreign])?;

        // An endpoint whose interface vanishes is reported down, with the interface named.
        let p2 = h1.pods[1].clone();
        ip_in(&h1.ns, &["link", "del", &p2.cali])?;
        let (down, took) = poll_until(Duration::from_secs(8), "reported down", || {
            let s = lab.felix_status()?;
            Ok(match s.endpoint(&h1.node, &p2.name) {
                Some(e)
                    if e.status == "down"
                        && e.reason.as_deref().is_some_and(|r| r.contains(&p2.cali)) =>
                {
                    Ok(e.clone())
                }
                other => Err(format!("{} after deleting {}: {other:?}", p2.name, p2.cali)),
            })
        })?;
        println!(
            "{} reported {down:?} {took:?} after its interface went",
            p2.name
        );
        let key = calico::endpoint_status_key(&h1.node, &p2.name);
        let raw = lab
            .etcd_get(&key)?
            .with_context(|| format!("no {key} in etcd"))?;
        let raw: serde_json::Value = serde_json::from_str(&raw)?;
        ensure!(raw["status"] == "down", "{key}: {raw}");
        let s = lab.felix_status()?;
        ensure!(
            s.endpoint(&h1.node, &p1.name)
                .is_some_and(|e| e.status == "up"),
            "{} should still be up: {s:?}",
            p1.name
        );

        // A felix killed -9 cannot clean up: its status goes when its lease expires.
        let prefix2 = calico::felix_status_prefix(&h2.node);
        ensure!(
            !lab.etcd_keys(&prefix2)?.is_empty(),
            "no status of {} before the kill",
            h2.node
        );
        lab.kill_felix(2)?;
        let ttl = Duration::from_secs(felixd::STATUS_TTL_S);
        let (_, gone) = poll_until(ttl + Duration::from_secs(3), "expired", || {
            let keys = lab.etcd_keys(&prefix2)?;
            Ok(if keys.is_empty() {
                Ok(())
            } else {
                Err(format!("{} still has {keys:?}", h2.node))
            })
        })?;
        println!(
            "killed felix {}: its status keys expired after {gone:?}",
            h2.node
        );
        let s = lab.felix_status()?;
        ensure!(
            s.node(&h2.node).is_none() && s.endpoints.iter().all(|e| e.node != h2.node),
            "felix status still shows {}: {s:?}",
            h2.node
        );
        ensure!(
            s.node(&h1.node).is_some_and(|n| n.ready),
            "{} lost its status: {s:?}",
            h1.node
        );
        ensure!(
            lab.etcd_get(&calico::felix_status_key(&h1.node))?.is_some(),
            "{}'s status key vanished",
            h1.node
        );
        Ok(())
    })
}
