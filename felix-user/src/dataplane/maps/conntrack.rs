//! The conntrack table ([`maps::CONNTRACK`]): its dump (`felix bpf conntrack dump`), its
//! garbage collection in user space (the fallback where the kernel cannot run the in-kernel
//! cleaner, [`crate::dataplane::ct_cleaner`]: entries past their timeout, a bounded number per
//! pass so one pass never stalls the agent; `felix bpf conntrack flush` removes all) and the
//! near-full watch: checked after every pass, at or above the threshold felix logs a warning
//! (at most once a minute while it stays there) and counts an event each time the table
//! crosses the threshold from below; `/metrics` serves the count.

use std::{
    borrow::{Borrow, BorrowMut},
    net::Ipv4Addr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use aya::maps::{HashMap, IterableMap as _, MapData};
use felix_common::{
    CtKey, CtState, CtValue,
    conntrack::{ct_flags, expired},
    maps,
};
use felix_rows::ConntrackRow;
use tracing::{debug, info, warn};

use super::{InspectError, MapDump, map_error, open_as};
use crate::dataplane::pins::NodePaths;

/// The conntrack table over map data `T`: a loaded object's (`&mut MapData`, see
/// [`crate::dataplane::loader::Dataplane`]) or a pin's (`MapData`).
pub type ConntrackMap<T> = HashMap<T, CtKey, CtValue>;

/// `felix bpf conntrack dump`.
pub struct Conntrack;

impl MapDump for Conntrack {
    const FIELD: &'static str = "conntrack";
    type Row = ConntrackRow;

    /// The entries, with ages relative to now.
    fn read(paths: &NodePaths) -> Result<Vec<ConntrackRow>, InspectError> {
        read_conntrack(paths, monotonic_ns())
    }

    fn table(rows: &[ConntrackRow]) -> String {
        conntrack_table(rows)
    }
}

/// Reads the conntrack map; ages are relative to `now_ns` (CLOCK_MONOTONIC).
pub fn read_conntrack(paths: &NodePaths, now_ns: u64) -> Result<Vec<ConntrackRow>, InspectError> {
    let map_err = map_error(paths, maps::CONNTRACK);
    let map: ConntrackMap<MapData> = open_as(paths, maps::CONNTRACK, HashMap::try_from)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (key, value) = entry.map_err(&map_err)?;
        rows.push(conntrack_row(&key, &value, now_ns));
    }
    rows.sort_by_key(|r| (r.src, r.sport, r.dst, r.dport));
    Ok(rows)
}

/// Builds a display row, oriented from the flow's initiator.
pub fn conntrack_row(key: &CtKey, value: &CtValue, now_ns: u64) -> ConntrackRow {
    let a_first = value.flags & ct_flags::A_IS_INITIATOR != 0;
    let (src, sport, dst, dport, forward, reverse) = if a_first {
        (
            key.addr_a,
            key.port_a,
            key.addr_b,
            key.port_b,
            value.packets_a_to_b,
            value.packets_b_to_a,
        )
    } else {
        (
            key.addr_b,
            key.port_b,
            key.addr_a,
            key.port_a,
            value.packets_b_to_a,
            value.packets_a_to_b,
        )
    };
    let seconds = |ns: u64| ns as f64 / 1e9;
    ConntrackRow {
        proto: proto_name(key.proto),
        src: Ipv4Addr::from(src),
        sport,
        dst: Ipv4Addr::from(dst),
        dport,
        state: CtState::from_u8(value.state)
            .map_or_else(|| format!("state_{}", value.state), |s| s.name().into()),
        packets_forward: forward,
        packets_reverse: reverse,
        age_s: seconds(now_ns.saturating_sub(value.created_ns)),
        idle_s: seconds(now_ns.saturating_sub(value.last_seen_ns)),
        flags: flag_names(value.flags),
        owner_ifindex: value.owner_ifindex,
    }
}

/// The names of a flow's [`ct_flags`] that say how it travels.
pub fn flag_names(flags: u8) -> Vec<String> {
    [
        (ct_flags::VIA_HOST, "via_host"),
        (ct_flags::UNCONFIRMED, "unconfirmed"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name.to_string())
    .collect()
}

/// The protocol's name as the dumps show it.
pub fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        other => other.to_string(),
    }
}

/// The conntrack table as a table.
pub fn conntrack_table(rows: &[ConntrackRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.proto.clone(),
                format!("{}:{}", r.src, r.sport),
                format!("{}:{}", r.dst, r.dport),
                r.state.clone(),
                format!("{}/{}", r.packets_forward, r.packets_reverse),
                format!("{:.1}", r.age_s),
                format!("{:.1}", r.idle_s),
                if r.flags.is_empty() {
                    "-".into()
                } else {
                    r.flags.join(",")
                },
                match r.owner_ifindex {
                    0 => "-".into(),
                    ifindex => ifindex.to_string(),
                },
            ]
        })
        .collect();
    felix_rows::table(
        &[
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "STATE",
            "PKTS FWD/REV",
            "AGE S",
            "IDLE S",
            "FLAGS",
            "OWNER",
        ],
        &cells,
    )
}

/// At most this many entries are removed per pass.
pub const MAX_REMOVALS_PER_PASS: usize = 65_536;

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of conntrack's ages (the programs read it at
/// the last tick, `bpf_ktime_get_coarse_ns`).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

/// Removes expired entries; returns how many.
pub fn collect<T: BorrowMut<MapData>>(map: &mut ConntrackMap<T>) -> usize {
    let now = monotonic_ns();
    let stale: Vec<CtKey> = map
        .iter()
        .flatten()
        .filter(|(key, value)| expired(value, key.proto, now))
        .map(|(key, _)| key)
        .take(MAX_REMOVALS_PER_PASS)
        .collect();
    let removed = stale.iter().filter(|key| map.remove(key).is_ok()).count();
    if removed > 0 {
        debug!(removed, "conntrack GC");
    }
    removed
}

/// The table's capacity as the kernel reports it (0 when it cannot be read).
pub fn capacity(map: &aya::maps::Map) -> u32 {
    let data = match map {
        aya::maps::Map::HashMap(data) => data,
        _ => return 0,
    };
    data.info().map_or(0, |i| i.max_entries())
}

/// Removes every entry; returns how many.
pub fn flush<T: BorrowMut<MapData>>(map: &mut ConntrackMap<T>) -> usize {
    let keys: Vec<CtKey> = map.keys().flatten().collect();
    keys.iter().filter(|key| map.remove(key).is_ok()).count()
}

/// Times the conntrack table crossed its near-full threshold in this process.
static NEAR_FULL_EVENTS: AtomicU64 = AtomicU64::new(0);

/// How often the warning repeats while the table stays near full.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The near-full events counted so far (for `/metrics`).
pub fn near_full_events() -> u64 {
    NEAR_FULL_EVENTS.load(Ordering::Relaxed)
}

/// Whether `entries` of `capacity` is at or above `percent`.
pub fn is_near_full(entries: u64, capacity: u64, percent: u8) -> bool {
    capacity > 0 && entries * 100 >= capacity * u64::from(percent)
}

/// Tracks the threshold crossing and the warning's rate limit.
#[derive(Debug)]
pub struct NearFullWatch {
    percent: u8,
    near_full: bool,
    last_warning: Option<Instant>,
}

impl NearFullWatch {
    pub fn new(percent: u8) -> Self {
        Self {
            percent,
            near_full: false,
            last_warning: None,
        }
    }

    /// Counts the conntrack map's entries and reacts to the fill level.
    pub fn check<T: Borrow<MapData>>(&mut self, map: &ConntrackMap<T>) {
        let capacity = map.map().info().map_or(0, |i| u64::from(i.max_entries()));
        let entries = map.keys().flatten().count() as u64;
        self.observe(entries, capacity, Instant::now());
    }

    /// Reacts to a fill level at `now`; returns whether it warned.
    pub fn observe(&mut self, entries: u64, capacity: u64, now: Instant) -> bool {
        let near_full = is_near_full(entries, capacity, self.percent);
        if near_full && !self.near_full {
            NEAR_FULL_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
        if !near_full && self.near_full {
            info!(
                entries,
                capacity, "conntrack table below its near-full threshold again"
            );
        }
        self.near_full = near_full;
        let due = self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY);
        if near_full && due {
            warn!(
                entries,
                capacity,
                threshold_percent = self.percent,
                "conntrack table near full: new flows beyond its capacity pass untracked \
                 (counted as ct_full); raise BPFMapSizeConntrack"
            );
            self.last_warning = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_rows_read_from_the_initiator() {
        let (key, a_to_b) = CtKey::for_packet([192, 168, 3, 1], 80, [192, 168, 2, 1], 40000, 6);
        assert!(
            !a_to_b,
            "192.168.2.1 sorts first, so the packet travels B to A"
        );
        let value = CtValue {
            created_ns: 1_000_000_000,
            last_seen_ns: 3_000_000_000,
            packets_a_to_b: 4,
            packets_b_to_a: 5,
            state: CtState::Established as u8,
            flags: 0,
            owner_ifindex: 12,
            ..CtValue::default()
        };
        let row = conntrack_row(&key, &value, 4_000_000_000);
        assert_eq!(row.owner_ifindex, 12);
        assert_eq!((row.src, row.sport), (Ipv4Addr::new(192, 168, 3, 1), 80));
        assert_eq!((row.packets_forward, row.packets_reverse), (5, 4));
        assert_eq!(row.state, "established");
        assert!((row.age_s - 3.0).abs() < 1e-9 && (row.idle_s - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_threshold_is_inclusive() {
        assert!(!is_near_full(89, 100, 90));
        assert!(is_near_full(90, 100, 90));
        assert!(!is_near_full(0, 0, 90));
    }

    #[test]
    fn warnings_are_rate_limited_and_crossings_counted() {
        let mut watch = NearFullWatch::new(50);
        let start = Instant::now();
        let before = near_full_events();
        assert!(!watch.observe(1, 10, start));
        assert!(watch.observe(5, 10, start));
        assert!(!watch.observe(6, 10, start + Duration::from_secs(30)));
        assert!(watch.observe(6, 10, start + Duration::from_secs(61)));
        // Staying near full is one event; leaving and coming back is another.
        assert!(!watch.observe(1, 10, start + Duration::from_secs(62)));
        watch.observe(9, 10, start + Duration::from_secs(200));
        assert!(near_full_events() >= before + 2);
    }
}
