//! WorkloadEndpoint and HostEndpoint, as libcalico-go's struct tags, `validateWorkloadEndpointSpec`,
//! `validateHostEndpointSpec` and the client's WorkloadEndpoint name rule check them.

use super::names::{is_container_id, is_interface, is_subdomain};
use crate::model::{
    HostEndpointSpec, WorkloadEndpointSpec,
    error::{FieldError, Reason},
};

fn invalid(field: impl Into<String>, msg: String) -> FieldError {
    FieldError::new(field, Reason::Invalid(msg))
}

fn check_name_field(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() || is_subdomain(value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{value:?} must consist of lower case alphanumeric characters, '-' or '.', each '.'-separated part starting and ending alphanumeric"
            ),
        ))
    }
}

fn check_profiles(profiles: &[String]) -> Result<(), FieldError> {
    profiles
        .iter()
        .enumerate()
        .try_for_each(|(i, p)| check_name_field(&format!("spec.profiles[{i}]"), p))
}

/// The name Calico's client requires for a workload endpoint: the dash-separated identifiers
/// of its orchestrator (`<node>-k8s-<pod>-<endpoint>`, `<node>-cni-<containerID>-<endpoint>`,
/// `<node>-libnetwork-libnetwork-<endpoint>`, else `<node>-<orchestrator>-<workload>-<endpoint>`),
/// each with its `-` doubled. The error names the first missing or unusable identifier.
pub fn expected_workload_endpoint_name(spec: &WorkloadEndpointSpec) -> Result<String, FieldError> {
    let third = match spec.orchestrator.as_str() {
        "k8s" => ("pod", spec.pod.as_str()),
        "cni" => ("containerID", spec.container_id.as_str()),
        "libnetwork" => ("orchestrator", spec.orchestrator.as_str()),
        _ => ("workload", spec.workload.as_str()),
    };
    let parts = [
        ("node", spec.node.as_str()),
        ("orchestrator", spec.orchestrator.as_str()),
        third,
        ("endpoint", spec.endpoint.as_str()),
    ];
    let mut escaped = Vec::with_capacity(parts.len());
    for (field, value) in parts {
        let field = format!("spec.{field}");
        if value.is_empty() {
            return Err(FieldError::new(
                field,
                Reason::Required("an identifier of the workload endpoint's name"),
            ));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(invalid(
                field,
                format!("{value:?} must not begin or end with '-'"),
            ));
        }
        escaped.push(value.replace('-', "--"));
    }
    Ok(escaped.join("-"))
}

/// A WorkloadEndpoint: interface name (required), container ID, identifier and profile names,
/// single-address networks, gateways and NATs.
pub fn check_workload_endpoint(spec: &WorkloadEndpointSpec) -> Result<(), FieldError> {
    if !is_interface(&spec.interface_name) {
        return Err(invalid(
            "spec.interfaceName",
            format!(
                "{:?}: an interface name must be 1-15 characters of a-z, A-Z, 0-9, '_', '.' and '-'",
                spec.interface_name
            ),
        ));
    }
    if !spec.container_id.is_empty() && !is_container_id(&spec.container_id) {
        return Err(invalid(
            "spec.containerID",
            format!(
                "{:?}: a container ID must be letters, digits and '-', starting and ending with a letter or digit",
                spec.container_id
            ),
        ));
    }
    for (field, value) in [
        ("spec.orchestrator", &spec.orchestrator),
        ("spec.workload", &spec.workload),
        ("spec.node", &spec.node),
        ("spec.pod", &spec.pod),
        ("spec.endpoint", &spec.endpoint),
        ("spec.serviceAccountName", &spec.service_account_name),
    ] {
        check_name_field(field, value)?;
    }
    check_profiles(&spec.profiles)?;
    for (i, n) in spec.ip_networks.iter().enumerate() {
        if n.0.prefix_len() != n.0.max_prefix_len() {
            return Err(invalid(
                format!("spec.ipNetworks[{i}]"),
                format!(
                    "{n} contains several addresses; an endpoint network is one address (/32 or /128)"
                ),
            ));
        }
    }
    if let Some(gw) = spec.ipv4_gateway
        && !gw.is_ipv4()
    {
        return Err(invalid(
            "spec.ipv4Gateway",
            format!("{gw} is not an IPv4 address"),
        ));
    }
    if let Some(gw) = spec.ipv6_gateway
        && !gw.is_ipv6()
    {
        return Err(invalid(
            "spec.ipv6Gateway",
            format!("{gw} is not an IPv6 address"),
        ));
    }
    for (i, nat) in spec.ip_nats.iter().enumerate() {
        if nat.internal_ip.is_ipv4() != nat.external_ip.is_ipv4() {
            return Err(FieldError::new(
                format!("spec.ipNATs[{i}]"),
                Reason::Conflict("internalIP and externalIP have different IP versions".into()),
            ));
        }
        if !spec
            .ip_networks
            .iter()
            .any(|n| n.0.contains(&nat.internal_ip))
        {
            return Err(FieldError::new(
                format!("spec.ipNATs[{i}].internalIP"),
                Reason::Conflict(format!(
                    "{} is not in the endpoint's ipNetworks",
                    nat.internal_ip
                )),
            ));
        }
    }
    Ok(())
}

/// Calico's client rule for a workload endpoint's name: it must be
/// [`expected_workload_endpoint_name`] (calicoctl fills it in when absent). Not part of
/// [`super::check`]: Calico's felix does not check it on what it reads, and only Calico's
/// client (so `apply`) refuses a mismatch.
pub fn check_workload_endpoint_name(
    name: &str,
    spec: &WorkloadEndpointSpec,
) -> Result<(), FieldError> {
    let expected = expected_workload_endpoint_name(spec)?;
    if name != expected {
        return Err(invalid(
            "metadata.name",
            format!("{name:?} does not match the identifiers in spec: expected name {expected:?}"),
        ));
    }
    Ok(())
}

/// A HostEndpoint: interface name (`*` or Calico's interface syntax), node and profile names.
pub fn check_host_endpoint(spec: &HostEndpointSpec) -> Result<(), FieldError> {
    if !spec.interface_name.is_empty()
        && spec.interface_name != "*"
        && !is_interface(&spec.interface_name)
    {
        return Err(invalid(
            "spec.interfaceName",
            format!(
                "{:?}: an interface name must be '*' or 1-15 characters of a-z, A-Z, 0-9, '_', '.' and '-'",
                spec.interface_name
            ),
        ));
    }
    check_name_field("spec.node", &spec.node)?;
    check_profiles(&spec.profiles)?;
    Ok(())
}
