//! Shared test support: a private namespace, a packet builder and a harness around the real
//! programs.

// Each test binary uses part of the support code (and of what it re-exports from testkit).
#![allow(dead_code, unused_imports)]

pub mod harness;
pub mod icmp;
pub mod net;
pub mod packet;
