//! felix-cni driven on a BPF-mode lab exactly as a container runtime drives it (see
//! `lab::cni`): new pod namespaces on both hosts wired by ADD, felix attaching its
//! programs to the new `cali*` interfaces, traffic with the lab's own pods through the BPF
//! dataplane under a policy selecting the new pod's labels, CHECK, DEL (twice) and felix letting
//! the endpoint go; and the [`CniPod`] guard undoing an ADD when a test stops half-way.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::cni::{AddResult, CniPod};
use lab::felix::{self, ipam as felix_ipam};
use lab::{EchoServer, Iperf, Lab, PodInfo, ipam, kroutes, names};
use serde_json::Value;

use crate::support::{IPERF_PORT, PINGS, ip_in, poll_until, with_lab};

/// How long felix may take to program a new pod (and to forget a deleted one).
const FELIX_DEADLINE: Duration = Duration::from_secs(10);
/// How long new flows may take to be denied (or allowed again) after a policy change.
const POLICY_DEADLINE: Duration = Duration::from_secs(3);
/// How often felix's state is sampled while waiting for it (the resolution of the figures).
const SAMPLE: Duration = Duration::from_millis(25);

/// Ingress deny for the pod felix-cni wires on h1, selected by the label given through
/// `args.cni.labels`.
const DENY_INGRESS_CNI_H1: &str = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-ingress-cni-h1
spec:
  order: 2000
  selector: app == 'cni-h1'
  types:
    - Ingress
";

/// Polls `check` every [`SAMPLE`] until it reports nothing missing; the time it took.
fn wait_for(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<String>>,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let missing = match check() {
            Ok(None) => return Ok(start.elapsed()),
            Ok(Some(missing)) => missing,
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            start.elapsed() < timeout,
            "not {what} after {timeout:?}: {missing}"
        );
        std::thread::sleep(SAMPLE);
    }
}

/// Interface names in namespace `ns`.
fn links(ns: &str) -> Result<Vec<String>> {
    let text = ip_in(ns, &["-j", "link", "show"])?;
    let links: Vec<Value> = serde_json::from_str(&text).context("parsing ip -j link")?;
    Ok(links
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect())
}

/// What felix on host `n` still lacks for the pod on `cali` with `ip`: programs on `cali` (TC
/// both ways), the endpoint in its map and its `/32 dev cali proto 80` kernel route.
fn felix_missing(lab: &Lab, n: u8, cali: &str, ip: Ipv4Addr) -> Result<Option<String>> {
    let mut missing = Vec::new();
    let ifaces = felix::ifaces(lab.felix_bin(), &lab.node(n))?;
    if !ifaces.all_attached(&[cali]) {
        missing.push(format!("programs on {cali}"));
    }
    match lab.endpoints(n)?.by_ip(ip) {
        Some(ep) if ep.interface == cali => {}
        other => missing.push(format!("endpoint {ip} on {cali} (have {other:?})")),
    }
    let routes = lab.kernel_routes(n)?;
    let route = kroutes::find(&routes, &format!("{ip}/32"));
    if !route.is_some_and(|r| r.dev.as_deref() == Some(cali) && r.is_felix()) {
        missing.push(format!(
            "route {ip}/32 dev {cali} proto 80 (have {route:?})"
        ));
    }
    Ok((!missing.is_empty()).then(|| missing.join("; ")))
}

/// What felix on host `n` still holds of a deleted pod: programs listed on `cali`, the
/// endpoint of `ip`, a kernel route to it.
fn felix_leftovers(lab: &Lab, n: u8, cali: &str, ip: Ipv4Addr) -> Result<Option<String>> {
    let mut left = Vec::new();
    if felix::ifaces(lab.felix_bin(), &lab.node(n))?
        .interfaces
        .iter()
        .any(|i| i.name == cali)
    {
        left.push(format!("interface {cali}"));
    }
    if let Some(ep) = lab.endpoints(n)?.by_ip(ip) {
        left.push(format!("endpoint {ep:?}"));
    }
    if let Some(r) = kroutes::find(&lab.kernel_routes(n)?, &format!("{ip}/32")) {
        left.push(format!("route {r:?}"));
    }
    Ok((!left.is_empty()).then(|| left.join("; ")))
}

/// The handle `felix ipam show` lists at `ip` (`None`: the address is free).
fn ipam_holder(lab: &Lab, ip: Ipv4Addr) -> Result<Option<String>> {
    let blocks = felix_ipam::show(lab.felix_bin(), &lab.host(1)?.ns, &lab.state().etcd_url)?;
    for block in &blocks {
        if ipam::in_cidr(ip, &block.cidr)? {
            let (net, _) = block.cidr.split_once('/').context("a CIDR")?;
            let net: Ipv4Addr = net.parse()?;
            let ordinal = usize::try_from(u32::from(ip) - u32::from(net))?;
            return Ok(block.handle_at(ordinal).map(str::to_owned));
        }
    }
    anyhow::bail!("no block holds {ip}: {blocks:?}")
}

/// Everything one ADD must have made, checked where it lives: the result JSON, the pod's
/// interface, address and routes, the host veth with Calico's MAC, the WorkloadEndpoint with
/// the labels from `args.cni.labels`, and the IPAM allocation under the container's handle.
fn check_added(lab: &Lab, pod: &CniPod, result: &AddResult, app: &str) -> Result<Ipv4Addr> {
    let cali = pod.cali();
    let problems = result.problems(&cali, &pod.netns);
    ensure!(problems.is_empty(), "ADD result {result:?}: {problems:?}");
    let ip = result.pod_ip()?;
    let host = lab.host(pod.host)?;
    ensure!(
        ipam::in_cidr(ip, &host.block)?,
        "{ip} is outside {}'s block {}",
        host.node,
        host.block
    );
    ensure!(
        !lab.state().pods().any(|p| p.ip == ip),
        "{ip} is already a lab pod's"
    );
    ensure!(
        cali.len() == 15 && cali.starts_with("cali"),
        "host veth name {cali}"
    );

    let addrs = ip_in(&pod.name, &["-4", "-o", "addr", "show", "dev", "eth0"])?;
    ensure!(
        addrs.contains(&format!("inet {ip}/32 ")),
        "eth0 in {}: {addrs}",
        pod.name
    );
    let routes = kroutes::show(&pod.name)?;
    let on_eth0 = |r: &&kroutes::KernelRoute| r.dev.as_deref() == Some("eth0");
    ensure!(
        routes
            .iter()
            .filter(on_eth0)
            .any(|r| r.dst == "default" && r.gateway == Some(names::GATEWAY)),
        "no default via {} dev eth0 in {}: {routes:?}",
        names::GATEWAY,
        pod.name
    );
    ensure!(
        routes
            .iter()
            .filter(on_eth0)
            .any(|r| r.dst == names::GATEWAY.to_string() && r.scope.as_deref() == Some("link")),
        "no {} dev eth0 scope link in {}: {routes:?}",
        names::GATEWAY,
        pod.name
    );
    let veth = ip_in(&host.ns, &["-o", "link", "show", "dev", &cali])?;
    ensure!(
        veth.contains(names::CALI_MAC) && veth.contains(&format!("mtu {}", lab.state().pod_mtu())),
        "host veth: {veth}"
    );

    let key = pod.wep_key();
    let text = lab
        .etcd_get(&key)?
        .with_context(|| format!("no WorkloadEndpoint {key}"))?;
    let wep: Value = serde_json::from_str(&text)?;
    let spec = &wep["spec"];
    let expected = [
        (&wep["metadata"]["labels"]["app"], app),
        (&spec["node"], host.node.as_str()),
        (&spec["pod"], pod.name.as_str()),
        (&spec["endpoint"], "eth0"),
        (&spec["interfaceName"], cali.as_str()),
        (&spec["containerID"], pod.container_id.as_str()),
        (&spec["ipNetworks"][0], &format!("{ip}/32")),
        (&spec["profiles"][0], "kns.default"),
    ];
    for (have, want) in expected {
        ensure!(have == want, "{key}: {have} where {want:?} was expected");
    }
    let holder = ipam_holder(lab, ip)?;
    ensure!(
        holder.as_deref() == Some(pod.handle().as_str()),
        "felix ipam show: {ip} held by {holder:?}, not {}",
        pod.handle()
    );
    Ok(ip)
}

/// ADD on `pod` and everything it made; then the time until felix has programmed it. Returns
/// the pod as the traffic helpers take it.
fn add_and_wait_programmed(lab: &Lab, pod: &mut CniPod, app: &str) -> Result<PodInfo> {
    let start = Instant::now();
    let (result, call) = pod.add()?;
    let ip = check_added(lab, pod, &result, app)?;
    let cali = pod.cali();
    wait_for(FELIX_DEADLINE, "programmed by felix", || {
        felix_missing(lab, pod.host, &cali, ip)
    })?;
    let programmed = start.elapsed();
    println!(
        "felix-cni ADD {} on h{}: {ip} on {cali}, ADD took {:?}; programs attached, endpoint and \
         route in place {:?} after ADD started",
        pod.name, pod.host, call.took, programmed
    );
    Ok(pod.info(ip))
}

/// Pings `to` from `from` and exchanges data over a new TCP connection with an echo server.
fn ping_and_tcp(lab: &Lab, from: &PodInfo, to: &PodInfo) -> Result<()> {
    let (stats, text) = lab.ping(from, to.ip, PINGS)?;
    ensure!(
        stats.received == PINGS,
        "ping {} -> {}: {stats:?}\n{text}",
        from.name,
        to.name
    );
    let _echo = EchoServer::start(&to.ns, IPERF_PORT)?;
    ensure!(
        lab.tcp_works(from, to, IPERF_PORT)?,
        "no TCP {} -> {}:{IPERF_PORT}",
        from.name,
        to.name
    );
    Ok(())
}

/// A pod on each host wired by felix-cni ADD (run as a runtime runs it, from the host's
/// namespace): result, pod network, host veth, WorkloadEndpoint and IPAM allocation as
/// specified, felix's programs attached to the new `cali*`; the new pods talk to the lab's pods
/// on the other host (ping, TCP, an iperf3 run) and to each other through the BPF dataplane; an
/// ingress deny selecting the h1 pod's `args.cni.labels` label stops new flows from h2 (counted
/// `drop_policy` where h1's uplink decapsulates them) and its deletion lets them through; CHECK
/// succeeds; DEL removes the interfaces, the endpoint and the allocation, felix lets the
/// endpoint go, a second DEL succeeds and CHECK now fails.
#[test]
fn felix_cni_wires_pods_that_felix_programs_and_policy_governs() -> Result<()> {
    with_lab(|lab| {
        let mut pod1 = lab.cni_pod(1, "cni", &[("app", "cni-h1")])?;
        let mut pod2 = lab.cni_pod(2, "cni", &[("app", "cni-h2")])?;
        let new1 = add_and_wait_programmed(lab, &mut pod1, "cni-h1")?;
        let new2 = add_and_wait_programmed(lab, &mut pod2, "cni-h2")?;
        ensure!(new1.ip != new2.ip, "both pods got {}", new1.ip);

        // Through the dataplane, across hosts both ways and between the new pods.
        let (h1p1, h2p1) = (lab.pod(1, 1)?.clone(), lab.pod(2, 1)?.clone());
        let before = lab.counters(1)?;
        ping_and_tcp(lab, &new1, &h2p1)?;
        ping_and_tcp(lab, &h1p1, &new2)?;
        ping_and_tcp(lab, &new2, &new1)?;
        let tcp = lab.iperf(&new1, &h2p1, Iperf::Tcp { seconds: 1 })?;
        ensure!(
            tcp.sent_bytes > 0 && tcp.received_bytes > 0,
            "iperf3 {} -> {}: {}",
            new1.name,
            h2p1.name,
            tcp.summary()
        );
        println!("iperf3 {} -> {}: {}", new1.name, h2p1.name, tcp.summary());
        let from_new1 = lab
            .counters(1)?
            .packets(&new1.cali, "from_workload")
            .saturating_sub(before.packets(&new1.cali, "from_workload"));
        ensure!(
            from_new1 >= u64::from(PINGS),
            "h1 from_workload on {} grew by {from_new1}",
            new1.cali
        );

        // A policy selecting the new pod's label.
        let _echo = EchoServer::start(&new1.ns, IPERF_PORT)?;
        ensure!(
            lab.tcp_works(&h2p1, &new1, IPERF_PORT)?,
            "TCP before the deny"
        );
        let drops_before = lab.counters(1)?;
        let file = lab.apply_yaml("deny-ingress-cni-h1", DENY_INGRESS_CNI_H1)?;
        let (_, took) = poll_until(POLICY_DEADLINE, "new flows to the cni pod denied", || {
            Ok(if lab.tcp_works(&h2p1, &new1, IPERF_PORT)? {
                Err("a new connection got through".to_owned())
            } else {
                Ok(())
            })
        })?;
        println!("deny selecting app=cni-h1 effective {took:?} after `felix apply`");
        ensure!(!lab.ping_once(&h2p1, &new1)?, "a new ping got through");
        let after = lab.counters(1)?;
        let grew: Vec<(String, String, u64)> = after
            .counters
            .iter()
            .filter(|c| c.reason == "drop_policy")
            .map(|c| {
                let n = after.grew(&drops_before, &c.interface, &c.direction, "drop_policy");
                (c.interface.clone(), c.direction.clone(), n)
            })
            .filter(|(_, _, n)| *n > 0)
            .collect();
        // IPIP from h2: h1's uplink decapsulates and applies the pod's ingress policy.
        let at_uplink = after.grew(&drops_before, "eth0", "from_uplink", "drop_policy");
        ensure!(
            at_uplink >= 2,
            "h1 (eth0, from_uplink, drop_policy) grew by {at_uplink}; all drop_policy: {grew:?}"
        );
        println!("h1 drop_policy during the deny: {grew:?}");
        lab.delete(&file)?;
        poll_until(POLICY_DEADLINE, "new flows to the cni pod allowed", || {
            Ok(if lab.tcp_works(&h2p1, &new1, IPERF_PORT)? {
                Ok(())
            } else {
                Err("still denied".to_owned())
            })
        })?;
        ensure!(lab.ping_once(&h2p1, &new1)?, "ping after the delete");

        for pod in [&pod1, &pod2] {
            let check = pod.check()?;
            ensure!(check.ok()? == Value::Null, "CHECK printed {}", check.stdout);
        }

        // DEL, twice, and what it leaves.
        for (pod, info) in [(&mut pod1, &new1), (&mut pod2, &new2)] {
            let host_ns = lab.host(pod.host)?.ns.clone();
            let start = Instant::now();
            let del = pod.del()?;
            ensure!(del.ok()? == Value::Null, "DEL printed {}", del.stdout);
            ensure!(
                !links(&host_ns)?.contains(&info.cali),
                "{} still on {host_ns}",
                info.cali
            );
            ensure!(
                !links(&pod.name)?.iter().any(|l| l == "eth0"),
                "eth0 still in {}",
                pod.name
            );
            ensure!(
                lab.etcd_get(&pod.wep_key())?.is_none(),
                "{} still in etcd",
                pod.wep_key()
            );
            let holder = ipam_holder(lab, info.ip)?;
            ensure!(holder.is_none(), "{} still held by {holder:?}", info.ip);
            wait_for(FELIX_DEADLINE, "forgotten by felix", || {
                felix_leftovers(lab, pod.host, &info.cali, info.ip)
            })?;
            let forgotten = start.elapsed();
            println!(
                "felix-cni DEL {}: took {:?}; felix dropped the endpoint {:?} after DEL started",
                pod.name, del.took, forgotten
            );
            let again = pod.del()?;
            ensure!(
                again.ok()? == Value::Null,
                "second DEL printed {}",
                again.stdout
            );
            let check = pod.check()?;
            ensure!(check.error_code()? > 0, "CHECK after DEL: {}", check.stdout);
        }
        Ok(())
    })
}

/// A [`CniPod`] dropped right after ADD (as when a test fails half-way) runs DEL and deletes its
/// namespace: no namespace, host veth, WorkloadEndpoint or allocation is left, and felix lets
/// the endpoint go.
#[test]
fn dropping_a_cni_pod_undoes_its_add() -> Result<()> {
    with_lab(|lab| {
        let mut pod = lab.cni_pod(2, "cni-dropped", &[("app", "cni-dropped")])?;
        let info = add_and_wait_programmed(lab, &mut pod, "cni-dropped")?;
        let (name, key) = (pod.name.clone(), pod.wep_key());
        drop(pod);
        let host_ns = lab.host(2)?.ns.clone();
        ensure!(
            !lab::net::list_netns()?.contains(&name),
            "namespace {name} left"
        );
        ensure!(
            !links(&host_ns)?.contains(&info.cali),
            "{} left on {host_ns}",
            info.cali
        );
        ensure!(lab.etcd_get(&key)?.is_none(), "{key} left in etcd");
        let holder = ipam_holder(lab, info.ip)?;
        ensure!(holder.is_none(), "{} still held by {holder:?}", info.ip);
        wait_for(FELIX_DEADLINE, "forgotten by felix", || {
            felix_leftovers(lab, 2, &info.cali, info.ip)
        })?;
        Ok(())
    })
}
