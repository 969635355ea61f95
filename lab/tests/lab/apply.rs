//! `felix apply`/`get`/`delete` against the lab's etcd.

use anyhow::{Result, ensure};
use lab::Lab;

use crate::support::{felix_in_h1, with_lab};

/// `felix apply -f` with one invalid document among valid ones writes the valid ones at Calico's
/// keys, names the bad document and field, and exits 1; `felix get` reads them back; `felix
/// delete -f` removes them.
#[test]
fn apply_get_delete_write_calico_keys_and_skip_only_bad_documents() -> Result<()> {
    with_lab(|lab| {
        let lab: &Lab = lab;
        let file = std::env::temp_dir().join(format!("felix-apply-{}.yaml", std::process::id()));
        std::fs::write(
            &file,
            r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-dns
spec:
  selector: all()
  order: 100
  types: [Egress]
  egress:
    - action: Allow
      protocol: UDP
      destination:
        ports: [53]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: broken
  namespace: default
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      destination:
        ports: ["90:80"]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 10
"#,
        )?;
        let path = file.to_string_lossy().into_owned();
        let applied = felix_in_h1(lab, &["apply", "-f", &path]);
        let result = (|| -> Result<()> {
            let applied = applied?;
            let stderr = String::from_utf8_lossy(&applied.stderr);
            ensure!(
                !applied.status.success(),
                "apply with a bad document exited 0"
            );
            ensure!(
                stderr.contains("broken") && stderr.contains("ports[0]"),
                "error does not name the document and field: {stderr}"
            );
            let gnp = lab.etcd_get(
                "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/allow-dns",
            )?;
            ensure!(
                gnp.as_deref()
                    .is_some_and(|v| v.contains("\"kind\":\"GlobalNetworkPolicy\"")),
                "{gnp:?}"
            );
            ensure!(
                lab.etcd_get("/calico/resources/v3/projectcalico.org/tiers/security")?
                    .is_some(),
                "tier not written"
            );
            ensure!(
                lab.etcd_get(
                    "/calico/resources/v3/projectcalico.org/networkpolicies/default/broken"
                )?
                .is_none(),
                "the invalid document was written"
            );
            let got = felix_in_h1(lab, &["get", "globalnetworkpolicies"])?;
            let text = String::from_utf8_lossy(&got.stdout);
            ensure!(
                got.status.success() && text.contains("allow-dns"),
                "get: {text}"
            );
            let deleted = felix_in_h1(lab, &["delete", "-f", &path])?;
            ensure!(
                !deleted.status.success(),
                "delete with a bad document exited 0"
            );
            ensure!(
                lab.etcd_get(
                    "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/allow-dns"
                )?
                .is_none(),
                "delete left the policy"
            );
            let missing = felix_in_h1(lab, &["get", "globalnetworkpolicy", "allow-dns"])?;
            ensure!(
                !missing.status.success(),
                "get of a deleted policy succeeded"
            );
            Ok(())
        })();
        let _ = std::fs::remove_file(&file);
        result
    })
}

/// `felix apply` stores what calicoctl stores through Calico's client: the defaults clientv3
/// writes (a Tier's order and defaultAction), a `uid` and `creationTimestamp` on create that a
/// second apply keeps while taking the new labels, a namespaced NetworkSet at its key, and no
/// ObjectMeta field beyond name, namespace, labels and annotations from the input.
#[test]
fn apply_stores_clientv3_defaults_and_keeps_uid_on_update() -> Result<()> {
    with_lab(|lab| {
        let lab: &Lab = lab;
        let file = std::env::temp_dir().join(format!("felix-store-{}.yaml", std::process::id()));
        let documents = |label: &str| {
            format!(
                "kind: Tier\nmetadata: {{name: store-check, labels: {{rev: {label}}}, finalizers: [x/y], uid: ignored}}\n---\nkind: NetworkSet\nmetadata: {{name: clients, namespace: prod}}\nspec: {{nets: [192.0.2.0/24]}}\n"
            )
        };
        let tier_key = "/calico/resources/v3/projectcalico.org/tiers/store-check";
        let set_key = "/calico/resources/v3/projectcalico.org/networksets/prod/clients";
        let path = file.to_string_lossy().into_owned();
        let value = |key: &str| -> Result<serde_json::Value> {
            let text = lab
                .etcd_get(key)?
                .ok_or_else(|| anyhow::anyhow!("{key} not written"))?;
            Ok(serde_json::from_str(&text)?)
        };
        let result = (|| -> Result<()> {
            std::fs::write(&file, documents("one"))?;
            let applied = felix_in_h1(lab, &["apply", "-f", &path])?;
            ensure!(applied.status.success(), "apply: {applied:?}");
            let first = value(tier_key)?;
            ensure!(
                first["spec"] == serde_json::json!({"order": 1000000, "defaultAction": "Deny"}),
                "tier defaults: {first}"
            );
            let md = &first["metadata"];
            let uid = md["uid"].as_str().unwrap_or_default().to_string();
            ensure!(uid.len() == 36 && uid != "ignored", "uid: {md}");
            ensure!(
                md["creationTimestamp"].is_string(),
                "creationTimestamp: {md}"
            );
            ensure!(md.get("finalizers").is_none(), "finalizers stored: {md}");
            ensure!(
                value(set_key)?["spec"]["nets"][0] == "192.0.2.0/24",
                "network set"
            );
            std::fs::write(&file, documents("two"))?;
            let again = felix_in_h1(lab, &["apply", "-f", &path])?;
            ensure!(again.status.success(), "second apply: {again:?}");
            let second = value(tier_key)?;
            ensure!(
                second["metadata"]["uid"] == uid.as_str(),
                "uid changed: {second}"
            );
            ensure!(
                second["metadata"]["creationTimestamp"] == md["creationTimestamp"],
                "creationTimestamp changed: {second}"
            );
            ensure!(
                second["metadata"]["labels"]["rev"] == "two",
                "labels: {second}"
            );
            let got = felix_in_h1(lab, &["get", "networksets", "-n", "prod"])?;
            let text = String::from_utf8_lossy(&got.stdout);
            ensure!(
                got.status.success() && text.contains("clients"),
                "get: {text}"
            );
            let deleted = felix_in_h1(lab, &["delete", "-f", &path])?;
            ensure!(deleted.status.success(), "delete: {deleted:?}");
            ensure!(
                lab.etcd_get(set_key)?.is_none(),
                "delete left the network set"
            );
            Ok(())
        })();
        let _ = std::fs::remove_file(&file);
        result
    })
}
