//! felix restarted under traffic adopts its pinned maps and links.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::cmd;
use lab::{Iperf, Lab, LabOptions, traffic};

use crate::support::{XDP_BOUND, assert_gone};

/// `bpftool -j <object> show pinned <path>` as JSON.
fn bpftool_show(object: &str, path: &std::path::Path) -> Result<serde_json::Value> {
    let out = Command::new("bpftool")
        .args(["-j", object, "show", "pinned"])
        .arg(path)
        .output()
        .context("run bpftool")?;
    ensure!(
        out.status.success(),
        "bpftool {object} show pinned {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("bpftool JSON")
}

/// (pin name, map id) of each pinned map.
type MapIds = Vec<(String, u64)>;

/// (pin name, link id, program id) of each pinned link.
type LinkIds = Vec<(String, u64, u64)>;

/// Map ids of every pinned map and (link id, program id) of every pinned link of a node.
fn pinned_ids(pin_dir: &std::path::Path) -> Result<(MapIds, LinkIds)> {
    let mut maps = Vec::new();
    let mut links = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(pin_dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names.iter().filter(|n| n.starts_with("felix_")) {
        let json = bpftool_show("map", &pin_dir.join(name))?;
        maps.push((name.clone(), json["id"].as_u64().context("map id")?));
    }
    let mut link_names: Vec<_> = std::fs::read_dir(pin_dir.join("links"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    link_names.sort();
    for name in link_names {
        let json = bpftool_show("link", &pin_dir.join("links").join(&name))?;
        links.push((
            name,
            json["id"].as_u64().context("link id")?,
            json["prog_id"].as_u64().context("prog id")?,
        ));
    }
    Ok((maps, links))
}

/// felix on h1 is killed with SIGKILL and started again while a TCP flow runs from h1-p1 to
/// h2-p1: the flow completes, and the new felix adopts the pinned state: the same maps (ids) and
/// the same links (ids) now running newly loaded programs. An upgrade's leftover (a pinned map
/// of an older layout version, `felix_ep_v1`) is removed once the new programs are attached.
#[test]
fn felix_restart_keeps_flows_and_adopts_pinned_maps_and_links() -> Result<()> {
    let mut lab = Lab::up(LabOptions::default())?;
    let result = (|| -> Result<()> {
        let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/felix/{}", lab.node(1)));
        // A deny list entry (an address nobody uses), so that the uplink carries XDP and its
        // pinned link is adopted too.
        lab.xdp_deny(1, "10.99.0.1/32", true)?;
        lab.wait_uplink_xdp(1, true, XDP_BOUND)?;
        let (maps_before, links_before) = pinned_ids(&pin_dir)?;
        // felix-common's maps::PINNED: 12 forwarding (counters, counter cache, NAT origins,
        // fragments, conntrack cleaner state and per-endpoint counts), 1 failsafe, 5 policy and
        // 3 trace maps.
        ensure!(
            maps_before.len() == 21,
            "expected 21 pinned maps: {maps_before:?}"
        );
        ensure!(
            links_before.len() == 2 * 2 + 3,
            "expected TC in/out on two cali and TC in/out + XDP on eth0: {links_before:?}"
        );
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        let flow = std::thread::spawn(move || {
            traffic::iperf(
                &p1.ns,
                &remote.ns,
                &remote.ip.to_string(),
                Iperf::Tcp { seconds: 6 },
            )
        });
        std::thread::sleep(Duration::from_millis(1500));
        let old_layout = pin_dir.join("felix_ep_v1");
        cmd::run(Command::new("bpftool").args([
            "map",
            "create",
            &old_layout.to_string_lossy(),
            "type",
            "hash",
            "key",
            "4",
            "value",
            "12",
            "entries",
            "16",
            "name",
            "felix_ep_v1",
        ]))?;
        let restarted = lab.restart_felix(1);
        let report = flow
            .join()
            .map_err(|_| anyhow::anyhow!("iperf3 thread panicked"))??;
        restarted?;
        ensure!(
            report.received_bytes > 0 && report.sent_bytes > 0,
            "the flow across the restart moved no data: {report:?}"
        );
        ensure!(
            !old_layout.exists(),
            "the superseded map {} is still pinned",
            old_layout.display()
        );
        let (maps_after, links_after) = pinned_ids(&pin_dir)?;
        ensure!(
            maps_after == maps_before,
            "maps were recreated: {maps_before:?} -> {maps_after:?}"
        );
        ensure!(
            links_after.len() == links_before.len(),
            "{links_before:?} -> {links_after:?}"
        );
        for ((name, link, prog), (name_after, link_after, prog_after)) in
            links_before.iter().zip(&links_after)
        {
            ensure!(
                name == name_after && link == link_after,
                "link {name} was replaced: {link} -> {link_after}"
            );
            ensure!(
                prog != prog_after,
                "link {name} still runs the old program {prog}"
            );
        }
        Ok(())
    })();
    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    lab.teardown()?;
    assert_gone(&id, &processes);
    result
}
