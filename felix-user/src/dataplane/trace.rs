//! `felix bpf trace`: switches the programs' drop and policy-verdict events on, streams them from
//! the pinned ring buffer, and switches them off again when done (also when dropped).

use std::{
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use felix_common::{
    maps,
    trace::{TraceBucket, TraceControl, TraceEvent},
};

use crate::{
    dataplane::maps::{InspectError, map_error, open_as},
    dataplane::pins::NodePaths,
};

/// Default events per second per CPU.
pub const DEFAULT_RATE: u32 = 1_000;

/// An open trace: events flow while it lives.
pub struct TraceSession {
    control: Array<MapData, TraceControl>,
    ring: RingBuf<MapData>,
    buckets: PerCpuArray<MapData, TraceBucket>,
}

impl TraceSession {
    /// Opens `paths`' trace maps and switches events on at `rate` per second per CPU.
    pub fn start(paths: &NodePaths, rate: u32) -> Result<Self, InspectError> {
        let mut control = open_as(paths, maps::TRACE_CONTROL, Array::try_from)?;
        let ring = open_as(paths, maps::TRACE_EVENTS, RingBuf::try_from)?;
        let buckets = open_as(paths, maps::TRACE_BUCKETS, PerCpuArray::try_from)?;
        control
            .set(
                0,
                TraceControl {
                    enabled: 1,
                    rate_per_sec: rate,
                },
                0,
            )
            .map_err(map_error(paths, maps::TRACE_CONTROL))?;
        Ok(TraceSession {
            control,
            ring,
            buckets,
        })
    }

    /// Waits up to `timeout` for events and returns those that arrived.
    pub fn poll(&mut self, timeout: Duration) -> Vec<TraceEvent> {
        let mut events = self.drain();
        if events.is_empty() {
            let mut fd = libc::pollfd {
                fd: self.ring.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut fd, 1, ms) };
            events = self.drain();
        }
        events
    }

    fn drain(&mut self) -> Vec<TraceEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() >= size_of::<TraceEvent>() {
                // SAFETY: the programs write whole `TraceEvent`s; read unaligned to be safe.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<TraceEvent>()) });
            }
        }
        out
    }

    /// Events the rate limit refused and events the full ring lost, over all CPUs.
    pub fn suppressed(&self) -> (u64, u64) {
        self.buckets.get(&0, 0).map_or((0, 0), |per_cpu| {
            per_cpu
                .iter()
                .fold((0, 0), |(s, l), b| (s + b.suppressed, l + b.lost))
        })
    }
}

impl Drop for TraceSession {
    fn drop(&mut self) {
        let _ = self.control.set(0, TraceControl::default(), 0);
    }
}

/// An event as `felix bpf trace` prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceLine {
    /// Seconds since the trace started.
    pub at: String,
    pub interface: String,
    pub direction: String,
    /// `drop`, `allow` or `deny`.
    pub kind: String,
    pub reason: String,
    pub proto: u8,
    pub src: String,
    pub dst: String,
    /// The deciding policy rule, if any.
    pub rule: Option<String>,
    pub len: u32,
}

/// Which events to print (all when empty).
#[derive(Clone, Debug, Default)]
pub struct TraceFilter {
    pub interface: Option<String>,
    pub reason: Option<String>,
    pub kind: Option<String>,
}

impl TraceFilter {
    /// Whether `line` passes.
    pub fn admits(&self, line: &TraceLine) -> bool {
        self.interface.as_ref().is_none_or(|i| *i == line.interface)
            && self.reason.as_ref().is_none_or(|r| *r == line.reason)
            && self.kind.as_ref().is_none_or(|k| *k == line.kind)
    }
}

/// Describes `event`: interface names by ifindex, rule texts by counter id, times from `start_ns`.
pub fn describe(
    event: &TraceEvent,
    names: &std::collections::BTreeMap<u32, String>,
    rules: &std::collections::BTreeMap<u32, String>,
    start_ns: u64,
) -> TraceLine {
    use felix_common::{Direction, Reason, trace};
    let addr = |a: [u8; 4], port: u16| {
        let ip = std::net::Ipv4Addr::from(a);
        if matches!(event.proto, 6 | 17 | 132) {
            format!("{ip}:{port}")
        } else {
            ip.to_string()
        }
    };
    let at = event.ts_ns.saturating_sub(start_ns);
    TraceLine {
        at: format!("{}.{:06}", at / 1_000_000_000, (at % 1_000_000_000) / 1_000),
        interface: names
            .get(&event.ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{}", event.ifindex)),
        direction: Direction::from_u16(event.direction)
            .map_or_else(|| event.direction.to_string(), |d| d.name().to_string()),
        kind: match event.kind {
            trace::EVENT_POLICY_ALLOW => "allow",
            trace::EVENT_POLICY_DENY => "deny",
            _ => "drop",
        }
        .to_string(),
        reason: Reason::from_u16(event.reason)
            .map_or_else(|| event.reason.to_string(), |r| r.name().to_string()),
        proto: event.proto,
        src: addr(event.saddr, event.sport),
        dst: addr(event.daddr, event.dport),
        rule: (event.rule != trace::NO_RULE).then(|| {
            rules
                .get(&event.rule)
                .cloned()
                .unwrap_or_else(|| format!("rule {}", event.rule))
        }),
        len: event.len,
    }
}

impl std::fmt::Display for TraceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>12} {} {} {} {} proto {} {} -> {} len {}",
            self.at,
            self.interface,
            self.direction,
            self.kind.to_uppercase(),
            self.reason,
            self.proto,
            self.src,
            self.dst,
            self.len
        )?;
        if let Some(rule) = &self.rule {
            write!(f, " by {rule}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_common::{Direction, Reason, trace};

    #[test]
    fn events_are_described_and_filtered() {
        let event = TraceEvent {
            ts_ns: 3_500_000_000,
            ifindex: 7,
            direction: Direction::FromWorkload as u16,
            reason: Reason::DropPolicy as u16,
            rule: 4,
            len: 60,
            saddr: [10, 65, 0, 1],
            daddr: [10, 65, 0, 2],
            sport: 40000,
            dport: 80,
            proto: 6,
            kind: trace::EVENT_POLICY_DENY,
            _pad: [0; 2],
        };
        let names = [(7, "cali1".to_string())].into();
        let rules = [(4, "tier default policy p ingress rule 0".to_string())].into();
        let line = describe(&event, &names, &rules, 1_000_000_000);
        assert_eq!(
            line.to_string(),
            "    2.500000 cali1 from_workload DENY drop_policy proto 6 10.65.0.1:40000 -> \
             10.65.0.2:80 len 60 by tier default policy p ingress rule 0"
        );
        let mut filter = TraceFilter::default();
        assert!(filter.admits(&line));
        filter.kind = Some("drop".into());
        assert!(!filter.admits(&line));
        filter.kind = Some("deny".into());
        filter.interface = Some("cali1".into());
        assert!(filter.admits(&line));
    }
}
