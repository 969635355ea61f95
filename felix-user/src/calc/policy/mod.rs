//! Network policy: which policies and profiles apply to each local endpoint, and how a packet is
//! judged, following Calico v3 semantics.
//!
//! Semantics (shared by the compiler and by the plain [`reference`] evaluator the tests check it
//! against):
//! - An endpoint's labels are its own `metadata.labels`, plus `projectcalico.org/namespace` (its
//!   namespace) when absent, plus the `labelsToApply` of each of its profiles that it does not set
//!   itself (earlier profiles win). Namespace labels are the `pcns.`-prefixed labels its
//!   profiles apply (as Calico's `kns.<namespace>` profiles carry them) plus
//!   `pcns.projectcalico.org/name = <namespace>`.
//! - A NetworkPolicy applies to endpoints of its own namespace that match its selector; a
//!   GlobalNetworkPolicy to endpoints matching its selector and, if set, its namespaceSelector.
//!   A policy takes part in a direction when `types` (or Calico's default for its rules) holds it.
//! - Per direction: tiers that have at least one applicable policy, by (order, name), order absent
//!   last; in a tier, policies by (order, name). Rules in order: Allow and Deny decide, Pass skips
//!   to the next tier, Log goes on. A tier whose policies decide nothing ends with its
//!   `defaultAction` (Deny unless `Pass`). When no tier applies, or the last one passed, the
//!   endpoint's profiles follow in order (Pass there skips to the next profile); nothing decided
//!   means deny.
//! - A rule matches when every criterion holds. The remote side (source for ingress, destination
//!   for egress) is matched by address: `nets`, `notNets`, and `selector` / `notSelector` /
//!   `namespaceSelector` through the addresses of the endpoints, host endpoints and network sets
//!   they select. In a NetworkPolicy a rule with a `selector` or `notSelector` but no
//!   `namespaceSelector` selects in the policy's namespace only (the `notSelector` then
//!   excludes from those). The local side is matched against the endpoint itself.
//!   Ports and `notPorts` hold numbers, ranges and names; ICMP type and code match ICMP.
//! - Service accounts (as Calico's `pcsa.` labels): a rule side's `serviceAccounts` selects the
//!   endpoints whose `projectcalico.org/serviceaccount` label is one of `names` and whose
//!   service account labels (the `pcsa.`-prefixed `labelsToApply` of their `ksa.<ns>.<sa>`
//!   profile) match `selector`; it is ANDed with the side's `selector` and, like it, scoped to a
//!   NetworkPolicy's namespace unless a `namespaceSelector` says otherwise. A policy's
//!   `serviceAccountSelector` is ANDed with its `selector` the same way (in a
//!   GlobalNetworkPolicy `all()` there means "has a service account", as Calico rewrites it).
//! - A named port (as Calico's named-port IP sets): on a side of a rule, the name matches when
//!   that side's (address, protocol, port) is a port of that name, with the rule's protocol,
//!   declared under `spec.ports` by an endpoint or host endpoint the side's positive selector
//!   (`selector`, `namespaceSelector`, namespace scope) selects, every one without a selector.
//!   On the local side that is the endpoint's own ports. Names and numbers in one list are
//!   alternatives; a name nobody declares matches nothing (`ports`) or excludes nothing
//!   (`notPorts`); without a rule protocol a name matches nothing.

mod cache;
pub mod calc;
pub mod cases;
pub mod compile;
pub mod explain;
pub mod generate;
mod membership;
pub mod program;
pub mod reference;
pub mod rule_ids;
#[cfg(test)]
mod tests;

use std::{fmt, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

pub use calico::model::PolicyType as PolicyDirection;

/// The transport part of a packet that policy can look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP, UDP or SCTP ports.
    Ports { src: u16, dst: u16 },
    /// ICMP type and code.
    Icmp { icmp_type: u8, code: u8 },
    /// Any other protocol.
    Other,
}

/// The fields of a packet that policy judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    pub l4: L4,
}

impl Packet {
    /// Source port (0 when the protocol has none).
    pub fn src_port(&self) -> u16 {
        match self.l4 {
            L4::Ports { src, .. } => src,
            _ => 0,
        }
    }

    /// Destination port (0 when the protocol has none).
    pub fn dst_port(&self) -> u16 {
        match self.l4 {
            L4::Ports { dst, .. } => dst,
            _ => 0,
        }
    }
}

/// What decided a packet's fate, in words a user can look up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleRef {
    /// Rule `index` (from 0) of a policy's ingress or egress rules. `policy` is
    /// `<namespace>/<name>` for a NetworkPolicy, `<name>` for a GlobalNetworkPolicy.
    Policy {
        tier: String,
        policy: String,
        direction: PolicyDirection,
        index: usize,
    },
    /// Policies of `tier` applied but none decided: the tier's default action.
    EndOfTier {
        tier: String,
        direction: PolicyDirection,
    },
    /// Rule `index` of a profile.
    Profile {
        profile: String,
        direction: PolicyDirection,
        index: usize,
    },
    /// Nothing allowed the packet: default deny.
    DefaultDeny { direction: PolicyDirection },
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Policy {
                tier,
                policy,
                direction,
                index,
            } => write!(
                f,
                "tier {tier} policy {policy} {} rule {index}",
                direction.as_str().to_lowercase()
            ),
            RuleRef::EndOfTier { tier, direction } => write!(
                f,
                "end of tier {tier} ({})",
                direction.as_str().to_lowercase()
            ),
            RuleRef::Profile {
                profile,
                direction,
                index,
            } => write!(
                f,
                "profile {profile} {} rule {index}",
                direction.as_str().to_lowercase()
            ),
            RuleRef::DefaultDeny { direction } => write!(
                f,
                "default deny ({}): no policy or profile allowed it",
                direction.as_str().to_lowercase()
            ),
        }
    }
}

/// A policy verdict and the rule that gave it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Decision {
    pub allow: bool,
    pub by: RuleRef,
}
