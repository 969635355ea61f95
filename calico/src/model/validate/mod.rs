//! Calico's validation rules (libcalico-go v3.32 `lib/validator/v3`, the API's `validate:` tags
//! and CRD rules, and the client's per-kind checks), one file per resource family. Run by
//! [`crate::model::Resource::validate`] after each spec's own checks, so the same rules apply to
//! `apply` input and to values read from etcd (which felix skips and counts when invalid).
//!
//! Every error names the field and says what is wanted.

pub mod endpoint;
pub mod ippool;
pub mod metadata;
pub mod names;
pub mod network_set;
pub mod node_config;
pub mod policy;

use super::{FieldError, Resource};

/// Checks `r` with Calico's rules (see the module docs).
pub fn check(r: &Resource) -> Result<(), FieldError> {
    let md = r.metadata();
    metadata::check(r.kind(), md)?;
    match r {
        Resource::WorkloadEndpoint(o) => endpoint::check_workload_endpoint(&o.spec),
        Resource::HostEndpoint(o) => endpoint::check_host_endpoint(&o.spec),
        Resource::NetworkPolicy(o) => policy::check_network_policy(&o.spec),
        Resource::GlobalNetworkPolicy(o) => policy::check_global_network_policy(&o.spec),
        Resource::Profile(o) => {
            metadata::check_labels("spec.labelsToApply", &o.spec.labels_to_apply)?;
            policy::check_rule_lists(&o.spec.ingress, &o.spec.egress)
        }
        Resource::Tier(o) => policy::check_tier(&md.name, &o.spec),
        Resource::IpPool(o) => ippool::check(&o.spec),
        Resource::GlobalNetworkSet(o) => network_set::check(&md.labels, &o.spec.nets),
        Resource::NetworkSet(o) => network_set::check(&md.labels, &o.spec.nets),
        Resource::Node(o) => node_config::check_node(&o.spec),
        Resource::FelixConfiguration(o) => node_config::check_felix_configuration(&o.spec),
        Resource::BgpConfiguration(_) | Resource::BgpPeer(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
