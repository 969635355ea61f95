//! deploy/k8s/4*-kube-controllers*.yaml: Calico's kube-controllers as Calico deploys it in etcd
//! mode, in felix's namespace, with felix's etcd settings and the RBAC its controllers use.

mod common;

use common::{Deployment, felix_env_names};
use deploy_check::{
    kube_controllers::{
        CONTROLLERS, ETCD_ENV, ETCD_SECRET, ETCD_SECRET_KEYS, ETCD_SECRET_MOUNT, IMAGE, NEEDED,
        allows,
    },
    manifests::Manifest,
};
use k8s_openapi::api::{
    apps::v1::Deployment as K8sDeployment,
    core::v1::{Container, PodSpec},
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};

const NAME: &str = "calico-kube-controllers";

fn deployment(d: &Deployment) -> &K8sDeployment {
    let all: Vec<&K8sDeployment> = d
        .manifests
        .iter()
        .filter_map(|(_, m)| match m {
            Manifest::Deployment(x) => Some(&**x),
            _ => None,
        })
        .collect();
    assert_eq!(all.len(), 1, "deploy/k8s holds one Deployment");
    all[0]
}

fn pod(d: &Deployment) -> &PodSpec {
    deployment(d)
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template")
}

fn container(d: &Deployment) -> &Container {
    let containers = &pod(d).containers;
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn env<'a>(c: &'a Container, name: &str) -> &'a k8s_openapi::api::core::v1::EnvVar {
    c.env
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn one_replica_of_calicos_image_in_the_host_network() {
    let d = Deployment::load();
    let dep = deployment(&d);
    assert_eq!(dep.metadata.name.as_deref(), Some(NAME));
    let spec = dep.spec.as_ref().expect("spec");
    // Only one instance may run: Recreate, never two during a rollout.
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate")
    );
    let selector = spec.selector.match_labels.as_ref().expect("matchLabels");
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .expect("pod labels");
    for (k, v) in selector {
        assert_eq!(labels.get(k), Some(v), "the selector matches the pods");
    }
    let pod = pod(&d);
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some(NAME));
    let c = container(&d);
    assert_eq!(c.image.as_deref(), Some(IMAGE));
    assert_eq!(
        c.security_context.as_ref().and_then(|s| s.run_as_non_root),
        Some(true)
    );
}

#[test]
fn controllers_and_probes_are_calicos() {
    let d = Deployment::load();
    let c = container(&d);
    assert_eq!(env(c, "DATASTORE_TYPE").value.as_deref(), Some("etcdv3"));
    let enabled = env(c, "ENABLED_CONTROLLERS")
        .value
        .as_deref()
        .expect("a literal");
    let enabled: Vec<&str> = enabled.split(',').map(str::trim).collect();
    assert_eq!(enabled, CONTROLLERS);
    for (probe, flag) in [(&c.liveness_probe, "-l"), (&c.readiness_probe, "-r")] {
        let command = probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.as_deref())
            .expect("an exec probe");
        assert_eq!(command, ["/usr/bin/check-status", flag]);
    }
}

#[test]
fn etcd_settings_are_felixs_and_the_certificates_come_from_the_secret() {
    let d = Deployment::load();
    let c = container(&d);
    for (var, key) in ETCD_ENV {
        let from = env(c, var)
            .value_from
            .as_ref()
            .and_then(|f| f.config_map_key_ref.as_ref())
            .unwrap_or_else(|| panic!("{var} from the ConfigMap"));
        assert_eq!(from.name, "felix-config", "{var}");
        assert_eq!(from.key, key, "{var}");
        assert_ne!(from.optional, Some(true), "{var}");
    }
    let data = d.config_map().data.as_ref().expect("ConfigMap data");
    // Every key is in felix-config once felix has the setting (the etcd TLS settings come with
    // felix's etcd TLS support).
    let felix_settings = felix_env_names();
    for (var, key) in ETCD_ENV {
        assert!(
            data.contains_key(key) || !felix_settings.contains(key),
            "{var}: felix-config has no {key}"
        );
    }
    let endpoints = &data["FELIX_ETCDENDPOINTS"];
    assert!(
        endpoints
            .split(',')
            .all(|e| e.starts_with("http://") || e.starts_with("https://")),
        "{endpoints}"
    );
    // The Secret's volume, mounted read-only where the certificate files are.
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == ETCD_SECRET_MOUNT)
        .expect("the etcd Secret is mounted");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod(&d)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the mounted volume");
    let secret = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some(ETCD_SECRET));
    assert_eq!(secret.default_mode, Some(0o440));
    // The certificate paths felix-config holds are files of that Secret. The keys come with the
    // etcd TLS settings of felix; a ConfigMap without them fails the ConfigMap check above.
    for (key, file) in ETCD_ENV[1..].iter().map(|(_, k)| k).zip(ETCD_SECRET_KEYS) {
        if let Some(path) = data.get(*key) {
            assert_eq!(path, &format!("{ETCD_SECRET_MOUNT}/{file}"), "{key}");
        }
    }
}

#[test]
fn rbac_grants_what_the_controllers_use_to_their_service_account() {
    let d = Deployment::load();
    let account = d
        .manifests
        .iter()
        .find_map(|(_, m)| match m {
            Manifest::ServiceAccount(s) if s.metadata.name.as_deref() == Some(NAME) => Some(s),
            _ => None,
        })
        .expect("the kube-controllers ServiceAccount");
    let namespace = account.metadata.namespace.as_deref().expect("namespace");
    let roles: Vec<&ClusterRole> = d
        .manifests
        .iter()
        .filter_map(|(_, m)| match m {
            Manifest::ClusterRole(r) => Some(&**r),
            _ => None,
        })
        .collect();
    let bindings: Vec<&ClusterRoleBinding> = d
        .manifests
        .iter()
        .filter_map(|(_, m)| match m {
            Manifest::ClusterRoleBinding(b) => Some(&**b),
            _ => None,
        })
        .filter(|b| {
            b.subjects.iter().flatten().any(|s| {
                s.kind == "ServiceAccount"
                    && s.name == NAME
                    && s.namespace.as_deref() == Some(namespace)
            })
        })
        .collect();
    assert!(!bindings.is_empty(), "a binding for {namespace}/{NAME}");
    let mut rules = Vec::new();
    for binding in bindings {
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
        let role = roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str()))
            .unwrap_or_else(|| panic!("no ClusterRole {}", binding.role_ref.name));
        rules.extend(role.rules.iter().flatten().cloned());
    }
    for access in NEEDED {
        assert!(allows(&rules, *access), "{access:?} is not granted");
    }
    // Nothing beyond Calico's own role: no secrets, no writes to core objects but services.
    for verb in ["get", "list", "create", "update", "delete"] {
        let secret = deploy_check::kube_controllers::Access {
            group: "",
            resource: "secrets",
            verb,
        };
        assert!(!allows(&rules, secret), "{verb} secrets");
    }
}
