//! Types shared by felix's kernel side (`felix-ebpf`) and user side (`felix-user`).
//!
//! Every map key and value here is `#[repr(C)]`, `Copy` and free of implicit padding, so the
//! kernel and user space agree byte for byte; `layout` tests pin sizes and offsets. With the
//! `user` feature the types implement `aya::Pod`.
#![no_std]

pub mod counters;
pub mod ifaces;
pub mod maps;

pub use counters::{CounterKey, CounterValue, Direction, Reason};
pub use ifaces::{IfaceInfo, IfaceRole};
