//! The demo's policy part: the example policies of `examples/policy/` applied with `felix apply`,
//! connections they allow and deny, the rule counters (`felix bpf policy dump`) and explanations
//! (`felix policy explain`) behind them, then `felix delete` and traffic flowing again. Any
//! outcome other than the documented one fails the demo.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::policy as lab_policy;
use lab::{EchoServer, Iperf, Lab, PodInfo, probe};

use super::header;
use crate::felix::policy::Query;
use crate::paths;

/// iperf3's port, which `allow-iperf3.yaml` opens.
const IPERF_PORT: u16 = 5201;
/// What each host applies once the examples are in (the last applied is the tier's policy).
const ON_H1: [&str; 2] = ["deny-icmp-from-h1-p1", "security.isolate-h2-p2"];
const ON_H2: [&str; 3] = [
    "default-deny",
    "default/allow-iperf3",
    "security.isolate-h2-p2",
];
const WAIT: Duration = Duration::from_secs(5);

pub fn run(lab: &Lab) -> Result<()> {
    let p11 = lab.pod(1, 1)?.clone();
    let p12 = lab.pod(1, 2)?.clone();
    let p21 = lab.pod(2, 1)?.clone();
    let p22 = lab.pod(2, 2)?.clone();
    let files = lab_policy::examples()?;

    header("felix apply -f examples/policy/*.yaml (in h1's namespace, into etcd)");
    let start = Instant::now();
    for file in &files {
        println!("$ felix apply -f {}", shown(file));
        print!("{}", lab.apply(file)?);
    }
    lab.wait_programmed(1, &ON_H1, true, WAIT)?;
    lab.wait_programmed(2, &ON_H2, true, WAIT)?;
    println!(
        "programmed on both hosts {:.0} ms after the first apply",
        ms(start.elapsed())
    );

    header(&format!(
        "allowed: iperf3 (TCP {IPERF_PORT}, 2 s) {} -> {} (allow-iperf3.yaml)",
        p11.name, p21.name
    ));
    let tcp = lab.iperf(&p11, &p21, Iperf::Tcp { seconds: 2 })?;
    println!("{}", tcp.summary());
    ensure!(tcp.received_bytes > 0, "iperf3 moved no data");

    header(&format!(
        "denied: ping {} -> {} (deny-icmp-from-h1-p1.yaml)",
        p11.name, p21.name
    ));
    let (stats, text) = lab.ping_from(&p11.ns, p21.ip, 3, &["-W", "1"])?;
    print!("{text}");
    ensure!(stats.received == 0, "pings passed the deny: {stats:?}");

    let _echo = EchoServer::start(&p21.ns, IPERF_PORT)?;
    expect(
        &format!(
            "TCP {IPERF_PORT} {} -> {} (default-deny.yaml; allow-iperf3 admits h1-p1 only)",
            p12.name, p21.name
        ),
        lab.tcp_works(&p12, &p21, IPERF_PORT)?,
        false,
    )?;
    expect(
        &format!(
            "ping {} -> {} (tier-security.yaml isolates h2-p2)",
            p12.name, p22.name
        ),
        lab.ping_once(&p12, &p22)?,
        false,
    )?;
    expect(
        &format!(
            "ping {} -> {} (tier security passes, the profile allows)",
            p12.name, p11.name
        ),
        lab.ping_once(&p12, &p11)?,
        true,
    )?;

    header(&format!(
        "felix bpf policy dump --node {} --iface {} ({}): the deny counted the pings",
        lab.node(1),
        p11.cali,
        p11.name
    ));
    print!("{}", lab.policy_dump_table(1, Some(&p11.cali))?);

    explain(lab, &p11, &p21, ("icmp", None), false)?;
    explain(lab, &p11, &p21, ("tcp", Some(IPERF_PORT)), true)?;
    explain(lab, &p12, &p22, ("tcp", Some(80)), false)?;

    header("felix delete -f examples/policy/*.yaml");
    let start = Instant::now();
    for file in files.iter().rev() {
        print!("{}", lab.delete(file)?);
    }
    let back = probe::time_until(
        start,
        true,
        Duration::from_secs(5),
        Duration::from_millis(20),
        || lab.tcp_works(&p12, &p21, IPERF_PORT),
    )
    .context("TCP h1-p2 -> h2-p1 never came back")?;
    println!(
        "new TCP connections {} -> {} allowed again {back} after the first delete",
        p12.name, p21.name
    );
    lab.wait_programmed(1, &ON_H1, false, WAIT)?;
    lab.wait_programmed(2, &ON_H2, false, WAIT)?;

    header(&format!(
        "ping {} -> {} and {} -> {} again",
        p11.name, p21.name, p12.name, p22.name
    ));
    for (from, to) in [(&p11, &p21), (&p12, &p22)] {
        let (stats, text) = lab.ping(from, to.ip, 2)?;
        print!("{text}");
        ensure!(
            stats.received == stats.transmitted,
            "ping {} -> {} after the delete: {stats:?}",
            from.name,
            to.name
        );
    }
    Ok(())
}

/// Prints an outcome and fails unless it is `want`.
fn expect(what: &str, allowed: bool, want: bool) -> Result<()> {
    header(&format!("{}: {what}", word(want)));
    println!("new flow {}", word(allowed));
    ensure!(
        allowed == want,
        "{what}: {} but the example policies say {}",
        word(allowed),
        word(want)
    );
    Ok(())
}

fn word(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

/// `felix policy explain` of a packet, printed; fails unless its verdict is `want`.
fn explain(
    lab: &Lab,
    from: &PodInfo,
    to: &PodInfo,
    query: (&str, Option<u16>),
    want: bool,
) -> Result<()> {
    let (proto, port) = query;
    let query = Query {
        from: from.ip,
        to: to.ip,
        proto,
        port,
    };
    let port_arg = port.map_or(String::new(), |p| format!(" --port {p}"));
    header(&format!(
        "felix policy explain --from {} --to {} --proto {proto}{port_arg}",
        from.ip, to.ip
    ));
    print!("{}", lab.explain_text(query)?);
    let verdict = lab.explain(query)?;
    ensure!(
        verdict.allowed == want,
        "explain says {}, the example policies say {}",
        word(verdict.allowed),
        word(want)
    );
    Ok(())
}

/// `path` relative to the repository, as a user would type it.
fn shown(path: &Path) -> String {
    path.strip_prefix(paths::repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
