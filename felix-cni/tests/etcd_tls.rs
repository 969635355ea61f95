//! felix-cni against etcd with client-certificate authentication (loopback, a free port): the
//! CNI configuration's `etcd_ca_cert_file`, `etcd_cert_file` and `etcd_key_file` are used, and
//! a refused or expired certificate is a code-7 error that says which.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::etcd::{Etcd, EtcdArgs, LogMode};
use testkit::pki::EtcdPki;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Runs `felix-cni` DEL (no namespace, no pod: it connects to etcd and releases the handle's
/// addresses) with `conf`; the exit success and stdout.
fn del(conf: &Value) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_felix-cni"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "tls0123456789")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn felix-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("felix-cni output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn tls_keys_of_the_cni_config_reach_etcd() {
    let dir = std::env::temp_dir().join(format!("felix-cni-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (pki, ca) =
        EtcdPki::create(&dir.join("pki"), &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).expect("pki");
    let url = format!("https://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let data = dir.join("data");
    let args = EtcdArgs {
        client_url: &url,
        peer_url: &peer,
        tls: Some(&pki),
        ..EtcdArgs::loopback(&data)
    };
    let mut etcd =
        Etcd::start(&args, None, &dir.join("etcd.log"), LogMode::Truncate).expect("start etcd");
    etcd.wait_ready(Duration::from_secs(20))
        .await
        .expect("etcd ready");

    let conf = |cert: &std::path::Path, key: &std::path::Path| {
        json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "calico",
            "nodename": "h1",
            "etcd_endpoints": url,
            "etcd_ca_cert_file": pki.ca,
            "etcd_cert_file": cert,
            "etcd_key_file": key,
            "ipam": {"type": "calico-ipam"},
        })
    };

    let good = conf(&pki.client.cert, &pki.client.key);
    let (ok, out) = del(&good);
    assert!(ok, "DEL with the client certificate: {out}");

    let mut bare = good.clone();
    bare["etcd_cert_file"] = json!("");
    bare["etcd_key_file"] = json!("");
    let (ok, out) = del(&bare);
    assert!(!ok, "DEL without a client certificate succeeded: {out}");
    let answer: Value = serde_json::from_str(&out).expect("error JSON");
    assert_eq!(answer["code"], 7, "{out}");
    assert!(
        answer["msg"]
            .as_str()
            .is_some_and(|m| m.contains("none was sent")),
        "{out}"
    );

    let expired = ca.expired_client(&dir, "expired", "calico").expect("cert");
    let (ok, out) = del(&conf(&expired.cert, &expired.key));
    assert!(!ok, "DEL with an expired certificate succeeded: {out}");
    let answer: Value = serde_json::from_str(&out).expect("error JSON");
    assert_eq!(answer["code"], 7, "{out}");
    assert!(
        answer["msg"]
            .as_str()
            .is_some_and(|m| m.contains("expired.pem") && m.contains("notAfter")),
        "{out}"
    );

    etcd.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
