//! Profile: rules for endpoints that no policy selects, and labels applied to its endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    error::FieldError,
    policy::{Rule, validate_rules},
};

/// Spec of a Profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Labels every endpoint with this profile inherits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

impl ProfileSpec {
    /// Checks the rules.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_rules(&self.ingress, "spec.ingress")?;
        validate_rules(&self.egress, "spec.egress")
    }
}
