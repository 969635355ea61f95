//! `metadata` as libcalico-go's `validateObjectMeta` and the per-kind name rules check it:
//! names, label keys and values, annotation keys and size.

use std::collections::BTreeMap;

use super::names::{
    LABEL_MAX, SUBDOMAIN_MAX, is_dns_label, is_global_network_policy_name, is_network_policy_name,
    is_subdomain, label_value_problem, qualified_name_problem,
};
use crate::model::{
    Kind, Metadata,
    error::{FieldError, Reason},
};

/// Calico's limit on the summed length of annotation keys and values (256 KiB).
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn invalid(field: impl Into<String>, msg: String) -> FieldError {
    FieldError::new(field, Reason::Invalid(msg))
}

/// Checks `md.name` against the rule of `kind`, then labels and annotations.
pub fn check(kind: Kind, md: &Metadata) -> Result<(), FieldError> {
    check_name(kind, &md.name)?;
    check_labels("metadata.labels", &md.labels)?;
    check_annotations("metadata.annotations", &md.annotations)
}

/// Every name is a DNS subdomain (lower case); tiers are one DNS label of at most 63
/// characters; policies follow [`is_network_policy_name`] / [`is_global_network_policy_name`].
pub fn check_name(kind: Kind, name: &str) -> Result<(), FieldError> {
    const FIELD: &str = "metadata.name";
    if name.len() > SUBDOMAIN_MAX {
        return Err(invalid(
            FIELD,
            format!("name is too long by {} bytes", name.len() - SUBDOMAIN_MAX),
        ));
    }
    if !is_subdomain(name) {
        return Err(invalid(
            FIELD,
            format!(
                "{name:?}: a name must consist of lower case alphanumeric characters, '-' or '.', each '.'-separated part starting and ending alphanumeric"
            ),
        ));
    }
    match kind {
        Kind::Tier if name.len() > LABEL_MAX => Err(invalid(
            FIELD,
            format!(
                "tier name is too long by {} bytes (at most {LABEL_MAX})",
                name.len() - LABEL_MAX
            ),
        )),
        Kind::Tier if !is_dns_label(name) => Err(invalid(
            FIELD,
            format!(
                "{name:?}: a tier name must consist of lower case alphanumeric characters or '-' (no '.')"
            ),
        )),
        Kind::NetworkPolicy if !is_network_policy_name(name) => Err(invalid(
            FIELD,
            format!(
                "{name:?}: a NetworkPolicy name must be a DNS label, two DNS labels joined by '.', or knp.default.<name> / ossg.default.<name>"
            ),
        )),
        Kind::GlobalNetworkPolicy if !is_global_network_policy_name(name) => Err(invalid(
            FIELD,
            format!(
                "{name:?}: a GlobalNetworkPolicy name must be a DNS label, or two DNS labels joined by '.'"
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks label keys (qualified names) and values at `path`.
pub fn check_labels(path: &str, labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    for (k, v) in labels {
        if let Some(p) = qualified_name_problem(k) {
            return Err(invalid(format!("{path}.{k}"), format!("bad label key {p}")));
        }
        if let Some(p) = label_value_problem(v) {
            return Err(invalid(
                format!("{path}.{k}"),
                format!("bad label value {p}"),
            ));
        }
    }
    Ok(())
}

/// Checks annotation keys (qualified names once lower-cased, as Calico does) and their total
/// size at `path`.
pub fn check_annotations(
    path: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<(), FieldError> {
    let mut total = 0;
    for (k, v) in annotations {
        if let Some(p) = qualified_name_problem(&k.to_ascii_lowercase()) {
            return Err(invalid(
                format!("{path}.{k}"),
                format!("bad annotation key {p}"),
            ));
        }
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        return Err(invalid(
            path,
            format!(
                "total size of annotations is too large by {} bytes (at most {ANNOTATIONS_MAX_BYTES})",
                total - ANNOTATIONS_MAX_BYTES
            ),
        ));
    }
    Ok(())
}
