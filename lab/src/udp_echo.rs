//! A DNS-like UDP exchange in the lab: a server in a namespace answers each datagram with the
//! query and the address it came from, and a client asks from a *connected* socket (as resolvers
//! do), which the kernel only lets answers from the address it connected to reach: an answer
//! whose source was not translated back (a Service's backend answering for its ClusterIP) is
//! dropped, as it would be for a real resolver.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::probe::in_netns;

/// Separates the query from the client address in an answer.
const FROM: &str = " from ";

/// A UDP answering server on `0.0.0.0:port` in a lab namespace; stops when dropped.
pub struct UdpEchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub ns: String,
    pub port: u16,
}

impl UdpEchoServer {
    /// Binds in `ns` (the socket stays in that namespace) and serves on a thread.
    pub fn start(ns: &str, port: u16) -> Result<Self> {
        let socket = in_netns(ns, move || {
            UdpSocket::bind(("0.0.0.0", port)).with_context(|| format!("binding UDP port {port}"))
        })
        .with_context(|| format!("UDP server in {ns}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || serve(&socket, &flag));
        Ok(Self {
            stop,
            thread: Some(thread),
            ns: ns.to_owned(),
            port,
        })
    }
}

/// Answers `<query> from <client ip>` to every datagram until `stop`.
fn serve(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let mut answer = buf[..n].to_vec();
                answer.extend_from_slice(format!("{FROM}{}", peer.ip()).as_bytes());
                let _ = socket.send_to(&answer, peer);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `query` from namespace `ns` over a socket connected to `to:port` and waits `timeout`
/// for the answer: the client address the server saw, or `None` when no answer came (lost, or
/// from another source than `to:port`).
pub fn lookup(
    ns: &str,
    to: Ipv4Addr,
    port: u16,
    query: &str,
    timeout: Duration,
) -> Result<Option<Ipv4Addr>> {
    let query = query.to_owned();
    in_netns(ns, move || {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).context("binding the client socket")?;
        socket.connect(SocketAddrV4::new(to, port))?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send(query.as_bytes()).context("sending the query")?;
        let mut buf = [0u8; 1500];
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("answer from {to}:{port}")),
        };
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        let Some(peer) = answer
            .strip_prefix(query.as_str())
            .and_then(|rest| rest.strip_prefix(FROM))
        else {
            bail!("answer {answer:?} does not carry the query {query:?}");
        };
        Ok(Some(peer.parse().with_context(|| {
            format!("client address in {answer:?}")
        })?))
    })
}
