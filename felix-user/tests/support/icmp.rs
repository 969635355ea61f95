//! Path MTU in tests: frames with or without DF, and the checks of the ICMP errors the
//! programs send back into the pod ("fragmentation needed", time exceeded).

use etherparse::PacketBuilder;

use super::{
    harness::Harness,
    net::HOST_IP,
    packet::{self, CALI_MAC, IP_OFFSET, POD_IP, POD_MAC, internet_checksum},
};

/// The DF bit in the IPv4 flags byte.
const DF: u8 = 0x40;

/// A TCP segment (ACK) from the pod to `dst` of `ip_len` bytes of IP, DF set (as TCP sends).
pub fn tcp_of_ip_len(dst: [u8; 4], ip_len: usize) -> Vec<u8> {
    packet::build(|out| {
        PacketBuilder::ethernet2(POD_MAC, CALI_MAC)
            .ipv4(POD_IP, dst, 64)
            .tcp(40000, 80, 1000, 64240)
            .ack(1)
            .write(out, &vec![0x5a; ip_len - 40])
            .expect("write TCP segment");
    })
}

/// Sets the uplink MTU in the host's configuration map.
pub fn set_uplink_mtu(h: &mut Harness, mtu: u32) {
    let mut config = h.dataplane().config().expect("config map");
    let mut value = config.get(&0, 0).expect("config entry");
    value.uplink_mtu = mtu;
    config.set(0, value, 0).expect("write config");
}

/// `frame` with DF set or cleared (checksum fixed).
pub fn with_df(mut frame: Vec<u8>, df: bool) -> Vec<u8> {
    if df {
        frame[IP_OFFSET + 6] |= DF;
    } else {
        frame[IP_OFFSET + 6] &= !DF;
    }
    packet::fix_ip_checksum(&mut frame);
    frame
}

/// Checks that `out` is an ICMP error (`icmp_type`, `code`) for `sent` (a frame from the pod):
/// to the pod's MAC from the gateway's, from the host to the pod, both checksums valid,
/// quoting `sent`'s IP header as sent and at least 8 bytes after it. Returns the ICMP message.
pub fn assert_icmp_error<'a>(sent: &[u8], out: &'a [u8], icmp_type: u8, code: u8) -> &'a [u8] {
    assert_eq!(&out[..6], &POD_MAC, "to the pod's MAC");
    assert_eq!(&out[6..12], &CALI_MAC, "from the gateway's");
    assert_eq!(&out[12..14], &[0x08, 0x00], "IPv4");
    let ip = &out[IP_OFFSET..];
    assert_eq!(ip[0], 0x45, "IPv4 without options");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(total, ip.len(), "total length is the frame's");
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(&ip[12..16], &HOST_IP, "from the host");
    assert_eq!(&ip[16..20], &POD_IP, "to the pod");
    assert!(packet::ipv4_checksum_ok(out, IP_OFFSET), "IPv4 checksum");
    let icmp = &ip[20..];
    assert_eq!((icmp[0], icmp[1]), (icmp_type, code), "type and code");
    assert_eq!(internet_checksum(0, icmp), 0, "ICMP checksum");
    let quote = &icmp[8..];
    let sent_ip = &sent[IP_OFFSET..];
    let header_len = usize::from(sent_ip[0] & 0x0f) * 4;
    assert!(quote.len() >= header_len + 8, "IP header and 8 bytes");
    assert_eq!(quote, &sent_ip[..quote.len()], "the packet as sent");
    icmp
}

/// Checks that `out` is the ICMP "fragmentation needed" (destination unreachable, code 4) for
/// `sent` with next-hop MTU `mtu` ([`assert_icmp_error`]; the quote keeps the TTL as sent).
pub fn assert_frag_needed(sent: &[u8], out: &[u8], mtu: u16) {
    let icmp = assert_icmp_error(sent, out, 3, 4);
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), mtu, "next-hop MTU");
}
