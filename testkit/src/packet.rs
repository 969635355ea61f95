//! Crafted packets: well-formed ones from etherparse, malformed ones by editing their bytes,
//! and a TCP frame built byte by byte with every header field chosen ([`tcp_frame`]).

use etherparse::PacketBuilder;

pub const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x02];
pub const CALI_MAC: [u8; 6] = [0xee; 6];
pub const POD_IP: [u8; 4] = [192, 168, 2, 1];
pub const PEER_IP: [u8; 4] = [192, 168, 2, 2];
/// In this host's block, but no pod has it.
pub const UNUSED_LOCAL_IP: [u8; 4] = [192, 168, 2, 9];
/// A pod in the other host's block.
pub const REMOTE_POD_IP: [u8; 4] = [192, 168, 3, 1];

/// Offset of the IPv4 header in an Ethernet frame.
pub const IP_OFFSET: usize = 14;

/// The bytes `builder` writes.
pub fn build(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut frame = Vec::new();
    builder(&mut frame);
    frame
}

/// A TCP segment `src`:`sport` -> `dst`:`dport` with the given flags (FIN 1, SYN 2, RST 4,
/// ACK 16).
pub fn tcp_segment(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    build(|out| {
        let mut step = PacketBuilder::ethernet2(POD_MAC, CALI_MAC)
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 64240);
        if flags & 0x02 != 0 {
            step = step.syn();
        }
        if flags & 0x10 != 0 {
            step = step.ack(1);
        }
        if flags & 0x01 != 0 {
            step = step.fin();
        }
        if flags & 0x04 != 0 {
            step = step.rst();
        }
        step.write(out, &[]).expect("write TCP segment");
    })
}

/// An IPv4 packet (no Ethernet header) from `src` to `dst` carrying UDP `payload`.
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ipv4(src, dst, ttl)
            .udp(1000, 2000)
            .write(out, payload)
            .expect("write UDP packet");
    })
}

/// A UDP packet from `src` to `dst` in an Ethernet frame.
pub fn udp_between(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = eth_header(0x0800);
    frame.extend_from_slice(&ipv4_udp(src, dst, ttl, payload));
    frame
}

/// An IPIP frame: Ethernet, outer IPv4 (`outer_src` -> `outer_dst`, protocol 4), then `inner`.
pub fn ipip(outer_src: [u8; 4], outer_dst: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let mut frame = eth_header(0x0800);
    let total = (20 + inner.len()) as u16;
    let mut outer = [0u8; 20];
    outer[0] = 0x45;
    outer[2..4].copy_from_slice(&total.to_be_bytes());
    outer[8] = 64;
    outer[9] = 4;
    outer[12..16].copy_from_slice(&outer_src);
    outer[16..20].copy_from_slice(&outer_dst);
    let sum = ipv4_checksum(&outer);
    outer[10..12].copy_from_slice(&sum.to_be_bytes());
    frame.extend_from_slice(&outer);
    frame.extend_from_slice(inner);
    frame
}

fn eth_header(ether_type: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&CALI_MAC);
    frame.extend_from_slice(&POD_MAC);
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame
}

/// The IPv4 header checksum of `header` (with its checksum field zero).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    internet_checksum(0, header)
}

/// The one's-complement sum of `bytes` as 16-bit big-endian words (an odd last byte padded
/// with zero), not folded: a partial sum for [`internet_checksum`].
pub fn partial_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
        .sum()
}

/// The Internet checksum of `bytes` added to `initial` (a partial sum, e.g. of a pseudo
/// header).
pub fn internet_checksum(initial: u32, bytes: &[u8]) -> u16 {
    let mut sum = initial + partial_sum(bytes);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// TCP flags.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Offset of the TCP header in a [`tcp_frame`] (no IP options).
pub const TCP_OFFSET: usize = IP_OFFSET + 20;

/// Every field of a [`tcp_frame`] that varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFrame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: [u8; 4],
    pub sport: u16,
    pub dst: [u8; 4],
    pub dport: u16,
    pub flags: u8,
}

/// Ethernet, IPv4 (TTL 64, no options, ID and fragment fields zero) and a TCP header without
/// payload (sequence 1, acknowledgment 0, window 64240), checksums valid: 54 bytes.
pub fn tcp_frame(spec: &TcpFrame) -> Vec<u8> {
    let mut f = vec![0u8; TCP_OFFSET + 20];
    f[0..6].copy_from_slice(&spec.dst_mac);
    f[6..12].copy_from_slice(&spec.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[IP_OFFSET..TCP_OFFSET];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = PROTO_TCP;
    ip[12..16].copy_from_slice(&spec.src);
    ip[16..20].copy_from_slice(&spec.dst);
    let sum = internet_checksum(0, ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut f[TCP_OFFSET..];
    tcp[0..2].copy_from_slice(&spec.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&spec.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = spec.flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = [
        &spec.src[..],
        &spec.dst[..],
        &[0, PROTO_TCP],
        &20u16.to_be_bytes(),
    ]
    .concat();
    let sum = internet_checksum(partial_sum(&pseudo), tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Whether the IPv4 header at `offset` of `frame` has a valid checksum.
pub fn ipv4_checksum_ok(frame: &[u8], offset: usize) -> bool {
    let len = usize::from(frame[offset] & 0x0f) * 4;
    ipv4_checksum(&frame[offset..offset + len]) == 0
}

/// `frame` with the source address set to `src` (checksum fixed).
pub fn with_source(mut frame: Vec<u8>, src: [u8; 4]) -> Vec<u8> {
    frame[IP_OFFSET + 12..IP_OFFSET + 16].copy_from_slice(&src);
    fix_ip_checksum(&mut frame);
    frame
}

/// Recomputes the IPv4 header checksum of `frame`.
pub fn fix_ip_checksum(frame: &mut [u8]) {
    frame[IP_OFFSET + 10..IP_OFFSET + 12].copy_from_slice(&[0, 0]);
    let len = usize::from(frame[IP_OFFSET] & 0x0f) * 4;
    let sum = ipv4_checksum(&frame[IP_OFFSET..IP_OFFSET + len]);
    frame[IP_OFFSET + 10..IP_OFFSET + 12].copy_from_slice(&sum.to_be_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_frame_checksums_verify() {
        let f = tcp_frame(&TcpFrame {
            dst_mac: POD_MAC,
            src_mac: CALI_MAC,
            src: [10, 200, 0, 1],
            sport: 40000,
            dst: POD_IP,
            dport: 9999,
            flags: TCP_SYN,
        });
        assert_eq!(f.len(), 54);
        assert!(ipv4_checksum_ok(&f, IP_OFFSET));
        let pseudo = [&f[26..34], &[0, PROTO_TCP], &20u16.to_be_bytes()[..]].concat();
        assert_eq!(internet_checksum(partial_sum(&pseudo), &f[TCP_OFFSET..]), 0);
        assert_eq!(f[TCP_OFFSET + 13], TCP_SYN);
    }

    #[test]
    fn built_frames_have_valid_ip_checksums() {
        for frame in [
            tcp_segment(POD_IP, 40000, PEER_IP, 80, TCP_SYN),
            udp_between(POD_IP, REMOTE_POD_IP, 64, b"x"),
            ipip(
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                &ipv4_udp(POD_IP, REMOTE_POD_IP, 64, b"y"),
            ),
            with_source(udp(b"z"), UNUSED_LOCAL_IP),
        ] {
            assert!(ipv4_checksum_ok(&frame, IP_OFFSET));
        }
    }
}
