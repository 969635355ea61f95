//! The lab's etcd runs with client-certificate authentication: at `lab up` a CA, etcd's server
//! certificate (for the fabric address and loopback) and a client certificate are made in
//! `<state dir>/etcd-pki/` (gone with the state dir at `lab down`), and every component gets
//! the CA and the client certificate: felix (`FELIX_ETCD*FILE`), the CLI (`ETCD_*_FILE`),
//! bird-conf (its flags), felix-cni (its CNI configuration) and etcdctl.
//!
//! Which files a command needs follows from the URL (`https://`) and the lab id in a namespace
//! name, so the functions that take `(namespace, url)` keep their signatures.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use testkit::pki::{CertFiles, EtcdPki};

use crate::{names, paths};

/// The certificates of lab `id` (whether made yet or not).
pub fn pki(id: &str) -> EtcdPki {
    let dir = paths::state_dir(id).join("etcd-pki");
    EtcdPki {
        ca: dir.join("ca.pem"),
        server: CertFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        },
        client: CertFiles {
            cert: dir.join("client.pem"),
            key: dir.join("client-key.pem"),
        },
        dir,
    }
}

/// Makes lab `id`'s certificates: etcd's names the fabric address and loopback.
pub fn create(id: &str) -> Result<EtcdPki> {
    let ips = [
        IpAddr::V4(names::FABRIC_IP),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ];
    let want = pki(id);
    let (made, _) = EtcdPki::create(&want.dir, &ips)
        .with_context(|| format!("making etcd certificates in {}", want.dir.display()))?;
    anyhow::ensure!(made == want, "certificates made at unexpected paths");
    Ok(made)
}

/// The certificates a client in namespace `ns` (any lab namespace) needs for `url`: `None`
/// for plain `http://`.
pub fn for_url(ns: &str, url: &str) -> Option<EtcdPki> {
    if !url.starts_with("https://") {
        return None;
    }
    names::id_of(ns).map(pki)
}

/// calicoctl-style environment (`ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`).
pub fn cli_env(pki: &EtcdPki) -> [(&'static str, PathBuf); 3] {
    [
        ("ETCD_CA_CERT_FILE", pki.ca.clone()),
        ("ETCD_CERT_FILE", pki.client.cert.clone()),
        ("ETCD_KEY_FILE", pki.client.key.clone()),
    ]
}

/// felix's environment (`FELIX_ETCDCAFILE`, `FELIX_ETCDCERTFILE`, `FELIX_ETCDKEYFILE`).
pub fn felix_env(pki: &EtcdPki) -> [(&'static str, PathBuf); 3] {
    [
        ("FELIX_ETCDCAFILE", pki.ca.clone()),
        ("FELIX_ETCDCERTFILE", pki.client.cert.clone()),
        ("FELIX_ETCDKEYFILE", pki.client.key.clone()),
    ]
}

/// The flags bird-conf and the felix CLI share.
pub fn flags(pki: &EtcdPki) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--etcd-ca-cert-file".into(),
        path(&pki.ca),
        "--etcd-cert-file".into(),
        path(&pki.client.cert),
        "--etcd-key-file".into(),
        path(&pki.client.key),
    ]
}
