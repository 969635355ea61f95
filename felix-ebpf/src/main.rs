//! felix's kernel side: programs for the `cali*` workload interfaces and the host's uplink.
//!
//! One file per hook (`cali_tc`, `uplink_tc`, `uplink_xdp`), one module per concern (`parse`,
//! `conntrack`, `frags`, `forward`, `encap`, `icmp`, `counters`, `maps`).
#![no_std]
#![no_main]

mod cali_tc;
mod conntrack;
mod counters;
mod encap;
mod forward;
mod frags;
mod host_nat;
mod icmp;
mod maps;
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
