//! The test kit: what the tests of felix-user, felix-cni and bird-conf, the benchmarks and the
//! lab share (see README.md):
//!
//! - [`netns`]: a private namespace for a thread, named namespaces removed on drop, and entering
//!   one until a guard drops;
//! - [`etcd`]: a real etcd (in a namespace or on loopback) with its PID, a bounded readiness
//!   poll and cleanup on drop;
//! - [`imports`]: a crate's import graph read from its sources, and its cycles;
//! - [`log`]: the tail of a process's log;
//! - [`packet`]: crafted frames, well-formed and malformed;
//! - [`prog_run`]: BPF_PROG_TEST_RUN of a loaded program on a frame, and the pin tree the
//!   caller loads the real object under.

pub mod etcd;
pub mod imports;
pub mod log;
pub mod netns;
pub mod packet;
pub mod pki;
#[cfg(feature = "bpf")]
pub mod prog_run;
