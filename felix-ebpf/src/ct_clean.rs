//! The conntrack cleaner, as Calico's BPF conntrack cleaner: a TC program user space runs with
//! BPF_PROG_TEST_RUN (never attached), which walks the table with `bpf_for_each_map_elem`,
//! removes expired entries (and, under pressure, closing and stale unanswered ones: see
//! [`felix_common::ct_clean::judge`]) and recounts each endpoint's entries. The frame carries
//! the [`CtCleanRequest`] in and the [`CtCleanStats`] out; the state map keeps both.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, generated::bpf_for_each_map_elem},
    macros::classifier,
    programs::TcContext,
};
use felix_common::{
    CtKey, CtValue,
    ct_clean::{
        CtCleanRequest, CtCleanStats, CtEndpointCount, Removal, charged, endpoint_near_share,
        judge,
    },
};

use crate::maps::{CONNTRACK, CT_CLEANER, CT_ENDPOINTS};

/// The walk's state, handed to each callback.
#[repr(C)]
struct Pass {
    request: CtCleanRequest,
    stats: CtCleanStats,
}

/// One pass over the conntrack table.
#[classifier]
pub fn felix_ct_clean(ctx: TcContext) -> i32 {
    let Ok(mut request) = ctx.load::<CtCleanRequest>(0) else {
        return 1;
    };
    if request.now_ns == 0 {
        // SAFETY: a helper without arguments.
        request.now_ns = unsafe { bpf_ktime_get_coarse_ns() };
    }
    let mut pass = Pass {
        request,
        stats: CtCleanStats {
            now_ns: request.now_ns,
            evicted_table_wide: request.evict,
            ..CtCleanStats::default()
        },
    };
    let Some(state) = CT_CLEANER.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: the pointer came from a lookup; this program is the map value's only writer
    // besides user space at startup.
    unsafe { (*state).endpoint_max = request.endpoint_max };
    let pass_ptr = (&raw mut pass).cast::<c_void>();
    // SAFETY: each map is a static map definition; the callbacks take the arguments the
    // helper passes (map, key, value, context) and return 0 (continue).
    unsafe {
        bpf_for_each_map_elem(
            (&raw const CT_ENDPOINTS).cast_mut().cast(),
            restart_count as *mut c_void,
            pass_ptr,
            0,
        );
        bpf_for_each_map_elem(
            (&raw const CONNTRACK).cast_mut().cast(),
            clean_entry as *mut c_void,
            pass_ptr,
            0,
        );
        bpf_for_each_map_elem(
            (&raw const CT_ENDPOINTS).cast_mut().cast(),
            settle_count as *mut c_void,
            pass_ptr,
            0,
        );
    }
    let stats = pass.stats;
    // SAFETY: as above.
    unsafe {
        (*state).passes += 1;
        (*state).removed_expired += stats.removed_expired;
        (*state).removed_closing += stats.removed_closing;
        (*state).removed_unanswered += stats.removed_unanswered;
        (*state).last = stats;
    }
    if ctx.store(0, &stats, 0).is_err() {
        return 1;
    }
    0
}

/// Before the walk: the endpoint's count during this pass starts at zero.
#[inline(never)]
extern "C" fn restart_count(
    _map: *mut c_void,
    _ifindex: *const u32,
    count: *mut CtEndpointCount,
    _pass: *mut Pass,
) -> i64 {
    // SAFETY: the helper passes a pointer to the element's value.
    unsafe { (*count).seen = 0 };
    0
}

/// One conntrack entry: removed, or counted for its endpoint (unless closing: not charged).
#[inline(never)]
extern "C" fn clean_entry(
    _map: *mut c_void,
    key: *const CtKey,
    value: *mut CtValue,
    pass: *mut Pass,
) -> i64 {
    // SAFETY: the helper passes pointers to the element's key and value and to `Pass`.
    let (key, value, pass) = unsafe { (&*key, &*value, &mut *pass) };
    pass.stats.scanned += 1;
    let owner = value.owner_ifindex;
    let count = if owner == 0 {
        None
    } else {
        CT_ENDPOINTS.get_ptr_mut(&owner)
    };
    let near_share = count.is_some_and(|count| {
        // SAFETY: the pointer came from a lookup; a racy read only shifts the judgement.
        let entries = unsafe { (*count).charged() };
        endpoint_near_share(entries, pass.request.endpoint_max)
    });
    let evict = pass.request.evict != 0 || near_share;
    match judge(value, key.proto, pass.stats.now_ns, evict) {
        Some(removal) if CONNTRACK.remove(key).is_ok() => match removal {
            Removal::Expired => pass.stats.removed_expired += 1,
            Removal::Closing => pass.stats.removed_closing += 1,
            Removal::Unanswered => pass.stats.removed_unanswered += 1,
        },
        _ if !charged(value) => pass.stats.live += 1,
        _ => {
            pass.stats.live += 1;
            match count {
                // SAFETY: the pointer came from a lookup; `create` adds to the value's other
                // field concurrently, this is the only writer of `seen`.
                Some(count) => unsafe { (*count).seen += 1 },
                None if owner != 0 => {
                    let first = CtEndpointCount {
                        entries: 0,
                        released: 0,
                        seen: 1,
                    };
                    let _ = CT_ENDPOINTS.insert(&owner, &first, 0);
                }
                None => {}
            }
        }
    }
    0
}

/// After the walk: the endpoint's count is what the walk saw (flows opened during the pass
/// are counted by the next); an endpoint without entries is forgotten.
#[inline(never)]
extern "C" fn settle_count(
    _map: *mut c_void,
    ifindex: *const u32,
    count: *mut CtEndpointCount,
    pass: *mut Pass,
) -> i64 {
    // SAFETY: the helper passes pointers to the element's key and value and to `Pass`.
    let (ifindex, count, pass) = unsafe { (&*ifindex, &mut *count, &mut *pass) };
    let seen = count.seen;
    if seen == 0 {
        let _ = CT_ENDPOINTS.remove(ifindex);
        return 0;
    }
    // Aligned 8-byte stores (`create` and `release` add to these fields atomically meanwhile:
    // what they add during the pass is lost, and counted by the next pass).
    // SAFETY: valid, aligned pointers into the element's value.
    unsafe {
        core::ptr::write_volatile(&raw mut count.entries, seen);
        core::ptr::write_volatile(&raw mut count.released, 0);
    }
    pass.stats.endpoints += 1;
    0
}
