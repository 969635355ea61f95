//! Shared test support: a packet builder and a harness around the real programs.

pub mod harness;
pub mod packet;
