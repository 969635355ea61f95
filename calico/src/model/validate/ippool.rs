//! IPPool rules of libcalico-go's `validateIPPoolSpec` and its client (`ippool.go`) beyond
//! [`crate::model::IpPoolSpec::validate`]: link-local ranges, LoadBalancer pools,
//! `global()` in the node selector, assignment mode, and overlap with other pools.

use ipnet::IpNet;

use crate::model::{
    IpPoolSpec,
    error::{FieldError, Reason},
    values::EncapMode,
};

/// The allowed use that makes a pool a LoadBalancer pool.
pub const LOAD_BALANCER: &str = "LoadBalancer";
/// Values of `assignmentMode`.
pub const ASSIGNMENT_MODES: [&str; 2] = ["Automatic", "Manual"];

fn conflict(field: &str, msg: impl Into<String>) -> FieldError {
    FieldError::new(field, Reason::Conflict(msg.into()))
}

fn link_local(v4: bool) -> IpNet {
    let text = if v4 { "169.254.0.0/16" } else { "fe80::/10" };
    text.parse().unwrap_or_default()
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks the pool on its own (see the module docs; overlap needs the other pools, see
/// [`overlapping_pool`]).
pub fn check(spec: &IpPoolSpec) -> Result<(), FieldError> {
    let cidr = spec.cidr.network();
    let ll = link_local(spec.cidr.is_ipv4());
    if overlaps(&cidr, &ll) {
        return Err(conflict(
            "spec.cidr",
            format!("IP pool range {cidr} overlaps with the link-local range {ll}"),
        ));
    }
    if let Some(sel) = &spec.node_selector
        && sel.contains("global(")
    {
        return Err(conflict(
            "spec.nodeSelector",
            "global() is not valid in an IP pool's nodeSelector; use all()",
        ));
    }
    if let Some(mode) = &spec.assignment_mode
        && !ASSIGNMENT_MODES.contains(&mode.as_str())
    {
        return Err(FieldError::new(
            "spec.assignmentMode",
            Reason::Invalid(format!("{mode:?} is not Automatic or Manual")),
        ));
    }
    let uses = &spec.allowed_uses;
    if !uses.iter().any(|u| u == LOAD_BALANCER) {
        return Ok(());
    }
    if let Some(other) = uses.iter().find(|u| *u != LOAD_BALANCER) {
        return Err(conflict(
            "spec.allowedUses",
            format!("LoadBalancer cannot be used at the same time as {other}"),
        ));
    }
    if spec.ipip() != EncapMode::Never || spec.vxlan() != EncapMode::Never {
        return Err(conflict(
            "spec.ipipMode",
            "neither ipipMode nor vxlanMode can be enabled on a LoadBalancer pool",
        ));
    }
    if spec.disable_bgp_export {
        return Err(conflict(
            "spec.disableBGPExport",
            "a LoadBalancer pool cannot have disableBGPExport: true",
        ));
    }
    if spec
        .node_selector
        .as_deref()
        .is_some_and(|s| s.trim() != "all()")
    {
        return Err(conflict(
            "spec.nodeSelector",
            "a LoadBalancer pool's nodeSelector must be all()",
        ));
    }
    Ok(())
}

/// The first of `others` (name, spec) whose CIDR overlaps `spec`'s, skipping `name` itself:
/// Calico's client refuses to create such a pool (an update of an existing pool is not
/// checked).
pub fn overlapping_pool<'a>(
    name: &str,
    spec: &IpPoolSpec,
    others: impl IntoIterator<Item = (&'a str, &'a IpPoolSpec)>,
) -> Option<&'a str> {
    let cidr = spec.cidr.network();
    others
        .into_iter()
        .find(|(n, o)| *n != name && overlaps(&cidr, &o.cidr.network()))
        .map(|(n, _)| n)
}
