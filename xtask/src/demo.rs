//! `cargo xtask demo`: build, bring a lab up, show traffic and counters, tear down.

use std::process::Command;

use anyhow::{Result, ensure};

use crate::lab::{Lab, LabOptions, status};
use crate::{build, cmd, felix, paths};

fn header(title: &str) {
    println!("\n=== {title} ===");
}

pub fn run() -> Result<()> {
    header("build");
    let felix_bin = build::felix()?;

    header("lab up");
    let lab = Lab::up(LabOptions {
        felix: felix_bin.clone(),
        ..LabOptions::default()
    })?;
    status::print_summary(lab.state());
    let node = lab.node(1);
    let p1 = lab.pod(1, 1)?.clone();
    let p2 = lab.pod(1, 2)?.clone();
    let remote = lab.pod(2, 1)?.clone();

    header(&format!("counters on {node} before traffic"));
    print!("{}", felix::counters_table(&felix_bin, &node)?);

    header(&format!(
        "ping {} ({}) -> {} ({}), same host",
        p1.name, p1.ip, p2.name, p2.ip
    ));
    let (stats, text) = lab.ping(&p1, p2.ip, 3)?;
    print!("{text}");
    ensure!(
        stats.received == stats.transmitted,
        "ping lost packets: {stats:?}"
    );

    header(&format!("TCP (iperf3, 1 MB) {} -> {}", p1.name, p2.name));
    print!("{}", lab.tcp_exchange(&p1, &p2)?);

    header(&format!("counters on {node} after traffic"));
    print!("{}", felix::counters_table(&felix_bin, &node)?);

    let pins = paths::pin_dir(&node);
    header(&format!("pinned maps: ls {}", pins.display()));
    print!("{}", cmd::stdout(Command::new("ls").arg("-l").arg(&pins))?);

    let cnt = pins.join("felix_cnt_v1");
    header(&format!("bpftool map dump pinned {}", cnt.display()));
    print!(
        "{}",
        cmd::stdout(
            Command::new("bpftool")
                .args(["map", "dump", "pinned"])
                .arg(&cnt)
        )?
    );

    header(&format!(
        "cross-host ping {} ({}) -> {} ({}) via kernel routes",
        p1.name, p1.ip, remote.name, remote.ip
    ));
    let (stats, text) = lab.ping(&p1, remote.ip, 3)?;
    print!("{text}");
    ensure!(
        stats.received == stats.transmitted,
        "cross-host ping lost packets: {stats:?}"
    );

    header("lab down");
    let id = lab.id().to_owned();
    lab.teardown()?;
    println!("lab {id} removed");
    Ok(())
}
