//! `felix`: the per-host agent of an eBPF dataplane for Calico, and the tools to inspect it.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{LpmTrie, lpm_trie::Key};
use clap::{Args, Parser, Subcommand};
use felix_user::{
    agent::{self, AgentConfig},
    config,
    dataplane::ct_gc,
    dataplane::failsafe,
    dataplane::inspect,
    dataplane::loader::Dataplane,
    dataplane::pins::{self, DEFAULT_PIN_ROOT, DEFAULT_RUN_ROOT},
    ipam, model,
    report::status,
};
use ipnet::Ipv4Net;
use tracing_subscriber::EnvFilter;

/// An eBPF dataplane for Calico: attaches TC programs to workload (cali*) interfaces and keeps
/// their maps pinned under /sys/fs/bpf/felix/<node>/.
#[derive(Parser)]
#[command(name = "felix", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent for one node in the foreground (until SIGINT or SIGTERM).
    ///
    /// Example: felix run --node h1 --etcd-endpoints http://10.0.0.254:2379
    Run(Box<RunArgs>),
    /// Inspect the BPF maps of a running felix.
    #[command(subcommand)]
    Bpf(BpfCommand),
    /// Validate Calico v3 resources from a YAML or JSON file (one or many documents) and write
    /// them at Calico's keys. A document that does not validate is reported (document, field,
    /// reason) and not written; the others are.
    ///
    /// Example: felix apply -f policy.yaml --etcd-endpoints http://10.0.0.254:2379
    Apply(FileArgs),
    /// Delete the Calico v3 resources a file names (by kind, namespace and name).
    Delete(FileArgs),
    /// Print stored resources of a kind (YAML, or JSON with --json).
    ///
    /// Example: felix get globalnetworkpolicies --etcd-endpoints URL
    Get(GetArgs),
    /// Calico IPAM in etcd: claim blocks for nodes, assign and release pod addresses.
    #[command(subcommand)]
    Ipam(IpamCommand),
    /// Show what every felix reports in etcd: its own state, its datastore sync (revision,
    /// reconnects, resyncs, malformed values per kind) and its endpoints.
    ///
    /// Example: felix status --etcd-endpoints http://10.0.0.254:2379 --node h1
    Status(StatusArgs),
    /// Network policy as felix computes it from the datastore.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Which tier, policy and rule decide a packet, and why: the sender's egress policy and
    /// the receiver's ingress policy, computed from etcd as felix programs them.
    ///
    /// Example: felix policy explain --from 192.168.2.1 --to 192.168.3.1 --proto tcp --port 80
    Explain(ExplainArgs),
}

#[derive(Args)]
struct ExplainArgs {
    /// Source IPv4 address.
    #[arg(long)]
    from: std::net::Ipv4Addr,
    /// Destination IPv4 address.
    #[arg(long)]
    to: std::net::Ipv4Addr,
    /// Protocol: tcp, udp, icmp, sctp or a number 1-255.
    #[arg(long, default_value = "tcp", value_parser = parse_protocol)]
    proto: u8,
    /// Destination port (TCP, UDP, SCTP).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Source port (TCP, UDP, SCTP).
    #[arg(long, default_value_t = 40000)]
    sport: u16,
    /// ICMP type (with --proto icmp).
    #[arg(long, default_value_t = 8)]
    icmp_type: u8,
    /// ICMP code (with --proto icmp).
    #[arg(long, default_value_t = 0)]
    icmp_code: u8,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    etcd: EtcdArgs,
}

/// Accepts a protocol name Calico knows or a number.
fn parse_protocol(text: &str) -> Result<u8, String> {
    text.parse::<model::Protocol>()
        .map(model::Protocol::number)
        .map_err(|e| format!("{e}; example: --proto tcp"))
}

#[derive(Subcommand)]
enum IpamCommand {
    /// Claim the first free block of a pool for a node (one etcd transaction).
    ///
    /// Example: felix ipam claim --node h1 --pool 192.168.0.0/16 --etcd-endpoints URL
    Claim {
        #[arg(long)]
        node: String,
        /// The IP pool's CIDR.
        #[arg(long, value_parser = parse_cidr)]
        pool: Ipv4Net,
        /// Prefix length of a block.
        #[arg(long, default_value_t = 26)]
        block_size: u8,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Assign an address to a handle from a block the node holds; prints the address.
    ///
    /// Example: felix ipam assign --node h1 --handle k8s-pod-network.p1 --attr pod=p1
    Assign {
        #[arg(long)]
        node: String,
        /// Calico's handle id of the allocation (e.g. k8s-pod-network.<container id>).
        #[arg(long)]
        handle: String,
        /// Secondary attributes, KEY=VALUE, repeated.
        #[arg(long = "attr", value_parser = parse_attr)]
        attrs: Vec<(String, String)>,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Release an address.
    Release {
        /// The address to free.
        #[arg(long)]
        ip: std::net::Ipv4Addr,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List blocks with their affinity and use.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

#[derive(Args)]
struct FileArgs {
    /// The file to read; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    #[command(flatten)]
    etcd: EtcdArgs,
}

#[derive(Args)]
struct GetArgs {
    /// Kind: singular or plural, any case (networkpolicy, GlobalNetworkPolicies, ippool, ...).
    kind: String,
    /// One resource by name.
    name: Option<String>,
    /// Namespace of a namespaced kind (default: all namespaces).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Print JSON instead of YAML.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    etcd: EtcdArgs,
}

#[derive(Args)]
struct EtcdArgs {
    /// etcd client URLs, comma-separated or repeated.
    #[arg(
        long,
        env = "FELIX_ETCDENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    etcd_endpoints: Vec<String>,
}

/// Accepts `KEY=VALUE`.
fn parse_attr(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE (example: pod=p1)"))
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Only this node.
    #[arg(long)]
    node: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// `felix run`'s settings. Each is resolved, highest first, from its flag, its `FELIX_*`
/// environment variable (any case), FelixConfiguration `node.<node>` and `default` in etcd, and
/// the built-in default; `felix run --print-config` shows the result (README, "Configure").
#[derive(Args)]
struct RunArgs {
    /// This host's Calico node name (also names the pin tree). [env: FELIX_NODENAME]
    #[arg(long)]
    node: Option<String>,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Name prefixes of workload interfaces, comma-separated. [FELIX_INTERFACEPREFIX,
    /// interfacePrefix; default: cali]
    #[arg(long)]
    workload_prefixes: Option<String>,
    /// The host's uplink to the other hosts: IPIP is decapsulated and sent here, and its XDP
    /// program drops denied sources. [FELIX_UPLINK; default: eth0]
    #[arg(long)]
    uplink: Option<String>,
    /// Seconds (or a Go duration) between conntrack garbage-collection passes.
    /// [FELIX_CONNTRACKGCINTERVAL; default: 10s]
    #[arg(long)]
    ct_gc_interval: Option<String>,
    /// Seconds (or a Go duration) between checks of felix's kernel routes (a deleted one is
    /// also restored at once). [FELIX_ROUTEREFRESHINTERVAL, routeRefreshInterval; default: 10s]
    #[arg(long)]
    route_refresh_interval: Option<String>,
    /// Seconds (or a Go duration) the status keys live in etcd without a refresh (refreshed
    /// every third of it). [FELIX_REPORTINGTTLSECS, reportingTTL; default: 30s]
    #[arg(long)]
    status_ttl: Option<String>,
    /// How to find this host's IPv4 address for its Node resource: first-found,
    /// interface=REGEX, can-reach=DEST or cidr=CIDR[,CIDR]. [FELIX_IP_AUTODETECTION_METHOD]
    #[arg(long)]
    ip_autodetection_method: Option<String>,
    /// AS number to write into this node's Node resource (spec.bgp.asNumber). [FELIX_ASNUMBER]
    #[arg(long)]
    as_number: Option<String>,
    /// Serve Prometheus metrics (/metrics). [FELIX_PROMETHEUSMETRICSENABLED,
    /// prometheusMetricsEnabled; default: true]
    #[arg(long)]
    metrics_enabled: Option<String>,
    /// Address of the metrics endpoint. [FELIX_PROMETHEUSMETRICSHOST; default: 0.0.0.0]
    #[arg(long)]
    metrics_host: Option<String>,
    /// Port of the metrics endpoint. [FELIX_PROMETHEUSMETRICSPORT; default: 9091]
    #[arg(long)]
    metrics_port: Option<String>,
    /// Serve /liveness and /readiness. [FELIX_HEALTHENABLED, healthEnabled; default: true]
    #[arg(long)]
    health_enabled: Option<String>,
    /// Address of the health endpoints. [FELIX_HEALTHHOST, healthHost; default: 127.0.0.1]
    #[arg(long)]
    health_host: Option<String>,
    /// Port of the health endpoints. [FELIX_HEALTHPORT, healthPort; default: 9099]
    #[arg(long)]
    health_port: Option<String>,
    /// The dataplane: bpf (felix's eBPF programs) or iptables (Calico-style rules, the kernel
    /// routing pod traffic natively). Starting in one mode removes the other's state.
    /// [FELIX_BPFENABLED (true/false), FELIX_DATAPLANE, bpfEnabled; default: bpf]
    #[arg(long)]
    dataplane: Option<String>,
    /// The iptables backend of `--dataplane iptables`: nft or legacy (auto: nft).
    /// [FELIX_IPTABLESBACKEND, iptablesBackend; default: nft]
    #[arg(long)]
    iptables_backend: Option<String>,
    /// Log level: Debug, Info, Warning, Error (RUST_LOG, when set, wins).
    /// [FELIX_LOGSEVERITYSCREEN, logSeverityScreen; default: Info]
    #[arg(long)]
    log_level: Option<String>,
    /// Conntrack map entries. [FELIX_BPFMAPSIZECONNTRACK, bpfMapSizeConntrack; default: 262144]
    #[arg(long)]
    map_size_conntrack: Option<String>,
    /// Routes map entries. [FELIX_BPFMAPSIZEROUTE, bpfMapSizeRoute; default: 65536]
    #[arg(long)]
    map_size_route: Option<String>,
    /// Endpoints and interfaces map entries. [FELIX_BPFMAPSIZEIFSTATE, bpfMapSizeIfState;
    /// default: 4096]
    #[arg(long)]
    map_size_ifstate: Option<String>,
    /// Policy address map entries (felix_pip_v1). [FELIX_BPFMAPSIZEIPSETS, bpfMapSizeIPSets;
    /// default: 262144]
    #[arg(long)]
    map_size_ipsets: Option<String>,
    /// Policy port map entries (felix_pport_v1). [FELIX_BPFMAPSIZEPOLICYPORTS; default: 65536]
    #[arg(long)]
    map_size_policy_ports: Option<String>,
    /// Policy verdict map entries (felix_pvd_v1). [FELIX_BPFMAPSIZEPOLICYVERDICTS;
    /// default: 262144]
    #[arg(long)]
    map_size_policy_verdicts: Option<String>,
    /// XDP deny list entries. [FELIX_BPFMAPSIZEXDPDENY; default: 16384]
    #[arg(long)]
    map_size_xdp_deny: Option<String>,
    /// Conntrack fill level (percent) from which felix warns and counts near-full events.
    /// [FELIX_CONNTRACKNEARFULLPERCENT; default: 90]
    #[arg(long)]
    conntrack_near_full_percent: Option<String>,
    /// Attach the uplink's XDP prefilter while the deny list (`felix bpf xdp-deny`) has
    /// entries; false: never (the deny list is then not enforced).
    /// [FELIX_XDPENABLED, xdpEnabled; default: true]
    #[arg(long)]
    xdp_enabled: Option<String>,
    /// Host ports the uplink's XDP deny list never blocks, in Calico's format
    /// (`[proto:][0.0.0.0/0:]port`, comma-separated, or `none`).
    /// [FELIX_FAILSAFEINBOUNDHOSTPORTS, failsafeInboundHostPorts; default: Calico's]
    #[arg(long)]
    failsafe_inbound_host_ports: Option<String>,
    /// Remote ports whose replies the uplink's XDP deny list never blocks (the host's own
    /// connections to etcd, DNS, BGP...), in Calico's format.
    /// [FELIX_FAILSAFEOUTBOUNDHOSTPORTS, failsafeOutboundHostPorts; default: Calico's]
    #[arg(long)]
    failsafe_outbound_host_ports: Option<String>,
    /// Print every effective setting with its source and exit (reads FelixConfiguration).
    #[arg(long)]
    print_config: bool,
    /// With --print-config: print JSON.
    #[arg(long, requires = "print_config")]
    json: bool,
    #[command(flatten)]
    roots: Roots,
}

#[derive(Args, Clone)]
struct Roots {
    /// Root of the per-node pin trees (on a bpffs mount).
    #[arg(long, default_value = DEFAULT_PIN_ROOT, global = true)]
    pin_root: PathBuf,
    /// Root of the per-node run files (pid files).
    #[arg(long, default_value = DEFAULT_RUN_ROOT, global = true)]
    run_root: PathBuf,
}

#[derive(Subcommand)]
enum BpfCommand {
    /// Packet and byte counters per interface, direction and verdict reason.
    #[command(subcommand)]
    Counters(DumpOnly),
    /// The interfaces felix manages and how its programs are attached to them.
    #[command(subcommand)]
    Ifaces(DumpOnly),
    /// Local workload endpoints: interface -> pod IP and MAC.
    #[command(subcommand)]
    Endpoints(DumpOnly),
    /// Routes: CIDR -> local pod, remote block (IPIP via its host), host, local block.
    #[command(subcommand)]
    Routes(DumpOnly),
    /// The conntrack table.
    #[command(subcommand)]
    Conntrack(ConntrackCommand),
    /// Source CIDRs the uplink's XDP program drops.
    #[command(subcommand)]
    XdpDeny(DenyCommand),
    /// Failsafe ports: packets to these host ports (inbound) or from these remote ports
    /// (outbound replies) pass the XDP deny list.
    ///
    /// Example: felix bpf failsafe dump --node h1
    #[command(subcommand)]
    Failsafe(DumpOnly),
    /// Per endpoint and direction, the compiled policy: slot, set, rules and per-rule packet
    /// counters.
    #[command(subcommand)]
    Policy(PolicyDumpCommand),
    /// Remove a stopped felix's dataplane from this host: unpin its links (detaching every
    /// program) and its maps. Refuses while that node's felix runs.
    ///
    /// Example: felix bpf uninstall --node h1
    Uninstall(NodeArgs),
    /// Stream drop and policy-verdict events (interface, tuple, reason, deciding rule) until
    /// interrupted; the programs emit them only while a trace runs, rate-limited per CPU.
    ///
    /// Example: felix bpf trace --node h1 --kind deny --iface cali1234567890a
    Trace(TraceArgs),
    /// Every TCX and XDP program the kernel reports on this network namespace's interfaces,
    /// whoever attached it (run it under `ip netns exec` for another namespace). Unlike
    /// `bpftool net show` before bpftool 7.3, it lists TCX programs.
    ///
    /// Example: felix bpf attached --json
    Attached(AttachedArgs),
}

#[derive(Args)]
struct AttachedArgs {
    /// Print JSON (`{"attached": [rows]}`) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TraceArgs {
    /// Only events on this interface.
    #[arg(long)]
    iface: Option<String>,
    /// Only events with this reason (e.g. drop_policy, drop_spoofed).
    #[arg(long)]
    reason: Option<String>,
    /// Only drops, policy allows or policy denies.
    #[arg(long, value_parser = ["drop", "allow", "deny"])]
    kind: Option<String>,
    /// Events per second each CPU may emit (the rest are counted as suppressed).
    #[arg(long, default_value_t = felix_user::dataplane::trace::DEFAULT_RATE, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate: u32,
    /// Stop after this many printed events.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
    #[command(flatten)]
    dump: DumpArgs,
}

#[derive(Subcommand)]
enum PolicyDumpCommand {
    /// Print the policy of every endpoint (or one interface's).
    ///
    /// Example: felix bpf policy dump --node h1 --iface cali1234567890a
    Dump(PolicyDumpArgs),
}

#[derive(Args)]
struct PolicyDumpArgs {
    /// Only the endpoint on this interface.
    #[arg(long)]
    iface: Option<String>,
    #[command(flatten)]
    dump: DumpArgs,
}

#[derive(Subcommand)]
enum ConntrackCommand {
    /// Print the flows, oriented from their initiator.
    ///
    /// Example: felix bpf conntrack dump --node h1
    Dump(DumpArgs),
    /// Remove every entry (established flows are re-learnt from their next packet).
    Flush(NodeArgs),
}

#[derive(Subcommand)]
enum DenyCommand {
    /// Print the deny list.
    Dump(DumpArgs),
    /// Drop packets from CIDR at the uplink's XDP hook. felix attaches the XDP prefilter to the
    /// uplink only while the list has entries: it notices the first entry within about a
    /// second, and this command waits (up to 3 s) and says when XDP is attached.
    ///
    /// Example: felix bpf xdp-deny add 10.0.0.9/32 --node h1
    Add(DenyArgs),
    /// Stop dropping packets from CIDR. Once the list is empty felix detaches the XDP
    /// prefilter (within about a second; this command waits for it).
    Del(DenyArgs),
}

#[derive(Args)]
struct NodeArgs {
    /// Node whose maps to change; may be left out when only one node has pinned maps.
    #[arg(long)]
    node: Option<String>,
    #[command(flatten)]
    roots: Roots,
}

#[derive(Args)]
struct DenyArgs {
    /// An IPv4 CIDR or address, e.g. 10.0.0.9/32.
    #[arg(value_parser = parse_cidr)]
    cidr: Ipv4Net,
    #[command(flatten)]
    node: NodeArgs,
}

/// Accepts `a.b.c.d/len` or a bare address (as /32).
fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    text.parse::<Ipv4Net>()
        .or_else(|_| text.parse::<std::net::Ipv4Addr>().map(Ipv4Net::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not an IPv4 CIDR or address (example: 10.0.0.9/32)"))
}

#[derive(Subcommand)]
enum DumpOnly {
    /// Print the map's contents.
    ///
    /// Example: felix bpf counters dump --node h1 --json
    Dump(DumpArgs),
}

#[derive(Args)]
struct DumpArgs {
    /// Node whose maps to read; may be left out when only one node has pinned maps.
    #[arg(long)]
    node: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Read the pinned maps even when that node's felix is not running.
    #[arg(long)]
    stale_ok: bool,
    #[command(flatten)]
    roots: Roots,
}

/// Swaps the log filter once `felix run` knows its configured level.
type LogFilter = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// The filter for a log level: netlink-packet-route warns about every attribute newer than
/// itself, so it only logs errors.
fn level_filter(level: tracing::Level) -> EnvFilter {
    EnvFilter::new(format!(
        "{},netlink_packet_route=error",
        level.as_str().to_ascii_lowercase()
    ))
}

fn main() -> ExitCode {
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| level_filter(tracing::Level::INFO));
    let (filter, log_filter) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let result = match cli.command {
        Command::Run(args) => {
            let run_matches = matches.subcommand_matches("run").unwrap_or(&matches);
            run(*args, run_matches, &log_filter)
        }
        command => dispatch(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(_) => unreachable!("felix run is dispatched by main"),
        Command::Status(args) => show_status(&args),
        Command::Ipam(command) => run_ipam(command),
        Command::Apply(args) => apply_file(&args, true),
        Command::Delete(args) => apply_file(&args, false),
        Command::Get(args) => get_resources(&args),
        Command::Bpf(BpfCommand::Counters(DumpOnly::Dump(args))) => {
            let paths = node_for_dump(&args)?;
            let rows = inspect::read_counters(&paths)?;
            print_rows(
                &args,
                paths.node(),
                "counters",
                &rows,
                inspect::counters_table,
            )
        }
        Command::Bpf(BpfCommand::Ifaces(DumpOnly::Dump(args))) => {
            let paths = node_for_dump(&args)?;
            let rows = inspect::read_ifaces(&paths)?;
            print_rows(
                &args,
                paths.node(),
                "interfaces",
                &rows,
                inspect::ifaces_table,
            )
        }
        Command::Bpf(BpfCommand::Endpoints(DumpOnly::Dump(args))) => {
            let paths = node_for_dump(&args)?;
            let rows = inspect::read_endpoints(&paths)?;
            print_rows(
                &args,
                paths.node(),
                "endpoints",
                &rows,
                inspect::endpoints_table,
            )
        }
        Command::Bpf(BpfCommand::Routes(DumpOnly::Dump(args))) => {
            let paths = node_for_dump(&args)?;
            let rows = inspect::read_routes(&paths)?;
            print_rows(&args, paths.node(), "routes", &rows, inspect::routes_table)
        }
        Command::Bpf(BpfCommand::Conntrack(ConntrackCommand::Dump(args))) => {
            let paths = node_for_dump(&args)?;
            let rows = inspect::read_conntrack(&paths, ct_gc::monotonic_ns())?;
            print_rows(
                &args,
                paths.node(),
                "conntrack",
                &rows,
                inspect::conntrack_table,
            )
        }
        Command::Bpf(BpfCommand::Conntrack(ConntrackCommand::Flush(args))) => {
            flush_conntrack(&args)
        }
        Command::Bpf(BpfCommand::XdpDeny(DenyCommand::Dump(args))) => {
            let paths = node_for_dump(&args)?;
            let rows = inspect::read_xdp_deny(&paths)?;
            print_rows(&args, paths.node(), "xdp_deny", &rows, |rows| {
                rows.iter().map(|r| format!("{}\n", r.cidr)).collect()
            })
        }
        Command::Bpf(BpfCommand::Failsafe(DumpOnly::Dump(args))) => {
            let paths = node_for_dump(&args)?;
            let rows = failsafe::read(&paths)?;
            print_rows(&args, paths.node(), "failsafe", &rows, failsafe::table)
        }
        Command::Bpf(BpfCommand::Policy(PolicyDumpCommand::Dump(args))) => {
            let paths = node_for_dump(&args.dump)?;
            let rows =
                felix_user::dataplane::policy::dump::read_policy(&paths, args.iface.as_deref())?;
            print_rows(
                &args.dump,
                paths.node(),
                "policy",
                &rows,
                felix_user::dataplane::policy::dump::policy_text,
            )
        }
        Command::Policy(PolicyCommand::Explain(args)) => explain_policy(&args),
        Command::Bpf(BpfCommand::Uninstall(args)) => uninstall(&args),
        Command::Bpf(BpfCommand::Trace(args)) => run_trace(&args),
        Command::Bpf(BpfCommand::Attached(args)) => show_attached(&args),
        Command::Bpf(BpfCommand::XdpDeny(DenyCommand::Add(args))) => change_deny(&args, true),
        Command::Bpf(BpfCommand::XdpDeny(DenyCommand::Del(args))) => change_deny(&args, false),
    }
}

/// `felix bpf trace`: prints events (JSON lines with --json) until the count, the time limit or
/// SIGINT/SIGTERM; then switches tracing off and reports what the rate limit suppressed.
fn run_trace(args: &TraceArgs) -> Result<()> {
    use felix_user::dataplane::trace::{TraceFilter, TraceSession, describe};
    let paths = node_for_dump(&args.dump)?;
    let names = inspect::read_ifaces(&paths)?
        .into_iter()
        .map(|r| (r.ifindex, r.name))
        .collect();
    let rules = felix_user::dataplane::policy::state::PolicyState::load(&paths.policy_state_file())
        .map(|s| {
            s.groups
                .iter()
                .flat_map(|g| g.entries.iter().map(|e| (e.rule, e.by.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let filter = TraceFilter {
        interface: args.iface.clone(),
        reason: args.reason.clone(),
        kind: args.kind.clone(),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("install the signal handlers")?;
    }
    let mut session = TraceSession::start(&paths, args.rate)?;
    let start = ct_gc::monotonic_ns();
    let deadline = args
        .seconds
        .map(|s| std::time::Instant::now() + Duration::from_secs(s));
    let mut printed = 0u64;
    eprintln!("tracing node {} (Ctrl-C to stop)", paths.node());
    'outer: while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        for event in session.poll(Duration::from_millis(200)) {
            let line = describe(&event, &names, &rules, start);
            if !filter.admits(&line) {
                continue;
            }
            if args.dump.json {
                println!("{}", serde_json::to_string(&line)?);
            } else {
                println!("{line}");
            }
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                break 'outer;
            }
        }
    }
    let (suppressed, lost) = session.suppressed();
    drop(session);
    eprintln!(
        "{printed} events printed; {suppressed} suppressed by the rate limit, {lost} lost (ring full)"
    );
    Ok(())
}

/// `felix policy explain`: lists Calico's resources, calculates as felix does, and explains.
fn explain_policy(args: &ExplainArgs) -> Result<()> {
    use felix_user::calc::policy::{L4, Packet, calc::PolicyCalc, explain};
    let prefix = "/calico/resources/v3/projectcalico.org/";
    let kvs = with_etcd(&args.etcd.etcd_endpoints, async |client| {
        let options = etcd_client::GetOptions::new().with_prefix();
        let response = client.get(prefix, Some(options)).await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or("").to_owned(), kv.value().to_vec()))
            .collect::<Vec<_>>())
    })?;
    let mut calc = PolicyCalc::new();
    for (key, value) in &kvs {
        match model::Resource::from_etcd(key, value) {
            Ok(resource) => calc.upsert(key, &resource),
            Err(error) => eprintln!("warning: skipped {key}: {error}"),
        }
    }
    let l4 = match args.proto {
        1 => L4::Icmp {
            icmp_type: args.icmp_type,
            code: args.icmp_code,
        },
        6 | 17 | 132 => L4::Ports {
            src: args.sport,
            dst: args.port,
        },
        _ => L4::Other,
    };
    let packet = Packet {
        src: args.from,
        dst: args.to,
        proto: args.proto,
        l4,
    };
    let answer = explain::explain(&mut calc, &packet);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{answer}");
    }
    Ok(())
}

/// `felix bpf attached`: asks the kernel, in this network namespace.
fn show_attached(args: &AttachedArgs) -> Result<()> {
    let runtime = small_runtime()?;
    let rows = runtime.block_on(felix_user::dataplane::attached::list())?;
    if args.json {
        let doc = serde_json::json!({ "attached": rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", felix_user::dataplane::attached::table(&rows));
    }
    Ok(())
}

/// Prints `rows` as JSON (`{"node":..,"<field>":[..]}`) or as a table.
fn print_rows<T: serde::Serialize>(
    args: &DumpArgs,
    node: &str,
    field: &str,
    rows: &[T],
    table: impl Fn(&[T]) -> String,
) -> Result<()> {
    if args.json {
        let doc = serde_json::json!({ "node": node, field: rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("node {node}");
        print!("{}", table(rows));
    }
    Ok(())
}

/// A single-threaded runtime for the commands that make a few async calls.
fn small_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Runs an etcd client operation on a small runtime, with a bounded connect.
fn with_etcd<T>(
    endpoints: &[String],
    work: impl AsyncFnOnce(&mut etcd_client::Client) -> Result<T>,
) -> Result<T> {
    let runtime = small_runtime()?;
    runtime
        .block_on(async {
            let connect = etcd_client::Client::connect(endpoints, None);
            let mut client = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .context("etcd did not answer within 5 s")??;
            work(&mut client).await
        })
        .with_context(|| format!("etcd at {}", endpoints.join(",")))
}

/// `felix apply` / `felix delete`: every valid document is written (or deleted); every invalid
/// one is reported. Exit code 1 when any document failed.
fn apply_file(args: &FileArgs, apply: bool) -> Result<()> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("read standard input")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("read {}", args.file.display()))?
    };
    let documents = model::document::parse_documents(&text);
    if documents.is_empty() {
        anyhow::bail!("{} holds no documents", args.file.display());
    }
    let mut failed = 0;
    let mut valid = Vec::new();
    for document in documents {
        match document {
            Ok(resource) => valid.push(resource),
            Err(error) => {
                eprintln!(
                    "error: {error} (not {})",
                    if apply { "written" } else { "deleted" }
                );
                failed += 1;
            }
        }
    }
    let done = with_etcd(&args.etcd.etcd_endpoints, async |client| {
        let mut done = Vec::new();
        for resource in &valid {
            let key = resource.key();
            if apply {
                client.put(key.as_str(), resource.to_json(), None).await?;
                done.push(format!(
                    "applied {} {}",
                    resource.kind().as_str(),
                    resource.qualified_name()
                ));
            } else {
                let deleted = client.delete(key.as_str(), None).await?.deleted();
                done.push(if deleted > 0 {
                    format!(
                        "deleted {} {}",
                        resource.kind().as_str(),
                        resource.qualified_name()
                    )
                } else {
                    format!(
                        "{} {} did not exist",
                        resource.kind().as_str(),
                        resource.qualified_name()
                    )
                });
            }
        }
        Ok(done)
    })?;
    for line in done {
        println!("{line}");
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} document(s) not {}",
            if apply { "applied" } else { "deleted" }
        );
    }
    Ok(())
}

fn get_resources(args: &GetArgs) -> Result<()> {
    let kind = model::Kind::from_user(&args.kind).with_context(|| {
        format!(
            "unknown kind {:?}: use e.g. networkpolicy, globalnetworkpolicy, profile, tier, ippool, node, workloadendpoint, globalnetworkset, hostendpoint, felixconfiguration, bgpconfiguration, bgppeer",
            args.kind
        )
    })?;
    let namespace = args.namespace.as_deref();
    let (key, prefix) = match &args.name {
        Some(name) => (
            model::key_for(
                kind,
                namespace.or(kind.namespaced().then_some("default")),
                name,
            ),
            false,
        ),
        None => (model::prefix_of(kind, namespace), true),
    };
    let kvs = with_etcd(&args.etcd.etcd_endpoints, async |client| {
        let options = prefix.then(|| etcd_client::GetOptions::new().with_prefix());
        let response = client.get(key.as_str(), options).await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or("").to_owned(), kv.value().to_vec()))
            .collect::<Vec<_>>())
    })?;
    if let Some(name) = &args.name
        && kvs.is_empty()
    {
        anyhow::bail!("{} {name:?} not found", kind.as_str());
    }
    let mut values = Vec::new();
    for (key, value) in &kvs {
        match model::Resource::from_etcd(key, value) {
            Ok(resource) => values.push(resource.to_value()),
            Err(error) => eprintln!("warning: skipping {key}: {error}"),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else {
        for value in &values {
            println!("---");
            print!("{}", serde_yaml_ng::to_string(value)?);
        }
    }
    Ok(())
}

fn run_ipam(command: IpamCommand) -> Result<()> {
    match command {
        IpamCommand::Claim {
            node,
            pool,
            block_size,
            etcd,
        } => {
            let block = with_etcd(&etcd.etcd_endpoints, async |client| {
                Ok(ipam::claim(client, &node, pool, block_size).await?)
            })?;
            println!("{block}");
        }
        IpamCommand::Assign {
            node,
            handle,
            attrs,
            etcd,
        } => {
            let ip = with_etcd(&etcd.etcd_endpoints, async |client| {
                Ok(ipam::assign(client, &node, &handle, attrs.into_iter().collect()).await?)
            })?;
            println!("{ip}");
        }
        IpamCommand::Release { ip, etcd } => {
            with_etcd(&etcd.etcd_endpoints, async |client| {
                Ok(ipam::release(client, ip).await?)
            })?;
            println!("released {ip}");
        }
        IpamCommand::Show { json, etcd } => {
            let blocks = with_etcd(&etcd.etcd_endpoints, async |client| {
                Ok(ipam::all_blocks(client).await?)
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&blocks)?);
            } else {
                let rows: Vec<Vec<String>> = blocks
                    .iter()
                    .map(|b| {
                        vec![
                            b.cidr.to_string(),
                            b.affinity.clone().unwrap_or_else(|| "-".into()),
                            format!("{}/{}", b.used(), b.allocations.len()),
                        ]
                    })
                    .collect();
                print!("{}", inspect::table(&["BLOCK", "AFFINITY", "USED"], &rows));
            }
        }
    }
    Ok(())
}

fn show_status(args: &StatusArgs) -> Result<()> {
    let kvs = with_etcd(&args.etcd.etcd_endpoints, async |client| {
        let response = client
            .get(
                status::hosts_prefix(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or("").to_owned(), kv.value().to_vec()))
            .collect::<Vec<_>>())
    })?;
    let overview = status::overview(
        kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        args.node.as_deref(),
    );
    if let Some(node) = &args.node
        && overview.nodes.is_empty()
        && overview.endpoints.is_empty()
    {
        anyhow::bail!(
            "no status for node {node:?} in etcd: its felix is not running, or its status expired"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&overview)?);
        return Ok(());
    }
    let now = std::time::SystemTime::now();
    let age = |time: &str| {
        humantime::parse_rfc3339(time)
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .map_or_else(|| "?".into(), |d| format!("{}s", d.as_secs()))
    };
    let nodes: Vec<Vec<String>> = overview
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                n.status.ready.to_string(),
                n.status.dataplane.clone(),
                n.status.programs_loaded.to_string(),
                n.status.xdp.clone().unwrap_or_else(|| "-".into()),
                format!("{:.0}s", n.status.uptime),
                n.status.last_sync.clone().unwrap_or_else(|| "-".into()),
                age(&n.status.time),
            ]
        })
        .collect();
    print!(
        "{}",
        inspect::table(
            &[
                "NODE",
                "READY",
                "DATAPLANE",
                "PROGRAMS",
                "XDP",
                "UPTIME",
                "LAST SYNC",
                "REPORTED"
            ],
            &nodes
        )
    );
    println!();
    let datastores: Vec<Vec<String>> = overview
        .nodes
        .iter()
        .filter_map(|n| Some((&n.node, n.status.datastore.as_ref()?)))
        .map(|(node, d)| {
            let malformed: Vec<String> = d
                .malformed
                .iter()
                .map(|(kind, count)| format!("{kind}={count}"))
                .collect();
            vec![
                node.clone(),
                if d.sync.in_sync {
                    "in sync"
                } else {
                    "NOT IN SYNC"
                }
                .into(),
                d.sync.revision.to_string(),
                d.sync.reconnects.to_string(),
                d.sync.resyncs.to_string(),
                if malformed.is_empty() {
                    "-".into()
                } else {
                    malformed.join(",")
                },
            ]
        })
        .collect();
    if !datastores.is_empty() {
        print!(
            "{}",
            inspect::table(
                &[
                    "NODE",
                    "DATASTORE",
                    "REVISION",
                    "RECONNECTS",
                    "RESYNCS",
                    "MALFORMED"
                ],
                &datastores
            )
        );
        println!();
    }
    let endpoints: Vec<Vec<String>> = overview
        .endpoints
        .iter()
        .map(|e| {
            vec![
                e.node.clone(),
                format!("{}/{}", e.orchestrator, e.workload),
                e.endpoint.clone(),
                e.status.clone(),
                e.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        inspect::table(
            &["NODE", "WORKLOAD", "ENDPOINT", "STATUS", "REASON"],
            &endpoints
        )
    );
    Ok(())
}

fn uninstall(args: &NodeArgs) -> Result<()> {
    let paths = pins::resolve_node(
        &args.roots.pin_root,
        &args.roots.run_root,
        args.node.as_deref(),
    )?;
    if let Some(pid) = paths.running_pid() {
        anyhow::bail!(
            "felix for node {:?} is running (pid {pid}); stop it first, or it would keep using the dataplane",
            paths.node()
        );
    }
    paths.remove_dataplane()?;
    println!(
        "node {}: links and maps unpinned; its programs are detached",
        paths.node()
    );
    Ok(())
}

fn flush_conntrack(args: &NodeArgs) -> Result<()> {
    let paths = pins::resolve_node(
        &args.roots.pin_root,
        &args.roots.run_root,
        args.node.as_deref(),
    )?;
    // Loading adopts the pinned maps; the programs it loads are dropped unattached.
    let mut dataplane = Dataplane::load(&paths).context("open the pinned maps")?;
    let removed = ct_gc::flush(&mut dataplane);
    println!(
        "removed {removed} conntrack entries from node {}",
        paths.node()
    );
    Ok(())
}

/// How long `felix bpf xdp-deny add|del` waits for the running felix to attach or detach the
/// uplink's XDP prefilter (it checks the deny list every second).
const XDP_WAIT: Duration = Duration::from_secs(3);

fn change_deny(args: &DenyArgs, add: bool) -> Result<()> {
    let paths = pins::resolve_node(
        &args.node.roots.pin_root,
        &args.node.roots.run_root,
        args.node.node.as_deref(),
    )?;
    let map = inspect::open(&paths, felix_common::maps::XDP_DENY)?;
    let mut deny: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(map)?;
    let key = Key::new(u32::from(args.cidr.prefix_len()), args.cidr.addr().octets());
    if add {
        deny.insert(&key, 1, 0)
            .with_context(|| format!("add {} to the deny list", args.cidr))?;
        println!(
            "node {}: dropping packets from {} at XDP",
            paths.node(),
            args.cidr
        );
    } else {
        deny.remove(&key).with_context(|| {
            format!(
                "{} is not on the deny list of node {}",
                args.cidr,
                paths.node()
            )
        })?;
        println!(
            "node {}: no longer dropping packets from {}",
            paths.node(),
            args.cidr
        );
    }
    let entries = deny.keys().next().is_some();
    wait_for_xdp(&paths, entries, &args.cidr)
}

/// After an edit of the deny list: waits (up to [`XDP_WAIT`]) until the node's running felix has
/// the uplink's XDP prefilter attached (`attached`: the list has entries) or detached (it is
/// empty), and says so; warns when it does not happen in time.
fn wait_for_xdp(paths: &pins::NodePaths, attached: bool, cidr: &Ipv4Net) -> Result<()> {
    let uplink_role = felix_common::IfaceRole::Uplink.name();
    if paths.running_pid().is_none() {
        println!(
            "felix for node {} is not running: the XDP prefilter is attached to the uplink while \
             the deny list has entries, once felix runs",
            paths.node()
        );
        return Ok(());
    }
    let start = std::time::Instant::now();
    let mut first = true;
    loop {
        let uplink = inspect::read_ifaces(paths)?
            .into_iter()
            .find(|row| row.role == uplink_role);
        let waited = start.elapsed();
        match &uplink {
            Some(row) if (row.xdp != attach_mode_name_none()) == attached => {
                let (state, how) = if attached {
                    ("attached to", format!(" ({})", row.xdp))
                } else {
                    ("detached from", String::new())
                };
                let when = if first {
                    String::new()
                } else {
                    format!(" after {:.1} s", waited.as_secs_f64())
                };
                let why = if attached {
                    "the deny list has entries"
                } else {
                    "the deny list is empty"
                };
                println!("XDP prefilter {state} {}{how}{when}: {why}", row.name);
                return Ok(());
            }
            _ if waited >= XDP_WAIT => {
                let uplink = uplink.map_or_else(|| "the uplink".to_owned(), |row| row.name);
                if attached {
                    eprintln!(
                        "warning: felix has not attached the XDP prefilter to {uplink} within {} s, \
                         so packets from {cidr} still pass: `felix status` shows whether XDP is \
                         disabled (XDPEnabled false) or failed (felix's log says why)",
                        XDP_WAIT.as_secs()
                    );
                } else {
                    eprintln!(
                        "warning: felix has not detached the XDP prefilter from {uplink} within {} s \
                         (the deny list is empty; `felix bpf ifaces dump` shows its state)",
                        XDP_WAIT.as_secs()
                    );
                }
                return Ok(());
            }
            _ => {
                first = false;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// How `felix bpf ifaces dump` names a hook without a program.
fn attach_mode_name_none() -> &'static str {
    felix_common::ifaces::attach_mode::name(felix_common::ifaces::attach_mode::NONE)
}

/// The flags given on the command line, by setting name (clap's `value_source` tells them from
/// environment variables and defaults).
fn given_flags(matches: &clap::ArgMatches) -> std::collections::BTreeMap<&'static str, String> {
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
fn run(args: RunArgs, matches: &clap::ArgMatches, log_filter: &LogFilter) -> Result<()> {
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
        pin_root: args.roots.pin_root,
        run_root: args.roots.run_root,
        workload_prefixes: settings.workload_prefixes.clone(),
        uplink: settings.uplink.clone(),
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
fn restart_self() -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("find felix's own executable")?;
    let error = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(error).with_context(|| format!("restart {}", exe.display()))
}

/// Finds the node to read and refuses a node whose felix is not running unless asked.
fn node_for_dump(args: &DumpArgs) -> Result<pins::NodePaths> {
    let paths = pins::resolve_node(
        &args.roots.pin_root,
        &args.roots.run_root,
        args.node.as_deref(),
    )?;
    if !args.stale_ok && paths.running_pid().is_none() {
        anyhow::bail!(
            "felix for node {:?} is not running (its maps are still pinned at {}); start `felix run --node {}` or pass --stale-ok to read them anyway",
            paths.node(),
            paths.pin_dir().display(),
            paths.node()
        );
    }
    Ok(paths)
}
