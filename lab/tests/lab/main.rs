//! Lab tests: a real two-host lab (namespaces, etcd, felix, BIRD) on this machine, one module per
//! feature, with shared helpers in [`support`]. Root only; run with `cargo xtask test --tier lab`
//! (which builds felix and bird-conf first).
#![cfg(feature = "lab-tests")]

mod apply;
mod bgp;
mod cni;
mod config;
mod conntrack;
mod dataplane_bench;
mod datastore_hostile;
mod etcd_tls;
mod felix_restart;
mod frames;
mod host_integration;
mod ipam;
mod iptables_mode;
mod k8s_network_policy;
mod lifecycle;
mod metrics;
mod mtu;
mod nat_outgoing;
mod native;
mod ops;
mod pod_traffic;
mod policy;
mod port_reuse;
mod service_accounts;
mod service_policy;
mod services;
mod support;
mod xdp_prefilter;
mod xdp_throughput;
