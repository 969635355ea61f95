//! The lab: a two-host Calico cluster in network namespaces on this machine.
//!
//! `<id>-fabric` holds bridge `br0` (10.0.0.254/24) and etcd; hosts `<id>-h1`, `<id>-h2` have an
//! uplink `eth0` (10.0.0.N/24) on it and run felix, BIRD and bird-conf; the ToR router
//! `<id>-tor` (10.0.0.253/24) runs BIRD and peers with every host (see [`bgp`]); pods
//! `<id>-hN-pM` sit behind `cali*` veths, with addresses from `felix ipam` and labels `app=hN-pM`
//! (see [`calico`]); the outside `<id>-outside` (10.0.0.200/24) is a fabric address with no route
//! to the pods (see [`outside`]). [`Lab`] is a guard: dropping it tears everything down.

pub mod bgp;
pub mod bird;
pub mod calico;
pub mod cmd;
pub mod cni;
pub mod etcd;
pub mod etcd_tls;
pub mod felix;
pub mod felixd;
pub mod ipam;
pub mod ipip;
pub mod iptables;
pub mod kroutes;
pub mod kube_proxy;
mod lab_bgp;
mod lab_etcd;
pub mod names;
pub mod net;
pub mod outside;
pub mod paths;
pub mod pcap;
pub mod policy;
pub mod probe;
pub mod proc;
pub mod state;
pub mod status;
pub mod teardown;
pub mod traffic;
pub mod udp_echo;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::felix::{ConntrackDump, CountersDump, EndpointsDump, RoutesDump, StatusDump};
pub use probe::EchoServer;
pub use proc::{Owner, ProcRecord};
pub use state::{HostState, LabState, PodInfo};
pub use teardown::Scope;
pub use traffic::{Capture, Iperf, IperfReport};

/// How to bring a lab up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The felix binary to run on each host.
    pub felix: PathBuf,
    /// `true` for `lab up`: the lab outlives this process and has no owner.
    pub persistent: bool,
    pub etcd_timeout: Duration,
    /// Until felix has its programs attached (cali* and uplink).
    pub felix_timeout: Duration,
    /// Until felix's endpoints and routes maps hold the lab's pods and remote blocks.
    pub sync_timeout: Duration,
    /// The bird-conf binary run next to BIRD on each host.
    pub bird_conf: PathBuf,
    /// Until every BIRD's control socket answers (sessions are not waited for).
    pub bird_timeout: Duration,
    /// The dataplane every felix runs (BPF unless a test asks for iptables mode).
    pub dataplane: felixd::Dataplane,
    /// The IP pool's `ipipMode` (`Always` unless a test or bench asks for native routing).
    pub pool_ipip_mode: calico::IpipMode,
    /// The fabric's MTU (uplinks, bridge, ToR); pods get it less IPIP's 20 bytes.
    pub fabric_mtu: u32,
    /// etcd over plain HTTP instead of TLS with client certificates ([`etcd_tls`]).
    pub etcd_plain_http: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            felix: paths::felix_bin(),
            persistent: false,
            etcd_timeout: Duration::from_secs(10),
            felix_timeout: Duration::from_secs(15),
            sync_timeout: Duration::from_secs(15),
            bird_conf: paths::bird_conf_bin(),
            bird_timeout: Duration::from_secs(10),
            dataplane: felixd::Dataplane::Bpf,
            pool_ipip_mode: calico::IpipMode::Always,
            fabric_mtu: names::DEFAULT_FABRIC_MTU,
            etcd_plain_http: false,
        }
    }
}

/// Outcome of a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
}

/// A running lab; tears itself down on drop unless detached.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    felix: PathBuf,
    bird_conf: PathBuf,
    armed: bool,
    /// What [`Lab::restart_felix`] starts.
    dataplane: felixd::Dataplane,
}

impl Lab {
    /// Cleans stale labs (all but those owned by a live process), then builds a new one: network,
    /// the ToR's BIRD, etcd with the Calico data, felix on each host, then BIRD and bird-conf on
    /// each host, each with a bounded readiness poll.
    pub fn up(opts: LabOptions) -> Result<Self> {
        let report = teardown::teardown_labs(Scope::Unowned);
        report.print("stale labs");
        let mut id = names::new_id()?;
        while paths::state_dir(&id).exists() || report.skipped.contains(&id) {
            id = names::new_id()?;
        }
        // Owned by us while building, so a concurrent `lab up` leaves a half-built lab alone.
        let mut state = LabState::plan(&id, Some(Owner::current()?));
        state.pool_ipip_mode = opts.pool_ipip_mode;
        state.fabric_mtu = opts.fabric_mtu;
        if opts.etcd_plain_http {
            state.etcd_url = names::etcd_plain_url();
        }
        let mut lab = Self {
            state,
            felix: opts.felix.clone(),
            bird_conf: opts.bird_conf.clone(),
            armed: true,
            dataplane: opts.dataplane,
        };
        lab.state.save()?;
        // On error `lab` drops here and tears down whatever was made.
        lab.build(&opts)?;
        if opts.persistent {
            lab.state.owner = None;
            lab.state.save()?;
        }
        Ok(lab)
    }

    fn build(&mut self, opts: &LabOptions) -> Result<()> {
        for bin in [&self.felix, &self.bird_conf] {
            if !bin.is_file() {
                bail!("{} not found (run `cargo xtask build`)", bin.display());
            }
        }
        for ns in &self.state.namespaces {
            net::add_netns(ns)?;
        }
        net::build_fabric(&self.state.fabric_ns, self.state.fabric_mtu)?;
        for host in &self.state.hosts {
            net::build_host(&self.state.fabric_ns, host, self.state.fabric_mtu)?;
        }
        net::build_outside(&self.state.fabric_ns, &self.outside_ns())?;
        self.state.save()?;
        // The ToR first: its sessions are passive, it waits for the hosts.
        let tor = bgp::start_tor(&self.state)?;
        self.track(tor.clone())?;

        std::fs::create_dir_all(&self.state.etcd_data_dir)
            .with_context(|| format!("creating {}", self.state.etcd_data_dir.display()))?;
        if etcd_tls::for_url(&self.state.fabric_ns, &self.state.etcd_url).is_some() {
            etcd_tls::create(&self.state.id)?;
        }
        let etcd = etcd::start(&self.state)?;
        self.track(etcd.clone())?;
        etcd::wait_healthy(&self.state, &etcd, opts.etcd_timeout)?;
        etcd::seed(&self.state)?;
        self.add_pods()?;

        let mut felixes = Vec::new();
        for host in self.state.hosts.clone() {
            let rec = felixd::start(&self.felix, &self.state, &host, opts.dataplane)?;
            self.track(rec.clone())?;
            felixes.push((host, rec));
        }
        for (host, rec) in &felixes {
            felixd::wait_ready(
                &self.felix,
                &self.state,
                host,
                rec,
                opts.dataplane,
                opts.felix_timeout,
                opts.sync_timeout,
            )?;
        }
        self.start_bgp(tor, opts.bird_timeout)
    }

    /// Records a process the lab started (in the state file at once, for teardown).
    fn track(&mut self, rec: ProcRecord) -> Result<()> {
        self.state.processes.push(rec);
        self.state.save()
    }

    /// BIRD driven by bird-conf on every host, once felix has registered the Nodes' addresses
    /// (the router IDs): `bird-conf --once` writes the files, BIRD starts with them, then the
    /// bird-conf daemons. Waits for every BIRD's control socket (the ToR's too), not for sessions.
    fn start_bgp(&mut self, tor: ProcRecord, timeout: Duration) -> Result<()> {
        bgp::write_first_configs(&self.bird_conf, &self.state)?;
        let mut birds = vec![(tor, bgp::tor_files(&self.state).ctl)];
        for host in self.state.hosts.clone() {
            let rec = bgp::start_host_bird(&self.state, &host)?;
            self.track(rec.clone())?;
            birds.push((rec, bgp::host_files(&self.state, &host).ctl));
            let rec = bgp::start_bird_conf(&self.bird_conf, &self.state, &host)?;
            self.track(rec)?;
        }
        for (rec, ctl) in &birds {
            bird::wait_up(rec, ctl, timeout)?;
        }
        Ok(())
    }

    /// Every host claims a block with `felix ipam claim`; then, per pod, as Calico's CNI plugin
    /// does: an address from `felix ipam assign`, the veth and the pod's network, and its
    /// WorkloadEndpoint in etcd. The state file records each step.
    fn add_pods(&mut self) -> Result<()> {
        for i in 0..self.state.hosts.len() {
            let block = ipam::claim_block(&self.felix, &self.state, &self.state.hosts[i])?;
            self.state.hosts[i].block = block;
            self.state.save()?;
        }
        for i in 0..self.state.hosts.len() {
            for p in 0..self.state.hosts[i].pods.len() {
                let host = &self.state.hosts[i];
                let ip = ipam::assign_pod(&self.felix, &self.state, host, &host.pods[p])?;
                self.state.hosts[i].pods[p].ip = ip;
                self.state.save()?;
                let host = &self.state.hosts[i];
                let mac = net::build_pod(host, &host.pods[p], self.state.pod_mtu())?;
                self.state.hosts[i].pods[p].mac = Some(mac);
                self.state.save()?;
                let host = &self.state.hosts[i];
                let (key, wep) = calico::workload_endpoint(host, &host.pods[p]);
                etcd::put_json(&self.state, &key, &wep)?;
            }
        }
        Ok(())
    }

    /// Kills host `n`'s felix with SIGKILL (no chance to clean anything up: its pinned programs
    /// stay attached, its status keys stay in etcd until their lease expires) and drops its
    /// record. Returns the killed felix's record.
    pub fn kill_felix(&mut self, n: u8) -> Result<ProcRecord> {
        let what = format!("felix h{n}");
        let index = self
            .state
            .processes
            .iter()
            .rposition(|rec| rec.what == what && rec.is_ours_and_running())
            .with_context(|| format!("no running {what} in lab {}", self.state.id))?;
        let old = self.state.processes.remove(index);
        // SAFETY: plain syscall on a pid this lab started and has just checked.
        unsafe { libc::kill(old.pid, libc::SIGKILL) };
        let problems = proc::terminate(&[old.pid], Duration::from_secs(2));
        self.state.save()?;
        if !problems.is_empty() {
            bail!("stopping {what}: {}", problems.join("; "));
        }
        Ok(old)
    }

    /// Kills host `n`'s felix with SIGKILL ([`Lab::kill_felix`]), starts a new one and waits
    /// until it is ready again. Returns the new felix's record.
    pub fn restart_felix(&mut self, n: u8) -> Result<ProcRecord> {
        self.restart_felix_as(n, self.dataplane)
    }

    /// [`Lab::restart_felix`] with `dataplane` (a switch of modes when it differs).
    pub fn restart_felix_as(&mut self, n: u8, dataplane: felixd::Dataplane) -> Result<ProcRecord> {
        self.kill_felix(n)?;
        self.start_felix(n, dataplane)
    }

    /// Starts a felix on host `n` (whose felix is not running) and waits until it is ready.
    pub fn start_felix(&mut self, n: u8, dataplane: felixd::Dataplane) -> Result<ProcRecord> {
        let host = self.host(n)?.clone();
        let rec = felixd::start(&self.felix, &self.state, &host, dataplane)?;
        self.track(rec.clone())?;
        let opts = LabOptions::default();
        felixd::wait_ready(
            &self.felix,
            &self.state,
            &host,
            &rec,
            dataplane,
            opts.felix_timeout,
            opts.sync_timeout,
        )?;
        Ok(rec)
    }

    /// Leaves the lab running after this guard is gone (for `lab up`).
    pub fn detach(mut self) -> LabState {
        self.armed = false;
        self.state.clone()
    }

    /// Tears the lab down now, failing if any step had a problem.
    pub fn teardown(mut self) -> Result<()> {
        self.armed = false;
        let problems = teardown::teardown_one(&self.state.id, Some(&self.state));
        if !problems.is_empty() {
            bail!("teardown of lab {}: {}", self.state.id, problems.join("; "));
        }
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    pub fn felix_bin(&self) -> &Path {
        &self.felix
    }

    pub fn bird_conf_bin(&self) -> &Path {
        &self.bird_conf
    }

    /// The dataplane the lab's felix runs (as last started by the lab).
    pub fn dataplane(&self) -> felixd::Dataplane {
        self.dataplane
    }

    /// The outside's namespace ([`names::OUTSIDE_IP`], no route to the pods).
    pub fn outside_ns(&self) -> String {
        names::outside_ns(&self.state.id)
    }

    /// Node name (and namespace) of host `n`.
    pub fn node(&self, n: u8) -> String {
        names::host_ns(&self.state.id, n)
    }

    /// Pod `index` of host `host`.
    pub fn pod(&self, host: u8, index: u8) -> Result<&PodInfo> {
        self.state
            .pods()
            .find(|p| p.host == host && p.index == index)
            .with_context(|| format!("lab {} has no pod {index} on host {host}", self.state.id))
    }

    /// The processes the lab started.
    pub fn processes(&self) -> &[ProcRecord] {
        &self.state.processes
    }

    /// Runs `argv` inside namespace `ns`; the output whatever the exit status.
    pub fn exec_in(&self, ns: &str, argv: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?} in {ns}"))
    }

    /// Like [`Lab::exec_in`], failing on a non-zero exit (stderr in the error).
    pub fn exec_in_checked(&self, ns: &str, argv: &[&str]) -> Result<String> {
        cmd::stdout(Command::new("ip").args(["netns", "exec", ns]).args(argv))
    }

    /// `ping -c count` from pod `from` to `to`; the packet counts (loss is not an error here).
    pub fn ping(&self, from: &PodInfo, to: Ipv4Addr, count: u32) -> Result<(PingStats, String)> {
        self.ping_from(&from.ns, to, count, &[])
    }

    /// `ping -c count [extra...] to` from namespace `ns` (a pod or a host), 0.2 s apart, 2 s
    /// deadline per reply; the packet counts (loss is not an error here).
    pub fn ping_from(
        &self,
        ns: &str,
        to: Ipv4Addr,
        count: u32,
        extra: &[&str],
    ) -> Result<(PingStats, String)> {
        let count = count.to_string();
        let to = to.to_string();
        let mut argv = vec!["ping", "-n", "-c", &count, "-i", "0.2", "-W", "2"];
        argv.extend_from_slice(extra);
        argv.push(&to);
        let out = self.exec_in(ns, &argv)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stats = parse_ping(&text).with_context(|| {
            format!(
                "no ping summary in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok((stats, text))
    }

    /// iperf3 `test` from pod `client` to pod `server`, with both ends' numbers.
    pub fn iperf(&self, client: &PodInfo, server: &PodInfo, test: Iperf) -> Result<IperfReport> {
        traffic::iperf(&client.ns, &server.ns, &server.ip.to_string(), test)
    }

    /// A tcpdump capture in namespace `ns` on `iface` (see [`Capture::start`]).
    pub fn capture(
        &self,
        ns: &str,
        iface: &str,
        filter: &str,
        count: u32,
        limit: Duration,
    ) -> Result<Capture> {
        Capture::start(ns, iface, filter, count, limit)
    }

    /// Host `n`.
    pub fn host(&self, n: u8) -> Result<&HostState> {
        self.state
            .host(n)
            .with_context(|| format!("lab {} has no host {n}", self.state.id))
    }

    /// `felix bpf counters dump --json` of host `n`.
    pub fn counters(&self, n: u8) -> Result<CountersDump> {
        felix::counters(&self.felix, &self.node(n))
    }

    /// `felix bpf endpoints dump --json` of host `n`.
    pub fn endpoints(&self, n: u8) -> Result<EndpointsDump> {
        felix::endpoints(&self.felix, &self.node(n))
    }

    /// `felix bpf routes dump --json` of host `n`.
    pub fn routes(&self, n: u8) -> Result<RoutesDump> {
        felix::routes(&self.felix, &self.node(n))
    }

    /// `felix bpf conntrack dump --json` of host `n`.
    pub fn conntrack(&self, n: u8) -> Result<ConntrackDump> {
        felix::conntrack(&self.felix, &self.node(n))
    }

    /// `felix bpf attached --json` in host `n`'s namespace: the TCX and XDP programs the
    /// kernel reports on its interfaces.
    pub fn attached(&self, n: u8) -> Result<Vec<felix::Attached>> {
        let ns = &self.host(n)?.ns;
        let felix = self.felix.to_string_lossy();
        let out = self.exec_in_checked(ns, &[&felix, "bpf", "attached", "--json"])?;
        let dump: felix::AttachedDump =
            serde_json::from_str(&out).with_context(|| format!("felix bpf attached: {out}"))?;
        Ok(dump.attached)
    }

    /// `felix bpf <what...> --node <host n>` (a table or a command's message).
    pub fn felix_cli(&self, n: u8, what: &[&str]) -> Result<String> {
        felix::run(&self.felix, &self.node(n), what)
    }

    /// The main routing table of host `n` (`ip -j route show`).
    pub fn kernel_routes(&self, n: u8) -> Result<Vec<kroutes::KernelRoute>> {
        kroutes::show(&self.host(n)?.ns)
    }

    /// `felix status --json`, run in host 1's namespace (any lab namespace reaches etcd).
    pub fn felix_status(&self) -> Result<StatusDump> {
        felix::status_json(&self.felix, &self.node(1), &self.state.etcd_url)
    }

    /// `felix status [--node N]` as a table, run in host 1's namespace.
    pub fn felix_status_table(&self, node: Option<&str>) -> Result<String> {
        felix::status(
            &self.felix,
            &self.node(1),
            &self.state.etcd_url,
            node,
            false,
        )
    }

    /// The environment the felix CLI reaches the lab's etcd with (`ETCD_CA_CERT_FILE`,
    /// `ETCD_CERT_FILE`, `ETCD_KEY_FILE`; empty for a plain-HTTP lab).
    pub fn etcd_cli_env(&self) -> Vec<(&'static str, PathBuf)> {
        etcd_tls::for_url(&self.state.fabric_ns, &self.state.etcd_url)
            .map(|pki| etcd_tls::cli_env(&pki).to_vec())
            .unwrap_or_default()
    }

    /// The value of `key` in the lab's etcd (`None` when absent).
    pub fn etcd_get(&self, key: &str) -> Result<Option<String>> {
        etcd::get(&self.state.fabric_ns, &self.state.etcd_url, key)
    }

    /// The keys under `prefix` in the lab's etcd.
    pub fn etcd_keys(&self, prefix: &str) -> Result<Vec<String>> {
        etcd::keys(&self.state.fabric_ns, &self.state.etcd_url, prefix)
    }

    /// Rewrites the pool in etcd with `ipipMode` `mode` (as `calicoctl apply` would) and records
    /// it; felix re-programs its routes from the watch.
    pub fn set_pool_ipip_mode(&mut self, mode: calico::IpipMode) -> Result<()> {
        let (key, value) = calico::ip_pool_with(mode, self.state.pool_nat_outgoing);
        etcd::put_json(&self.state, &key, &value)?;
        self.state.pool_ipip_mode = mode;
        self.state.save()
    }

    /// Rewrites the pool in etcd with `natOutgoing` `on` (as `calicoctl apply` would) and
    /// records it; felix re-syncs its nat rules from the watch.
    pub fn set_pool_nat_outgoing(&mut self, on: bool) -> Result<()> {
        let (key, value) = calico::ip_pool_with(self.state.pool_ipip_mode, on);
        etcd::put_json(&self.state, &key, &value)?;
        self.state.pool_nat_outgoing = on;
        self.state.save()
    }

    /// Host `n`'s Node resource in etcd, parsed.
    pub fn node_resource(&self, n: u8) -> Result<serde_json::Value> {
        let key = calico::node_key(&self.node(n));
        let value = self
            .etcd_get(&key)?
            .with_context(|| format!("no {key} in etcd"))?;
        serde_json::from_str(&value).with_context(|| format!("parsing {key}: {value}"))
    }

    /// `felix bpf xdp-deny add|del CIDR` on host `n`; checks the deny list afterwards.
    pub fn xdp_deny(&self, n: u8, cidr: &str, deny: bool) -> Result<()> {
        let verb = if deny { "add" } else { "del" };
        let said = self.felix_cli(n, &["xdp-deny", verb, cidr])?;
        print!("{said}");
        let list = felix::xdp_deny(&self.felix, &self.node(n))?;
        let listed = list.xdp_deny.iter().any(|e| e.cidr == cidr);
        if listed != deny {
            bail!(
                "after xdp-deny {verb} {cidr} on {}: list is {list:?}",
                self.node(n)
            );
        }
        Ok(())
    }

    /// Waits until host `n`'s felix has its uplink XDP prefilter attached (`attached`) or
    /// detached, as `felix bpf ifaces dump` shows it; how long that took.
    pub fn wait_uplink_xdp(&self, n: u8, attached: bool, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let dump = felix::ifaces(&self.felix, &self.node(n))?;
            let mode = dump.uplink_xdp("eth0").unwrap_or("none").to_owned();
            if (mode != "none") == attached {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                bail!(
                    "h{n}: uplink XDP is {mode} after {timeout:?}, expected {}: {dump:?}",
                    if attached { "attached" } else { "detached" }
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A small TCP exchange (iperf3, 1 MB) from pod `client` to pod `server`; the client's report.
    pub fn tcp_exchange(&self, client: &PodInfo, server: &PodInfo) -> Result<String> {
        let port = "5201";
        let mut srv = Command::new("ip")
            .args([
                "netns", "exec", &server.ns, "iperf3", "-s", "-1", "-p", port,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the iperf3 server")?;
        let result = self.iperf_client(client, server, port);
        let server_done = traffic::wait_child(&mut srv, Duration::from_secs(10), "iperf3 server");
        let report = result?;
        server_done?;
        Ok(report)
    }

    fn iperf_client(&self, client: &PodInfo, server: &PodInfo, port: &str) -> Result<String> {
        let ip = server.ip.to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.exec_in(&client.ns, &["iperf3", "-c", &ip, "-p", port, "-n", "1M"])?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                return Ok(text);
            }
            // The server may not listen yet: retry briefly.
            if Instant::now() >= deadline {
                bail!(
                    "iperf3 {} -> {} failed: {text}{}",
                    client.name,
                    server.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Parses `3 packets transmitted, 3 received, ...` from ping's summary.
pub fn parse_ping(text: &str) -> Option<PingStats> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut parts = line.split(',');
    let num = |s: Option<&str>| s?.split_whitespace().next()?.parse().ok();
    Some(PingStats {
        transmitted: num(parts.next())?,
        received: num(parts.next())?,
    })
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if thread::panicking() {
            for rec in &self.state.processes {
                eprintln!(
                    "--- {} log ({}) ---\n{}",
                    rec.what,
                    rec.log.display(),
                    proc::log_tail(&rec.log, 40)
                );
            }
        }
        for p in teardown::teardown_one(&self.state.id, Some(&self.state)) {
            eprintln!("lab {} teardown: {p}", self.state.id);
        }
    }
}

/// `cargo xtask lab up`: a persistent lab, left running; prints its summary.
pub fn up_persistent(felix: PathBuf) -> Result<LabState> {
    let lab = Lab::up(LabOptions {
        felix,
        persistent: true,
        ..LabOptions::default()
    })?;
    let state = lab.detach();
    status::print_summary(&state);
    Ok(state)
}

/// `cargo xtask lab down`: every lab.
pub fn down() -> Result<()> {
    let report = teardown::teardown_labs(Scope::All);
    if report.removed.is_empty() {
        println!("lab down: no lab found");
    }
    report.print("lab down");
    if !report.problems.is_empty() {
        bail!(
            "lab down finished with {} problem(s)",
            report.problems.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary() {
        let text = "PING 192.168.2.2 ...\n\n--- 192.168.2.2 ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n";
        assert_eq!(
            parse_ping(text),
            Some(PingStats {
                transmitted: 3,
                received: 2
            })
        );
        let err = "3 packets transmitted, 0 received, +3 errors, 100% packet loss";
        assert_eq!(
            parse_ping(err),
            Some(PingStats {
                transmitted: 3,
                received: 0
            })
        );
        assert_eq!(parse_ping("connect: Network is unreachable"), None);
    }
}
