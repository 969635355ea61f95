//! How every component reaches etcd: its client URLs (several, balanced over: a dead one does
//! not stop the client) and, for `https://` URLs, the TLS files (the CA that signed etcd's
//! server certificate, and the client certificate and key etcd's `--client-cert-auth` asks for).
//!
//! The files are checked before connecting (readable, a certificate with its key, the client
//! certificate within its validity), and a refused TLS handshake is turned into an error that
//! says which side refused what ([`TlsRefusal`]).

use std::{
    error::Error as StdError,
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KvClient, TlsOptions,
};

/// Largest etcd response accepted, as etcd's Go client (`clientv3` receives up to
/// `math.MaxInt32` bytes) rather than gRPC's 4 MiB default: etcd accepts values of up to 1.5 MiB
/// each, so a page of a listing (or a whole prefix) easily exceeds 4 MiB.
pub const MAX_RESPONSE: usize = i32::MAX as usize;

/// `client`'s key-value API, accepting responses up to [`MAX_RESPONSE`]. Every read that may
/// return more than one value goes through it.
pub fn kv(client: &Client) -> KvClient {
    client.kv_client().max_decoding_message_size(MAX_RESPONSE)
}

/// The TLS files, as Calico's components name them (felix `EtcdCaFile`/`EtcdCertFile`/
/// `EtcdKeyFile`, calicoctl `ETCD_CA_CERT_FILE`/`ETCD_CERT_FILE`/`ETCD_KEY_FILE`, the CNI
/// plugin `etcd_ca_cert_file`/`etcd_cert_file`/`etcd_key_file`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificate(s) etcd's server certificate must chain to.
    pub ca: Option<PathBuf>,
    /// PEM client certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is set.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// etcd's client URLs and the TLS files to reach them with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdAccess {
    pub endpoints: Vec<String>,
    pub tls: TlsFiles,
}

/// Which side of a TLS handshake refused what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRefusal {
    /// etcd asked for a client certificate and none was sent.
    NoClientCertificate,
    /// etcd does not trust the CA that signed the client certificate.
    UntrustedClientCertificate,
    /// etcd finds the client certificate expired (or not yet valid).
    ExpiredClientCertificate,
    /// etcd refused the client certificate for another reason.
    BadClientCertificate,
    /// etcd's server certificate is not signed by the given CA.
    UntrustedServerCertificate,
    /// etcd's server certificate does not name the host or address connected to.
    ServerNameMismatch,
    /// etcd's server certificate is expired or not yet valid.
    ExpiredServerCertificate,
    /// An endpoint speaks plain HTTP where TLS was expected (or the other way round).
    NotTls,
}

impl fmt::Display for TlsRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoClientCertificate => {
                "etcd requires a client certificate and none was sent (set the certificate and key files)"
            }
            Self::UntrustedClientCertificate => {
                "etcd does not trust the client certificate: it is signed by a CA that is not etcd's --trusted-ca-file"
            }
            Self::ExpiredClientCertificate => {
                "etcd refused the client certificate as expired or not yet valid"
            }
            Self::BadClientCertificate => "etcd refused the client certificate",
            Self::UntrustedServerCertificate => {
                "etcd's server certificate is not signed by the given CA file"
            }
            Self::ServerNameMismatch => {
                "etcd's server certificate does not name the endpoint's host or address"
            }
            Self::ExpiredServerCertificate => {
                "etcd's server certificate is expired or not yet valid"
            }
            Self::NotTls => "the endpoint does not speak TLS (is it http:// rather than https://?)",
        })
    }
}

/// Why etcd could not be reached or used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no etcd endpoints given")]
    NoEndpoints,
    #[error("etcd endpoint {0:?} is neither http:// nor https://")]
    BadScheme(String),
    #[error("etcd endpoints mix http:// and https:// ({0})")]
    MixedSchemes(String),
    #[error(
        "etcd endpoint {0} is https:// but no CA file is given (the CA that signed etcd's server certificate)"
    )]
    HttpsWithoutCa(String),
    #[error("etcd client certificate {0} is given without its key file")]
    CertWithoutKey(PathBuf),
    #[error("etcd client key {0} is given without its certificate file")]
    KeyWithoutCert(PathBuf),
    #[error("etcd TLS file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "etcd client certificate {path} expired: notAfter {not_after} (seconds since the epoch: {not_after_unix})"
    )]
    CertificateExpired {
        path: PathBuf,
        not_after: String,
        not_after_unix: i64,
    },
    #[error("etcd client certificate {path} is not valid yet: notBefore {not_before}")]
    CertificateNotYetValid { path: PathBuf, not_before: String },
    #[error("etcd at {endpoints}: TLS refused: {refusal} ({detail})")]
    Tls {
        endpoints: String,
        refusal: TlsRefusal,
        detail: String,
    },
    #[error("etcd at {endpoints}: {detail}")]
    Etcd {
        endpoints: String,
        detail: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd at {endpoints}: no answer within {timeout:?}")]
    Timeout {
        endpoints: String,
        timeout: Duration,
    },
}

impl AccessError {
    /// The TLS refusal this error is, if it is one.
    pub fn tls_refusal(&self) -> Option<TlsRefusal> {
        match self {
            Self::Tls { refusal, .. } => Some(*refusal),
            _ => None,
        }
    }
}

impl EtcdAccess {
    /// Plain endpoints, no TLS files.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            tls: TlsFiles::default(),
        }
    }

    /// With the TLS files `tls`.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = tls;
        self
    }

    /// The endpoints, comma-separated (for messages).
    pub fn joined(&self) -> String {
        self.endpoints.join(",")
    }

    /// Whether the endpoints are `https://`.
    pub fn is_tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// Checks the endpoints and files without connecting: schemes, a CA for `https://`, a
    /// certificate with its key, readable files, the client certificate within its validity.
    pub fn check(&self) -> Result<(), AccessError> {
        self.check_at(SystemTime::now())
    }

    /// [`EtcdAccess::check`] with the clock at `now`.
    pub fn check_at(&self, now: SystemTime) -> Result<(), AccessError> {
        if self.endpoints.is_empty() {
            return Err(AccessError::NoEndpoints);
        }
        for endpoint in &self.endpoints {
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                return Err(AccessError::BadScheme(endpoint.clone()));
            }
        }
        let https = self.endpoints.iter().filter(|e| e.starts_with("https://"));
        if https.clone().count() != 0 && https.clone().count() != self.endpoints.len() {
            return Err(AccessError::MixedSchemes(self.joined()));
        }
        match &self.endpoints[..] {
            // Plain endpoints ignore the TLS files, as Calico's etcd client does.
            [first, ..] if first.starts_with("http://") => return Ok(()),
            [first, ..] if self.tls.ca.is_none() => {
                return Err(AccessError::HttpsWithoutCa(first.clone()));
            }
            _ => {}
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(cert), None) => return Err(AccessError::CertWithoutKey(cert.clone())),
            (None, Some(key)) => return Err(AccessError::KeyWithoutCert(key.clone())),
            _ => {}
        }
        if let Some(ca) = &self.tls.ca {
            certificates(ca)?;
        }
        if let Some(key) = &self.tls.key {
            let pem = read(key)?;
            if !String::from_utf8_lossy(&pem).contains("PRIVATE KEY-----") {
                return Err(AccessError::File {
                    path: key.clone(),
                    reason: "holds no PEM private key".into(),
                });
            }
        }
        if let Some(cert) = &self.tls.cert {
            let ders = certificates(cert)?;
            check_validity(cert, &ders[0], now)?;
        }
        Ok(())
    }

    /// `options` with the TLS settings, after [`EtcdAccess::check`].
    pub fn options(&self, options: ConnectOptions) -> Result<ConnectOptions, AccessError> {
        self.check()?;
        if !self.is_tls() {
            return Ok(options);
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.tls.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.tls.cert, &self.tls.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(options.with_tls(tls))
    }

    /// Connects (lazily: nothing is sent yet) with `options` plus the TLS settings.
    pub async fn client(&self, options: ConnectOptions) -> Result<Client, AccessError> {
        let options = self.options(options)?;
        Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    /// Connects and makes one small read, so that an unreachable etcd or a refused handshake
    /// shows here (within `timeout`), with the reason. Each endpoint is probed on its own and
    /// the client balances over those that answered: a dead endpoint (first or not) is left
    /// out. When none answers, the error of the first one (a TLS refusal if any) is returned.
    pub async fn connect(
        &self,
        options: ConnectOptions,
        timeout: Duration,
    ) -> Result<Client, AccessError> {
        let options = self.options(options)?;
        let mut probes = tokio::task::JoinSet::new();
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let one = Self {
                endpoints: vec![endpoint.clone()],
                tls: self.tls.clone(),
            };
            let options = options.clone();
            probes.spawn(async move { (index, one.probe(options, timeout).await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = probes.join_next().await {
            if let Ok(result) = joined {
                results.push(result);
            }
        }
        results.sort_by_key(|(index, _)| *index);
        let live: Vec<String> = results
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(index, _)| self.endpoints[*index].clone())
            .collect();
        if live.is_empty() {
            let mut errors: Vec<AccessError> = results
                .into_iter()
                .filter_map(|(_, result)| result.err())
                .map(|error| self.rename(error))
                .collect();
            let pick = errors
                .iter()
                .position(|e| e.tls_refusal().is_some())
                .unwrap_or(0);
            return Err(if errors.is_empty() {
                AccessError::Timeout {
                    endpoints: self.joined(),
                    timeout,
                }
            } else {
                errors.swap_remove(pick)
            });
        }
        Client::connect(&live, Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    /// One read through a client of this access's endpoints, within `timeout`. With TLS 1.3
    /// the server judges the client certificate after the client finished its side of the
    /// handshake, so its alert may lose the race against the connection closing: after a
    /// closed connection a bare handshake that sends nothing reads the server's verdict
    /// ([`crate::tls_verdict`]), and without one the read is tried again a few times.
    async fn probe(&self, options: ConnectOptions, timeout: Duration) -> Result<(), AccessError> {
        let mut result = self.probe_once(options.clone(), timeout).await;
        for _ in 0..CLOSED_RETRIES {
            match &result {
                Err(AccessError::Etcd { detail, .. }) if self.is_tls() && closed(detail) => {
                    if let Some(refused) = self.handshake_verdict(timeout).await {
                        return Err(refused);
                    }
                    result = self.probe_once(options.clone(), timeout).await;
                }
                _ => break,
            }
        }
        result
    }

    /// The server's verdict from a bare handshake with this access's first endpoint, as a
    /// refusal; `None` when it names none (what a client reads after its connection was closed
    /// before the server's alert arrived).
    pub async fn handshake_verdict(&self, timeout: Duration) -> Option<AccessError> {
        let endpoint = self.endpoints.first()?;
        let ca = read(self.tls.ca.as_ref()?).ok()?;
        let identity = match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => Some((read(cert).ok()?, read(key).ok()?)),
            _ => None,
        };
        let pem = crate::tls_verdict::ClientPem {
            ca: &ca,
            identity: identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        };
        // A refusing server answers within milliseconds; silence means it accepted.
        let wait = timeout.min(Duration::from_secs(2));
        let detail = crate::tls_verdict::verdict(endpoint, &pem, wait).await?;
        let refusal = classify(&detail)?;
        Some(AccessError::Tls {
            endpoints: self.joined(),
            refusal: self.refine(refusal),
            detail,
        })
    }

    async fn probe_once(
        &self,
        options: ConnectOptions,
        timeout: Duration,
    ) -> Result<(), AccessError> {
        let attempt = async {
            let mut client = Client::connect(&self.endpoints, Some(options))
                .await
                .map_err(|e| self.error(e))?;
            client
                .get("/calico/", Some(GetOptions::new().with_count_only()))
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| AccessError::Timeout {
                endpoints: self.joined(),
                timeout,
            })?
    }

    /// `error` (about one endpoint) naming every endpoint of this access.
    fn rename(&self, error: AccessError) -> AccessError {
        let endpoints = self.joined();
        match error {
            AccessError::Tls {
                refusal, detail, ..
            } => AccessError::Tls {
                endpoints,
                refusal,
                detail,
            },
            AccessError::Etcd { detail, source, .. } => AccessError::Etcd {
                endpoints,
                detail,
                source,
            },
            AccessError::Timeout { timeout, .. } => AccessError::Timeout { endpoints, timeout },
            other => other,
        }
    }

    /// `source` as an [`AccessError`]: a TLS refusal when its chain says so.
    pub fn error(&self, source: etcd_client::Error) -> AccessError {
        let detail = chain(&source);
        match classify(&detail).map(|refusal| self.refine(refusal)) {
            Some(refusal) => AccessError::Tls {
                endpoints: self.joined(),
                refusal,
                detail,
            },
            None => AccessError::Etcd {
                endpoints: self.joined(),
                detail,
                source,
            },
        }
    }
}

impl EtcdAccess {
    /// Go's TLS server (as Debian's etcd has it) answers a missing, untrusted or expired
    /// client certificate alike with a `bad_certificate` alert: which one it is follows from
    /// what was sent.
    fn refine(&self, refusal: TlsRefusal) -> TlsRefusal {
        if refusal != TlsRefusal::BadClientCertificate {
            return refusal;
        }
        let Some(cert) = &self.tls.cert else {
            return TlsRefusal::NoClientCertificate;
        };
        let expired = certificates(cert)
            .and_then(|ders| check_validity(cert, &ders[0], SystemTime::now()))
            .is_err();
        if expired {
            TlsRefusal::ExpiredClientCertificate
        } else {
            TlsRefusal::UntrustedClientCertificate
        }
    }
}

/// Attempts after a TLS connection closed without a reason.
const CLOSED_RETRIES: usize = 8;

/// Whether an error chain says the connection closed (rather than why).
fn closed(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    [
        "connection closed",
        "canceled",
        "reset by peer",
        "broken pipe",
        "brokenpipe",
        "unexpected eof",
    ]
    .iter()
    .any(|text| detail.contains(text))
}

/// Every message in an error's source chain, joined.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// The refusal an error chain's text names: rustls's own verdicts on etcd's certificate, and
/// the alerts etcd's Go TLS server sends about ours.
pub fn classify(detail: &str) -> Option<TlsRefusal> {
    // Alerts from etcd (Go's crypto/tls server; rustls writes them "received fatal alert: X").
    const ALERTS: &[(&str, TlsRefusal)] = &[
        (
            "alert: CertificateRequired",
            TlsRefusal::NoClientCertificate,
        ),
        ("alert: UnknownCA", TlsRefusal::UntrustedClientCertificate),
        (
            "alert: CertificateExpired",
            TlsRefusal::ExpiredClientCertificate,
        ),
        ("alert: BadCertificate", TlsRefusal::BadClientCertificate),
        (
            "alert: UnsupportedCertificate",
            TlsRefusal::BadClientCertificate,
        ),
    ];
    // rustls's verdicts on etcd's certificate ("invalid peer certificate: X").
    const VERDICTS: &[(&str, TlsRefusal)] = &[
        ("UnknownIssuer", TlsRefusal::UntrustedServerCertificate),
        ("BadSignature", TlsRefusal::UntrustedServerCertificate),
        ("NotValidForName", TlsRefusal::ServerNameMismatch),
        ("Expired", TlsRefusal::ExpiredServerCertificate),
        ("NotValidYet", TlsRefusal::ExpiredServerCertificate),
    ];
    for (text, refusal) in ALERTS {
        if detail.contains(text) {
            return Some(*refusal);
        }
    }
    if let Some(at) = detail.find("invalid peer certificate") {
        let verdict = &detail[at..];
        for (text, refusal) in VERDICTS {
            if verdict.contains(text) {
                return Some(*refusal);
            }
        }
    }
    if detail.contains("InvalidContentType")
        || detail.contains("CorruptMessage")
        || detail.contains("corrupt message")
    {
        return Some(TlsRefusal::NotTls);
    }
    None
}

fn read(path: &Path) -> Result<Vec<u8>, AccessError> {
    std::fs::read(path).map_err(|e| AccessError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The DER certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<Vec<u8>>, AccessError> {
    let pem = read(path)?;
    let mut ders = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let block = block.map_err(|e| AccessError::File {
            path: path.to_path_buf(),
            reason: format!("not PEM: {e}"),
        })?;
        if block.label == "CERTIFICATE" {
            ders.push(block.contents);
        }
    }
    if ders.is_empty() {
        return Err(AccessError::File {
            path: path.to_path_buf(),
            reason: "holds no PEM CERTIFICATE".into(),
        });
    }
    Ok(ders)
}

/// An error when the certificate `der` (from `path`) is outside its validity at `now`.
fn check_validity(path: &Path, der: &[u8], now: SystemTime) -> Result<(), AccessError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| AccessError::File {
        path: path.to_path_buf(),
        reason: format!("not an X.509 certificate: {e}"),
    })?;
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let validity = cert.validity();
    if validity.not_after.timestamp() < now {
        return Err(AccessError::CertificateExpired {
            path: path.to_path_buf(),
            not_after: validity.not_after.to_string(),
            not_after_unix: validity.not_after.timestamp(),
        });
    }
    if validity.not_before.timestamp() > now {
        return Err(AccessError::CertificateNotYetValid {
            path: path.to_path_buf(),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_closed_without_a_reason_is_recognised_in_any_spelling() {
        for detail in [
            "transport error: hyper::Error(Io, Custom { kind: BrokenPipe, error: \"stream closed because of a broken pipe\" })",
            "connection reset by peer",
            "h2 protocol error: connection closed",
            "operation was Canceled",
        ] {
            assert!(closed(detail), "{detail}");
        }
        assert!(!closed("received fatal alert: BadCertificate"));
    }

    fn access(endpoints: &[&str], tls: TlsFiles) -> EtcdAccess {
        EtcdAccess::new(endpoints.iter().map(|e| (*e).to_owned()).collect()).with_tls(tls)
    }

    #[test]
    fn endpoint_and_file_combinations_are_checked() {
        let plain = access(&["http://a:2379", "http://b:2379"], TlsFiles::default());
        assert!(plain.check().is_ok());
        let ca = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        assert!(access(&["http://a:2379"], ca.clone()).check().is_ok());
        assert!(matches!(
            access(&["https://a:2379"], TlsFiles::default()).check(),
            Err(AccessError::HttpsWithoutCa(_))
        ));
        assert!(matches!(
            access(&["https://a:2379", "http://b:2379"], ca.clone()).check(),
            Err(AccessError::MixedSchemes(_))
        ));
        assert!(matches!(
            access(&["a:2379"], TlsFiles::default()).check(),
            Err(AccessError::BadScheme(_))
        ));
        let cert_only = TlsFiles {
            cert: Some("/c.pem".into()),
            ..ca.clone()
        };
        assert!(matches!(
            access(&["https://a:2379"], cert_only).check(),
            Err(AccessError::CertWithoutKey(_))
        ));
        let key_only = TlsFiles {
            key: Some("/k.pem".into()),
            ..ca.clone()
        };
        assert!(matches!(
            access(&["https://a:2379"], key_only).check(),
            Err(AccessError::KeyWithoutCert(_))
        ));
        let missing = access(&["https://a:2379"], ca).check();
        assert!(
            matches!(&missing, Err(AccessError::File { path, .. }) if path.ends_with("ca.pem")),
            "{missing:?}"
        );
    }

    #[test]
    fn handshake_texts_name_the_refusal() {
        let cases = [
            (
                "transport error: tls handshake: received fatal alert: CertificateRequired",
                Some(TlsRefusal::NoClientCertificate),
            ),
            (
                "received fatal alert: BadCertificate",
                Some(TlsRefusal::BadClientCertificate),
            ),
            (
                "invalid peer certificate: UnknownIssuer",
                Some(TlsRefusal::UntrustedServerCertificate),
            ),
            (
                "invalid peer certificate: certificate not valid for name \"x\"; NotValidForName",
                Some(TlsRefusal::ServerNameMismatch),
            ),
            ("connection refused", None),
        ];
        for (text, want) in cases {
            assert_eq!(classify(text), want, "{text}");
        }
    }
}
