//! What Calico's kube-controllers needs from the deployment in etcd mode: its image, the
//! controllers it runs, the Kubernetes API access each of them uses, and an evaluation of RBAC
//! rules against that access (wildcards included), so the checks need no cluster.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// The image, Calico's release the model and the fixtures follow.
pub const IMAGE: &str = "quay.io/calico/kube-controllers:v3.32.1";

/// `ENABLED_CONTROLLERS`: every controller of Calico's etcd manifest but `loadbalancer` (felix
/// allocates no LoadBalancer addresses).
pub const CONTROLLERS: [&str; 5] = [
    "policy",
    "namespace",
    "serviceaccount",
    "workloadendpoint",
    "node",
];

/// The etcd client settings of kube-controllers (libcalico-go's `ETCD_*` variables) and the
/// `felix-config` keys that hold felix's own value of each.
pub const ETCD_ENV: [(&str, &str); 4] = [
    ("ETCD_ENDPOINTS", "FELIX_ETCDENDPOINTS"),
    ("ETCD_CA_CERT_FILE", "FELIX_ETCDCAFILE"),
    ("ETCD_CERT_FILE", "FELIX_ETCDCERTFILE"),
    ("ETCD_KEY_FILE", "FELIX_ETCDKEYFILE"),
];

/// The Secret with the etcd client certificate, its mount path, and its keys.
pub const ETCD_SECRET: &str = "calico-etcd-secrets";
pub const ETCD_SECRET_MOUNT: &str = "/calico-secrets";
pub const ETCD_SECRET_KEYS: [&str; 3] = ["etcd-ca", "etcd-cert", "etcd-key"];

/// One access to the Kubernetes API: API group ("" is core), resource, verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
}

const fn access(group: &'static str, resource: &'static str, verb: &'static str) -> Access {
    Access {
        group,
        resource,
        verb,
    }
}

/// The accesses the enabled controllers make: informers list and watch, the node controller
/// also gets single nodes and pods (IPAM garbage collection checks that a pod is gone).
pub const NEEDED: &[Access] = &[
    access("", "namespaces", "list"),
    access("", "namespaces", "watch"),
    access("", "serviceaccounts", "list"),
    access("", "serviceaccounts", "watch"),
    access("", "pods", "list"),
    access("", "pods", "watch"),
    access("", "pods", "get"),
    access("", "nodes", "list"),
    access("", "nodes", "watch"),
    access("", "nodes", "get"),
    access("networking.k8s.io", "networkpolicies", "list"),
    access("networking.k8s.io", "networkpolicies", "watch"),
];

/// Whether `rules` (one Role's or ClusterRole's) allow `access`, as the RBAC authorizer decides
/// for a request without a resource name: some rule matches group, resource and verb, each
/// literally or by `*`.
pub fn allows(rules: &[PolicyRule], access: Access) -> bool {
    let matches = |list: &Option<Vec<String>>, want: &str| {
        list.iter().flatten().any(|v| v == "*" || v == want)
    };
    rules.iter().any(|rule| {
        rule.resource_names.as_ref().is_none_or(Vec::is_empty)
            && matches(&rule.api_groups, access.group)
            && matches(&rule.resources, access.resource)
            && rule.verbs.iter().any(|v| v == "*" || v == access.verb)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let owned = |l: &[&str]| Some(l.iter().map(|s| (*s).to_owned()).collect());
        PolicyRule {
            api_groups: owned(groups),
            resources: owned(resources),
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn rules_match_group_resource_and_verb() {
        let rules = [rule(&[""], &["pods", "nodes"], &["list", "watch"])];
        assert!(allows(&rules, access("", "pods", "watch")));
        assert!(!allows(&rules, access("", "pods", "get")));
        assert!(!allows(&rules, access("apps", "pods", "list")));
        assert!(!allows(&rules, access("", "namespaces", "list")));
        let wild = [rule(&["*"], &["*"], &["*"])];
        assert!(allows(
            &wild,
            access("networking.k8s.io", "networkpolicies", "list")
        ));
    }

    #[test]
    fn a_rule_limited_to_names_does_not_allow_list() {
        let mut named = rule(&[""], &["pods"], &["get", "list"]);
        named.resource_names = Some(vec!["one".to_owned()]);
        assert!(!allows(&[named], access("", "pods", "list")));
    }
}
