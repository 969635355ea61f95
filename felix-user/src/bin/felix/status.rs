//! `felix status`: what every felix reports in etcd.

use anyhow::Result;
use clap::Args;
use felix_user::report::status;

use crate::output::{EtcdArgs, with_etcd};

#[derive(Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) etcd: EtcdArgs,
    /// Only this node.
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn show_status(args: &StatusArgs) -> Result<()> {
    let kvs = with_etcd(&args.etcd, async |client| {
        let response = calico::etcd_access::kv(client)
            .get(
                status::STATUS_ROOT,
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or("").to_owned(), kv.value().to_vec()))
            .collect::<Vec<_>>())
    })?;
    let overview = status::overview(
        kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        args.node.as_deref(),
    );
    if let Some(node) = &args.node
        && overview.nodes.is_empty()
        && overview.endpoints.is_empty()
    {
        anyhow::bail!(
            "no status for node {node:?} in etcd: its felix is not running, or its status expired"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&overview)?);
        return Ok(());
    }
    let now = std::time::SystemTime::now();
    let age = |time: &str| {
        humantime::parse_rfc3339(time)
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .map_or_else(|| "?".into(), |d| format!("{}s", d.as_secs()))
    };
    let nodes: Vec<Vec<String>> = overview
        .nodes
        .iter()
        .map(|n| {
            let node = if n.region == status::region_string(None) {
                n.node.clone()
            } else {
                format!("{} ({})", n.node, n.region)
            };
            vec![
                node,
                n.status.ready.to_string(),
                n.status.dataplane.clone(),
                n.status.programs_loaded.to_string(),
                n.status.xdp.clone().unwrap_or_else(|| "-".into()),
                format!("{:.0}s", n.status.uptime),
                n.status.last_sync.clone().unwrap_or_else(|| "-".into()),
                age(&n.status.time),
            ]
        })
        .collect();
    print!(
        "{}",
        felix_rows::table(
            &[
                "NODE",
                "READY",
                "DATAPLANE",
                "PROGRAMS",
                "XDP",
                "UPTIME",
                "LAST SYNC",
                "REPORTED"
            ],
            &nodes
        )
    );
    println!();
    let datastores: Vec<Vec<String>> = overview
        .nodes
        .iter()
        .filter_map(|n| Some((&n.node, n.status.datastore.as_ref()?)))
        .map(|(node, d)| {
            let malformed: Vec<String> = d
                .malformed
                .iter()
                .map(|(kind, count)| format!("{kind}={count}"))
                .collect();
            vec![
                node.clone(),
                if d.sync.in_sync {
                    "in sync"
                } else {
                    "NOT IN SYNC"
                }
                .into(),
                d.sync.revision.to_string(),
                d.sync.reconnects.to_string(),
                d.sync.resyncs.to_string(),
                if malformed.is_empty() {
                    "-".into()
                } else {
                    malformed.join(",")
                },
            ]
        })
        .collect();
    if !datastores.is_empty() {
        print!(
            "{}",
            felix_rows::table(
                &[
                    "NODE",
                    "DATASTORE",
                    "REVISION",
                    "RECONNECTS",
                    "RESYNCS",
                    "MALFORMED"
                ],
                &datastores
            )
        );
        println!();
    }
    let endpoints: Vec<Vec<String>> = overview
        .endpoints
        .iter()
        .map(|e| {
            vec![
                e.node.clone(),
                format!("{}/{}", e.orchestrator, e.workload),
                e.endpoint.clone(),
                e.status.clone(),
                e.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        felix_rows::table(
            &["NODE", "WORKLOAD", "ENDPOINT", "STATUS", "REASON"],
            &endpoints
        )
    );
    Ok(())
}
