//! The kit's packet builder, plus frames made from felix's own policy types.

pub use testkit::packet::*;

use etherparse::PacketBuilder;

/// A frame carrying `packet` as a flow's first packet: a TCP SYN, a UDP datagram, an ICMP
/// message with its type and code, or a bare IPv4 payload of another protocol.
pub fn first_packet(packet: &felix_user::calc::policy::Packet) -> Vec<u8> {
    use felix_user::calc::policy::L4;
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
