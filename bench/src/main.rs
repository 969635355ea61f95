//! `bench`: the benchmark harness comparing the BPF dataplane with iptables mode.
//!
//! It will run the same lab, policies and traffic with plain routing, iptables (nft and legacy)
//! and BPF over 0 to 10,000 rules, and write tables and plots to `bench/results/`. Until that
//! work lands it only says so.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "bench is not implemented yet: it will compare BPF and iptables modes on the lab \
         (see the benchmarks issue)"
    );
    ExitCode::FAILURE
}
