//! The user side of felix: loads the eBPF dataplane, attaches it to `cali*` interfaces as they come
//! and go, keeps its maps in step with Calico's datastore, and reads its pinned maps back for
//! operators. The `felix` binary (`src/bin/felix/`) is a thin CLI over these modules.
//!
//! Layers, each importing only the layers above it in this list (checked by `tests/layers.rs`):
//!
//! - [`calc`]: what the datastore means for this node: topology, desired state, policy
//!   calculation and compiler. Pure; reads the Calico model only.
//! - [`dataplane`]: the eBPF object, its pins, attachments and maps; writes the desired state
//!   and the compiled policy into the maps.
//! - [`host`]: the host's kernel outside BPF: links, routes, interface sysctls, address
//!   autodetection, Node registration.
//! - [`report`]: status in etcd, metrics and health, table rendering.
//! - [`iptables`]: Calico's iptables mode.
//! - [`config`]: settings from flags, environment, files and FelixConfiguration.
//! - [`agent`]: `felix run`, wiring the layers together.

pub mod calc;
pub mod dataplane;
pub mod host;
pub mod report;

pub mod iptables;

pub mod config;

pub mod agent;

pub use dataplane::programs::{
    EBPF_OBJECT, PROG_CT_CLEAN, PROG_FROM_UPLINK, PROG_FROM_WORKLOAD, PROG_TO_UPLINK,
    PROG_TO_WORKLOAD, PROG_UPLINK_XDP, TC_PROGRAMS,
};
