//! One HTTPS GET to the API server: TLS verified against the kubeconfig's CA (rustls), bearer
//! token and/or client certificate, HTTP/1.1 (hyper), the whole exchange under a timeout.

use std::{sync::Arc, time::Duration};

use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::kubeconfig::ApiAccess;

/// Why a GET failed; the caller names the URL.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Transport(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A non-200 answer, with the API's `Status.message` when it sent one.
    #[error("{status}: {message}")]
    Status { status: StatusCode, message: String },
}

impl ApiError {
    fn transport(what: &str, e: impl std::fmt::Display) -> Self {
        ApiError::Transport(format!("{what}: {e}"))
    }
}

/// `host` and `port` of an `https://host[:port]` server URL (`[v6]` kept bracketed in host).
pub fn host_port(server: &str) -> Result<(String, u16), ApiError> {
    let rest = server
        .strip_prefix("https://")
        .ok_or_else(|| ApiError::Config(format!("server {server:?} is not an https:// URL")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()),
        _ => (authority, Some(443)),
    };
    match port {
        Some(port) if !host.is_empty() => Ok((host.to_string(), port)),
        _ => Err(ApiError::Config(format!(
            "server {server:?} has no host:port"
        ))),
    }
}

fn tls_config(access: &ApiAccess) -> Result<ClientConfig, ApiError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&access.ca_pem) {
        let cert = cert.map_err(|e| ApiError::Config(format!("certificate authority: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ApiError::Config(format!("certificate authority: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ApiError::Config(
            "certificate authority: no PEM certificate".into(),
        ));
    }
    // ring, not aws-lc-rs (a C build with cmake); rustls 0.23.48 deprecates it only for its
    // lack of post-quantum key exchange, which talking to an API server does not need.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match &access.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::Config(format!("client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| ApiError::Config(format!("client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ApiError::Config(format!("client certificate: {e}")))
        }
    }
}

/// GETs `path` (e.g. `/api/v1/namespaces/default/pods/web`) and returns the body of a 200.
pub async fn get(access: &ApiAccess, path: &str, timeout: Duration) -> Result<Bytes, ApiError> {
    tokio::time::timeout(timeout, get_unbounded(access, path))
        .await
        .map_err(|_| ApiError::Timeout(timeout))?
}

async fn get_unbounded(access: &ApiAccess, path: &str) -> Result<Bytes, ApiError> {
    let (host, port) = host_port(&access.server)?;
    let config = tls_config(access)?;
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server_name = ServerName::try_from(bare_host.clone())
        .map_err(|e| ApiError::Config(format!("server name {host:?}: {e}")))?;
    let tcp = TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| ApiError::transport("connect", e))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| ApiError::transport("TLS handshake", e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ApiError::transport("HTTP", e))?;
    let connection = tokio::spawn(connection);
    let mut request = Request::get(path)
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "felix-cni");
    if let Some(token) = &access.token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Config(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ApiError::transport("HTTP", e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::transport("reading the answer", e))?
        .to_bytes();
    connection.abort();
    if status == StatusCode::OK {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    Err(ApiError::Status { status, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            host_port("https://10.96.0.1:443").unwrap(),
            ("10.96.0.1".into(), 443)
        );
        assert_eq!(
            host_port("https://api.example").unwrap(),
            ("api.example".into(), 443)
        );
        assert_eq!(
            host_port("https://[2001:db8::1]:6443/").unwrap(),
            ("[2001:db8::1]".into(), 6443)
        );
        assert_eq!(host_port("https://[::1]").unwrap(), ("[::1]".into(), 443));
        for bad in ["http://a:80", "https://:443", "https://a:x"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_without_certificates_is_refused() {
        let access = ApiAccess {
            server: "https://a".into(),
            ca_pem: b"not pem".to_vec(),
            token: None,
            client_cert: None,
        };
        let e = tls_config(&access).unwrap_err().to_string();
        assert!(e.contains("certificate authority"), "{e}");
    }
}
