//! felix's status in etcd, under Calico's felix status keys, held by a lease so that a dead
//! felix's status expires: its own (`/calico/felix/v2/<region>/host/<node>/status`) and each
//! local endpoint's (`.../workload/<orchestrator>/<workload>/endpoint/<endpoint>`).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use calico::datastore::SyncStatus;
use calico::etcd_access::{AccessError, EtcdAccess};
use calico::model::workload_endpoint::EndpointId;
use etcd_client::{GetOptions, PutOptions};

/// How long connecting to etcd may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time between two status writes that a change of the report triggers (as
/// Calico's EndpointReportingDelaySecs). felix watches its own status keys: without a gap each
/// write would come back as a datastore batch, move the report's revision and be written
/// again at once, a loop that loads etcd while other writers wait on it.
pub const MIN_WRITE_GAP: Duration = Duration::from_secs(1);

/// Why a status session ended.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
}
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

/// Root of every felix's status keys, in every region.
pub const STATUS_ROOT: &str = "/calico/felix/v2/";

/// Calico's region string of a felix: `no-region`, or `region-<name>` when OpenstackRegion is
/// set.
pub fn region_string(region: Option<&str>) -> String {
    match region {
        Some(name) if !name.is_empty() => format!("region-{name}"),
        _ => "no-region".into(),
    }
}

/// Where one felix writes its status keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusKeys {
    /// The region string ([`region_string`]).
    region: String,
    node: String,
}

impl StatusKeys {
    pub fn new(region: Option<&str>, node: &str) -> Self {
        StatusKeys {
            region: region_string(region),
            node: node.to_owned(),
        }
    }

    fn host_prefix(&self) -> String {
        format!("{STATUS_ROOT}{}/host/{}/", self.region, self.node)
    }

    /// Key of the felix's own status.
    pub fn felix(&self) -> String {
        format!("{}status", self.host_prefix())
    }

    /// Prefix of the node's endpoint status keys.
    pub fn endpoints_prefix(&self) -> String {
        format!("{}workload/", self.host_prefix())
    }

    /// Key of an endpoint's status; `/` in the workload id is escaped as `%2f`, as Calico does.
    pub fn endpoint(&self, id: &EndpointId) -> String {
        format!(
            "{}{}/{}/endpoint/{}",
            self.endpoints_prefix(),
            id.orchestrator,
            id.workload.replace('/', "%2f"),
            id.endpoint
        )
    }
}

/// What felix says of itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FelixStatus {
    /// When this was written (RFC 3339).
    pub time: String,
    /// Seconds since felix started.
    pub uptime: f64,
    /// Whether this is the first write since felix started.
    pub first_update: bool,
    pub dataplane: String,
    /// Programs attached to interfaces.
    pub programs_loaded: u32,
    /// The uplink's XDP prefilter: `attached` (the deny list has entries), `idle` (it is
    /// empty), `disabled` (XDPEnabled false), `failed` (attaching failed), `unknown`; absent in
    /// iptables mode and from an older felix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<String>,
    /// Datastore synced and maps programmed.
    pub ready: bool,
    /// When the maps last took a datastore snapshot (RFC 3339).
    pub last_sync: Option<String>,
    /// The datastore syncer and cache (absent from an older felix's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<DatastoreStatus>,
}

/// The datastore as felix sees it: the syncer's state and the malformed values it skips.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreStatus {
    #[serde(flatten)]
    pub sync: SyncStatus,
    /// Keys whose value is skipped as malformed now, per kind.
    #[serde(default)]
    pub malformed: BTreeMap<String, u64>,
    /// Malformed values seen since felix started, per kind.
    #[serde(default)]
    pub malformed_total: BTreeMap<String, u64>,
}

impl DatastoreStatus {
    /// Whether `self` and `other` differ in more than the revision (which moves with every
    /// change, and is carried by the periodic refresh only).
    pub fn differs_beyond_revision(&self, other: &Self) -> bool {
        let mut other = other.clone();
        other.sync.revision = self.sync.revision;
        *self != other
    }
}

/// What felix says of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// `up`, `down` or `error`.
    pub status: String,
    pub reason: Option<String>,
}

impl EndpointStatus {
    pub fn up() -> Self {
        Self {
            status: "up".into(),
            reason: None,
        }
    }

    pub fn down(reason: String) -> Self {
        Self {
            status: "down".into(),
            reason: Some(reason),
        }
    }

    pub fn error(reason: String) -> Self {
        Self {
            status: "error".into(),
            reason: Some(reason),
        }
    }
}

/// The agent's view, sent to the reporter whenever it changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The dataplane mode: `bpf`, `iptables-nft` or `iptables-legacy`.
    pub dataplane: &'static str,
    pub ready: bool,
    pub programs_loaded: u32,
    /// The uplink's XDP state (BPF mode).
    pub xdp: Option<&'static str>,
    pub last_sync: Option<SystemTime>,
    pub endpoints: BTreeMap<EndpointId, EndpointStatus>,
    /// Local workload endpoints left out because another endpoint holds their interface.
    pub endpoint_conflicts: u64,
    pub datastore: DatastoreStatus,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Runs until `reports` closes: writes the status under a lease of `ttl`, refreshed every
/// `ttl / 3` and on every change; reconnects with backoff when etcd is away.
pub async fn run(
    access: EtcdAccess,
    keys: StatusKeys,
    ttl: Duration,
    mut reports: watch::Receiver<Report>,
) {
    let started = Instant::now();
    let mut first_update = true;
    let mut delay = Duration::from_millis(200);
    loop {
        match serve(
            &access,
            &keys,
            ttl,
            &mut reports,
            started,
            &mut first_update,
        )
        .await
        {
            Ok(()) => return,
            Err(error) => {
                warn!(%error, retry_in = ?delay, "status reporting interrupted");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn serve(
    access: &EtcdAccess,
    keys: &StatusKeys,
    ttl: Duration,
    reports: &mut watch::Receiver<Report>,
    started: Instant,
    first_update: &mut bool,
) -> Result<(), ServeError> {
    let mut client = access
        .connect(etcd_client::ConnectOptions::new(), CONNECT_TIMEOUT)
        .await?;
    let lease = client
        .lease_grant(ttl.as_secs().max(2) as i64, None)
        .await?
        .id();
    let (mut keeper, mut keepalive) = client.lease_keep_alive(lease).await?;
    // What a previous felix of this node left is ours to reconcile.
    let mut written: BTreeMap<String, Option<EndpointStatus>> = client
        .get(
            keys.endpoints_prefix(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await?
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok().map(|k| (k.to_owned(), None)))
        .collect();
    info!(lease, ?ttl, "status reporting to etcd");
    loop {
        let report = reports.borrow_and_update().clone();
        let own = FelixStatus {
            time: rfc3339(SystemTime::now()),
            uptime: started.elapsed().as_secs_f64(),
            first_update: *first_update,
            dataplane: report.dataplane.into(),
            programs_loaded: report.programs_loaded,
            xdp: report.xdp.map(str::to_owned),
            ready: report.ready,
            last_sync: report.last_sync.map(rfc3339),
            datastore: Some(report.datastore.clone()),
        };
        let leased = || Some(PutOptions::new().with_lease(lease));
        client
            .put(
                keys.felix(),
                serde_json::to_string(&own).unwrap_or_default(),
                leased(),
            )
            .await?;
        *first_update = false;
        let wanted: BTreeMap<String, EndpointStatus> = report
            .endpoints
            .iter()
            .map(|(id, status)| (keys.endpoint(id), status.clone()))
            .collect();
        for (key, status) in &wanted {
            if written.get(key) != Some(&Some(status.clone())) {
                client
                    .put(
                        key.as_str(),
                        serde_json::to_string(status).unwrap_or_default(),
                        leased(),
                    )
                    .await?;
                written.insert(key.clone(), Some(status.clone()));
            }
        }
        let gone: Vec<String> = written
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            client.delete(key.as_str(), None).await?;
            written.remove(&key);
        }
        keeper.keep_alive().await?;
        let _ = keepalive.message().await?;
        let written_at = Instant::now();
        tokio::select! {
            changed = reports.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                // Later changes within the gap are written together.
                tokio::time::sleep(MIN_WRITE_GAP.saturating_sub(written_at.elapsed())).await;
            }
            () = tokio::time::sleep(ttl / 3) => {}
        }
    }
}

/// Everything under the status keys, as read back by `felix status`.
#[derive(Debug, Default, Serialize)]
pub struct Overview {
    pub nodes: Vec<NodeRow>,
    pub endpoints: Vec<EndpointRow>,
}

#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub node: String,
    /// Calico's region string (`no-region` unless OpenstackRegion is set).
    pub region: String,
    #[serde(flatten)]
    pub status: FelixStatus,
}

#[derive(Debug, Serialize)]
pub struct EndpointRow {
    pub node: String,
    pub orchestrator: String,
    pub workload: String,
    pub endpoint: String,
    pub status: String,
    pub reason: Option<String>,
}

/// Sorts status keys and values into an overview (values that do not parse are skipped).
pub fn overview<'a>(
    kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    only: Option<&str>,
) -> Overview {
    let mut out = Overview::default();
    for (key, value) in kvs {
        let Some(rest) = key.strip_prefix(STATUS_ROOT) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if only.is_some_and(|node| parts.get(2) != Some(&node)) {
            continue;
        }
        match parts.as_slice() {
            [region, "host", node, "status"] => {
                if let Ok(status) = serde_json::from_slice(value) {
                    out.nodes.push(NodeRow {
                        node: (*node).into(),
                        region: (*region).into(),
                        status,
                    });
                }
            }
            [
                _region,
                "host",
                node,
                "workload",
                orchestrator,
                workload,
                "endpoint",
                endpoint,
            ] => {
                if let Ok(status) = serde_json::from_slice::<EndpointStatus>(value) {
                    out.endpoints.push(EndpointRow {
                        node: (*node).into(),
                        orchestrator: (*orchestrator).into(),
                        workload: workload.replace("%2f", "/"),
                        endpoint: (*endpoint).into(),
                        status: status.status,
                        reason: status.reason,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moving_revision_alone_is_no_datastore_change() {
        let mut a = DatastoreStatus::default();
        a.sync.in_sync = true;
        let mut b = a.clone();
        b.sync.revision = 42;
        assert!(!a.differs_beyond_revision(&b));
        b.malformed.insert("Node".into(), 1);
        assert!(a.differs_beyond_revision(&b));
        // A status written by a felix without a datastore section still reads.
        let old = br#"{"time":"2026-11-27T00:00:00Z","uptime":1.0,"first_update":false,
            "dataplane":"bpf","programs_loaded":7,"ready":true,"last_sync":null}"#;
        let status: FelixStatus = serde_json::from_slice(old).unwrap();
        assert_eq!(status.datastore, None);
        assert_eq!(status.xdp, None);
    }

    #[test]
    fn keys_follow_calico_and_read_back() {
        let id = EndpointId {
            orchestrator: "k8s".into(),
            workload: "default/p1".into(),
            endpoint: "eth0".into(),
        };
        let keys = StatusKeys::new(None, "h1");
        let key = keys.endpoint(&id);
        assert_eq!(
            key,
            "/calico/felix/v2/no-region/host/h1/workload/k8s/default%2fp1/endpoint/eth0"
        );
        let own = serde_json::to_vec(&FelixStatus {
            time: "2026-11-27T00:00:00Z".into(),
            uptime: 1.5,
            first_update: true,
            dataplane: "bpf".into(),
            programs_loaded: 7,
            xdp: Some("idle".into()),
            ready: true,
            last_sync: None,
            datastore: Some(DatastoreStatus {
                malformed: BTreeMap::from([("WorkloadEndpoint".into(), 2)]),
                ..DatastoreStatus::default()
            }),
        })
        .unwrap();
        let ep =
            serde_json::to_vec(&EndpointStatus::down("interface cali1 missing".into())).unwrap();
        let felix_key = keys.felix();
        let kvs: Vec<(&str, &[u8])> = vec![
            (felix_key.as_str(), &own),
            (key.as_str(), &ep),
            ("/calico/felix/v2/no-region/host/h2/status", b"junk"),
        ];
        let all = overview(kvs.clone(), None);
        assert_eq!(all.nodes.len(), 1, "junk is skipped");
        let datastore = all.nodes[0].status.datastore.as_ref().unwrap();
        assert_eq!(datastore.malformed["WorkloadEndpoint"], 2);
        assert_eq!(all.nodes[0].status.xdp.as_deref(), Some("idle"));
        assert_eq!(all.endpoints[0].workload, "default/p1");
        assert_eq!(
            all.endpoints[0].reason.as_deref(),
            Some("interface cali1 missing")
        );
        assert!(overview(kvs, Some("h2")).endpoints.is_empty());
    }

    #[test]
    fn a_region_names_the_keys_and_reads_back() {
        let keys = StatusKeys::new(Some("europe"), "h3");
        assert_eq!(
            keys.felix(),
            "/calico/felix/v2/region-europe/host/h3/status"
        );
        assert_eq!(StatusKeys::new(Some(""), "h3"), StatusKeys::new(None, "h3"));
        let own = br#"{"time":"2026-11-27T00:00:00Z","uptime":1.0,"first_update":false,
            "dataplane":"bpf","programs_loaded":7,"ready":true,"last_sync":null}"#;
        let felix_key = keys.felix();
        let kvs: Vec<(&str, &[u8])> = vec![(felix_key.as_str(), own)];
        let read = overview(kvs, Some("h3"));
        assert_eq!(read.nodes.len(), 1);
        assert_eq!(read.nodes[0].region, "region-europe");
    }
}
