//! What the datastore means for this node, computed without touching the kernel: the
//! [`topology`] (local workloads, hosts, pools), the [`desired`] endpoints and routes, and
//! [`policy`] (which rules apply to each endpoint, compiled into lookup tables).

pub mod desired;
pub mod policy;
pub mod topology;
