//! The measured frames: Ethernet, IPv4 and a TCP header without payload, checksums valid
//! (built by the test kit's [`testkit::packet::tcp_frame`]).

use testkit::packet::{self, TcpFrame};

/// TCP flags.
pub const SYN: u8 = packet::TCP_SYN;
pub const ACK: u8 = packet::TCP_ACK;

/// One side of a TCP flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub addr: [u8; 4],
    pub port: u16,
}

/// A TCP segment `src` -> `dst` with `flags` (Ethernet: to the pod's MAC from `ee:ee:..`).
pub fn tcp(src: Side, dst: Side, flags: u8) -> Vec<u8> {
    packet::tcp_frame(&TcpFrame {
        dst_mac: packet::POD_MAC,
        src_mac: packet::CALI_MAC,
        src: src.addr,
        sport: src.port,
        dst: dst.addr,
        dport: dst.port,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::packet::{IP_OFFSET, PROTO_TCP, TCP_OFFSET, internet_checksum, partial_sum};

    fn checksum(initial: u32, bytes: &[u8]) -> u16 {
        internet_checksum(initial, bytes)
    }

    #[test]
    fn checksums_verify() {
        let src = Side {
            addr: [10, 200, 0, 1],
            port: 40000,
        };
        let dst = Side {
            addr: [192, 168, 2, 1],
            port: 9999,
        };
        let f = tcp(src, dst, SYN);
        assert_eq!(f.len(), 54);
        assert_eq!(checksum(0, &f[IP_OFFSET..TCP_OFFSET]), 0);
        let pseudo = [&f[26..34], &[0, PROTO_TCP], &20u16.to_be_bytes()[..]].concat();
        assert_eq!(checksum(partial_sum(&pseudo), &f[TCP_OFFSET..]), 0);
        assert_eq!(f[TCP_OFFSET + 13], SYN);
    }
}
