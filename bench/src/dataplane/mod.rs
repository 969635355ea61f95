//! `bench dataplane`: plain kernel routing, felix's iptables mode (nft and legacy) and its BPF
//! mode side by side on the lab, with the same policies and the same traffic.
//!
//! Each mode gets a fresh lab ([`lab::Lab`], torn down afterwards, also on error). In
//! `plain`, the lab comes up in iptables mode (nft), then felix is stopped on both hosts and its
//! chains, hook jumps and ipsets are removed: the kernel routes the pods as felix left them
//! (routes to `cali*`, remote blocks via their hosts), with no rule and no policy. In the
//! others felix runs, and for every rule configuration ([`rules`]) the policies are applied
//! through etcd with `felix apply`, their enforcement confirmed with a sentinel port, and the
//! traffic measured between h1-p1 and h1-p2 (same host) and h1-p1 and h2-p1 (two hosts); in
//! `plain` also between the hosts' own namespaces (host to host, the limit). RR and CRR run at
//! a fixed few threads and at a load that keeps every CPU busy, each with the machine's CPU
//! time per operation.

pub mod plot;
pub mod prog_cost;
pub mod report;
pub mod results;
pub mod rules;
pub mod targets;
pub mod traffic;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use lab::{Lab, LabOptions, PodInfo, calico::IpipMode, etcd, felixd::Dataplane, iptables};

use crate::{cpu_time, loadgen::Pattern};
use results::{Load, Metric, Mode, Percentile, Placement, Results, Rules, Skipped};
use rules::Shape;

/// How much to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    pub modes: Vec<Mode>,
    /// Non-matching rule counts of /32 sources, ascending.
    pub cidr_rules: Vec<u32>,
    /// Non-matching rule counts of selectors (ipsets).
    pub selector_rules: Vec<u32>,
    /// Rule counts at which iperf3 also runs with TSO/GSO off (plain always does).
    pub offload_off_at: Vec<u32>,
    /// Runs of every figure where the targets look ([`TARGET_RULES`] rules, and `plain`);
    /// the report gives their median and spread.
    pub runs: usize,
    /// Runs of every figure at the other rule counts (the curve of cost against rules).
    pub curve_runs: usize,
    /// Seconds per iperf3 run.
    pub iperf_seconds: u32,
    /// Seconds per RR and CRR run.
    pub rr_seconds: f64,
    /// Client threads of RR and CRR at the fixed load.
    pub threads: usize,
    /// Client threads of RR and CRR at the saturating load.
    pub saturating_threads: usize,
    /// Request and reply size, bytes.
    pub message: usize,
}

/// The rule count the targets are stated at.
pub const TARGET_RULES: u32 = 10_000;
/// Saturating client threads per CPU: each RR thread waits a round trip per transaction,
/// so several per CPU keep every CPU busy.
const SATURATING_THREADS_PER_CPU: usize = 8;
/// The busy share of all CPUs below which a saturating run did not saturate.
pub const SATURATED: f64 = 0.95;

impl Settings {
    /// The full run (about 30 minutes on 2 cores).
    pub fn full() -> Self {
        Settings {
            modes: Mode::ALL.to_vec(),
            cidr_rules: vec![0, 100, 1_000, 10_000, 50_000],
            selector_rules: vec![10_000],
            offload_off_at: vec![0, 10_000],
            runs: 5,
            curve_runs: 2,
            iperf_seconds: 2,
            rr_seconds: 1.0,
            threads: 4,
            saturating_threads: SATURATING_THREADS_PER_CPU * cpu_time::online_cpus(),
            message: 64,
        }
    }

    /// A few minutes: every mode, placement and metric once, small rule counts.
    pub fn quick() -> Self {
        Settings {
            cidr_rules: vec![0, 100],
            selector_rules: vec![100],
            offload_off_at: vec![0],
            runs: 1,
            curve_runs: 1,
            iperf_seconds: 1,
            rr_seconds: 0.6,
            ..Self::full()
        }
    }

    /// Runs of every figure under `rules` (`None`: `plain`).
    pub fn runs_of(&self, rules: Option<Rules>) -> usize {
        match rules {
            Some(r) if r.count != TARGET_RULES => self.curve_runs,
            _ => self.runs,
        }
    }

    /// Client threads of `load`.
    pub fn threads_of(&self, load: Load) -> usize {
        match load {
            Load::Fixed => self.threads,
            Load::Saturating => self.saturating_threads,
        }
    }

    /// The rule configurations of a policy mode, in the order they are applied.
    pub fn configurations(&self) -> Vec<Rules> {
        let cidr = self.cidr_rules.iter().map(|&count| Rules {
            shape: Shape::Cidr,
            count,
        });
        let selector = self.selector_rules.iter().map(|&count| Rules {
            shape: Shape::Selector,
            count,
        });
        cidr.chain(selector).collect()
    }
}

/// The two pods of a pod placement: (client, server).
fn pods(lab: &Lab, placement: Placement) -> Result<(PodInfo, PodInfo)> {
    let client = lab.pod(1, 1)?.clone();
    let server = match placement {
        Placement::SameHost => lab.pod(1, 2)?,
        Placement::TwoHosts => lab.pod(2, 1)?,
        Placement::HostToHost => bail!("host to host has no pods"),
    };
    Ok((client, server.clone()))
}

/// The namespaces and server address of a placement.
struct Ends {
    client_ns: String,
    server_ns: String,
    server_ip: std::net::Ipv4Addr,
}

fn ends(lab: &Lab, placement: Placement) -> Result<Ends> {
    if placement == Placement::HostToHost {
        let (client, server) = (lab.host(1)?, lab.host(2)?);
        return Ok(Ends {
            client_ns: client.ns.clone(),
            server_ns: server.ns.clone(),
            server_ip: server.ip,
        });
    }
    let (client, server) = pods(lab, placement)?;
    Ok(Ends {
        client_ns: client.ns,
        server_ns: server.ns,
        server_ip: server.ip,
    })
}

/// What `mode` measures: the pod placements, and in `plain` host to host too.
fn placements_of(mode: Mode) -> Vec<Placement> {
    let mut placements = Placement::PODS.to_vec();
    if !mode.has_policy() {
        placements.push(Placement::HostToHost);
    }
    placements
}

/// Measures every mode; `felix` is the binary the labs run.
pub fn run(settings: &Settings, felix: &Path) -> Result<Results> {
    let bench = traffic::self_exe()?;
    let mut results = Results::default();
    for &mode in &settings.modes {
        eprintln!("== {} ==", mode.name());
        let started = Instant::now();
        measure_mode(settings, felix, &bench, mode, &mut results)
            .with_context(|| format!("mode {}", mode.name()))?;
        results.modes.push(mode);
        eprintln!("== {} done in {:.0?} ==", mode.name(), started.elapsed());
    }
    Ok(results)
}

fn dataplane_of(mode: Mode) -> Dataplane {
    match mode {
        Mode::Plain | Mode::IptablesNft => Dataplane::Iptables(iptables::Backend::Nft),
        Mode::IptablesLegacy => Dataplane::Iptables(iptables::Backend::Legacy),
        Mode::Bpf | Mode::BpfNative => Dataplane::Bpf,
    }
}

/// The lab pool's `ipipMode`: natively routed but for `bpf` (IPIP). iptables mode routes
/// natively whatever the pool says; its pool stays the lab's default.
fn ipip_mode_of(mode: Mode) -> IpipMode {
    match mode {
        Mode::BpfNative => IpipMode::Never,
        _ => IpipMode::Always,
    }
}

fn measure_mode(
    settings: &Settings,
    felix: &Path,
    bench: &Path,
    mode: Mode,
    results: &mut Results,
) -> Result<()> {
    let mut lab = Lab::up(LabOptions {
        felix: felix.to_path_buf(),
        dataplane: dataplane_of(mode),
        pool_ipip_mode: ipip_mode_of(mode),
        ..LabOptions::default()
    })?;
    if !mode.has_policy() {
        strip_felix(&mut lab)?;
    }
    let mut servers = Vec::new();
    for placement in Placement::PODS {
        let (client, server) = pods(&lab, placement)?;
        ensure!(
            !rules::in_rule_range(client.ip) && !rules::in_rule_range(server.ip),
            "pod addresses {} and {} fall in the rules' range",
            client.ip,
            server.ip
        );
    }
    for placement in placements_of(mode) {
        let ends = ends(&lab, placement)?;
        servers.push(traffic::Server::start(
            bench,
            &ends.server_ns,
            settings.message,
        )?);
    }
    if !mode.has_policy() {
        measure_traffic(settings, &lab, bench, mode, None, true, results)?;
        return lab.teardown();
    }
    let mut deny_chunks = 0;
    for (index, rules) in settings.configurations().into_iter().enumerate() {
        let sentinel = 7100 + u16::try_from(index)?;
        eprintln!("-- {} rules {} --", mode.name(), rules.label());
        match apply(&lab, bench, rules, sentinel, &mut deny_chunks) {
            Ok(took) => {
                results.programmed.insert((mode, rules), took.as_secs_f64());
            }
            Err(e) => {
                eprintln!("skipping {} at {}: {e:#}", mode.name(), rules.label());
                results.skipped.push(Skipped {
                    mode,
                    rules,
                    reason: format!("{e:#}"),
                });
                continue;
            }
        }
        let offload_off =
            rules.shape == Shape::Cidr && settings.offload_off_at.contains(&rules.count);
        measure_traffic(
            settings,
            &lab,
            bench,
            mode,
            Some(rules),
            offload_off,
            results,
        )?;
    }
    drop(servers);
    lab.teardown()
}

/// Stops felix on every host and removes its chains, hook jumps and ipsets (both backends),
/// leaving the kernel's routes as felix programmed them; checks that nothing of felix's is left.
fn strip_felix(lab: &mut Lab) -> Result<()> {
    let hosts: Vec<(u8, String)> = lab
        .state()
        .hosts
        .iter()
        .map(|h| (h.n, h.ns.clone()))
        .collect();
    for (n, ns) in hosts {
        lab.kill_felix(n)?;
        for argv in [
            &["iptables-nft", "-F"][..],
            &["iptables-nft", "-X"],
            &["iptables-legacy", "-F"],
            &["iptables-legacy", "-X"],
            &["ipset", "destroy"],
        ] {
            let out = lab.exec_in(&ns, argv)?;
            ensure!(
                out.status.success(),
                "{argv:?} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let left = iptables::leftovers(&ns)?;
        ensure!(left.is_empty(), "felix's rules left in {ns}: {left:?}");
    }
    Ok(())
}

/// Applies `rules` with `sentinel`, deletes deny policies the previous configuration had
/// beyond this one's, and waits until both servers' sentinel port is denied; the time from the
/// apply to enforcement.
fn apply(
    lab: &Lab,
    bench: &Path,
    rules: Rules,
    sentinel: u16,
    deny_chunks: &mut u32,
) -> Result<Duration> {
    ensure!(
        rules.count <= rules.shape.max_rules(),
        "{} rules of this shape need more than 198.18.0.0/15",
        rules.count
    );
    let started = Instant::now();
    let docs = rules::documents(rules.shape, rules.count, sentinel);
    let name = format!("bench-{}", sentinel);
    lab.apply_yaml(&name, &rules::file_text(&docs))?;
    let applied = started.elapsed();
    let needed = rules::chunks(rules.count);
    let state = lab.state();
    for chunk in needed..*deny_chunks {
        let key = rules::policy_key(&rules::deny_name(chunk));
        etcd::del(&state.fabric_ns, &state.etcd_url, &key)?;
    }
    *deny_chunks = needed;
    let limit = Duration::from_secs(180);
    let mut probes = Vec::new();
    for placement in Placement::PODS {
        let (client, server) = pods(lab, placement)?;
        probes.push((client.ns, SocketAddr::from((server.ip, sentinel))));
    }
    // Both placements are watched at once, so that neither waits for the other's probes.
    let denied = std::thread::scope(|scope| {
        let watchers: Vec<_> = probes
            .iter()
            .map(|(ns, to)| scope.spawn(move || traffic::wait_enforced(bench, ns, *to, limit)))
            .collect();
        watchers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a sentinel watcher panicked"))?
            })
            .collect::<Result<Vec<Instant>>>()
    })?;
    let last = denied.into_iter().max().unwrap_or(started);
    let took = last.saturating_duration_since(started);
    eprintln!(
        "   enforced after {took:.2?} ({:.2?} of them writing: `felix apply` puts one document at a time)",
        applied
    );
    Ok(took)
}

/// Every run of every metric for both placements under the policy in force, interleaved so
/// that drift in the machine's load falls on all of them alike.
fn measure_traffic(
    settings: &Settings,
    lab: &Lab,
    bench: &Path,
    mode: Mode,
    rules: Option<Rules>,
    offload_off: bool,
    results: &mut Results,
) -> Result<()> {
    for _ in 0..settings.runs_of(rules) {
        for placement in placements_of(mode) {
            let e = ends(lab, placement)?;
            let mut offloads = vec![true];
            if offload_off {
                offloads.push(false);
            }
            for offload in offloads {
                let both = [e.client_ns.as_str(), e.server_ns.as_str()];
                if !offload {
                    traffic::set_offloads(&both, false)?;
                }
                let measured = traffic::throughput(
                    &e.client_ns,
                    &e.server_ns,
                    e.server_ip,
                    settings.iperf_seconds,
                );
                if !offload {
                    traffic::set_offloads(&both, true)?;
                }
                let t = measured?;
                results.push((mode, rules, placement, Metric::Gbps { offload }), t.gbps);
                results.push(
                    (mode, rules, placement, Metric::CpuPerGbit { offload }),
                    t.cpu_s_per_gbit,
                );
            }
            for load in Load::ALL {
                for pattern in [Pattern::Rr, Pattern::Crr] {
                    let out = traffic::transactions(
                        bench,
                        &e.client_ns,
                        e.server_ip,
                        pattern,
                        settings.threads_of(load),
                        settings.rr_seconds,
                        settings.message,
                    )?;
                    let key = |metric| (mode, rules, placement, metric);
                    results.push(key(Metric::Rate { pattern, load }), out.rate());
                    results.push(
                        key(Metric::Busy { pattern, load }),
                        out.busy_fraction * 100.0,
                    );
                    if let Some(us) = out.cpu_us_per_transaction() {
                        results.push(key(Metric::CpuUs { pattern, load }), us);
                    }
                    for (percentile, value) in [
                        (Percentile::P50, out.connect_p50_us),
                        (Percentile::P99, out.connect_p99_us),
                    ] {
                        if let Some(us) = value {
                            results.push(key(Metric::Connect { load, percentile }), us);
                        }
                    }
                    if load == Load::Saturating && out.busy_fraction < SATURATED {
                        eprintln!(
                            "   {} {pattern:?} at saturation: CPUs only {:.0}% busy",
                            placement.name(),
                            out.busy_fraction * 100.0
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// `git describe`-like versions of the tools the report names.
pub fn versions() -> Vec<(String, String)> {
    let first_line = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("?")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| "not found".into())
    };
    vec![
        ("iperf3".into(), first_line("iperf3", &["--version"])),
        (
            "iptables (nft)".into(),
            first_line("iptables-nft", &["--version"]),
        ),
        (
            "iptables (legacy)".into(),
            first_line("iptables-legacy", &["--version"]),
        ),
        ("ipset".into(), first_line("ipset", &["--version"])),
        ("etcd".into(), first_line("etcd", &["--version"])),
    ]
}

/// Where the bench's outputs go by default: `bench/results/<date>-dataplane.{md,svg}`.
pub fn default_out(workspace: &Path, date: &str) -> PathBuf {
    workspace
        .join("bench/results")
        .join(format!("{date}-dataplane.md"))
}
