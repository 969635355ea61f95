//! bird-conf: Calico's confd for BIRD 2, on felix's datastore code.
//!
//! For one node it watches Calico's BGP state in etcd (Nodes, IPPools, BGPConfigurations,
//! BGPPeers, the node's block affinities) through felix's syncer and cache, renders BIRD's
//! configuration from the templates in `bird-conf/templates/`, validates it with `bird -p`,
//! installs it atomically and reloads BIRD when it changed.
//!
//! The pipeline, one module per step:
//! [`inputs`] (read the cache) -> [`peers`] (who to peer with) -> [`view`] (every decision, as
//! the template context) -> [`render`] (templates) -> [`install`] (validate, write, reload via
//! [`bird`]); [`daemon`] runs it on every relevant change. [`bgp`] reads the BGP resources that
//! felix's model keeps opaque; [`fixture`] loads a cluster written as YAML for tests.

pub mod bgp;
pub mod bird;
pub mod daemon;
pub mod fixture;
pub mod inputs;
pub mod install;
pub mod peers;
pub mod render;
pub mod view;
