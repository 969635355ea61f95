//! Certificates for etcd with client-certificate authentication, made with `rcgen`: a CA, a
//! server certificate for etcd's addresses, client certificates signed by it (also expired
//! ones), and a second CA whose client certificates etcd must refuse. Written as PEM files.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, date_time_ymd,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A certificate file and its key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA that signs certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (PEM).
    pub pem: String,
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> Result<PathBuf, PkiError> {
        write(path, &self.pem)?;
        Ok(path.to_path_buf())
    }

    /// A server certificate for `ips` (IP SANs) and `names` (DNS SANs), written to
    /// `<dir>/<stem>.pem` and `<dir>/<stem>-key.pem`.
    pub fn server(
        &self,
        dir: &Path,
        stem: &str,
        ips: &[IpAddr],
        names: &[&str],
    ) -> Result<CertFiles, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, stem);
        params.subject_alt_names = ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .chain(
                names
                    .iter()
                    .map(|n| Ok(SanType::DnsName((*n).try_into()?)))
                    .collect::<Result<Vec<_>, rcgen::Error>>()?,
            )
            .collect();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // etcd also dials itself with its server certificate (the gateway and grpc-gateway).
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(params, dir, stem)
    }

    /// A client certificate with common name `name`, written to `<dir>/<stem>.pem` and
    /// `<dir>/<stem>-key.pem`.
    pub fn client(&self, dir: &Path, stem: &str, name: &str) -> Result<CertFiles, PkiError> {
        self.issue(client_params(name)?, dir, stem)
    }

    /// A client certificate that expired (its notAfter is in 2020).
    pub fn expired_client(
        &self,
        dir: &Path,
        stem: &str,
        name: &str,
    ) -> Result<CertFiles, PkiError> {
        let mut params = client_params(name)?;
        params.not_before = date_time_ymd(2019, 1, 1);
        params.not_after = date_time_ymd(2020, 1, 1);
        self.issue(params, dir, stem)
    }

    fn issue(
        &self,
        params: CertificateParams,
        dir: &Path,
        stem: &str,
    ) -> Result<CertFiles, PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}-key.pem")),
        };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn client_params(name: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn write(path: &Path, pem: &str) -> Result<(), PkiError> {
    fs::write(path, pem).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// What etcd with client-certificate authentication and its clients need: the CA file, etcd's
/// server certificate and a client certificate, all in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdPki {
    pub dir: PathBuf,
    /// The CA (trusted by etcd for clients, and by clients for etcd).
    pub ca: PathBuf,
    pub server: CertFiles,
    pub client: CertFiles,
}

impl EtcdPki {
    /// Makes the CA, a server certificate for `ips` and `localhost`, and a client certificate,
    /// in `dir` (created if missing). Returns the CA too, to sign more.
    pub fn create(dir: &Path, ips: &[IpAddr]) -> Result<(Self, Ca), PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let ca = Ca::new("etcd-ca")?;
        let pki = Self {
            dir: dir.to_path_buf(),
            ca: ca.write(&dir.join("ca.pem"))?,
            server: ca.server(dir, "server", ips, &["localhost"])?,
            client: ca.client(dir, "client", "calico")?,
        };
        Ok((pki, ca))
    }

    /// etcd's TLS flags: server certificate, client-certificate authentication against the CA.
    pub fn etcd_flags(&self) -> Vec<String> {
        vec![
            "--client-cert-auth".into(),
            format!("--trusted-ca-file={}", self.ca.display()),
            format!("--cert-file={}", self.server.cert.display()),
            format!("--key-file={}", self.server.key.display()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_files_are_pem() {
        let dir = std::env::temp_dir().join(format!("testkit-pki-{}", std::process::id()));
        let ips = ["127.0.0.1".parse().expect("ip")];
        let (pki, ca) = EtcdPki::create(&dir, &ips).expect("pki");
        let expired = ca.expired_client(&dir, "old", "old").expect("expired");
        for path in [&pki.ca, &pki.server.cert, &pki.client.cert, &expired.cert] {
            let text = fs::read_to_string(path).expect("read");
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{path:?}");
        }
        let key = fs::read_to_string(&pki.client.key).expect("read");
        assert!(key.contains("PRIVATE KEY-----"));
        assert!(pki.etcd_flags().contains(&"--client-cert-auth".to_owned()));
        let _ = fs::remove_dir_all(&dir);
    }
}
