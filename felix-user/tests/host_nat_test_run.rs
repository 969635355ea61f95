//! Tier 2: flows the host stack NATs (kube-proxy's Services, natOutgoing), through the real
//! programs with BPF_PROG_TEST_RUN. The stack's part is played by the test: it hands each
//! program the packet as the stack would, after kube-proxy's DNAT, with the skb mark the stack
//! keeps and the interface the packet entered by. Pod A (192.168.2.1) opens a flow to the
//! ClusterIP 10.96.0.10:80; kube-proxy sends it to a backend on TCP 8080. Needs root and bpffs;
//! built with `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod support;

use std::sync::Arc;

use felix_common::{
    CtKey, CtState, Direction, Reason,
    conntrack::{ct_flags, tcp_flags},
    nat::marks,
    policy::NO_SLOT,
};
use felix_user::{
    PROG_FROM_UPLINK, PROG_FROM_WORKLOAD, PROG_TO_UPLINK, PROG_TO_WORKLOAD,
    calc::policy::{
        PolicyDirection,
        calc::GroupKey,
        program::{AddrMatch, Match, PortMatch, Program, ProtoMatch, Step},
    },
};
use ipnet::Ipv4Net;
use testkit::netns;

use support::{
    harness::{Harness, On, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, WORKLOAD_A, one_rule_profile},
    net::{HOST_IP, PEER_HOST_IP},
    packet::{self, IP_OFFSET, PEER_IP, POD_IP, REMOTE_POD_IP},
};

const FROM_A: On = On::iface(WORKLOAD_A);
const CLUSTER_IP: [u8; 4] = [10, 96, 0, 10];
const SERVICE_PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;
const CLIENT_PORT: u16 = 40000;
const SYN: u8 = tcp_flags::SYN;
const SYN_ACK: u8 = tcp_flags::SYN | tcp_flags::ACK;
const TCP: u8 = 6;

/// Egress policy "allow TCP 8080 to the pod network, deny the rest", as the issue's
/// `app: web` policy resolves: the backends' addresses and the target port.
fn egress_to_pods_on_8080() -> (GroupKey, Program) {
    let pods: Ipv4Net = "192.168.0.0/16".parse().expect("pool");
    let matcher = Match {
        proto: ProtoMatch {
            is: Some(TCP),
            not: None,
        },
        remote: AddrMatch {
            all_of: vec![Arc::new(vec![pods])],
            none_of: vec![],
        },
        dst_ports: PortMatch {
            any_of: vec![(TARGET_PORT, TARGET_PORT)],
            none_of: vec![],
        },
        src_ports: PortMatch::default(),
    };
    one_rule_profile("web-8080", PolicyDirection::Egress, Step::Allow, matcher)
}

/// A harness where pod A has the egress policy above and no ingress policy at all (so any
/// packet into A that is not part of a flow is dropped as `drop_no_policy`).
fn harness(tag: &str) -> Harness {
    let mut h = Harness::new(tag);
    let (group, program) = egress_to_pods_on_8080();
    let egress = h.program_policy(&group, &program);
    h.set_endpoint(WORKLOAD_A, POD_IP, [NO_SLOT, egress]);
    h
}

fn ct_key(a: [u8; 4], a_port: u16, b: [u8; 4], b_port: u16) -> CtKey {
    CtKey::for_packet(a, a_port, b, b_port, TCP).0
}

fn ct_flags_of(h: &mut Harness, key: &CtKey) -> u8 {
    h.conntrack(key).expect("flow tracked").flags
}

/// A's SYN to the ClusterIP leaves `cali_from_wl` unjudged, marked, its flow opened as sent.
fn syn_to_cluster_ip(h: &mut Harness) -> u32 {
    let syn = packet::tcp_segment(POD_IP, CLIENT_PORT, CLUSTER_IP, SERVICE_PORT, SYN);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &syn,
        Direction::FromWorkload,
        Reason::NatPending,
        TC_ACT_OK,
    );
    assert_eq!(out.data_out, syn, "passed to the stack untouched");
    assert_eq!(out.mark & marks::NAT_PENDING, marks::NAT_PENDING);
    let sent = ct_key(POD_IP, CLIENT_PORT, CLUSTER_IP, SERVICE_PORT);
    assert_eq!(
        ct_flags_of(h, &sent) & (ct_flags::UNCONFIRMED | ct_flags::VIA_HOST),
        ct_flags::UNCONFIRMED | ct_flags::VIA_HOST
    );
    out.mark
}

#[test]
fn service_with_a_remote_backend_goes_through_the_stack_both_ways() {
    let mut h = harness("nat-remote");
    let uplink = h.net.uplink;
    let mark = syn_to_cluster_ip(&mut h);

    // After DNAT the stack routes it to the backend on the other host: judged by A's egress
    // policy as it is now (backend, target port), then wrapped in IPIP.
    let after_dnat = packet::tcp_segment(POD_IP, CLIENT_PORT, REMOTE_POD_IP, TARGET_PORT, SYN);
    let out = h.expect(
        PROG_TO_UPLINK,
        On::iface(uplink).marked(mark).entered_by(WORKLOAD_A),
        &after_dnat,
        Direction::ToUplink,
        Reason::Encapsulated,
        TC_ACT_OK,
    );
    assert_eq!(out.mark & marks::NAT_PENDING, 0, "judged once");
    let backend = ct_key(POD_IP, CLIENT_PORT, REMOTE_POD_IP, TARGET_PORT);
    assert_eq!(
        ct_flags_of(&mut h, &backend) & ct_flags::VIA_HOST,
        ct_flags::VIA_HOST
    );
    let sent = ct_key(POD_IP, CLIENT_PORT, CLUSTER_IP, SERVICE_PORT);
    assert_eq!(
        ct_flags_of(&mut h, &sent) & ct_flags::UNCONFIRMED,
        0,
        "the flow as sent is confirmed"
    );

    // The backend's reply comes back in IPIP: decapsulated into the stack (which un-NATs it),
    // not redirected past it.
    let reply = packet::tcp_segment(REMOTE_POD_IP, TARGET_PORT, POD_IP, CLIENT_PORT, SYN_ACK);
    let wrapped = packet::ipip(PEER_HOST_IP, HOST_IP, &reply[IP_OFFSET..]);
    let out = h.expect(
        PROG_FROM_UPLINK,
        On::iface(uplink),
        &wrapped,
        Direction::FromUplink,
        Reason::ViaHostStack,
        TC_ACT_OK,
    );
    assert_eq!(
        &out.data_out[IP_OFFSET..],
        &reply[IP_OFFSET..],
        "decapsulated, else untouched"
    );

    // The stack un-NATs it: from the ClusterIP, into A as part of the flow A opened (A has no
    // ingress policy, so anything else would be dropped).
    let unnatted = packet::tcp_segment(CLUSTER_IP, SERVICE_PORT, POD_IP, CLIENT_PORT, SYN_ACK);
    h.expect(
        PROG_TO_WORKLOAD,
        FROM_A,
        &unnatted,
        Direction::ToWorkload,
        Reason::Allowed,
        TC_ACT_OK,
    );
    // A's next packets to the ClusterIP go to the stack as part of the flow, marked to be
    // recorded after NAT: the backend's flow sees the handshake complete (and stays alive past
    // the 20 s a half-open TCP flow gets), so its replies keep going into the stack.
    let ack = packet::tcp_segment(
        POD_IP,
        CLIENT_PORT,
        CLUSTER_IP,
        SERVICE_PORT,
        tcp_flags::ACK,
    );
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &ack,
        Direction::FromWorkload,
        Reason::ViaHostStack,
        TC_ACT_OK,
    );
    assert_eq!(out.mark & marks::NAT_PENDING, 0);
    assert_eq!(out.mark & marks::VIA_HOST_FLOW, marks::VIA_HOST_FLOW);
    let ack_after_dnat = packet::tcp_segment(
        POD_IP,
        CLIENT_PORT,
        REMOTE_POD_IP,
        TARGET_PORT,
        tcp_flags::ACK,
    );
    let before = h.conntrack(&backend).expect("backend flow");
    assert_eq!(before.state, CtState::SynSent as u8);
    let out = h.expect(
        PROG_TO_UPLINK,
        On::iface(uplink).marked(out.mark).entered_by(WORKLOAD_A),
        &ack_after_dnat,
        Direction::ToUplink,
        Reason::Encapsulated,
        TC_ACT_OK,
    );
    assert_eq!(out.mark & marks::VIA_HOST_FLOW, 0);
    let after = h.conntrack(&backend).expect("backend flow");
    assert_eq!(
        after.state,
        CtState::Established as u8,
        "handshake seen after NAT"
    );
}

#[test]
fn egress_policy_judges_the_backend_not_the_service() {
    let mut h = harness("nat-deny");
    let uplink = h.net.uplink;
    // Port 80 at the ClusterIP would be denied by "TCP 8080 only" if judged before NAT; a
    // backend on 9090 must be denied after it.
    let mark = syn_to_cluster_ip(&mut h);
    let wrong_port = packet::tcp_segment(POD_IP, CLIENT_PORT, REMOTE_POD_IP, 9090, SYN);
    h.expect(
        PROG_TO_UPLINK,
        On::iface(uplink).marked(mark).entered_by(WORKLOAD_A),
        &wrong_port,
        Direction::ToUplink,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    let sent = ct_key(POD_IP, CLIENT_PORT, CLUSTER_IP, SERVICE_PORT);
    assert!(
        h.conntrack(&sent).is_none(),
        "a denied flow's entry as sent is forgotten: no reply finds it"
    );
    let backend = ct_key(POD_IP, CLIENT_PORT, REMOTE_POD_IP, 9090);
    assert!(h.conntrack(&backend).is_none());
    let unnatted = packet::tcp_segment(CLUSTER_IP, SERVICE_PORT, POD_IP, CLIENT_PORT, SYN_ACK);
    h.expect(
        PROG_TO_WORKLOAD,
        FROM_A,
        &unnatted,
        Direction::ToWorkload,
        Reason::DropNoPolicy,
        TC_ACT_SHOT,
    );
}

#[test]
fn service_with_a_local_backend_replies_through_the_stack() {
    let mut h = harness("nat-local");
    let workload_b = h.net.workload_b;
    let mark = syn_to_cluster_ip(&mut h);

    // DNAT to pod B on this host: A's egress and B's ingress (allow-all) judge it at B's cali.
    let after_dnat = packet::tcp_segment(POD_IP, CLIENT_PORT, PEER_IP, TARGET_PORT, SYN);
    h.expect(
        PROG_TO_WORKLOAD,
        On::iface(workload_b).marked(mark).entered_by(WORKLOAD_A),
        &after_dnat,
        Direction::ToWorkload,
        Reason::Allowed,
        TC_ACT_OK,
    );
    let backend = ct_key(POD_IP, CLIENT_PORT, PEER_IP, TARGET_PORT);
    assert_eq!(
        ct_flags_of(&mut h, &backend) & ct_flags::VIA_HOST,
        ct_flags::VIA_HOST
    );

    // B's reply goes to the stack to be un-NATed, not redirected to A.
    let reply = packet::tcp_segment(PEER_IP, TARGET_PORT, POD_IP, CLIENT_PORT, SYN_ACK);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        On::iface(workload_b),
        &reply,
        Direction::FromWorkload,
        Reason::ViaHostStack,
        TC_ACT_OK,
    );
    assert_eq!(out.data_out, reply, "untouched");

    // Without NAT (A to B directly) the redirect fast path stays.
    let direct = packet::tcp_segment(POD_IP, CLIENT_PORT + 1, PEER_IP, TARGET_PORT, SYN);
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &direct,
        Direction::FromWorkload,
        Reason::ForwardedLocal,
        TC_ACT_REDIRECT,
    );
    let direct_reply = packet::tcp_segment(PEER_IP, TARGET_PORT, POD_IP, CLIENT_PORT + 1, SYN_ACK);
    h.expect(
        PROG_FROM_WORKLOAD,
        On::iface(workload_b),
        &direct_reply,
        Direction::FromWorkload,
        Reason::ForwardedLocal,
        TC_ACT_REDIRECT,
    );
}

#[test]
fn backend_ingress_deny_refuses_the_service_flow() {
    let mut h = harness("nat-ingress");
    let workload_b = h.net.workload_b;
    // B denies all ingress (no slot): the flow through the ClusterIP is refused at B.
    h.set_endpoint(workload_b, PEER_IP, [NO_SLOT, NO_SLOT]);
    let mark = syn_to_cluster_ip(&mut h);
    let after_dnat = packet::tcp_segment(POD_IP, CLIENT_PORT, PEER_IP, TARGET_PORT, SYN);
    h.expect(
        PROG_TO_WORKLOAD,
        On::iface(workload_b).marked(mark).entered_by(WORKLOAD_A),
        &after_dnat,
        Direction::ToWorkload,
        Reason::DropNoPolicy,
        TC_ACT_SHOT,
    );
    let sent = ct_key(POD_IP, CLIENT_PORT, CLUSTER_IP, SERVICE_PORT);
    assert!(h.conntrack(&sent).is_none(), "forgotten on the deny");
}

#[test]
fn outside_destination_without_nat_is_judged_where_it_leaves() {
    let mut h = harness("nat-none");
    let uplink = h.net.uplink;
    // 10.0.0.9 is on the uplink's subnet: the stack sends it out of the uplink unchanged.
    let outside = [10, 0, 0, 9];
    let syn = packet::tcp_segment(POD_IP, CLIENT_PORT, outside, TARGET_PORT, SYN);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &syn,
        Direction::FromWorkload,
        Reason::NatPending,
        TC_ACT_OK,
    );
    // Not in the pod network: A's policy denies it where it leaves.
    h.expect(
        PROG_TO_UPLINK,
        On::iface(uplink).marked(out.mark).entered_by(WORKLOAD_A),
        &syn,
        Direction::ToUplink,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    let key = ct_key(POD_IP, CLIENT_PORT, outside, TARGET_PORT);
    assert!(h.conntrack(&key).is_none(), "denied: forgotten");

    // Allowed (A's egress replaced by allow-all): one entry, confirmed, through the stack.
    let allow_all = h.allow_all_slot;
    h.set_endpoint(WORKLOAD_A, POD_IP, [NO_SLOT, allow_all]);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &syn,
        Direction::FromWorkload,
        Reason::NatPending,
        TC_ACT_OK,
    );
    h.expect(
        PROG_TO_UPLINK,
        On::iface(uplink).marked(out.mark).entered_by(WORKLOAD_A),
        &syn,
        Direction::ToUplink,
        Reason::PassHost,
        TC_ACT_OK,
    );
    let flags = ct_flags_of(&mut h, &key);
    assert_eq!(flags & ct_flags::UNCONFIRMED, 0);
    assert_eq!(flags & ct_flags::VIA_HOST, ct_flags::VIA_HOST);
}

#[test]
fn destination_out_of_another_interface_is_judged_before_nat() {
    let mut h = harness("nat-other-if");
    // A route out of an interface felix has no program on: nothing would judge the packet
    // after NAT, so cali_from_wl judges it as sent.
    for args in [
        &["link", "set", "wlc", "up"][..],
        &["route", "add", "172.16.0.0/24", "dev", "wlc"][..],
    ] {
        netns::ip(args).unwrap_or_else(|e| panic!("{e}"));
    }
    let denied = packet::tcp_segment(POD_IP, CLIENT_PORT, [172, 16, 0, 5], SERVICE_PORT, SYN);
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &denied,
        Direction::FromWorkload,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    let allow_all = h.allow_all_slot;
    h.set_endpoint(WORKLOAD_A, POD_IP, [NO_SLOT, allow_all]);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &denied,
        Direction::FromWorkload,
        Reason::Allowed,
        TC_ACT_OK,
    );
    assert_eq!(out.mark & marks::NAT_PENDING, 0, "judged already");
}

#[test]
fn a_flow_keeps_to_one_side_of_the_host_stack_both_ways() {
    let mut h = Harness::new("nat-sides");
    let uplink = h.net.uplink;
    // The other host's process (or its NodePort, masqueraded) reaches A through IPIP, past this
    // host's stack: A's reply leaves past it too, plainly to that host.
    let request = packet::tcp_segment(PEER_HOST_IP, 30080, POD_IP, TARGET_PORT, SYN);
    let wrapped = packet::ipip(PEER_HOST_IP, HOST_IP, &request[IP_OFFSET..]);
    h.expect(
        PROG_FROM_UPLINK,
        On::iface(uplink),
        &wrapped,
        Direction::FromUplink,
        Reason::Decapsulated,
        TC_ACT_REDIRECT,
    );
    let reply = packet::tcp_segment(POD_IP, TARGET_PORT, PEER_HOST_IP, 30080, SYN_ACK);
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &reply,
        Direction::FromWorkload,
        Reason::ForwardedNative,
        TC_ACT_REDIRECT,
    );

    // A opens a flow to the other host: its first packet goes through this host's stack, so
    // the reply (plain IP from the fabric, addressed to A) goes through it too.
    let syn = packet::tcp_segment(POD_IP, CLIENT_PORT, PEER_HOST_IP, 22, SYN);
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &syn,
        Direction::FromWorkload,
        Reason::Allowed,
        TC_ACT_OK,
    );
    let key = ct_key(POD_IP, CLIENT_PORT, PEER_HOST_IP, 22);
    assert_eq!(
        ct_flags_of(&mut h, &key) & ct_flags::VIA_HOST,
        ct_flags::VIA_HOST
    );
    let answer = packet::tcp_segment(PEER_HOST_IP, 22, POD_IP, CLIENT_PORT, SYN_ACK);
    let out = h.expect(
        PROG_FROM_UPLINK,
        On::iface(uplink),
        &answer,
        Direction::FromUplink,
        Reason::ViaHostStack,
        TC_ACT_OK,
    );
    assert_eq!(out.data_out, answer, "untouched, for the stack");
}

/// An ICMP error (type 3 code 3, port unreachable) from `src` to `dst` quoting `quoted` (an
/// Ethernet frame; its IPv4 header and 8 bytes after it are quoted).
fn port_unreachable(src: [u8; 4], dst: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    packet::build(|out| {
        etherparse::PacketBuilder::ethernet2(packet::POD_MAC, packet::CALI_MAC)
            .ipv4(src, dst, 64)
            .icmpv4_raw(3, 3, [0; 4])
            .write(out, &quoted[IP_OFFSET..IP_OFFSET + 28])
            .expect("write ICMP error");
    })
}

/// A UDP datagram `src`:`sport` -> `dst`:`dport` in an Ethernet frame.
fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    packet::build(|out| {
        etherparse::PacketBuilder::ethernet2(packet::POD_MAC, packet::CALI_MAC)
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(out, b"query")
            .expect("write UDP datagram")
    })
}

#[test]
fn an_icmp_error_follows_the_flow_it_quotes() {
    let mut h = Harness::new("nat-icmp");
    let workload_b = h.net.workload_b;
    // A lets nothing in and B nothing out, unless it belongs to a flow.
    let allow_all = h.allow_all_slot;
    h.set_endpoint(WORKLOAD_A, POD_IP, [NO_SLOT, allow_all]);
    h.set_endpoint(workload_b, PEER_IP, [allow_all, NO_SLOT]);

    // A DNS-like query through a ClusterIP to B on this host, which has no listener.
    let query = udp(POD_IP, CLIENT_PORT, CLUSTER_IP, 53);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &query,
        Direction::FromWorkload,
        Reason::NatPending,
        TC_ACT_OK,
    );
    let after_dnat = udp(POD_IP, CLIENT_PORT, PEER_IP, 5353);
    h.expect(
        PROG_TO_WORKLOAD,
        On::iface(workload_b)
            .marked(out.mark)
            .entered_by(WORKLOAD_A),
        &after_dnat,
        Direction::ToWorkload,
        Reason::Allowed,
        TC_ACT_OK,
    );

    // B's port unreachable goes to the stack (which un-NATs it and its quote)...
    let error = port_unreachable(PEER_IP, POD_IP, &after_dnat);
    h.expect(
        PROG_FROM_WORKLOAD,
        On::iface(workload_b),
        &error,
        Direction::FromWorkload,
        Reason::ViaHostStack,
        TC_ACT_OK,
    );
    // ...and, un-NATed, gets into A as part of A's flow, though A judges nothing in.
    let unnatted = port_unreachable(CLUSTER_IP, POD_IP, &query);
    h.expect(
        PROG_TO_WORKLOAD,
        FROM_A,
        &unnatted,
        Direction::ToWorkload,
        Reason::Allowed,
        TC_ACT_OK,
    );
    // An error quoting a flow nobody opened is judged as any packet: dropped here.
    let stray = port_unreachable(CLUSTER_IP, POD_IP, &udp(POD_IP, 999, CLUSTER_IP, 53));
    h.expect(
        PROG_TO_WORKLOAD,
        FROM_A,
        &stray,
        Direction::ToWorkload,
        Reason::DropNoPolicy,
        TC_ACT_SHOT,
    );

    // Pod to pod without NAT: the error follows the flow's redirect.
    let direct = udp(POD_IP, CLIENT_PORT + 1, PEER_IP, 5353);
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &direct,
        Direction::FromWorkload,
        Reason::ForwardedLocal,
        TC_ACT_REDIRECT,
    );
    let error = port_unreachable(PEER_IP, POD_IP, &direct);
    h.expect(
        PROG_FROM_WORKLOAD,
        On::iface(workload_b),
        &error,
        Direction::FromWorkload,
        Reason::ForwardedLocal,
        TC_ACT_REDIRECT,
    );
}
