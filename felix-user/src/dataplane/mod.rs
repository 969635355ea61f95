//! The eBPF dataplane: the embedded object and its programs, the pin tree, attachments, the maps
//! (one module each in [`maps`]) and what writes them: [`reconcile`] (desired state -> maps),
//! [`policy`] (compiled policy -> policy maps), [`failsafe`] and [`xdp`].

pub mod attach;
pub mod attached;
pub mod counter_cache;
pub mod ct_fill;
pub mod ct_gc;
pub mod failsafe;
pub mod inspect;
pub mod kernel_log;
pub mod loader;
pub mod pins;
pub mod policy;
pub mod programs;
pub mod reconcile;
pub mod resize;
pub mod trace;
pub mod xdp;
