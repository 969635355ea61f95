//! Calico's data model and datastore, shared by felix, felix-cni and bird-conf: typed Calico v3
//! resources ([`model`]) and their label selectors ([`selector`]), Calico IPAM's blocks and
//! affinities ([`ipam`]), the etcd syncer ([`datastore`]) and the parsed cache it feeds
//! ([`store`]).
//!
//! No eBPF here: depending on this crate does not build the dataplane or link aya.

pub mod datastore;
pub mod etcd_access;
pub mod ipam;
pub mod model;
pub mod selector;
pub mod store;
pub mod tls_verdict;
