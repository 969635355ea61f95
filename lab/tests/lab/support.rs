//! Helpers shared by the lab tests: a lab per test torn down and checked afterwards, polling,
//! commands in a lab namespace, the ports and deadlines of the traffic checks, and the example
//! policies' expected outcomes.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lab::cmd;
use lab::{Lab, LabOptions, proc, teardown};

pub(crate) const PINGS: u32 = 3;

pub(crate) fn assert_gone(id: &str, processes: &[proc::ProcRecord]) {
    let left = teardown::leftovers(id, processes);
    assert!(left.is_empty(), "lab {id} left behind: {left:?}");
}

/// Brings a lab up and checks, after the test body, that its teardown leaves nothing behind.
pub(crate) fn with_lab(body: impl FnOnce(&mut Lab) -> Result<()>) -> Result<()> {
    with_lab_options(LabOptions::default(), body)
}

/// [`with_lab`] with `opts`.
pub(crate) fn with_lab_options(
    opts: LabOptions,
    body: impl FnOnce(&mut Lab) -> Result<()>,
) -> Result<()> {
    let mut lab = Lab::up(opts)?;
    let result = body(&mut lab);
    let id = lab.id().to_owned();
    let processes = lab.processes().to_vec();
    if let Err(e) = &result {
        // First, so that a log truncated at its end still shows why the test failed.
        eprintln!("=== test failed: {e:#}");
        for rec in &processes {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                rec.what,
                rec.log.display(),
                proc::log_tail(&rec.log, 40)
            );
        }
    }
    lab.teardown()?;
    assert_gone(&id, &processes);
    result
}

/// How long felix may take to attach or detach the uplink's XDP after a deny list edit (it
/// checks every second; `felix bpf xdp-deny` itself waits up to 3 s).
pub(crate) const XDP_BOUND: Duration = Duration::from_secs(3);

/// Calls `check` every 200 ms until it returns `Ok(Some(v))` (then `v` and the time it took) or
/// `timeout` passes (then an error with the last thing `check` said was missing, or its error).
pub(crate) fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Ok(v)) => return Ok((v, start.elapsed())),
            Ok(Err(missing)) => missing,
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= timeout {
            bail!("not {what} after {timeout:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut argv = vec!["-n", ns];
    argv.extend_from_slice(args);
    cmd::ip(&argv)
}

/// `felix <args> --etcd-endpoints <lab etcd>` inside host h1's namespace (where etcd is reachable).
pub(crate) fn felix_in_h1(lab: &Lab, args: &[&str]) -> Result<std::process::Output> {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.node(1)))
        .arg(lab.felix_bin())
        .args(args)
        .args(["--etcd-endpoints", &lab.state().etcd_url])
        .envs(lab.etcd_cli_env())
        .output()
        .context("run felix")
}

/// The port the policy tests' echo servers listen on: iperf3's, which
/// `examples/policy/allow-iperf3.yaml` allows.
pub(crate) const IPERF_PORT: u16 = 5201;

/// How long felix may take to enforce a policy change on new flows.
pub(crate) const POLICY_DEADLINE: Duration = Duration::from_secs(1);

/// Gap between two probes while waiting for a policy change.
pub(crate) const PROBE_GAP: Duration = Duration::from_millis(20);

/// Handshake timeout of the probes that time a policy change (the lab's RTT is ~0.1 ms).
pub(crate) const TIMING_HANDSHAKE: Duration = Duration::from_millis(40);

/// An expected outcome of the example policies (applied all together).
pub(crate) struct Expect {
    from: (u8, u8),
    to: (u8, u8),
    /// `None`: ICMP echo; `Some(port)`: a TCP connection.
    tcp: Option<u16>,
    allowed: bool,
    why: &'static str,
}

/// What examples/policy/*.yaml, applied together, do to the lab's pods (their header comments).
pub(crate) const EXAMPLE_OUTCOMES: [Expect; 8] = [
    Expect {
        from: (1, 1),
        to: (2, 1),
        tcp: Some(IPERF_PORT),
        allowed: true,
        why: "allow-iperf3",
    },
    Expect {
        from: (1, 1),
        to: (2, 1),
        tcp: None,
        allowed: false,
        why: "deny-icmp-from-h1-p1",
    },
    Expect {
        from: (1, 2),
        to: (2, 1),
        tcp: None,
        allowed: false,
        why: "default-deny: end of the default tier",
    },
    Expect {
        from: (1, 2),
        to: (2, 1),
        tcp: Some(IPERF_PORT),
        allowed: false,
        why: "allow-iperf3 admits h1-p1 only",
    },
    Expect {
        from: (1, 2),
        to: (2, 2),
        tcp: None,
        allowed: false,
        why: "tier security isolates h2-p2",
    },
    Expect {
        from: (2, 2),
        to: (1, 2),
        tcp: None,
        allowed: false,
        why: "tier security isolates h2-p2",
    },
    Expect {
        from: (1, 2),
        to: (1, 1),
        tcp: None,
        allowed: true,
        why: "security passes, no default-tier policy: profile",
    },
    Expect {
        from: (2, 1),
        to: (1, 2),
        tcp: None,
        allowed: true,
        why: "h2-p1's egress is not restricted",
    },
];

/// Checks every expectation; the ones that did not hold.
pub(crate) fn example_outcomes_wrong(lab: &Lab, invert: bool) -> Result<Vec<String>> {
    let mut wrong = Vec::new();
    for e in &EXAMPLE_OUTCOMES {
        let from = lab.pod(e.from.0, e.from.1)?;
        let to = lab.pod(e.to.0, e.to.1)?;
        let got = match e.tcp {
            Some(port) => lab.tcp_works(from, to, port)?,
            None => lab.ping_once(from, to)?,
        };
        // With no policy at all, everything is allowed.
        let want = e.allowed || invert;
        if got != want {
            let what = e.tcp.map_or("ping".to_owned(), |p| format!("tcp {p}"));
            wrong.push(format!(
                "{what} {} -> {}: allowed {got}, expected {want} ({})",
                from.name, to.name, e.why
            ));
        }
    }
    Ok(wrong)
}
