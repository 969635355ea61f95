//! Tier 2: what a packet of a flow is judged as when the flow's entry is over or gone, run with
//! BPF_PROG_TEST_RUN. A SYN that reopens a reset or finished flow on the same ports is a new
//! flow, judged by policy; a mid-stream TCP packet without an entry is judged as its flow in
//! either orientation and tracked again with the right initiator. Needs root and bpffs
//! (`--features privileged-tests`).
#![cfg(feature = "privileged-tests")]

mod support;

use felix_common::{
    CtKey, CtState, CtValue, Direction, Reason,
    conntrack::{
        ct_flags,
        tcp_flags::{ACK, FIN, RST, SYN},
    },
};
use felix_user::{
    PROG_FROM_UPLINK, PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD,
    calc::policy::{
        PolicyDirection,
        calc::GroupKey,
        program::{Match, Program, Step},
    },
};

use support::{
    harness::{Harness, On, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, WORKLOAD_A, one_rule_profile},
    net::{HOST_IP, PEER_HOST_IP},
    packet::{self, PEER_IP, POD_IP, REMOTE_POD_IP},
};

const FROM_A: On = On::iface(WORKLOAD_A);
/// Pod A's port (the client's) and pod B's (the server's).
const CLIENT_PORT: u16 = 40000;
const SERVER_PORT: u16 = 80;

/// A policy set that denies everything in `direction` with a rule of its own (so that its
/// counter moves when it decides).
fn deny_all(direction: PolicyDirection) -> (GroupKey, Program) {
    let profile = format!("deny-all-{direction:?}");
    one_rule_profile(&profile, direction, Step::Deny, Match::default())
}

/// The slots of deny-all ingress and deny-all egress.
fn deny_slots(h: &mut Harness) -> (u32, u32) {
    let (group, program) = deny_all(PolicyDirection::Ingress);
    let ingress = h.program_policy(&group, &program);
    let (group, program) = deny_all(PolicyDirection::Egress);
    (ingress, h.program_policy(&group, &program))
}

/// Points pod B at its address with (`ingress`, `egress`) policy slots.
fn set_pod_b(h: &mut Harness, ingress: u32, egress: u32) {
    let ifindex = h.net.workload_b;
    h.set_endpoint(ifindex, PEER_IP, [ingress, egress]);
}

/// Points pod A at its address with (`ingress`, `egress`) policy slots.
fn set_pod_a(h: &mut Harness, ingress: u32, egress: u32) {
    h.set_endpoint(WORKLOAD_A, POD_IP, [ingress, egress]);
}

/// The flow between pod A's client port and pod B's server port.
fn flow_key() -> CtKey {
    CtKey::for_packet(POD_IP, CLIENT_PORT, PEER_IP, SERVER_PORT, 6).0
}

/// A segment from pod A (client) to pod B (server), or back, through `cali_from_wl`; the
/// verdict.
fn send(h: &mut Harness, from_a: bool, flags: u8) -> u32 {
    let (frame, on) = if from_a {
        (
            packet::tcp_segment(POD_IP, CLIENT_PORT, PEER_IP, SERVER_PORT, flags),
            FROM_A,
        )
    } else {
        (
            packet::tcp_segment(PEER_IP, SERVER_PORT, POD_IP, CLIENT_PORT, flags),
            On::iface(h.net.workload_b),
        )
    };
    h.run(PROG_FROM_WORKLOAD, on, &frame).verdict
}

/// Opens the flow A -> B with a full handshake (everything allowed) and closes it by `close`:
/// (sender is A, flags) in order. Returns the entry after the close.
fn open_and_close(h: &mut Harness, close: &[(bool, u8)]) -> CtValue {
    for (from_a, flags) in [(true, SYN), (false, SYN | ACK), (true, ACK)]
        .into_iter()
        .chain(close.iter().copied())
    {
        assert_eq!(send(h, from_a, flags), TC_ACT_REDIRECT, "flags {flags:#x}");
    }
    h.conntrack(&flow_key()).expect("entry of the closed flow")
}

/// The new SYN on the closed flow's ports: dropped by policy while pod B denies all ingress,
/// with the old entry gone; once B allows again, a fresh entry opened by the SYN.
fn syn_reopens_a_closed_flow(h: &mut Harness, closed: CtValue) {
    let (deny_in, _) = deny_slots(h);
    let allow = h.allow_all_slot;
    set_pod_b(h, deny_in, allow);
    let syn = packet::tcp_segment(POD_IP, CLIENT_PORT, PEER_IP, SERVER_PORT, SYN);
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &syn,
        Direction::FromWorkload,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    assert_eq!(
        h.conntrack(&flow_key()),
        None,
        "the closed flow's entry is gone, not refreshed"
    );
    // Every reuse of the ports is judged again (the storm is never the old flow).
    for _ in 0..3 {
        assert_eq!(send(h, true, SYN), TC_ACT_SHOT);
    }

    set_pod_b(h, allow, allow);
    // The old flow's entry again, as if it had lingered: the allowed SYN replaces it.
    h.dataplane()
        .conntrack()
        .expect("conntrack map")
        .insert(flow_key(), closed, 0)
        .expect("restore the closed entry");
    assert_eq!(send(h, true, SYN), TC_ACT_REDIRECT);
    let entry = h.conntrack(&flow_key()).expect("new entry");
    assert_eq!(entry.state, CtState::SynSent as u8);
    assert_eq!(
        (entry.packets_a_to_b, entry.packets_b_to_a),
        (1, 0),
        "counted from the new SYN on"
    );
    assert_eq!((entry.tcp_flags_a, entry.tcp_flags_b), (SYN, 0));
    assert!(entry.created_ns >= closed.created_ns);
    assert_ne!(entry.flags & ct_flags::A_IS_INITIATOR, 0);
    // And the new connection completes as any other.
    assert_eq!(send(h, false, SYN | ACK), TC_ACT_REDIRECT);
    assert_eq!(send(h, true, ACK), TC_ACT_REDIRECT);
    let entry = h.conntrack(&flow_key()).expect("entry");
    assert_eq!(entry.state, CtState::Established as u8);
}

#[test]
fn a_syn_after_a_reset_on_the_same_ports_is_a_new_flow_judged_by_policy() {
    let mut h = Harness::new("ct-rst-syn");
    // The client closes with RST (SO_LINGER 0).
    let closed = open_and_close(&mut h, &[(true, RST | ACK)]);
    assert_eq!(closed.state, CtState::Reset as u8);
    syn_reopens_a_closed_flow(&mut h, closed);
}

#[test]
fn a_syn_after_fins_on_the_same_ports_is_a_new_flow_judged_by_policy() {
    let mut h = Harness::new("ct-fin-syn");
    let closed = open_and_close(
        &mut h,
        &[(true, FIN | ACK), (false, FIN | ACK), (true, ACK)],
    );
    assert_eq!(closed.state, CtState::FinsSeen as u8);
    syn_reopens_a_closed_flow(&mut h, closed);
}

#[test]
fn a_syn_on_a_live_flow_or_a_packet_after_a_reset_stays_in_the_flow() {
    let mut h = Harness::new("ct-live-syn");
    let allow = h.allow_all_slot;
    let (deny_in, _) = deny_slots(&mut h);
    // Established, then B denies: a retransmitted SYN is the same flow (not judged again).
    for (from_a, flags) in [(true, SYN), (false, SYN | ACK), (true, ACK)] {
        assert_eq!(send(&mut h, from_a, flags), TC_ACT_REDIRECT);
    }
    set_pod_b(&mut h, deny_in, allow);
    assert_eq!(send(&mut h, true, SYN), TC_ACT_REDIRECT);
    // A RST, then the other side's last segments: still the reset flow's.
    assert_eq!(send(&mut h, true, RST), TC_ACT_REDIRECT);
    assert_eq!(send(&mut h, false, ACK), TC_ACT_REDIRECT);
    let entry = h.conntrack(&flow_key()).expect("entry");
    assert_eq!(entry.state, CtState::Reset as u8);
    assert_eq!((entry.packets_a_to_b, entry.packets_b_to_a), (4, 2));
}

/// A mid-stream reply to pod A's own outbound flow, whose entry is gone, passes under A's
/// deny-all ingress (A's egress allows the flow A opened) on every program that brings packets
/// to a pod, and its entry is opened again with A as the initiator, established.
#[test]
fn a_mid_stream_reply_without_an_entry_is_judged_as_the_pods_own_flow() {
    let mut h = Harness::new("ct-mid-reply");
    let allow = h.allow_all_slot;
    let (deny_in, _) = deny_slots(&mut h);
    set_pod_a(&mut h, deny_in, allow);
    let from_b = On::iface(h.net.workload_b);
    let uplink = On::iface(h.net.uplink);

    // A first packet to A is still judged by A's ingress alone.
    let syn = packet::tcp_segment(PEER_IP, SERVER_PORT, POD_IP, CLIENT_PORT, SYN);
    h.expect(
        PROG_FROM_WORKLOAD,
        from_b,
        &syn,
        Direction::FromWorkload,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    assert_eq!(h.conntrack(&flow_key()), None);

    // From pod B on this host (cali_from_wl).
    let reply = packet::tcp_segment(PEER_IP, SERVER_PORT, POD_IP, CLIENT_PORT, ACK);
    h.expect(
        PROG_FROM_WORKLOAD,
        from_b,
        &reply,
        Direction::FromWorkload,
        Reason::ForwardedLocal,
        TC_ACT_REDIRECT,
    );
    let entry = h.conntrack(&flow_key()).expect("entry opened again");
    // A (192.168.2.1) is side A of the key.
    assert_eq!(
        entry.flags & ct_flags::A_IS_INITIATOR,
        ct_flags::A_IS_INITIATOR
    );
    assert_eq!(entry.state, CtState::Established as u8);
    assert_eq!((entry.packets_a_to_b, entry.packets_b_to_a), (0, 1));
    // Later packets find it, both ways.
    assert_eq!(send(&mut h, false, ACK), TC_ACT_REDIRECT);
    assert_eq!(send(&mut h, true, ACK), TC_ACT_REDIRECT);
    let entry = h.conntrack(&flow_key()).expect("entry");
    assert_eq!((entry.packets_a_to_b, entry.packets_b_to_a), (1, 2));
    // A FIN from each side: finished as a tracked flow would be.
    assert_eq!(send(&mut h, false, FIN | ACK), TC_ACT_REDIRECT);
    assert_eq!(send(&mut h, true, FIN | ACK), TC_ACT_REDIRECT);
    let entry = h.conntrack(&flow_key()).expect("entry");
    assert_eq!(entry.state, CtState::FinsSeen as u8);

    // From a pod on another host, by IPIP (uplink_in).
    let inner = packet::tcp_segment(REMOTE_POD_IP, SERVER_PORT, POD_IP, CLIENT_PORT, ACK);
    let frame = packet::ipip(PEER_HOST_IP, HOST_IP, &inner[14..]);
    h.expect(
        PROG_FROM_UPLINK,
        uplink,
        &frame,
        Direction::FromUplink,
        Reason::Decapsulated,
        TC_ACT_REDIRECT,
    );
    let (key, _) = CtKey::for_packet(REMOTE_POD_IP, SERVER_PORT, POD_IP, CLIENT_PORT, 6);
    let entry = h.conntrack(&key).expect("entry of the decapsulated reply");
    // 192.168.2.1 < 192.168.3.x: pod A is side A.
    assert_eq!(
        entry.flags & ct_flags::A_IS_INITIATOR,
        ct_flags::A_IS_INITIATOR
    );
    assert_eq!(entry.state, CtState::Established as u8);

    // From the host stack (cali_to_wl): the host's reply to A's connection.
    let from_host = packet::tcp_segment(HOST_IP, 6443, POD_IP, CLIENT_PORT, ACK | 0x08);
    h.expect(
        PROG_TO_WORKLOAD,
        FROM_A,
        &from_host,
        Direction::ToWorkload,
        Reason::Allowed,
        TC_ACT_OK,
    );
    let (key, _) = CtKey::for_packet(HOST_IP, 6443, POD_IP, CLIENT_PORT, 6);
    let entry = h.conntrack(&key).expect("entry of the host's reply");
    // 10.0.0.1 < 192.168.2.1: the host is side A, so A initiated is clear.
    assert_eq!(entry.flags & ct_flags::A_IS_INITIATOR, 0);
    assert_eq!(entry.flags & ct_flags::VIA_HOST, ct_flags::VIA_HOST);
    assert_eq!(entry.state, CtState::Established as u8);
}

/// A mid-stream packet from pod A that A's egress allows is A's own flow (A initiates); one that
/// neither orientation allows is dropped by policy and opens nothing.
#[test]
fn a_mid_stream_packet_is_allowed_either_way_or_dropped() {
    let mut h = Harness::new("ct-mid-deny");
    let allow = h.allow_all_slot;
    let (deny_in, deny_out) = deny_slots(&mut h);
    let uplink = On::iface(h.net.uplink);

    // The initiator's own packet: A's egress and B's ingress allow it.
    set_pod_a(&mut h, deny_in, allow);
    assert_eq!(send(&mut h, true, ACK), TC_ACT_REDIRECT);
    let entry = h.conntrack(&flow_key()).expect("entry opened again");
    assert_eq!(
        entry.flags & ct_flags::A_IS_INITIATOR,
        ct_flags::A_IS_INITIATOR
    );
    assert_eq!(entry.state, CtState::Established as u8);
    h.flush_conntrack();

    // Neither way: A denies all both ways.
    set_pod_a(&mut h, deny_in, deny_out);
    let from_a = packet::tcp_segment(POD_IP, CLIENT_PORT, PEER_IP, SERVER_PORT, ACK);
    let to_a = packet::tcp_segment(PEER_IP, SERVER_PORT, POD_IP, CLIENT_PORT, ACK);
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &from_a,
        Direction::FromWorkload,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    h.expect(
        PROG_FROM_WORKLOAD,
        On::iface(h.net.workload_b),
        &to_a,
        Direction::FromWorkload,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    let inner = packet::tcp_segment(REMOTE_POD_IP, SERVER_PORT, POD_IP, CLIENT_PORT, ACK);
    h.expect(
        PROG_FROM_UPLINK,
        uplink,
        &packet::ipip(PEER_HOST_IP, HOST_IP, &inner[14..]),
        Direction::FromUplink,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    h.expect(
        PROG_TO_WORKLOAD,
        FROM_A,
        &packet::tcp_segment(HOST_IP, 6443, POD_IP, CLIENT_PORT, ACK),
        Direction::ToWorkload,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    assert_eq!(h.conntrack(&flow_key()), None, "nothing opened");

    // The deny is pod B's ingress for A's packet and A's ingress for B's: one way each.
    set_pod_a(&mut h, deny_in, allow);
    set_pod_b(&mut h, deny_in, allow);
    assert_eq!(send(&mut h, true, ACK), TC_ACT_SHOT, "A -> B: B's ingress");
    assert_eq!(
        send(&mut h, false, ACK),
        TC_ACT_SHOT,
        "B -> A: B's ingress as reply"
    );
    // UDP has no mid-stream: judged as sent, as today.
    let udp = packet::udp_between(PEER_IP, POD_IP, 64, b"q");
    assert_eq!(
        h.run(PROG_FROM_WORKLOAD, On::iface(h.net.workload_b), &udp)
            .verdict,
        TC_ACT_SHOT
    );
}
