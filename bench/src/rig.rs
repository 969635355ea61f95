//! The real eBPF object loaded under a private pin tree, one workload endpoint seeded, and
//! its programs run with BPF_PROG_TEST_RUN. The pin tree and run folder are removed on drop,
//! also after an error or an interrupt (SIGINT/SIGTERM stop the next run with an error). The
//! calling thread stays on one CPU.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::maps::lpm_trie::Key;
use felix_common::{
    CtKey, EndpointInfo, IfaceRole, RouteKind, RouteValue, endpoints::endpoint_flags,
    maps::RULE_COUNTERS_MAX_ENTRIES,
};
use felix_user::{
    calc::policy::{calc::GroupKey, program::Program, rule_ids::RuleIds},
    dataplane::loader::Dataplane,
    dataplane::maps::counter_cache,
    dataplane::pins::NodePaths,
    dataplane::policy::tables::{PolicyTables, Programmed},
};
use testkit::prog_run::{self, PinTree, RunOptions};

/// The workload endpoint's interface: BPF_PROG_TEST_RUN runs TC programs on `lo` (ifindex 1).
const WORKLOAD_IFINDEX: u32 = prog_run::LOOPBACK_IFINDEX;
/// The workload's address, in this host's block 192.168.2.0/26.
pub const POD_IP: [u8; 4] = testkit::packet::POD_IP;
const POD_MAC: [u8; 6] = testkit::packet::POD_MAC;

/// Keeps the calling thread on the CPU it runs on, so that every run sees the same caches
/// and per-CPU conntrack free lists.
fn pin_to_current_cpu() -> Result<()> {
    // SAFETY: no arguments.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu).context("sched_getcpu")?;
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity get valid
    // pointers to it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The outcome of one BPF_PROG_TEST_RUN call.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub verdict: u32,
    /// The kernel's average time per run, in ns (whole ns).
    pub ns: u64,
}

/// The loaded dataplane and its policy tables.
pub struct Rig {
    dataplane: Dataplane,
    _pins: PinTree,
    tables: PolicyTables,
    rule_ids: RuleIds,
    /// The group the endpoint points at between measurements (allow-all).
    park: GroupKey,
    park_slot: u32,
}

impl Rig {
    /// Loads the embedded object with its maps pinned under `/sys/fs/bpf/felix-bench-<pid>-<n>`
    /// and seeds the endpoint (on `park`, programmed as `park_program`) and its routes; from
    /// here on the thread stays on its CPU and SIGINT/SIGTERM end the next run.
    pub fn load(park: GroupKey, park_program: &Program) -> Result<Self> {
        Self::load_object(felix_user::EBPF_OBJECT, park, park_program)
    }

    /// As [`Rig::load`] with another eBPF object (e.g. a variant to compare); each rig has a
    /// pin tree of its own.
    pub fn load_object(object: &[u8], park: GroupKey, park_program: &Program) -> Result<Self> {
        static LOADED: AtomicUsize = AtomicUsize::new(0);
        crate::signals::install();
        pin_to_current_cpu()?;
        let n = LOADED.fetch_add(1, Ordering::Relaxed);
        let pins = PinTree::new("felix-bench", &n.to_string());
        let paths = NodePaths::new(&pins.pin_root, &pins.run_root, "bench")?;
        paths
            .create()
            .context("create the pin tree (needs root and bpffs at /sys/fs/bpf)")?;
        let dataplane = Dataplane::load_bytes(object, &paths).context("load the eBPF programs")?;
        let mut rig = Self {
            dataplane,
            _pins: pins,
            tables: PolicyTables::new(),
            rule_ids: RuleIds::new(RULE_COUNTERS_MAX_ENTRIES),
            park: park.clone(),
            park_slot: 0,
        };
        rig.program(&HashMap::from([(park.clone(), park_program.clone())]))?;
        rig.park_slot = rig.programmed(&park)?.slot;
        rig.seed()?;
        Ok(rig)
    }

    fn seed(&mut self) -> Result<()> {
        self.point_endpoint(self.park_slot)?;
        // As felix does when it attaches to the interface (an older object, measured with
        // `--object`, may have no counter cache).
        if let Ok(mut cache) = self.dataplane.counter_cache() {
            counter_cache::claim(
                &mut cache,
                WORKLOAD_IFINDEX,
                counter_cache::directions(IfaceRole::Workload),
            )
            .context("claim counter cache lines")?;
        }
        let mut routes = self.dataplane.routes()?;
        for (addr, len, kind, ifindex) in [
            (POD_IP, 32, RouteKind::LocalWorkload, WORKLOAD_IFINDEX),
            ([192, 168, 2, 0], 26, RouteKind::LocalBlock, 0),
        ] {
            routes
                .insert(
                    &Key::new(len, addr),
                    RouteValue::new(kind, ifindex, [0; 4]),
                    0,
                )
                .context("seed a route")?;
        }
        Ok(())
    }

    /// Programs `groups` as felix does (compile, write each set, flip its slot); returns how
    /// long that took.
    pub fn program(&mut self, groups: &HashMap<GroupKey, Program>) -> Result<Duration> {
        let started = Instant::now();
        let applied = self
            .tables
            .apply(&mut self.dataplane, groups, &mut self.rule_ids)?;
        if applied.failed != 0 {
            bail!("{} policies did not compile", applied.failed);
        }
        Ok(started.elapsed())
    }

    /// What is programmed for `group`.
    pub fn programmed(&self, group: &GroupKey) -> Result<&Programmed> {
        self.tables
            .groups()
            .find(|(g, _)| *g == group)
            .map(|(_, p)| p)
            .with_context(|| format!("group {group:?} is not programmed"))
    }

    /// Points the endpoint's ingress and egress policy at `slot`.
    pub fn point_endpoint(&mut self, slot: u32) -> Result<()> {
        let info = EndpointInfo {
            ip: POD_IP,
            mac: POD_MAC,
            flags: endpoint_flags::MAC_KNOWN,
            policy_slots: [slot, slot],
        };
        self.dataplane
            .endpoints()?
            .insert(WORKLOAD_IFINDEX, info, 0)
            .context("set the endpoint")
    }

    /// Parks the endpoint and deletes every set but the park's (so the maps have room for
    /// the next policies).
    pub fn release_all(&mut self) -> Result<()> {
        self.point_endpoint(self.park_slot)?;
        let keep = HashSet::from([self.park.clone()]);
        self.tables.release_unused(&mut self.dataplane, &keep)?;
        Ok(())
    }

    /// Runs TC `program` `repeat` times on `frame`.
    pub fn run(&mut self, program: &'static str, frame: &[u8], repeat: u32) -> Result<Run> {
        crate::signals::check()?;
        let options = RunOptions {
            on: None,
            repeat,
            output: false,
        };
        let outcome = prog_run::run(self.dataplane.classifier(program)?, frame, options)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {program}"))?;
        Ok(Run {
            verdict: outcome.verdict,
            ns: outcome.duration.as_nanos() as u64,
        })
    }

    /// Whether the conntrack table holds `key`.
    pub fn has_flow(&mut self, key: &CtKey) -> Result<bool> {
        Ok(self.dataplane.conntrack()?.get(key, 0).is_ok())
    }

    /// Removes the flow `key` from conntrack; an error if it was not there.
    pub fn remove_flow(&mut self, key: &CtKey) -> Result<()> {
        self.dataplane
            .conntrack()?
            .remove(key)
            .context("remove a conntrack entry")
    }

    /// Packets counted for rule counter `id`, summed over CPUs.
    pub fn rule_count(&mut self, id: u32) -> Result<u64> {
        let counters = self.dataplane.rule_counters()?;
        let per_cpu = counters.get(&id, 0).context("read a rule counter")?;
        Ok(per_cpu.iter().sum())
    }
}
