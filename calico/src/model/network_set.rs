//! GlobalNetworkSet: a labelled set of CIDRs that rule selectors can match.

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
