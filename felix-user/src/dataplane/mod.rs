//! The eBPF dataplane: the embedded object and its programs, the pin tree, attachments, the maps
//! (one module each in [`maps`]) and what writes them: [`reconcile`] (desired state -> maps),
//! [`policy`] (compiled policy -> policy maps), [`failsafe`] and [`xdp`].

pub mod attach;
pub mod attached;
pub mod ct_cleaner;
pub mod failsafe;
pub mod kernel_log;
pub mod loader;
pub mod maps;
pub mod pins;
pub mod policy;
pub mod programs;
pub mod reconcile;
pub mod resize;
pub mod trace;
pub mod xdp;
