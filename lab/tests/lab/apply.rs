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
