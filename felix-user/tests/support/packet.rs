//! Crafted packets: well-formed ones from etherparse, malformed ones by editing their bytes.

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

fn build(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
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
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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

/// A frame carrying `packet` as a flow's first packet: a TCP SYN, a UDP datagram, an ICMP
/// message with its type and code, or a bare IPv4 payload of another protocol.
pub fn first_packet(packet: &felix_user::policy::Packet) -> Vec<u8> {
    use felix_user::policy::L4;
    let (src, dst) = (packet.src.octets(), packet.dst.octets());
    let ip = || PacketBuilder::ethernet2(POD_MAC, CALI_MAC).ipv4(src, dst, 64);
    build(|out| match (packet.proto, packet.l4) {
        (6, L4::Ports { src: s, dst: d }) => ip()
            .tcp(s, d, 1, 64240)
            .syn()
            .write(out, &[])
            .expect("write TCP"),
        (17, L4::Ports { src: s, dst: d }) => {
            ip().udp(s, d).write(out, b"policy").expect("write UDP")
        }
        (1, L4::Icmp { icmp_type, code }) => ip()
            .icmpv4_raw(icmp_type, code, [0, 7, 0, 1])
            .write(out, b"policy")
            .expect("write ICMP"),
        (proto, _) => ip()
            .write(out, etherparse::IpNumber(proto), &[0u8; 8])
            .expect("write IPv4"),
    })
}
