//! BGP in the lab, as in a Calico cluster running BIRD:
//!
//! - every host runs BIRD configured by `bird-conf` from etcd: `bird-conf --once` writes the
//!   first file (once felix has registered the Node's address, BIRD's router ID), BIRD starts
//!   with it, then `bird-conf` follows etcd with the same `--config`/`--ctl` and a status file;
//! - a ToR router in `<id>-tor` (10.0.0.253 on the fabric, AS [`TOR_AS`]) runs BIRD with a
//!   configuration the lab writes ([`tor_config`]): a passive eBGP session per host, whatever it
//!   learns into its kernel's main table, nothing announced;
//! - etcd holds what an installer writes: the BGPConfiguration `default` (mesh on, AS 64512) and
//!   a global BGPPeer `tor` (peerIP 10.0.0.253, AS 65001), so hosts mesh with each other and each
//!   peers with the ToR (`Global_10_0_0_253`).
//!
//! The pool is `ipipMode: Always`: the hosts' BIRD puts no route into their kernels (felix routes
//! remote blocks through IPIP in BPF); only the ToR routes to the blocks natively. Lab::up waits
//! for BIRD's control sockets, not for sessions (about a second, `connect delay time 1`): tests
//! that need routes wait for them with a deadline.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::bird::{self, BirdFiles, Protocol};
pub use crate::calico::{TOR_AS, TOR_PEER, bgp_configuration, tor_peer};
use crate::kroutes::KernelRoute;
use crate::proc::{self, ProcRecord};
use crate::state::{HostState, LabState};
use crate::{calico, names, net};

/// The hosts' AS (the BGPConfiguration's and every Node's).
pub const CLUSTER_AS: u32 = calico::NODE_AS_NUMBER;
/// How long `bird-conf --once` may take (one etcd listing and `bird -p`).
const ONCE_TIMEOUT_S: u32 = 15;

/// The BGPConfiguration `default` as YAML, for `felix apply -f`.
pub fn bgp_configuration_yaml(mesh: bool) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  logSeverityScreen: Info\n  nodeToNodeMeshEnabled: {mesh}\n  asNumber: {CLUSTER_AS}\n"
    )
}

/// The BIRD protocol bird-conf names a session to `ip` (`Mesh_10_0_0_2`, `Global_10_0_0_253`).
pub fn session_name(prefix: &str, ip: Ipv4Addr) -> String {
    format!("{prefix}_{}", ip.to_string().replace('.', "_"))
}

/// A host's session to the ToR.
pub fn tor_session() -> String {
    session_name("Global", names::TOR_IP)
}

/// The ToR's session to host `n`.
pub fn tor_session_of(n: u8) -> String {
    format!("h{n}")
}

/// The ToR's BIRD configuration: router ID and session address 10.0.0.253, AS 65001; per host
/// a passive eBGP session (the hosts connect), importing everything (their blocks) and
/// exporting nothing; BGP routes go to the kernel's main table (`proto bird`).
pub fn tor_config(state: &LabState) -> String {
    let tor = names::TOR_IP;
    let mut text = format!(
        "# The lab's ToR router (written by xtask, not bird-conf): AS {TOR_AS}, an eBGP session\n\
         # with every host (they connect: their global BGPPeer `{TOR_PEER}`). What the hosts\n\
         # announce (their blocks) goes into the kernel's main table; nothing is announced.\n\
         router id {tor};\n\
         log stderr {{ info, remote, warning, error, auth, fatal, bug }};\n\n\
         protocol device {{\n  scan time 10;\n}}\n\n\
         protocol kernel {{\n  ipv4 {{\n    import none;\n    export where source = RTS_BGP;\n  }};\n}}\n\n\
         template bgp lab_host {{\n  local {tor} as {TOR_AS};\n  passive on;\n  ipv4 {{\n    import all;\n    export none;\n  }};\n  graceful restart on;\n}}\n"
    );
    for host in &state.hosts {
        text.push_str(&format!(
            "\n# {}\nprotocol bgp {} from lab_host {{\n  neighbor {} as {CLUSTER_AS};\n}}\n",
            host.node,
            tor_session_of(host.n),
            host.ip
        ));
    }
    text
}

/// The ToR's BIRD files.
pub fn tor_files(state: &LabState) -> BirdFiles {
    BirdFiles::in_dir(&state.state_dir, "tor")
}

/// Host `host`'s BIRD files.
pub fn host_files(state: &LabState, host: &HostState) -> BirdFiles {
    BirdFiles::in_dir(&state.state_dir, &format!("h{}", host.n))
}

/// bird-conf's status file on `host`.
pub fn status_file(state: &LabState, host: &HostState) -> PathBuf {
    state.state_dir.join(format!("bird-conf-h{}.json", host.n))
}

fn bird_conf_log(state: &LabState, host: &HostState) -> PathBuf {
    state.state_dir.join(format!("bird-conf-h{}.log", host.n))
}

/// The ToR's namespace on the fabric, its configuration written and its BIRD started (not
/// waited for: see [`crate::bird::wait_up`]).
pub fn start_tor(state: &LabState) -> Result<ProcRecord> {
    let ns = names::tor_ns(&state.id);
    net::build_tor(&state.fabric_ns, &ns, state.fabric_mtu)?;
    let files = tor_files(state);
    std::fs::write(&files.config, tor_config(state))
        .with_context(|| format!("writing {}", files.config.display()))?;
    bird::start(&ns, "bird tor", &files)
}

/// `bird-conf --node N --etcd-endpoints URL --config F --ctl CTL --status-file S [--once]`.
fn bird_conf_argv(bin: &Path, state: &LabState, host: &HostState, once: bool) -> Vec<String> {
    let files = host_files(state, host);
    let mut argv: Vec<String> = vec![
        bin.to_string_lossy().into_owned(),
        "--node".into(),
        host.node.clone(),
        "--etcd-endpoints".into(),
        state.etcd_url.clone(),
        "--config".into(),
        files.config.to_string_lossy().into_owned(),
        "--ctl".into(),
        files.ctl.to_string_lossy().into_owned(),
        "--status-file".into(),
        status_file(state, host).to_string_lossy().into_owned(),
    ];
    if let Some(pki) = crate::etcd_tls::for_url(&state.fabric_ns, &state.etcd_url) {
        argv.extend(crate::etcd_tls::flags(&pki));
    }
    if once {
        argv.push("--once".into());
    }
    argv
}

/// Every host's first BIRD configuration: `bird-conf --once` in each host's namespace, all at
/// once, each bounded by `timeout(1)`. Needs the Nodes' addresses (felix registers them).
pub fn write_first_configs(bin: &Path, state: &LabState) -> Result<()> {
    thread::scope(|scope| {
        let runs: Vec<_> = state
            .hosts
            .iter()
            .map(|host| {
                let argv = bird_conf_argv(bin, state, host, true);
                let ns = host.ns.as_str();
                scope.spawn(move || -> Result<()> {
                    let out = Command::new("ip")
                        .args(["netns", "exec", ns, "timeout", &ONCE_TIMEOUT_S.to_string()])
                        .args(&argv)
                        .env("RUST_LOG", "info")
                        .stdin(Stdio::null())
                        .output()
                        .with_context(|| format!("running bird-conf --once in {ns}"))?;
                    ensure!(
                        out.status.success(),
                        "bird-conf --once in {ns} failed ({}):\n{}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    Ok(())
                })
            })
            .collect();
        runs.into_iter().try_for_each(|run| {
            run.join()
                .map_err(|_| anyhow!("bird-conf --once thread panicked"))?
        })
    })
}

/// Starts `bird -f -c F -s CTL` in `host`'s namespace, with the file bird-conf wrote.
pub fn start_host_bird(state: &LabState, host: &HostState) -> Result<ProcRecord> {
    bird::start(
        &host.ns,
        &format!("bird h{}", host.n),
        &host_files(state, host),
    )
}

/// Starts the `bird-conf` daemon in `host`'s namespace (RUST_LOG=info).
pub fn start_bird_conf(bin: &Path, state: &LabState, host: &HostState) -> Result<ProcRecord> {
    proc::spawn_in_ns(
        proc::Enter::IpNetnsExec,
        &host.ns,
        &format!("bird-conf h{}", host.n),
        &bird_conf_argv(bin, state, host, false),
        &[("RUST_LOG", "info")],
        &bird_conf_log(state, host),
    )
}

/// Polls `check` every 100 ms until it gives a value; fails with its last word after `timeout`.
/// The value and how long it took.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Ok(value)) => return Ok((value, start.elapsed())),
            Ok(Err(why)) => why,
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= timeout {
            bail!("{what}: not after {timeout:?} ({last})");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The `proto bird` routes of a table.
pub(crate) fn bird_routes(routes: Vec<KernelRoute>) -> Vec<KernelRoute> {
    routes
        .into_iter()
        .filter(|r| r.protocol() == "bird")
        .collect()
}

/// `who`'s BGP sessions that are not established (or `who: no BGP session`).
pub(crate) fn not_established(who: &str, protocols: &[Protocol]) -> Vec<String> {
    let bgp: Vec<&Protocol> = protocols.iter().filter(|p| p.is_bgp()).collect();
    if bgp.is_empty() {
        return vec![format!("{who}: no BGP session")];
    }
    bgp.iter()
        .filter(|p| !p.established())
        .map(|p| format!("{who} {} {} {}", p.name, p.state, p.info))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_point_hosts_at_the_tor() {
        let (key, peer) = tor_peer();
        assert_eq!(key, "/calico/resources/v3/projectcalico.org/bgppeers/tor");
        assert_eq!(peer["spec"]["peerIP"], "10.0.0.253");
        assert_eq!(peer["spec"]["asNumber"], 65001);
        assert_eq!(peer["spec"].get("nodeSelector"), None);
        let (key, conf) = bgp_configuration(false);
        assert_eq!(
            key,
            "/calico/resources/v3/projectcalico.org/bgpconfigurations/default"
        );
        assert_eq!(conf["spec"]["nodeToNodeMeshEnabled"], false);
        assert!(bgp_configuration_yaml(true).contains("nodeToNodeMeshEnabled: true\n"));
        assert_eq!(tor_session(), "Global_10_0_0_253");
        assert_eq!(
            session_name("Mesh", Ipv4Addr::new(10, 0, 0, 2)),
            "Mesh_10_0_0_2"
        );
    }

    #[test]
    fn tor_config_has_a_passive_session_per_host() {
        let plan = LabState::plan("fx0001", None);
        let text = tor_config(&plan);
        assert!(text.contains("router id 10.0.0.253;"), "{text}");
        assert!(text.contains("local 10.0.0.253 as 65001;"), "{text}");
        assert!(text.contains("protocol bgp h1 from lab_host {\n  neighbor 10.0.0.1 as 64512;"));
        assert!(text.contains("protocol bgp h2 from lab_host {\n  neighbor 10.0.0.2 as 64512;"));
        assert!(text.contains("export where source = RTS_BGP;"));
        assert_eq!(
            status_file(&plan, &plan.hosts[1]),
            Path::new("/run/felix-lab/fx0001/bird-conf-h2.json")
        );
    }

    #[test]
    fn sessions_not_established_are_named() {
        let p = |name: &str, proto: &str, state: &str, info: &str| Protocol {
            name: name.into(),
            proto: proto.into(),
            state: state.into(),
            info: info.into(),
        };
        let all = [
            p("device1", "Device", "up", ""),
            p("Mesh_10_0_0_2", "BGP", "start", "Passive"),
            p("Global_10_0_0_253", "BGP", "up", "Established"),
        ];
        assert_eq!(
            not_established("h1", &all),
            ["h1 Mesh_10_0_0_2 start Passive"]
        );
        assert_eq!(not_established("tor", &all[..1]), ["tor: no BGP session"]);
    }
}
