//! Tier 2: hostile and unusual frames through the real programs with BPF_PROG_TEST_RUN: 802.1Q
//! and 802.1ad tags, IPv4 fragments under a port policy (later fragments are judged and
//! forwarded as their first fragment), and the ICMP time exceeded a pod gets when its packet's
//! TTL runs out (from this host, or from the host stack for a packet from the fabric). Needs
//! root and bpffs; built with `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod support;

use aya::programs::{TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use felix_common::{CtKey, Direction, EndpointInfo, Reason, endpoints::endpoint_flags};
use felix_user::{
    PROG_FROM_UPLINK, PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD,
    calc::policy::{
        PolicyDirection,
        calc::GroupKey,
        program::{Match, PortMatch, Program, ProtoMatch, Step},
    },
};

use support::{
    harness::{Harness, On, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, WORKLOAD_A, one_rule_profile},
    icmp,
    net::{HOST_IP, PEER_HOST_IP},
    packet::{self, CALI_MAC, IP_OFFSET, PEER_IP, PEER_MAC, POD_IP, POD_MAC, REMOTE_POD_IP},
};

const FROM_A: On = On::iface(WORKLOAD_A);
const UDP: u8 = 17;
/// The one port the pods' policy allows (as in the issue: mDNS).
const ALLOWED_PORT: u16 = 5353;
const CLIENT_PORT: u16 = 40000;
/// Bytes of IP payload per fragment (a multiple of 8).
const CHUNK: usize = 48;

/// "Allow UDP to port 5353, deny the rest" in `direction`.
fn udp_5353(direction: PolicyDirection) -> (GroupKey, Program) {
    let matcher = Match {
        proto: ProtoMatch {
            is: Some(UDP),
            not: None,
        },
        dst_ports: PortMatch {
            any_of: vec![(ALLOWED_PORT, ALLOWED_PORT)],
            none_of: vec![],
        },
        ..Match::default()
    };
    let name = format!("udp-5353-{direction:?}");
    one_rule_profile(&name, direction, Step::Allow, matcher)
}

/// A harness where pods A and B (each with its own MAC) both allow only UDP 5353, in and out.
fn harness(tag: &str) -> Harness {
    let mut h = Harness::new(tag);
    let (group, program) = udp_5353(PolicyDirection::Ingress);
    let ingress = h.program_policy(&group, &program);
    let (group, program) = udp_5353(PolicyDirection::Egress);
    let egress = h.program_policy(&group, &program);
    let b = h.net.workload_b;
    let mut endpoints = h.dataplane().endpoints().expect("endpoints map");
    for (ifindex, ip, mac) in [(WORKLOAD_A, POD_IP, POD_MAC), (b, PEER_IP, PEER_MAC)] {
        let info = EndpointInfo {
            ip,
            mac,
            flags: endpoint_flags::MAC_KNOWN,
            policy_slots: [ingress, egress],
        };
        endpoints.insert(ifindex, info, 0).expect("set endpoint");
    }
    h
}

/// A UDP datagram as an IPv4 packet (no Ethernet header) with `len` bytes of payload.
fn datagram(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ttl: u8, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    packet::build(|out| {
        PacketBuilder::ipv4(src, dst, ttl)
            .udp(sport, dport)
            .write(out, &payload)
            .expect("write UDP datagram");
    })
}

/// `ip` (IPv4 without options) cut into fragments of [`CHUNK`] bytes of payload with IP ID
/// `id`, as the sender's kernel cuts it: in order, MF on all but the last.
fn fragments(ip: &[u8], id: u16) -> Vec<Vec<u8>> {
    let (header, payload) = ip.split_at(20);
    payload
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, part)| {
            let offset = i * CHUNK;
            let more = offset + part.len() < payload.len();
            let mut fragment = header.to_vec();
            fragment[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
            fragment[4..6].copy_from_slice(&id.to_be_bytes());
            let flags_offset = if more { 0x2000 } else { 0 } | (offset / 8) as u16;
            fragment[6..8].copy_from_slice(&flags_offset.to_be_bytes());
            fragment[10..12].copy_from_slice(&[0, 0]);
            let sum = packet::ipv4_checksum(&fragment);
            fragment[10..12].copy_from_slice(&sum.to_be_bytes());
            fragment.extend_from_slice(part);
            fragment
        })
        .collect()
}

/// `ip` in an Ethernet frame from `src_mac` to the gateway.
fn framed(src_mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut frame = CALI_MAC.to_vec();
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(ip);
    frame
}

/// The conntrack entry of the UDP flow between the two ends.
fn flow_packets(h: &mut Harness, a: ([u8; 4], u16), b: ([u8; 4], u16)) -> Option<u64> {
    let (key, _) = CtKey::for_packet(a.0, a.1, b.0, b.1, UDP);
    h.conntrack(&key)
        .map(|entry| entry.packets_a_to_b + entry.packets_b_to_a)
}

#[test]
fn later_fragments_follow_an_allowed_first_fragment_between_local_pods_both_ways() {
    let mut h = harness("frag-local");
    let b = On::iface(h.net.workload_b);
    let request = datagram(POD_IP, CLIENT_PORT, PEER_IP, ALLOWED_PORT, 64, 100);
    let pieces = fragments(&request, 0x1234);
    assert_eq!(pieces.len(), 3, "first, middle, last");
    for piece in &pieces {
        let sent = framed(POD_MAC, piece);
        let out = h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &sent,
            Direction::FromWorkload,
            Reason::ForwardedLocal,
            TC_ACT_REDIRECT,
        );
        assert_eq!(&out.data_out[..6], &PEER_MAC, "to pod B, as the first");
        assert_eq!(out.data_out[IP_OFFSET + 8], 63, "TTL decremented");
        assert!(packet::ipv4_checksum_ok(&out.data_out, IP_OFFSET));
        assert_eq!(&out.data_out[IP_OFFSET + 20..], piece[20..].as_ref());
        // Into B: B's ingress policy (port 5353 only) sees the datagram's flow.
        h.expect(
            PROG_TO_WORKLOAD,
            b,
            &out.data_out,
            Direction::ToWorkload,
            Reason::Allowed,
            TC_ACT_OK,
        );
    }
    assert_eq!(
        flow_packets(&mut h, (POD_IP, CLIENT_PORT), (PEER_IP, ALLOWED_PORT)),
        Some(3),
        "each fragment counted in the datagram's flow"
    );
    // B's fragmented reply goes to port 40000, which B's egress policy alone would deny: it is
    // the flow's, fragment by fragment.
    let reply = datagram(PEER_IP, ALLOWED_PORT, POD_IP, CLIENT_PORT, 64, 100);
    for piece in fragments(&reply, 0x0777) {
        let out = h.expect(
            PROG_FROM_WORKLOAD,
            b,
            &framed(PEER_MAC, &piece),
            Direction::FromWorkload,
            Reason::ForwardedLocal,
            TC_ACT_REDIRECT,
        );
        assert_eq!(&out.data_out[..6], &POD_MAC, "to pod A");
        h.expect(
            PROG_TO_WORKLOAD,
            FROM_A,
            &out.data_out,
            Direction::ToWorkload,
            Reason::Allowed,
            TC_ACT_OK,
        );
    }
    assert_eq!(
        flow_packets(&mut h, (POD_IP, CLIENT_PORT), (PEER_IP, ALLOWED_PORT)),
        Some(6)
    );
}

#[test]
fn later_fragments_of_a_denied_datagram_are_dropped_as_it_was() {
    let mut h = harness("frag-deny");
    let denied = datagram(POD_IP, CLIENT_PORT, PEER_IP, 9999, 64, 100);
    for piece in fragments(&denied, 0x2222) {
        h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &framed(POD_MAC, &piece),
            Direction::FromWorkload,
            Reason::DropPolicy,
            TC_ACT_SHOT,
        );
    }
    assert_eq!(
        flow_packets(&mut h, (POD_IP, CLIENT_PORT), (PEER_IP, 9999)),
        None
    );
    // Nor does a later fragment pass as port 0 or as another datagram's.
    let allowed = datagram(POD_IP, CLIENT_PORT, PEER_IP, ALLOWED_PORT, 64, 100);
    let first = &fragments(&allowed, 0x2223)[0];
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &framed(POD_MAC, first),
        Direction::FromWorkload,
        Reason::ForwardedLocal,
        TC_ACT_REDIRECT,
    );
    let later_of_denied = &fragments(&denied, 0x2222)[1];
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &framed(POD_MAC, later_of_denied),
        Direction::FromWorkload,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
}

#[test]
fn a_later_fragment_without_its_first_is_dropped_as_an_orphan_on_every_program() {
    let mut h = harness("frag-orphan");
    let pieces = fragments(
        &datagram(POD_IP, CLIENT_PORT, PEER_IP, ALLOWED_PORT, 64, 100),
        0x3333,
    );
    // Overtaking its first fragment: nothing to judge it by.
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &framed(POD_MAC, &pieces[1]),
        Direction::FromWorkload,
        Reason::DropFragOrphan,
        TC_ACT_SHOT,
    );
    // Once the first has passed, the same fragment follows it.
    for piece in [&pieces[0], &pieces[1]] {
        h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &framed(POD_MAC, piece),
            Direction::FromWorkload,
            Reason::ForwardedLocal,
            TC_ACT_REDIRECT,
        );
    }
    // Into a pod from the host stack, and from another host (IPIP and plain).
    let incoming = datagram(REMOTE_POD_IP, CLIENT_PORT, POD_IP, ALLOWED_PORT, 64, 100);
    let later = &fragments(&incoming, 0x3334)[1];
    h.expect(
        PROG_TO_WORKLOAD,
        FROM_A,
        &framed(CALI_MAC, later),
        Direction::ToWorkload,
        Reason::DropFragOrphan,
        TC_ACT_SHOT,
    );
    let uplink = On::iface(h.net.uplink);
    for frame in [
        packet::ipip(PEER_HOST_IP, HOST_IP, later),
        framed(CALI_MAC, later),
    ] {
        h.expect(
            PROG_FROM_UPLINK,
            uplink,
            &frame,
            Direction::FromUplink,
            Reason::DropFragOrphan,
            TC_ACT_SHOT,
        );
    }
    // Fragments for the host itself are the host stack's to judge.
    let to_host = datagram(PEER_HOST_IP, CLIENT_PORT, HOST_IP, 22, 64, 100);
    h.expect(
        PROG_FROM_UPLINK,
        uplink,
        &framed(CALI_MAC, &fragments(&to_host, 0x3335)[1]),
        Direction::FromUplink,
        Reason::PassHost,
        TC_ACT_OK,
    );
}

#[test]
fn fragments_cross_hosts_both_ways_through_ipip_and_plain() {
    let mut h = harness("frag-remote");
    let uplink = On::iface(h.net.uplink);
    // A to a remote pod: every fragment wrapped, flags and offset as sent.
    let out_request = datagram(POD_IP, CLIENT_PORT, REMOTE_POD_IP, ALLOWED_PORT, 64, 100);
    for piece in fragments(&out_request, 0x4444) {
        let out = h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &framed(POD_MAC, &piece),
            Direction::FromWorkload,
            Reason::Encapsulated,
            TC_ACT_REDIRECT,
        );
        let inner = &out.data_out[IP_OFFSET + 20..];
        assert_eq!(&inner[6..8], &piece[6..8], "fragment flags and offset");
        assert_eq!(&inner[20..], &piece[20..]);
    }
    // A remote pod to A, in IPIP: every fragment decapsulated into A; A's fragmented reply
    // (to port 41000, which A's egress policy alone denies) follows the flow back out.
    let in_request = datagram(REMOTE_POD_IP, 41000, POD_IP, ALLOWED_PORT, 64, 100);
    for piece in fragments(&in_request, 0x4445) {
        let out = h.expect(
            PROG_FROM_UPLINK,
            uplink,
            &packet::ipip(PEER_HOST_IP, HOST_IP, &piece),
            Direction::FromUplink,
            Reason::Decapsulated,
            TC_ACT_REDIRECT,
        );
        assert_eq!(&out.data_out[..6], &POD_MAC);
        assert_eq!(&out.data_out[IP_OFFSET + 20..], &piece[20..]);
    }
    let reply = datagram(POD_IP, ALLOWED_PORT, REMOTE_POD_IP, 41000, 64, 100);
    for piece in fragments(&reply, 0x4446) {
        h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &framed(POD_MAC, &piece),
            Direction::FromWorkload,
            Reason::Encapsulated,
            TC_ACT_REDIRECT,
        );
    }
    assert_eq!(
        flow_packets(&mut h, (POD_IP, ALLOWED_PORT), (REMOTE_POD_IP, 41000)),
        Some(6)
    );
    // Plain from the fabric (native routing): the same.
    let native = datagram(REMOTE_POD_IP, 42000, POD_IP, ALLOWED_PORT, 64, 100);
    for piece in fragments(&native, 0x4447) {
        h.expect(
            PROG_FROM_UPLINK,
            uplink,
            &framed(CALI_MAC, &piece),
            Direction::FromUplink,
            Reason::ForwardedLocal,
            TC_ACT_REDIRECT,
        );
    }
}

/// Checks that `out` is the time exceeded (`icmp_type` 11, `code`) for `sent`, its unused
/// word zero.
fn assert_time_exceeded(sent: &[u8], out: &[u8], code: u8) {
    let icmp = icmp::assert_icmp_error(sent, out, 11, code);
    assert_eq!(&icmp[4..8], &[0; 4], "unused");
}

#[test]
fn a_pods_packet_whose_ttl_runs_out_is_answered_with_time_exceeded() {
    let mut h = Harness::new("ttl-exceeded");
    // A local pod, a remote pod through IPIP: the first hop answers, as a router does.
    for dst in [PEER_IP, REMOTE_POD_IP] {
        let sent = framed(POD_MAC, &datagram(POD_IP, CLIENT_PORT, dst, 33434, 1, 32));
        let out = h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &sent,
            Direction::FromWorkload,
            Reason::IcmpTtlExceeded,
            TC_ACT_REDIRECT,
        );
        assert_time_exceeded(&sent, &out.data_out, 0);
    }
    // A first fragment is answered (as Linux answers fragment 0 only).
    let pieces = fragments(
        &datagram(POD_IP, CLIENT_PORT, PEER_IP, 33435, 1, 100),
        0x5555,
    );
    let first = framed(POD_MAC, &pieces[0]);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &first,
        Direction::FromWorkload,
        Reason::IcmpTtlExceeded,
        TC_ACT_REDIRECT,
    );
    assert_time_exceeded(&first, &out.data_out, 0);
    // Never answered: a later fragment, an ICMP error.
    let later = framed(POD_MAC, &pieces[1]);
    let unreachable = packet::build(|out| {
        PacketBuilder::ethernet2(POD_MAC, CALI_MAC)
            .ipv4(POD_IP, PEER_IP, 1)
            .icmpv4_raw(3, 3, [0; 4])
            .write(out, &datagram(PEER_IP, 53, POD_IP, 53, 64, 8))
            .expect("write ICMP error");
    });
    for frame in [later, unreachable] {
        h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &frame,
            Direction::FromWorkload,
            Reason::DropTtlExceeded,
            TC_ACT_SHOT,
        );
    }
}

/// A packet from another host whose TTL runs out on its way into a pod goes to the host stack
/// as plain IP (decapsulated from IPIP), whose forwarding sends the time exceeded.
#[test]
fn a_packet_from_the_fabric_whose_ttl_runs_out_is_left_to_the_host_stack() {
    let mut h = Harness::new("ttl-fabric");
    let uplink = On::iface(h.net.uplink);
    let inner = datagram(REMOTE_POD_IP, CLIENT_PORT, POD_IP, 33434, 1, 32);
    let out = h.expect(
        PROG_FROM_UPLINK,
        uplink,
        &packet::ipip(PEER_HOST_IP, HOST_IP, &inner),
        Direction::FromUplink,
        Reason::PassTtlExceeded,
        TC_ACT_OK,
    );
    assert_eq!(&out.data_out[12..14], &[0x08, 0x00]);
    assert_eq!(
        &out.data_out[IP_OFFSET..],
        &inner[..],
        "decapsulated, TTL as sent"
    );
    let plain = framed(CALI_MAC, &inner);
    let out = h.expect(
        PROG_FROM_UPLINK,
        uplink,
        &plain,
        Direction::FromUplink,
        Reason::PassTtlExceeded,
        TC_ACT_OK,
    );
    assert_eq!(out.data_out, plain, "untouched");
}

/// `frame` with a tag (`tpid`, VLAN 100) after the MAC addresses, as a VLAN interface sends it
/// when the tag is not offloaded (or the inner tag of QinQ).
fn tagged(frame: &[u8], tpid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&100u16.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

#[test]
fn tagged_frames_are_dropped_from_pods_and_left_to_the_host_on_the_uplink() {
    let mut h = Harness::new("vlan");
    let uplink = On::iface(h.net.uplink);
    for tpid in [0x8100, 0x88a8] {
        let frame = tagged(&packet::udp(b"tagged"), tpid);
        h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &frame,
            Direction::FromWorkload,
            Reason::DropVlanTagged,
            TC_ACT_SHOT,
        );
        h.expect(
            PROG_TO_WORKLOAD,
            FROM_A,
            &frame,
            Direction::ToWorkload,
            Reason::DropVlanTagged,
            TC_ACT_SHOT,
        );
        // Tagged IPIP from a known host: a VLAN's traffic, the host stack's.
        let ipip = packet::ipip(PEER_HOST_IP, HOST_IP, &packet::udp(b"x")[IP_OFFSET..]);
        h.expect(
            PROG_FROM_UPLINK,
            uplink,
            &tagged(&ipip, tpid),
            Direction::FromUplink,
            Reason::PassHost,
            TC_ACT_OK,
        );
    }
}

/// Offset of `vlan_present` in `struct __sk_buff`, and the context's length.
const SKB_VLAN_PRESENT_OFFSET: usize = 20;
const SKB_IFINDEX_OFFSET: usize = 40;
const SKB_CTX_LEN: usize = 192;

/// The kernel's BPF_PROG_TEST_RUN refuses a context with `vlan_present` set (only mark,
/// priority, ifindex, cb, tstamp, wire_len, gso_* and hwtstamp may be non-zero), so the tag the
/// kernel moves out of a frame (`skb->vlan_tci`) cannot be tested in this tier: the lab sends
/// real tagged frames from a pod. If a kernel starts accepting it, test it here.
#[test]
fn test_run_cannot_set_vlan_present() {
    let mut h = Harness::new("vlan-ctx");
    let frame = packet::udp(b"x");
    let program = h
        .dataplane()
        .classifier(PROG_FROM_WORKLOAD)
        .expect("program present");
    let run = |vlan_present: u32| {
        let mut ctx = [0u8; SKB_CTX_LEN];
        ctx[SKB_IFINDEX_OFFSET..SKB_IFINDEX_OFFSET + 4].copy_from_slice(&WORKLOAD_A.to_ne_bytes());
        ctx[SKB_VLAN_PRESENT_OFFSET..SKB_VLAN_PRESENT_OFFSET + 4]
            .copy_from_slice(&vlan_present.to_ne_bytes());
        program.test_run(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: 1,
            ..TestRunOptions::default()
        })
    };
    assert!(run(0).is_ok(), "the same context without the tag runs");
    assert!(run(1).is_err(), "the kernel refuses vlan_present in ctx_in");
}
