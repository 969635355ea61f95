//! kube-proxy's chain names: the fixed chains and the per-service ones, `KUBE-SVC-`/`KUBE-SVL-`/
//! `KUBE-EXT-` + the first 16 characters of the base32 (RFC 4648, standard alphabet) SHA-256 of
//! `<ns>/<name>:<port name>` + the lowercase protocol, and `KUBE-SEP-` of the same with the
//! endpoint's `<ip>:<port>` appended (`portProtoHash` and `servicePortEndpointChainName` in
//! pkg/proxy/iptables/proxier.go).

pub const SERVICES: &str = "KUBE-SERVICES";
pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const NODE_PORTS: &str = "KUBE-NODEPORTS";
pub const POSTROUTING: &str = "KUBE-POSTROUTING";
pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const FORWARD: &str = "KUBE-FORWARD";
pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// kubelet's anti-martian chain, which kube-proxy also writes.
pub const KUBELET_FIREWALL: &str = "KUBE-FIREWALL";

/// Prefixes of the per-service chains (kube-proxy deletes stale chains with these).
pub const SERVICE_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-FW-",
    "KUBE-EXT-",
    "KUBE-SEP-",
];

/// `KUBE-SVC-<hash>`: the Cluster-policy chain of a service port.
pub fn cluster_policy(port_name: &str, protocol: &str) -> String {
    format!("KUBE-SVC-{}", hash16(&format!("{port_name}{protocol}")))
}

/// `KUBE-SVL-<hash>`: the Local-policy chain of a service port.
pub fn local_policy(port_name: &str, protocol: &str) -> String {
    format!("KUBE-SVL-{}", hash16(&format!("{port_name}{protocol}")))
}

/// `KUBE-EXT-<hash>`: where NodePort and external-IP traffic of a service port goes.
pub fn external(port_name: &str, protocol: &str) -> String {
    format!("KUBE-EXT-{}", hash16(&format!("{port_name}{protocol}")))
}

/// `KUBE-SEP-<hash>`: the DNAT chain of one endpoint (`ip:port`) of a service port.
pub fn endpoint(port_name: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&format!("{port_name}{protocol}{endpoint}"))
    )
}

/// Whether `chain` is a per-service chain.
pub fn is_service_chain(chain: &str) -> bool {
    SERVICE_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// The first 16 characters of base32(sha256(`text`)).
fn hash16(text: &str) -> String {
    let mut encoded = base32(&super::sha256::digest(text.as_bytes()));
    encoded.truncate(16);
    encoded
}

/// RFC 4648 base32, standard alphabet, with padding (Go's `base32.StdEncoding`).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    for chunk in data.chunks(5) {
        let mut block = [0u8; 5];
        block[..chunk.len()].copy_from_slice(chunk);
        let bits = block.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        // Characters that carry input bits; the rest of the 8 are padding.
        let used = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < used {
                let index = (bits >> (35 - 5 * i)) & 0x1f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "MY======"),
            ("fo", "MZXQ===="),
            ("foo", "MZXW6==="),
            ("foob", "MZXW6YQ="),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI======"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "{input:?}");
        }
    }

    /// Names from kube-proxy's TestOverallIPTablesRules (pkg/proxy/iptables/proxier_test.go).
    #[test]
    fn names_match_kube_proxy() {
        assert_eq!(
            cluster_policy("ns1/svc1:p80", "tcp"),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(external("ns2/svc2:p80", "tcp"), "KUBE-EXT-GNZBNJ2PO5MGZ6GT");
        assert_eq!(
            cluster_policy("ns4/svc4:p80", "tcp"),
            "KUBE-SVC-4SW47YFZTEDKD3PK"
        );
        assert_eq!(
            endpoint("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert_eq!(
            endpoint("ns4/svc4:p80", "tcp", "10.180.0.5:80"),
            "KUBE-SEP-C6EBXVWJJZMIWKLZ"
        );
        assert!(is_service_chain("KUBE-SEP-C6EBXVWJJZMIWKLZ"));
        assert!(!is_service_chain(SERVICES));
    }
}
