//! `felix apply`, `felix delete` and `felix get`: Calico v3 resources at Calico's keys.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use calico::model;
use clap::Args;

use crate::output::{EtcdArgs, with_etcd};

#[derive(Args)]
pub(crate) struct FileArgs {
    /// The file to read; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) etcd: EtcdArgs,
}

#[derive(Args)]
pub(crate) struct GetArgs {
    /// Kind: singular or plural, any case (networkpolicy, GlobalNetworkPolicies, ippool, ...).
    pub(crate) kind: String,
    /// One resource by name.
    pub(crate) name: Option<String>,
    /// Namespace of a namespaced kind (default: all namespaces).
    #[arg(short = 'n', long)]
    pub(crate) namespace: Option<String>,
    /// Print JSON instead of YAML.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) etcd: EtcdArgs,
}

/// `felix apply` / `felix delete`: every valid document is written (or deleted); every invalid
/// one is reported. Exit code 1 when any document failed.
pub(crate) fn apply_file(args: &FileArgs, apply: bool) -> Result<()> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("read standard input")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("read {}", args.file.display()))?
    };
    let documents = model::document::parse_documents(&text);
    if documents.is_empty() {
        anyhow::bail!("{} holds no documents", args.file.display());
    }
    let mut failed = 0;
    let mut valid = Vec::new();
    for document in documents {
        match document {
            Ok(resource) => valid.push(resource),
            Err(error) => {
                eprintln!(
                    "error: {error} (not {})",
                    if apply { "written" } else { "deleted" }
                );
                failed += 1;
            }
        }
    }
    let done = with_etcd(&args.etcd, async |client| {
        let mut done = Vec::new();
        for resource in &valid {
            let key = resource.key();
            if apply {
                let response = client.get(key.as_str(), None).await?;
                let stored = response
                    .kvs()
                    .first()
                    .and_then(|kv| model::Resource::from_etcd(&key, kv.value()).ok());
                let pools = match (resource, &stored) {
                    (model::Resource::IpPool(_), None) => stored_pools(client).await?,
                    _ => Vec::new(),
                };
                if let Err(refusal) = client_checks(resource, &pools) {
                    done.push(Err(refusal));
                    continue;
                }
                let resource =
                    resource
                        .clone()
                        .for_store(stored.as_ref(), new_uid, creation_timestamp);
                client.put(key.as_str(), resource.to_json(), None).await?;
                done.push(Ok(format!(
                    "applied {} {}",
                    resource.kind().as_str(),
                    resource.qualified_name()
                )));
            } else {
                let deleted = client.delete(key.as_str(), None).await?.deleted();
                done.push(Ok(if deleted > 0 {
                    format!(
                        "deleted {} {}",
                        resource.kind().as_str(),
                        resource.qualified_name()
                    )
                } else {
                    format!(
                        "{} {} did not exist",
                        resource.kind().as_str(),
                        resource.qualified_name()
                    )
                }));
            }
        }
        Ok(done)
    })?;
    for line in done {
        match line {
            Ok(line) => println!("{line}"),
            Err(refusal) => {
                eprintln!("error: {refusal} (not written)");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} document(s) not {}",
            if apply { "applied" } else { "deleted" }
        );
    }
    Ok(())
}

/// Every IPPool stored in etcd (values that do not read are left out).
async fn stored_pools(
    client: &mut etcd_client::Client,
) -> Result<Vec<model::Object<model::IpPoolSpec>>> {
    let prefix = model::prefix_of(model::Kind::IpPool, None);
    let response = calico::etcd_access::kv(client)
        .get(
            prefix.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    Ok(response
        .kvs()
        .iter()
        .filter_map(
            |kv| match model::Resource::from_etcd(kv.key_str().ok()?, kv.value()).ok()? {
                model::Resource::IpPool(pool) => Some(pool),
                _ => None,
            },
        )
        .collect())
}

/// What Calico's client checks against the datastore before it writes, beyond the validator:
/// a WorkloadEndpoint's name must be the one its identifiers give, and a new IPPool must not
/// overlap a stored one (`pools`).
fn client_checks(
    resource: &model::Resource,
    pools: &[model::Object<model::IpPoolSpec>],
) -> Result<(), String> {
    let refused = |e: model::FieldError| {
        format!(
            "{} {}: {}: {}",
            resource.kind().as_str(),
            resource.qualified_name(),
            e.field,
            e.reason
        )
    };
    match resource {
        model::Resource::WorkloadEndpoint(o) => {
            model::validate::endpoint::check_workload_endpoint_name(&o.metadata.name, &o.spec)
                .map_err(refused)
        }
        model::Resource::IpPool(o) => {
            let others = pools.iter().map(|p| (p.metadata.name.as_str(), &p.spec));
            match model::validate::ippool::overlapping_pool(&o.metadata.name, &o.spec, others) {
                Some(other) => Err(format!(
                    "IPPool {}: spec.cidr: {} overlaps IPPool {other}'s CIDR (Calico refuses overlapping pools)",
                    o.metadata.name,
                    o.spec.cidr.network()
                )),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// A random (version 4) UUID, as clientv3 gives a new resource (`uuid.NewUUID`).
fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Now as Kubernetes writes `creationTimestamp`: RFC 3339, UTC, whole seconds.
fn creation_timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub(crate) fn get_resources(args: &GetArgs) -> Result<()> {
    let kind = model::Kind::from_user(&args.kind).with_context(|| {
        format!(
            "unknown kind {:?}: use e.g. networkpolicy, globalnetworkpolicy, profile, tier, ippool, node, workloadendpoint, globalnetworkset, networkset, hostendpoint, felixconfiguration, bgpconfiguration, bgppeer",
            args.kind
        )
    })?;
    let namespace = args.namespace.as_deref();
    let (key, prefix) = match &args.name {
        Some(name) => (
            model::key_for(
                kind,
                namespace.or(kind.namespaced().then_some("default")),
                name,
            ),
            false,
        ),
        None => (model::prefix_of(kind, namespace), true),
    };
    let kvs = with_etcd(&args.etcd, async |client| {
        let options = prefix.then(|| etcd_client::GetOptions::new().with_prefix());
        let response = calico::etcd_access::kv(client)
            .get(key.as_str(), options)
            .await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or("").to_owned(), kv.value().to_vec()))
            .collect::<Vec<_>>())
    })?;
    if let Some(name) = &args.name
        && kvs.is_empty()
    {
        anyhow::bail!("{} {name:?} not found", kind.as_str());
    }
    let mut values = Vec::new();
    for (key, value) in &kvs {
        match model::Resource::from_etcd(key, value) {
            Ok(resource) => values.push(resource.to_value()),
            Err(error) => eprintln!("warning: skipping {key}: {error}"),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else {
        for value in &values {
            println!("---");
            print!("{}", serde_yaml_ng::to_string(value)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> model::Resource {
        model::document::parse_one(yaml).expect("valid document")
    }

    #[test]
    fn client_checks_refuse_what_calicos_client_refuses() {
        let named = |name: &str| {
            one(&format!(
                "kind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: prod}}\nspec: {{node: h1, orchestrator: k8s, pod: db, endpoint: eth0, interfaceName: calia, ipNetworks: [10.65.0.1/32]}}"
            ))
        };
        assert_eq!(client_checks(&named("h1-k8s-db-eth0"), &[]), Ok(()));
        let wrong = client_checks(&named("db"), &[]).expect_err("name from other identifiers");
        assert!(wrong.contains("h1-k8s-db-eth0"), "{wrong}");

        let pool = |name: &str, cidr: &str| {
            one(&format!(
                "kind: IPPool\nmetadata: {{name: {name}}}\nspec: {{cidr: {cidr}}}"
            ))
        };
        let stored: Vec<_> = [pool("a", "10.65.0.0/16")]
            .into_iter()
            .filter_map(|r| match r {
                model::Resource::IpPool(p) => Some(p),
                _ => None,
            })
            .collect();
        let overlap = client_checks(&pool("b", "10.65.128.0/17"), &stored).expect_err("overlap");
        assert!(overlap.contains("overlaps IPPool a"), "{overlap}");
        assert_eq!(client_checks(&pool("b", "10.66.0.0/16"), &stored), Ok(()));
        assert_eq!(
            client_checks(&pool("a", "10.65.0.0/16"), &stored),
            Ok(()),
            "a pool does not overlap itself"
        );
    }
}
