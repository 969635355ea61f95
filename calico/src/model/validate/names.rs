//! Name syntaxes of Kubernetes and Calico: DNS labels and subdomains, qualified label keys,
//! label values, container IDs and interface names (the regexes of libcalico-go's validator and
//! `k8s.io/apimachinery/pkg/util/validation`, written out by hand).

/// Longest DNS-1123 label (Kubernetes' `DNS1123LabelMaxLength`).
pub const LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (Kubernetes' `DNS1123SubdomainMaxLength`).
pub const SUBDOMAIN_MAX: usize = 253;

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (no length limit: callers check lengths where Calico does).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && lower_alnum(b[0])
        && lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| lower_alnum(c) || c == b'-')
}

/// DNS labels joined by `.` (Calico's `nameRegex`, the format of every resource name).
pub fn is_subdomain(s: &str) -> bool {
    s.split('.').all(is_dns_label)
}

/// `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`: Calico's `containerID`.
pub fn is_container_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
}

/// `^[a-zA-Z0-9_.-]{1,15}$`: Calico's `interface` (endpoint interface names).
pub fn is_interface(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` of at most 63 characters: the name part of a
/// label key, and a non-empty label value.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= LABEL_MAX
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// What is wrong with `key` as a label key (Kubernetes' `IsQualifiedName`): an optional DNS
/// subdomain prefix and `/`, then 1-63 of `A-Za-z0-9-_.` starting and ending alphanumeric.
pub fn qualified_name_problem(key: &str) -> Option<String> {
    let name = match key.split('/').collect::<Vec<_>>().as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Some(format!("{key:?}: the prefix before '/' must not be empty"));
            }
            if prefix.len() > SUBDOMAIN_MAX || !is_subdomain(prefix) {
                return Some(format!(
                    "{key:?}: the prefix {prefix:?} must be a DNS subdomain (lower case a-z, 0-9, '-' and '.', at most 253 characters)"
                ));
            }
            *name
        }
        _ => {
            return Some(format!(
                "{key:?}: a qualified name has at most one '/' (prefix/name)"
            ));
        }
    };
    (!is_label_name(name)).then(|| {
        format!(
            "{key:?}: the name part must be 1-63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit"
        )
    })
}

/// What is wrong with `value` as a label value (Kubernetes' `IsValidLabelValue`): empty, or
/// 1-63 of `A-Za-z0-9-_.` starting and ending alphanumeric.
pub fn label_value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !is_label_name(value)).then(|| {
        format!(
            "{value:?}: a label value must be empty or 1-63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit"
        )
    })
}

/// Whether `name` fits Calico's `networkPolicyNameRegex`: a DNS label, two DNS labels joined by
/// `.`, or `knp.default.` / `ossg.default.` followed by a subdomain (the names kube-controllers
/// gives converted Kubernetes policies).
pub fn is_network_policy_name(name: &str) -> bool {
    let plain = match name.split_once('.') {
        None => is_dns_label(name),
        Some((a, b)) => is_dns_label(a) && is_dns_label(b),
    };
    plain
        || ["knp.default.", "ossg.default."]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(is_subdomain))
}

/// Whether `name` fits Calico's `globalNetworkPolicyNameRegex`: a DNS label, optionally
/// preceded by one DNS label and `.`.
pub fn is_global_network_policy_name(name: &str) -> bool {
    match name.split_once('.') {
        None => is_dns_label(name),
        Some((a, b)) => is_dns_label(a) && is_dns_label(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_subdomain() {
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label(""));
        assert!(is_subdomain("kns.default"));
        assert!(!is_subdomain("a..b"));
        assert!(!is_subdomain(".a"));
        assert!(!is_subdomain("a_b"));
    }

    #[test]
    fn qualified_names_as_kubernetes() {
        for ok in [
            "a",
            "A_b.c-d",
            "projectcalico.org/namespace",
            "example.com/Name",
            &"x".repeat(63),
        ] {
            assert_eq!(qualified_name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a/b/c",
            "-a",
            "a-",
            "Example.com/a",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(qualified_name_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("Prod_1.x"), None);
        assert!(label_value_problem("a/b").is_some());
        assert!(label_value_problem(&"v".repeat(64)).is_some());
    }

    #[test]
    fn policy_names() {
        assert!(is_network_policy_name("allow-tcp"));
        assert!(is_network_policy_name("tier1.allow"));
        assert!(!is_network_policy_name("a.b.c"));
        assert!(is_network_policy_name("knp.default.a.b.c"));
        assert!(is_network_policy_name("ossg.default.x"));
        assert!(!is_network_policy_name("knp.other.a.b"));
        assert!(!is_network_policy_name("Allow"));
        assert!(is_global_network_policy_name("t.p"));
        assert!(!is_global_network_policy_name("knp.default.p"));
    }

    #[test]
    fn container_ids_and_interfaces() {
        assert!(is_container_id("ABCdef0123"));
        assert!(!is_container_id("abc_def"));
        assert!(!is_container_id("-abc"));
        assert!(is_interface("cali0123456789a"));
        assert!(is_interface("eth0.10"));
        assert!(!is_interface("cali0123456789ab"));
        assert!(!is_interface("eth:0"));
        assert!(!is_interface("*"));
    }
}
