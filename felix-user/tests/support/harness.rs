//! Loads the real eBPF object into the kernel under a private pin tree, seeds its maps with a
//! small topology, and runs its programs with BPF_PROG_TEST_RUN. Everything it pins is removed
//! on drop, also when a test fails; its network namespace dies with the test's thread.
//!
//! Topology: this host is 10.0.0.1 (uplink `up0`, block 192.168.2.0/26); the other host is
//! 10.0.0.2 (block 192.168.3.0/26). Pod A (192.168.2.1) sits behind ifindex 1 (`lo`, the device
//! BPF_PROG_TEST_RUN uses by default), pod B (192.168.2.2) behind `wlb`; `wlc` is a workload
//! interface with no endpoint.

use std::collections::{BTreeMap, HashMap, HashSet};

use aya::maps::lpm_trie::Key;
use aya::programs::ProgramError;
use felix_common::{
    CounterKey, CounterValue, CtKey, CtValue, Direction, EndpointInfo, HostConfig, IfaceRole,
    Reason, RouteKind, RouteValue, endpoints::endpoint_flags, maps::RULE_COUNTERS_MAX_ENTRIES,
};
use felix_user::{
    calc::policy::{
        PolicyDirection, RuleRef,
        calc::GroupKey,
        program::{Entry, Match, Program, Step},
        rule_ids::RuleIds,
    },
    dataplane::loader::Dataplane,
    dataplane::maps::counter_cache,
    dataplane::pins::NodePaths,
    dataplane::policy::tables::PolicyTables,
};

use testkit::prog_run::{self, PinTree, RunOptions};
pub use testkit::prog_run::{On, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT};

use super::{
    net::{HOST_IP, PEER_HOST_IP, TestNet},
    packet::{PEER_IP, PEER_MAC, POD_IP, POD_MAC, REMOTE_POD_IP},
};

/// Pod A's interface: the namespace's loopback device, where BPF_PROG_TEST_RUN runs TC
/// programs unless the context names another.
pub const WORKLOAD_A: u32 = prog_run::LOOPBACK_IFINDEX;

pub struct Harness {
    dataplane: Option<Dataplane>,
    pins: PinTree,
    pub net: TestNet,
    pub policy: PolicyTables,
    pub rule_ids: RuleIds,
    /// The slot of the allow-everything policy every seeded endpoint starts with.
    pub allow_all_slot: u32,
}

/// A program that allows everything (as Calico's `kns.<namespace>` profiles do).
pub fn allow_all() -> (GroupKey, Program) {
    one_rule_profile(
        "allow-all",
        PolicyDirection::Ingress,
        Step::Allow,
        Match::default(),
    )
}

/// The policy of one profile `name` in `direction` with one rule (`step` on `matcher`) before
/// the default deny, as the calculation compiles it.
pub fn one_rule_profile(
    name: &str,
    direction: PolicyDirection,
    step: Step,
    matcher: Match,
) -> (GroupKey, Program) {
    let key = GroupKey {
        direction,
        policies: vec![],
        profiles: vec![name.into()],
        local_mask: vec![true],
        local_ports: Vec::new(),
    };
    let program = Program {
        entries: vec![Entry {
            by: RuleRef::Profile {
                profile: name.into(),
                direction,
                index: 0,
            },
            step,
            matcher: Some(matcher),
        }],
        default_deny: RuleRef::DefaultDeny { direction },
    };
    (key, program)
}

/// What one run returned.
pub struct Outcome {
    pub verdict: u32,
    pub data_out: Vec<u8>,
    /// The skb's mark after the run.
    pub mark: u32,
}

impl Harness {
    /// Enters a private namespace and loads the object with its maps pinned under
    /// `/sys/fs/bpf/felix-test-<pid>-<tag>`, seeded with the topology above.
    pub fn new(tag: &str) -> Self {
        Self::with_sizes(tag, &felix_user::dataplane::loader::MapSizes::default())
    }

    /// As [`Harness::new`] with the configurable maps sized by `sizes`.
    pub fn with_sizes(tag: &str, sizes: &felix_user::dataplane::loader::MapSizes) -> Self {
        let net = TestNet::enter();
        let mut harness = Self {
            dataplane: None,
            pins: PinTree::new("felix-test", tag),
            net,
            policy: PolicyTables::new(),
            rule_ids: RuleIds::new(RULE_COUNTERS_MAX_ENTRIES),
            allow_all_slot: 0,
        };
        let paths = harness.paths();
        paths
            .create()
            .expect("create pin tree (needs root and bpffs at /sys/fs/bpf)");
        harness.dataplane = Some(
            Dataplane::load_sized(felix_user::EBPF_OBJECT, &paths, sizes)
                .expect("load and verify the eBPF programs"),
        );
        harness.seed();
        harness
    }

    /// The pin tree of the harness's node.
    pub fn paths(&self) -> NodePaths {
        NodePaths::new(&self.pins.pin_root, &self.pins.run_root, "node").expect("node paths")
    }

    /// Runs TC `program` `times` times on `frame` (BPF_PROG_TEST_RUN's repeat) and returns the
    /// verdict.
    pub fn run_repeated(&mut self, program: &'static str, on: On, frame: &[u8], times: u32) -> u32 {
        let classifier = self
            .dataplane()
            .classifier(program)
            .expect("program present");
        let options = RunOptions {
            repeat: times,
            ..RunOptions::once_on(on)
        };
        prog_run::run(classifier, frame, options)
            .expect("BPF_PROG_TEST_RUN")
            .verdict
    }

    pub fn dataplane(&mut self) -> &mut Dataplane {
        self.dataplane.as_mut().expect("loaded in new()")
    }

    /// Programs `program` for `group` and returns its slot.
    pub fn program_policy(&mut self, group: &GroupKey, program: &Program) -> u32 {
        let wanted = HashMap::from([(group.clone(), program.clone())]);
        let dataplane = self.dataplane.as_mut().expect("loaded in new()");
        self.policy
            .apply(dataplane, &wanted, &mut self.rule_ids)
            .expect("program policy");
        self.policy.slot_of(group).expect("slot assigned")
    }

    /// What felix does once its endpoints point at the new slots: deletes the sets flipped
    /// away from and the groups not in `keep`; the number of groups released.
    pub fn release_policy(&mut self, keep: &HashSet<GroupKey>) -> usize {
        let dataplane = self.dataplane.as_mut().expect("loaded in new()");
        self.policy
            .release_unused(dataplane, keep)
            .expect("release policy")
    }

    /// Points the endpoint behind `ifindex` at `ip` and the given policy slots.
    pub fn set_endpoint(&mut self, ifindex: u32, ip: [u8; 4], slots: [u32; 2]) {
        let info = EndpointInfo {
            ip,
            mac: POD_MAC,
            flags: endpoint_flags::MAC_KNOWN,
            policy_slots: slots,
        };
        self.dataplane()
            .endpoints()
            .expect("endpoints map")
            .insert(ifindex, info, 0)
            .expect("set endpoint");
    }

    /// Empties the conntrack table, so the next packet is a flow's first.
    pub fn flush_conntrack(&mut self) {
        let mut ct = self.dataplane().conntrack().expect("conntrack map");
        let keys: Vec<CtKey> = ct.keys().flatten().collect();
        for key in keys {
            ct.remove(&key).expect("remove conntrack entry");
        }
    }

    /// Packets counted for rule counter `id`, summed over CPUs.
    pub fn rule_count(&mut self, id: u32) -> u64 {
        let counters = self.dataplane().rule_counters().expect("rule counters");
        counters
            .get(&id, 0)
            .map(|v| v.iter().sum())
            .unwrap_or_default()
    }

    fn seed(&mut self) {
        let (group, program) = allow_all();
        self.allow_all_slot = self.program_policy(&group, &program);
        let slots = [self.allow_all_slot; 2];
        let (uplink, workload_b) = (self.net.uplink, self.net.workload_b);
        let dataplane = self.dataplane();
        let mut endpoints = dataplane.endpoints().expect("endpoints map");
        for (ifindex, ip, mac) in [
            (WORKLOAD_A, POD_IP, POD_MAC),
            (workload_b, PEER_IP, PEER_MAC),
        ] {
            let info = EndpointInfo {
                ip,
                mac,
                flags: endpoint_flags::MAC_KNOWN,
                policy_slots: slots,
            };
            endpoints.insert(ifindex, info, 0).expect("seed endpoint");
        }
        let mut routes = dataplane.routes().expect("routes map");
        let seeded = [
            (
                POD_IP,
                32,
                RouteValue::new(RouteKind::LocalWorkload, WORKLOAD_A, [0; 4]),
            ),
            (
                PEER_IP,
                32,
                RouteValue::new(RouteKind::LocalWorkload, workload_b, [0; 4]),
            ),
            (
                [192, 168, 2, 0],
                26,
                RouteValue::new(RouteKind::LocalBlock, 0, [0; 4]),
            ),
            (
                [192, 168, 3, 0],
                26,
                RouteValue::new(RouteKind::RemoteBlock, 0, PEER_HOST_IP),
            ),
            (
                HOST_IP,
                32,
                RouteValue::new(RouteKind::LocalHost, 0, [0; 4]),
            ),
            (
                PEER_HOST_IP,
                32,
                RouteValue::new(RouteKind::RemoteHost, 0, [0; 4]),
            ),
        ];
        for (addr, len, value) in seeded {
            routes
                .insert(&Key::new(len, addr), value, 0)
                .expect("seed route");
        }
        // Counter cache lines, as felix claims them when it attaches (`wlc` has none: its
        // counters all go to the counters map).
        let mut cache = dataplane.counter_cache().expect("counter cache");
        for (ifindex, role) in [
            (WORKLOAD_A, IfaceRole::Workload),
            (workload_b, IfaceRole::Workload),
            (uplink, IfaceRole::Uplink),
        ] {
            counter_cache::claim(&mut cache, ifindex, counter_cache::directions(role))
                .expect("claim counter cache lines");
        }
        assert_ne!(REMOTE_POD_IP[2], POD_IP[2]);
        let mut config = dataplane.config().expect("config map");
        config
            .set(
                0,
                HostConfig {
                    host_ip: HOST_IP,
                    uplink_ifindex: uplink,
                    uplink_mtu: 1500,
                    flags: 0,
                },
                0,
            )
            .expect("seed config");
    }

    /// Runs TC `program` once on `frame` arriving on `on`.
    pub fn run(&mut self, program: &'static str, on: On, frame: &[u8]) -> Outcome {
        self.try_run(program, on, frame).expect("BPF_PROG_TEST_RUN")
    }

    /// Runs TC `program` once, returning the kernel's refusal as an error.
    pub fn try_run(
        &mut self,
        program: &'static str,
        on: On,
        frame: &[u8],
    ) -> Result<Outcome, ProgramError> {
        let classifier = self
            .dataplane()
            .classifier(program)
            .expect("program present");
        let outcome = prog_run::run(classifier, frame, RunOptions::once_on(on))?;
        Ok(Outcome {
            verdict: outcome.verdict,
            data_out: outcome.data_out,
            mark: outcome.mark,
        })
    }

    /// Runs `cali_from_wl` on a pod's `frame` entering on `on`; a packet it passes to the host
    /// stack unjudged (to a destination outside the pod network, judged after NAT) then runs
    /// through `uplink_out` as the stack hands it on (not NATed, mark kept, entered by the pod's
    /// interface). The outcome of the program that judged it.
    pub fn run_from_workload(&mut self, on: On, frame: &[u8]) -> Outcome {
        let first = self.run(felix_user::PROG_FROM_WORKLOAD, on, frame);
        if first.mark & felix_common::nat::marks::NAT_PENDING == 0 {
            return first;
        }
        let uplink = On::iface(self.net.uplink)
            .marked(first.mark)
            .entered_by(on.ifindex);
        self.run(felix_user::PROG_TO_UPLINK, uplink, frame)
    }

    /// Runs the XDP program once on `frame` (ingress ifindex 1).
    pub fn run_xdp(&mut self, frame: &[u8]) -> u32 {
        let xdp = self.dataplane().xdp().expect("xdp program");
        let options = RunOptions {
            on: None,
            repeat: 1,
            output: true,
        };
        prog_run::run(xdp, frame, options)
            .expect("BPF_PROG_TEST_RUN (XDP)")
            .verdict
    }

    /// Every counter of interface `ifindex`, summed over CPUs and over the counters map and the
    /// counter cache (as `felix bpf counters dump` reads them), by (direction, reason).
    pub fn counters(&mut self, ifindex: u32) -> BTreeMap<(u16, u16), CounterValue> {
        let mut totals: BTreeMap<CounterKey, CounterValue> = BTreeMap::new();
        let map = self.dataplane().counters().expect("counters map");
        for entry in map.iter() {
            let (key, per_cpu): (CounterKey, _) = entry.expect("read counter");
            let total = totals.entry(key).or_default();
            for v in per_cpu.iter() {
                total.packets += v.packets;
                total.bytes += v.bytes;
            }
        }
        let cache = self.dataplane().counter_cache().expect("counter cache");
        counter_cache::add_to(&cache, &mut totals).expect("read the counter cache");
        totals
            .into_iter()
            .filter(|(key, _)| key.ifindex == ifindex)
            .map(|(key, total)| ((key.direction, key.reason), total))
            .collect()
    }

    /// The conntrack entry of a flow, if any.
    pub fn conntrack(&mut self, key: &CtKey) -> Option<CtValue> {
        self.dataplane()
            .conntrack()
            .expect("conntrack map")
            .get(key, 0)
            .ok()
    }

    /// Runs `program` on `frame` arriving on `on` and checks the verdict and that exactly one
    /// counter of that interface moved: (`direction`, `reason`) by one packet of `frame.len()`
    /// bytes.
    pub fn expect(
        &mut self,
        program: &'static str,
        on: On,
        frame: &[u8],
        direction: Direction,
        reason: Reason,
        verdict: u32,
    ) -> Outcome {
        let before = self.counters(on.ifindex);
        let outcome = self.run(program, on, frame);
        let after = self.counters(on.ifindex);
        assert_eq!(
            outcome.verdict,
            verdict,
            "{program}: verdict for a packet expected to count as {}; counters now {after:?}",
            reason.name()
        );
        let key = (direction as u16, reason as u16);
        let old = before.get(&key).copied().unwrap_or_default();
        let new = after.get(&key).copied().unwrap_or_default();
        assert_eq!(
            new.packets,
            old.packets + 1,
            "{}: packets; counters now {after:?}",
            reason.name()
        );
        assert_eq!(
            new.bytes,
            old.bytes + frame.len() as u64,
            "{}: bytes",
            reason.name()
        );
        for (other, value) in &after {
            if *other != key {
                assert_eq!(
                    before.get(other).copied().unwrap_or_default(),
                    *value,
                    "counter {other:?} moved, only {key:?} should have"
                );
            }
        }
        outcome
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // The programs and maps go before the pin tree (removed when `pins` drops).
        self.dataplane = None;
    }
}
