//! Operations under stress (issue 6): a bounded flood of denied packets while `felix bpf trace`
//! runs, with the host reachable on a failsafe port; and etcd stopped for 30 s under traffic,
//! then back with a change felix could not see while it was cut off; `felix bpf uninstall`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lab::felix;
use lab::felixd::Dataplane;
use lab::{EchoServer, IperfReport, Lab, etcd, names, policy, probe, traffic};

use crate::support::{poll_until, with_lab};

/// Datagrams in each flood.
const FLOOD: u64 = 200_000;
/// Flood pace: fast enough to be a flood, slow enough that the veth rings keep up, and long
/// enough (5 s) that the checks made during it (up to 2 x CONNECT) end before it does.
const FLOOD_PPS: u64 = 40_000;
/// Floods reach their counter at least this share of what the sender's kernel accepted (the
/// rest may be lost in veth rings before any program sees it).
const FLOOD_MIN_SHARE: f64 = 0.9;
/// `felix bpf trace --rate` during the flood.
const TRACE_RATE: u64 = 100;
/// `felix_common::trace::TRACE_BURST`: tokens each CPU starts with.
const TRACE_BURST: u64 = 64;
const FLOOD_PORT: u16 = 7777;
const FAILSAFE_PORT: u16 = 22;
const OTHER_PORT: u16 = 8080;
const CONNECT: Duration = Duration::from_secs(2);

/// Sends `count` small UDP datagrams from namespace `ns` to `to:port` at about `pps`; returns
/// how many the sender's kernel accepted.
fn udp_flood(ns: &str, to: Ipv4Addr, port: u16, count: u64) -> Result<u64> {
    probe::in_netns(ns, move || {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).context("binding the flood socket")?;
        let start = Instant::now();
        let mut sent = 0;
        for i in 0..count {
            if i % 256 == 0 {
                let due = Duration::from_secs_f64(i as f64 / FLOOD_PPS as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    thread::sleep(wait);
                }
            }
            if socket.send_to(b"flood", (to, port)).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    })
}

/// Possible CPUs (per-CPU maps have a slot, and a token bucket, for each).
fn possible_cpus() -> Result<u64> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut count = 0;
    for range in text.trim().split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        count += hi.parse::<u64>()? - lo.parse::<u64>()? + 1;
    }
    Ok(count)
}

/// `curl` of `url` inside `ns`: (HTTP code, body).
fn http_get(lab: &Lab, ns: &str, url: &str) -> Result<(String, String)> {
    let out = lab.exec_in(ns, &["curl", "-s", "-m", "3", "-w", "\n%{http_code}", url])?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    Ok((code.to_owned(), body.to_owned()))
}

/// A running `felix bpf trace --json`, its stderr read on a thread.
struct Trace {
    child: Child,
    stderr: mpsc::Receiver<String>,
    started: Instant,
}

impl Trace {
    /// Starts the trace on `node` for `seconds` and waits until it listens.
    fn start(lab: &Lab, node: &str, seconds: u64) -> Result<Self> {
        let started = Instant::now();
        let mut child = Command::new(lab.felix_bin())
            .args(["bpf", "trace", "--node", node, "--json"])
            .args(["--rate", &TRACE_RATE.to_string()])
            .args(["--seconds", &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting felix bpf trace")?;
        let stderr = child.stderr.take().context("trace stderr")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let trace = Self {
            child,
            stderr: rx,
            started,
        };
        let line = trace
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .context("felix bpf trace did not start within 5 s")?;
        ensure!(line.contains("tracing node"), "trace said: {line}");
        Ok(trace)
    }

    /// Waits for the trace to end: (event lines, its summary line, seconds it ran).
    fn finish(mut self) -> Result<(Vec<serde_json::Value>, String, f64)> {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .context("trace stdout")?
            .read_to_string(&mut out)?;
        traffic::wait_child(&mut self.child, Duration::from_secs(10), "felix bpf trace")?;
        let ran = self.started.elapsed().as_secs_f64();
        let summary = self
            .stderr
            .recv_timeout(Duration::from_secs(2))
            .context("no trace summary")?;
        let events = out
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("trace line {l}")))
            .collect::<Result<Vec<serde_json::Value>>>()?;
        Ok((events, summary, ran))
    }
}

/// Numbers in "N events printed; S suppressed by the rate limit, L lost (ring full)".
fn trace_summary(line: &str) -> Result<(u64, u64, u64)> {
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers.as_slice() {
        [printed, suppressed, lost] => Ok((*printed, *suppressed, *lost)),
        _ => bail!("unexpected trace summary {line:?}"),
    }
}

/// Two concurrent floods of 200,000 UDP datagrams at h2: from pod h1-p1 to pod h2-p1, whose
/// ingress policy denies everything (`default-deny.yaml`), and from the ToR, on h2's XDP deny
/// list, to h2's own address. Both are dropped and counted by reason; `felix bpf trace` on h2
/// meanwhile gets at most burst + rate x time events per CPU, the rest counted as suppressed;
/// felix on h2 stays live and `felix status` answers; the ToR still connects to a listener on
/// h2's failsafe port tcp:22, while tcp:8080 on h2 is dropped for it.
#[test]
fn flood_of_denied_packets_is_counted_with_bounded_trace_and_failsafe_access() -> Result<()> {
    with_lab(|lab| {
        let h2 = lab.host(2)?.clone();
        let (p1, target) = (lab.pod(1, 1)?.clone(), lab.pod(2, 1)?.clone());
        let tor = names::tor_ns(lab.id());
        let _failsafe = EchoServer::start(&h2.ns, FAILSAFE_PORT)?;
        let _other = EchoServer::start(&h2.ns, OTHER_PORT)?;
        for port in [FAILSAFE_PORT, OTHER_PORT] {
            ensure!(
                probe::tcp_works_within(&tor, h2.ip, port, CONNECT)?,
                "the ToR cannot reach h2:{port} before the deny list"
            );
        }
        let shown = felix::run(lab.felix_bin(), &h2.node, &["failsafe", "dump"])?;
        ensure!(
            shown
                .lines()
                .any(|l| l.split_whitespace().eq(["inbound", "tcp", "22"])),
            "failsafe dump of h2 lacks inbound tcp 22:\n{shown}"
        );

        lab.apply(&policy::example("default-deny.yaml")?)?;
        lab.xdp_deny(2, &format!("{}/32", names::TOR_IP), true)?;
        // felix attaches the uplink's XDP once the deny list has an entry (within about a
        // second): the flood must not start before, or its first datagrams pass uncounted.
        let took = lab.wait_uplink_xdp(2, true, Duration::from_secs(3))?;
        println!("h2's uplink XDP attached {took:?} after the deny entry");
        // The policy is in force once a new connection into h2-p1 fails.
        let _echo = EchoServer::start(&target.ns, OTHER_PORT)?;
        poll_until(Duration::from_secs(5), "h2-p1 denied", || {
            Ok(
                if probe::tcp_works_within(&p1.ns, target.ip, OTHER_PORT, CONNECT)? {
                    Err("h1-p1 still connects to h2-p1".to_owned())
                } else {
                    Ok(())
                },
            )
        })?;

        let before = lab.counters(2)?;
        let trace = Trace::start(lab, &h2.node, 10)?;
        let flood_start = Instant::now();
        let (pod_ns, target_ip) = (p1.ns.clone(), target.ip);
        let pod_flood = thread::spawn(move || udp_flood(&pod_ns, target_ip, FLOOD_PORT, FLOOD));
        let (tor_ns, h2_ip) = (tor.clone(), h2.ip);
        let tor_flood = thread::spawn(move || udp_flood(&tor_ns, h2_ip, FLOOD_PORT, FLOOD));

        // During the flood: felix alive, status answering, failsafe open, the rest dropped.
        thread::sleep(Duration::from_millis(300));
        let (code, body) = http_get(lab, &h2.ns, "http://127.0.0.1:9099/liveness")?;
        ensure!(code == "200", "/liveness during the flood: {code} {body}");
        let asked = Instant::now();
        let status = lab.felix_status_table(Some(&h2.node))?;
        let status_took = asked.elapsed();
        ensure!(status.contains(&h2.node), "felix status: {status}");
        let ssh = probe::tcp_works_within(&tor, h2.ip, FAILSAFE_PORT, CONNECT)?;
        let other = probe::tcp_works_within(&tor, h2.ip, OTHER_PORT, CONNECT)?;
        let still_flooding = !pod_flood.is_finished() && !tor_flood.is_finished();

        let pod_sent = pod_flood
            .join()
            .map_err(|_| anyhow::anyhow!("flood panicked"))??;
        let tor_sent = tor_flood
            .join()
            .map_err(|_| anyhow::anyhow!("flood panicked"))??;
        let flood_took = flood_start.elapsed();
        let (events, summary, ran) = trace.finish()?;
        let after = lab.counters(2)?;
        let policy_drops = after.grew(&before, "eth0", "from_uplink", "drop_policy");
        let xdp_drops = after.grew(&before, "eth0", "xdp_uplink", "drop_xdp_denied");
        let (printed, suppressed, lost) = trace_summary(&summary)?;
        let cpus = possible_cpus()?;
        let bound = cpus * (TRACE_BURST + (TRACE_RATE as f64 * ran).ceil() as u64);
        eprintln!(
            "flood: {pod_sent} pod->pod and {tor_sent} ToR->host datagrams in {flood_took:?}; \
             h2 counted {policy_drops} drop_policy and {xdp_drops} drop_xdp_denied; trace ran \
             {ran:.1} s: {printed} events (bound {bound} = {cpus} CPUs x ({TRACE_BURST} + \
             {TRACE_RATE}/s x {ran:.1} s)), {suppressed} suppressed, {lost} lost; felix status \
             took {status_took:?}; failsafe tcp:22 {ssh}, tcp:8080 {other}"
        );
        ensure!(still_flooding, "the checks ran after the floods ended");
        ensure!(
            ssh,
            "the ToR could not reach h2's failsafe tcp:22 during the flood"
        );
        ensure!(!other, "the ToR reached h2:8080 although it is deny-listed");
        for (what, sent, dropped) in [
            ("pod flood (drop_policy)", pod_sent, policy_drops),
            ("ToR flood (drop_xdp_denied)", tor_sent, xdp_drops),
        ] {
            ensure!(
                sent >= FLOOD * 9 / 10,
                "{what}: only {sent} of {FLOOD} sent"
            );
            ensure!(
                dropped as f64 >= sent as f64 * FLOOD_MIN_SHARE,
                "{what}: {dropped} counted of {sent} sent"
            );
            // The connection attempts to tcp:8080 add a few SYNs to the XDP drops.
            ensure!(
                dropped <= sent + 50,
                "{what}: {dropped} counted of {sent} sent"
            );
        }
        ensure!(
            events.len() as u64 == printed,
            "{} lines, summary {summary}",
            events.len()
        );
        ensure!(printed <= bound, "{printed} trace events > bound {bound}");
        ensure!(
            printed + suppressed + lost >= policy_drops + xdp_drops,
            "events {printed} + suppressed {suppressed} + lost {lost} < drops {}",
            policy_drops + xdp_drops
        );
        for reason in ["drop_policy", "drop_xdp_denied"] {
            ensure!(
                events.iter().any(|e| e["reason"] == reason),
                "no {reason} event among {printed}"
            );
        }
        let (code, body) = http_get(lab, &h2.ns, "http://127.0.0.1:9099/liveness")?;
        ensure!(code == "200", "/liveness after the flood: {code} {body}");
        Ok(())
    })
}

/// Readiness code and `felix_datastore_in_sync` of host `n`'s felix.
fn sync_state(lab: &Lab, n: u8) -> Result<(String, Option<u8>)> {
    let ns = names::host_ns(lab.id(), n);
    let (code, _) = http_get(lab, &ns, "http://127.0.0.1:9099/readiness")?;
    let (_, metrics) = http_get(lab, &ns, "http://127.0.0.1:9091/metrics")?;
    let in_sync = metrics
        .lines()
        .find_map(|l| l.strip_prefix("felix_datastore_in_sync "))
        .and_then(|v| v.trim().parse().ok());
    Ok((code, in_sync))
}

/// Polls both hosts until readiness answers `code` and in_sync is `in_sync`; the time each
/// host took, from `since`.
fn wait_sync_state(
    lab: &Lab,
    since: Instant,
    code: &str,
    in_sync: u8,
    limit: Duration,
) -> Result<Vec<Duration>> {
    let mut took = Vec::new();
    for n in names::HOSTS {
        loop {
            let (now_code, now_sync) = sync_state(lab, n)?;
            if now_code == code && now_sync == Some(in_sync) {
                took.push(since.elapsed());
                break;
            }
            if since.elapsed() >= limit {
                bail!("h{n}: readiness {now_code}, in_sync {now_sync:?} after {limit:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(took)
}

/// Outage bounds (measured here: see docs/operations.md).
const DETECT_LIMIT: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_secs(30);
const CONVERGE_LIMIT: Duration = Duration::from_secs(20);
const IPERF_SECONDS: u32 = 60;

/// etcd stopped for 30 s under an iperf3 flow (h1-p2 to h2-p2) and pings (h1-p1 to h2-p2):
/// every felix turns not ready with in_sync 0 within seconds, forwarding goes on; etcd comes
/// back on its data while a firewall in the fabric still cuts the hosts off, and a policy
/// denying h2-p1's ingress is applied then; once the hosts reach etcd again every felix is
/// ready and in sync, and the policy is in force, within a bound. The flow completes with
/// data in every second and the pings lose (almost) nothing.
#[test]
fn etcd_outage_keeps_forwarding_and_felix_converges_to_changes_made_meanwhile() -> Result<()> {
    with_lab(|lab| {
        let (p1, p2) = (lab.pod(1, 1)?.clone(), lab.pod(1, 2)?.clone());
        let (q1, q2) = (lab.pod(2, 1)?.clone(), lab.pod(2, 2)?.clone());
        let _echo = EchoServer::start(&q1.ns, OTHER_PORT)?;
        ensure!(
            probe::tcp_works_within(&p1.ns, q1.ip, OTHER_PORT, CONNECT)?,
            "h1-p1 cannot reach h2-p1 before the policy"
        );
        let (client, server, ip) = (p2.ns.clone(), q2.ns.clone(), q2.ip.to_string());
        let iperf = thread::spawn(move || iperf_paced(&client, &server, &ip, IPERF_SECONDS));
        let pings = IPERF_SECONDS * 5 - 25;
        let mut ping = traffic::in_ns(&p1.ns, &["ping", "-n", "-i", "0.2", "-c"])
            .arg(pings.to_string())
            .arg(q2.ip.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ping")?;
        thread::sleep(Duration::from_secs(3));

        let stopped = Instant::now();
        lab.stop_etcd()?;
        let detected = wait_sync_state(lab, stopped, "503", 0, DETECT_LIMIT)?;
        thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));

        etcd::cut_hosts(lab.state(), true)?;
        lab.start_etcd()?;
        let file = policy::example("default-deny.yaml")?;
        let file = file.to_string_lossy().to_string();
        felix::run_etcd(
            lab.felix_bin(),
            &lab.state().fabric_ns,
            &lab.state().etcd_url,
            &["apply", "-f", &file],
        )?;
        thread::sleep(Duration::from_secs(2));
        for n in names::HOSTS {
            let state = sync_state(lab, n)?;
            ensure!(
                state == ("503".to_owned(), Some(0)),
                "h{n} while cut off from etcd: {state:?}"
            );
        }
        ensure!(
            probe::tcp_works_within(&p1.ns, q1.ip, OTHER_PORT, CONNECT)?,
            "the policy took effect although felix could not see it"
        );
        let down_for = stopped.elapsed();

        let restored = Instant::now();
        etcd::cut_hosts(lab.state(), false)?;
        let converged = wait_sync_state(lab, restored, "200", 1, CONVERGE_LIMIT)?;
        let enforced = probe::time_until(
            restored,
            false,
            CONVERGE_LIMIT,
            Duration::from_millis(100),
            || probe::tcp_works_within(&p1.ns, q1.ip, OTHER_PORT, Duration::from_millis(500)),
        )?;

        let report = iperf
            .join()
            .map_err(|_| anyhow::anyhow!("iperf panicked"))??;
        traffic::wait_child(&mut ping, Duration::from_secs(30), "ping")?;
        let mut text = String::new();
        ping.stdout
            .take()
            .context("ping stdout")?
            .read_to_string(&mut text)?;
        let stats = lab::parse_ping(&text).context("no ping summary")?;
        let seconds = per_second_bytes(&report);
        eprintln!(
            "etcd outage: down {down_for:?}; not ready + in_sync 0 after {detected:?}; \
             ready + in_sync 1 {converged:?} after the hosts reached etcd again; policy in \
             force after {enforced}; iperf3 {}, slowest second {} bytes; ping {}/{}",
            report.summary(),
            seconds.iter().min().copied().unwrap_or(0),
            stats.received,
            stats.transmitted
        );
        ensure!(
            seconds.len() >= IPERF_SECONDS as usize - 1 && seconds.iter().all(|&b| b > 0),
            "iperf3 seconds without data: {seconds:?}"
        );
        ensure!(
            stats.transmitted == pings && stats.received + 2 >= stats.transmitted,
            "ping lost packets: {}/{}",
            stats.received,
            stats.transmitted
        );
        Ok(())
    })
}

/// iperf3 TCP for `seconds` at 200 Mbit/s (a steady flow, leaving CPU for the rest).
fn iperf_paced(client: &str, server: &str, ip: &str, seconds: u32) -> Result<IperfReport> {
    let port = "5202";
    let mut srv = traffic::in_ns(server, &["iperf3", "-s", "-1", "-p", port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the iperf3 server")?;
    thread::sleep(Duration::from_millis(500));
    let out = traffic::in_ns(
        client,
        &["iperf3", "-c", ip, "-p", port, "-J", "-b", "200M"],
    )
    .args(["-t", &seconds.to_string()])
    .stdin(Stdio::null())
    .output()
    .context("running iperf3")?;
    let served = traffic::wait_child(&mut srv, Duration::from_secs(10), "iperf3 server");
    let report = IperfReport::parse(&String::from_utf8_lossy(&out.stdout), false)?;
    served?;
    Ok(report)
}

/// Bytes the sender counted in each one-second interval.
fn per_second_bytes(report: &IperfReport) -> Vec<u64> {
    report.json["intervals"]
        .as_array()
        .map(|intervals| {
            intervals
                .iter()
                .filter_map(|i| i["sum"]["bytes"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// A partition detected without any FIN or RST: the syncer's gRPC keepalive (10 s, 5 s
/// timeout).
const PARTITION_DETECT_LIMIT: Duration = Duration::from_secs(30);

/// etcd keeps running but a firewall in the fabric drops the hosts' packets to it (no FIN, no
/// RST): every felix still turns not ready with in_sync 0 within the keepalive bound, and is
/// ready and in sync again soon after the rule goes.
#[test]
fn etcd_partition_is_detected_by_keepalive_and_healed() -> Result<()> {
    with_lab(|lab| {
        let cut = Instant::now();
        etcd::cut_hosts(lab.state(), true)?;
        let detected = wait_sync_state(lab, cut, "503", 0, PARTITION_DETECT_LIMIT);
        let restored = Instant::now();
        etcd::cut_hosts(lab.state(), false)?;
        let detected = detected?;
        let converged = wait_sync_state(lab, restored, "200", 1, CONVERGE_LIMIT)?;
        eprintln!(
            "etcd partition: not ready + in_sync 0 after {detected:?}; ready + in_sync 1 \
             {converged:?} after the rule was removed"
        );
        Ok(())
    })
}

/// `felix bpf uninstall` on h1: refused while its felix runs; once felix is killed (its
/// programs stay attached through their pinned links), it removes the pin tree and the kernel
/// reports no program left on h1's interfaces (`felix bpf attached`); a new felix attaches
/// everything again and the pods talk across hosts.
#[test]
fn uninstall_is_refused_while_felix_runs_then_detaches_every_program() -> Result<()> {
    with_lab(|lab| {
        let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/felix/{}", lab.node(1)));
        let attached = lab.attached(1)?;
        let hooked: BTreeSet<(&str, &str)> = attached
            .iter()
            .map(|a| (a.iface.as_str(), a.hook.as_str()))
            .collect();
        ensure!(
            hooked.len() == 6 && attached.iter().all(|a| a.hook.starts_with("tcx_")),
            "expected TCX in and out on eth0 and two cali interfaces: {attached:?}"
        );

        match lab.felix_cli(1, &["uninstall"]) {
            Ok(out) => bail!("uninstall ran while felix runs: {out}"),
            Err(e) => ensure!(format!("{e:#}").contains("is running"), "{e:#}"),
        }
        ensure!(pin_dir.exists(), "the refused uninstall removed pins");

        lab.kill_felix(1)?;
        let after_kill = lab.attached(1)?;
        ensure!(
            after_kill.len() == attached.len(),
            "a killed felix's programs stay attached: {after_kill:?}"
        );
        let out = lab.felix_cli(1, &["uninstall"])?;
        print!("{out}");
        ensure!(!pin_dir.exists(), "{} still exists", pin_dir.display());
        let left = lab.attached(1)?;
        ensure!(left.is_empty(), "programs left after uninstall: {left:?}");

        lab.start_felix(1, Dataplane::Bpf)?;
        poll_until(
            Duration::from_secs(10),
            "h1's programs attached again",
            || {
                let now = lab.attached(1)?;
                Ok(if now.len() == attached.len() {
                    Ok(())
                } else {
                    Err(format!("{now:?}"))
                })
            },
        )?;
        let p1 = lab.pod(1, 1)?.clone();
        let remote = lab.pod(2, 1)?.clone();
        ensure!(
            lab.ping_once(&p1, &remote)?,
            "no ping across hosts after the reinstall"
        );
        Ok(())
    })
}
