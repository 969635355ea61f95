//! Conntrack under load: one pod's flood of new flows cannot fill the table (its share bounds
//! it, the in-kernel cleaner evicts its stale unanswered flows), and `/metrics` reads the
//! table's fill from the cleaner without walking it.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use aya::maps::{HashMap, MapData};
use felix_common::{CtKey, CtState, CtValue, conntrack::proto, maps};
use lab::{EchoServer, Lab, paths, policy, probe};

use crate::support::{IPERF_PORT, poll_until, with_lab};

/// The default conntrack table (BPFMapSizeConntrack).
const CAPACITY: u64 = 262_144;
/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(60);
/// The echo port of the long-lived connection.
const HELD_PORT: u16 = 7001;

/// `/metrics` of host `n`: the body and the time it took to answer.
fn scrape(lab: &Lab, n: u8) -> Result<(String, Duration)> {
    let ns = lab::names::host_ns(lab.id(), n);
    let out = lab.exec_in(
        &ns,
        &[
            "curl",
            "-s",
            "-w",
            "\n%{time_total}",
            "http://127.0.0.1:9091/metrics",
        ],
    )?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, took) = text.rsplit_once('\n').context("curl printed no time")?;
    let seconds: f64 = took.trim().parse().context("curl's time_total")?;
    Ok((body.to_string(), Duration::from_secs_f64(seconds)))
}

/// The value of the metric line that starts with `name` (labels included), if any.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sends one UDP datagram to every port of `to` from 16 sockets, over and over, until
/// `stop`: each (source port, destination port) is a new flow. Returns datagrams sent.
fn flood(to: Ipv4Addr, stop: &AtomicBool, sent: &AtomicU64) -> Result<()> {
    let sockets: Vec<UdpSocket> = (0..16)
        .map(|_| UdpSocket::bind(("0.0.0.0", 0)))
        .collect::<std::io::Result<_>>()?;
    while !stop.load(Ordering::Relaxed) {
        for port in 1..=u16::MAX {
            for socket in &sockets {
                // Dropped datagrams are the point; a send error (buffer full) is not counted.
                if socket.send_to(b"x", (to, port)).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    Ok(())
}

/// h2-p2 floods h1-p1 with new UDP flows for a minute at the default table size. Meanwhile
/// h2-p1, which a default-deny ingress policy selects (so a reply judged as new inbound traffic
/// would be dropped), opens a new connection to h1-p2 every 100 ms and keeps one connection
/// open, exchanging on it: none may fail. h2's table stays below full (h2-p2 holds at most its
/// share, 25%) and the share drops are counted.
#[test]
fn a_pod_flooding_new_flows_leaves_other_pods_connections_working() -> Result<()> {
    with_lab(|lab| {
        let (target, server) = (lab.pod(1, 1)?.clone(), lab.pod(1, 2)?.clone());
        let (guarded, flooder) = (lab.pod(2, 1)?.clone(), lab.pod(2, 2)?.clone());
        let _echo = EchoServer::start(&server.ns, IPERF_PORT)?;
        let _held_echo = EchoServer::start(&server.ns, HELD_PORT)?;
        lab.apply(&policy::example("default-deny.yaml")?)?;
        poll_until(Duration::from_secs(5), "h2-p1 denied", || {
            Ok(
                if probe::tcp_works_within(
                    &target.ns,
                    guarded.ip,
                    HELD_PORT,
                    probe::CONNECT_TIMEOUT,
                )? {
                    Err("h1-p1 still connects to h2-p1".to_owned())
                } else {
                    Ok(())
                },
            )
        })
        .ok();
        let mut held = probe::connect(&guarded.ns, server.ip, HELD_PORT, Duration::from_secs(1))?
            .context("h2-p1 cannot open the held connection")?;
        probe::exchange(&mut held, b"before\n", Duration::from_secs(2))?;

        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let flooding = {
            let (ns, stop, sent, to) = (flooder.ns.clone(), stop.clone(), sent.clone(), target.ip);
            thread::spawn(move || probe::in_netns(&ns, move || flood(to, &stop, &sent)))
        };
        let start = Instant::now();
        let (mut opened, mut failed, mut held_failures) = (0u32, Vec::new(), 0u32);
        let mut most_entries = 0f64;
        let mut next_scrape = start;
        while start.elapsed() < FLOOD {
            match probe::tcp_works_within(
                &guarded.ns,
                server.ip,
                IPERF_PORT,
                Duration::from_secs(1),
            ) {
                Ok(true) => opened += 1,
                Ok(false) => failed.push(format!("{:?}: handshake timed out", start.elapsed())),
                Err(e) => failed.push(format!("{:?}: {e:#}", start.elapsed())),
            }
            if probe::exchange(&mut held, b"during\n", Duration::from_secs(1)).is_err() {
                held_failures += 1;
            }
            if Instant::now() >= next_scrape {
                let (body, _) = scrape(lab, 2)?;
                let entries = metric(&body, "felix_conntrack_entries").unwrap_or(0.0);
                most_entries = most_entries.max(entries);
                next_scrape += Duration::from_secs(5);
            }
            thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        flooding
            .join()
            .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
        let (body, _) = scrape(lab, 2)?;
        let share_drops =
            metric(&body, "felix_conntrack_endpoint_share_drops_total").unwrap_or(0.0);
        let passes = metric(&body, "felix_conntrack_cleaner_passes_total").unwrap_or(0.0);
        println!(
            "flood: {} datagrams; h2-p1: {opened} new connections, {} failed, held connection \
             failures {held_failures}; h2 conntrack at most {most_entries} entries; share drops \
             {share_drops}; cleaner passes {passes}",
            sent.load(Ordering::Relaxed),
            failed.len()
        );
        ensure!(
            failed.is_empty(),
            "new connections of h2-p1 failed: {failed:?}"
        );
        ensure!(
            held_failures == 0,
            "the held connection failed {held_failures} times"
        );
        ensure!(opened > 100, "only {opened} connections were tried");
        ensure!(
            most_entries < CAPACITY as f64,
            "h2's conntrack table filled: {most_entries} entries"
        );
        ensure!(
            share_drops > 0.0,
            "the flood never reached h2-p2's share:\n{body}"
        );
        ensure!(passes >= 50.0, "the cleaner ran {passes} times in a minute");
        Ok(())
    })
}

/// With h1's table full of live-looking entries written from user space, `/metrics` answers
/// well under 100 ms (nothing walks the table at scrape) and never counts more than the
/// table holds.
#[test]
fn metrics_answer_fast_with_a_full_conntrack_table() -> Result<()> {
    with_lab(|lab| {
        let node = lab.host(1)?.node.clone();
        let pin = paths::pin_dir(&node).join(maps::CONNTRACK);
        let data = MapData::from_pin(&pin).with_context(|| format!("open {}", pin.display()))?;
        let mut table: HashMap<MapData, CtKey, CtValue> =
            HashMap::try_from(aya::maps::Map::HashMap(data))?;
        let now = monotonic_ns();
        let mut written = 0u64;
        'fill: for a in 0..=u8::MAX {
            for port in 0..=u16::MAX {
                let key =
                    CtKey::for_packet([172, 16, 0, a], port, [172, 17, 0, 1], 443, proto::TCP).0;
                let value = CtValue {
                    created_ns: now,
                    last_seen_ns: now,
                    packets_a_to_b: 1,
                    packets_b_to_a: 1,
                    state: CtState::Established as u8,
                    ..CtValue::default()
                };
                if table.insert(key, value, 0).is_err() {
                    break 'fill;
                }
                written += 1;
            }
        }
        ensure!(written + 64 >= CAPACITY, "only {written} entries fit");
        // The cleaner's next pass (every second) sees the full table.
        let (body, _) = poll_until(
            Duration::from_secs(5),
            "the cleaner saw the full table",
            || {
                let (body, _) = scrape(lab, 1)?;
                let entries = metric(&body, "felix_conntrack_entries").unwrap_or(0.0);
                Ok(if entries as u64 + 64 >= CAPACITY {
                    Ok(body)
                } else {
                    Err(format!("{entries} entries"))
                })
            },
        )?;
        let entries = metric(&body, "felix_conntrack_entries").unwrap_or(f64::MAX);
        let ratio = metric(&body, "felix_conntrack_fill_ratio").unwrap_or(f64::MAX);
        ensure!(
            entries <= CAPACITY as f64,
            "{entries} entries in a {CAPACITY} table"
        );
        ensure!(ratio <= 1.0, "fill ratio {ratio}");
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let (body, took) = scrape(lab, 1)?;
            let entries = metric(&body, "felix_conntrack_entries").unwrap_or(f64::MAX);
            ensure!(
                entries <= CAPACITY as f64,
                "{entries} entries in a {CAPACITY} table"
            );
            slowest = slowest.max(took);
        }
        println!("{written} entries written; /metrics answered within {slowest:?}");
        ensure!(
            slowest < Duration::from_millis(100),
            "/metrics took {slowest:?} with a full table"
        );
        Ok(())
    })
}

/// CLOCK_MONOTONIC, the clock of conntrack's ages.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
