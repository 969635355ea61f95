//! Types shared by felix's kernel side (`felix-ebpf`) and user side (`felix-user`).
//!
//! Every map key and value here is `#[repr(C)]`, `Copy` and free of implicit padding, so the
//! kernel and user space agree byte for byte; `layout` tests pin sizes and offsets. With the
//! `user` feature the types implement `aya::Pod`.
#![no_std]

pub mod config;
pub mod conntrack;
pub mod counters;
pub mod ct_clean;
pub mod endpoints;
pub mod failsafe;
pub mod frags;
pub mod ifaces;
pub mod maps;
pub mod nat;
pub mod policy;
pub mod routes;
pub mod trace;

pub use config::HostConfig;
pub use conntrack::{CtKey, CtState, CtValue};
pub use counters::{CounterCacheLine, CounterKey, CounterValue, Direction, Reason};
pub use endpoints::EndpointInfo;
pub use ifaces::{IfaceInfo, IfaceRole};
pub use routes::{RouteKind, RouteValue};
