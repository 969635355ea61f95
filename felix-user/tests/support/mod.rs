//! Shared test support: a private namespace, a packet builder and a harness around the real
//! programs.

pub mod harness;
pub mod net;
pub mod packet;
