//! Crafted packets: well-formed ones from etherparse, malformed ones by editing their bytes.

use etherparse::PacketBuilder;

pub const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CALI_MAC: [u8; 6] = [0xee; 6];
pub const POD_IP: [u8; 4] = [192, 168, 2, 1];
pub const PEER_IP: [u8; 4] = [192, 168, 2, 2];

/// Offset of the IPv4 header in an Ethernet frame.
pub const IP_OFFSET: usize = 14;

fn build(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut frame = Vec::new();
    builder(&mut frame);
    frame
}

/// A TCP SYN from the pod to its peer with `payload`.
pub fn tcp(payload: &[u8]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(POD_MAC, CALI_MAC)
            .ipv4(POD_IP, PEER_IP, 64)
            .tcp(40000, 80, 1, 64240)
            .syn()
            .write(out, payload)
            .expect("write TCP packet");
    })
}

/// A UDP datagram from the pod to its peer.
pub fn udp(payload: &[u8]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(POD_MAC, CALI_MAC)
            .ipv4(POD_IP, PEER_IP, 64)
            .udp(5353, 53)
            .write(out, payload)
            .expect("write UDP packet");
    })
}

/// An ICMP echo request from the pod to its peer.
pub fn icmp_echo() -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(POD_MAC, CALI_MAC)
            .ipv4(POD_IP, PEER_IP, 64)
            .icmpv4_echo_request(7, 1)
            .write(out, b"ping-payload")
            .expect("write ICMP packet");
    })
}

/// An ARP request for 169.254.1.1, as a pod sends for its gateway.
pub fn arp_request() -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&POD_MAC);
    frame.extend_from_slice(&0x0806u16.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&POD_MAC);
    frame.extend_from_slice(&POD_IP);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[169, 254, 1, 1]);
    frame
}

/// An IPv6 frame (ethertype 0x86dd) carrying a minimal header.
pub fn ipv6() -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&CALI_MAC);
    frame.extend_from_slice(&POD_MAC);
    frame.extend_from_slice(&0x86ddu16.to_be_bytes());
    frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 59, 64]);
    frame.extend_from_slice(&[0; 32]);
    frame
}

/// `frame` with its IHL field set to `ihl` (32-bit words).
pub fn with_ihl(mut frame: Vec<u8>, ihl: u8) -> Vec<u8> {
    frame[IP_OFFSET] = (frame[IP_OFFSET] & 0xf0) | (ihl & 0x0f);
    frame
}

/// `frame` with its IP version field set to `version`.
pub fn with_version(mut frame: Vec<u8>, version: u8) -> Vec<u8> {
    frame[IP_OFFSET] = (version << 4) | (frame[IP_OFFSET] & 0x0f);
    frame
}

/// `frame` with the IPv4 total length field set to `len`.
pub fn with_total_len(mut frame: Vec<u8>, len: u16) -> Vec<u8> {
    frame[IP_OFFSET + 2..IP_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
    frame
}

/// The first `len` bytes of `frame`.
pub fn truncated(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame.truncate(len);
    frame
}
