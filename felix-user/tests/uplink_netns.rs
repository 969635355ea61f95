//! The uplink felix takes when FELIX_UPLINK is unset: the interface that holds the address the
//! IP autodetection method finds, whatever the NIC is called, in a network namespace of its own
//! with NICs named as on real nodes. Needs root; built only with `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

use felix_user::host::autodetect::{self, Method};
use testkit::netns::{NetNs, ip};

/// A namespace with `ens5` (10.9.1.1/24), `eth1` (10.9.2.1/24) and a workload interface
/// `cali1` (169.254.1.1/32), all up.
fn node_ns(name: &str) -> NetNs {
    let ns = NetNs::create(name).expect("create the namespace");
    let n = ns.name().to_owned();
    for (link, peer, addr) in [
        ("ens5", "ens5p", "10.9.1.1/24"),
        ("eth1", "eth1p", "10.9.2.1/24"),
        ("cali1", "cali1p", "169.254.1.1/32"),
    ] {
        for args in [
            &[
                "-n", &n, "link", "add", link, "type", "veth", "peer", "name", peer,
            ][..],
            &["-n", &n, "addr", "add", addr, "dev", link],
            &["-n", &n, "link", "set", link, "up"],
        ] {
            ip(args).expect("ip");
        }
    }
    ns
}

/// The uplink `method` picks inside `ns` (as felix run does at start), or the error.
fn uplink_in(ns: &NetNs, method: &str) -> Result<String, String> {
    let method: Method = method.parse().expect("method");
    let _inside = ns.enter().expect("enter the namespace");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(autodetect::detect_standalone(&method))
        .map(|found| found.iface)
        .map_err(|e| e.to_string())
}

#[test]
fn the_uplink_is_the_interface_of_the_autodetected_address() {
    let ns = node_ns(&format!("fxuplink-{}", std::process::id()));
    assert_eq!(uplink_in(&ns, "first-found").as_deref(), Ok("ens5"));
    assert_eq!(uplink_in(&ns, "cidr=10.9.2.0/24").as_deref(), Ok("eth1"));
    assert_eq!(uplink_in(&ns, "interface=eth.*").as_deref(), Ok("eth1"));
    assert_eq!(
        uplink_in(&ns, "can-reach=10.9.2.200").as_deref(),
        Ok("eth1")
    );
    let missing = uplink_in(&ns, "interface=bond.*").expect_err("no bond interface");
    assert!(missing.contains("no IPv4 address matches"), "{missing}");
}
