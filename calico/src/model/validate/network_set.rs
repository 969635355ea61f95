//! GlobalNetworkSet and NetworkSet: libcalico-go's `validate(Global)NetworkSet`.

use std::collections::BTreeMap;

use crate::model::{
    Cidr,
    error::{FieldError, Reason},
    workload_endpoint::LABEL_NAMESPACE,
};

/// Checks a network set's labels and nets: the `projectcalico.org/namespace` label is
/// reserved (Calico sets it on the v1 model itself); nets may keep host bits (Calico's `cidr`).
/// For both GlobalNetworkSet and NetworkSet.
pub fn check(labels: &BTreeMap<String, String>, _nets: &[Cidr]) -> Result<(), FieldError> {
    if labels.contains_key(LABEL_NAMESPACE) {
        return Err(FieldError::new(
            format!("metadata.labels.{LABEL_NAMESPACE}"),
            Reason::Invalid(format!(
                "{LABEL_NAMESPACE} is reserved by Calico and cannot be set on a network set"
            )),
        ));
    }
    Ok(())
}
