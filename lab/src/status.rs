//! Printing labs: the summary after `lab up`, and `lab status`.

use std::path::Path;

use anyhow::Result;

use crate::felix;
use crate::state::{self, LabState};
use crate::{bgp, bird, etcd, names, net};

/// What `lab up` prints: namespaces, pods, etcd, felix processes and logs.
pub fn print_summary(st: &LabState) {
    println!("lab {} is up (state {})", st.id, st.file().display());
    println!("  namespaces: {}", st.namespaces.join(" "));
    println!(
        "  etcd: {} (in {}), log {}",
        st.etcd_url,
        st.fabric_ns,
        st.etcd_log.display()
    );
    println!(
        "  tor {} ({}/24 on eth0), AS {}: birdc -s {}",
        names::tor_ns(&st.id),
        names::TOR_IP,
        bgp::TOR_AS,
        bgp::tor_files(st).ctl.display()
    );
    println!(
        "  outside {} ({}/24 on eth0, no route to the pods)",
        names::outside_ns(&st.id),
        names::OUTSIDE_IP
    );
    for host in &st.hosts {
        println!(
            "  host {} ({}/24 on eth0), block {}, AS {}: birdc -s {}, bird-conf status {}",
            host.node,
            host.ip,
            host.block,
            bgp::CLUSTER_AS,
            bgp::host_files(st, host).ctl.display(),
            bgp::status_file(st, host).display()
        );
        for pod in &host.pods {
            println!(
                "    pod {}: ip {} mac {} host iface {}",
                pod.name,
                pod.ip,
                pod.mac.as_deref().unwrap_or("?"),
                pod.cali
            );
        }
    }
    for p in &st.processes {
        println!("  {}: pid {} log {}", p.what, p.pid, p.log.display());
    }
    println!(
        "  pins: {}",
        st.pin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// `cargo xtask lab status`: every lab with its namespaces, processes, etcd health, `felix status`
/// and counters.
pub fn print_all(felix_bin: &Path) -> Result<()> {
    let labs = state::list();
    if labs.is_empty() {
        println!("no lab (nothing under {})", crate::paths::STATE_ROOT);
    }
    let present = net::list_netns()?;
    for (id, st) in labs {
        let st = match st {
            Ok(st) => st,
            Err(e) => {
                println!("lab {id}: unreadable state: {e:#}");
                continue;
            }
        };
        let owner = match st.owner {
            None => "none (persistent)".to_owned(),
            Some(o) if o.alive() => format!("pid {} (running)", o.pid),
            Some(o) => format!("pid {} (gone: stale)", o.pid),
        };
        println!("lab {id}: owner {owner}");
        for ns in &st.namespaces {
            let mark = if present.contains(ns) {
                "present"
            } else {
                "MISSING"
            };
            println!("  netns {ns}: {mark}");
        }
        for p in &st.processes {
            let mark = if p.is_ours_and_running() {
                "alive"
            } else {
                "DEAD"
            };
            println!(
                "  {} pid {}: {mark} (log {})",
                p.what,
                p.pid,
                p.log.display()
            );
        }
        match etcd::health(&st.fabric_ns, &st.etcd_url) {
            Ok(()) => println!("  etcd {}: healthy", st.etcd_url),
            Err(e) => println!("  etcd {}: UNHEALTHY: {e:#}", st.etcd_url),
        }
        println!("  birdc show protocols (ToR):");
        match bird::birdc(&bgp::tor_files(&st).ctl, &["show", "protocols"]) {
            Ok(text) => print!("{text}"),
            Err(e) => println!("  error: {e:#}"),
        }
        if let Some(h1) = st.hosts.first() {
            println!("  felix status (from {}):", h1.ns);
            match felix::status(felix_bin, &h1.ns, &st.etcd_url, None, false) {
                Ok(table) => print!("{table}"),
                Err(e) => println!("  error: {e:#}"),
            }
        }
        for host in &st.hosts {
            println!("  felix bpf counters dump --node {}:", host.node);
            match felix::counters_table(felix_bin, &host.node) {
                Ok(table) => print!("{table}"),
                Err(e) => println!("  error: {e:#}"),
            }
        }
    }
    Ok(())
}
