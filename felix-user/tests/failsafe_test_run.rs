//! Tier 2: the uplink's XDP program with the failsafe map, run with BPF_PROG_TEST_RUN on crafted
//! packets from a deny-listed source: failsafe ports pass, everything else is dropped and
//! counted. Needs root and bpffs; built only with `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod support;

use aya::maps::lpm_trie::Key;
use felix_common::{Direction, Reason};
use felix_user::dataplane::failsafe::{self, FailsafePort, FailsafePorts};

use support::{
    harness::Harness,
    net::{HOST_IP, PEER_HOST_IP},
    packet::{self, IP_OFFSET},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
/// The ingress ifindex BPF_PROG_TEST_RUN gives an XDP program.
const TEST_IFINDEX: u32 = 1;
const DENIED: (u16, u16) = (Direction::XdpUplink as u16, Reason::DropXdpDenied as u16);

fn ports(text: &str) -> Vec<FailsafePort> {
    text.parse::<FailsafePorts>().expect("valid port list").0
}

/// A harness whose deny list holds the peer host, with `inbound`/`outbound` failsafe ports.
fn denying_peer(tag: &str, inbound: &str, outbound: &str) -> Harness {
    let mut h = Harness::new(tag);
    h.dataplane()
        .xdp_deny()
        .expect("deny map")
        .insert(&Key::new(32, PEER_HOST_IP), 1, 0)
        .expect("deny the peer");
    failsafe::program_dataplane(h.dataplane(), &ports(inbound), &ports(outbound))
        .expect("program the failsafe ports");
    h
}

fn dropped(h: &mut Harness) -> u64 {
    h.counters(TEST_IFINDEX)
        .get(&DENIED)
        .map_or(0, |v| v.packets)
}

fn udp_to(dport: u16) -> Vec<u8> {
    // `udp_between` sends from port 1000 to 2000: patch the destination port.
    let mut frame = packet::udp_between(PEER_HOST_IP, HOST_IP, 64, b"x");
    frame[IP_OFFSET + 22..IP_OFFSET + 24].copy_from_slice(&dport.to_be_bytes());
    frame
}

#[test]
fn denied_source_reaches_failsafe_ports_only() {
    let mut h = denying_peer("fs-in", failsafe::DEFAULT_INBOUND, "none");
    let before = dropped(&mut h);
    let ssh = packet::tcp_segment(PEER_HOST_IP, 40000, HOST_IP, 22, SYN);
    assert_eq!(h.run_xdp(&ssh), XDP_PASS, "tcp:22 is failsafe");
    assert_eq!(h.run_xdp(&udp_to(68)), XDP_PASS, "udp:68 is failsafe");
    assert_eq!(dropped(&mut h), before, "nothing failsafe is counted");

    let web = packet::tcp_segment(PEER_HOST_IP, 40000, HOST_IP, 8080, SYN);
    assert_eq!(h.run_xdp(&web), XDP_DROP, "tcp:8080 is not failsafe");
    assert_eq!(dropped(&mut h), before + 1);
    assert_eq!(h.run_xdp(&udp_to(22)), XDP_DROP, "udp:22 is not tcp:22");
    assert_eq!(
        h.run_xdp(&packet::icmp_echo()),
        XDP_PASS,
        "pod source: not denied"
    );
    let ping = packet::with_source(packet::icmp_echo(), PEER_HOST_IP);
    assert_eq!(
        h.run_xdp(&ping),
        XDP_DROP,
        "ICMP has no port to be failsafe"
    );
    assert_eq!(dropped(&mut h), before + 3);
}

#[test]
fn replies_from_outbound_failsafe_ports_pass() {
    let mut h = denying_peer("fs-out", "none", failsafe::DEFAULT_OUTBOUND);
    let before = dropped(&mut h);
    let etcd_reply = packet::tcp_segment(PEER_HOST_IP, 2379, HOST_IP, 45000, SYN_ACK);
    assert_eq!(h.run_xdp(&etcd_reply), XDP_PASS, "reply from tcp:2379");
    let to_etcd = packet::tcp_segment(PEER_HOST_IP, 45000, HOST_IP, 2379, SYN);
    assert_eq!(
        h.run_xdp(&to_etcd),
        XDP_DROP,
        "2379 is outbound only here: a connection to it is dropped"
    );
    assert_eq!(dropped(&mut h), before + 1);
}

#[test]
fn a_non_first_fragment_has_no_port_and_is_dropped() {
    let mut h = denying_peer("fs-frag", failsafe::DEFAULT_INBOUND, "none");
    let mut fragment = packet::tcp_segment(PEER_HOST_IP, 40000, HOST_IP, 22, SYN);
    // Fragment offset 8 (64 bytes): the bytes where ports would be are payload.
    fragment[IP_OFFSET + 6..IP_OFFSET + 8].copy_from_slice(&8u16.to_be_bytes());
    packet::fix_ip_checksum(&mut fragment);
    let before = dropped(&mut h);
    assert_eq!(h.run_xdp(&fragment), XDP_DROP);
    assert_eq!(dropped(&mut h), before + 1);
}

#[test]
fn reprogramming_replaces_the_ports_and_dump_reads_them() {
    let mut h = denying_peer("fs-swap", "tcp:22", "udp:53");
    let rows = failsafe::read(&h.paths()).expect("read the pinned map");
    let shown: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}:{}", r.direction, r.protocol, r.port))
        .collect();
    assert_eq!(shown, ["inbound tcp:22", "outbound udp:53"]);

    let ssh = packet::tcp_segment(PEER_HOST_IP, 40000, HOST_IP, 22, SYN);
    let alt = packet::tcp_segment(PEER_HOST_IP, 40000, HOST_IP, 2222, SYN);
    assert_eq!(h.run_xdp(&ssh), XDP_PASS);
    assert_eq!(h.run_xdp(&alt), XDP_DROP);

    let (added, removed) =
        failsafe::program_dataplane(h.dataplane(), &ports("tcp:2222"), &[]).expect("reprogram");
    assert_eq!((added, removed), (1, 2));
    assert_eq!(h.run_xdp(&ssh), XDP_DROP, "tcp:22 no longer failsafe");
    assert_eq!(h.run_xdp(&alt), XDP_PASS, "tcp:2222 now failsafe");
    let rows = failsafe::read(&h.paths()).expect("read the pinned map");
    assert_eq!(rows.len(), 1);
}
