//! `felix bpf ...`: the node's pinned maps (dumps through [`MapDump`]), the trace, the
//! attachments, conntrack flush, the XDP deny list and uninstall.

use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::maps::{LpmTrie, lpm_trie::Key};
use clap::{Args, Subcommand};
use felix_user::dataplane::{
    failsafe,
    loader::Dataplane,
    maps::{
        self, MapDump,
        conntrack::{self, Conntrack},
        counters::Counters,
        endpoints::Endpoints,
        ifaces::Ifaces,
        nat_origins::NatOrigins,
        routes::Routes,
        xdp_deny::XdpDeny,
    },
    pins,
};
use felix_user::iptables::{Backend, nat};
use ipnet::Ipv4Net;

use crate::{
    output::{Roots, parse_cidr, print_rows, small_runtime},
    run::attach_mode_name_none,
};

#[derive(Subcommand)]
pub(crate) enum BpfCommand {
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
    /// First packets of pods' flows in flight through the host stack (judged after its NAT),
    /// with the flow as the pod sent it.
    #[command(subcommand)]
    NatOrigins(DumpOnly),
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
pub(crate) struct AttachedArgs {
    /// Print JSON (`{"attached": [rows]}`) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct TraceArgs {
    /// Only events on this interface.
    #[arg(long)]
    pub(crate) iface: Option<String>,
    /// Only events with this reason (e.g. drop_policy, drop_spoofed).
    #[arg(long)]
    pub(crate) reason: Option<String>,
    /// Only drops, policy allows or policy denies.
    #[arg(long, value_parser = ["drop", "allow", "deny"])]
    pub(crate) kind: Option<String>,
    /// Events per second each CPU may emit (the rest are counted as suppressed).
    #[arg(long, default_value_t = felix_user::dataplane::trace::DEFAULT_RATE, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) rate: u32,
    /// Stop after this many printed events.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub(crate) seconds: Option<u64>,
    #[command(flatten)]
    pub(crate) dump: DumpArgs,
}

#[derive(Subcommand)]
pub(crate) enum PolicyDumpCommand {
    /// Print the policy of every endpoint (or one interface's).
    ///
    /// Example: felix bpf policy dump --node h1 --iface cali1234567890a
    Dump(PolicyDumpArgs),
}

#[derive(Args)]
pub(crate) struct PolicyDumpArgs {
    /// Only the endpoint on this interface.
    #[arg(long)]
    pub(crate) iface: Option<String>,
    #[command(flatten)]
    pub(crate) dump: DumpArgs,
}

#[derive(Subcommand)]
pub(crate) enum ConntrackCommand {
    /// Print the flows, oriented from their initiator.
    ///
    /// Example: felix bpf conntrack dump --node h1
    Dump(DumpArgs),
    /// Remove every entry (established flows are re-learnt from their next packet).
    Flush(NodeArgs),
}

#[derive(Subcommand)]
pub(crate) enum DenyCommand {
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
pub(crate) struct NodeArgs {
    /// Node whose maps to change; may be left out when only one node has pinned maps.
    #[arg(long)]
    pub(crate) node: Option<String>,
    #[command(flatten)]
    pub(crate) roots: Roots,
}

#[derive(Args)]
pub(crate) struct DenyArgs {
    /// An IPv4 CIDR or address, e.g. 10.0.0.9/32.
    #[arg(value_parser = parse_cidr)]
    pub(crate) cidr: Ipv4Net,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
}

#[derive(Subcommand)]
pub(crate) enum DumpOnly {
    /// Print the map's contents.
    ///
    /// Example: felix bpf counters dump --node h1 --json
    Dump(DumpArgs),
}

#[derive(Args)]
pub(crate) struct DumpArgs {
    /// Node whose maps to read; may be left out when only one node has pinned maps.
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Read the pinned maps even when that node's felix is not running.
    #[arg(long)]
    pub(crate) stale_ok: bool,
    #[command(flatten)]
    pub(crate) roots: Roots,
}

/// Runs a `felix bpf` command.
pub(crate) fn dispatch(command: BpfCommand) -> Result<()> {
    match command {
        BpfCommand::Counters(DumpOnly::Dump(args)) => dump::<Counters>(&args),
        BpfCommand::Ifaces(DumpOnly::Dump(args)) => dump::<Ifaces>(&args),
        BpfCommand::Endpoints(DumpOnly::Dump(args)) => dump::<Endpoints>(&args),
        BpfCommand::Routes(DumpOnly::Dump(args)) => dump::<Routes>(&args),
        BpfCommand::Conntrack(ConntrackCommand::Dump(args)) => dump::<Conntrack>(&args),
        BpfCommand::Conntrack(ConntrackCommand::Flush(args)) => flush_conntrack(&args),
        BpfCommand::NatOrigins(DumpOnly::Dump(args)) => dump::<NatOrigins>(&args),
        BpfCommand::XdpDeny(DenyCommand::Dump(args)) => dump::<XdpDeny>(&args),
        BpfCommand::XdpDeny(DenyCommand::Add(args)) => change_deny(&args, true),
        BpfCommand::XdpDeny(DenyCommand::Del(args)) => change_deny(&args, false),
        BpfCommand::Failsafe(DumpOnly::Dump(args)) => {
            let paths = node_for_dump(&args)?;
            let rows = failsafe::read(&paths)?;
            print_rows(&args, paths.node(), "failsafe", &rows, failsafe::table)
        }
        BpfCommand::Policy(PolicyDumpCommand::Dump(args)) => {
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
        BpfCommand::Uninstall(args) => uninstall(&args),
        BpfCommand::Trace(args) => run_trace(&args),
        BpfCommand::Attached(args) => show_attached(&args),
    }
}

/// `felix bpf <map> dump`: the node's pinned map `M` as a table or JSON.
fn dump<M: MapDump>(args: &DumpArgs) -> Result<()> {
    let paths = node_for_dump(args)?;
    let rows = M::read(&paths)?;
    print_rows(args, paths.node(), M::FIELD, &rows, M::table)
}

/// `felix bpf trace`: prints events (JSON lines with --json) until the count, the time limit or
/// SIGINT/SIGTERM; then switches tracing off and reports what the rate limit suppressed.
pub(crate) fn run_trace(args: &TraceArgs) -> Result<()> {
    use felix_user::dataplane::trace::{TraceFilter, TraceSession, describe};
    let paths = node_for_dump(&args.dump)?;
    let names = maps::ifaces::interface_names(&paths)?;
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
    let start = conntrack::monotonic_ns();
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

/// `felix bpf attached`: asks the kernel, in this network namespace.
pub(crate) fn show_attached(args: &AttachedArgs) -> Result<()> {
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

pub(crate) fn uninstall(args: &NodeArgs) -> Result<()> {
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
    // The natOutgoing rules outlive felix (a restart keeps pods' outside traffic flowing).
    for backend in [Backend::Nft, Backend::Legacy] {
        let removed = nat::cleanup(backend)
            .with_context(|| format!("removing felix's nat rules ({})", backend.name()))?;
        if removed > 0 {
            println!(
                "removed {removed} natOutgoing chains and jumps ({})",
                backend.name()
            );
        }
    }
    Ok(())
}

pub(crate) fn flush_conntrack(args: &NodeArgs) -> Result<()> {
    let paths = pins::resolve_node(
        &args.roots.pin_root,
        &args.roots.run_root,
        args.node.as_deref(),
    )?;
    // Loading adopts the pinned maps; the programs it loads are dropped unattached.
    let mut dataplane = Dataplane::load(&paths).context("open the pinned maps")?;
    let removed = conntrack::flush(&mut dataplane.conntrack()?);
    println!(
        "removed {removed} conntrack entries from node {}",
        paths.node()
    );
    Ok(())
}

/// How long `felix bpf xdp-deny add|del` waits for the running felix to attach or detach the
/// uplink's XDP prefilter (it checks the deny list every second).
const XDP_WAIT: Duration = Duration::from_secs(3);

pub(crate) fn change_deny(args: &DenyArgs, add: bool) -> Result<()> {
    let paths = pins::resolve_node(
        &args.node.roots.pin_root,
        &args.node.roots.run_root,
        args.node.node.as_deref(),
    )?;
    let map = maps::open(&paths, felix_common::maps::XDP_DENY)?;
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
pub(crate) fn wait_for_xdp(paths: &pins::NodePaths, attached: bool, cidr: &Ipv4Net) -> Result<()> {
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
        let uplink = maps::ifaces::read_ifaces(paths)?
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

/// Finds the node to read and refuses a node whose felix is not running unless asked.
pub(crate) fn node_for_dump(args: &DumpArgs) -> Result<pins::NodePaths> {
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
