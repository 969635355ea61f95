//! Tier: an ordered group of policies.

use serde::{Deserialize, Serialize};

use super::{
    error::{FieldError, Reason},
    values::Action,
};

/// Spec of a Tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    /// Lower applies first; `None` sorts after every number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::go_json::serialize_opt_f64"
    )]
    pub order: Option<f64>,
    /// What happens to traffic that policies of this tier select but no rule decides:
    /// `Deny` (Calico's default) or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

impl TierSpec {
    /// The order used for sorting: `order`, or +infinity when absent.
    pub fn order_or_inf(&self) -> f64 {
        self.order.unwrap_or(f64::INFINITY)
    }

    /// Checks `order` and `defaultAction`.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(o) = self.order
            && !o.is_finite()
        {
            return Err(FieldError::new(
                "spec.order",
                Reason::Invalid(format!("order must be a finite number, not {o}")),
            ));
        }
        match self.default_action {
            None | Some(Action::Deny) | Some(Action::Pass) => Ok(()),
            Some(a) => Err(FieldError::new(
                "spec.defaultAction",
                Reason::Invalid(format!("defaultAction must be Deny or Pass, not {a}")),
            )),
        }
    }
}
