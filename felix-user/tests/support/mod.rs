//! Shared test support: a private namespace, a packet builder and a harness around the real
//! programs.

// Each test binary uses part of the support code.
#![allow(dead_code)]

pub mod harness;
pub mod net;
pub mod packet;
