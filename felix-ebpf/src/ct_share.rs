//! Each endpoint's share of the conntrack table: `create` refuses a flow of an endpoint
//! charged with its share ([`felix_common::ct_clean::CtCleanerState::endpoint_max`]) and
//! counts the ones it opens, a flow that closes is released; the cleaner recounts every pass.

use felix_common::{Reason, ct_clean::CtEndpointCount};

use crate::maps::{CT_CLEANER, CT_ENDPOINTS};

/// Where a new flow of `owner` is counted.
pub enum Charge {
    /// Nobody (owner 0).
    None,
    /// The endpoint's count, at this pointer.
    Count(*mut CtEndpointCount),
    /// A first entry for the endpoint.
    First,
}

/// Whether `owner` may open another flow: `Err` when it holds its share.
#[inline(always)]
pub fn admit(owner: u32) -> Result<Charge, Reason> {
    if owner == 0 {
        return Ok(Charge::None);
    }
    let Some(count) = CT_ENDPOINTS.get_ptr_mut(&owner) else {
        return Ok(Charge::First);
    };
    // SAFETY: copies taken at once from pointers a lookup returned.
    let max = CT_CLEANER
        .get_ptr(0)
        .map_or(0, |state| unsafe { (*state).endpoint_max });
    // SAFETY: as above; a racy read lets at most a few flows past the share per CPU.
    let entries = unsafe { (*count).charged() };
    if max != 0 && entries >= u64::from(max) {
        return Err(Reason::DropCtEndpointShare);
    }
    Ok(Charge::Count(count))
}

/// Counts a flow `create` opened for `owner`.
#[inline(always)]
pub fn charge(owner: u32, charge: Charge) {
    match charge {
        Charge::None => {}
        Charge::Count(count) => {
            // SAFETY: the pointer came from a lookup (hash values stay valid under RCU);
            // `entries` is a naturally aligned u64.
            unsafe { atomic_add(&raw mut (*count).entries, 1) };
        }
        Charge::First => {
            let first = CtEndpointCount {
                entries: 1,
                released: 0,
                seen: 0,
            };
            // BPF_NOEXIST: another CPU's first flow of the same endpoint wins; the next pass
            // recounts.
            let _ = CT_ENDPOINTS.insert(&owner, &first, 1);
        }
    }
}

/// A flow of `owner` closed (a packet moved its entry to FINs seen or reset): it no longer
/// counts against the endpoint's share ([`felix_common::ct_clean::charged`]); the next pass
/// recounts without it.
#[inline(always)]
pub fn release(owner: u32) {
    if owner == 0 {
        return;
    }
    if let Some(count) = CT_ENDPOINTS.get_ptr_mut(&owner) {
        // SAFETY: the pointer came from a lookup (hash values stay valid under RCU);
        // `released` is a naturally aligned u64.
        unsafe { atomic_add(&raw mut (*count).released, 1) };
    }
}

/// `*target += value`, atomically (BPF_ATOMIC BPF_ADD): other CPUs add to the same count.
/// Rust offers no `fetch_add` on BPF (the target has no compare-and-swap), so the instruction
/// is written out.
///
/// # Safety
/// `target` points to a naturally aligned `u64` in a map value.
#[inline(always)]
unsafe fn atomic_add(target: *mut u64, value: u64) {
    // SAFETY: the caller's pointer; the instruction touches only `*target`.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({target} + 0) += {value}",
            target = in(reg) target,
            value = in(reg) value,
        );
    }
}
