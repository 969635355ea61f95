//! The lab pool's IPIP mode, a setting of the lab's state and of its Calico IP pool.

use serde::{Deserialize, Serialize};

/// The lab pool's `ipipMode`: how felix (and BIRD) route pod traffic between the hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpipMode {
    /// IPIP between hosts, done by felix's programs (the lab's default).
    #[default]
    Always,
    /// Native routing: pod packets cross the fabric as they are.
    Never,
    /// IPIP only to hosts outside this host's subnet; the lab's hosts share one, so native.
    CrossSubnet,
}

impl IpipMode {
    /// The value as Calico writes it (`Always`, `Never`, `CrossSubnet`).
    pub fn as_str(self) -> &'static str {
        match self {
            IpipMode::Always => "Always",
            IpipMode::Never => "Never",
            IpipMode::CrossSubnet => "CrossSubnet",
        }
    }

    /// Whether traffic between the lab's hosts (all on 10.0.0.0/24) is encapsulated.
    pub fn encapsulates_in_lab(self) -> bool {
        self == IpipMode::Always
    }
}
