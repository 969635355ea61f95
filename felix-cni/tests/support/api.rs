//! A stand-in Kubernetes API server: HTTPS on 127.0.0.1 with a certificate from a CA the test
//! makes (rcgen), answering `GET /api/v1/namespaces/<ns>/pods/<name>` with the pod documents
//! it was given when the request carries the expected bearer token, and with the API's
//! `Status` documents (401, 404) otherwise. It runs on a thread of its own, since the test's
//! thread blocks while the plugin runs; the listener is bound by the caller's thread, so it lives
//! in the caller's network namespace. Dropping it stops the thread.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{Ipv4Addr, TcpListener as StdListener},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, header, service::service_fn};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_rustls::TlsAcceptor;

/// A running stand-in API server.
pub struct ApiServer {
    pub port: u16,
    /// PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    /// Requests answered so far (any path, any token).
    pub requests: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type Pods = Arc<Mutex<HashMap<String, Value>>>;

impl ApiServer {
    /// Serves `pods` (each a Pod document; its path from metadata) to callers with `token`.
    pub fn start(token: &str, pods: Vec<Value>) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec![Ipv4Addr::LOCALHOST.to_string()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).expect("cert")];
        let private = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .expect("server config");

        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let pods: Pods = Arc::new(Mutex::new(
            pods.into_iter()
                .map(|p| {
                    let path = format!(
                        "/api/v1/namespaces/{}/pods/{}",
                        p["metadata"]["namespace"].as_str().expect("namespace"),
                        p["metadata"]["name"].as_str().expect("name")
                    );
                    (path, p)
                })
                .collect(),
        ));
        let requests = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let token = format!("Bearer {token}");
        let counter = requests.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(listener, config, token, pods, counter, stopped));
        });
        ApiServer {
            port,
            ca_pem: ca.pem(),
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A kubeconfig as Calico's install-cni writes it, for this server and `token`.
    pub fn kubeconfig(&self, token: &str) -> String {
        format!(
            "# Kubeconfig file for felix-cni.\napiVersion: v1\nkind: Config\nclusters:\n\
             - name: local\n  cluster:\n    server: https://127.0.0.1:{}\n    \
             certificate-authority-data: \"{}\"\nusers:\n- name: felix-cni\n  user:\n    \
             token: {token}\ncontexts:\n- name: felix-cni-context\n  context:\n    \
             cluster: local\n    user: felix-cni\ncurrent-context: felix-cni-context\n",
            self.port,
            STANDARD.encode(&self.ca_pem)
        )
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: StdListener,
    config: ServerConfig,
    token: String,
    pods: Pods,
    requests: Arc<AtomicUsize>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let tcp = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let (token, pods, requests) = (token.clone(), pods.clone(), requests.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                requests.fetch_add(1, Ordering::SeqCst);
                let answer = answer(&request, &token, &pods);
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
}

fn answer<B>(request: &Request<B>, token: &str, pods: &Pods) -> Response<Full<Bytes>> {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == token.as_bytes());
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let path = request.uri().path();
    match pods.lock().expect("pods").get(path) {
        Some(pod) => {
            let mut response = Response::new(Full::new(Bytes::from(pod.to_string())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        None => {
            let name = path.rsplit('/').next().unwrap_or_default();
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("pods \"{name}\" not found"),
            )
        }
    }
}
