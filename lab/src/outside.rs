//! The outside: namespace `<id>-outside` on the fabric ([`crate::names::OUTSIDE_IP`]/24) whose only
//! route is the fabric's /24 (the hosts), none to the pods' pool: a destination outside the
//! cluster, whose replies reach a pod only when the pod's host masqueraded it (IP pool
//! `natOutgoing`). [`WhoAmI`] serves TCP and UDP there (or in any lab namespace) and answers
//! each request with the address it came from; [`tcp_source`] and [`udp_source`] ask it.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::probe::{self, CONNECT_TIMEOUT};

/// How long a UDP question waits for its answer (the lab's RTT is well under 1 ms).
pub const UDP_TIMEOUT: Duration = Duration::from_millis(300);

/// A TCP and UDP server on `0.0.0.0:port` answering each connection or datagram with the
/// source address it saw (`"10.0.0.1\n"`); stops when dropped.
pub struct WhoAmI {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub ns: String,
    pub port: u16,
}

impl WhoAmI {
    /// Starts serving in `ns` (the sockets are made there; they stay in it).
    pub fn start(ns: &str, port: u16) -> Result<Self> {
        let where_ = format!("{ns}:{port}");
        let (tcp, udp) = probe::in_netns(ns, move || {
            let tcp = TcpListener::bind(("0.0.0.0", port))
                .with_context(|| format!("binding TCP {where_}"))?;
            tcp.set_nonblocking(true)?;
            let udp = UdpSocket::bind(("0.0.0.0", port))
                .with_context(|| format!("binding UDP {where_}"))?;
            udp.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok((tcp, udp))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let tcp_thread = thread::spawn(move || serve_tcp(&tcp, &flag));
        let flag = stop.clone();
        let udp_thread = thread::spawn(move || serve_udp(&udp, &flag));
        Ok(Self {
            stop,
            threads: vec![tcp_thread, udp_thread],
            ns: ns.to_owned(),
            port,
        })
    }
}

impl Drop for WhoAmI {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn answer(peer: SocketAddr) -> String {
    format!("{}\n", peer.ip())
}

fn serve_tcp(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = stream.write_all(answer(peer).as_bytes());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn serve_udp(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((_, peer)) = socket.recv_from(&mut buf) {
            // With no route back (no masquerade) the answer cannot be sent: nothing to do.
            let _ = socket.send_to(answer(peer).as_bytes(), peer);
        }
    }
}

fn parse_answer(text: &str) -> Result<Ipv4Addr> {
    match text.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        _ => anyhow::bail!("not a whoami answer: {text:?}"),
    }
}

/// The source address a [`WhoAmI`] at `to:port` saw for a TCP connection from namespace `ns`;
/// `None` when the handshake does not complete (no way back, say).
pub fn tcp_source(ns: &str, to: Ipv4Addr, port: u16) -> Result<Option<Ipv4Addr>> {
    let Some(mut stream) = probe::connect(ns, to, port, CONNECT_TIMEOUT)? else {
        return Ok(None);
    };
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .context("reading the whoami answer")?;
    parse_answer(&text).map(Some)
}

/// The source address a [`WhoAmI`] at `to:port` saw for a UDP datagram from namespace `ns`;
/// `None` when no answer comes within [`UDP_TIMEOUT`].
pub fn udp_source(ns: &str, to: Ipv4Addr, port: u16) -> Result<Option<Ipv4Addr>> {
    let text = probe::in_netns(ns, move || {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).context("binding a UDP socket")?;
        socket.set_read_timeout(Some(UDP_TIMEOUT))?;
        socket
            .send_to(b"who?\n", (to, port))
            .with_context(|| format!("sending to {to}:{port}"))?;
        let mut buf = [0u8; 64];
        match socket.recv(&mut buf) {
            Ok(n) => Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e).context("receiving the whoami answer"),
        }
    })?;
    text.as_deref().map(parse_answer).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_to_addresses() -> Result<()> {
        let peer: SocketAddr = "10.0.0.1:4242".parse()?;
        assert_eq!(parse_answer(&answer(peer))?, Ipv4Addr::new(10, 0, 0, 1));
        assert!(parse_answer("hello").is_err());
        assert!(parse_answer("fd00::1\n").is_err());
        Ok(())
    }
}
