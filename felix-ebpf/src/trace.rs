//! Emits drop and policy-verdict events to the trace ring buffer while `felix bpf trace`
//! listens, within each CPU's token bucket (see `felix_common::trace`).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use felix_common::trace::{TRACE_BURST, TraceEvent};

use crate::{
    maps::{TRACE_BUCKETS, TRACE_CONTROL, TRACE_EVENTS},
    parse::Ipv4Summary,
};

const NS_PER_SEC: u64 = 1_000_000_000;
/// Refill looks back at most this far (keeps the product below 2^64 without 128-bit maths).
const MAX_REFILL_NS: u64 = 10 * NS_PER_SEC;
/// Highest rate honoured, per CPU.
const MAX_RATE: u64 = 1_000_000;

/// Whether anyone listens (cheap: one array lookup).
#[inline(always)]
pub fn enabled() -> bool {
    TRACE_CONTROL.get(0).is_some_and(|c| c.enabled != 0)
}

/// Takes a token from this CPU's bucket, refilling it first; counts a refusal.
#[inline(always)]
fn take_token(now: u64) -> bool {
    let rate = TRACE_CONTROL
        .get(0)
        .map_or(0, |c| u64::from(c.rate_per_sec))
        .min(MAX_RATE);
    let Some(bucket) = TRACE_BUCKETS.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU slot: only this CPU writes it.
    let bucket = unsafe { &mut *bucket };
    let elapsed = now.saturating_sub(bucket.refilled_ns).min(MAX_REFILL_NS);
    let earned = elapsed.wrapping_mul(rate) / NS_PER_SEC;
    if earned > 0 {
        bucket.tokens = (bucket.tokens + earned).min(TRACE_BURST);
        bucket.refilled_ns = now;
    } else if bucket.refilled_ns == 0 {
        bucket.tokens = TRACE_BURST;
        bucket.refilled_ns = now;
    }
    if bucket.tokens == 0 {
        bucket.suppressed += 1;
        return false;
    }
    bucket.tokens -= 1;
    true
}

/// Emits an event about `packet` (or an unparsed one) if tracing is on and the bucket allows.
#[inline(always)]
pub fn emit(
    kind: u8,
    ifindex: u32,
    direction: u16,
    reason: u16,
    rule: u32,
    len: u32,
    packet: Option<&Ipv4Summary>,
) {
    if !enabled() {
        return;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !take_token(now) {
        return;
    }
    let mut event = TraceEvent {
        ts_ns: now,
        ifindex,
        direction,
        reason,
        rule,
        len,
        kind,
        ..TraceEvent::default()
    };
    if let Some(p) = packet {
        event.saddr = p.saddr;
        event.daddr = p.daddr;
        event.sport = p.sport;
        event.dport = p.dport;
        event.proto = p.proto;
    }
    if TRACE_EVENTS.output(&event, 0).is_err()
        && let Some(bucket) = TRACE_BUCKETS.get_ptr_mut(0)
    {
        // SAFETY: a per-CPU slot: only this CPU writes it.
        unsafe { (*bucket).lost += 1 };
    }
}
