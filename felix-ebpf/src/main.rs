//! felix's kernel side: programs for the `cali*` workload interfaces and the host's uplink.
//!
//! One file per hook (`cali_tc`, `uplink_tc`, `uplink_xdp`), one module per concern (`parse`,
//! `conntrack`, `frags`, `forward`, `encap`, `icmp`, `counters`, `maps`).
#![no_std]
#![no_main]
// `asm!` on BPF (the atomic add in `ct_share`); Debian's rustc is built with RUSTC_BOOTSTRAP.
#![feature(asm_experimental_arch)]

mod cali_tc;
mod conntrack;
mod counters;
mod ct_clean;
mod ct_share;
mod encap;
mod forward;
mod frags;
mod host_nat;
mod icmp;
mod maps;
mod mid_stream;
mod parse;
mod policy;
mod trace;
mod uplink_tc;
mod uplink_xdp;

/// aya-log uses a ring buffer, whose helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
