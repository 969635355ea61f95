//! deploy/k8s/: every manifest decodes into k8s-openapi types, and the fields felix depends on
//! are as it needs them.

mod common;

use std::{collections::BTreeSet, fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use felix_user::dataplane::pins::{DEFAULT_PIN_ROOT, DEFAULT_RUN_ROOT};
use k8s_openapi::{
    api::core::v1::{Container, HTTPGetAction, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde_json::Value;

use common::{Deployment, env_names, felix_env_names, read, script};

#[test]
fn every_manifest_decodes_and_lives_in_the_namespace() {
    let d = Deployment::load();
    let kinds: BTreeSet<&str> = d.manifests.iter().map(|(_, m)| m.kind()).collect();
    assert!(
        kinds.is_superset(&BTreeSet::from([
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "DaemonSet"
        ])),
        "{kinds:?}"
    );
    // etcd mode: felix never calls the Kubernetes API; RBAC is kube-controllers' (checked in
    // tests/kube_controllers.rs) and felix-cni's (get pods, with `policy.type: k8s`).
    for (path, m) in &d.manifests {
        let path_text = path.to_string_lossy();
        assert!(
            !m.is_rbac()
                || path_text.contains("kube-controllers")
                || path_text.contains("felix-cni-rbac"),
            "{}: felix in etcd mode needs no RBAC",
            path.display()
        );
    }
    let namespaces: Vec<&str> = d
        .manifests
        .iter()
        .filter(|(_, m)| m.kind() == "Namespace")
        .filter_map(|(_, m)| m.metadata().name.as_deref())
        .collect();
    let [namespace] = namespaces[..] else {
        panic!("one Namespace, not {namespaces:?}");
    };
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    for (path, m) in d
        .manifests
        .iter()
        .filter(|(_, m)| !cluster_scoped.contains(&m.kind()))
    {
        assert_eq!(
            m.metadata().namespace.as_deref(),
            Some(namespace),
            "{}: {} {:?}",
            path.display(),
            m.kind(),
            m.metadata().name
        );
    }
}

#[test]
fn service_account_exists_and_mounts_no_token() {
    let d = Deployment::load();
    let pod = d.pod();
    let name = pod
        .service_account_name
        .as_deref()
        .expect("a ServiceAccount");
    let account = d
        .manifests
        .iter()
        .find_map(|(_, m)| match m {
            deploy_check::manifests::Manifest::ServiceAccount(s)
                if s.metadata.name.as_deref() == Some(name) =>
            {
                Some(s)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ServiceAccount {name}"));
    assert_eq!(account.automount_service_account_token, Some(false));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn daemonset_runs_on_every_node_in_the_host_network() {
    let d = Deployment::load();
    let ds = d.daemonset();
    let spec = ds.spec.as_ref().expect("spec");
    let pod = d.pod();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    let tolerate_all =
        pod.tolerations.iter().flatten().any(|t| {
            t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()
        });
    assert!(tolerate_all, "a toleration of every taint");
    let grace = pod
        .termination_grace_period_seconds
        .expect("a grace period");
    assert!((1..=60).contains(&grace), "{grace}");

    let strategy = spec.update_strategy.as_ref().expect("updateStrategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.clone()),
        Some(IntOrString::Int(1))
    );

    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    for (key, value) in spec.selector.match_labels.iter().flatten() {
        assert_eq!(
            labels.and_then(|l| l.get(key)),
            Some(value),
            "selector {key}"
        );
    }

    let images: BTreeSet<&str> = d
        .all_containers()
        .filter_map(|c| c.image.as_deref())
        .collect();
    assert_eq!(images.len(), 1, "one image for every container: {images:?}");
    assert_eq!(
        d.all_containers().count(),
        d.all_containers().filter(|c| c.image.is_some()).count()
    );
}

/// The felix container's mount of the volume whose hostPath is `host_path`.
fn mount_of<'a>(
    d: &'a Deployment,
    container: &'a Container,
    host_path: &str,
) -> &'a k8s_openapi::api::core::v1::VolumeMount {
    let volume = d
        .pod()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.host_path.as_ref().is_some_and(|h| h.path == host_path))
        .unwrap_or_else(|| panic!("no hostPath volume {host_path}"));
    container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == volume.name)
        .unwrap_or_else(|| panic!("{} does not mount {host_path}", container.name))
}

#[test]
fn felix_is_privileged_with_the_host_mounts_it_needs() {
    let d = Deployment::load();
    let felix = d.container("felix");
    assert_eq!(
        felix.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    assert_eq!(
        felix.command.as_deref().unwrap_or_default(),
        ["felix", "run"]
    );
    // (host path, path in the container, read-only, propagation)
    let expected = [
        ("/sys/fs/bpf", "/sys/fs/bpf", false, Some("Bidirectional")),
        ("/proc", "/host/proc", true, None),
        ("/run/felix", "/run/felix", false, None),
        (
            "/var/run/netns",
            "/var/run/netns",
            false,
            Some("HostToContainer"),
        ),
        ("/lib/modules", "/lib/modules", true, None),
    ];
    for (host, path, read_only, propagation) in expected {
        let mount = mount_of(&d, felix, host);
        assert_eq!(mount.mount_path, path, "{host}");
        assert_eq!(mount.read_only.unwrap_or(false), read_only, "{host}");
        assert_eq!(mount.mount_propagation.as_deref(), propagation, "{host}");
    }
    // felix's default pin and run roots lie on those mounts.
    assert!(Path::new(DEFAULT_PIN_ROOT).starts_with("/sys/fs/bpf"));
    assert_eq!(DEFAULT_RUN_ROOT, "/run/felix");

    let requests = felix
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .expect("resource requests");
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    let memory_limit = felix
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .is_some_and(|l| l.contains_key("memory"));
    assert!(!memory_limit, "BPF maps are charged to felix's cgroup");
}

#[test]
fn every_volume_is_defined_and_used() {
    let d = Deployment::load();
    let mounted: BTreeSet<&str> = d
        .all_containers()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| m.name.as_str())
        .collect();
    let defined: BTreeSet<&str> = d
        .pod()
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(mounted, defined);
}

fn http_get(probe: Option<&Probe>) -> &HTTPGetAction {
    probe
        .and_then(|p| p.http_get.as_ref())
        .expect("an HTTP GET probe")
}

#[test]
fn probes_and_metrics_use_felix_endpoints() {
    let d = Deployment::load();
    let felix = d.container("felix");
    for (probe, path) in [
        (felix.liveness_probe.as_ref(), "/liveness"),
        (felix.readiness_probe.as_ref(), "/readiness"),
    ] {
        let get = http_get(probe);
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::Int(9099), "{path}");
        // felix's health endpoints listen on 127.0.0.1 by default.
        assert_eq!(get.host.as_deref(), Some("localhost"), "{path}");
    }
    let metrics = felix
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a metrics port");
    assert_eq!(metrics.container_port, 9091);
    let annotations = d
        .daemonset()
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .expect("pod annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9091");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn env_names_are_settings_of_the_binaries_and_the_node_comes_from_the_pod() {
    let d = Deployment::load();
    let felix = felix_env_names();
    let settings_doc = read("docs/configuration.md");
    for container in d.all_containers() {
        let names = container.env.iter().flatten().map(|v| v.name.as_str());
        match container.name.as_str() {
            // Binaries: only variables they read (their clap `env`), and the log filter.
            binary @ ("felix" | "bird-conf") => {
                let known = if binary == "felix" {
                    felix.clone()
                } else {
                    env_names("bird-conf/src")
                };
                for name in names.filter(|n| *n != "RUST_LOG") {
                    assert!(
                        known.contains(name),
                        "{binary} reads no {name} (it reads {known:?})"
                    );
                }
            }
            // Scripts: only variables they use.
            _ => {
                let script = script(container);
                for name in names {
                    assert!(
                        script.contains(&format!("${name}")),
                        "{}: {name} is not used",
                        container.name
                    );
                }
            }
        }
        for var in container.env.iter().flatten() {
            if var.name.starts_with("FELIX_") {
                assert!(
                    felix.contains(&var.name),
                    "felix has no setting {}",
                    var.name
                );
                assert!(
                    settings_doc.contains(&format!("`{}`", var.name)),
                    "docs/configuration.md does not document {}",
                    var.name
                );
            }
        }
    }
    for (container, name) in [
        ("felix", "FELIX_NODENAME"),
        ("install-cni", "FELIX_NODENAME"),
        ("bird-conf", "NODENAME"),
    ] {
        let var = d
            .all_containers()
            .find(|c| c.name == container)
            .and_then(|c| c.env.iter().flatten().find(|v| v.name == name))
            .unwrap_or_else(|| panic!("{container} has no {name}"));
        let field = var
            .value_from
            .as_ref()
            .and_then(|f| f.field_ref.as_ref())
            .unwrap_or_else(|| panic!("{container}: {name} from a fieldRef"));
        assert_eq!(field.field_path, "spec.nodeName");
    }
    for (container, name) in [
        ("felix", "FELIX_ETCDENDPOINTS"),
        ("bird-conf", "ETCD_ENDPOINTS"),
    ] {
        let var = d
            .container(container)
            .env
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{container} has no {name}"));
        assert_eq!(d.resolve(var, "n"), d.config("FELIX_ETCDENDPOINTS"));
    }
}

#[test]
fn bird_runs_with_the_config_bird_conf_writes() {
    let d = Deployment::load();
    let confd = d.container("bird-conf");
    let command = confd.command.as_deref().unwrap_or_default();
    let flag = |name: &str| {
        let at = command
            .iter()
            .position(|w| w == name)
            .unwrap_or_else(|| panic!("bird-conf {name}"));
        command[at + 1].clone()
    };
    let (config, ctl) = (flag("--config"), flag("--ctl"));
    let bird = d.container("bird");
    let script = script(bird);
    assert!(
        script.contains(&format!("until [ -s {config} ]")),
        "BIRD waits for the first file: {script}"
    );
    assert!(
        script.contains(&format!("exec bird -f -c {config} -s {ctl}")),
        "{script}"
    );
    // Both see the same files.
    let dir = Path::new(&config).parent().expect("a directory");
    assert_eq!(Path::new(&ctl).parent(), Some(dir));
    for container in [confd, bird] {
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| Path::new(&m.mount_path) == dir)
            .unwrap_or_else(|| panic!("{} does not mount {}", container.name, dir.display()));
        assert!(d.volume(&mount.name).empty_dir.is_some());
    }
    let caps = bird
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.as_ref())
        .expect("BIRD's capabilities");
    for cap in ["NET_ADMIN", "NET_BIND_SERVICE"] {
        assert!(caps.iter().any(|c| c == cap), "BIRD needs {cap}");
    }
}

#[test]
fn config_map_keys_exist_and_felix_gets_every_setting() {
    let d = Deployment::load();
    let data = d.config_map().data.as_ref().expect("ConfigMap data");
    for container in d.all_containers() {
        for var in container.env.iter().flatten() {
            if let Some(key) = var
                .value_from
                .as_ref()
                .and_then(|f| f.config_map_key_ref.as_ref())
            {
                // An optional key (FELIX_UPLINK: autodetected unless set) may be absent.
                if key.optional == Some(true) && !data.contains_key(&key.key) {
                    continue;
                }
                // resolve() checks the ConfigMap's name and key.
                assert!(!d.resolve(var, "n").is_empty(), "{} is empty", var.name);
                assert!(data.contains_key(&key.key));
            }
        }
    }
    // Every setting but the CNI config reaches felix under its own name.
    let felix = d.container("felix");
    let known = felix_env_names();
    for key in data.keys().filter(|k| *k != "cni_network_config") {
        let passed = felix.env.iter().flatten().any(|v| {
            v.name == *key
                && v.value_from
                    .as_ref()
                    .and_then(|f| f.config_map_key_ref.as_ref())
                    .is_some_and(|r| r.key == *key)
        });
        assert!(
            passed,
            "ConfigMap key {key} is not passed to felix as {key}"
        );
        assert!(
            !key.starts_with("FELIX_") || known.contains(key),
            "felix has no setting {key}"
        );
    }
}

#[test]
fn mount_bpffs_mounts_on_the_host() {
    let d = Deployment::load();
    let init = d.init_container("mount-bpffs");
    assert_eq!(
        init.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    let mount = mount_of(&d, init, "/sys/fs");
    assert_eq!(mount.mount_path, "/sys/fs");
    assert_eq!(mount.mount_propagation.as_deref(), Some("Bidirectional"));
    let script = script(init);
    assert!(
        script.contains("mount -t bpf bpffs /sys/fs/bpf"),
        "{script}"
    );
    assert!(
        script.contains(" /sys/fs/bpf bpf "),
        "checks first: {script}"
    );
    // The volume felix mounts must exist on the host before felix starts.
    let bpffs = d
        .pod()
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.host_path
                .as_ref()
                .is_some_and(|h| h.path == "/sys/fs/bpf")
        })
        .expect("bpffs volume");
    assert_eq!(
        bpffs.host_path.as_ref().and_then(|h| h.type_.as_deref()),
        Some("Directory")
    );
}

/// A temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn install_cni_installs_the_plugin_and_the_network_config() {
    let d = Deployment::load();
    let init = d.init_container("install-cni");
    assert_eq!(
        mount_of(&d, init, "/opt/cni/bin").mount_path,
        "/host/opt/cni/bin"
    );
    assert_eq!(
        mount_of(&d, init, "/etc/cni/net.d").mount_path,
        "/host/etc/cni/net.d"
    );

    let tmp =
        TempDir(std::env::temp_dir().join(format!("deploy-check-cni-{}", std::process::id())));
    let (src, bin, conf) = (tmp.0.join("src"), tmp.0.join("bin"), tmp.0.join("net.d"));
    // Absent until the last run: install-cni writes a kubeconfig only with a token.
    let sa = tmp.0.join("serviceaccount");
    let secrets = tmp.0.join("secrets");
    for dir in [&src, &bin, &conf, &secrets] {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(src.join("felix-cni"), "#!/bin/sh\necho plugin\n").unwrap();
    // The script with its three paths moved into the temporary directory.
    let mut script = script(init).to_owned();
    for (line, to) in [
        ("src=/opt/cni/bin/felix-cni", src.join("felix-cni")),
        ("bin=/host/opt/cni/bin", bin.clone()),
        ("conf=/host/etc/cni/net.d", conf.clone()),
        (
            "sa=/var/run/secrets/kubernetes.io/serviceaccount",
            sa.clone(),
        ),
        ("secrets=/calico-secrets", secrets.clone()),
    ] {
        assert!(script.contains(line), "install-cni sets {line}");
        let (name, _) = line.split_once('=').unwrap();
        script = script.replace(line, &format!("{name}={}", to.display()));
    }

    let node = "node-1.example";
    let two = "http://192.0.2.10:2379,http://192.0.2.11:2379";
    for (run_index, endpoints) in [None, Some(two), None].into_iter().enumerate() {
        let with_token = run_index == 2;
        if with_token {
            fs::create_dir_all(&sa).unwrap();
            fs::write(sa.join("token"), "tok-123").unwrap();
            fs::write(sa.join("ca.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        }
        let mut run = Command::new("sh");
        run.arg("-c")
            .arg(&script)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        for var in init.env.iter().flatten() {
            let mut value = d.resolve(var, node);
            if var.name == "FELIX_ETCDENDPOINTS"
                && let Some(e) = endpoints
            {
                value = e.to_owned();
            }
            run.env(&var.name, value);
        }
        run.env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443");
        let out = run.output().unwrap();
        assert!(
            out.status.success(),
            "install-cni: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let plugin = bin.join("felix-cni");
        assert_eq!(
            fs::read(&plugin).unwrap(),
            fs::read(src.join("felix-cni")).unwrap()
        );
        assert_eq!(
            fs::metadata(&plugin).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let names: BTreeSet<String> = fs::read_dir(&conf)
            .unwrap()
            .chain(fs::read_dir(&bin).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut want = BTreeSet::from(["10-felix.conflist".into(), "felix-cni".into()]);
        if with_token {
            want.insert("felix-kubeconfig".to_string());
            let kubeconfig = conf.join("felix-kubeconfig");
            assert_eq!(
                fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777,
                0o600
            );
            // What felix-cni reads from it.
            let access = felix_cni::k8s::kubeconfig::from_file(&kubeconfig)
                .unwrap_or_else(|e| panic!("felix-cni refuses the kubeconfig: {e}"));
            assert_eq!(access.server, "https://10.96.0.1:443");
            assert_eq!(access.token.as_deref(), Some("tok-123"));
            assert_eq!(access.ca_pem, b"-----BEGIN CERTIFICATE-----\n");
        }
        assert_eq!(names, want, "no temporary file is left");

        let text = fs::read_to_string(conf.join("10-felix.conflist")).unwrap();
        assert!(!text.contains("__"), "a placeholder is left: {text}");
        let list: Value = serde_json::from_str(&text).unwrap();
        let want_endpoints = endpoints.unwrap_or(d.config("FELIX_ETCDENDPOINTS"));
        check_network_config(&list, want_endpoints, node);
        for key in ["etcd_ca_cert_file", "etcd_cert_file", "etcd_key_file"] {
            assert_eq!(list["plugins"][0][key], "", "{key} without TLS files");
        }
    }

    // With the Secret filled: the files are copied for felix-cni on the host, and the CNI
    // config names them where the host has them.
    for key in deploy_check::manifests::ETCD_SECRET_KEYS {
        fs::write(secrets.join(key), format!("{key} pem\n")).unwrap();
    }
    let mut run = Command::new("sh");
    run.arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        // The service account token of the last run is still there: kubelet's variables too.
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("KUBERNETES_SERVICE_PORT", "443");
    for var in init.env.iter().flatten() {
        run.env(&var.name, d.resolve(var, node));
    }
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "install-cni: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value =
        serde_json::from_str(&fs::read_to_string(conf.join("10-felix.conflist")).unwrap()).unwrap();
    for (key, file) in [
        ("etcd_ca_cert_file", "etcd-ca"),
        ("etcd_cert_file", "etcd-cert"),
        ("etcd_key_file", "etcd-key"),
    ] {
        assert_eq!(
            list["plugins"][0][key],
            format!("/etc/cni/net.d/calico-tls/{file}"),
            "{key}"
        );
        let copied = conf.join("calico-tls").join(file);
        assert_eq!(
            fs::read_to_string(&copied).unwrap(),
            format!("{file} pem\n")
        );
        assert_eq!(
            fs::metadata(&copied).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn etcd_secret_is_mounted_and_its_files_are_wired() {
    use deploy_check::manifests::{ETCD_SECRET, ETCD_SECRET_KEYS, Manifest, etcd_tls_problems};
    let d = Deployment::load();
    let secret = d
        .manifests
        .iter()
        .find_map(|(_, m)| match m {
            Manifest::Secret(s) if s.metadata.name.as_deref() == Some(ETCD_SECRET) => Some(s),
            _ => None,
        })
        .expect("Secret calico-etcd-secrets");
    let keys: BTreeSet<&str> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(keys, BTreeSet::from(ETCD_SECRET_KEYS));
    let pod = d.pod();
    let volume_secret = |name: &str| {
        pod.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .and_then(|v| v.secret.as_ref())
            .filter(|s| s.default_mode == Some(0o400))
            .and_then(|s| s.secret_name.clone())
    };
    for (name, file) in [
        ("FELIX_ETCDCAFILE", "etcd-ca"),
        ("FELIX_ETCDCERTFILE", "etcd-cert"),
        ("FELIX_ETCDKEYFILE", "etcd-key"),
    ] {
        assert_eq!(d.config(name), format!("/calico-secrets/{file}"), "{name}");
    }
    let felix_env = [
        ("FELIX_ETCDCAFILE", "FELIX_ETCDCAFILE"),
        ("FELIX_ETCDCERTFILE", "FELIX_ETCDCERTFILE"),
        ("FELIX_ETCDKEYFILE", "FELIX_ETCDKEYFILE"),
    ];
    let bird_conf_env = [
        ("ETCD_CA_CERT_FILE", "FELIX_ETCDCAFILE"),
        ("ETCD_CERT_FILE", "FELIX_ETCDCERTFILE"),
        ("ETCD_KEY_FILE", "FELIX_ETCDKEYFILE"),
    ];
    let mut problems = etcd_tls_problems(d.container("felix"), volume_secret, &felix_env);
    problems.extend(etcd_tls_problems(
        d.container("bird-conf"),
        volume_secret,
        &bird_conf_env,
    ));
    problems.extend(etcd_tls_problems(
        d.init_container("install-cni"),
        volume_secret,
        &[],
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let template = d.config("cni_network_config");
    for placeholder in [
        "__ETCD_CA_CERT_FILE__",
        "__ETCD_CERT_FILE__",
        "__ETCD_KEY_FILE__",
    ] {
        assert!(
            template.contains(placeholder),
            "the CNI config has no {placeholder}"
        );
    }
}

/// The network config list as the runtime hands its plugin to felix-cni: the plugin's object
/// with the list's `cniVersion` and `name`.
fn check_network_config(list: &Value, endpoints: &str, node: &str) {
    assert_eq!(list["cniVersion"], "1.0.0");
    let plugins = list["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["type"], "felix-cni");
    let mut conf = plugins[0].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    let parsed = felix_cni::config::NetConf::parse(conf.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("felix-cni refuses the config: {e:?}"));
    assert_eq!(
        parsed.etcd_endpoints,
        endpoints.split(',').collect::<Vec<_>>()
    );
    assert_eq!(parsed.node_name().expect("a node name"), node);
    assert_eq!(
        parsed.mtu, None,
        "no fixed MTU: each node's pods follow its uplink"
    );
    assert!(parsed.policy_k8s, "the endpoint is built from the pod");
    assert_eq!(
        parsed.kubeconfig.as_deref(),
        Some(Path::new("/etc/cni/net.d/felix-kubeconfig"))
    );
}
