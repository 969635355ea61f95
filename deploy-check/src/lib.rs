//! Readers for `deploy/`: the Kubernetes manifests decoded strictly into `k8s-openapi` types
//! ([`manifests`]) and the Containerfile as a list of instructions ([`containerfile`]). The checks
//! themselves are this crate's tests; [`kube_controllers`] holds what Calico's kube-controllers needs.

pub mod containerfile;
pub mod kube_controllers;
pub mod manifests;
