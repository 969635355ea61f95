//! `felix run`'s configuration against a real etcd (a network namespace of its own per test,
//! see `etcd_lab`): FelixConfiguration `node.<name>` over `default`, environment and flags over
//! both, and the binary refusing invalid values by name. Needs root and the `etcd` binary;
//! built only with `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

// Shared with datastore_etcd.rs, which uses the proxy and syncer helpers this file does not.
#[expect(dead_code, reason = "helpers of the other etcd tests")]
mod etcd_lab;

use std::{process::Command, sync::Arc};

use etcd_lab::EtcdNs;
use felix_user::config::{self, Layers, Source};
use serde_json::json;

const FC: &str = "/calico/resources/v3/projectcalico.org/felixconfigurations";

async fn put_config(ns: &EtcdNs, name: &str, spec: serde_json::Value) {
    let value = json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                       "metadata": {"name": name}, "spec": spec});
    ns.client()
        .await
        .put(format!("{FC}/{name}"), value.to_string(), None)
        .await
        .expect("put FelixConfiguration");
}

fn layers(ns: &EtcdNs, node: &str) -> Layers {
    Layers {
        flags: [("NodeName", node.to_owned()), ("EtcdEndpoints", ns.url())].into(),
        ..Layers::default()
    }
}

/// (value, source) of setting `name`.
fn value(resolved: &config::Resolved, name: &str) -> (String, Source) {
    let v = resolved
        .values
        .iter()
        .find(|v| v.setting.name == name)
        .expect("a known setting");
    (v.text.clone().unwrap_or_default(), v.source)
}

async fn seed(ns: &EtcdNs) {
    put_config(
        ns,
        "default",
        json!({"healthPort": 7001, "bpfMapSizeRoute": 1000, "prometheusMetricsPort": 7101,
               "chainInsertMode": "Append"}),
    )
    .await;
    put_config(
        ns,
        "node.h1",
        json!({"healthPort": 7002, "bpfMapSizeRoute": 2000}),
    )
    .await;
}

#[test]
fn node_configuration_overrides_default_and_env_and_flags_override_both() {
    etcd_lab::run("cfg-layers", |ns: Arc<EtcdNs>| async move {
        seed(&ns).await;
        let h1 = config::load(layers(&ns, "h1")).await.expect("valid");
        assert_eq!(
            value(&h1, "HealthPort"),
            ("7002".into(), Source::NodeConfig)
        );
        assert_eq!(h1.settings.map_sizes.routes, 2000);
        assert_eq!(
            value(&h1, "PrometheusMetricsPort"),
            ("7101".into(), Source::DefaultConfig)
        );
        assert_eq!(value(&h1, "HealthHost").1, Source::BuiltIn);

        let h2 = config::load(layers(&ns, "h2")).await.expect("valid");
        assert_eq!(
            value(&h2, "HealthPort"),
            ("7001".into(), Source::DefaultConfig)
        );
        assert_eq!(h2.settings.map_sizes.routes, 1000);

        let mut env = layers(&ns, "h1");
        env.env = vec![("FELIX_HEALTHPORT".into(), "7003".into())];
        let resolved = config::load(env.clone()).await.expect("valid");
        assert_eq!(value(&resolved, "HealthPort"), ("7003".into(), Source::Env));
        assert_eq!(resolved.settings.map_sizes.routes, 2000);

        env.flags.insert("HealthPort", "7004".into());
        let resolved = config::load(env).await.expect("valid");
        assert_eq!(
            value(&resolved, "HealthPort"),
            ("7004".into(), Source::Flag)
        );
        assert_eq!(
            resolved.settings.health_address.map(|a| a.port()),
            Some(7004)
        );

        // A change to node.h1 that matters is seen as one; the running values are the base.
        let changed = resolved.changed_by(
            json!({"healthPort": 7002, "bpfMapSizeRoute": 4000})
                .as_object()
                .cloned(),
            resolved.layers.default.clone(),
        );
        assert_eq!(changed, ["BPFMapSizeRoute"]);
    });
}

fn felix(ns: &EtcdNs, env: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_felix"))
        .args(["run", "--node", "h1", "--etcd-endpoints", &ns.url()])
        .args(extra)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run felix")
}

#[test]
fn the_binary_prints_the_configuration_and_refuses_invalid_values_by_name() {
    etcd_lab::run("cfg-binary", |ns: Arc<EtcdNs>| async move {
        seed(&ns).await;
        let out = felix(
            &ns,
            &[("FELIX_BPFMAPSIZECONNTRACK", "4096")],
            &["--print-config", "--metrics-port", "9999"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let row = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
                .to_owned()
        };
        assert!(row("BPFMapSizeConntrack").contains("4096"));
        assert!(row("BPFMapSizeConntrack").contains("environment"));
        assert!(row("HealthPort").contains("7002"));
        assert!(row("HealthPort").contains("FelixConfiguration node.<nodename>"));
        assert!(row("PrometheusMetricsPort").contains("9999"));
        assert!(row("PrometheusMetricsPort").contains("--metrics-port"));
        assert!(row("BPFMapSizeRoute").contains("2000"));

        let out = felix(
            &ns,
            &[("FELIX_PROMETHEUSMETRICSPORT", "abc")],
            &["--print-config"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("PrometheusMetricsPort")
                && stderr.contains("FELIX_PROMETHEUSMETRICSPORT")
                && stderr.contains("\"abc\"")
                && stderr.contains("accepted: a port from 1 to 65535"),
            "{stderr}"
        );

        // An invalid value in FelixConfiguration is refused at start, naming the resource.
        put_config(&ns, "node.h1", json!({"bpfMapSizeConntrack": 0})).await;
        let out = felix(&ns, &[], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("BPFMapSizeConntrack")
                && stderr.contains("FelixConfiguration node.<nodename> spec.bpfMapSizeConntrack"),
            "{stderr}"
        );
    });
}
