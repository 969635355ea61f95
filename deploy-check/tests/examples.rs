//! deploy/examples/: each YAML file holds Calico v3 resources that felix's model accepts (as
//! `felix apply` would), and the values agree with the manifests.

mod common;

use std::{collections::BTreeSet, fs};

use calico::model::{EncapMode, Resource, document::parse_documents};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use common::{Deployment, read, repo_root};

fn examples() -> Vec<(String, Vec<Resource>)> {
    let dir = repo_root().join("deploy/examples");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("deploy/examples")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("read an example");
            let resources: Vec<Resource> = parse_documents(&text)
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .collect();
            assert!(!resources.is_empty(), "{}: no resource", path.display());
            (path.display().to_string(), resources)
        })
        .collect()
}

#[test]
fn every_example_is_a_calico_resource() {
    let kinds: BTreeSet<String> = examples()
        .iter()
        .flat_map(|(_, resources)| resources.iter().map(|r| r.kind().to_string()))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "BGPConfiguration".to_string(),
            "FelixConfiguration".to_string(),
            "IPPool".to_string()
        ])
    );
}

#[test]
fn the_examples_agree_with_the_manifests() {
    let d = Deployment::load();
    let felix = d.container("felix");
    let cni: Value = serde_json::from_str(d.config("cni_network_config")).unwrap();
    let scrape_port = d
        .daemonset()
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("prometheus.io/port"))
        .cloned();
    for (file, resources) in examples() {
        for resource in resources {
            match resource {
                Resource::FelixConfiguration(o) => {
                    assert_eq!(o.metadata.name, "default", "{file}");
                    let probe = felix
                        .liveness_probe
                        .as_ref()
                        .and_then(|p| p.http_get.as_ref())
                        .map(|g| g.port.clone());
                    let port = o.spec.health_port.map(|p| IntOrString::Int(p.into()));
                    assert_eq!(port, probe, "{file}: healthPort");
                    assert_eq!(
                        o.spec.prometheus_metrics_port.map(|p| p.to_string()),
                        scrape_port,
                        "{file}: prometheusMetricsPort"
                    );
                    assert_eq!(
                        o.spec.ipip_mtu.map(u64::from),
                        cni["plugins"][0]["mtu"].as_u64(),
                        "{file}: ipipMTU is the pods' MTU (both unset: detected per node)"
                    );
                }
                Resource::IpPool(o) => {
                    assert_eq!(
                        o.spec.ipip(),
                        EncapMode::Always,
                        "{file}: the dataplane does IPIP"
                    );
                    assert!(o.spec.cidr.is_ipv4(), "{file}: IPv4 only");
                }
                Resource::BgpConfiguration(o) => assert_eq!(o.metadata.name, "default"),
                other => panic!("{file}: unexpected {}", other.kind()),
            }
        }
    }
}

#[test]
fn calicoctl_config_uses_the_etcd_felix_uses() {
    let d = Deployment::load();
    let cfg: Value = serde_yaml_ng::from_str(&read("deploy/examples/calicoctl.cfg")).unwrap();
    assert_eq!(cfg["apiVersion"], "projectcalico.org/v3");
    assert_eq!(cfg["kind"], "CalicoAPIConfig");
    assert_eq!(cfg["spec"]["datastoreType"], "etcdv3");
    assert_eq!(
        cfg["spec"]["etcdEndpoints"].as_str(),
        Some(d.config("FELIX_ETCDENDPOINTS"))
    );
}
