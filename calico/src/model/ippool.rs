//! IPPool: a range pods get addresses from, and how traffic to it is encapsulated.

use serde::{Deserialize, Serialize};

use super::{
    error::{FieldError, Reason},
    values::{Cidr, EncapMode, check_selector},
};

/// Block size Calico uses for IPv4 pools without `blockSize`.
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Block size Calico uses for IPv6 pools without `blockSize`.
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;

/// Spec of an IPPool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPoolSpec {
    pub cidr: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(
        rename = "disableBGPExport",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    /// Prefix length of the blocks handed to nodes (IPv4 20-32, IPv6 116-128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    /// Which nodes may allocate from it (a selector, kept as a string; validation parses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Which namespaces' pods may allocate from it (a selector; stored, not used by felix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// `Workload`, `Tunnel`, `LoadBalancer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<String>,
    /// Kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<String>,
}

impl IpPoolSpec {
    /// The IPIP mode (`Never` when absent).
    pub fn ipip(&self) -> EncapMode {
        self.ipip_mode.unwrap_or(EncapMode::Never)
    }
    /// The VXLAN mode (`Never` when absent).
    pub fn vxlan(&self) -> EncapMode {
        self.vxlan_mode.unwrap_or(EncapMode::Never)
    }
    /// The block size, or Calico's default for the family.
    pub fn block_size(&self) -> u8 {
        self.block_size.unwrap_or(if self.cidr.is_ipv4() {
            DEFAULT_BLOCK_SIZE_V4
        } else {
            DEFAULT_BLOCK_SIZE_V6
        })
    }

    /// Clears host bits of `cidr` as Calico's client does (`10.0.0.5/16` becomes `10.0.0.0/16`).
    pub fn apply_defaults(&mut self) {
        self.cidr = Cidr(self.cidr.network());
    }

    /// Checks modes, block size, allowed uses and the node selector.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(text) = &self.node_selector {
            check_selector(|| "spec.nodeSelector".into(), text)?;
        }
        if let Some(text) = &self.namespace_selector {
            check_selector(|| "spec.namespaceSelector".into(), text)?;
        }
        if self.ipip() != EncapMode::Never && self.vxlan() != EncapMode::Never {
            return Err(FieldError::new(
                "spec.vxlanMode",
                Reason::Conflict("ipipMode and vxlanMode cannot both be enabled".into()),
            ));
        }
        if !self.cidr.is_ipv4() && self.ipip() != EncapMode::Never {
            return Err(FieldError::new(
                "spec.ipipMode",
                Reason::Conflict("IPIP is not supported for IPv6 pools".into()),
            ));
        }
        let (min, max) = if self.cidr.is_ipv4() {
            (20, 32)
        } else {
            (116, 128)
        };
        let bs = self.block_size();
        if !(min..=max).contains(&bs) {
            return Err(FieldError::new(
                "spec.blockSize",
                Reason::OutOfRange {
                    value: bs.into(),
                    min: min.into(),
                    max: max.into(),
                },
            ));
        }
        // Calico's IPAM needs at least one block, but a disabled pool may be smaller.
        if !self.disabled && self.cidr.0.prefix_len() > bs {
            return Err(FieldError::new(
                "spec.cidr",
                Reason::Conflict(format!(
                    "pool {} is smaller than one block (/{bs})",
                    self.cidr
                )),
            ));
        }
        for (i, u) in self.allowed_uses.iter().enumerate() {
            if !["Workload", "Tunnel", "LoadBalancer"].contains(&u.as_str()) {
                return Err(FieldError::new(
                    format!("spec.allowedUses[{i}]"),
                    Reason::Invalid(format!(
                        "unknown use {u:?} (expected Workload, Tunnel or LoadBalancer)"
                    )),
                ));
            }
        }
        Ok(())
    }
}
