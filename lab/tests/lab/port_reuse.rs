//! A client that reuses its source ports cannot outlive a Deny: each new connection on the ports
//! of a reset flow is a new flow, judged by policy (issue 17, item 1).

use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::{policy, probe, probe::EchoServer};

use crate::support::{IPERF_PORT, POLICY_DEADLINE, with_lab};

/// The client's source ports: a few, reused in turn as fast as connections close.
const CLIENT_PORTS: std::ops::Range<u16> = 20_000..20_008;
/// How long a connection attempt waits for the handshake (the lab's RTT is ~0.1 ms).
const HANDSHAKE: Duration = Duration::from_millis(50);
/// How long the client goes on after the policy is programmed.
const AFTER_DENY: Duration = Duration::from_secs(4);

/// What the client saw: connections made, and when the last one was made.
#[derive(Default)]
struct Tally {
    connected: AtomicU64,
    failed: AtomicU64,
    last_connected: Mutex<Option<Instant>>,
}

/// Opens a TCP connection from `0.0.0.0:sport` to `to:port` and closes it with RST (SO_LINGER
/// 0, no TIME_WAIT, so the port is free again at once): whether the handshake completed within
/// [`HANDSHAKE`].
fn connect_and_reset(sport: u16, to: Ipv4Addr, port: u16) -> io::Result<bool> {
    // SAFETY: plain socket calls on a descriptor this function owns and closes; every pointer
    // passed points to a live local of the size passed with it.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let one: libc::c_int = 1;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let options = [
                (
                    libc::SO_REUSEADDR,
                    (&one as *const libc::c_int).cast::<libc::c_void>(),
                    size_of::<libc::c_int>(),
                ),
                (
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast::<libc::c_void>(),
                    size_of::<libc::linger>(),
                ),
            ];
            for (name, value, len) in options {
                if libc::setsockopt(fd, libc::SOL_SOCKET, name, value, len as libc::socklen_t) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            let sockaddr = |addr: Ipv4Addr, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(addr).to_be(),
                },
                sin_zero: [0; 8],
            };
            let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let local = sockaddr(Ipv4Addr::UNSPECIFIED, sport);
            if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
                return Err(io::Error::last_os_error());
            }
            let remote = sockaddr(to, port);
            if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
                let error = io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::EINPROGRESS) {
                    return Err(error);
                }
            }
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            if libc::poll(&mut poll, 1, HANDSHAKE.as_millis() as libc::c_int) <= 0 {
                return Ok(false);
            }
            let mut error: libc::c_int = 0;
            let mut error_len = size_of::<libc::c_int>() as libc::socklen_t;
            let rc = libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut libc::c_int).cast(),
                &mut error_len,
            );
            Ok(rc == 0 && error == 0)
        })();
        libc::close(fd);
        result
    }
}

/// Connects from namespace `ns` to `to:port` back to back, cycling through [`CLIENT_PORTS`],
/// until `stop`; counts into `tally`.
fn reuse_ports(ns: &str, to: Ipv4Addr, port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let result = probe::in_netns(ns, move || {
        for sport in CLIENT_PORTS.cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match connect_and_reset(sport, to, port) {
                Ok(true) => {
                    let now = Instant::now();
                    tally.connected.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = tally.last_connected.lock() {
                        *last = Some(now);
                    }
                }
                // A port still busy (EADDRINUSE) or a refused handshake counts as a failure.
                Ok(false) | Err(_) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("the port-reusing client stopped: {e:#}");
    }
}

/// h1-p1 connects to h2-p1 at full rate from a handful of reused ports, closing each connection
/// with RST; `examples/policy/default-deny.yaml` (all ingress to h2-p1 denied) is applied. No
/// connection may succeed later than 1 s after the policy is programmed on h2 (before the fix,
/// they went on for the 40 s reset timeout, restarted by every SYN).
#[test]
fn deny_stops_a_client_that_reuses_its_ports_within_a_second() -> Result<()> {
    with_lab(|lab| {
        let client = lab.pod(1, 1)?.clone();
        let server = lab.pod(2, 1)?.clone();
        let _echo = EchoServer::start(&server.ns, IPERF_PORT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let storm = {
            let (ns, stop, tally) = (client.ns.clone(), stop.clone(), tally.clone());
            thread::spawn(move || reuse_ports(&ns, server.ip, IPERF_PORT, stop, tally))
        };
        let outcome = (|| -> Result<()> {
            thread::sleep(Duration::from_secs(1));
            let before = tally.connected.load(Ordering::Relaxed);
            ensure!(
                before > 100,
                "only {before} connections before the policy ({} failed)",
                tally.failed.load(Ordering::Relaxed)
            );
            let file = policy::example("default-deny.yaml")?;
            let applied = Instant::now();
            lab.apply(&file)?;
            lab.wait_programmed(2, &["default-deny"], true, Duration::from_secs(5))?;
            let programmed = Instant::now();
            let at_programmed = tally.connected.load(Ordering::Relaxed);
            thread::sleep(AFTER_DENY);
            let total = tally.connected.load(Ordering::Relaxed);
            let last = tally
                .last_connected
                .lock()
                .ok()
                .and_then(|last| *last)
                .context("no connection at all")?;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let since_programmed = last.checked_duration_since(programmed);
            println!(
                "port-reusing client ({} ports): {before} connections in the first second, \
                 {} until the policy was seen programmed ({:.0} ms after `felix apply` began), \
                 {} after; last connection {:.0} ms after `felix apply` began, {}",
                CLIENT_PORTS.len(),
                at_programmed - before,
                ms(programmed - applied),
                total - at_programmed,
                ms(last.saturating_duration_since(applied)),
                match since_programmed {
                    Some(d) => format!("{:.0} ms after the policy was programmed", ms(d)),
                    None => format!(
                        "{:.0} ms before the policy was seen programmed",
                        ms(programmed - last)
                    ),
                },
            );
            ensure!(
                since_programmed.is_none_or(|d| d < POLICY_DEADLINE),
                "a connection succeeded {since_programmed:?} after the deny was programmed"
            );
            ensure!(
                tally.failed.load(Ordering::Relaxed) > 0,
                "the client never failed: the deny did not bite"
            );
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let _ = storm.join();
        outcome
    })
}
