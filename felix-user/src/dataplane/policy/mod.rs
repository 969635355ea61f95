//! Compiled policy in the kernel: the tables written per group of endpoints ([`tables`]), the
//! agent's engine that feeds the calculation and programs the tables ([`engine`]), the state file
//! that names what was programmed ([`state`]) and `felix bpf policy dump` ([`dump`]).

pub mod dump;
pub mod engine;
pub mod state;
pub mod tables;
