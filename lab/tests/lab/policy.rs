//! Calico policy in the lab: enforcement timing, replies of allowed flows, profiles and the
//! example policies, with `felix policy dump`/`explain` agreeing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::felix;
use lab::felix::policy::{Query, RuleRef};
use lab::{EchoServer, Iperf, Lab, calico, policy, probe};

use crate::support::{
    IPERF_PORT, PINGS, POLICY_DEADLINE, PROBE_GAP, TIMING_HANDSHAKE, example_outcomes_wrong,
    poll_until, with_lab,
};

/// `felix policy explain` of ICMP echo from `from` to `to`.
fn icmp_query(from: &lab::PodInfo, to: &lab::PodInfo) -> Query<'static> {
    Query {
        from: from.ip,
        to: to.ip,
        proto: "icmp",
        port: None,
    }
}

/// `felix policy explain` of a TCP packet from `from` to `to`:`port`.
fn tcp_query(from: &lab::PodInfo, to: &lab::PodInfo, port: u16) -> Query<'static> {
    Query {
        from: from.ip,
        to: to.ip,
        proto: "tcp",
        port: Some(port),
    }
}

/// `examples/policy/default-deny.yaml` applied while h1-p1 talks to h2-p1: new TCP connections
/// (each one a new flow) stop within a second of `felix apply`, and so do new pings; a connection
/// opened before goes on (conntrack is checked before policy). `felix delete` of the same file
/// lets new connections through again within a second. Both times are printed.
#[test]
fn policy_deny_stops_new_flows_within_a_second_and_delete_resumes_them() -> Result<()> {
    with_lab(|lab| {
        let client = lab.pod(1, 1)?.clone();
        let server = lab.pod(2, 1)?.clone();
        let _echo = EchoServer::start(&server.ns, IPERF_PORT)?;
        ensure!(
            lab.tcp_works(&client, &server, IPERF_PORT)?,
            "no TCP {} -> {} before any policy",
            client.name,
            server.name
        );
        let mut open = probe::connect(&client.ns, server.ip, IPERF_PORT, Duration::from_secs(1))?
            .context("opening the long-lived connection")?;
        probe::exchange(&mut open, b"before\n", Duration::from_secs(2))?;

        let file = policy::example("default-deny.yaml")?;
        let start = Instant::now();
        lab.apply(&file)?;
        let apply_took = start.elapsed();
        let denied = probe::time_until(start, false, Duration::from_secs(5), PROBE_GAP, || {
            probe::tcp_works_within(&client.ns, server.ip, IPERF_PORT, TIMING_HANDSHAKE)
        })?;
        println!(
            "deny: `felix apply` took {apply_took:?}; new TCP connections {} -> {} denied {denied} after it started",
            client.name, server.name
        );
        ensure!(
            denied.after < POLICY_DEADLINE,
            "new connections were denied only after {denied}"
        );
        ensure!(
            !lab.ping_once(&client, &server)?,
            "a new ping got through the deny"
        );
        probe::exchange(&mut open, b"during\n", Duration::from_secs(2))
            .context("the connection opened before the deny was cut")?;

        let start = Instant::now();
        lab.delete(&file)?;
        let delete_took = start.elapsed();
        let resumed = probe::time_until(start, true, Duration::from_secs(5), PROBE_GAP, || {
            probe::tcp_works_within(&client.ns, server.ip, IPERF_PORT, TIMING_HANDSHAKE)
        })?;
        println!(
            "resume: `felix delete` took {delete_took:?}; new TCP connections allowed again {resumed} after it started"
        );
        ensure!(
            resumed.after < POLICY_DEADLINE,
            "new connections came back only after {resumed}"
        );
        ensure!(lab.ping_once(&client, &server)?, "ping after the delete");
        probe::exchange(&mut open, b"after\n", Duration::from_secs(2))?;
        Ok(())
    })
}

/// All ingress to h1-p1 denied (a temporary GlobalNetworkPolicy with one Deny rule).
const DENY_INGRESS_H1_P1: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-ingress-h1-p1
spec:
  selector: app == 'h1-p1'
  types: [Ingress]
  ingress:
    - action: Deny
"#;

/// h1-p1 may open TCP 5201 to h2-p1 (default-deny + allow-iperf3 on h2-p1) while every ingress
/// to h1-p1 is denied: the replies of h1-p1's connections pass (an echo of 1 MiB, and iperf3
/// with the server sending), but h2-p1 cannot open a connection or ping to h1-p1, and h1-p2 (not
/// selected by allow-iperf3) cannot reach h2-p1:5201. `felix policy explain` agrees.
#[test]
fn policy_replies_of_an_allowed_flow_pass_but_reverse_flows_are_denied() -> Result<()> {
    with_lab(|lab| {
        let a = lab.pod(1, 1)?.clone();
        let b = lab.pod(2, 1)?.clone();
        let other = lab.pod(1, 2)?.clone();
        for name in ["default-deny.yaml", "allow-iperf3.yaml"] {
            lab.apply(&policy::example(name)?)?;
        }
        lab.apply_yaml("deny-ingress-h1-p1", DENY_INGRESS_H1_P1)?;
        let wait = Duration::from_secs(5);
        lab.wait_programmed(1, &["deny-ingress-h1-p1"], true, wait)?;
        lab.wait_programmed(2, &["default-deny", "default/allow-iperf3"], true, wait)?;

        // The server sends: the data flows towards h1-p1, against its ingress policy.
        let reverse = lab.iperf(&a, &b, Iperf::TcpReverse { seconds: 1 })?;
        ensure!(
            reverse.received_bytes > 0,
            "iperf3 -R {} -> {}: {}",
            a.name,
            b.name,
            reverse.summary()
        );
        println!("iperf3 -R {} -> {}: {}", a.name, b.name, reverse.summary());

        let _echo_b = EchoServer::start(&b.ns, IPERF_PORT)?;
        let _echo_a = EchoServer::start(&a.ns, IPERF_PORT)?;
        let mut flow = probe::connect(&a.ns, b.ip, IPERF_PORT, Duration::from_secs(1))?
            .context("the allowed connection h1-p1 -> h2-p1:5201 did not open")?;
        probe::exchange(&mut flow, &vec![0x5a; 1 << 20], Duration::from_secs(5))
            .context("1 MiB echoed on the allowed connection")?;
        let ct = lab.conntrack(1)?;
        ensure!(
            ct.flows("tcp", a.ip, b.ip, IPERF_PORT)
                .iter()
                .any(|f| f.packets_forward > 0 && f.packets_reverse > 0),
            "no flow {} -> {}:{IPERF_PORT} with packets both ways: {:?}",
            a.ip,
            b.ip,
            ct.conntrack
        );

        ensure!(
            !lab.tcp_works(&b, &a, IPERF_PORT)?,
            "h2-p1 opened a connection to h1-p1"
        );
        ensure!(!lab.ping_once(&b, &a)?, "h2-p1 pinged h1-p1");
        ensure!(
            !lab.tcp_works(&other, &b, IPERF_PORT)?,
            "h1-p2 reached h2-p1:{IPERF_PORT}, which allows h1-p1 only"
        );
        probe::exchange(&mut flow, b"still\n", Duration::from_secs(2))?;

        let allowed = lab.explain(tcp_query(&a, &b, IPERF_PORT))?;
        let ingress = allowed.check("Ingress").context("ingress check")?;
        ensure!(
            allowed.allowed
                && ingress.by == RuleRef::policy("default", "default/allow-iperf3", "Ingress", 0),
            "explain {} -> {}:{IPERF_PORT}: {allowed:?}",
            a.name,
            b.name
        );
        let denied = lab.explain(tcp_query(&b, &a, IPERF_PORT))?;
        ensure!(
            !denied.allowed
                && denied.deciding().map(|c| &c.by)
                    == Some(&RuleRef::policy(
                        "default",
                        "deny-ingress-h1-p1",
                        "Ingress",
                        0
                    )),
            "explain {} -> {}:{IPERF_PORT}: {denied:?}",
            b.name,
            a.name
        );
        Ok(())
    })
}

/// A pod that no policy selects is judged by its profile (kns.default allows); with its
/// WorkloadEndpoint rewritten to carry the `deny-all` profile (examples/policy) new flows in and
/// out are denied by that profile's rule; with no profile at all, by felix's default deny. The
/// dump shows the profiles and counts the deciding rule; explain names it; restoring kns.default
/// lets traffic through again.
#[test]
fn policy_profiles_decide_without_policies_and_no_profile_is_default_deny() -> Result<()> {
    with_lab(|lab| {
        let client = lab.pod(1, 2)?.clone();
        let target = lab.pod(2, 2)?.clone();
        // The precondition, not the subject: a first ping may wait on ARP in a busy lab.
        let first = ping_works_within_5s(lab, &client, &target).context("ping with kns.default")?;
        println!("kns.default: ping works after {first}");
        let e = lab.explain(icmp_query(&client, &target))?;
        let kns = RuleRef::Profile {
            profile: calico::NAMESPACE_PROFILE.into(),
            direction: "Ingress".into(),
            index: 0,
        };
        ensure!(
            e.allowed && e.check("Ingress").map(|c| &c.by) == Some(&kns),
            "explain with kns.default: {e:?}"
        );

        lab.apply(&policy::example("profile-deny-all.yaml")?)?;
        lab.set_profiles(&target, &["deny-all"])?;
        let deny_all = RuleRef::Profile {
            profile: "deny-all".into(),
            direction: "Ingress".into(),
            index: 0,
        };
        let (row, took) = poll_until(Duration::from_secs(5), "deny-all programmed", || {
            let dump = lab.policy_dump(2, Some(&target.cali))?;
            Ok(match dump.row(&target.cali, "Ingress") {
                Some(r) if r.profiles == ["deny-all"] => Ok(r.clone()),
                other => Err(format!("{other:?}")),
            })
        })?;
        println!("{} carries deny-all after {took:?}: {row:?}", target.name);
        let before = lab.policy_dump(2, Some(&target.cali))?;
        ensure!(!lab.ping_once(&client, &target)?, "ping into deny-all");
        ensure!(!lab.ping_once(&target, &client)?, "ping out of deny-all");
        let after = lab.policy_dump(2, Some(&target.cali))?;
        let grew = after
            .packets(&target.cali, "Ingress", &deny_all)
            .unwrap_or(0)
            - before
                .packets(&target.cali, "Ingress", &deny_all)
                .unwrap_or(0);
        ensure!(
            grew >= 1,
            "deny-all ingress rule 0 counted {grew}: {after:?}"
        );
        let e = lab.explain(icmp_query(&client, &target))?;
        ensure!(
            !e.allowed && e.deciding().map(|c| &c.by) == Some(&deny_all),
            "explain with deny-all: {e:?}"
        );

        lab.set_profiles(&target, &[])?;
        let default_deny = RuleRef::DefaultDeny {
            direction: "Ingress".into(),
        };
        poll_until(Duration::from_secs(5), "no profile programmed", || {
            let dump = lab.policy_dump(2, Some(&target.cali))?;
            Ok(match dump.row(&target.cali, "Ingress") {
                Some(r) if r.profiles.is_empty() && r.problem.is_none() => Ok(()),
                other => Err(format!("{other:?}")),
            })
        })?;
        let before = lab.policy_dump(2, Some(&target.cali))?;
        ensure!(!lab.ping_once(&client, &target)?, "ping with no profile");
        let after = lab.policy_dump(2, Some(&target.cali))?;
        let grew = after
            .packets(&target.cali, "Ingress", &default_deny)
            .unwrap_or(0)
            - before
                .packets(&target.cali, "Ingress", &default_deny)
                .unwrap_or(0);
        ensure!(grew >= 1, "default deny counted {grew}: {after:?}");
        let e = lab.explain(icmp_query(&client, &target))?;
        ensure!(
            !e.allowed && e.deciding().map(|c| &c.by) == Some(&default_deny),
            "explain with no profile: {e:?}"
        );

        lab.set_profiles(&target, &[calico::NAMESPACE_PROFILE])?;
        let back = ping_works_within_5s(lab, &client, &target)?;
        println!("kns.default restored: ping works after {back}");
        Ok(())
    })
}

/// Single pings from `from` to `to` until one is answered, for up to 5 s; how long it took.
fn ping_works_within_5s(
    lab: &Lab,
    from: &lab::PodInfo,
    to: &lab::PodInfo,
) -> Result<probe::Change> {
    probe::time_until(
        Instant::now(),
        true,
        Duration::from_secs(5),
        PROBE_GAP,
        || lab.ping_once(from, to),
    )
}

/// examples/policy/*.yaml applied together behave as their headers say (a matrix of pings and
/// TCP connections); the Deny rule of deny-icmp-from-h1-p1 counts each denied echo request in
/// `felix bpf policy dump`; `felix policy explain` names the deciding policy and rule for allowed
/// and denied packets (in the default tier, at the end of a tier, and in tier security); deleting
/// the files brings every flow back.
#[test]
fn policy_examples_behave_as_documented_and_dump_and_explain_agree() -> Result<()> {
    with_lab(|lab| {
        let p11 = lab.pod(1, 1)?.clone();
        let p12 = lab.pod(1, 2)?.clone();
        let p21 = lab.pod(2, 1)?.clone();
        let p22 = lab.pod(2, 2)?.clone();
        let _echo = [
            EchoServer::start(&p21.ns, IPERF_PORT)?,
            EchoServer::start(&p22.ns, IPERF_PORT)?,
        ];
        let files = policy::examples()?;
        ensure!(files.len() >= 5, "examples: {files:?}");
        for file in &files {
            print!("{}", lab.apply(file)?);
        }
        let (h1_policies, h2_policies) = (
            ["deny-icmp-from-h1-p1", "security.isolate-h2-p2"],
            [
                "default-deny",
                "default/allow-iperf3",
                "security.isolate-h2-p2",
            ],
        );
        let wait = Duration::from_secs(5);
        lab.wait_programmed(1, &h1_policies, true, wait)?;
        lab.wait_programmed(2, &h2_policies, true, wait)?;
        let wrong = example_outcomes_wrong(lab, false)?;
        ensure!(wrong.is_empty(), "with the examples: {wrong:#?}");

        // The Deny rule's counter grows by the denied echo requests (each one a first packet).
        let deny_icmp = RuleRef::policy("default", "deny-icmp-from-h1-p1", "Egress", 0);
        let count =
            |dump: &felix::policy::PolicyDump| dump.packets(&p11.cali, "Egress", &deny_icmp);
        let before = lab.policy_dump(1, Some(&p11.cali))?;
        ensure!(count(&before).is_some(), "rule not in the dump: {before:?}");
        let (stats, text) = lab.ping_from(&p11.ns, p21.ip, PINGS, &["-W", "1"])?;
        ensure!(stats.received == 0, "pings got through: {text}");
        let after = lab.policy_dump(1, Some(&p11.cali))?;
        let grew = count(&after).unwrap_or(0) - count(&before).unwrap_or(0);
        println!(
            "{deny_icmp}: {} -> {} packets after {PINGS} denied pings",
            count(&before).unwrap_or(0),
            count(&after).unwrap_or(0)
        );
        ensure!(
            grew >= u64::from(PINGS),
            "the deny rule counted {grew} of {PINGS} denied pings"
        );
        println!("{}", lab.policy_dump_table(1, Some(&p11.cali))?);

        // explain: the deciding policy and rule, allowed and denied.
        let cases = [
            (icmp_query(&p11, &p21), false, deny_icmp.clone()),
            (
                tcp_query(&p11, &p21, IPERF_PORT),
                true,
                RuleRef::policy("default", "default/allow-iperf3", "Ingress", 0),
            ),
            (
                icmp_query(&p12, &p21),
                false,
                RuleRef::EndOfTier {
                    tier: "default".into(),
                    direction: "Ingress".into(),
                },
            ),
            (
                tcp_query(&p12, &p22, 80),
                false,
                RuleRef::policy("security", "security.isolate-h2-p2", "Egress", 0),
            ),
            (
                icmp_query(&p12, &p11),
                true,
                RuleRef::Profile {
                    profile: calico::NAMESPACE_PROFILE.into(),
                    direction: "Ingress".into(),
                    index: 0,
                },
            ),
        ];
        for (query, allowed, by) in cases {
            let e = lab.explain(query)?;
            ensure!(
                e.allowed == allowed && e.deciding().map(|c| &c.by) == Some(&by),
                "explain {query:?}: expected allowed={allowed} by {by}, got {e:#?}"
            );
        }
        let allowed_check = lab.explain(tcp_query(&p11, &p21, IPERF_PORT))?;
        ensure!(
            allowed_check.check("Egress").map(|c| &c.by)
                == Some(&RuleRef::policy(
                    "default",
                    "deny-icmp-from-h1-p1",
                    "Egress",
                    1
                )),
            "the egress of an allowed TCP packet: {allowed_check:#?}"
        );
        print!("{}", lab.explain_text(icmp_query(&p11, &p21))?);

        for file in files.iter().rev() {
            print!("{}", lab.delete(file)?);
        }
        lab.wait_programmed(1, &h1_policies, false, wait)?;
        lab.wait_programmed(2, &h2_policies, false, wait)?;
        let wrong = example_outcomes_wrong(lab, true)?;
        ensure!(wrong.is_empty(), "after deleting the examples: {wrong:#?}");
        Ok(())
    })
}

/// A named port matches what the pod declares under `spec.ports`: h2-p1 declares http (TCP
/// 8080) and metrics (TCP 9090); its ingress policy allows `ports: [http]` and denies `ports:
/// [metrics]`, so h1-p1 reaches 8080 and not 9090. Then h1-p1's egress policy denies `ports:
/// [http]` (the remote side: h2-p1's address with its http number) and 8080 is closed too.
#[test]
fn policy_named_ports_match_the_ports_pods_declare() -> Result<()> {
    with_lab(|lab| {
        let client = lab.pod(1, 1)?.clone();
        let server = lab.pod(2, 1)?.clone();
        lab.set_named_ports(&server, &[("http", "TCP", 8080), ("metrics", "TCP", 9090)])?;
        let _http = EchoServer::start(&server.ns, 8080)?;
        let _metrics = EchoServer::start(&server.ns, 9090)?;
        let ingress = format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: named-in
spec:
  selector: app == '{}'
  types: [Ingress]
  ingress:
    - {{action: Deny, protocol: TCP, destination: {{ports: [metrics]}}}}
    - {{action: Allow, protocol: TCP, destination: {{ports: [http]}}}}
",
            calico::app_label(&server)
        );
        lab.apply_yaml("named-in", &ingress)?;
        lab.wait_programmed(2, &["named-in"], true, Duration::from_secs(5))?;
        let ((), open) = poll_until(Duration::from_secs(5), "http (8080) allowed", || {
            Ok(if lab.tcp_works(&client, &server, 8080)? {
                Ok(())
            } else {
                Err("8080 closed".to_string())
            })
        })?;
        println!(
            "{} -> {}:8080 (http) allowed after {open:?}",
            client.name, server.name
        );
        ensure!(
            !lab.tcp_works(&client, &server, 9090)?,
            "{} reached {}:9090, a named-port Deny (metrics)",
            client.name,
            server.name
        );
        let e = lab.explain(tcp_query(&client, &server, 9090))?;
        ensure!(
            !e.allowed
                && e.deciding().map(|c| &c.by)
                    == Some(&RuleRef::policy("default", "named-in", "Ingress", 0)),
            "explain {}:9090: {e:?}",
            server.name
        );

        let egress = format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: named-out
spec:
  selector: app == '{}'
  types: [Egress]
  egress:
    - {{action: Deny, protocol: TCP, destination: {{ports: [http]}}}}
    - {{action: Allow}}
",
            calico::app_label(&client)
        );
        lab.apply_yaml("named-out", &egress)?;
        lab.wait_programmed(1, &["named-out"], true, Duration::from_secs(5))?;
        let ((), closed) = poll_until(Duration::from_secs(5), "http (8080) denied", || {
            Ok(if lab.tcp_works(&client, &server, 8080)? {
                Err("8080 open".to_string())
            } else {
                Ok(())
            })
        })?;
        println!(
            "{} -> {}:8080 denied by its egress after {closed:?}",
            client.name, server.name
        );
        let e = lab.explain(tcp_query(&client, &server, 8080))?;
        ensure!(
            !e.allowed
                && e.deciding().map(|c| &c.by)
                    == Some(&RuleRef::policy("default", "named-out", "Egress", 0)),
            "explain {}:8080: {e:?}",
            server.name
        );
        Ok(())
    })
}
