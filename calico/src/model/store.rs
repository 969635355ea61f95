//! What Calico's client (libcalico-go `clientv3`, which calicoctl writes through) does to a
//! resource on its way into etcd, beyond the defaulting both directions share
//! ([`Resource::apply_defaults`]):
//!
//! - [`Resource::fill_client_defaults`]: the spec defaults clientv3 writes out (IP pools, tiers,
//!   FelixConfiguration) and the `projectcalico.org/tier` label of policies;
//! - [`Resource::prepare_create`]: calicoctl keeps only name, namespace, labels and annotations
//!   of the metadata it was given (`prepareMetadataForCreate`); clientv3 then adds a `uid` and a
//!   `creationTimestamp` (`resources.go` `Create`);
//! - [`Resource::prepare_update`]: calicoctl keeps the stored metadata and takes only labels and
//!   annotations from the input (`mergeMetadataForUpdate`).
//!
//! `resourceVersion` is never stored (it is the etcd revision, `resourceToKVPair`).

use serde_json::Value;

use super::{
    Metadata, Resource,
    ippool::{DEFAULT_BLOCK_SIZE_V4, DEFAULT_BLOCK_SIZE_V6},
    values::{Action, EncapMode},
};

/// The label clientv3 puts on every (Global)NetworkPolicy: its tier (`apiv3.LabelTier`).
pub const LABEL_TIER: &str = "projectcalico.org/tier";
/// The order clientv3 gives a tier without one (`apiv3.DefaultTierOrder`).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// `allowedUses` of a pool without any (`ippool.go`: Workload and Tunnel).
pub const DEFAULT_ALLOWED_USES: [&str; 2] = ["Workload", "Tunnel"];
/// `assignmentMode` of a pool without one (`apiv3.Automatic`).
pub const DEFAULT_ASSIGNMENT_MODE: &str = "Automatic";
/// `nodeSelector` of a pool without one.
pub const DEFAULT_NODE_SELECTOR: &str = "all()";

impl Resource {
    /// Fills in the defaults clientv3 stores (see the module docs): IPPool `blockSize` (26 /
    /// 122), `ipipMode` / `vxlanMode` (`Never`), `nodeSelector` (`all()`), `allowedUses`
    /// (`Workload`, `Tunnel`), `assignmentMode` (`Automatic`); Tier `order` (1000000) and
    /// `defaultAction` (`Deny`); the `projectcalico.org/tier` label of policies (set to the
    /// tier, replacing any other value); FelixConfiguration `floatingIPs`,
    /// `bpfConnectTimeLoadBalancing` and `bpfHostNetworkedNATWithoutCTLB` (`felixconfig.go`).
    pub fn fill_client_defaults(&mut self) {
        match self {
            Resource::IpPool(o) => {
                let s = &mut o.spec;
                s.block_size.get_or_insert(if s.cidr.is_ipv4() {
                    DEFAULT_BLOCK_SIZE_V4
                } else {
                    DEFAULT_BLOCK_SIZE_V6
                });
                s.ipip_mode.get_or_insert(EncapMode::Never);
                s.vxlan_mode.get_or_insert(EncapMode::Never);
                if s.node_selector.as_deref().is_none_or(str::is_empty) {
                    s.node_selector = Some(DEFAULT_NODE_SELECTOR.to_string());
                }
                if s.allowed_uses.is_empty() {
                    s.allowed_uses = DEFAULT_ALLOWED_USES.map(str::to_string).to_vec();
                }
                s.assignment_mode
                    .get_or_insert_with(|| DEFAULT_ASSIGNMENT_MODE.to_string());
            }
            Resource::Tier(o) => {
                o.spec.order.get_or_insert(DEFAULT_TIER_ORDER);
                o.spec.default_action.get_or_insert(Action::Deny);
            }
            Resource::NetworkPolicy(o) => {
                let tier = o.spec.tier().to_string();
                o.metadata.labels.insert(LABEL_TIER.to_string(), tier);
            }
            Resource::GlobalNetworkPolicy(o) => {
                let tier = o.spec.tier().to_string();
                o.metadata.labels.insert(LABEL_TIER.to_string(), tier);
            }
            Resource::FelixConfiguration(o) => felix_configuration_defaults(&mut o.spec.other),
            _ => {}
        }
    }

    /// Metadata as calicoctl creates it: only name, namespace, labels and annotations of the
    /// input are kept; `uid` and `creationTimestamp` (RFC 3339, UTC, seconds) are the caller's.
    pub fn prepare_create(&mut self, uid: String, creation_timestamp: String) {
        let md = self.metadata_mut();
        *md = Metadata {
            name: std::mem::take(&mut md.name),
            namespace: md.namespace.take(),
            labels: std::mem::take(&mut md.labels),
            annotations: std::mem::take(&mut md.annotations),
            uid: Some(uid),
            creation_timestamp: Some(creation_timestamp),
            ..Metadata::default()
        };
    }

    /// Metadata as calicoctl updates it: the stored metadata, with the input's labels and
    /// annotations. The stored `resourceVersion` is dropped (etcd keeps it as the revision).
    pub fn prepare_update(&mut self, stored: &Metadata) {
        let md = self.metadata_mut();
        *md = Metadata {
            labels: std::mem::take(&mut md.labels),
            annotations: std::mem::take(&mut md.annotations),
            resource_version: None,
            ..stored.clone()
        };
    }

    /// The value to write to etcd for `self`, given the value at its key (if any): client
    /// defaults, then create or update metadata. `new_uid` and `now` are used only for a create.
    pub fn for_store(
        mut self,
        stored: Option<&Resource>,
        new_uid: impl FnOnce() -> String,
        now: impl FnOnce() -> String,
    ) -> Resource {
        self.fill_client_defaults();
        match stored {
            Some(old) if old.metadata().uid.is_some() => self.prepare_update(old.metadata()),
            // A stored value without uid (written by an older felix) is treated like a create
            // that keeps its creation time when it has one.
            Some(old) => {
                let created = old.metadata().creation_timestamp.clone();
                self.prepare_create(new_uid(), created.unwrap_or_else(now));
            }
            None => self.prepare_create(new_uid(), now()),
        }
        self
    }
}

/// FelixConfiguration defaults of clientv3's `setDefaults` (kept in the spec's opaque fields).
fn felix_configuration_defaults(other: &mut std::collections::BTreeMap<String, Value>) {
    other
        .entry("floatingIPs".to_string())
        .or_insert_with(|| Value::String("Disabled".into()));
    // `bpfConnectTimeLoadBalancingEnabled` (deprecated) decides both when present.
    match other
        .get("bpfConnectTimeLoadBalancingEnabled")
        .and_then(Value::as_bool)
    {
        Some(enabled) => {
            other.insert(
                "bpfHostNetworkedNATWithoutCTLB".into(),
                Value::String("Disabled".into()),
            );
            other.insert(
                "bpfConnectTimeLoadBalancing".into(),
                Value::String(if enabled { "Enabled" } else { "Disabled" }.into()),
            );
        }
        None => {
            other
                .entry("bpfConnectTimeLoadBalancing".to_string())
                .or_insert_with(|| Value::String("TCP".into()));
            other
                .entry("bpfHostNetworkedNATWithoutCTLB".to_string())
                .or_insert_with(|| Value::String("Enabled".into()));
        }
    }
}
