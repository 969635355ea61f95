//! Probes for policy checks: a TCP echo server and TCP connections made by this process from
//! inside a lab namespace (a short-lived thread enters the namespace with `setns`; the sockets it
//! makes stay there), and polling an outcome until it changes, with the time it took.
//!
//! A denied first packet is dropped silently, so a denied connection times out; a refused one
//! (nobody listening) is an error, not a denial.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// How long a connection attempt waits for the handshake (the lab's RTT is well under 1 ms).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(150);

/// Moves the calling thread into network namespace `ns` (`/run/netns/<ns>`).
fn enter_netns(ns: &str) -> Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns(2) on an open namespace fd; it changes only the calling thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside network namespace `ns`; the thread ends with `f`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter_netns(&ns)?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in namespace panicked"))?
}

/// A TCP echo server on `0.0.0.0:port` inside a lab namespace; stops when dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub ns: String,
    pub port: u16,
}

impl EchoServer {
    /// Starts listening in `ns` (returns once the socket listens).
    pub fn start(ns: &str, port: u16) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (ns_owned, flag) = (ns.to_owned(), stop.clone());
        let thread = thread::spawn(move || {
            let listener = enter_netns(&ns_owned).and_then(|()| {
                let l = TcpListener::bind(("0.0.0.0", port))
                    .with_context(|| format!("binding TCP port {port} in {ns_owned}"))?;
                l.set_nonblocking(true)?;
                Ok(l)
            });
            let listener = match listener {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            serve(&listener, &flag);
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("echo server did not start")??;
        Ok(Self {
            stop,
            thread: Some(thread),
            ns: ns.to_owned(),
            port,
        })
    }
}

/// Accepts until `stop`; each connection is echoed on its own thread until EOF.
fn serve(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                thread::spawn(move || echo(stream));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn echo(mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .is_err()
    {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens a TCP connection from namespace `ns` to `to:port`: `None` when the handshake does not
/// complete within `timeout` (dropped on the way, e.g. by policy).
pub fn connect(ns: &str, to: Ipv4Addr, port: u16, timeout: Duration) -> Result<Option<TcpStream>> {
    let addr = SocketAddr::V4(SocketAddrV4::new(to, port));
    in_netns(ns, move || {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::TimedOut => Ok(None),
            Err(e) => Err(e).with_context(|| format!("connecting to {addr}")),
        }
    })
}

/// Sends `payload` over `stream` and reads it back (from an [`EchoServer`]) within `timeout`.
pub fn exchange(stream: &mut TcpStream, payload: &[u8], timeout: Duration) -> Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(payload).context("sending")?;
    let mut back = vec![0u8; payload.len()];
    stream
        .read_exact(&mut back)
        .context("reading the echo back")?;
    ensure!(back == payload, "the echo differs from what was sent");
    Ok(())
}

/// A new connection from `ns` to an echo server at `to:port` that carries a small exchange
/// both ways: `true` when it works, `false` when the handshake times out.
pub fn tcp_works(ns: &str, to: Ipv4Addr, port: u16) -> Result<bool> {
    tcp_works_within(ns, to, port, CONNECT_TIMEOUT)
}

/// [`tcp_works`] with a handshake timeout of `timeout` (shorter: finer timing while polling).
pub fn tcp_works_within(ns: &str, to: Ipv4Addr, port: u16, timeout: Duration) -> Result<bool> {
    match connect(ns, to, port, timeout)? {
        Some(mut stream) => {
            exchange(&mut stream, b"probe\n", Duration::from_secs(2))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// When an outcome changed, as [`time_until`] measured it.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    /// From the reference instant to the start of the first attempt with the new outcome.
    pub after: Duration,
    /// The start of the last attempt that still had the old outcome, if any.
    pub last_old: Option<Duration>,
    pub attempts: u32,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(f, "{:.0} ms", ms(self.after))?;
        if let Some(old) = self.last_old {
            write!(f, " (last old outcome at {:.0} ms)", ms(old))?;
        }
        write!(f, ", {} attempts", self.attempts)
    }
}

/// Runs `attempt` back to back, `gap` apart, until it returns `want`; fails after `limit`
/// (measured from `since`). Times are from `since`.
pub fn time_until(
    since: Instant,
    want: bool,
    limit: Duration,
    gap: Duration,
    mut attempt: impl FnMut() -> Result<bool>,
) -> Result<Change> {
    let mut last_old = None;
    let mut attempts = 0;
    loop {
        let start = since.elapsed();
        attempts += 1;
        if attempt()? == want {
            return Ok(Change {
                after: start,
                last_old,
                attempts,
            });
        }
        last_old = Some(start);
        if since.elapsed() >= limit {
            bail!(
                "outcome still not {want} after {:?} ({attempts} attempts)",
                since.elapsed()
            );
        }
        thread::sleep(gap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_until_reports_the_change() -> Result<()> {
        let since = Instant::now();
        let mut n = 0;
        let change = time_until(since, true, Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            Ok(n >= 3)
        })?;
        assert_eq!(change.attempts, 3);
        assert!(change.last_old.is_some_and(|old| old <= change.after));
        let never = time_until(
            Instant::now(),
            true,
            Duration::from_millis(20),
            Duration::from_millis(5),
            || Ok(false),
        );
        assert!(never.is_err());
        Ok(())
    }
}
