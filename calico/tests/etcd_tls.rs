//! [`EtcdAccess`] against a real etcd with client-certificate authentication on loopback:
//! each refusal names its reason, a good client reads, a dead first endpoint is skipped.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use calico::etcd_access::{AccessError, EtcdAccess, TlsFiles, TlsRefusal};
use etcd_client::ConnectOptions;
use testkit::etcd::{Etcd, EtcdArgs, LogMode};
use testkit::pki::{Ca, CertFiles, EtcdPki};

const READY: Duration = Duration::from_secs(20);
const ANSWER: Duration = Duration::from_secs(10);

/// A free loopback port (another process may still take it; good enough for one test run).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

struct TlsEtcd {
    _etcd: Etcd,
    url: String,
    pki: EtcdPki,
    ca: Ca,
    dir: PathBuf,
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        self._etcd.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TlsEtcd {
    async fn start(name: &str) -> TlsEtcd {
        let dir =
            std::env::temp_dir().join(format!("calico-etcd-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (pki, ca) = EtcdPki::create(&dir.join("pki"), &[loopback]).expect("pki");
        // Ports are picked free and released before etcd binds them: a parallel test can take
        // one in between, and etcd then exits at once. A fresh pair is tried then.
        let mut attempt = 0;
        let (etcd, url) = loop {
            attempt += 1;
            let url = format!("https://127.0.0.1:{}", free_port());
            let peer = format!("http://127.0.0.1:{}", free_port());
            let data = dir.join("data");
            let _ = std::fs::remove_dir_all(&data);
            let args = EtcdArgs {
                client_url: &url,
                peer_url: &peer,
                tls: Some(&pki),
                ..EtcdArgs::loopback(&data)
            };
            let mut etcd = Etcd::start(&args, None, &dir.join("etcd.log"), LogMode::Truncate)
                .expect("start etcd");
            match etcd.wait_ready(READY).await {
                Ok(_) => break (etcd, url),
                Err(error) if attempt < 3 => {
                    eprintln!("etcd did not start on {url} ({error}); other ports");
                    etcd.kill();
                }
                Err(error) => panic!("etcd ready: {error}"),
            }
        };
        TlsEtcd {
            _etcd: etcd,
            url,
            pki,
            ca,
            dir,
        }
    }

    fn access(&self, ca: &Path, client: Option<&CertFiles>) -> EtcdAccess {
        EtcdAccess::new(vec![self.url.clone()]).with_tls(TlsFiles {
            ca: Some(ca.to_path_buf()),
            cert: client.map(|c| c.cert.clone()),
            key: client.map(|c| c.key.clone()),
        })
    }
}

async fn refusal(access: &EtcdAccess) -> AccessError {
    match access.connect(ConnectOptions::new(), ANSWER).await {
        Ok(_) => panic!("etcd accepted {access:?}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn mutual_tls_refusals_say_which() {
    let etcd = TlsEtcd::start("refusals").await;

    // The right CA and client certificate: reads and writes.
    let good = etcd.access(&etcd.pki.ca, Some(&etcd.pki.client));
    let mut client = good
        .connect(ConnectOptions::new(), ANSWER)
        .await
        .expect("a trusted client certificate is accepted");
    client
        .put("/calico/tls-test", "x", None)
        .await
        .expect("put");

    // No client certificate.
    let error = refusal(&etcd.access(&etcd.pki.ca, None)).await;
    assert_eq!(
        error.tls_refusal(),
        Some(TlsRefusal::NoClientCertificate),
        "{error}"
    );
    assert!(error.to_string().contains("none was sent"), "{error}");

    // A client certificate from another CA.
    let other = Ca::new("other-ca").expect("ca");
    let foreign = other.client(&etcd.dir, "foreign", "calico").expect("cert");
    let error = refusal(&etcd.access(&etcd.pki.ca, Some(&foreign))).await;
    assert_eq!(
        error.tls_refusal(),
        Some(TlsRefusal::UntrustedClientCertificate),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("does not trust the client certificate"),
        "{error}"
    );

    // An expired client certificate: refused before connecting, naming the file and notAfter.
    let expired = etcd
        .ca
        .expired_client(&etcd.dir, "expired", "calico")
        .expect("cert");
    let error = refusal(&etcd.access(&etcd.pki.ca, Some(&expired))).await;
    let text = error.to_string();
    assert!(
        matches!(error, AccessError::CertificateExpired { .. }),
        "{text}"
    );
    assert!(
        text.contains("expired.pem") && text.contains("notAfter"),
        "{text}"
    );
    assert!(text.contains("2020"), "{text}");

    // etcd, given an expired certificate anyway (the local check skipped), refuses it too.
    let error = etcd_refuses_expired(&etcd, &expired).await;
    assert_eq!(
        error.tls_refusal(),
        Some(TlsRefusal::ExpiredClientCertificate),
        "{error}"
    );
    // The same verdict read by a bare handshake (the path after a connection closed early).
    let verdict = etcd
        .access(&etcd.pki.ca, Some(&expired))
        .handshake_verdict(ANSWER)
        .await
        .expect("etcd's alert for an expired certificate");
    assert_eq!(
        verdict.tls_refusal(),
        Some(TlsRefusal::ExpiredClientCertificate),
        "{verdict}"
    );

    // etcd's server certificate checked against another CA.
    let other_ca = other.write(&etcd.dir.join("other-ca.pem")).expect("write");
    let error = refusal(&etcd.access(&other_ca, Some(&etcd.pki.client))).await;
    assert_eq!(
        error.tls_refusal(),
        Some(TlsRefusal::UntrustedServerCertificate),
        "{error}"
    );
    assert!(
        error.to_string().contains("not signed by the given CA"),
        "{error}"
    );

    // Plain HTTP to the TLS port.
    let plain = EtcdAccess::new(vec![etcd.url.replace("https://", "http://")]);
    let error = refusal(&plain).await;
    assert!(
        error
            .to_string()
            .contains(&etcd.url.replace("https://", "http://")),
        "{error}"
    );
}

/// The bare handshake that sends nothing reads etcd's verdict every time (the path a client
/// takes when its first request lost the race against the server's alert): an alert for no
/// certificate and for a foreign one, nothing for the trusted one.
#[tokio::test]
async fn a_bare_handshake_reads_etcds_verdict() {
    use calico::tls_verdict::{ClientPem, verdict};
    let etcd = TlsEtcd::start("verdict").await;
    let read = |p: &Path| std::fs::read(p).expect("read");
    let ca = read(&etcd.pki.ca);
    let other = Ca::new("other-ca").expect("ca");
    let foreign = other.client(&etcd.dir, "foreign", "calico").expect("cert");
    // etcd sends nothing to an accepted client that sends nothing: a short wait tells.
    let silence = Duration::from_secs(1);
    for _ in 0..3 {
        let good = (read(&etcd.pki.client.cert), read(&etcd.pki.client.key));
        let accepted = verdict(
            &etcd.url,
            &ClientPem {
                ca: &ca,
                identity: Some((&good.0, &good.1)),
            },
            silence,
        )
        .await;
        assert_eq!(accepted, None, "the trusted certificate");
        let none = verdict(
            &etcd.url,
            &ClientPem {
                ca: &ca,
                identity: None,
            },
            ANSWER,
        )
        .await;
        let none = none.expect("no certificate: an alert");
        assert!(calico::etcd_access::classify(&none).is_some(), "{none}");
        let bad = (read(&foreign.cert), read(&foreign.key));
        let refused = verdict(
            &etcd.url,
            &ClientPem {
                ca: &ca,
                identity: Some((&bad.0, &bad.1)),
            },
            ANSWER,
        )
        .await
        .expect("a foreign certificate: an alert");
        assert!(
            calico::etcd_access::classify(&refused).is_some(),
            "{refused}"
        );
    }
}

/// Connects with `expired` bypassing the local validity check, as a client that does not
/// check would.
async fn etcd_refuses_expired(etcd: &TlsEtcd, expired: &CertFiles) -> AccessError {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |p: &Path| std::fs::read(p).expect("read");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&etcd.pki.ca)))
        .identity(Identity::from_pem(read(&expired.cert), read(&expired.key)));
    let access = etcd.access(&etcd.pki.ca, Some(expired));
    // The alert may lose the race against the closing connection (TLS 1.3): then a bare
    // handshake reads the verdict; a few tries.
    let mut last = None;
    for _ in 0..5 {
        let options = ConnectOptions::new().with_tls(tls.clone());
        let attempt = async {
            let mut client = etcd_client::Client::connect([&etcd.url], Some(options)).await?;
            client.get("/calico/", None).await
        };
        match tokio::time::timeout(ANSWER, attempt).await {
            Ok(Ok(_)) => panic!("etcd accepted an expired client certificate"),
            Ok(Err(error)) => {
                let error = access.error(error);
                if error.tls_refusal().is_some() {
                    return error;
                }
                // Closed before the alert arrived: read etcd's verdict as felix does.
                if let Some(refused) = access.handshake_verdict(ANSWER).await {
                    return refused;
                }
                last = Some(error);
            }
            Err(_) => panic!("no answer"),
        }
    }
    last.expect("an error")
}

#[tokio::test]
async fn a_dead_first_endpoint_is_skipped() {
    let etcd = TlsEtcd::start("failover").await;
    let dead = format!("https://127.0.0.1:{}", free_port());
    let access = EtcdAccess::new(vec![dead, etcd.url.clone()]).with_tls(TlsFiles {
        ca: Some(etcd.pki.ca.clone()),
        cert: Some(etcd.pki.client.cert.clone()),
        key: Some(etcd.pki.client.key.clone()),
    });
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
    let mut client = access
        .connect(options, ANSWER)
        .await
        .expect("the live second endpoint answers");
    for i in 0..5 {
        client
            .put(format!("/calico/failover/{i}"), "v", None)
            .await
            .expect("every request reaches the live endpoint");
    }
    let response = client
        .get(
            "/calico/failover/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get");
    assert_eq!(response.kvs().len(), 5);
}
