//! etcd's verdict on a client certificate, read from a bare TLS handshake that sends nothing
//! after it. With TLS 1.3 the server judges the client certificate only after the client has
//! finished its side; a client that sends its first request at once may see the connection
//! reset (the server closes with that request unread) instead of the server's alert. With
//! nothing sent, the server's alert is the first thing to read.

use std::{sync::Arc, time::Duration};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::{io::AsyncReadExt, net::TcpStream};
use tokio_rustls::TlsConnector;

/// PEM files of a TLS client: the CA that signed the server's certificate, and the client's
/// certificate chain and key (when it has them).
pub struct ClientPem<'a> {
    pub ca: &'a [u8],
    pub identity: Option<(&'a [u8], &'a [u8])>,
}

/// The handshake's outcome with `url` (`https://host:port`) as the error text the TLS layer
/// gives (e.g. "received fatal alert: BadCertificate"), each step bounded by `wait`; `None`
/// when the server accepted (it sent data or stayed silent) or the probe could not be made.
pub async fn verdict(url: &str, pem: &ClientPem<'_>, wait: Duration) -> Option<String> {
    let (host, port) = host_port(url)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.ca) {
        roots.add(cert.ok()?).ok()?;
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match pem.identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            let key = PrivateKeyDer::from_pem_slice(key).ok()?;
            builder.with_client_auth_cert(chain, key).ok()?
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(host.clone()).ok()?;
    let tcp = tokio::time::timeout(wait, TcpStream::connect((host.as_str(), port)))
        .await
        .ok()?
        .ok()?;
    let connector = TlsConnector::from(Arc::new(config));
    let mut tls = match tokio::time::timeout(wait, connector.connect(name, tcp))
        .await
        .ok()?
    {
        Ok(tls) => tls,
        Err(error) => return Some(error.to_string()),
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, tls.read(&mut first)).await {
        Ok(Err(error)) => Some(error.to_string()),
        _ => None,
    }
}

/// Host (without IPv6 brackets) and port of an `https://` URL (port 2379 when absent).
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = port.map_or(Some(2379), |p| p.parse().ok())?;
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            host_port("https://10.0.0.254:2379"),
            Some(("10.0.0.254".into(), 2379))
        );
        assert_eq!(
            host_port("https://etcd.example/"),
            Some(("etcd.example".into(), 2379))
        );
        assert_eq!(
            host_port("https://[fd00::1]:4001"),
            Some(("fd00::1".into(), 4001))
        );
        assert_eq!(host_port("http://10.0.0.254:2379"), None);
        assert_eq!(host_port("https://h:port"), None);
    }
}
