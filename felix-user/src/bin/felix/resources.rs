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
                let resource =
                    resource
                        .clone()
                        .for_store(stored.as_ref(), new_uid, creation_timestamp);
                client.put(key.as_str(), resource.to_json(), None).await?;
                done.push(format!(
                    "applied {} {}",
                    resource.kind().as_str(),
                    resource.qualified_name()
                ));
            } else {
                let deleted = client.delete(key.as_str(), None).await?.deleted();
                done.push(if deleted > 0 {
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
                });
            }
        }
        Ok(done)
    })?;
    for line in done {
        println!("{line}");
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} document(s) not {}",
            if apply { "applied" } else { "deleted" }
        );
    }
    Ok(())
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
        let response = client.get(key.as_str(), options).await?;
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
