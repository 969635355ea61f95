//! The datastore syncer and cache against a real etcd, each test in a network namespace of its
//! own (see `etcd_lab`). Needs root and the `etcd` binary (`cargo xtask setup`); built only with
//! `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod etcd_lab;

use std::net::{Ipv4Addr, SocketAddr};

use calico::{
    model::Kind,
    store::{Entry, EntryKind},
};
use etcd_client::{Client, CompactionOptions, Txn, TxnOp};
use felix_user::calc::topology::Topology;
use serde_json::{Value, json};

use etcd_lab::{ETCD_PORT, EtcdNs, proxy::Proxy, sync::Logs, sync::Synced};

const RES: &str = "/calico/resources/v3/projectcalico.org";
const WEP: EntryKind = EntryKind::Resource(Kind::WorkloadEndpoint);

fn wep_key(name: &str) -> String {
    format!("{RES}/workloadendpoints/default/{name}")
}

fn wep(name: &str, node: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"projectcalico.org/namespace": "default"}},
        "spec": {"orchestrator": "k8s", "node": node, "pod": name, "endpoint": "eth0",
                 "ipNetworks": [format!("{ip}/32")], "profiles": ["kns.default"],
                 "interfaceName": format!("cali{name}"), "mac": "02:00:00:00:00:01"}
    })
}

fn node(name: &str, address: &str) -> (String, Value) {
    (
        format!("{RES}/nodes/{name}"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name},
               "spec": {"bgp": {"ipv4Address": address, "asNumber": 64512}}}),
    )
}

fn block(cidr_key: &str, cidr: &str, host: &str) -> (String, Value) {
    (
        format!("/calico/ipam/v2/assignment/ipv4/block/{cidr_key}"),
        json!({"cidr": cidr, "affinity": format!("host:{host}"),
               "allocations": [null, null, null, null], "unallocated": [0, 1, 2, 3],
               "attributes": [], "deleted": false}),
    )
}

fn gnp(name: &str, selector: &str) -> (String, Value) {
    (
        format!("{RES}/globalnetworkpolicies/{name}"),
        json!({"kind": "GlobalNetworkPolicy", "metadata": {"name": name},
               "spec": {"selector": selector, "ingress": [{"action": "Allow"}]}}),
    )
}

async fn put(client: &mut Client, key: &str, value: impl Into<Vec<u8>>) -> i64 {
    let response = client.put(key, value, None).await.expect("put");
    response.header().expect("header").revision()
}

async fn put_json(client: &mut Client, key: &str, value: &Value) -> i64 {
    put(client, key, value.to_string()).await
}

async fn delete(client: &mut Client, key: &str) -> i64 {
    let response = client.delete(key, None).await.expect("delete");
    response.header().expect("header").revision()
}

/// Writes and deletes a scratch key, so that the store's revision moves past what a cut-off
/// syncer saw; returns the revision.
async fn bump(client: &mut Client) -> i64 {
    put(client, "/calico/scratch", "x").await;
    delete(client, "/calico/scratch").await
}

async fn current_revision(client: &mut Client) -> i64 {
    let response = client.get("/calico/", None).await.expect("get");
    response.header().expect("header").revision()
}

/// Makes the syncer relist: cuts it off, compacts past what it saw, lets it back.
async fn force_relist(proxy: &Proxy, synced: &mut Synced, client: &mut Client) {
    proxy.cut();
    synced
        .until("the syncer to notice", |s| !s.status().in_sync)
        .await;
    let last = bump(client).await;
    client
        .compact(last, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    proxy.restore();
}

/// A proxy in front of the namespace's etcd.
async fn proxy() -> Proxy {
    Proxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, ETCD_PORT))).await
}

#[test]
fn initial_sync_lists_every_calico_key_into_the_cache() {
    etcd_lab::run("initial", |ns: std::sync::Arc<EtcdNs>| async move {
        let mut client = ns.client().await;
        let mut docs = vec![
            node("h1", "10.0.0.1/24"),
            node("h2", "10.0.0.2/24"),
            (wep_key("p1"), wep("p1", "h1", "192.168.2.1")),
            (wep_key("p2"), wep("p2", "h2", "192.168.3.1")),
            block("192.168.2.0-30", "192.168.2.0/30", "h1"),
            block("192.168.3.0-30", "192.168.3.0/30", "h2"),
            (
                "/calico/ipam/v2/host/h1/ipv4/block/192.168.2.0-30".into(),
                json!({"state": "confirmed", "deleted": false}),
            ),
            gnp("allow-web", "app == 'web'"),
            (
                format!("{RES}/ippools/default-ipv4-ippool"),
                json!({"kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
                       "spec": {"cidr": "192.168.0.0/16", "ipipMode": "Always",
                                "nodeSelector": "all()"}}),
            ),
        ];
        for i in 0..12 {
            docs.push(gnp(&format!("p{i:02}"), "all()"));
        }
        for (key, value) in &docs {
            put_json(&mut client, key, value).await;
        }
        // Ignored: not a key the cache knows, or not under /calico/.
        put(
            &mut client,
            "/calico/felix/v2/no-region/host/h1/status",
            "{}",
        )
        .await;
        put(
            &mut client,
            "/calico/ipam/v2/handle/k8s-pod-network.x",
            "{}",
        )
        .await;
        put(&mut client, "/elsewhere/x", "{}").await;
        let revision = current_revision(&mut client).await;

        // Small pages: the listing spans several requests at one revision.
        let mut synced = Synced::start_with(ns.url(), |c| c.page_size = 4);
        synced
            .until("initial sync", |s| s.status().in_sync && s.snapshots == 1)
            .await;
        let store = &synced.store;
        assert_eq!(store.len(), docs.len(), "every known key, nothing else");
        for (key, _) in &docs {
            assert!(store.get(key).is_some(), "{key} missing");
        }
        assert_eq!(store.revision(), revision);
        assert_eq!(store.malformed().count(), 0);
        assert_eq!(store.resources(Kind::GlobalNetworkPolicy).count(), 13);
        let status = synced.status();
        assert_eq!(
            (status.revision, status.reconnects, status.resyncs),
            (revision, 0, 0)
        );
        assert_eq!(status.last_error, None);

        let view = Topology::from_store(store, "h1");
        assert_eq!(view.workloads.len(), 1);
        assert_eq!(view.workloads[0].interface, "calip1");
        assert_eq!(view.workloads[0].ip, Ipv4Addr::new(192, 168, 2, 1));
        assert_eq!(view.workloads[0].id.workload, "default/p1");
        assert_eq!(view.nodes.len(), 2);
        assert_eq!(view.blocks.len(), 2);
    });
}

#[test]
fn watch_delivers_puts_and_deletes_with_their_revisions() {
    etcd_lab::run("watch", |ns: std::sync::Arc<EtcdNs>| async move {
        let mut client = ns.client().await;
        let mut synced = Synced::start(ns.url());
        synced.until("initial sync", |s| s.status().in_sync).await;
        assert!(synced.store.is_empty());

        let a = wep_key("a");
        let created = put_json(&mut client, &a, &wep("a", "h1", "192.168.2.1")).await;
        synced
            .until("a created", |s| s.store.revision_of(&a) == Some(created))
            .await;

        let updated = put_json(&mut client, &a, &wep("a", "h1", "192.168.2.9")).await;
        synced
            .until("a updated", |s| s.store.revision_of(&a) == Some(updated))
            .await;
        let view = Topology::from_store(&synced.store, "h1");
        assert_eq!(view.workloads[0].ip, Ipv4Addr::new(192, 168, 2, 9));
        let last = synced.changes.last().expect("a change");
        assert!(last.key == a && last.old.is_some() && last.new.is_some());

        let deleted = delete(&mut client, &a).await;
        synced
            .until("a deleted", |s| s.store.revision() >= deleted)
            .await;
        assert!(synced.store.get(&a).is_none());
        let last = synced.changes.last().expect("a change");
        assert!(last.key == a && last.old.is_some() && last.new.is_none());

        // A key the cache ignores moves the revision and changes nothing.
        let changes = synced.changes.len();
        let ignored = put(
            &mut client,
            "/calico/felix/v2/no-region/host/h9/status",
            "{}",
        )
        .await;
        synced
            .until("the ignored key", |s| s.store.revision() >= ignored)
            .await;
        assert_eq!(synced.changes.len(), changes);

        // One transaction: one revision, one batch.
        let batches = synced.batches;
        let ops: Vec<TxnOp> = (0..20)
            .map(|i| {
                TxnOp::put(
                    wep_key(&format!("t{i}")),
                    wep(&format!("t{i}"), "h1", &format!("192.168.2.{}", 10 + i)).to_string(),
                    None,
                )
            })
            .collect();
        client.txn(Txn::new().and_then(ops)).await.expect("txn");
        synced
            .until("the transaction", |s| s.store.len() == 20)
            .await;
        assert_eq!(synced.batches, batches + 1);
        assert_eq!(
            Topology::from_store(&synced.store, "h1").workloads.len(),
            20
        );
    });
}

#[test]
fn reconnects_after_etcd_restarts_and_resumes_the_watch_without_relisting() {
    etcd_lab::run("restart", |ns: std::sync::Arc<EtcdNs>| async move {
        let (a, b, c) = (wep_key("a"), wep_key("b"), wep_key("c"));
        let mut client = ns.client().await;
        put_json(&mut client, &a, &wep("a", "h1", "192.168.2.1")).await;
        put_json(&mut client, &b, &wep("b", "h1", "192.168.2.2")).await;
        let mut synced = Synced::start(ns.url());
        synced
            .until("initial sync", |s| s.status().in_sync && s.store.len() == 2)
            .await;

        ns.kill_etcd();
        synced
            .until("the syncer to notice", |s| !s.status().in_sync)
            .await;
        assert!(synced.status().last_error.is_some());
        assert_eq!(synced.store.len(), 2, "the cache keeps its state");

        ns.start_etcd();
        ns.wait_ready().await;
        let mut client = ns.client().await;
        let updated = put_json(&mut client, &a, &wep("a", "h1", "192.168.2.7")).await;
        delete(&mut client, &b).await;
        let created = put_json(&mut client, &c, &wep("c", "h1", "192.168.2.3")).await;
        synced
            .until("the changes", |s| {
                s.status().in_sync
                    && s.store.revision_of(&a) == Some(updated)
                    && s.store.get(&b).is_none()
                    && s.store.revision_of(&c) == Some(created)
            })
            .await;
        let status = synced.status();
        assert!(status.reconnects >= 1, "{status:?}");
        assert_eq!((status.resyncs, synced.snapshots), (0, 1), "no relist");
        assert_eq!(status.last_error, None);
    });
}

#[test]
fn changes_made_during_a_partition_arrive_when_the_watch_resumes() {
    etcd_lab::run("partition", |ns: std::sync::Arc<EtcdNs>| async move {
        let (a, b, c) = (wep_key("a"), wep_key("b"), wep_key("c"));
        let mut client = ns.client().await;
        put_json(&mut client, &a, &wep("a", "h1", "192.168.2.1")).await;
        put_json(&mut client, &b, &wep("b", "h1", "192.168.2.2")).await;
        let proxy = proxy().await;
        let mut synced = Synced::start(proxy.url());
        synced
            .until("initial sync", |s| s.status().in_sync && s.store.len() == 2)
            .await;

        proxy.cut();
        synced
            .until("the syncer to notice", |s| !s.status().in_sync)
            .await;
        let updated = put_json(&mut client, &a, &wep("a", "h1", "192.168.2.7")).await;
        delete(&mut client, &b).await;
        let created = put_json(&mut client, &c, &wep("c", "h1", "192.168.2.3")).await;
        assert_eq!(synced.store.len(), 2, "nothing arrives while cut off");

        proxy.restore();
        synced
            .until("the changes", |s| {
                s.status().in_sync
                    && s.store.revision_of(&a) == Some(updated)
                    && s.store.get(&b).is_none()
                    && s.store.revision_of(&c) == Some(created)
            })
            .await;
        let status = synced.status();
        assert_eq!(
            (status.reconnects, status.resyncs, synced.snapshots),
            (1, 0, 1),
            "resumed, not relisted: {status:?}"
        );
    });
}

#[test]
fn a_compacted_resume_revision_relists_and_drops_what_vanished() {
    etcd_lab::run("compact", |ns: std::sync::Arc<EtcdNs>| async move {
        let (a, b, c, d, e) = (
            wep_key("a"),
            wep_key("b"),
            wep_key("c"),
            wep_key("d"),
            wep_key("e"),
        );
        let mut client = ns.client().await;
        for (key, i) in [(&a, 1), (&b, 2), (&c, 3)] {
            let name = key.rsplit('/').next().unwrap_or_default();
            put_json(
                &mut client,
                key,
                &wep(name, "h1", &format!("192.168.2.{i}")),
            )
            .await;
        }
        let proxy = proxy().await;
        let mut synced = Synced::start(proxy.url());
        synced
            .until("initial sync", |s| s.status().in_sync && s.store.len() == 3)
            .await;
        let before = synced.changes.len();

        proxy.cut();
        synced
            .until("the syncer to notice", |s| !s.status().in_sync)
            .await;
        delete(&mut client, &a).await;
        let updated = put_json(&mut client, &b, &wep("b", "h1", "192.168.2.22")).await;
        put_json(&mut client, &d, &wep("d", "h1", "192.168.2.4")).await;
        put_json(&mut client, &e, &wep("e", "h1", "192.168.2.5")).await;
        let last = delete(&mut client, &e).await;
        client
            .compact(last, Some(CompactionOptions::new().with_physical()))
            .await
            .expect("compact");

        proxy.restore();
        synced
            .until("the relist", |s| {
                s.status().in_sync && s.status().resyncs == 1 && s.store.revision() >= last
            })
            .await;
        let store = &synced.store;
        assert!(
            store.get(&a).is_none(),
            "deleted meanwhile: gone from the cache"
        );
        assert!(store.get(&e).is_none());
        assert_eq!(store.revision_of(&b), Some(updated));
        assert!(store.get(&c).is_some() && store.get(&d).is_some());
        assert_eq!(store.len(), 3);
        assert_eq!(synced.snapshots, 2);
        let changed: Vec<(&str, bool, bool)> = synced.changes[before..]
            .iter()
            .map(|c| (c.key.as_str(), c.old.is_some(), c.new.is_some()))
            .collect();
        assert_eq!(
            changed,
            vec![
                (a.as_str(), true, false),
                (b.as_str(), true, true),
                (d.as_str(), false, true)
            ],
            "the relist reports what changed"
        );
    });
}

/// The malformed values: (key, value), 200 of them over several kinds and reasons.
fn malformed_docs() -> Vec<(String, String)> {
    (0..200)
        .map(|i| {
            let name = format!("bad{i:03}");
            let (key, value) = match i % 10 {
                0 => (wep_key(&name), "{not json".to_owned()),
                1 => {
                    let mut v = wep(&name, "h1", "192.168.9.1");
                    v["spec"]["ipNetworks"] = json!("192.168.9.1/32");
                    (wep_key(&name), v.to_string())
                }
                2 => {
                    let (key, v) = gnp(&name, "app == ");
                    (key, v.to_string())
                }
                3 => (
                    wep_key(&name),
                    wep(&name, "h1", "192.168.300.1").to_string(),
                ),
                4 => {
                    let (key, v) = node(&name, "ten");
                    (key, v.to_string())
                }
                5 => {
                    let (key, mut v) = block(&format!("10.{i}.0.0-30"), "10.0.0.0/30", "h1");
                    v["cidr"] = json!("10.0.0.0/30");
                    (key, v.to_string())
                }
                6 => (
                    format!("/calico/ipam/v2/host/h1/ipv4/block/10.{i}.0.0-30"),
                    r#"{"state":"confirmed","deleted":"no"}"#.to_owned(),
                ),
                7 => (
                    wep_key(&name),
                    wep("other", "h1", "192.168.9.7").to_string(),
                ),
                8 => (
                    format!("{RES}/networkpolicies/default/{name}"),
                    json!({"kind": "NetworkPolicy",
                           "metadata": {"name": name, "namespace": "default"},
                           "spec": {"ingress": [{"action": "Allow",
                                                 "source": {"selector": "has(x"}}]}})
                    .to_string(),
                ),
                _ => (
                    format!("{RES}/ippools/{name}"),
                    json!({"kind": "IPPool", "metadata": {"name": name},
                           "spec": {"cidr": "10.0.0.0/99"}})
                    .to_string(),
                ),
            };
            (key, value)
        })
        .collect()
}

/// The valid values: 200 of them over several kinds.
fn valid_docs() -> Vec<(String, String)> {
    (0..200)
        .map(|i| {
            let name = format!("good{i:03}");
            match i % 4 {
                0 | 1 => (
                    wep_key(&name),
                    wep(&name, "h1", &format!("192.168.{}.{}", i / 200, i % 200 + 1)).to_string(),
                ),
                2 => {
                    let (key, v) = gnp(&name, "has(app)");
                    (key, v.to_string())
                }
                _ => {
                    let (key, v) = block(
                        &format!("10.200.{i}.0-30"),
                        &format!("10.200.{i}.0/30"),
                        "h1",
                    );
                    (key, v.to_string())
                }
            }
        })
        .collect()
}

#[test]
fn malformed_values_are_logged_once_counted_and_skipped_while_the_rest_applies() {
    etcd_lab::run("malformed", |ns: std::sync::Arc<EtcdNs>| async move {
        let (logs, _guard) = Logs::capture();
        let valid = valid_docs();
        let malformed = malformed_docs();
        let mut client = ns.client().await;
        // Half of each before the listing, the rest through the watch, interleaved.
        let (valid_early, valid_late) = valid.split_at(100);
        let (bad_early, bad_late) = malformed.split_at(100);
        for ((k1, v1), (k2, v2)) in valid_early.iter().zip(bad_early) {
            put(&mut client, k1, v1.as_str()).await;
            put(&mut client, k2, v2.as_str()).await;
        }
        let proxy = proxy().await;
        let mut synced = Synced::start(proxy.url());
        synced.until("initial sync", |s| s.status().in_sync).await;
        for ((k1, v1), (k2, v2)) in valid_late.iter().zip(bad_late) {
            put(&mut client, k1, v1.as_str()).await;
            put(&mut client, k2, v2.as_str()).await;
        }
        let total = |s: &Synced| -> (u64, u64) {
            s.store
                .malformed_counts()
                .values()
                .fold((0, 0), |(c, t), m| (c + m.current, t + m.total))
        };
        synced
            .until("every value", |s| {
                s.store.len() == 200 && total(s) == (200, 200)
            })
            .await;
        for (key, _) in &valid {
            assert!(synced.store.get(key).is_some(), "{key} not applied");
        }
        for (key, _) in &malformed {
            assert!(synced.store.get(key).is_none(), "{key} applied");
        }
        assert_eq!(
            synced.malformed(WEP),
            (80, 80),
            "4 of every 10 are endpoints"
        );
        let logged_once = |logs: &Logs| {
            let lines = logs.lines();
            for (key, _) in &malformed {
                let needle = format!("key={key} ");
                let n = lines
                    .iter()
                    .filter(|l| l.contains("WARN") && l.contains(&needle))
                    .count();
                assert_eq!(n, 1, "{key} logged {n} times");
            }
        };
        logged_once(&logs);
        let reasons: Vec<String> = synced
            .store
            .malformed()
            .map(|(_, m)| m.reason.clone())
            .collect();
        for part in [
            "not valid JSON",
            "spec.ipNetworks",
            "bad selector",
            "spec.bgp.ipv4Address",
            "not the key's",
            "expected a boolean",
            "metadata.name",
            "spec.ingress[0].source.selector",
            "spec.cidr",
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(part)),
                "no reason mentions {part:?}: {reasons:?}"
            );
        }

        // A relist reads every value again: nothing is counted or logged twice.
        force_relist(&proxy, &mut synced, &mut client).await;
        synced
            .until("the relist", |s| {
                s.status().in_sync && s.status().resyncs == 1
            })
            .await;
        assert_eq!(synced.store.len(), 200);
        assert_eq!(total(&synced), (200, 200));
        logged_once(&logs);

        // Malformed -> valid applies; valid -> malformed removes the old value.
        let (fixed, _) = &malformed[0];
        put_json(&mut client, fixed, &wep("bad000", "h1", "192.168.9.9")).await;
        let (broken, _) = &valid[0];
        put(&mut client, broken, "{}").await;
        synced
            .until("the fix and the breakage", |s| {
                s.store.get(fixed).is_some() && s.store.get(broken).is_none()
            })
            .await;
        assert!(matches!(synced.store.get(fixed), Some(Entry::Resource(_))));
        assert_eq!(total(&synced), (200, 201));
        let replaced = logs
            .lines()
            .iter()
            .filter(|l| l.contains(&format!("key={broken} ")) && l.contains("previous valid value"))
            .count();
        assert_eq!(replaced, 1);
    });
}

#[test]
fn a_listing_far_larger_than_4_mib_is_read_by_the_syncer_and_the_tools() {
    etcd_lab::run("large", |ns: std::sync::Arc<EtcdNs>| async move {
        let mut client = ns.client().await;
        // Three values of 1.5 MB (each under etcd's default 1.5 MiB request limit): one page of
        // the listing holds 4.5 MB, above gRPC's default 4 MiB.
        let big = |i: usize| format!("{{\"padding\":\"{}\"}}", "x".repeat(1_500_000 + i));
        for i in 0..3 {
            put(&mut client, &format!("/calico/big/{i}"), big(i)).await;
        }
        put_json(&mut client, &wep_key("a"), &wep("a", "h1", "10.65.0.2")).await;
        let mut synced = Synced::start(ns.url());
        synced
            .until("a listing with the large values", |s| {
                s.status().in_sync && s.store.len() == 1
            })
            .await;
        assert_eq!(synced.snapshots, 1);
        assert!(synced.store.get(&wep_key("a")).is_some());
        // The one-request listings of the CLI, IPAM and the CNI plugin read through the same
        // client settings.
        let response = calico::etcd_access::kv(&client)
            .get(
                "/calico/",
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .expect("list /calico/ in one response");
        assert_eq!(response.kvs().len(), 4);
        let plain = client
            .get(
                "/calico/",
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await;
        assert!(
            plain.is_err_and(|e| e.to_string().contains("too large")),
            "a client with gRPC's default limit fails: the test exercises the limit"
        );
    });
}

#[test]
fn keys_that_are_not_utf8_are_counted_and_logged_once() {
    const NON_UTF8: EntryKind = EntryKind::NonUtf8Key;
    etcd_lab::run("nonutf8", |ns: std::sync::Arc<EtcdNs>| async move {
        let (logs, _guard) = Logs::capture();
        let mut client = ns.client().await;
        let listed = b"/calico/resources/v3/projectcalico.org/nodes/\xffa".to_vec();
        let watched = b"/calico/resources/v3/projectcalico.org/nodes/\xfeb".to_vec();
        put(&mut client, "/calico/x", "").await;
        client.put(listed.clone(), "{}", None).await.expect("put");
        put_json(&mut client, &wep_key("a"), &wep("a", "h1", "10.65.0.2")).await;
        let proxy = proxy().await;
        let mut synced = Synced::start(proxy.url());
        synced
            .until("the listed key counted", |s| {
                s.status().in_sync && s.malformed(NON_UTF8) == (1, 1)
            })
            .await;
        assert!(
            synced.store.get(&wep_key("a")).is_some(),
            "the rest applies"
        );
        client.put(watched.clone(), "{}", None).await.expect("put");
        synced
            .until("the watched key counted", |s| {
                s.malformed(NON_UTF8) == (2, 2)
            })
            .await;
        // A relist reads both again: neither is counted or logged twice.
        force_relist(&proxy, &mut synced, &mut client).await;
        synced
            .until("relisted", |s| s.status().in_sync && s.snapshots == 2)
            .await;
        synced
            .until("the counts after the relist", |s| {
                s.malformed(NON_UTF8) == (2, 2)
            })
            .await;
        client.delete(watched.clone(), None).await.expect("delete");
        synced
            .until("the deletion", |s| s.malformed(NON_UTF8) == (1, 2))
            .await;
        let lines = logs.lines();
        for key in [&listed, &watched] {
            let needle = format!("key={} ", key.escape_ascii());
            let n = lines
                .iter()
                .filter(|l| l.contains("WARN") && l.contains(&needle))
                .count();
            assert_eq!(n, 1, "{needle} logged {n} times: {lines:?}");
        }
    });
}

#[test]
fn the_endpoint_etcd_created_first_holds_a_shared_interface() {
    etcd_lab::run("conflict", |ns: std::sync::Arc<EtcdNs>| async move {
        let mut client = ns.client().await;
        let pod = wep("zpod", "h1", "10.65.0.2");
        put_json(&mut client, &wep_key("zpod"), &pod).await;
        // Written later, sorting first, naming the pod's interface.
        let mut intruder = wep("a", "h1", "10.65.0.9");
        intruder["spec"]["interfaceName"] = json!("calizpod");
        put_json(&mut client, &wep_key("a"), &intruder).await;
        // The pod's endpoint is modified afterwards: it still holds the interface.
        let mut pod_again = pod.clone();
        pod_again["metadata"]["labels"]["x"] = json!("y");
        put_json(&mut client, &wep_key("zpod"), &pod_again).await;
        let mut synced = Synced::start(ns.url());
        synced
            .until("both endpoints", |s| {
                s.status().in_sync && s.store.len() == 2
            })
            .await;
        let view = Topology::from_store(&synced.store, "h1");
        let held: Vec<&str> = view.workloads.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(held, [wep_key("zpod")]);
        assert_eq!(view.conflicts.len(), 1);
        assert_eq!(view.conflicts[0].loser.key, wep_key("a"));
        delete(&mut client, &wep_key("zpod")).await;
        synced
            .until("the holder gone", |s| s.store.len() == 1)
            .await;
        let view = Topology::from_store(&synced.store, "h1");
        assert_eq!(view.workloads.len(), 1, "the waiting endpoint takes over");
        assert_eq!(view.workloads[0].key, wep_key("a"));
        assert!(view.conflicts.is_empty());
    });
}
