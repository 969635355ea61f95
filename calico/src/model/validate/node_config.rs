//! Node and FelixConfiguration: the struct tags and `validateNodeSpec` rules for the fields
//! felix models.

use std::net::IpAddr;

use crate::model::{
    FelixConfigurationSpec, NodeSpec,
    error::{FieldError, Reason},
    node::NodeBgpSpec,
};

/// Calico's `logLevel` values (exact spelling).
pub const LOG_LEVELS: [&str; 6] = ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];
/// Calico's `bpfLogLevel` values (exact spelling).
pub const BPF_LOG_LEVELS: [&str; 3] = ["Debug", "Info", "Off"];

fn invalid(field: &str, msg: String) -> FieldError {
    FieldError::new(field, Reason::Invalid(msg))
}

fn family(field: &str, ip: Option<IpAddr>, v4: bool) -> Result<(), FieldError> {
    match ip {
        Some(a) if a.is_ipv4() != v4 => Err(invalid(
            field,
            format!("{a} is not an IPv{} address", if v4 { 4 } else { 6 }),
        )),
        _ => Ok(()),
    }
}

/// A Node: `bgp` is not empty when given, tunnel addresses are of their family.
pub fn check_node(spec: &NodeSpec) -> Result<(), FieldError> {
    if let Some(bgp) = &spec.bgp {
        if *bgp == NodeBgpSpec::default() {
            return Err(FieldError::new(
                "spec.bgp",
                Reason::Required("spec.bgp, when given, must not be empty"),
            ));
        }
        family(
            "spec.bgp.ipv4IPIPTunnelAddr",
            bgp.ipv4_ipip_tunnel_addr,
            true,
        )?;
    }
    family(
        "spec.ipv4VXLANTunnelAddr",
        spec.ipv4_vxlan_tunnel_addr,
        true,
    )?;
    family(
        "spec.ipv6VXLANTunnelAddr",
        spec.ipv6_vxlan_tunnel_addr,
        false,
    )
}

/// A FelixConfiguration: log levels in Calico's spelling.
pub fn check_felix_configuration(spec: &FelixConfigurationSpec) -> Result<(), FieldError> {
    for (field, value, allowed) in [
        (
            "spec.logSeverityScreen",
            &spec.log_severity_screen,
            &LOG_LEVELS[..],
        ),
        ("spec.bpfLogLevel", &spec.bpf_log_level, &BPF_LOG_LEVELS[..]),
    ] {
        if let Some(v) = value
            && !allowed.contains(&v.as_str())
        {
            return Err(invalid(
                field,
                format!(
                    "{v:?} is not one of {} (case-sensitive)",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
