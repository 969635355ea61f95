//! felix's kernel side: programs for the `cali*` workload interfaces.
//!
//! One file per hook (`cali_tc`), one module per concern (`parse`, `counters`, `maps`).
#![no_std]
#![no_main]

mod cali_tc;
mod counters;
mod maps;
mod parse;

/// aya-log uses a ring buffer, whose helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
