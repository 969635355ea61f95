//! `felix run`: the agent's settings from flags, environment and etcd, and its start.

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use felix_user::{
    agent::{self, AgentConfig},
    config,
};

use crate::{
    LogFilter, level_filter,
    output::{EtcdArgs, Roots},
};

/// `felix run`'s settings. Each is resolved, highest first, from its flag, its `FELIX_*`
/// environment variable (any case), FelixConfiguration `node.<node>` and `default` in etcd, and
/// the built-in default; `felix run --print-config` shows the result (docs/configuration.md).
#[derive(Args)]
pub(crate) struct RunArgs {
    /// This host's Calico node name (also names the pin tree). [env: FELIX_NODENAME]
    #[arg(long)]
    pub(crate) node: Option<String>,
    #[command(flatten)]
    pub(crate) etcd: EtcdArgs,
    /// Name prefixes of workload interfaces, comma-separated. [FELIX_INTERFACEPREFIX,
    /// interfacePrefix; default: cali]
    #[arg(long)]
    pub(crate) workload_prefixes: Option<String>,
    /// The host's uplink to the other hosts: IPIP is decapsulated and sent here, and its XDP
    /// program drops denied sources. [FELIX_UPLINK; default: the interface that holds the
    /// address --ip-autodetection-method finds]
    #[arg(long)]
    pub(crate) uplink: Option<String>,
    /// OpenStack region: felix's status keys go under `/calico/felix/v2/region-<name>/`
    /// (unset: `no-region`), as Calico's. [FELIX_OPENSTACKREGION, openstackRegion]
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// Seconds (or a Go duration) between passes of the conntrack cleaner (in the kernel;
    /// in user space where the kernel lacks `bpf_for_each_map_elem`).
    /// [FELIX_CONNTRACKGCINTERVAL; default: 1s]
    #[arg(long)]
    pub(crate) ct_gc_interval: Option<String>,
    /// Seconds (or a Go duration) between checks of felix's kernel routes (a deleted one is
    /// also restored at once). [FELIX_ROUTEREFRESHINTERVAL, routeRefreshInterval; default: 10s]
    #[arg(long)]
    pub(crate) route_refresh_interval: Option<String>,
    /// Seconds (or a Go duration) the status keys live in etcd without a refresh (refreshed
    /// every third of it). [FELIX_REPORTINGTTLSECS, reportingTTL; default: 30s]
    #[arg(long)]
    pub(crate) status_ttl: Option<String>,
    /// How to find this host's IPv4 address for its Node resource: first-found,
    /// interface=REGEX, can-reach=DEST or cidr=CIDR[,CIDR]. [FELIX_IP_AUTODETECTION_METHOD]
    #[arg(long)]
    pub(crate) ip_autodetection_method: Option<String>,
    /// AS number to write into this node's Node resource (spec.bgp.asNumber). [FELIX_ASNUMBER]
    #[arg(long)]
    pub(crate) as_number: Option<String>,
    /// Serve Prometheus metrics (/metrics). [FELIX_PROMETHEUSMETRICSENABLED,
    /// prometheusMetricsEnabled; default: true]
    #[arg(long)]
    pub(crate) metrics_enabled: Option<String>,
    /// Address of the metrics endpoint. [FELIX_PROMETHEUSMETRICSHOST; default: 0.0.0.0]
    #[arg(long)]
    pub(crate) metrics_host: Option<String>,
    /// Port of the metrics endpoint. [FELIX_PROMETHEUSMETRICSPORT; default: 9091]
    #[arg(long)]
    pub(crate) metrics_port: Option<String>,
    /// Serve /liveness and /readiness. [FELIX_HEALTHENABLED, healthEnabled; default: true]
    #[arg(long)]
    pub(crate) health_enabled: Option<String>,
    /// Address of the health endpoints. [FELIX_HEALTHHOST, healthHost; default: 127.0.0.1]
    #[arg(long)]
    pub(crate) health_host: Option<String>,
    /// Port of the health endpoints. [FELIX_HEALTHPORT, healthPort; default: 9099]
    #[arg(long)]
    pub(crate) health_port: Option<String>,
    /// The dataplane: bpf (felix's eBPF programs) or iptables (Calico-style rules, the kernel
    /// routing pod traffic natively). Starting in one mode removes the other's state.
    /// [FELIX_BPFENABLED (true/false), FELIX_DATAPLANE, bpfEnabled; default: bpf]
    #[arg(long)]
    pub(crate) dataplane: Option<String>,
    /// The iptables backend of `--dataplane iptables`: nft or legacy (auto: nft).
    /// [FELIX_IPTABLESBACKEND, iptablesBackend; default: nft]
    #[arg(long)]
    pub(crate) iptables_backend: Option<String>,
    /// Log level: Debug, Info, Warning, Error (RUST_LOG, when set, wins).
    /// [FELIX_LOGSEVERITYSCREEN, logSeverityScreen; default: Info]
    #[arg(long)]
    pub(crate) log_level: Option<String>,
    /// Conntrack map entries. [FELIX_BPFMAPSIZECONNTRACK, bpfMapSizeConntrack; default: 262144]
    #[arg(long)]
    pub(crate) map_size_conntrack: Option<String>,
    /// Routes map entries. [FELIX_BPFMAPSIZEROUTE, bpfMapSizeRoute; default: 65536]
    #[arg(long)]
    pub(crate) map_size_route: Option<String>,
    /// Endpoints and interfaces map entries. [FELIX_BPFMAPSIZEIFSTATE, bpfMapSizeIfState;
    /// default: 4096]
    #[arg(long)]
    pub(crate) map_size_ifstate: Option<String>,
    /// Policy address map entries (felix_pip_v1). [FELIX_BPFMAPSIZEIPSETS, bpfMapSizeIPSets;
    /// default: 262144]
    #[arg(long)]
    pub(crate) map_size_ipsets: Option<String>,
    /// Policy port map entries (felix_pport_v1). [FELIX_BPFMAPSIZEPOLICYPORTS; default: 65536]
    #[arg(long)]
    pub(crate) map_size_policy_ports: Option<String>,
    /// Policy verdict map entries (felix_pvd_v1). [FELIX_BPFMAPSIZEPOLICYVERDICTS;
    /// default: 262144]
    #[arg(long)]
    pub(crate) map_size_policy_verdicts: Option<String>,
    /// XDP deny list entries. [FELIX_BPFMAPSIZEXDPDENY; default: 16384]
    #[arg(long)]
    pub(crate) map_size_xdp_deny: Option<String>,
    /// Conntrack fill level (percent) from which felix warns and counts near-full events.
    /// [FELIX_CONNTRACKNEARFULLPERCENT; default: 90]
    #[arg(long)]
    pub(crate) conntrack_near_full_percent: Option<String>,
    /// Share (percent) of the conntrack table one endpoint may hold: a new flow of a pod
    /// charged with it is dropped (`drop_ct_endpoint_share`); 100: no limit.
    /// [FELIX_BPFCONNTRACKENDPOINTSHAREPERCENT; default: 25]
    #[arg(long)]
    pub(crate) conntrack_endpoint_share_percent: Option<String>,
    /// Attach the uplink's XDP prefilter while the deny list (`felix bpf xdp-deny`) has
    /// entries; false: never (the deny list is then not enforced).
    /// [FELIX_XDPENABLED, xdpEnabled; default: true]
    #[arg(long)]
    pub(crate) xdp_enabled: Option<String>,
    /// Host ports the uplink's XDP deny list never blocks, in Calico's format
    /// (`[proto:][0.0.0.0/0:]port`, comma-separated, or `none`).
    /// [FELIX_FAILSAFEINBOUNDHOSTPORTS, failsafeInboundHostPorts; default: Calico's]
    #[arg(long)]
    pub(crate) failsafe_inbound_host_ports: Option<String>,
    /// Remote ports whose replies the uplink's XDP deny list never blocks (the host's own
    /// connections to etcd, DNS, BGP...), in Calico's format.
    /// [FELIX_FAILSAFEOUTBOUNDHOSTPORTS, failsafeOutboundHostPorts; default: Calico's]
    #[arg(long)]
    pub(crate) failsafe_outbound_host_ports: Option<String>,
    /// Print every effective setting with its source and exit (reads FelixConfiguration).
    #[arg(long)]
    pub(crate) print_config: bool,
    /// With --print-config: print JSON.
    #[arg(long, requires = "print_config")]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) roots: Roots,
}

/// How `felix bpf ifaces dump` names a hook without a program.
pub(crate) fn attach_mode_name_none() -> &'static str {
    felix_common::ifaces::attach_mode::name(felix_common::ifaces::attach_mode::NONE)
}

/// The flags given on the command line, by setting name (clap's `value_source` tells them from
/// environment variables and defaults).
pub(crate) fn given_flags(
    matches: &clap::ArgMatches,
) -> std::collections::BTreeMap<&'static str, String> {
    use clap::parser::ValueSource;
    let mut flags = std::collections::BTreeMap::new();
    for setting in config::table::SETTINGS {
        let id = setting.flag.replace('-', "_");
        if matches.value_source(&id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if let Ok(Some(values)) = matches.try_get_many::<String>(&id) {
            let values: Vec<&str> = values.map(String::as_str).collect();
            flags.insert(setting.name, values.join(","));
        }
    }
    flags
}

/// `felix run`: resolves the configuration (flags, environment, FelixConfiguration, defaults),
/// then runs the agent until SIGINT/SIGTERM. When FelixConfiguration changes an effective value,
/// felix restarts itself (a new process image with the same arguments), as Calico's felix does;
/// the new one adopts the pinned dataplane.
pub(crate) fn run(args: RunArgs, matches: &clap::ArgMatches, log_filter: &LogFilter) -> Result<()> {
    let layers = config::Layers {
        flags: given_flags(matches),
        env: std::env::vars().collect(),
        ..config::Layers::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let resolved = runtime.block_on(config::load(layers))?;
    if args.print_config {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&config::show::json(&resolved.values))?
            );
        } else {
            print!("{}", config::show::table(&resolved.values));
        }
        return Ok(());
    }
    if std::env::var_os("RUST_LOG").is_none() {
        let _ = log_filter.reload(level_filter(resolved.settings.log_level));
    }
    let settings = &resolved.settings;
    let config = AgentConfig {
        node: settings.node.clone(),
        mode: settings.mode,
        etcd_endpoints: settings.etcd_endpoints.clone(),
        etcd_tls: settings.etcd_tls.clone(),
        pin_root: args.roots.pin_root,
        run_root: args.roots.run_root,
        workload_prefixes: settings.workload_prefixes.clone(),
        uplink: settings.uplink.clone(),
        region: settings.region.clone(),
        ct_gc_interval: settings.ct_gc_interval,
        route_refresh_interval: settings.route_refresh_interval,
        status_ttl: settings.status_ttl,
        ip_autodetection: settings.ip_autodetection.clone(),
        as_number: settings.as_number,
        metrics_address: settings.metrics_address,
        health_address: settings.health_address,
        failsafe: (
            settings.failsafe_inbound.clone(),
            settings.failsafe_outbound.clone(),
        ),
        map_sizes: settings.map_sizes,
        conntrack_near_full_percent: settings.conntrack_near_full_percent,
        conntrack_endpoint_share_percent: settings.conntrack_endpoint_share_percent,
        xdp_enabled: settings.xdp_enabled,
        resolved: Some(resolved.clone()),
    };
    let stopped = runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("install the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        agent::run(config, shutdown).await.context("felix run")
    })?;
    // Tasks still blocked in a syscall get a moment, then the process image is replaced.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match stopped {
        agent::Stopped::Shutdown => Ok(()),
        agent::Stopped::Restart => restart_self(),
    }
}

/// Replaces this process with a fresh felix with the same arguments and environment.
pub(crate) fn restart_self() -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("find felix's own executable")?;
    let error = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(error).with_context(|| format!("restart {}", exe.display()))
}
