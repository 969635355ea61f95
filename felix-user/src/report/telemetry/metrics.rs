//! `/metrics`: the node's dataplane counters (per interface, direction and reason; drops per
//! reason), per-rule policy hits, conntrack entries, map fill levels, the datastore sync state
//! and malformed values, and attach failures, in Prometheus' text format. Everything is read at
//! scrape time from the pinned maps and the agent's last report; in iptables mode there are no
//! maps, and only the report's families are served.

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
};

use aya::maps::{Array, HashMap, IterableMap, LpmTrie, MapData, MapInfo, PerCpuArray};
use felix_common::{
    ct_clean::CtEndpointCount,
    failsafe::FailsafeKey,
    frags::{FragKey, FragValue},
    maps,
    policy::{PolicyIpKey, PolicyPortKey, PolicyVerdict, PolicyVerdictKey},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    dataplane::ct_cleaner,
    dataplane::maps::{
        InspectError,
        counter_cache::{self, CounterCacheMap},
        counters::{CountersMap, read_counters},
        endpoints::EndpointsMap,
        ifaces::IfacesMap,
        map_error,
        nat_origins::NatOriginsMap,
        open, open_as,
        routes::RoutesMap,
        xdp_deny::XdpDenyMap,
    },
    dataplane::pins::NodePaths,
    dataplane::policy::state::PolicyState,
    report::status::Report,
};

/// Errors rendering the page.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("encode: {0}")]
    Encode(#[from] std::fmt::Error),
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The conntrack table's fill as its cleaner's last pass counted it (never walked here), at
/// most its capacity; nothing counted without cleaner state (pins of an older felix).
fn conntrack_fill(paths: &NodePaths) -> Fill {
    let capacity = MapInfo::from_pin(paths.map(maps::CONNTRACK)).map_or(0, |i| i.max_entries());
    let live = ct_cleaner::read_state(paths).map_or(0, |s| s.last.live);
    Fill {
        entries: live.min(u64::from(capacity)),
        capacity: u64::from(capacity),
    }
}

/// [`map_fill`] as last walked, off the request path: walking a keyed map costs a syscall per
/// key (seconds for a quarter of a million policy entries), so a scrape reads what the walk
/// ([`FillCache::walk`], every [`FILL_WALK_INTERVAL`]) left. `None` until the first walk.
#[derive(Clone, Debug, Default)]
pub struct FillCache(Arc<RwLock<Option<BTreeMap<&'static str, Fill>>>>);

/// How often the agent walks the maps for [`FillCache`].
pub const FILL_WALK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl FillCache {
    /// Walks the node's maps and keeps the result for the scrapes that follow.
    pub fn walk(&self, paths: &NodePaths) -> Result<(), InspectError> {
        let fill = map_fill(paths)?;
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(fill);
        Ok(())
    }

    fn last(&self) -> Option<BTreeMap<&'static str, Fill>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Entries and capacity of one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub entries: u64,
    pub capacity: u64,
}

fn count<K, E>(keys: impl Iterator<Item = Result<K, E>>) -> u64 {
    keys.filter(Result::is_ok).count() as u64
}

/// How full each pinned map is. The conntrack table's entries are those its cleaner's last
/// pass left (it is never walked here); other keyed maps count their keys; arrays count their used slots
/// (policy slots, the counter cache's claimed lines) or are full by construction (config, rule
/// counters). The trace ring buffer has
/// no entries to count and is left out.
pub fn map_fill(paths: &NodePaths) -> Result<BTreeMap<&'static str, Fill>, InspectError> {
    let mut out = BTreeMap::new();
    for name in maps::PINNED {
        let map = open(paths, name)?;
        let err = map_error(paths, name);
        // Counts the keys of a hash or LPM map of the given type.
        macro_rules! keyed {
            ($ty:ty) => {{
                let m: $ty = <$ty>::try_from(map).map_err(err)?;
                (count(m.keys()), capacity(m.map()))
            }};
        }
        let (entries, capacity) = match name {
            maps::COUNTERS => keyed!(CountersMap<MapData>),
            maps::COUNTER_CACHE => {
                let m: CounterCacheMap<MapData> = PerCpuArray::try_from(map).map_err(err)?;
                (counter_cache::claimed_lines(&m), m.len())
            }
            maps::IFACES => keyed!(IfacesMap<MapData>),
            maps::ENDPOINTS => keyed!(EndpointsMap<MapData>),
            maps::ROUTES => keyed!(RoutesMap<MapData>),
            // Never walked at scrape: the cleaner counted its entries on its last pass.
            maps::CONNTRACK => {
                let f = conntrack_fill(paths);
                (f.entries, f.capacity as u32)
            }
            maps::NAT_ORIGINS => keyed!(NatOriginsMap<MapData>),
            maps::FRAGMENTS => keyed!(HashMap<MapData, FragKey, FragValue>),
            maps::XDP_DENY => keyed!(XdpDenyMap<MapData>),
            maps::FAILSAFE => keyed!(HashMap<MapData, FailsafeKey, u32>),
            maps::CT_ENDPOINTS => keyed!(HashMap<MapData, u32, CtEndpointCount>),
            maps::POLICY_IPS => keyed!(LpmTrie<MapData, PolicyIpKey, u32>),
            maps::POLICY_PORTS => keyed!(LpmTrie<MapData, PolicyPortKey, u16>),
            maps::POLICY_VERDICTS => keyed!(HashMap<MapData, PolicyVerdictKey, PolicyVerdict>),
            maps::POLICY_SLOTS => {
                let m: Array<MapData, u32> = Array::try_from(map).map_err(err)?;
                let used = m
                    .iter()
                    .filter(|v| matches!(v, Ok(set) if *set != 0))
                    .count();
                (used as u64, capacity(m.map()))
            }
            maps::TRACE_EVENTS => continue,
            _ => {
                // Arrays (config, rule counters, trace control and buckets): every slot exists.
                let cap = MapInfo::from_pin(paths.map(name)).map_or(0, |i| i.max_entries());
                (u64::from(cap), cap)
            }
        };
        out.insert(
            name,
            Fill {
                entries,
                capacity: u64::from(capacity),
            },
        );
    }
    Ok(out)
}

/// The capacity the kernel reports for `map` (0 when it cannot be read).
fn capacity(map: &MapData) -> u32 {
    map.info().map_or(0, |i| i.max_entries())
}

/// Packets per policy rule counter id, summed over CPUs.
fn rule_packets(paths: &NodePaths) -> Result<BTreeMap<u32, u64>, InspectError> {
    let counters: PerCpuArray<MapData, u64> =
        open_as(paths, maps::RULE_COUNTERS, PerCpuArray::try_from)?;
    let state = PolicyState::load(&paths.policy_state_file()).unwrap_or_default();
    let ids = state.groups.iter().flat_map(|g| {
        g.entries
            .iter()
            .map(|e| e.rule)
            .chain([g.default_deny_rule])
    });
    Ok(ids
        .map(|id| {
            let n = counters
                .get(&id, 0)
                .map(|v| v.iter().sum())
                .unwrap_or_default();
            (id, n)
        })
        .collect())
}

/// The metrics page given the agent's last `report`; `paths` is the node whose pinned maps
/// are read (`None` in iptables mode: no map-based families), `fill` their last walk.
pub fn render(
    paths: Option<&NodePaths>,
    fill: &FillCache,
    report: &Report,
) -> Result<String, MetricsError> {
    let mut registry = Registry::with_prefix("felix");
    if let Some(paths) = paths {
        register_maps(&mut registry, paths, fill)?;
    }
    register_report(&mut registry, report);
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

/// The families read from the pinned maps: counters, rule hits, map fill, conntrack.
fn register_maps(
    registry: &mut Registry,
    paths: &NodePaths,
    fill: &FillCache,
) -> Result<(), MetricsError> {
    let packets = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    let drops = Family::<Labels, Counter>::default();
    let share_drops = Counter::<u64>::default();
    for row in read_counters(paths)? {
        if row.reason == felix_common::Reason::DropCtEndpointShare.name() {
            share_drops.inc_by(row.packets);
        }
        let l = labels(&[
            ("interface", &row.interface),
            ("direction", &row.direction),
            ("reason", &row.reason),
        ]);
        packets.get_or_create(&l).inc_by(row.packets);
        bytes.get_or_create(&l).inc_by(row.bytes);
        if row.reason.starts_with("drop_") {
            drops
                .get_or_create(&labels(&[("reason", &row.reason)]))
                .inc_by(row.packets);
        }
    }
    registry.register(
        "dataplane_packets",
        "Packets per interface, direction and verdict reason",
        packets,
    );
    registry.register(
        "dataplane_bytes",
        "Bytes per interface, direction and verdict reason",
        bytes,
    );
    registry.register(
        "dataplane_drops",
        "Dropped packets per reason, all interfaces",
        drops,
    );

    let rules = Family::<Labels, Counter>::default();
    let state = PolicyState::load(&paths.policy_state_file()).unwrap_or_default();
    let hits = rule_packets(paths)?;
    let mut seen = std::collections::BTreeSet::new();
    for g in &state.groups {
        let direction = g.direction.as_str().to_lowercase();
        let entries = g
            .entries
            .iter()
            .map(|e| (e.rule, e.by.to_string(), e.step.as_str()))
            .chain([(
                g.default_deny_rule,
                crate::calc::policy::RuleRef::DefaultDeny {
                    direction: g.direction,
                }
                .to_string(),
                "deny",
            )]);
        for (id, by, action) in entries {
            if seen.insert(id) {
                let l = labels(&[
                    ("rule_id", &id.to_string()),
                    ("rule", &by),
                    ("action", action),
                    ("direction", &direction),
                ]);
                rules
                    .get_or_create(&l)
                    .inc_by(hits.get(&id).copied().unwrap_or(0));
            }
        }
    }
    registry.register(
        "policy_rule_packets",
        "First packets decided by each policy rule",
        rules,
    );

    let entries = Family::<Labels, Gauge>::default();
    let capacity = Family::<Labels, Gauge>::default();
    // The keyed maps as last walked; the conntrack table as its cleaner last counted it.
    let ct_fill = conntrack_fill(paths);
    let mut fill = fill.last().unwrap_or_default();
    fill.insert(maps::CONNTRACK, ct_fill);
    for (name, f) in &fill {
        let l = labels(&[("map", name)]);
        entries.get_or_create(&l).set(f.entries as i64);
        capacity.get_or_create(&l).set(f.capacity as i64);
    }
    let conntrack = Gauge::<i64>::default();
    conntrack.set(ct_fill.entries as i64);
    registry.register("map_entries", "Entries in each BPF map", entries);
    registry.register("map_capacity", "Capacity of each BPF map", capacity);
    registry.register(
        "conntrack_entries",
        "Flows in the conntrack table after the cleaner's last pass",
        conntrack,
    );
    let ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    if ct_fill.capacity > 0 {
        ratio.set(ct_fill.entries as f64 / ct_fill.capacity as f64);
    }
    registry.register(
        "conntrack_fill_ratio",
        "Conntrack entries over the table's capacity",
        ratio,
    );
    registry.register(
        "conntrack_endpoint_share_drops",
        "New flows dropped because their endpoint held its share of the conntrack table",
        share_drops,
    );
    register_cleaner(registry, &ct_cleaner::read_state(paths).unwrap_or_default());
    let events = Counter::<u64>::default();
    events.inc_by(crate::dataplane::maps::conntrack::near_full_events());
    registry.register(
        "conntrack_near_full_events",
        "Times the conntrack table reached its near-full threshold (ConntrackNearFullPercent)",
        events,
    );
    Ok(())
}

/// The conntrack cleaner's families, from its state map.
fn register_cleaner(registry: &mut Registry, state: &felix_common::ct_clean::CtCleanerState) {
    let passes = Counter::<u64>::default();
    passes.inc_by(state.passes);
    registry.register(
        "conntrack_cleaner_passes",
        "Passes of the in-kernel conntrack cleaner",
        passes,
    );
    let removed = Family::<Labels, Counter>::default();
    for (cause, count) in [
        ("expired", state.removed_expired),
        ("closing", state.removed_closing),
        ("unanswered", state.removed_unanswered),
    ] {
        removed
            .get_or_create(&labels(&[("cause", cause)]))
            .inc_by(count);
    }
    registry.register(
        "conntrack_cleaner_removed",
        "Conntrack entries the cleaner removed: expired, or evicted under pressure (closing, stale unanswered)",
        removed,
    );
    let scanned = Gauge::<i64>::default();
    scanned.set(state.last.scanned as i64);
    registry.register(
        "conntrack_cleaner_last_scanned",
        "Entries the cleaner's last pass visited",
        scanned,
    );
    let endpoints = Gauge::<i64>::default();
    endpoints.set(i64::from(state.last.endpoints));
    registry.register(
        "conntrack_endpoints",
        "Endpoints charged with conntrack entries at the cleaner's last pass",
        endpoints,
    );
    let share = Gauge::<i64>::default();
    share.set(i64::from(state.endpoint_max));
    registry.register(
        "conntrack_endpoint_max_entries",
        "Conntrack entries one endpoint may hold (BPFConntrackEndpointSharePercent; 0: no limit)",
        share,
    );
}

/// The families from the agent's report: mode, datastore, endpoints, readiness.
fn register_report(registry: &mut Registry, report: &Report) {
    let mode = Family::<Labels, Gauge>::default();
    mode.get_or_create(&labels(&[("mode", report.dataplane)]))
        .set(1);
    registry.register(
        "dataplane",
        "The dataplane mode felix runs (bpf, iptables-nft, iptables-legacy)",
        mode,
    );
    let sync = &report.datastore.sync;
    let gauge = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    registry.register(
        "datastore_in_sync",
        "1 when the datastore syncer is in sync with etcd",
        gauge(i64::from(sync.in_sync)),
    );
    registry.register(
        "datastore_revision",
        "The etcd revision the applied state is consistent with",
        gauge(sync.revision),
    );
    registry.register(
        "datastore_reconnects",
        "Watches re-established after etcd went away",
        counter(sync.reconnects),
    );
    registry.register(
        "datastore_resyncs",
        "Relistings because the resume revision was compacted",
        counter(sync.resyncs),
    );
    let malformed = Family::<Labels, Gauge>::default();
    for (kind, n) in &report.datastore.malformed {
        malformed
            .get_or_create(&labels(&[("kind", kind)]))
            .set(*n as i64);
    }
    registry.register(
        "datastore_malformed_values",
        "Datastore values skipped as malformed now, per kind",
        malformed,
    );
    let malformed_total = Family::<Labels, Counter>::default();
    for (kind, n) in &report.datastore.malformed_total {
        malformed_total
            .get_or_create(&labels(&[("kind", kind)]))
            .inc_by(*n);
    }
    registry.register(
        "datastore_malformed_values_seen",
        "Malformed datastore values seen since start, per kind",
        malformed_total,
    );

    let endpoints = Family::<Labels, Gauge>::default();
    for status in report.endpoints.values() {
        endpoints
            .get_or_create(&labels(&[("state", &status.status)]))
            .inc();
    }
    registry.register(
        "endpoints",
        "Local workload endpoints by state (error: attaching the programs or applying the rules failed)",
        endpoints,
    );
    registry.register(
        "endpoint_conflicts",
        "Local workload endpoints not applied because another endpoint holds their interface (status error)",
        gauge(report.endpoint_conflicts as i64),
    );
    registry.register(
        "programs_attached",
        "Program attachments on this node's interfaces",
        gauge(i64::from(report.programs_loaded)),
    );
    if let Some(xdp) = report.xdp {
        let states = Family::<Labels, Gauge>::default();
        states.get_or_create(&labels(&[("state", xdp)])).set(1);
        registry.register(
            "xdp",
            "The uplink's XDP prefilter: 1 for its current state (attached while the deny list has entries; idle, disabled, failed, unknown)",
            states,
        );
    }
    registry.register(
        "ready",
        "1 when felix is ready",
        gauge(i64::from(report.ready)),
    );
    if let Some(at) = report.last_sync {
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        registry.register(
            "last_sync_timestamp_seconds",
            "When the dataplane was last brought in line with the datastore",
            gauge(secs),
        );
    }
}
