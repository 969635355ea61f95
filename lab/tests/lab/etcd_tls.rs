//! etcd with client-certificate authentication (the lab's default): the felix CLI reaches it
//! through `ETCD_*` variables and is refused, with the reason, without a client certificate;
//! a lab with plain HTTP (`etcd_plain_http`) keeps working end to end.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use lab::{LabOptions, etcd_tls};

use crate::support::{felix_in_h1, with_lab, with_lab_options};

/// `felix status --json` in h1 with `envs` only (no certificate variables of the caller's).
fn felix_status(lab: &lab::Lab, envs: &[(&str, String)]) -> Result<std::process::Output> {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.node(1)))
        .arg(lab.felix_bin())
        .args(["status", "--json"])
        .env_remove("FELIX_ETCDENDPOINTS")
        .env("ETCD_ENDPOINTS", &lab.state().etcd_url);
    for name in ["ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"] {
        cmd.env_remove(name);
    }
    for (name, value) in envs {
        cmd.env(name, value);
    }
    cmd.output().context("run felix status")
}

#[test]
fn cli_uses_etcd_env_and_names_a_missing_client_certificate() -> Result<()> {
    with_lab(|lab| {
        ensure!(
            lab.state().etcd_url.starts_with("https://"),
            "the lab's etcd is not TLS: {}",
            lab.state().etcd_url
        );
        let pki = etcd_tls::pki(lab.id());
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let with_cert = [
            ("ETCD_CA_CERT_FILE", path(&pki.ca)),
            ("ETCD_CERT_FILE", path(&pki.client.cert)),
            ("ETCD_KEY_FILE", path(&pki.client.key)),
        ];
        let out = felix_status(lab, &with_cert)?;
        ensure!(
            out.status.success(),
            "felix status with the ETCD_* files failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        ensure!(dump.is_object(), "felix status printed {dump}");

        let out = felix_status(lab, &with_cert[..1])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success(),
            "felix status without a certificate succeeded"
        );
        ensure!(
            stderr.contains("etcd requires a client certificate and none was sent"),
            "the refusal does not say why: {stderr}"
        );

        let out = felix_status(lab, &[])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("no CA file"),
            "https:// without a CA file: {stderr}"
        );
        Ok(())
    })
}

#[test]
fn plain_http_lab_still_works() -> Result<()> {
    let opts = LabOptions {
        etcd_plain_http: true,
        ..LabOptions::default()
    };
    with_lab_options(opts, |lab| {
        ensure!(
            lab.state().etcd_url.starts_with("http://"),
            "{}",
            lab.state().etcd_url
        );
        ensure!(lab.etcd_cli_env().is_empty(), "TLS files for a plain lab");
        let out = felix_in_h1(lab, &["status", "--json"])?;
        ensure!(
            out.status.success(),
            "felix status over http failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Pods on both hosts reach each other: felix, bird-conf and the data came over HTTP.
        let from = lab.pod(1, 1)?.clone();
        let to = lab.pod(2, 1)?.clone();
        let (stats, out) = lab.ping(&from, to.ip, 3)?;
        ensure!(
            stats.received > 0,
            "no ping across hosts over a plain-HTTP lab: {out}"
        );
        Ok(())
    })
}
