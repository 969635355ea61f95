//! GlobalNetworkSet and the namespaced NetworkSet: labelled sets of CIDRs that rule selectors can
//! match.

use serde::{Deserialize, Serialize};

use super::{error::FieldError, values::Cidr};

/// Spec of a GlobalNetworkSet (its labels are in `metadata.labels`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalNetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<Cidr>,
}

impl GlobalNetworkSetSpec {
    /// Nothing to check beyond the CIDRs, which are checked while parsing.
    pub fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// Spec of a namespaced NetworkSet: the same shape as a GlobalNetworkSet's (Calico's
/// `NetworkSetSpec` has only `nets`). Rule selectors see it with its own labels, the
/// `projectcalico.org/namespace` label set to its namespace, and the labels of the namespace's
/// `kns.<namespace>` profile (Calico's `networksetprocessor.go`).
pub type NetworkSetSpec = GlobalNetworkSetSpec;
